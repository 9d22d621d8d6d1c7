"""The short path of one-thread patch reads: a box of step-1 slices (or integers) in one call into C.

A training loop reads many patches, each a box ``image[z0:z1, y0:y1, x0:x1]``, and between
two reads its augmentations and model push this code out of the CPU's caches. The general
read path (:func:`mlarray.storage.fastread.read_region`) plans every read in Python: it
normalizes the key, lists the chunks it touches, looks each up and builds the tables the
compiled loop reads. Measured on the benchmark CT with other reads in between, that took
about a fifth of a 128³ read.

:class:`PatchReader` skips it. Made once per open memory-mapped file, it hands the compiled
loop (:mod:`mlarray.storage.blockcopy`) tables of every chunk: the address, length and
block-check flag (spec 4.4.6) the file's :class:`~mlarray.storage.chunks.DataSection` keeps
for the data chunks it has checked, and, kept here, the value of each special chunk or index
entry seen so far (zeros, NaN, a run of one value; spec 4.4.2, 4.4.4), with the shape of the
chunk grid; the loop finds the chunks a box touches itself. A touched chunk not checked
yet whose header is of the usual forms is checked by the loop (the checks of
:func:`mlarray.storage.headers.quick_pass`, recorded in the section's ledger as that records
them; see :func:`~mlarray.storage.headers.settle_table`), so a fresh handle's first read is
one call too (the values of zeros chunks and value runs go to the reader's table there).
When a touched chunk is still in neither table (NaN chunks and entries, uncommon headers),
the loop refuses before it writes anything; the reader then checks the
touched chunks (:meth:`DataSection.chunk_refs`), notes the values of the special ones and
calls again. So only the first reads of such chunks plan in Python. The blocks of chunks
whose blocks are checked one by one (spec 4.4.6) are checked on their first decoding only:
a bit per block, kept by the section (:meth:`~DataSection.block_marks`) and set by the
loop, remembers those that passed.

Keys :func:`box` does not take (steps, index arrays, masks, new axes, empty selections)
return ``None``, as does a result over
:data:`MAX_BYTES`: the general path reads those. The section writes its tables under its
lock, a chunk's address last; a value is written here before its flag; a release fence
(``mla_publish``) separates the two and the loop loads the address and the flag with
acquire semantics, so on any CPU a chunk seen ready is whole. Neither changes once set:
reads take no lock.
"""

from __future__ import annotations

import array
import ctypes
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from mlarray.errors import CorruptFrameError
from mlarray.storage import blockcopy, fastread, headers, libblosc2, results
from mlarray.storage.chunkvalues import GetChunk, Specials, chunk_values
from mlarray.storage.fastread import ChunkRefs
from mlarray.storage.libblosc2 import address
from mlarray.storage.selection import chunk_numbers, normalize_key
from mlarray.storage.structure import ENTRY_ZEROS

NOT_READY = -1010
"""What the compiled loop returns when a touched chunk is in neither table."""
MAX_BYTES = 1 << 30
"""Larger results take the general path, which checks them against the memory limit first."""
STAGE_MIN = 32 << 20
"""Results of at least this many bytes are written a row of chunks at a time, through a buffer
that stays in the CPU cache, with streaming stores (``read_box_staged`` in ``csrc/box.c``)."""
STAGE_MAX = 8 << 20
"""The largest stage a thread keeps: a row of chunks whose part of the result is larger would not
stay in the cache (and the buffer stays allocated), so such boxes are copied straight to the result."""
staged = 0
"""Reads made through the stage (for the tests)."""
LIMIT_FROM = 64 << 10
"""Results of more bytes are first held against the caller's memory limit (a read that would not fit
takes the general path, which refuses it with ``RESOURCE_LIMIT``); smaller ones need no look."""
_FAILED = 18
"""Where ``mla_read_box`` puts the number of the chunk that failed in its argument array."""


class Box(NamedTuple):
    """What a key selects, as the compiled loop reads it: the box ``[starts, stops)`` (one
    step-1 range per axis) and the shape of the result, without the axes an integer picks."""

    starts: list[int]
    stops: list[int]
    shape: tuple[int, ...]


def box(key: Any, shape: tuple[int, ...]) -> Box | None:
    """The :class:`Box` of a key :func:`~mlarray.storage.selection.normalize_key` takes (step-1
    slices and integers, with NumPy's ``...``, missing axes, clipping and negative positions)
    that selects something, else ``None``: the general path reads (or refuses) the others,
    empty selections included, as NumPy does.
    """
    parts = normalize_key(key, shape) if shape else None  # no axes: nothing for the loop to read
    if parts is None:
        return None
    starts, stops, result = [], [], []
    for start, stop, dropped in parts:
        if stop <= start:
            return None
        starts.append(start)
        stops.append(stop)
        if not dropped:
            result.append(stop - start)
    return Box(starts, stops, tuple(result))


class PatchReader:
    """Reads boxes of one memory-mapped data section, one call into the compiled loop each.

    ``tables``: the section's per-chunk addresses (int64), lengths (int64) and block-check
    flags (uint8), and ``whole``, the map they point into (kept referenced here).
    ``refs``: the section's :meth:`~DataSection.chunk_refs`, which checks chunks and fills
    those tables; ``get_chunk`` its :meth:`~DataSection.chunk_bytes`; ``marks`` its
    :meth:`~DataSection.block_marks` (the blocks checked, shared with the general path);
    ``specials`` its :meth:`~DataSection.special_values`. The caller has
    checked that C-Blosc2 is loaded and that :func:`fastread.layout_ok` holds.
    """

    def __init__(
        self,
        layout: Any,
        entries: Any,
        tables: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]],
        whole: Any,
        refs: ChunkRefs,
        get_chunk: GetChunk,
        path: str | None,
        marks: tuple[np.ndarray[Any, Any], int] | None = None,
        specials: Specials | None = None,
        state: np.ndarray[Any, Any] | None = None,
    ) -> None:
        lib = libblosc2.LIB
        assert lib is not None, "made only when C-Blosc2 is loaded"
        self._lib = lib
        self._getitem: int = ctypes.cast(lib.getitem, ctypes.c_void_p).value or 0
        self.shape = tuple(int(n) for n in layout.shape)
        self.dtype = np.dtype(layout.dtype)
        self.path = path
        self._entries, self._refs, self._get_chunk = np.asarray(entries, dtype=np.int64), refs, get_chunk
        self._specials = specials
        self._itemsize = int(self.dtype.itemsize)
        self._ndim = len(self.shape)
        self._blocksize = int(layout.blocksize)
        self._chunksize = int(layout.chunksize)
        self._chunks = tuple(int(c) for c in layout.chunks)
        self._grid = tuple(-(-n // c) for n, c in zip(self.shape, self._chunks, strict=True))
        self._tables, self._whole = tables, whole
        nchunks = len(tables[0])
        # blocks of chunks checked block by block (spec 4.4.6) are checked on their first decoding only
        self._done: np.ndarray[Any, Any] = np.zeros(0, dtype=np.uint8) if marks is None else marks[0]
        self._done_stride = 0 if marks is None else marks[1]
        self._values = np.zeros(nchunks * self._itemsize, dtype=np.uint8)
        # zeros entries (spec 4.4.2) need no check beyond the index's: known from the start
        self._known = (self._entries == ENTRY_ZEROS).view(np.uint8)
        self._learning = threading.Lock()
        self._fixed = np.array([*self._chunks, *layout.blocks, *self._grid], dtype=np.int64)
        # chunks not checked yet whose headers are of the usual forms are checked by the loop itself
        self._state = state  # (the ledger's; referenced here too, as the loop writes it)
        self._settle = None if state is None else headers.settle_table(layout, self._entries, state, whole)
        step = 8 * self._ndim
        fixed = address(self._fixed)
        # the reader's part of the arguments of mla_read_box (see csrc/box.c), in its order
        self._head: list[int] = [
            *(self._getitem, self._ndim, self._itemsize, fixed, fixed + step, fixed + 2 * step),
            *(address(self._known), address(self._values), *(address(t) for t in tables)),
            *(self._chunksize, self._blocksize, address(self._done) if self._done_stride else 0, self._done_stride),
        ]
        self._tail = [0 if self._settle is None else address(self._settle)]

    def read(
        self, key: Any, out: np.ndarray[Any, Any] | None = None, limit: Callable[[], int] | None = None
    ) -> np.ndarray[Any, Any] | None:
        """``array[key]`` for a key :func:`box` reads, else ``None``.

        With ``out`` (a writable C-contiguous array of the result's shape and the dtype, else
        ``None`` is returned) the box is decoded into it and ``out`` is returned; after a
        ``None`` what it holds is unspecified. An integer for every axis gives a 0-d array.
        ``limit`` gives the most bytes a new result may take (``None``: :data:`MAX_BYTES`).

        Raises
        ------
        CorruptFrameError
            A touched chunk or block fails its check (spec 4.4), or C-Blosc2 cannot decode it.
        """
        helper = blockcopy.HELPER  # looked up per read, as the general path does
        if helper is None or not fastread.available():
            return None
        found = box(key, self.shape)
        if found is None:
            return None
        starts, stops, shape = found
        size = self._itemsize
        for n in shape:
            size *= n
        if out is None:
            if size > MAX_BYTES or (size > LIMIT_FROM and limit is not None and size > limit()):
                return None
            out = results.RESULTS.empty(shape, self.dtype)
        elif not (out.shape == shape and out.dtype == self.dtype and out.flags.c_contiguous and out.flags.writeable):
            return None
        whole = out if len(shape) == self._ndim else out.reshape([b - a for a, b in zip(starts, stops, strict=True)])
        done, failed = self._call(helper, starts, stops, whole)  # the box, integer axes kept (a view of out)
        if done == NOT_READY and self._learn(helper, starts, stops):
            done, failed = self._call(helper, starts, stops, whole)
        if done == NOT_READY:
            return None
        if done < 0:
            why = blockcopy.ERRORS.get(done, f"C-Blosc2 cannot decode it (code {done})")
            raise CorruptFrameError(f"the data section is corrupt: chunk {failed}: {why}", path=self.path)
        fastread.reads += 1
        return out

    def _call(
        self, helper: blockcopy.Helper, starts: list[int], stops: list[int], out: np.ndarray[Any, Any]
    ) -> tuple[int, int]:
        """One call of the compiled loop: blocks decoded (or an error code) and the chunk that failed."""
        worker = libblosc2.worker(self._lib)
        worker.buffer(self._blocksize)
        at = ctypes.addressof(ctypes.c_char.from_buffer(out))  # type: ignore[arg-type]  # writable: faster than address()
        stage = (0, 0)
        if out.nbytes >= STAGE_MIN and helper.streams and out.ndim >= 2:
            needed = self._stage_bytes(starts, stops)
            if needed <= STAGE_MAX:
                stage = worker.stage(needed)
                global staged
                staged += 1
        call: list[int] = [worker.ctx, worker.buffer_address, at, -1, *self._tail, *stage]
        args = array.array("q", [*self._head, *call, *starts, *stops, *out.strides])
        done = helper.read_box(args.buffer_info()[0])
        return int(done), args[_FAILED]

    def _stage_bytes(self, starts: list[int], stops: list[int]) -> int:
        """Bytes of the largest part of the box that one row of chunks covers (``read_box_staged``)."""
        size = (stops[-1] - starts[-1]) * self._itemsize
        for lo, hi, chunk in zip(starts[:-1], stops[:-1], self._chunks[:-1], strict=True):
            size *= min(hi - lo, chunk)
        return size

    def _learn(self, helper: blockcopy.Helper, starts: list[int], stops: list[int]) -> bool:
        """Check the chunks the box touches and note the values of the special ones.

        Returns whether every touched chunk is now in a table (else the general path reads).
        """
        numbers = chunk_numbers(starts, stops, self._chunks, self._grid)
        if self._refs(numbers) is None:
            return False
        with self._learning:
            todo = numbers[(self._tables[0][numbers] == 0) & (self._known[numbers] == 0)]
            if not len(todo):
                return True
            known, values, regular = chunk_values(
                todo, self._entries, self._get_chunk, self.dtype, self._fail, self._specials
            )
            if regular:  # a chunk to decode that has no address: not in the map
                return False
            self._values.reshape(-1, self._itemsize)[todo] = values
            helper.publish()  # the values before their flags, on any CPU: reads take no lock
            self._known[todo] = 1
        return True

    def _fail(self, number: int, what: str) -> CorruptFrameError:
        return CorruptFrameError(f"the data section is corrupt: chunk {number}: {what}", path=self.path)


def reader_for(
    layout: Any,
    entries: Any,
    mapped: tuple[Any, Any] | None,
    refs: ChunkRefs,
    get_chunk: GetChunk,
    path: str | None,
    marks: tuple[np.ndarray[Any, Any], int] | None = None,
    specials: Specials | None = None,
    state: np.ndarray[Any, Any] | None = None,
) -> PatchReader | None:
    """A reader for a data section of ``layout``, or ``None`` where the general path must read.

    ``mapped``: the section's ``(tables, whole)`` (see :class:`PatchReader`), ``None`` when
    the file is not mapped.
    """
    if mapped is None or libblosc2.LIB is None:
        return None
    try:
        dtype = np.dtype(layout.dtype)
    except TypeError:
        return None
    if dtype.hasobject or not fastread.layout_ok(layout, dtype) or len(entries) != layout.nchunks:
        return None
    tables, whole = mapped
    return PatchReader(layout, entries, tables, whole, refs, get_chunk, path, marks, specials, state)
