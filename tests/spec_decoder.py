"""A second reader of the data section, written from ``spec/mlarray.md`` section 4.4 alone.

It does not use :mod:`mlarray` at all: it walks the frame bytes (prefix, frame header
elements 4-8, the ``b2nd`` metalayer, the chunk index, the index entries, the Blosc chunk
headers and block tables) exactly as the spec describes and rebuilds the array from the
block layout it specifies. The one thing it takes from a library is the codec layer: a
*regular* Blosc chunk that passed every structural check is handed to
``blosc2.decompress``, as the spec allows ("decompressed as the Blosc2 chunk format
says"). ``tests/test_spec.py`` compares what it produces with NumPy and with the golden
hashes of the conformance suite, so the spec cannot drift from what real files hold.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import blosc2
import msgpack
import numpy as np


class SpecError(Exception):
    """The file breaks a rule of spec section 4.4 (a reader reports ``CORRUPT_FRAME``)."""


@dataclass(frozen=True)
class Geometry:
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    blocks: tuple[int, ...]
    dtype: str
    typesize: int
    blocksize: int
    chunksize: int
    nbytes: int
    data_size: int  # frame header element 5

    @property
    def ext_chunks(self) -> tuple[int, ...]:
        return tuple(-(-c // b) * b for c, b in zip(self.chunks, self.blocks, strict=True))

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) if c else 0 for s, c in zip(self.shape, self.chunks, strict=True))


def _i32(buf: bytes, at: int) -> int:
    return int(struct.unpack_from("<i", buf, at)[0])


def geometry(raw: bytes) -> tuple[Geometry, int, int]:
    """The sizes the data section needs, and the section's ``[start, end)`` in the file."""
    header_size = struct.unpack(">i", raw[11:15])[0]
    frame_size = struct.unpack(">Q", raw[16:24])[0]
    trailer_len = struct.unpack(">I", raw[frame_size - 22 : frame_size - 18])[0]
    fields = msgpack.unpackb(raw[:header_size], raw=True, strict_map_key=False)
    layers = fields[-1]
    b2nd = layers[2][list(layers[1]).index(b"b2nd")]
    _v, _ndim, shape, chunks, blocks, _fmt, dtype = msgpack.unpackb(b2nd, raw=True)
    geo = Geometry(
        tuple(shape), tuple(chunks), tuple(blocks), dtype.decode("ascii"),
        typesize=fields[6], blocksize=fields[7], chunksize=fields[8], nbytes=fields[4], data_size=fields[5],
    )  # fmt: skip
    return geo, header_size, frame_size - trailer_len


def _check_blocks(chunk: bytes, nblocks: int, header_len: int) -> None:
    """Spec 4.4.6: block starts, stream sizes and block ranges stay inside the chunk, disjoint."""
    flags, typesize, nbytes, blocksize, cbytes = chunk[2], chunk[3], _i32(chunk, 4), _i32(chunk, 8), _i32(chunk, 12)
    table_end = header_len + 4 * nblocks
    first = table_end
    if chunk[31] & 0x01:  # a dictionary follows the block-start table
        if table_end + 4 > cbytes:
            raise SpecError("dictionary size outside the chunk")
        dsize = _i32(chunk, table_end)
        first = table_end + 4 + dsize
        if dsize < 0 or first > cbytes:
            raise SpecError("dictionary outside the chunk")
    ranges = []
    for j in range(nblocks):
        start = pos = _i32(chunk, header_len + 4 * j)
        partial = j == nblocks - 1 and nbytes % blocksize != 0
        streams = typesize if not flags & 0x10 and not partial else 1
        if start < first:
            raise SpecError(f"block {j} starts before the blocks area")
        for _ in range(streams):
            if pos + 4 > cbytes:
                raise SpecError(f"block {j}: stream size outside the chunk")
            csize = _i32(chunk, pos)
            pos += 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
            if pos > cbytes:
                raise SpecError(f"block {j}: stream outside the chunk")
        ranges.append((start, pos))
    ranges.sort()
    for (_, end), (nxt, _) in zip(ranges, ranges[1:], strict=False):
        if end > nxt:
            raise SpecError("two blocks overlap")
        if end < nxt:
            raise SpecError("bytes between two blocks")
    if ranges and (ranges[0][0] != first or ranges[-1][1] != cbytes):
        raise SpecError("bytes before the first or after the last block")


def _fill(kind: int, nbytes: int, dtype: str, value: bytes = b"") -> bytes:
    """The bytes a special chunk or special index entry stands for (spec 4.4.3)."""
    if kind == 1:
        return bytes(nbytes)
    if kind == 2:
        if dtype == "<f4":
            return b"\x00\x00\xc0\x7f" * (nbytes // 4)
        if dtype == "<f8":
            return b"\x00\x00\x00\x00\x00\x00\xf8\x7f" * (nbytes // 8)
        raise SpecError(f"NaN chunk for dtype {dtype}")
    if kind == 3:
        return value * (nbytes // len(value))
    raise SpecError(f"special value {kind}")


def decode_chunk(chunk: bytes, nbytes: int, blocksize: int | None, typesize: int, dtype: str) -> bytes:
    """Spec 4.4.4-4.4.6: check one Blosc chunk's header and structure, then decode it."""
    if len(chunk) < 32 or chunk[2] & 0x05 != 0x05:
        raise SpecError("not an extended Blosc chunk header")
    c_nbytes, c_blocksize, cbytes = _i32(chunk, 4), _i32(chunk, 8), _i32(chunk, 12)
    if cbytes != len(chunk) or c_nbytes != nbytes:
        raise SpecError("chunk sizes disagree")
    if chunk[30] & 0x01 or chunk[31] & 0x08:
        raise SpecError("variable-length blocks or lazy chunk")
    if chunk[2] >> 5 not in (0, 1, 3, 4) or chunk[31] & 0x80:
        raise SpecError("a codec outside spec 4.4.7, or an instrumented one")
    if any(code not in (0, 1, 2, 3, 4, 34, 35, 36) for code in chunk[16:22]):
        raise SpecError("a filter outside spec 4.4.7")
    if any(chunk[16 + k] in (1, 2) and chunk[24 + k] not in (0, chunk[3]) for k in range(6)):
        raise SpecError("a shuffle's parameter other than the item size")
    if any(chunk[16 + k] in (34, 35) and chunk[24 + k] != chunk[3] for k in range(6)):
        raise SpecError("a bytedelta parameter other than the item size")
    if chunk[3] != typesize:
        raise SpecError("the chunk's item size differs from the frame's")
    if blocksize is not None and c_blocksize != blocksize:  # check 4, before the special kinds
        raise SpecError("chunk block size differs from the frame's")
    special = (chunk[31] >> 4) & 0x07
    if special:
        want = 32 + typesize if special == 3 else 32
        if cbytes != want:
            raise SpecError("special chunk of the wrong length")
        return _fill(special, nbytes, dtype, chunk[32 : 32 + typesize])
    if c_blocksize <= 0:
        raise SpecError("block size")
    nblocks = -(-nbytes // c_blocksize)
    if chunk[2] & 0x02:  # stored uncompressed
        if cbytes != 32 + nbytes:
            raise SpecError("uncompressed chunk of the wrong length")
        return chunk[32:]
    if 32 + 4 * nblocks > cbytes:
        raise SpecError("block-start table outside the chunk")
    _check_blocks(chunk, nblocks, 32)
    out = blosc2.decompress(chunk)
    assert isinstance(out, bytes) and len(out) == nbytes
    return out


def chunk_index(raw: bytes, geo: Geometry, start: int, end: int) -> list[int]:
    """Spec 4.4.1-4.4.2: the index chunk at ``header_size + element 5``, decoded to int64 entries."""
    nchunks = int(np.prod(geo.grid))
    at = start + geo.data_size
    if not 0 <= geo.data_size <= end - start - 32:
        raise SpecError("element 5 leaves no room for the index chunk")
    index = raw[at:end]
    if _i32(index, 12) != len(index):
        raise SpecError("the index chunk does not end where the data section ends")
    body = decode_chunk(index, 8 * nchunks, None, 8, "<i8")
    return list(struct.unpack(f"<{nchunks}q", body))


def read_chunk(raw: bytes, geo: Geometry, start: int, entry: int) -> bytes:
    """Spec 4.4.2-4.4.5: the decompressed bytes of the chunk an index entry designates."""
    if entry < 0:
        word = entry & 0xFFFF_FFFF_FFFF_FFFF
        kinds = {0x81: 1, 0x82: 2}  # 0x84, "uninitialised", is refused
        if word & 0x00FF_FFFF_FFFF_FFFF or (word >> 56) not in kinds:
            raise SpecError(f"index entry {word:#x}")
        return _fill(kinds[word >> 56], geo.chunksize, geo.dtype)
    if entry + 32 > geo.data_size:
        raise SpecError("chunk header outside the chunks area")
    cbytes = _i32(raw, start + entry + 12)
    if cbytes < 32 or entry + cbytes > geo.data_size:
        raise SpecError("chunk outside the chunks area")
    return decode_chunk(
        raw[start + entry : start + entry + cbytes], geo.chunksize, geo.blocksize, geo.typesize, geo.dtype
    )


def chunk_to_array(body: bytes, geo: Geometry) -> np.ndarray[Any, Any]:
    """Spec 4.4.5: blocks in C order over the block grid, items in C order inside each block."""
    nd = len(geo.shape)
    per_axis = [e // b for e, b in zip(geo.ext_chunks, geo.blocks, strict=True)]
    items = np.frombuffer(body, dtype=np.dtype(geo.dtype))
    grid = items.reshape(*per_axis, *geo.blocks)
    order = [k for a in range(nd) for k in (a, nd + a)]  # (block_0, item_0, block_1, item_1, ...)
    return grid.transpose(order).reshape(geo.ext_chunks)


def decode(raw: bytes) -> np.ndarray[Any, Any] | None:
    """The whole array of a frame, or ``None`` for a metadata-only file."""
    geo, start, end = geometry(raw)
    metadata_only = geo.shape == (0,) and geo.chunks == (0,) and geo.dtype == "|u1"
    if 0 in geo.shape:  # no chunks (spec 4.4.1, 4.4.8)
        if start != end or geo.data_size != 0:
            raise SpecError("a frame without chunks has an empty data section")
        return None if metadata_only else np.empty(geo.shape, dtype=np.dtype(geo.dtype))
    out = np.empty(geo.shape, dtype=np.dtype(geo.dtype))
    for number, entry in enumerate(chunk_index(raw, geo, start, end)):
        coords = np.unravel_index(number, geo.grid)
        lo = [int(c) * n for c, n in zip(coords, geo.chunks, strict=True)]
        hi = [min(a + n, s) for a, n, s in zip(lo, geo.chunks, geo.shape, strict=True)]
        block = chunk_to_array(read_chunk(raw, geo, start, entry), geo)
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = block[
            tuple(slice(0, b - a) for a, b in zip(lo, hi, strict=True))
        ]
    return out
