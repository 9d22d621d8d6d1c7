"""Our own read path: decode only the blocks a selection touches, straight into the result.

python-blosc2's slicing decompresses every touched chunk into a chunk-sized scratch buffer
(zeroed first) and copies the selection out of it. Here, with the compiled block loop of
:mod:`mlarray.storage.blockcopy` (built at install time when a C compiler is at hand), each
touched *block* is decoded on its own with C-Blosc2's ``blosc2_getitem_ctx`` (an item range
that is exactly one block decodes just that block, straight into the buffer given) into a
block-sized per-thread buffer that stays in cache, and only its intersection with the
selection is copied to the result, row by row; one call reads every chunk of a patch.
Without the compiled loop, each touched chunk's touched blocks are decoded into a reused
chunk-sized buffer (``blosc2_decompress_ctx`` with a block mask, nothing zeroed) and copied
out with a few strided NumPy copies per chunk. Special-value chunks and index entries
(zeros, NaN, value runs) are never decoded: the compiled loop fills their boxes from a table
of values made with NumPy (:func:`~mlarray.storage.chunkvalues.chunk_values`; the stand-in fills them with NumPy), so a
read of a frame of millions of chunks costs bytes per chunk, not Python objects. ctypes
releases the GIL during each call, so chunks are decoded on several threads when asked.

C-Blosc2 comes from the python-blosc2 wheel (``blosc2/lib/libblosc2.so*``, the library its
extension modules use), loaded with :mod:`ctypes` by :mod:`mlarray.storage.libblosc2`,
which checks its version at import; when the library is missing or of a version whose ABI
we have not checked, :func:`available` is false and :func:`read_region` returns ``None``
(the caller then uses python-blosc2). ``MLARRAY_NO_FASTREAD=1`` turns the path off,
``MLARRAY_NO_BLOCKCOPY=1`` only the compiled loop.

Interface (used by the local reader and by remote reads)::

    read_region(layout, entries, get_chunk, key, out=None, nthreads=1, path=None, refs=None)
        -> numpy.ndarray | None

- ``layout``: the :class:`~mlarray.storage.chunks.DataLayout` of the frame (its ``blocks``
  field included);
- ``entries``: the decoded chunk index (one signed int64 per chunk, spec 4.4.2);
- ``get_chunk(number)``: the stored bytes of chunk ``number`` (any buffer: bytes, memoryview,
  a uint8 NumPy array), **already checked** with the spec 4.4.4-4.4.6 rules
  (:meth:`~mlarray.storage.chunks.DataSection.check`): this module trusts the block table
  exactly as C-Blosc2 does. It is called only for chunks whose index entry is not special,
  at most once per chunk and read, possibly from several threads at once;
- ``key``: integers, step-1 slices and ``...``; anything else returns ``None``;
- ``out``: optional C-contiguous result array of the right shape and dtype;
- ``refs(numbers)``: optional, for memory-mapped files: the chunks ``numbers`` checked, their
  addresses and lengths in memory and the object to keep alive meanwhile (address 0: ask
  ``get_chunk``), or ``None`` (see :meth:`~mlarray.storage.chunks.DataSection.chunk_refs`);
  the compiled loop then needs no Python per chunk;
- returns the result (``array[key]``), or ``None`` when this path cannot serve the read.
  A chunk that C-Blosc2 cannot decode raises :class:`~mlarray.errors.CorruptFrameError`.

This module decodes; it does not check frames, open files or pick chunks to check.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from mlarray.errors import CorruptFrameError
from mlarray.storage import blockcopy, libblosc2, threads
from mlarray.storage.chunkvalues import GetChunk, Specials, chunk_values, special_chunk, special_entry, stored_chunk
from mlarray.storage.libblosc2 import Library, address
from mlarray.storage.selection import AxisPart, ChunkPlan, Plan, chunk_numbers, normalize_key, plan

if TYPE_CHECKING:
    from mlarray.storage.chunks import DataLayout

DISABLE_ENV = "MLARRAY_NO_FASTREAD"
PATCH_THREADS_MIN = 1 if blockcopy.HELPER is not None else 2
"""Patch reads through ``MLArray`` use this path from this many threads on (whole-array reads
always do). With the compiled block loop that is every read. Without it (NumPy copies) a
one-thread patch read goes to python-blosc2's slicing, which measured faster on the benchmark
CT (1.1-1.3x its CPU time here: the Python per chunk and per copy costs more than the memset
and copy it saves)."""
ZEROED_MIN = 32 << 20
"""A result of at least this many bytes that a read through the compiled block loop
allocates itself is allocated zeroed (``numpy.zeros``) when some chunk it covers is all
zeros, and those chunks, and the blocks of other chunks whose streams are runs of zeros,
are then not written at all. Memory of this size comes fresh from the operating system,
already zero, so the zeroed allocation costs what an uninitialised one does; a label map
loaded whole (two thirds of its chunks zero) loads about 20% faster, on one thread or two,
and skipping its blocks of zeros took another 14-18% off (session 22)."""
STREAM_MIN = 32 << 20
"""A result of at least this many bytes (larger than the CPU's caches) is written with
streaming stores where the compiled loop writes rows of whole cache lines (``stream_rows`` in
``csrc/rows.c``): a plain store first reads the line it writes from memory, a streaming
store does not. A result the loop allocates itself of this size starts on a cache line
(64 bytes), so that its rows do where their length in bytes is a multiple of 64. Chunks of
one value are filled so too. Loads of the benchmark CT took 0.73-0.79 of the time before
on one thread and 0.76-0.80 on two, the 4-channel volume's 0.85-0.91 and 0.78-0.89; the MR's
rows (720 bytes) are not whole lines, its loads are unchanged (session 23)."""

Numbers = Union[Sequence[int], "np.ndarray[Any, Any]"]
"""Chunk numbers or index entries: a sequence of ints or an int64 array."""
ChunkRefs = Callable[[Numbers], "tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], Any] | None"]
"""Addresses and lengths of chunks in memory and which still need their blocks checked
(see :meth:`~mlarray.storage.chunks.DataSection.chunk_refs`)."""
FileRefs = Callable[[Numbers], "tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int] | None"]
"""File offsets and lengths of header-checked chunks and the open file's descriptor
(see :meth:`~mlarray.storage.chunks.DataSection.chunk_offsets`)."""
Marks = tuple[np.ndarray[Any, Any], int]
"""The blocks checked one by one, a bit per block in rows of the given bytes per chunk
(see :meth:`~mlarray.storage.chunks.DataSection.block_marks`)."""


STATUS = libblosc2.STATUS
"""Which C-Blosc2 this path uses, or why none (:data:`mlarray.storage.libblosc2.STATUS`)."""
reads = 0
"""Reads this path has served in this process (tests use it to see that it is used)."""


def available() -> bool:
    """Whether reads can use this path now (library loaded, not turned off by the environment)."""
    return libblosc2.LIB is not None and os.environ.get(DISABLE_ENV, "") in ("", "0")


def _int64_vector(array: Any, length: int) -> bool:
    """``array`` can be handed to C as ``length`` int64 values."""
    return (
        isinstance(array, np.ndarray)
        and array.dtype == np.int64
        and array.shape == (length,)
        and array.flags.c_contiguous
    )


@functools.cache
def _unit(width: int) -> np.dtype[Any]:
    """The raw-bytes dtype boxes are copied in (rows of ``width`` bytes)."""
    return np.dtype(f"V{width}")


class _Read:
    """One read: the plan, the result and how to decode one chunk of it."""

    def __init__(
        self,
        lib: Library,
        layout: DataLayout,
        entries: Sequence[int] | np.ndarray[Any, Any],
        get_chunk: GetChunk,
        selection: Plan,
        out: np.ndarray[Any, Any],
        path: str | None,
    ) -> None:
        self.lib, self.layout, self.entries, self.get_chunk = lib, layout, entries, get_chunk
        self.plan, self.out, self.path = selection, out, path
        self.dtype = out.dtype

    def chunk(self, chunk: ChunkPlan) -> None:
        """Decode the touched blocks of ``chunk`` into the result."""
        entry = self.entries[chunk.number]
        if entry < 0:
            self.out[chunk.dst] = self._special_entry(chunk.number, entry)
            return
        number = chunk.number
        data, kind = stored_chunk(self.get_chunk(number), lambda what: self._fail(number, what))
        if kind:
            self.out[chunk.dst] = self._special_chunk(chunk.number, kind, data)
            return
        worker = libblosc2.worker(self.lib)
        lay, lib = self.layout, self.lib
        wanted = chunk.block_numbers(self.plan.blockgrid)
        src, size = address(data), len(data)
        ctypesize = int(data[3])
        if len(wanted) == 1 and lay.blocksize % ctypesize == 0:
            # one block: decode just it into a block-sized buffer (it stays in cache)
            buf = worker.buffer(lay.blocksize)
            nitems = lay.blocksize // ctypesize
            done = lib.getitem(worker.ctx, src, size, wanted[0] * nitems, nitems, worker.buffer_address, lay.blocksize)
            expected, shift = lay.blocksize, wanted[0] * lay.blocksize
        else:
            buf = worker.buffer(lay.chunksize)
            if len(wanted) < self.plan.nblocks:
                worker.maskout(self.plan.nblocks, wanted)
            done = lib.decompress(worker.ctx, src, size, worker.buffer_address, lay.chunksize)
            expected, shift = lay.chunksize, 0
        if done != expected:
            raise self._fail(chunk.number, f"C-Blosc2 cannot decode it (code {done})")
        out = self.out
        for shape, src_strides, dst_strides, src_offset, dst_offset, width in chunk.boxes:
            unit = _unit(width)
            source = np.ndarray(shape, unit, buf, src_offset - shift, src_strides)
            np.copyto(np.ndarray(shape, unit, out, dst_offset, dst_strides), source)

    def _special_entry(self, number: int, entry: int) -> Any:
        return special_entry(entry, self.dtype, lambda what: self._fail(number, what))

    def _special_chunk(self, number: int, kind: int, data: np.ndarray[Any, Any]) -> Any:
        return special_chunk(kind, data, self.dtype, lambda what: self._fail(number, what))

    def _fail(self, number: int, what: str) -> CorruptFrameError:
        return CorruptFrameError(f"the data section is corrupt: chunk {number}: {what}", path=self.path)


class _NativeRead:
    """One read through the compiled block loop (:mod:`mlarray.storage.blockcopy`).

    The touched chunks are numbered in C order over the chunk grid; the C loop reads a run
    of them, so one thread reads a patch in one call, and the threads of a parallel read
    each make one call and take chunks from a counter they share. Chunks C-Blosc2 need not
    decode (zero/NaN entries, special chunks) are filled by the loop too, from a table of
    their values built here with NumPy: nothing is done in Python per chunk, so a read of
    millions of tiny chunks costs a few bytes of tables per chunk, not Python objects.
    """

    def __init__(
        self,
        lib: Library,
        helper: blockcopy.Helper,
        layout: DataLayout,
        entries: Sequence[int] | np.ndarray[Any, Any],
        get_chunk: GetChunk,
        parts: list[AxisPart],
        out: np.ndarray[Any, Any] | None,
        dtype: np.dtype[Any],
        path: str | None,
        refs: ChunkRefs | None = None,
        file_refs: FileRefs | None = None,
        marks: Marks | None = None,
        specials: Specials | None = None,
    ) -> None:
        self.lib, self.helper, self.layout, self.path = lib, helper, layout, path
        self.marks, self.specials = marks, specials
        self.parts, self.dtype = parts, dtype
        self.getitem = ctypes.cast(lib.getitem, ctypes.c_void_p).value
        ndim = len(parts)
        starts, stops = [p.start for p in parts], [p.stop for p in parts]
        numbers = chunk_numbers(starts, stops, layout.chunks, layout.grid)  # touched chunks, in C order
        self.numbers = numbers
        count = len(numbers)
        # the chunk buffers (or the map they lie in) and the marks, alive until the read ends
        self._keep: list[Any] = [] if marks is None else [marks[0]]
        self.fd = -1
        in_file = file_refs(numbers) if file_refs is not None else None
        found = refs(numbers) if refs is not None and in_file is None else None
        if in_file is not None:  # chunks read with pread by the C loop: file offsets, not addresses
            addresses, sizes, self.fd = in_file
            if not (_int64_vector(addresses, count) and _int64_vector(sizes, count)):
                raise ValueError("file refs must be two contiguous int64 vectors, one entry per chunk")
            pending = np.zeros(count, dtype=np.uint8)
        elif found is None:
            addresses = np.zeros(count, dtype=np.int64)
            sizes = np.zeros(count, dtype=np.int64)
            pending = np.zeros(count, dtype=np.uint8)
        else:
            addresses, sizes, pending, whole = found
            self._keep.append(whole)
            if not (
                _int64_vector(addresses, count)
                and _int64_vector(sizes, count)
                and isinstance(pending, np.ndarray)
                and pending.dtype == np.uint8
                and pending.shape == (count,)
                and pending.flags.c_contiguous
            ):
                raise ValueError("chunk refs must be int64, int64 and uint8 contiguous vectors, one entry per chunk")
        self.addresses, self.sizes, self.pending = addresses, sizes, pending
        self.fill_known = np.zeros(count, dtype=np.uint8)
        self.fill_values = np.zeros((count, dtype.itemsize), dtype=np.uint8)
        self._look_up(np.flatnonzero(addresses == 0), np.asarray(entries, dtype=np.int64), get_chunk)
        self.zeroed = 0  # whether the result holds zeros already (a zeroed allocation)
        self.out = out if out is not None else self._allocate()
        stream = self.out.nbytes >= STREAM_MIN
        self.mode = (blockcopy.ZEROED if self.zeroed else 0) | (blockcopy.STREAM if stream else 0)
        kept_strides = iter(self.out.strides)
        self.geometry = np.array(
            [
                *layout.chunks,
                *layout.blocks,
                *(p.start for p in parts),
                *(p.stop for p in parts),
                *(0 if p.dropped else next(kept_strides) for p in parts),
            ],
            dtype=np.int64,
        )
        self.ndim = ndim

    def _look_up(self, todo: np.ndarray[Any, Any], entries: np.ndarray[Any, Any], get_chunk: GetChunk) -> None:
        """Settle the touched chunks at positions ``todo``, which have no address yet
        (:func:`~mlarray.storage.chunkvalues.chunk_values`): values go to the fill table,
        chunks to decode get the address of the bytes ``get_chunk`` returns (checked whole there)."""
        if not len(todo):
            return
        known, values, regular = chunk_values(
            self.numbers[todo], entries, get_chunk, self.dtype, self._fail, self.specials
        )
        self.fill_values[todo[known]] = values[known]
        self.fill_known[todo[known]] = 1
        for members, data in regular:
            at = todo[members]
            if self.fd >= 0:  # every chunk to decode has a file offset: this one should have had one
                raise self._fail(int(self.numbers[at[0]]), "its stored bytes are not where the chunk index says")
            self._keep.append(data)
            self.addresses[at], self.sizes[at] = address(data), len(data)
            self.pending[at] = 0  # get_chunk checked it whole

    def run(self, first: int, count: int, shared: np.ndarray[Any, Any] | None = None) -> None:
        """Read touched chunks ``[first, first + count)`` on this thread.

        With ``shared`` (int64: the number of lanes, a zero, then a zero per lane), every thread
        of the read calls this and takes chunks in C until none is left, first from a lane of
        its own (``mla_read_region``).
        """
        worker = libblosc2.worker(self.lib)
        worker.buffer(self.layout.blocksize)
        copy_size = worker.copy(int(self.sizes.max(initial=0))) if self.fd >= 0 else 0
        geo = address(self.geometry)
        step = 8 * self.ndim
        failed = ctypes.c_int64(-1)
        done = self.helper.read_region(
            self.getitem,
            worker.ctx,
            self.ndim,
            self.out.dtype.itemsize,
            geo,
            geo + step,
            geo + 2 * step,
            geo + 3 * step,
            None,
            address(self.fill_known),
            address(self.fill_values),
            address(self.addresses),
            address(self.sizes),
            address(self.pending),
            self.fd,
            self.layout.chunksize,
            worker.copy_address if self.fd >= 0 else 0,
            copy_size,
            first,
            count,
            None if shared is None else address(shared),
            address(self.out),
            geo + 4 * step,
            worker.buffer_address,
            self.layout.blocksize,
            ctypes.byref(failed),
            *self._marks_args(),
            None,
            self.mode,
        )
        worker.trim_copy()
        if done < 0:
            number = int(self.numbers[failed.value]) if 0 <= failed.value < len(self.numbers) else -1
            why = blockcopy.ERRORS.get(int(done), f"C-Blosc2 cannot decode it (code {done})")
            raise self._fail(number, why)

    def _marks_args(self) -> tuple[int | None, int, int | None]:
        """The loop's ``block_done``, ``done_stride`` and ``chunk_numbers``: the section's marks of
        blocks checked, for chunks read from the map (those read from the file are checked whole)."""
        if self.marks is None or self.fd >= 0:
            return None, 0, None
        return address(self.marks[0]), self.marks[1], address(self.numbers)

    def _allocate(self) -> np.ndarray[Any, Any]:
        """The result, zeroed when that saves writing chunks of zeros (:data:`ZEROED_MIN`), on a
        cache line when it will be written with streaming stores (:data:`STREAM_MIN`)."""
        shape = tuple(p.stop - p.start for p in self.parts if not p.dropped)
        nbytes = math.prod(shape) * self.dtype.itemsize
        if nbytes >= ZEROED_MIN:
            zero = (self.fill_known != 0) & ~self.fill_values.any(axis=1)  # -0.0 is not zero here: its bytes are not
            if zero.any():
                self.fill_known[zero] = 0  # left as they are: zero already
                self.zeroed = 1  # and blocks of zeros in stored chunks too
        make = np.zeros if self.zeroed else np.empty
        if nbytes < STREAM_MIN:
            return make(shape, dtype=self.dtype)
        return on_cache_line(shape, self.dtype, make)

    def _fail(self, number: int, what: str) -> CorruptFrameError:
        return CorruptFrameError(f"the data section is corrupt: chunk {number}: {what}", path=self.path)


def on_cache_line(
    shape: tuple[int, ...], dtype: np.dtype[Any], make: Callable[..., np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    """``make(shape, dtype)`` (``numpy.empty`` or ``numpy.zeros``) whose first byte is on a 64-byte boundary.

    NumPy's memory (the C library's ``malloc``) is aligned to 16 bytes; the array is a view
    into a buffer 64 bytes longer (its ``base``), so it does not own its data (``resize``
    in place refuses it; everything else treats it as any array).
    """
    nbytes = math.prod(shape) * dtype.itemsize
    raw = make(nbytes + 64, dtype=np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip : skip + nbytes].view(dtype).reshape(shape)


def layout_ok(layout: DataLayout, dtype: np.dtype[Any]) -> bool:
    """The frame's sizes agree with its b2nd geometry (else python-blosc2 decides what it means)."""
    blocks = layout.blocks
    if len(blocks) != len(layout.shape) or len(layout.chunks) != len(blocks) or layout.typesize != dtype.itemsize:
        return False
    if min(blocks, default=0) < 1 or min(layout.chunks, default=0) < 1:
        return False
    extchunk = [-(-c // b) * b for c, b in zip(layout.chunks, blocks, strict=True)]
    return layout.blocksize == math.prod(blocks) * dtype.itemsize and layout.chunksize == math.prod(extchunk) * (
        dtype.itemsize
    )


def read_region(
    layout: DataLayout,
    entries: Sequence[int] | np.ndarray[Any, Any],
    get_chunk: GetChunk,
    key: Any,
    out: np.ndarray[Any, Any] | None = None,
    nthreads: int = 1,
    path: str | None = None,
    refs: ChunkRefs | None = None,
    file_refs: FileRefs | None = None,
    marks: Marks | None = None,
    specials: Specials | None = None,
) -> np.ndarray[Any, Any] | None:
    """``array[key]`` decoded block by block, or ``None`` when this path cannot serve the read.

    See the module docstring for what each argument must be. ``nthreads > 1`` decodes
    chunks on up to that many threads (this one included; fewer when the process cannot
    start more). With ``file_refs`` the compiled loop reads each chunk from the file
    itself (pread into a buffer of its thread's, checked there whole), for whole-array
    reads; ``refs`` then serves only if ``file_refs`` gives ``None``. ``marks``: where the
    loop remembers the blocks of chunks from ``refs`` it has checked
    (:meth:`~mlarray.storage.chunks.DataSection.block_marks`), or ``None``. ``specials``
    tells the values of many special chunks at once (else they are looked at one by one).

    Raises
    ------
    CorruptFrameError
        C-Blosc2 could not decode a block, or a special chunk or entry is not one the
        spec allows.
    ValueError
        ``out`` is not a C-contiguous array of the result's shape and dtype.
    """
    global reads
    lib = libblosc2.LIB
    if lib is None or not available():
        return None
    try:
        dtype = np.dtype(layout.dtype)
    except TypeError:
        return None
    if dtype.hasobject or not layout_ok(layout, dtype):
        return None
    helper = blockcopy.HELPER
    if helper is not None:
        return _read_native(
            lib, helper, layout, entries, get_chunk, key, out, dtype, nthreads, path, refs, file_refs, marks, specials
        )
    selection = plan(layout.shape, layout.chunks, layout.blocks, key, dtype.itemsize)
    if selection is None or len(entries) != layout.nchunks:
        return None
    out = _result(out, selection.shape, dtype)
    read = _Read(lib, layout, entries, get_chunk, selection, out, path)
    chunks = selection.chunks
    if nthreads <= 1 or len(chunks) <= 1 or threads.address_space_limited():
        for chunk in chunks:
            read.chunk(chunk)
    else:
        threads.run_parallel(chunks, read.chunk, int(nthreads))
    reads += 1
    return out


def _result(out: np.ndarray[Any, Any] | None, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``out`` checked, or a new result array."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writable C-contiguous {dtype} array of shape {shape}")
    return out


def _read_native(
    lib: Library,
    helper: blockcopy.Helper,
    layout: DataLayout,
    entries: Sequence[int] | np.ndarray[Any, Any],
    get_chunk: GetChunk,
    key: Any,
    out: np.ndarray[Any, Any] | None,
    dtype: np.dtype[Any],
    nthreads: int,
    path: str | None,
    refs: ChunkRefs | None,
    file_refs: FileRefs | None = None,
    marks: Marks | None = None,
    specials: Specials | None = None,
) -> np.ndarray[Any, Any] | None:
    """:func:`read_region` through the compiled block loop."""
    global reads
    parts = normalize_key(key, layout.shape)
    if parts is None or len(entries) != layout.nchunks:
        return None
    shape = tuple(p.stop - p.start for p in parts if not p.dropped)
    if out is not None or not math.prod(shape):
        out = _result(out, shape, dtype)
    if out is None or out.size:
        read = _NativeRead(
            lib, helper, layout, entries, get_chunk, parts, out, dtype, path, refs, file_refs, marks, specials
        )
        out = read.out
        count = len(read.numbers)
        if nthreads <= 1 or count <= 1 or threads.address_space_limited():
            read.run(0, count)
        else:
            # the lanes of chunks the threads take (``mla_read_region``): each its own, chunks that lie apart
            lanes = min(int(nthreads), count)
            shared = np.zeros(2 + lanes, dtype=np.int64)
            shared[0] = lanes
            threads.run_parallel(range(lanes), lambda _: read.run(0, count, shared), int(nthreads))
    reads += 1
    return out
