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
from mlarray.layout import default_compression

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
