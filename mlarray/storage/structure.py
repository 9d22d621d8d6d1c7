"""The structure checks of one Blosc chunk (spec 4.4.4 and 4.4.6), on its raw bytes.

Codecs trust the offsets inside a chunk (block starts, stream sizes): these checks make sure
every block and stream a decoder will follow lies inside the chunk, and that no two blocks
overlap, before any codec sees it. :mod:`mlarray.storage.chunks` applies them to the chunks
of a frame's data section; the compiled block loop (:mod:`mlarray.storage.blockcopy`) runs
the same rules, in the same order, block by block.
"""

from __future__ import annotations

import struct

import numpy as np

from mlarray.errors import ResourceLimitError
from mlarray.storage import blockcopy

CHUNK_HEADER = 32
"""Length of the extended Blosc chunk header every data and index chunk has (spec 4.4.4)."""
SPECIAL_ZERO, SPECIAL_NAN, SPECIAL_VALUE = 1, 2, 3
"""Special-chunk kinds (bits 4-6 of byte 31) a data chunk may have: zeros, NaN, a run of one value (spec 4.4.4)."""
NAN_DTYPES = ("<f4", "<f8")
"""The only element types a NaN chunk or entry may stand for (spec 4.4.2)."""
ENTRY_ZEROS = -0x7F00000000000000  # 0x8100000000000000 as a signed int64
ENTRY_NAN = -0x7E00000000000000  # 0x8200000000000000
"""Chunk index entries that stand for a chunk of zeros and a chunk of NaN (spec 4.4.2-4.4.3)."""
CODECS = frozenset({0, 1, 3, 4})
"""Codec codes a chunk may name in bits 5-7 of its flags (spec 4.4.7): BloscLZ, LZ4 (and
LZ4HC), zlib, Zstd. A user-defined or plugin codec (6) is refused before any decoder sees the
chunk: the plugins trust their parameters (C-Blosc2's ZFP crashed on a chunk whose only fault
was naming it)."""
FILTERS = frozenset({0, 1, 2, 3, 4, 34, 35, 36})
"""Filter codes bytes 16-21 of an extended header may hold (spec 4.4.7): none, shuffle,
bitshuffle, delta, truncated precision, bytedelta (34, the form before C-Blosc2 2.8, and 35),
integer truncation."""
SIZED_FILTERS = frozenset({1, 2, 34, 35})
"""Filters whose parameter (bytes 24-29) C-Blosc2 takes as the item size: it must be ``ctypesize``
(or 0, meaning ``ctypesize``, for the two shuffles)."""
RESAVE = "save the data again with a codec and filters of spec 4.4.7 (python-blosc2's defaults are among them)"
"""What the errors for a codec or filter outside the specification's list tell the user to do."""
INSTRUMENTED = 0x80
"""Bit of byte 31: the codec was instrumented, so the chunk decodes to timings, not data."""
BLOCKWISE_MAX = 1024
"""Chunks of more blocks are checked whole even where the block loop could check block by block:
its check of one block scans the chunk's block-start table, so decoding every block of a chunk
costs the square of its block count (a hostile file could declare millions)."""


def i32(buf: bytes | memoryview, at: int) -> int:
    """The little-endian signed 32-bit integer at ``at``."""
    return int(struct.unpack_from("<i", buf, at)[0])


def structure_problem(chunk: bytes | memoryview, *, header_chunk: bool = False, blocks: bool = True) -> str | None:
    """Spec 4.4.4 checks 2, 6, 7 and 4.4.6 on a whole chunk; ``None`` when it may be decompressed.

    Special-value chunks pass here (their kind is checked by the caller, which knows what
    the chunk is for). Only the header chunk may have the 16-byte Blosc header. With
    ``blocks=False`` rules 2 and 3 of 4.4.6 (the walk over every block) are left to a
    caller that checks each block before it decodes it (the compiled block loop).
    """
    if len(chunk) < 16:
        return "shorter than a chunk header"
    extended = chunk[2] & 0x05 == 0x05
    head = CHUNK_HEADER if extended else 16
    if not extended and not header_chunk:
        return "no extended chunk header"
    if len(chunk) < head:
        return "shorter than its header"
    flags, ctypesize = chunk[2], chunk[3]
    nbytes, blocksize, cbytes = i32(chunk, 4), i32(chunk, 8), i32(chunk, 12)
    if cbytes != len(chunk) or nbytes < 0 or ctypesize < 1:
        return "inconsistent sizes"
    if extended and (chunk[30] & 0x01 or chunk[31] & 0x08):
        return "variable-length blocks or a lazy chunk"
    codec_problem = _codec_problem(chunk, extended)
    if codec_problem is not None:
        return codec_problem
    if extended and chunk[31] & 0x70:
        return None
    if flags & 0x02:  # stored uncompressed
        return None if cbytes == head + nbytes else "uncompressed size mismatch"
    if nbytes == 0:
        return None
    if blocksize <= 0:
        return "invalid block size"
    nblocks = -(-nbytes // blocksize)
    table_end = head + 4 * nblocks
    if table_end > cbytes:
        return "block-start table outside the chunk"
    first = table_end
    if extended and chunk[31] & 0x01:  # a dictionary follows the table
        if table_end + 4 > cbytes:
            return "dictionary outside the chunk"
        dsize = i32(chunk, table_end)
        first = table_end + 4 + dsize
        if dsize < 0 or first > cbytes:
            return "dictionary outside the chunk"
    return _blocks_problem(chunk, head, nblocks, first) if blocks else None


def _codec_problem(chunk: bytes | memoryview, extended: bool) -> str | None:
    """The chunk names a codec or filter spec 4.4.7 does not list, gives a filter another item
    size, or is instrumented (spec 4.4.4 check 2)."""
    codec = chunk[2] >> 5
    if codec not in CODECS:
        name = "a user-defined codec" if codec == 6 else f"codec {codec}"
        return f"{name} (flags bits 5-7), which .mla files may not use; {RESAVE}"
    if not extended:
        return None
    if chunk[31] & INSTRUMENTED:
        return "an instrumented codec (byte 31 bit 0x80): it decodes to timings, not data"
    filters = bytes(chunk[16:22])
    if filters in _PLAIN:  # the pipelines writers use, whose parameters are all 0
        return None if not any(chunk[24:30]) else _sized_problem(chunk, filters)
    unknown = sorted(set(filters) - FILTERS)
    if unknown:
        return f"filter code {unknown[0]}, which .mla files may not use; {RESAVE}"
    return _sized_problem(chunk, filters)


_PLAIN = frozenset({bytes(6), bytes([0, 0, 0, 0, 0, 1]), bytes([0, 0, 0, 0, 0, 2])})
"""Filter slots of no filter, or one shuffle or bit shuffle in the last slot (python-blosc2's defaults)."""


def _sized_problem(chunk: bytes | memoryview, filters: bytes) -> str | None:
    """A shuffle whose item-size parameter is neither 0 nor ``ctypesize``, or a bytedelta whose is not ``ctypesize``."""
    for slot, code in enumerate(filters):
        if code in SIZED_FILTERS:
            size = chunk[24 + slot]
            # bytedelta's size is always written; C-Blosc2 decodes a block of a chunk without it wrongly
            if size != chunk[3] and (size != 0 or code in (34, 35)):
                return f"filter {code} in slot {slot} has the item size {size}, not the chunk's"
    return None


def many_blocks(buf: bytes | memoryview, at: int) -> bool:
    """The chunk header at ``at`` declares more than :data:`BLOCKWISE_MAX` blocks (or no valid block size)."""
    nbytes, blocksize = i32(buf, at + 4), i32(buf, at + 8)
    return blocksize <= 0 or nbytes > BLOCKWISE_MAX * blocksize


def _blocks_problem(chunk: bytes | memoryview, head: int, nblocks: int, first: int) -> str | None:
    """Every block's streams lie inside the chunk and the blocks tile the area after the table (spec 4.4.6).

    In C when the compiled helper is built (:mod:`mlarray.storage.blockcopy`; the same rules
    in the same order), else here.
    """
    helper = blockcopy.HELPER
    if helper is not None:
        data = np.frombuffer(chunk, dtype=np.uint8)
        address = int(data.__array_interface__["data"][0])
        found = helper.blocks_problem(address, len(data), head, nblocks, first)
        if found < 0:
            raise ResourceLimitError("no memory to check a chunk's block table", path=None)
        return blockcopy.BLOCK_PROBLEMS.get(found)
    return _blocks_problem_py(chunk, head, nblocks, first)


def _blocks_problem_py(chunk: bytes | memoryview, head: int, nblocks: int, first: int) -> str | None:
    flags, ctypesize = chunk[2], chunk[3]
    nbytes, blocksize, cbytes = i32(chunk, 4), i32(chunk, 8), i32(chunk, 12)
    starts = struct.unpack_from(f"<{nblocks}i", chunk, head)
    split = not flags & 0x10
    ranges = []
    for j, start in enumerate(starts):
        if start < first:
            return "block offset outside the chunk"
        whole = j < nblocks - 1 or nbytes % blocksize == 0
        pos = start
        for _ in range(ctypesize if split and whole else 1):
            if pos + 4 > cbytes:
                return "block offset outside the chunk"
            csize = i32(chunk, pos)
            pos += 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
            if pos > cbytes:
                return "compressed stream outside the chunk"
        ranges.append((start, pos))
    ranges.sort()
    for (_, end), (following, _) in zip(ranges, ranges[1:], strict=False):
        if end > following:
            return "two blocks overlap"
        if end < following:
            return blockcopy.BLOCK_PROBLEMS[6]
    if ranges and (ranges[0][0] != first or ranges[-1][1] != cbytes):
        return blockcopy.BLOCK_PROBLEMS[6]
    return None
