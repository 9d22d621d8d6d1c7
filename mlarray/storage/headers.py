"""The headers of many stored chunks checked at once, with NumPy (spec 4.4.2-4.4.4, 4.4.6 rule 1).

:class:`~mlarray.storage.chunks.DataSection` checks a chunk in Python, field by field
(:func:`~mlarray.storage.structure.structure_problem`), some 30 µs a chunk: the first
reads of a fresh handle, each touching a dozen chunks never checked, paid that for every
one of them. Here the 32-byte headers of many chunks of a memory-mapped file are gathered
into one array and checked a column at a time.

Only the forms writers produce pass here: an extended header, listed codecs and filters
(with the item sizes spec 4.4.7 asks of them), no dictionary, not stored uncompressed, few
enough blocks to be checked one by one as they are decoded (the blocks themselves, rules 2-3
of 4.4.6, are left to the block loop, as for the per-chunk check with ``blocks=False``), and
the special-value chunks of 4.4.4. Passing here means what passing the per-chunk check
means; a chunk that does not pass may still be valid (an uncommon form), and is left to the
per-chunk check, which names the problem if it has one.
Pure: reads headers (from the map or with ``pread``), changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from mlarray.storage.libblosc2 import address
from mlarray.storage.structure import (
    BLOCKWISE_MAX,
    CHUNK_HEADER,
    CODECS,
    FILTERS,
    NAN_DTYPES,
    SIZED_FILTERS,
    SPECIAL_NAN,
    SPECIAL_VALUE,
    SPECIAL_ZERO,
)

BATCH = 1 << 15
"""Headers gathered per step (1 MiB of headers): bounds the memory a read of many chunks takes here."""

_CODEC_OK = np.zeros(8, dtype=bool)
_CODEC_OK[sorted(CODECS)] = True
_FILTER_OK = np.zeros(256, dtype=bool)
_FILTER_OK[sorted(FILTERS)] = True
_SIZED = np.zeros(256, dtype=bool)
_SIZED[sorted(SIZED_FILTERS)] = True


def settle_table(
    layout: Any, entries: np.ndarray[Any, Any], state: np.ndarray[Any, Any], whole: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any] | None:
    """What the compiled patch loop needs to make :func:`quick_pass`'s checks itself, for chunks
    a read touches that are not checked yet (``settle_chunk`` in ``csrc/loop.c``), or ``None``
    where it cannot: an int64 array of addresses and sizes (see there).

    ``entries``: the checked chunk index (int64); ``state``: the ledger's byte per chunk
    (:data:`~mlarray.storage.chunkchecks.UNCHECKED` ...), which the loop sets for the chunks it
    settles; ``whole``: the file's map. The caller keeps all three alive while the loop may run.
    Chunks with blocks, zeros chunks and value runs are settled there; everything else (NaN
    chunks, the forms only the per-chunk check takes) is left to :func:`quick_pass` and the
    per-chunk check, as before.
    """
    sizes = (layout.chunksize, layout.blocksize, layout.typesize)
    if type(layout.data_size) is not int or min(sizes) <= 0 or layout.typesize > 255:
        return None
    arrays = (entries, state, whole)
    if not all(a.flags.c_contiguous for a in arrays) or (entries.dtype, state.dtype) != (np.int64, np.uint8):
        return None
    return np.array(
        [
            *(address(entries), address(state), layout.start, layout.data_size, address(whole), len(whole)),
            *(layout.typesize, layout.chunksize, layout.blocksize),
            *_TABLES,
        ],
        dtype=np.int64,
    )


_TABLES = tuple(address(t) for t in (_CODEC_OK, _FILTER_OK, _SIZED))
"""Where the tables of codecs and filters lie (they never move), for :func:`settle_table`."""


Heads = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]
"""Given file positions (int64, each with 32 bytes of the file after it), the 32 bytes at each:
an ``(n, 32)`` C-contiguous uint8 array (:func:`from_map`, :func:`by_pread`)."""


def from_map(whole: np.ndarray[Any, Any]) -> Heads:
    """Headers gathered from the file's map (``whole``, uint8): touches the pages they lie in."""
    return lambda at: whole[at[:, None] + np.arange(CHUNK_HEADER)]


def by_pread(fd: int) -> Heads:
    """Headers read with ``pread`` from the open file ``fd``: maps no page (a first fault costs
    microseconds on a virtual machine; reading 32 bytes, less than one)."""

    def heads(at: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        data = b"".join([os.pread(fd, CHUNK_HEADER, p) for p in at.tolist()])
        if len(data) != CHUNK_HEADER * len(at):  # the file was shortened: nothing passes here
            return np.zeros((len(at), CHUNK_HEADER), dtype=np.uint8)
        return np.frombuffer(data, dtype=np.uint8).reshape(len(at), CHUNK_HEADER)

    return heads


def quick_pass(
    heads: Heads, size: int, layout: Any, offsets: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Which of the stored chunks at ``offsets`` (index entries >= 0) pass the header checks here.

    ``heads`` reads their headers from a file of ``size`` bytes; ``layout``: the section's
    :class:`~mlarray.storage.chunks.DataLayout`. Returns, per offset, whether the chunk
    passes, its length (``cbytes``, where it passes) and whether it is a special-value
    chunk (no blocks to decode).
    """
    count = len(offsets)
    ok = np.zeros(count, dtype=bool)
    cbytes = np.zeros(count, dtype=np.int64)
    special = np.zeros(count, dtype=bool)
    chunksize, blocksize, typesize = layout.chunksize, layout.blocksize, layout.typesize
    if count == 0 or min(chunksize, blocksize, typesize) <= 0 or type(layout.data_size) is not int:
        return ok, cbytes, special  # the per-chunk check decides
    nblocks = -(-chunksize // blocksize)
    table_end = CHUNK_HEADER + 4 * nblocks
    for lo in range(0, count, BATCH):
        part = slice(lo, lo + BATCH)
        ok[part], cbytes[part], special[part] = _batch(
            heads, size, layout, np.asarray(offsets[part], dtype=np.int64), nblocks, table_end, typesize
        )
    return ok, cbytes, special


def _batch(
    heads: Heads,
    size: int,
    layout: Any,
    offsets: np.ndarray[Any, Any],
    nblocks: int,
    table_end: int,
    typesize: int,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    data_size = int(layout.data_size)
    at = layout.start + offsets
    inside = (offsets >= 0) & (offsets + CHUNK_HEADER <= data_size) & (at + CHUNK_HEADER <= size)
    head = np.zeros((len(at), CHUNK_HEADER), dtype=np.uint8)
    head[inside] = heads(at[inside])  # rows outside stay zero: not extended, so they do not pass
    words = head.view("<i4")  # columns 1-3: nbytes, blocksize, cbytes
    length = words[:, 3].astype(np.int64)
    flags, kind = head[:, 2], head[:, 31] >> 4 & 0x07
    ok = inside & (length >= CHUNK_HEADER) & (offsets + length <= data_size) & (at + length <= size)
    ok &= (flags & 0x05) == 0x05  # an extended header
    ok &= _CODEC_OK[flags >> 5]
    ok &= (words[:, 1] == layout.chunksize) & (head[:, 3] == typesize) & (words[:, 2] == layout.blocksize)
    ok &= (head[:, 30] & 0x01) == 0  # not variable-length blocks
    ok &= (head[:, 31] & 0x89) == 0  # not lazy (0x08) or instrumented (0x80), no dictionary (0x01)
    filters, sizes = head[:, 16:22], head[:, 24:30]  # six filter slots and their parameters
    ok &= _FILTER_OK[filters].all(axis=1)
    sized_wrong = _SIZED[filters] & (sizes != typesize) & ((sizes != 0) | (filters == 34) | (filters == 35))
    ok &= ~sized_wrong.any(axis=1)  # a shuffle's item size 0 or the chunk's; a bytedelta's the chunk's
    regular = ok & (kind == 0)
    regular &= ((flags & 0x02) == 0) & (length >= table_end)  # compressed; the block-start table inside
    if nblocks > BLOCKWISE_MAX:  # such chunks' blocks are checked whole, by the per-chunk check
        regular[:] = False
    nan_ok = layout.dtype in NAN_DTYPES
    runs = ok & (
        ((kind == SPECIAL_ZERO) & (length == CHUNK_HEADER))
        | ((kind == SPECIAL_NAN) & nan_ok & (length == CHUNK_HEADER))
        | ((kind == SPECIAL_VALUE) & (length == CHUNK_HEADER + typesize))
    )
    return regular | runs, np.where(regular | runs, length, 0), runs
