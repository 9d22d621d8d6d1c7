"""Blosc2 compression parameters from the names the header records, and back.

The header names a codec (``lz4hc``, ``zstd``, ...), a level and filters (``shuffle``,
``bitshuffle``, ``bytedelta``); these functions turn such names into ``blosc2.CParams``
(with the split mode every save path uses, :func:`splits_streams`) and ``blosc2.CParams``
back into names, refusing what the format does not allow with ``InvalidArgumentError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import InvalidArgumentError
from mlarray.layout import default_compression, label_compression

_CODECS = {
    "blosclz": blosc2.Codec.BLOSCLZ,
    "lz4": blosc2.Codec.LZ4,
    "lz4hc": blosc2.Codec.LZ4HC,
    "zlib": blosc2.Codec.ZLIB,
    "zstd": blosc2.Codec.ZSTD,
}
_FILTERS = {
    "shuffle": blosc2.Filter.SHUFFLE,
    "bitshuffle": blosc2.Filter.BITSHUFFLE,
    "bytedelta": blosc2.Filter.BYTEDELTA,
}


def splits_streams(codec: str, filters: Sequence[str], typesize: int) -> bool:
    """Whether a write compresses each byte of the items in a stream of its own (the chunk flag ``0x10`` clear).

    With a byte shuffle, the bytes of each significance lie together in a block; LZ4 and
    LZ4HC then compress each of them as a stream of its own (C-Blosc2 does so by itself
    for LZ4 but not for LZ4HC). Measured on the benchmark volumes at our layouts: LZ4HC
    spends 4-35% less CPU, the CT and MR files get slightly smaller (the 4-channel one
    0.36% larger), and reads decode no slower (``docs/performance.md``). Not recorded in
    the header: a function of what is.
    """
    return codec in ("lz4", "lz4hc") and "shuffle" in filters and typesize > 1


def make_cparams(codec: str, clevel: int, filters: Sequence[str], typesize: int, nthreads: int | None = None) -> Any:
    """Build blosc2 compression parameters from the names recorded in the header."""
    chosen = [_FILTERS[f] for f in filters]
    split = splits_streams(codec, filters, typesize)
    kwargs: dict[str, Any] = {
        "codec": _CODECS[codec],
        "clevel": clevel,
        "filters": chosen or [blosc2.Filter.NOFILTER],
        "filters_meta": [0] * max(len(chosen), 1),
        "typesize": typesize,
        "splitmode": blosc2.SplitMode.ALWAYS_SPLIT if split else blosc2.SplitMode.AUTO_SPLIT,
    }
    if nthreads is not None:
        kwargs["nthreads"] = nthreads
    return blosc2.CParams(**kwargs)


def named_cparams(codec: str | None, clevel: int | None, itemsize: int, filters: Sequence[str] | None = None) -> Any:
    """Compression parameters from names; what is not given is a default save's for the item size.

    Raises
    ------
    InvalidArgumentError
        An unknown codec, or a level that is not an integer from 0 to 9.
    """
    if codec is not None and codec not in _CODECS:
        raise InvalidArgumentError(f"unknown codec {codec!r}; use one of {', '.join(_CODECS)}")
    if clevel is not None and not (isinstance(clevel, int) and 0 <= clevel <= 9):
        raise InvalidArgumentError(f"clevel must be an integer from 0 to 9, got {clevel!r}")
    default_codec, default_clevel, default_filters = default_compression(itemsize)
    chosen = default_filters if filters is None else list(filters)
    return make_cparams(codec or default_codec, default_clevel if clevel is None else clevel, chosen, itemsize)


SAMPLES = 8
"""Pieces of the data :func:`default_for` compresses both ways, spread along the first axis."""
SAMPLE_BYTES = 32 * 1024
"""About how many bytes each piece holds (whole rows of the last axis)."""
LABEL_MARGIN = 1.1
"""The label codec is kept on samples up to this much larger than with the bit shuffle.

Samples are compressed row by row, the file in boxes: on label maps the file came out
smaller with the label codec even where a sample came out up to 1% larger, while on 1-byte
intensity images the bit shuffle wins by 20-30%."""


def default_for(data: Any, is_seg: bool | None = None) -> tuple[str, int, list[str]]:
    """Codec, level and filters a save uses for ``data`` when the caller gives no ``cparams``.

    :func:`~mlarray.layout.default_compression` for the item size, except for 1-byte data
    that are a label map or a mask: marked ``is_seg``, or, unmarked, compressed about as
    small (:data:`LABEL_MARGIN`) by :func:`~mlarray.layout.label_compression` as by the
    bit-shuffle default on :data:`SAMPLES` pieces of the data (a deterministic sample: the
    same data always get the same choice). ``data``: a NumPy array or a Blosc2 NDArray;
    anything else (a stand-in for data still to come) gets the usual default.
    """
    itemsize = np.dtype(data.dtype).itemsize
    usual = default_compression(itemsize)
    if itemsize != 1:
        return usual
    labels = label_compression()
    if is_seg:
        return labels
    if not _holds_data(data):
        return usual
    sizes = [0, 0]
    for piece in _pieces(data):
        for k, (codec, clevel, filters) in enumerate((usual, labels)):
            sizes[k] += len(blosc2.compress2(piece, cparams=make_cparams(codec, clevel, filters, 1, nthreads=1)))
    return labels if sizes[1] <= LABEL_MARGIN * sizes[0] else usual


def _holds_data(data: Any) -> bool:
    """Whether ``data`` holds values worth sampling: not empty, and not a stand-in for data
    still to come (``MLArray.create``, a streamed conversion: a shape or a broadcast zero)."""
    if isinstance(data, np.ndarray):  # a stride of 0 on an axis of one item is NumPy's way, not a broadcast
        broadcast = any(s == 0 and n > 1 for s, n in zip(data.strides, data.shape, strict=True))
        return data.size > 0 and data.ndim > 0 and not broadcast
    return isinstance(data, blosc2.NDArray) and data.ndim > 0 and 0 not in data.shape


def _pieces(data: Any) -> list[np.ndarray[Any, Any]]:
    """:data:`SAMPLES` boxes of about :data:`SAMPLE_BYTES` each, at evenly spaced places along axis 0.

    Each is whole rows of the last axis, centred on the other axes (the edges of an image
    are often background, where both ways compress alike).
    """
    shape = tuple(int(n) for n in data.shape)
    count = min(SAMPLES, shape[0])
    rows = max(1, SAMPLE_BYTES // shape[-1]) if len(shape) > 1 else SAMPLE_BYTES
    middle = max(0, (shape[-1] - SAMPLE_BYTES) // 2)
    last = slice(middle, middle + SAMPLE_BYTES)  # rows longer than a piece: their middle
    pieces = []
    for k in range(count):
        at = (2 * k + 1) * shape[0] // (2 * count)
        if len(shape) == 1:
            key: tuple[Any, ...] = (slice(max(0, at - rows // 2), at + rows - rows // 2),)
        elif len(shape) == 2:
            key = (slice(at, at + rows), last)
        else:
            start = max(0, (shape[-2] - rows) // 2)
            key = (at, *(n // 2 for n in shape[1:-2]), slice(start, start + rows), last)
        pieces.append(np.ascontiguousarray(np.asarray(data[key])).reshape(-1).view(np.uint8))
    return pieces


def named_enums(given: dict[str, Any]) -> dict[str, Any]:
    """``cparams`` given as a dict, with codec and filter names (``"zstd"``, ``"shuffle"``) as blosc2's enums."""
    out = dict(given)
    codec = out.get("codec")
    if isinstance(codec, str):
        if codec.lower() not in _CODECS:
            raise InvalidArgumentError(f"codec {codec!r} is not one of the .mla codecs: {', '.join(_CODECS)}")
        out["codec"] = _CODECS[codec.lower()]
    filters = out.get("filters")
    if isinstance(filters, (list, tuple)):
        named = []
        for f in filters:
            if isinstance(f, str) and f.lower() not in (*_FILTERS, "nofilter"):
                raise InvalidArgumentError(f"filter {f!r} is not one of the .mla filters: {', '.join(_FILTERS)}")
            named.append(
                (_FILTERS.get(f.lower(), blosc2.Filter.NOFILTER)) if isinstance(f, str) else f  # "nofilter": none
            )
        out["filters"] = named
    return out


def describe_cparams(cparams: Any) -> tuple[str, int, list[str]]:
    """Codec name, level and filter names of blosc2 compression parameters.

    Raises
    ------
    InvalidArgumentError
        A codec or filter the format does not allow, or a level outside 0-9.
    """
    codec = {v: k for k, v in _CODECS.items()}.get(cparams.codec)
    if codec is None:
        raise InvalidArgumentError(
            f"codec {cparams.codec!r} is not supported by the .mla format (it allows {', '.join(_CODECS)})"
        )
    level = cparams.clevel
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= int(level) <= 9:
        raise InvalidArgumentError(f"clevel must be an integer from 0 to 9, got {level!r}")
    names = {v: k for k, v in _FILTERS.items()}
    filters = []
    for f in cparams.filters:
        if f == blosc2.Filter.NOFILTER:
            continue
        if f not in names:
            raise InvalidArgumentError(f"filter {f!r} is not supported by the .mla format")
        filters.append(names[f])
    return codec, int(level), filters


def check_dparams(dparams: Any) -> None:
    """Refuse decompression parameters python-blosc2 would reject late or ignore (``INVALID_ARGUMENT``).

    ``None``, a ``blosc2.DParams``, or a dict whose only member is ``nthreads``, a positive
    int. (python-blosc2 fails on other values only when it opens or decompresses, after a
    file may have been replaced, or ignores them.)
    """
    if dparams is None or isinstance(dparams, blosc2.DParams):
        return
    if not isinstance(dparams, dict):
        raise InvalidArgumentError(
            f"dparams must be a dict such as {{'nthreads': 4}} or a blosc2.DParams, got {type(dparams).__name__}"
        )
    unknown = sorted(str(k) for k in dparams if k != "nthreads")
    if unknown:
        raise InvalidArgumentError(f"dparams has unknown members {unknown}; the one member is 'nthreads'")
    n = dparams.get("nthreads", 1)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidArgumentError(f"dparams['nthreads'] must be a positive int, got {n!r}")
