"""What a data section knows of each of its chunks: which are checked (spec 4.4.2-4.4.6), and where.

:class:`~mlarray.storage.chunks.DataSection` opens the file, reads and checks the chunk
index and hands out chunks; :class:`ChunkChecks` is its ledger. It checks chunks on
demand (one by one, or many headers at once with :mod:`mlarray.storage.headers`), records
the outcome in a byte per chunk (a frame may declare millions of chunks), and, once the
file is memory-mapped, keeps the tables the compiled block loop reads without a lock: each
checked chunk's address in the map, its length and whether its blocks are still to be
checked as they are decoded (spec 4.4.6), and a bit per block checked so far.

The section creates the map, reads the file and names the failures; the ledger is given
those as callables, so it reads nothing but through them and holds no file of its own.
Callers hold the section's lock around everything here but :meth:`ChunkChecks.special_values`.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from mlarray.errors import CorruptFrameError
from mlarray.storage import blockcopy, headers, threads
from mlarray.storage.selection import shared_groups
from mlarray.storage.structure import (
    BLOCKWISE_MAX,
    CHUNK_HEADER,
    ENTRY_NAN,
    ENTRY_ZEROS,
    NAN_DTYPES,
    SPECIAL_NAN,
    SPECIAL_VALUE,
    SPECIAL_ZERO,
    i32,
    many_blocks,
    structure_problem,
)

AHEAD = 1024
"""Files of at most this many chunks have every chunk header checked at the second read of the
map planned in Python (:meth:`ChunkChecks.look_ahead`); larger ones only the chunks each read
touches. (The one-thread patch path checks the headers it touches in its compiled loop.)"""
UNCHECKED, CHECKED, HEAD_CHECKED = 0, 1, 2
"""What is known of a chunk: nothing yet; checked (spec 4.4.2-4.4.6); checked but for its
blocks (4.4.6 rules 2-3), which the block loop checks as it decodes them."""

Tables = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]
"""Per chunk: address in the map (int64, 0 until checked there), length (int64), blocks still to check (uint8)."""


def _distinct(numbers: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``numbers`` sorted, each once (a sort: ``numpy.unique`` hashes, ten times slower here)."""
    ordered = np.sort(numbers)
    keep = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


class ChunkChecks:
    """The checked state of every chunk of one data section, and the tables of its map.

    ``layout``: the section's :class:`~mlarray.storage.chunks.DataLayout`; ``entries``: its
    checked chunk index (read-only int64). ``read(at, size)`` reads file bytes; ``fail(what)``
    makes the section's error; ``mapped()`` returns the whole file's map, making it on first use
    (``None`` where the file is not mapped), and calls :meth:`attach` when it does;
    ``pread_heads()`` gives headers read with ``pread`` and the file size, or ``None``.
    """

    def __init__(
        self,
        layout: Any,
        entries: np.ndarray[Any, Any],
        read: Callable[[int, int], bytes],
        fail: Callable[[str], CorruptFrameError],
        mapped: Callable[[], np.ndarray[Any, Any] | None],
        pread_heads: Callable[[], tuple[headers.Heads, int] | None],
    ) -> None:
        self.layout, self.entries = layout, entries
        self._read, self._fail, self._mapped, self._pread_heads = read, fail, mapped, pread_heads
        self.state = np.zeros(max(layout.nchunks, 0), dtype=np.uint8)
        """Per chunk: :data:`UNCHECKED`, :data:`CHECKED` or :data:`HEAD_CHECKED`."""
        self.nchecked = 0
        """Chunks :data:`CHECKED`."""
        self.complete = False
        """Every chunk has been checked: reads need no more checks."""
        self.whole: np.ndarray[Any, Any] | None = None
        """The file's map once :meth:`attach`-ed."""
        self.refs: Tables | None = None
        """With the map: where each chunk checked there lies (see :data:`Tables`)."""
        self.marks: tuple[np.ndarray[Any, Any], int] | None = None
        """With the map: the blocks the compiled loop has checked one by one (spec 4.4.6), a bit per
        block in rows of the given bytes per chunk (see ``DataSection.block_marks``)."""
        self._ahead = 0
        """Reads of the map that settled chunks, up to the one that ran :meth:`look_ahead` (2)."""

    def attach(self, whole: np.ndarray[Any, Any]) -> None:
        """Start the tables of the map ``whole`` (the section made it, once)."""
        nchunks, lay = self.layout.nchunks, self.layout
        self.refs = (np.zeros(nchunks, dtype=np.int64), np.zeros(nchunks, dtype=np.int64), np.zeros(nchunks, np.uint8))
        nblocks = -(-lay.chunksize // lay.blocksize) if lay.blocksize > 0 else 0
        stride = -(-nblocks // 8) if 0 < nblocks <= BLOCKWISE_MAX else 0  # more: checked whole
        self.marks = (np.zeros(nchunks * stride, dtype=np.uint8), stride) if stride else None
        self.whole = whole

    def detach(self) -> None:
        """Drop the map and its tables (the section is closing)."""
        self.whole = self.refs = self.marks = None

    def settle(self, numbers: Iterable[int] | np.ndarray[Any, Any], blocks: bool = True) -> None:
        """Check the chunks ``numbers`` not checked yet, in chunk order, as :meth:`check_chunk` does
        (their blocks too unless ``blocks`` is false).

        The bookkeeping is NumPy's, not a loop in Python per chunk: zero/NaN index entries
        (spec 4.4.2-4.4.3) are settled all at once, and chunks whose entries are the same
        offset are the same bytes, checked once (a frame of millions of chunks may point
        them all at one stored chunk). The error raised is the one a chunk-by-chunk walk
        in chunk order meets first; the chunks before it stay checked, as do those whose
        headers passed the check of many at once (:meth:`quick`).
        """
        if isinstance(numbers, tuple) and len(numbers) == 1:  # one chunk (chunk_bytes): no arrays
            number = operator.index(numbers[0])
            state = self.state[number]
            if state == UNCHECKED or (blocks and state == HEAD_CHECKED):
                self.mark_one(number, CHECKED if self.check_chunk(number, blocks) else HEAD_CHECKED)
            return
        wanted = numbers if isinstance(numbers, np.ndarray) else np.fromiter(numbers, dtype=np.int64)
        wanted = wanted.astype(np.int64, copy=False)
        if not blocks and self._ahead < 2:
            self._ahead += 1
            if self._ahead == 2:  # a handle that reads again is likely to read on: all at once
                self.look_ahead()
        state = self.state[wanted]
        todo = _distinct(wanted[state == UNCHECKED] if not blocks else wanted[state != CHECKED])
        if not len(todo):
            return
        entries = self.entries[todo]
        special = entries < 0
        known = self.value_entries(entries)
        self.mark(todo[known], CHECKED)
        unknown = special & ~known
        stop = int(todo[np.argmax(unknown)]) if unknown.any() else None  # the first bad entry
        stored = todo[~special]
        if stop is not None:
            stored = stored[stored < stop]
        groups = shared_groups(self.entries[stored])
        if groups is None:  # the usual: a stored chunk per entry
            if not blocks:  # headers checked at once; the rest (uncommon forms, faults) one by one
                stored = self.quick(stored)
            for number in stored.tolist():
                self.mark_one(number, CHECKED if self.check_chunk(number, blocks) else HEAD_CHECKED)
        else:
            for group in groups:
                members = stored[group]
                walked = self.check_chunk(int(members[0]), blocks)
                self._share_refs(members)
                self.mark(members, CHECKED if walked else HEAD_CHECKED)
        if stop is not None:
            self.entry(stop)  # raises: the entry is neither an offset nor a zeros/NaN entry
            raise AssertionError(f"chunk {stop}: an index entry passed that was refused before")

    def settle_all(self, nthreads: int) -> None:
        """Check every chunk not checked yet, the stored ones on up to ``nthreads`` threads for a
        mapped file (their checks run mostly in C and first touch their pages); the error raised
        is that of the first bad chunk in chunk order, as one thread would meet it."""
        todo = np.flatnonzero(self.state != CHECKED)
        if nthreads > 1 and len(todo) > 1 and self._mapped() is not None and not threads.address_space_limited():
            offsets = self.entries[todo]
            _, first = np.unique(offsets, return_index=True)
            lead = todo[first[offsets[first] >= 0]]  # one chunk per stored offset (all, in the usual file)
            passed: list[int] = []

            def one(number: int) -> None:
                self.check_chunk(number)
                passed.append(number)

            with contextlib.suppress(CorruptFrameError):  # reported in chunk order below
                threads.run_parallel(lead.tolist(), one, nthreads)
            self.mark(np.asarray(passed, dtype=np.int64), CHECKED)
        self.settle(todo)  # what is left (after a failure, the bad chunks), in order

    def value_entries(self, entries: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Where ``entries`` are zeros or NaN index entries this frame may hold (spec 4.4.2-4.4.3)."""
        nan = (entries == ENTRY_NAN) & (self.layout.dtype in NAN_DTYPES)
        found: np.ndarray[Any, Any] = (entries == ENTRY_ZEROS) | nan
        return found

    def look_ahead(self) -> None:
        """Once, at the second read of the map that leaves blocks to the block loop and meets
        chunks not checked yet: settle every chunk of a file of at most :data:`AHEAD` chunks whose
        header passes :func:`headers.quick_pass`.

        One pass over a few kilobytes of headers costs less than the checks the next reads
        of the handle would make (a patch touches a dozen chunks or more); the first read
        does not pay for it, as a handle opened for one patch reads no more.
        Quietly: a chunk that does not pass is left unchecked, for a read that touches it
        to check, and to fail if it is faulty; reads that do not touch it are not refused.
        """
        if self.whole is None or self.refs is None or self.layout.nchunks > AHEAD:
            return
        todo = np.flatnonzero(self.state == UNCHECKED)
        entries = self.entries[todo]
        known = self.value_entries(entries)
        self.mark(todo[known], CHECKED)
        # read, not from the map: a first touch of a page costs more than reading 32 bytes,
        # and a read that touches a few of these chunks would map every header's page
        with contextlib.suppress(OSError):
            found = self._pread_heads()
            if found is not None:
                self.quick(todo[entries >= 0], *found)

    def quick(
        self, stored: np.ndarray[Any, Any], heads: headers.Heads | None = None, size: int = 0
    ) -> np.ndarray[Any, Any]:
        """Settle the unchecked chunks ``stored`` (offset entries) whose headers pass
        :func:`headers.quick_pass`, their blocks left to the block loop; return the others, in order.

        The headers are read from the map unless ``heads`` (a file of ``size`` bytes) says otherwise.
        """
        whole, refs = self.whole, self.refs
        if whole is None or refs is None or not len(stored):
            return stored
        offsets = self.entries[stored]
        if heads is None:
            heads, size = headers.from_map(whole), len(whole)
        ok, cbytes, runs = headers.quick_pass(heads, size, self.layout, offsets)
        regular = ok & ~runs
        picked = stored[regular]
        refs[1][picked] = cbytes[regular]
        refs[2][picked] = 1
        helper = blockcopy.HELPER
        if helper is not None:  # the addresses last, after a fence (see check_chunk)
            helper.publish()
        refs[0][picked] = int(whole.__array_interface__["data"][0]) + self.layout.start + offsets[regular]
        self.mark(picked, HEAD_CHECKED)
        self.mark(stored[runs], CHECKED)
        rest: np.ndarray[Any, Any] = stored[~ok]
        return rest

    def mark_one(self, number: int, state: int) -> None:
        """Record chunk ``number`` as now in ``state``."""
        if state == CHECKED and self.state[number] != CHECKED:
            self.nchecked += 1
        self.state[number] = state
        self.complete = self.nchecked == self.layout.nchunks

    def mark(self, numbers: np.ndarray[Any, Any], state: int) -> None:
        """Record the distinct chunks ``numbers`` as now in ``state``."""
        if state == CHECKED:
            self.nchecked += int(np.count_nonzero(self.state[numbers] != CHECKED))
        self.state[numbers] = state
        self.complete = self.nchecked == self.layout.nchunks

    def _share_refs(self, members: np.ndarray[Any, Any]) -> None:
        """Give chunks ``members`` (one entry, so the same bytes) the map reference of the first."""
        refs = self.refs
        if refs is None or len(members) < 2:
            return
        lead = int(members[0])
        refs[1][members] = refs[1][lead]
        refs[2][members] = refs[2][lead]
        helper = blockcopy.HELPER
        if helper is not None:  # the addresses last, after a fence (see check_chunk)
            helper.publish()
        refs[0][members] = refs[0][lead]

    def special_values(self, numbers: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """For the checked stored chunks ``numbers``: each one's special kind (spec 4.4.4; 0 for
        a chunk with blocks) and the item's bytes a value run stands for (zero elsewhere), as
        ``(kinds, rows)``, read from the map all at once.

        ``None`` when the file is not mapped or a chunk is not checked yet (the caller then
        asks for chunks one by one, which checks them).
        """
        whole = self.whole
        numbers = np.asarray(numbers, dtype=np.int64)
        if whole is None or (self.state[numbers] == UNCHECKED).any():
            return None
        at = self.layout.start + self.entries[numbers]
        if (at < 0).any():  # a zeros/NaN entry is not a stored chunk
            return None
        kinds = whole[at + 31] >> 4 & 0x07
        rows = np.zeros((len(numbers), self.layout.typesize), dtype=np.uint8)
        runs = kinds == SPECIAL_VALUE  # checked: 32 + typesize bytes long (spec 4.4.4)
        rows[runs] = whole[at[runs][:, None] + CHUNK_HEADER + np.arange(self.layout.typesize)]
        return kinds, rows

    def entry(self, number: int) -> int | None:
        """Spec 4.4.2-4.4.3: chunk ``number``'s offset in the chunks area; ``None`` for a zeros/NaN entry."""
        lay = self.layout
        entry = self.entries[number]
        if entry < 0:
            if entry == ENTRY_ZEROS or (entry == ENTRY_NAN and lay.dtype in NAN_DTYPES):
                return None
            raise self._fail(f"chunk {number} has the index entry {int(entry) & (2**64 - 1):#x}")
        if entry + CHUNK_HEADER > lay.data_size:
            raise self._fail(f"chunk {number} starts outside the chunks area")
        return int(entry)

    def check_length(self, number: int, entry: int, cbytes: int) -> None:
        """Chunk ``number`` at ``entry`` of ``cbytes`` bytes lies inside the chunks area (spec 4.4.4)."""
        if cbytes < CHUNK_HEADER or entry + cbytes > self.layout.data_size:
            raise self._fail(f"chunk {number} ends outside the chunks area")

    def check_chunk(self, number: int, blocks: bool = True) -> bool:
        """Check chunk ``number`` (its blocks too unless ``blocks`` is false); whether its blocks were checked."""
        entry = self.entry(number)
        if entry is None:
            return True
        at = self.layout.start + entry
        whole = self._mapped()
        if whole is not None and at + CHUNK_HEADER <= len(whole):  # checked in place: nothing copied
            view = memoryview(whole)  # type: ignore[arg-type]
            cbytes = i32(view, at + 12)
            blocks = blocks or many_blocks(view, at) or bool(view[at + 31] & 0x70)  # special chunks: no blocks
            self.check_length(number, entry, cbytes)
            if at + cbytes > len(whole):
                raise self._fail("the file ends inside the data section")
            self.check_bytes(number, view[at : at + cbytes], blocks)
            refs = self.refs  # once: a close() by another thread sets it to None
            if refs is not None and not whole[at + 31] & 0x70:  # not a special chunk: C decodes it
                # the address last, after a fence: the patch path reads a chunk whose address is set without the lock
                refs[1][number] = cbytes
                refs[2][number] = 0 if blocks else 1
                helper = blockcopy.HELPER
                if helper is not None:
                    helper.publish()
                refs[0][number] = int(whole.__array_interface__["data"][0]) + at
            return blocks
        cbytes = i32(self._read(at + 12, 4), 0)
        self.check_length(number, entry, cbytes)
        chunk = self._read(at, cbytes)
        blocks = blocks or many_blocks(chunk, 0)
        self.check_bytes(number, chunk, blocks)
        return blocks

    def check_bytes(self, number: int, chunk: bytes | memoryview, blocks: bool = True) -> None:
        """Spec 4.4.4-4.4.6 on the bytes of chunk ``number`` (its blocks too unless ``blocks`` is false)."""
        problem = structure_problem(chunk, blocks=blocks)
        if problem is None:
            problem = self._data_chunk_problem(chunk)
        if problem is not None:
            raise self._fail(f"chunk {number}: {problem}")

    def _data_chunk_problem(self, chunk: bytes | memoryview) -> str | None:
        """Spec 4.4.4 checks 3-5 (the structure checks passed)."""
        lay = self.layout
        if i32(chunk, 4) != lay.chunksize:
            return "its size differs from the frame's chunk size"
        if chunk[3] != lay.typesize:
            return f"its item size {chunk[3]} differs from the frame's ({lay.typesize})"
        if i32(chunk, 8) != lay.blocksize:  # check 4, special chunks too (C-Blosc2 refuses them otherwise)
            return "its block size differs from the frame's"
        kind = chunk[31] >> 4 & 0x07
        if kind == SPECIAL_ZERO or (kind == SPECIAL_NAN and lay.dtype in NAN_DTYPES):
            return None if len(chunk) == CHUNK_HEADER else "a special chunk of the wrong length"
        if kind == SPECIAL_VALUE:
            return None if len(chunk) == CHUNK_HEADER + lay.typesize else "a value run of the wrong length"
        if kind:
            return f"a special chunk of kind {kind}"
        return None
