"""Inspect a Blosc2 contiguous frame *before* python-blosc2 opens it.

python-blosc2 acts on some metalayers when it opens a file (``b2o`` and
``proxy-source`` make it open other paths or rebuild objects). So mlarray reads the
frame's own header and trailer first, with bounded reads, and only hands the file
to blosc2 when the frame is well formed, complete, carries only allowed
metalayers and has a header of acceptable size. This also makes reading the
mlarray header cost the same for a 10 MB and a 1 GB file.

The byte layout checked here is restated in ``spec/mlarray.md`` (section "On-disk layout").
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import blosc2
import msgpack

from mlarray.errors import (
    CorruptFrameError,
    ForbiddenMetalayerError,
    HeaderTooLargeError,
    MissingHeaderError,
    NotAFrameError,
    ResourceLimitError,
    TruncatedFileError,
)
from mlarray.storage.source import ByteSource, LocalFile
from mlarray.storage.structure import structure_problem
from mlarray.versions import ALLOWED_METALAYERS, HEADER_KEY, MAX_CHUNK_BYTES, MAX_CHUNKS, MAX_HEADER_BYTES

MAGIC = b"b2frame\x00"
PREFIX_LEN = 24
"""Bytes 0..23: fixarray marker, str8 marker + magic, int32 header_size, uint64 frame_size."""
TRAILER_TAIL = 23
"""The trailer ends with ``0xce`` + uint32 trailer_len + ``0xd8`` + fingerprint type + 16 bytes."""
MAX_FRAME_HEADER = 1 << 20
"""Largest frame header (fixed metalayers included) accepted."""
MAX_TRAILER = MAX_HEADER_BYTES + (1 << 20)
"""Largest trailer accepted: the mlarray header plus room for msgpack framing."""


@dataclass(frozen=True)
class NDInfo:
    """Shape, chunking and dtype recorded in the ``b2nd`` metalayer."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    blocks: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class FrameInfo:
    """What the frame's header and trailer say, read without decompressing any data."""

    file_size: int
    header_size: int
    frame_size: int
    trailer_len: int
    metalayers: tuple[str, ...]
    vlmetalayers: tuple[str, ...]
    nd: NDInfo
    header_bytes: bytes = field(repr=False)
    sizes: tuple[Any, ...] = ()
    """Frame-header elements 4..8: nbytes, compressed size (element 5), typesize, blocksize, chunksize."""


MAX_MSGPACK_LEVELS = 8
"""Deepest msgpack container level in the frame header and trailer (the outer array is level 1)."""


_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2}
_FIXED.update({0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17})
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1), 0xD9: (1, 0)}
_SIZED.update({0xDA: (2, 0), 0xDB: (4, 0)})
_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def _decodable(data: bytes, what: str, path: str) -> bytes:
    """``data`` checked for nesting (spec 4.2: at most :data:`MAX_MSGPACK_LEVELS` levels), with the type
    byte of every ``ext`` object set to 0.

    Readers skip ext values without interpreting them (spec 4.2); msgpack libraries do not:
    they read type -1 as a timestamp (refusing other lengths) and refuse negative types
    when they build their ext object. One walk over the encoding does both.
    """
    deep, found = _walk(data, MAX_MSGPACK_LEVELS)
    if deep:
        raise CorruptFrameError(f"the frame {what} nests msgpack containers too deeply", path=path)
    if not found:
        return data
    out = bytearray(data)
    for at in found:
        out[at] = 0
    return bytes(out)


def _walk(data: bytes, limit: int) -> tuple[bool, list[int]]:
    """Whether msgpack ``data`` nests containers deeper than ``limit`` levels (outermost = level 1),
    and the offsets of its ext type bytes.

    Walks the encoding without decoding values (so ``ext`` objects are never interpreted);
    malformed input is left to the decoder to report.
    """
    exts: list[int] = []
    pos, pending = 0, [1]  # pending[i]: items still to read at depth i
    while pos < len(data) and pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        tag = data[pos]
        pos += 1
        items = 0
        if tag <= 0x7F or tag >= 0xE0:
            continue
        if 0x80 <= tag <= 0x8F or 0x90 <= tag <= 0x9F:
            items = (tag & 0x0F) * (2 if tag <= 0x8F else 1)
        elif 0xA0 <= tag <= 0xBF:
            pos += tag & 0x1F
            continue
        elif tag in _FIXED:
            if 0xD4 <= tag <= 0xD8 and pos < len(data):  # fixext 1..16: the type byte comes first
                exts.append(pos)
            pos += _FIXED[tag]
            continue
        elif tag in _SIZED:
            width, ext = _SIZED[tag]
            if ext and pos + width < len(data):  # ext 8/16/32: the type byte follows the length
                exts.append(pos + width)
            pos += width + ext + int.from_bytes(data[pos : pos + width], "big")
            continue
        elif tag in _CONTAINERS:
            width, per = _CONTAINERS[tag]
            items = per * int.from_bytes(data[pos : pos + width], "big")
            pos += width
        else:
            return False, exts
        if len(pending) > limit:  # this container is at level len(pending)
            return True, exts
        pending.append(items)
    return False, exts


def _unpack(data: bytes, what: str, path: str) -> Any:
    plain = _decodable(data, what, path)
    try:
        return msgpack.unpackb(plain, raw=True, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises many types on garbage
        raise CorruptFrameError(f"the frame {what} cannot be decoded ({type(exc).__name__})", path=path) from None


def _layers(section: Any, what: str, path: str) -> dict[str, bytes]:
    """Decode a ``[idx, {name: offset}, [content, ...]]`` metalayer section.

    Spec 4.2: ``idx`` and the offsets are msgpack integers (their values are not used);
    a name appears once (a repeated name collapses in the decoded map, so the map is then
    shorter than the content array).
    """
    if not (isinstance(section, list) and len(section) == 3 and _is_int(section[0])):
        raise CorruptFrameError(f"the frame {what} metalayer section is malformed", path=path)
    names, contents = section[1], section[2]
    if not isinstance(names, dict) or not isinstance(contents, list) or len(names) != len(contents):
        raise CorruptFrameError(f"the frame {what} metalayer section is malformed", path=path)
    if not all(_is_int(offset) for offset in names.values()):
        raise CorruptFrameError(f"the frame {what} metalayer section has a non-integer offset", path=path)
    out: dict[str, bytes] = {}
    for name, content in zip(names, contents, strict=True):
        if not isinstance(name, bytes) or not isinstance(content, bytes):
            raise CorruptFrameError(f"the frame {what} metalayer section is malformed", path=path)
        out[name.decode("utf-8", errors="replace")] = content
    return out


def _nd_info(content: bytes, path: str) -> NDInfo:
    """Decode the b2nd metalayer: ``[version, ndim, shape, chunks, blocks, dtype_format, dtype]``."""
    value = _unpack(content, "b2nd metalayer", path)
    try:
        _version, ndim, shape, chunks, blocks, dtype_format, dtype = value
        if dtype_format != 0 or isinstance(dtype_format, bool):
            raise ValueError  # spec: 0 = a NumPy type string, the only format allowed
        if not all(_is_int(x) for v in (shape, chunks, blocks) for x in v):
            raise ValueError  # msgpack integers only: no floats, no booleans
        dims = [tuple(int(x) for x in v) for v in (shape, chunks, blocks)]
        if not all(len(d) == ndim for d in dims) or not isinstance(dtype, bytes):
            raise ValueError
        if any(x < 0 for d in dims for x in d):
            raise ValueError
    except (ValueError, TypeError):
        raise CorruptFrameError("the b2nd metalayer is malformed", path=path) from None
    return NDInfo(dims[0], dims[1], dims[2], dtype.decode("ascii", errors="replace"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_DTYPE = re.compile(rb"[<>|=][A-Za-z]([0-9]+)", re.ASCII)
"""A b2nd dtype: byte order, one ASCII letter, the item size in ASCII digits (spec 4.3, check 1)."""


def _itemsize(dtype: str) -> int:
    match = _DTYPE.fullmatch(dtype.encode("utf-8", errors="replace"))
    if match is None:
        raise ValueError(dtype)
    return int(match.group(1))


def _check_sizes(header: list[Any], nd: NDInfo, path: str) -> None:
    """Spec: the frame header's byte sizes agree with the b2nd shapes; declared sizes stay within limits.

    This keeps a hostile file from making a reader allocate from sizes it declares but
    does not contain.
    """
    try:
        nbytes, typesize, blocksize, chunksize = (header[i] for i in (4, 6, 7, 8))
        if not all(_is_int(v) for v in (nbytes, typesize, blocksize, chunksize)):
            raise TypeError  # msgpack integers only (check 1): a float32 of the same value is not one
        itemsize = _itemsize(nd.dtype)
    except (IndexError, TypeError, ValueError):
        raise CorruptFrameError("the frame header's size fields are malformed", path=path) from None
    if itemsize != typesize:
        raise CorruptFrameError(f"type size {typesize} disagrees with dtype {nd.dtype}", path=path)
    if len(nd.shape) == 0 or len(nd.shape) > 8:
        raise CorruptFrameError(f"the array has {len(nd.shape)} dimensions (1 to 8 allowed)", path=path)
    if nd.shape == (0,) and nd.chunks == (0,):  # metadata-only frame
        return
    if any(c < 1 or b < 1 or b > c for c, b in zip(nd.chunks, nd.blocks, strict=True)):
        raise CorruptFrameError(f"invalid chunk {nd.chunks} / block {nd.blocks} shapes", path=path)
    # Blosc2 stores each chunk padded to whole blocks: the "extended" chunk shape.
    chunk_items = 1
    for c, b in zip(nd.chunks, nd.blocks, strict=True):
        chunk_items *= -(-c // b) * b
    block_items = 1
    for b in nd.blocks:
        block_items *= b
    if chunk_items * typesize > MAX_CHUNK_BYTES:
        raise ResourceLimitError(f"chunks of {chunk_items * typesize} bytes exceed the limit", path=path)
    nchunks = 1
    for s, c in zip(nd.shape, nd.chunks, strict=True):
        nchunks *= -(-s // c)
    if nchunks > MAX_CHUNKS:
        raise ResourceLimitError(f"the frame declares {nchunks} chunks (limit {MAX_CHUNKS})", path=path)
    if chunksize != chunk_items * typesize or blocksize != block_items * typesize:
        raise CorruptFrameError(
            "the frame's chunk/block byte sizes disagree with the b2nd shapes "
            "(chunk bytes must be the chunk shape rounded up to whole blocks, times the type size)",
            path=path,
        )
    if nbytes != nchunks * chunksize:
        raise CorruptFrameError(
            f"the frame declares {nbytes} uncompressed bytes but its shape needs {nchunks * chunksize}", path=path
        )


def _read_exact(source: ByteSource, offset: int, size: int) -> bytes:
    if offset < 0 or offset + size > source.size:
        raise TruncatedFileError("the file ends inside the frame", path=source.name)
    return source.read(offset, size)


def inspect_frame(path: str | os.PathLike[str] | ByteSource) -> FrameInfo:
    """Check the frame structure of ``path`` and return its metadata, reading only header and trailer.

    ``path`` is a local path or any :class:`~mlarray.storage.source.ByteSource` (a file
    object, a remote file): the checks are the same.

    Raises
    ------
    NotAFrameError, TruncatedFileError, CorruptFrameError, ForbiddenMetalayerError,
    MissingHeaderError, HeaderTooLargeError
        See :mod:`mlarray.errors`; the spec's reader algorithm lists the order of checks.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):  # a ByteSource (a protocol check costs ~13 µs)
        return _inspect(path)
    with LocalFile(path) as source:
        return _inspect(source)


def _inspect(f: ByteSource) -> FrameInfo:
    p = f.name
    file_size = f.size
    prefix = f.read(0, min(PREFIX_LEN, file_size))
    if len(prefix) < PREFIX_LEN or prefix[1] != 0xA8 or prefix[2:10] != MAGIC or prefix[0] & 0xF0 != 0x90:
        raise NotAFrameError("not a Blosc2 frame (magic 'b2frame' not found); is this an .mla file?", path=p)
    if prefix[10] != 0xD2 or prefix[15] != 0xCF:
        raise CorruptFrameError("the frame prefix is malformed", path=p)
    (header_size,) = struct.unpack(">i", prefix[11:15])
    (frame_size,) = struct.unpack(">Q", prefix[16:24])
    if frame_size > file_size:
        raise TruncatedFileError(
            f"the frame declares {frame_size} bytes but the file has {file_size}; the file is truncated", path=p
        )
    if frame_size < file_size:
        raise CorruptFrameError(f"{file_size - frame_size} unexpected bytes after the end of the frame", path=p)
    if not PREFIX_LEN < header_size <= min(frame_size - TRAILER_TAIL, MAX_FRAME_HEADER):
        raise CorruptFrameError(f"implausible frame header size {header_size}", path=p)
    header = _unpack(_read_exact(f, 0, header_size), "header", p)
    if not isinstance(header, list) or not header:
        raise CorruptFrameError("the frame header is malformed", path=p)
    layers = _layers(header[-1], "header", p)
    forbidden = sorted(set(layers) - ALLOWED_METALAYERS)
    if forbidden:
        raise ForbiddenMetalayerError(
            f"the frame carries metalayer(s) {forbidden}; an .mla file may only carry "
            f"{sorted(ALLOWED_METALAYERS)} (refusing: other layers can make blosc2 open other objects)",
            path=p,
        )
    if "b2nd" not in layers:
        raise NotAFrameError("the frame is not a Blosc2 NDArray (no 'b2nd' metalayer)", path=p)
    nd = _nd_info(layers["b2nd"], p)
    _check_sizes(header, nd, p)

    tail = _read_exact(f, frame_size - TRAILER_TAIL, TRAILER_TAIL)
    if tail[0] != 0xCE or tail[5] != 0xD8:
        raise CorruptFrameError("the frame trailer is malformed (the file may be truncated)", path=p)
    (trailer_len,) = struct.unpack(">I", tail[1:5])
    if trailer_len > MAX_TRAILER:
        raise HeaderTooLargeError(f"the frame trailer is {trailer_len} bytes (limit {MAX_TRAILER})", path=p)
    if not TRAILER_TAIL < trailer_len <= frame_size - header_size:
        raise CorruptFrameError(f"implausible trailer length {trailer_len}", path=p)
    trailer = _read_exact(f, frame_size - trailer_len, trailer_len)
    vlayers = _layers(_trailer_layers(trailer, p), "trailer", p)
    if HEADER_KEY not in vlayers:
        raise MissingHeaderError(
            f"the frame has no '{HEADER_KEY}' header; it is a Blosc2 array but not an .mla file", path=p
        )
    header_bytes = _decompress_header(vlayers[HEADER_KEY], p)
    return FrameInfo(
        file_size=file_size,
        header_size=header_size,
        frame_size=frame_size,
        trailer_len=trailer_len,
        metalayers=tuple(layers),
        vlmetalayers=tuple(vlayers),
        nd=nd,
        header_bytes=header_bytes,
        sizes=tuple(header[4:9]),
    )


def _trailer_layers(trailer: bytes, path: str) -> Any:
    """The vlmetalayer section of the trailer ``[version, layers, trailer_len, fingerprint]``.

    Only the first two elements are decoded: readers ignore the fingerprint (spec), whose
    type byte a msgpack library may otherwise try to interpret (e.g. as a timestamp).
    """
    plain = _decodable(trailer, "trailer", path)
    unpacker = msgpack.Unpacker(io.BytesIO(plain), raw=True, strict_map_key=False, use_list=True)
    try:
        count = unpacker.read_array_header()
        if count < 2:
            raise ValueError
        unpacker.skip()  # trailer version
        layers = unpacker.unpack()
        for _ in range(count - 2):
            unpacker.skip()  # trailer_len and the fingerprint: skipped, never interpreted
        if unpacker.tell() != len(trailer):
            raise ValueError  # spec: no bytes left over in the trailer
        return layers
    except Exception:
        raise CorruptFrameError("the frame trailer is malformed", path=path) from None


SPECIAL_CHUNK_MASK = 0x70
"""Bits 4-6 of byte 31 of an extended Blosc chunk header: a special-value chunk (zeros, NaN, value, uninit)."""


def _decompress_header(chunk: bytes, path: str) -> bytes:
    """Decompress the header's Blosc chunk after checking its declared size and kind."""
    extended = len(chunk) >= 3 and chunk[2] & 0x05 == 0x05
    if extended and (len(chunk) < 32 or chunk[31] & SPECIAL_CHUNK_MASK):
        raise CorruptFrameError(
            "the header chunk is a special-value chunk (zeros, NaN, repeated or uninitialized): it holds no header",
            path=path,
        )
    try:
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(chunk)
    except Exception:
        raise CorruptFrameError("the header chunk is not a valid Blosc chunk", path=path) from None
    if nbytes > MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"the header is {nbytes} bytes (limit {MAX_HEADER_BYTES})", path=path)
    if cbytes != len(chunk):
        raise CorruptFrameError("the header chunk's size disagrees with its container", path=path)
    problem = structure_problem(chunk, header_chunk=True)  # spec 4.6: offsets checked before the codec
    if problem is not None:
        raise CorruptFrameError(f"the header chunk is malformed ({problem})", path=path)
    try:
        out = blosc2.decompress(chunk)
    except Exception:
        raise CorruptFrameError("the header chunk cannot be decompressed", path=path) from None
    if not isinstance(out, bytes) or len(out) != nbytes:
        raise CorruptFrameError("the header chunk decompressed to the wrong size", path=path)
    return out


def data_section(path: str | os.PathLike[str] | ByteSource) -> tuple[int, int]:
    """Byte range ``[start, end)`` of the frame's data section (chunks and chunk index).

    Reads only the frame prefix and the trailer's tail; assumes a structurally valid
    frame (call :func:`inspect_frame` first on untrusted files).
    """
    if isinstance(path, (str, bytes, os.PathLike)):
        with LocalFile(path) as source:
            return data_section(source)
    prefix = _read_exact(path, 0, PREFIX_LEN)
    (header_size,) = struct.unpack(">i", prefix[11:15])
    (frame_size,) = struct.unpack(">Q", prefix[16:24])
    tail = _read_exact(path, frame_size - TRAILER_TAIL, TRAILER_TAIL)
    (trailer_len,) = struct.unpack(">I", tail[1:5])
    return header_size, frame_size - trailer_len


def data_digest(path: str | os.PathLike[str] | ByteSource, block: int = 4 << 20) -> str:
    """Lower-case hex SHA-256 of the frame's data section (see :func:`data_section`)."""
    if isinstance(path, (str, bytes, os.PathLike)):
        with LocalFile(path) as source:
            return data_digest(source, block)
    start, end = data_section(path)
    digest = hashlib.sha256()
    for at in range(start, end, block):
        digest.update(_read_exact(path, at, min(block, end - at)))
    return digest.hexdigest()


def folded_digest(path: str | os.PathLike[str], chunks_sha: Any, sizes: Sequence[int]) -> str | None:
    """Finish the data-section digest from the SHA-256 of the chunks a writer just wrote.

    ``chunks_sha`` has been fed the bytes of every chunk stored in the chunks area, in
    chunk order; ``sizes`` gives each chunk's bytes there (0 for a special-value chunk,
    which lives in the index only). The frame at ``path`` (written by us, not untrusted)
    must hold exactly those chunks back to back: its chunks area has their total size and
    its index points at each of them in turn. Then the digest is ``chunks_sha`` continued
    with the index chunk, read from the file (a few bytes per chunk), and equals
    :func:`data_digest`; otherwise ``None`` (the caller hashes the file instead).
    """
    p = os.fspath(path)
    with LocalFile(p) as f:
        prefix = f.read(0, min(PREFIX_LEN, f.size))
        if len(prefix) < PREFIX_LEN or prefix[2:10] != MAGIC:
            return None
        (header_size,) = struct.unpack(">i", prefix[11:15])
        (frame_size,) = struct.unpack(">Q", prefix[16:24])
        if not PREFIX_LEN < header_size <= min(frame_size, MAX_FRAME_HEADER):
            return None
        header = _unpack(_read_exact(f, 0, header_size), "header", p)
        tail = _read_exact(f, frame_size - TRAILER_TAIL, TRAILER_TAIL)
        (trailer_len,) = struct.unpack(">I", tail[1:5])
        end = frame_size - trailer_len
        area = sum(sizes)
        if not isinstance(header, list) or len(header) < 6 or header[5] != area or header_size + area > end:
            return None
        index = _read_exact(f, header_size + area, end - header_size - area)
    try:
        body = blosc2.decompress(index)
    except Exception:
        return None
    if not isinstance(body, bytes) or len(body) != 8 * len(sizes):
        return None
    offset = 0
    for entry, size in zip(struct.unpack(f"<{len(sizes)}q", body), sizes, strict=True):
        if (size == 0 and entry >= 0) or (size > 0 and entry != offset):
            return None
        offset += size
    digest = chunks_sha.copy()
    digest.update(index)
    return str(digest.hexdigest())
