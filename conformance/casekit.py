"""Tools the conformance case builders share: write frames, replace headers, patch bytes.

The reference writer (:class:`mlarray.MLArray`) refuses to write anything invalid, so
broken cases are made one level lower: with python-blosc2 directly (which writes the
frame and stores header bytes as given) and by patching bytes of a valid file. Used only
by ``generate.py``; readers never need it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import msgpack
import numpy as np

from mlarray import MLArray
from mlarray.storage import decode_header, encode_header
from mlarray.storage.frame import inspect_frame

HEADER_KEY = "mlarray"


@dataclass(frozen=True)
class ValidCase:
    """A file every reader must accept; ``build`` writes it and returns the array it holds."""

    id: str
    section: str
    description: str
    build: Callable[[Path], np.ndarray[Any, Any] | None]
    requirement: str = "must"


@dataclass(frozen=True)
class InvalidCase:
    """A file every reader must refuse with ``code``; ``build`` writes it."""

    id: str
    section: str
    description: str
    code: str
    build: Callable[[Path], None]
    requirement: str = "must"


def rng(seed: int) -> np.random.Generator:
    """A generator seeded per case, so rebuilding a case gives the same values."""
    return np.random.default_rng(seed)


def save(path: Path, array: Any, **kwargs: Any) -> np.ndarray[Any, Any] | None:
    """Write ``array`` with the reference writer; return what the file holds."""
    MLArray(array, **kwargs).save(path)
    return None if array is None else np.asarray(array)


def raw_frame(
    path: Path,
    data: np.ndarray[Any, Any],
    header: bytes | None,
    *,
    meta: dict[str, Any] | None = None,
    vlmeta: dict[str, bytes] | None = None,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
) -> None:
    """Write ``data`` as a Blosc2 NDArray frame with ``header`` stored verbatim as the header bytes."""
    kwargs: dict[str, Any] = {"urlpath": str(path), "mode": "w"}
    if meta is not None:
        kwargs["meta"] = meta
    if chunks is not None:
        kwargs["chunks"] = tuple(chunks)
    if blocks is not None:
        kwargs["blocks"] = tuple(blocks)
    nd = blosc2.asarray(np.ascontiguousarray(data), **kwargs)
    if header is not None:
        nd.schunk.vlmeta.set_vlmeta(HEADER_KEY, header, typesize=1)
    for key, raw in (vlmeta or {}).items():
        nd.schunk.vlmeta.set_vlmeta(key, raw, typesize=1)
    del nd


def json_header(obj: Any) -> bytes:
    """Header bytes for a JSON value (compact), refusing nothing: the caller decides what is valid."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return text_header(text)


def text_header(text: str | bytes) -> bytes:
    """One msgpack str holding ``text`` (bytes are stored as they are, even if not UTF-8)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    n = len(raw)
    if n < 32:
        head = bytes([0xA0 | n])
    elif n < 1 << 8:
        head = b"\xd9" + struct.pack(">B", n)
    elif n < 1 << 16:
        head = b"\xda" + struct.pack(">H", n)
    else:
        head = b"\xdb" + struct.pack(">I", n)
    return head + raw


def stored_header(path: Path) -> dict[str, Any]:
    """The header JSON object of a well-formed file, exactly as stored."""
    return decode_header(inspect_frame(path).header_bytes)


def set_header_bytes(path: Path, header: bytes) -> None:
    """Replace the stored header bytes of ``path`` (a frame the reference reader accepts)."""
    nd = blosc2.open(str(path), mode="a")
    nd.schunk.vlmeta.set_vlmeta(HEADER_KEY, header, typesize=1)
    del nd


def edit_header(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``change`` to the stored header object and store the result (JSON text, NaN allowed)."""
    header = stored_header(path)
    result = change(header)
    set_header_bytes(path, json_header(header if result is None else result))


def valid_base(path: Path, seed: int = 0, **kwargs: Any) -> np.ndarray[Any, Any]:
    """A small valid int16 file with two chunks per axis; the starting point of broken cases."""
    data = rng(seed).integers(-1000, 1000, size=(6, 10, 12), dtype=np.int16)
    options: dict[str, Any] = {"spacing": [2.0, 1.0, 1.0], "chunk_size": (4, 8, 8), "block_size": (2, 4, 4)}
    options.update(kwargs)
    save(path, data, **options)
    return data


def frame_sizes(path: Path) -> tuple[int, int, int]:
    """``(header_size, frame_size, trailer_len)`` read from the prefix and the trailer's tail."""
    raw = path.read_bytes()
    (header_size,) = struct.unpack(">i", raw[11:15])
    (frame_size,) = struct.unpack(">Q", raw[16:24])
    (trailer_len,) = struct.unpack(">I", raw[frame_size - 22 : frame_size - 18])
    return header_size, frame_size, trailer_len


def patch(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of ``path`` at ``offset`` (negative offsets count from the end)."""
    raw = bytearray(path.read_bytes())
    start = offset if offset >= 0 else len(raw) + offset
    raw[start : start + len(data)] = data
    path.write_bytes(bytes(raw))


def _b2nd_content(raw: bytes) -> tuple[list[Any], int, int]:
    """The decoded ``b2nd`` metalayer of a frame and where its content starts and ends."""
    header_size = struct.unpack(">i", raw[11:15])[0]
    header = msgpack.unpackb(raw[:header_size], raw=True, strict_map_key=False)
    content = header[-1][2][list(header[-1][1]).index(b"b2nd")]
    start = raw.index(content)
    return msgpack.unpackb(content, raw=False), start, start + len(content)


def patch_b2nd(path: Path, change: Callable[[list[Any]], None]) -> None:
    """Rewrite the ``b2nd`` metalayer in place; the new content must keep its length.

    ``change`` edits the decoded ``[version, ndim, shape, chunks, blocks, dtype_format, dtype]``
    (a shape entry may become a float: it is then packed as a msgpack float of the same width).
    """
    raw = bytearray(path.read_bytes())
    value, start, end = _b2nd_content(bytes(raw))
    change(value)
    packed = _pack_b2nd(value)
    if len(packed) != end - start:
        raise ValueError("the patched b2nd content changed length")
    raw[start:end] = packed
    path.write_bytes(bytes(raw))


def resize_b2nd(path: Path, change: Callable[[list[Any]], None]) -> None:
    """Rewrite the ``b2nd`` metalayer with content of another length (e.g. a longer ``dtype``).

    C-Blosc2 writes the ``b2nd`` content (a ``bin32``) last in the frame header, so only its
    length, ``header_size`` and ``frame_size`` change; the data section and the trailer move
    unchanged (chunk offsets count from the start of the data section, and the integrity
    digest covers the data section only).
    """
    raw = path.read_bytes()
    header_size = struct.unpack(">i", raw[11:15])[0]
    value, start, end = _b2nd_content(raw)
    if end != header_size or raw[start - 5] != 0xC6:
        raise ValueError("the b2nd content is not the bin32 at the end of the frame header")
    change(value)
    packed = _pack_b2nd(value)
    out = bytearray(raw[: start - 5] + b"\xc6" + struct.pack(">I", len(packed)) + packed + raw[end:])
    out[11:15] = struct.pack(">i", header_size + len(packed) - (end - start))
    out[16:24] = struct.pack(">Q", len(out))
    path.write_bytes(bytes(out))


def _pack_dims(dims: Sequence[Any], int_form: tuple[bytes, str], float_form: tuple[bytes, str]) -> bytes:
    """A fixarray of fixed-width msgpack numbers: integers as C-Blosc2 writes them, floats as floats."""
    out = bytearray([0x90 | len(dims)])
    for d in dims:
        marker, fmt = float_form if isinstance(d, float) else int_form
        out += marker + struct.pack(fmt, d)
    return bytes(out)


def _pack_b2nd(value: list[Any]) -> bytes:
    """Pack a b2nd metalayer the way C-Blosc2 does: fixed-width int64 shape and int32 chunk/block shapes.

    Float entries are packed as float64 (shape) or float32 (chunk and block shapes), the same
    widths; ``dtype`` may be raw bytes (e.g. not ASCII).
    """
    version, ndim, shape, chunks, blocks, fmt, dtype = value
    out = bytearray([0x97])
    out += msgpack.packb(version) + msgpack.packb(ndim)
    out += _pack_dims(shape, (b"\xd3", ">q"), (b"\xcb", ">d"))
    for dims in (chunks, blocks):
        out += _pack_dims(dims, (b"\xd2", ">i"), (b"\xca", ">f"))
    out += msgpack.packb(fmt)
    text = dtype if isinstance(dtype, bytes) else dtype.encode("ascii")
    out += b"\xdb" + struct.pack(">I", len(text)) + text  # C-Blosc2 writes the dtype as a str32
    return bytes(out)


__all__ = [
    "InvalidCase",
    "ValidCase",
    "edit_header",
    "encode_header",
    "frame_sizes",
    "json_header",
    "patch",
    "patch_b2nd",
    "raw_frame",
    "resize_b2nd",
    "rng",
    "save",
    "set_header_bytes",
    "stored_header",
    "text_header",
    "valid_base",
]


def channel_first_4d(units: list[str]) -> Callable[[Path], np.ndarray[Any, Any]]:
    """A builder: a 4-D int16 array with a channel axis and three spatial axes, and ``axis_units``."""
    header = {
        "schema_version": "1.0",
        "array": {"shape": [2, 3, 4, 5], "dtype": "<i2"},
        "spatial": {"axis_labels": ["channel", "spatial", "spatial", "spatial"], "axis_units": units},
    }

    def build(path: Path) -> np.ndarray[Any, Any]:
        data = rng(46).integers(0, 100, size=(2, 3, 4, 5), dtype=np.int16)
        raw_frame(path, data, json_header(header), chunks=(1, 2, 4, 4), blocks=(1, 2, 2, 2))
        return data

    return build


def raw_case(header: Any, *, text: str | None = None, seed: int = 29) -> Any:
    """A file written without the reference writer: the header stored exactly as given."""

    def build(path: Path) -> np.ndarray[Any, Any] | None:
        data = rng(seed).integers(0, 100, size=(5, 9), dtype=np.int16)
        stored = text_header(text) if text is not None else json_header(header)
        raw_frame(path, data, stored, chunks=(4, 4), blocks=(2, 2))
        return data

    return build
