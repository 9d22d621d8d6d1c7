"""Check the data section of a frame (spec 4.4) with our own code before any codec sees it.

Codecs trust the offsets inside a Blosc chunk (block starts, stream sizes) and the chunk
index's entries; C-Blosc2 3.3.5 crashed and read outside its buffers on files whose only
fault was such an offset. So every chunk is range-checked here, on its raw bytes, before
python-blosc2 is allowed to decompress it: the index chunk before ``blosc2.open`` (which
decompresses it), each data chunk before it is read. The rules and their order are those
of spec sections 4.4.1-4.4.6; every failure is a :class:`CorruptFrameError`.

This module reads bytes (through :mod:`mlarray.storage.source`) and decodes nothing but the chunk
index (after checking it).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import operator
import os
import struct
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blosc2
import numpy as np

from mlarray.errors import CorruptFrameError, FileChangedError, InvalidArgumentError, TruncatedFileError
from mlarray.storage import blockcopy, headers, patchread, threads
from mlarray.storage.selection import chunk_numbers, shared_groups
from mlarray.storage.source import ByteSource, LocalFile
from mlarray.storage.structure import (
    BLOCKWISE_MAX,
    CHUNK_HEADER,
    NAN_DTYPES,
    SPECIAL_NAN,
    SPECIAL_VALUE,
    SPECIAL_ZERO,
    i32,
    many_blocks,
    structure_problem,
)

if TYPE_CHECKING:
    from mlarray.storage.frame import FrameInfo

ENTRY_ZEROS = -0x7F00000000000000  # 0x8100000000000000 as a signed int64
ENTRY_NAN = -0x7E00000000000000  # 0x8200000000000000
AHEAD = 1024
"""Files of at most this many chunks have every chunk header checked at the second read of the
map (:meth:`DataSection._look_ahead`); larger ones only the chunks each read touches."""
UNCHECKED, CHECKED, HEAD_CHECKED = 0, 1, 2
"""What :class:`DataSection` knows of a chunk: nothing yet; checked (spec 4.4.2-4.4.6); checked
but for its blocks (4.4.6 rules 2-3), which the block loop checks as it decodes them."""


@dataclass(frozen=True)
class DataLayout:
    """What the frame header says about the data section (spec 4.4, "Throughout this section")."""

    start: int  # header_size
    end: int  # frame_size - trailer_len
    data_size: Any  # element 5; checked to be an int before use
    typesize: int
    blocksize: int
    chunksize: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    grid: tuple[int, ...]
    """Chunks per axis; all 0 for the form ``shape == [0]``, ``chunkshape == [0]``."""
    nchunks: int
    blocks: tuple[int, ...] = ()
    """Block shape (the ``b2nd`` blockshape)."""

    @classmethod
    def of(cls, frame: FrameInfo) -> DataLayout:
        _nbytes, data_size, typesize, blocksize, chunksize = frame.sizes
        grid = tuple(-(-s // c) if c else 0 for s, c in zip(frame.nd.shape, frame.nd.chunks, strict=True))
        return cls(
            frame.header_size,
            frame.frame_size - frame.trailer_len,
            data_size,
            int(typesize),
            int(blocksize),
            int(chunksize),
            frame.nd.shape,
            frame.nd.chunks,
            frame.nd.dtype,
            grid,
            math.prod(grid),
            frame.nd.blocks,
        )


def room_needed(layout: DataLayout, box: tuple[slice, ...] | None, file_size: int) -> int:
    """Most bytes a write into ``box`` (step-1 slices; ``None``: everything) can add to the file.

    C-Blosc2 appends each rewritten chunk (at most its decoded size plus the chunk and
    block headers, when it does not compress) and then writes the chunk index and the
    trailer (metalayers, the header) anew after them.
    """
    numbers = None if box is None else touched_chunks(layout.grid, layout.chunks, layout.shape, box)
    count = layout.nchunks if numbers is None else len(numbers)
    nblocks = -(-layout.chunksize // layout.blocksize)
    per_chunk = layout.chunksize + CHUNK_HEADER + 4 * nblocks * (layout.typesize + 1)
    tail = max(0, file_size - layout.end)  # the index and the trailer, written again after the chunks
    return count * per_chunk + 8 * layout.nchunks + CHUNK_HEADER + tail + 4096


def touched_chunks(
    grid: tuple[int, ...], chunks: tuple[int, ...], shape: tuple[int, ...], key: Any
) -> np.ndarray[Any, Any] | None:
    """Numbers of the chunks ``array[key]`` reads or writes, for keys of integers, slices and ``...``.

    An int64 array, in C order over the chunk grid; ``None`` for any other key (the caller
    then checks every chunk). Slices with a step count every chunk between their first and
    last index.
    """
    parts = list(key) if isinstance(key, tuple) else [key]
    if sum(p is Ellipsis for p in parts) > 1:
        return None
    if any(p is Ellipsis for p in parts):  # not `in`: == on an index array is elementwise
        at = next(i for i, p in enumerate(parts) if p is Ellipsis)
        parts[at : at + 1] = [slice(None)] * (len(shape) - len(parts) + 1)
    parts += [slice(None)] * (len(shape) - len(parts))
    if len(parts) != len(shape):
        return None
    starts: list[int] = []
    stops: list[int] = []
    for part, n in zip(parts, shape, strict=True):
        if isinstance(part, slice):
            try:
                picked = range(*part.indices(n))
            except (TypeError, ValueError):
                return None
            if not picked:
                return np.zeros(0, dtype=np.int64)
            lo, hi = min(picked[0], picked[-1]), max(picked[0], picked[-1])
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            lo = hi = int(part) + n if part < 0 else int(part)
            if not 0 <= lo < n:
                return None
        else:
            return None
        starts.append(lo)
        stops.append(hi + 1)
    return chunk_numbers(starts, stops, chunks, grid)


def may_map() -> bool:
    """Whether whole files may be mapped: no address-space limit is set for this process."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return True
    return resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY


_UNTRACKED: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}
"""Python 3.13+ maps without a duplicate of the file's descriptor (the map needs none; the section keeps one)."""


def _distinct(numbers: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``numbers`` sorted, each once (a sort: ``numpy.unique`` hashes, ten times slower here)."""
    ordered = np.sort(numbers)
    keep = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _frozen(entries: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``entries``, read-only: the checked index must not change under the reads that trust it."""
    entries.flags.writeable = False
    return entries


class DataSection:
    """The chunk index of a frame, checked; checks each chunk on demand (spec 4.4.1-4.4.6).

    ``source`` is a local path or a :class:`~mlarray.storage.source.ByteSource`. A path
    is opened once, here, and kept open: later checks read the very file that was
    opened (and that blosc2 maps), even when another process atomically replaces the
    path in the meantime. A source passed in stays the caller's (``close`` leaves it open).
    Sources that fetch chunk bytes themselves (remote reads) check them with
    :meth:`chunk_span` and :meth:`checked_chunk` instead of :meth:`check`.
    """

    def __init__(self, source: str | os.PathLike[str] | ByteSource, frame: FrameInfo) -> None:
        self.layout = DataLayout.of(frame)
        self._state = np.zeros(max(self.layout.nchunks, 0), dtype=np.uint8)
        """Per chunk: :data:`UNCHECKED`, :data:`CHECKED` or :data:`HEAD_CHECKED` (a byte a chunk, not
        Python objects: a frame may declare millions of chunks)."""
        self._nchecked = 0
        """Chunks :data:`CHECKED`."""
        self._ends: dict[int, int] | None = None
        self._map: np.ndarray[Any, Any] | None = None
        self._refs: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None
        """Per chunk, once checked in the map: the address of its bytes and their count (0 otherwise),
        and 1 where its blocks are still to be checked (spec 4.4.6), 0 where they were."""
        self._marks: tuple[np.ndarray[Any, Any], int] | None = None
        """With the map: the blocks the compiled loop has checked one by one (spec 4.4.6), a bit per
        block in rows of the given bytes per chunk (see :meth:`block_marks`)."""
        self.complete = False
        """Every chunk has been checked: reads need no more checks."""
        self._ahead = 0
        """Reads of the map that settled chunks, up to the one that ran :meth:`_look_ahead` (2)."""
        self._patches: patchread.PatchReader | None | bool = None
        """The short patch path's reader once made, ``False`` where it cannot read this section."""
        self._closed = False
        """Set first by :meth:`close`: reads already started fail with a typed error; nothing maps the file again."""
        self._lock = threading.RLock()
        """Guards the map's creation and the bookkeeping of checked chunks: threads share a handle."""
        if not isinstance(source, (str, bytes, os.PathLike)):  # a ByteSource (a protocol check costs ~13 µs)
            self._source: ByteSource = source
            self._owned = False
        else:
            self._source = LocalFile(source)
            self._owned = True
        self.path = self._source.name
        held = os.fstat(self._source.fileno()) if isinstance(self._source, LocalFile) else None
        self._size = None if held is None else held.st_size
        """The local file's size when opened: a map of it faults (``SIGBUS``) past a shortened end."""
        self._version = None if held is None else (held.st_size, held.st_mtime_ns)
        """The local file's size and modification time when opened: written in place since, it is another file."""
        self._changed = (
            "the file was written in place since this handle opened it (by another handle or program); open it again"
        )
        try:
            self.entries = self._index()
        except BaseException:
            self.close()
            raise

    def ensure_unshortened(self) -> None:
        """Raise ``TRUNCATED_FILE`` when the local file is shorter now than when it was opened,
        ``FILE_CHANGED`` when it was written in place since (its size or modification time changed).

        Reading a memory map past the end of a file that another program shortened in
        place kills the process (``SIGBUS``); reads check first (one ``fstat``). A file
        shortened during a read can still do that, as with any memory-mapped file. A file
        another handle wrote in place (``'r+'``, then closed) holds its chunks elsewhere now:
        this section's checked chunk index no longer describes it.
        """
        if self._closed:
            raise InvalidArgumentError("the array is closed", path=self.path)
        source = self._source
        if self._size is None or not isinstance(source, LocalFile):
            return
        try:
            now = os.fstat(source.fileno())
        except (OSError, ValueError):
            if self._closed:  # by another thread, since the check above
                raise InvalidArgumentError("the array is closed", path=self.path) from None
            raise
        if now.st_size < self._size:
            raise TruncatedFileError(
                "the file was shortened while it was open (by another program?); open it again", path=self.path
            )
        if (now.st_size, now.st_mtime_ns) != self._version:
            raise FileChangedError(self._changed, path=self.path)

    def expect_version(self, version: tuple[int, int], message: str) -> None:
        """Reads raise ``FILE_CHANGED`` with ``message`` unless the file is at ``version`` (size, mtime in ns)."""
        size, mtime = version
        if self._version is not None and (size, mtime) != self._version:
            self._version, self._changed = (size, mtime), message

    def names_checked_file(self, path: str) -> bool:
        """Whether ``path`` names the local file this section checked (same device and inode)."""
        if not isinstance(self._source, LocalFile):
            return False
        try:
            now = os.stat(path)
        except OSError:
            return False
        held = os.fstat(self._source.fileno())
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def checked_file(self) -> tuple[str, tuple[int, int]] | None:
        """The absolute path this section's local file was opened by, and the file's version now (size, mtime in ns).

        ``None`` for other sources. The version is read from the open file itself, so it
        describes the file this section checked even when the path names another by now;
        a file written in place since it was checked raises as a read would
        (:meth:`ensure_unshortened`): what was checked is not in it any more.
        """
        if not isinstance(self._source, LocalFile):
            return None
        self.ensure_unshortened()
        held = os.fstat(self._source.fileno())
        return self._source.absolute, (held.st_size, held.st_mtime_ns)

    def descriptor_path(self) -> str | None:
        """A path that opens the very file this section checked, whatever its name is now (Linux), or ``None``."""
        if not isinstance(self._source, LocalFile):
            return None
        via = f"/proc/self/fd/{self._source.fileno()}"
        return via if os.path.exists(via) else None

    def read_patch(self, key: Any, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any] | None:
        """``array[key]`` by the short patch path (:mod:`mlarray.storage.patchread`), or ``None``.

        With ``out``, decoded into it (see :meth:`PatchReader.read`).

        ``None``: the key is not a box, a chunk it touches is not checked yet or special, or
        the section is not memory-mapped; the general path (:func:`mlarray.reading.fast_read`)
        reads it then. The file is checked first as every read checks it (:meth:`ensure_unshortened`).
        """
        reader = self._patches
        if reader is None:
            if self._closed or blockcopy.HELPER is None or self._mapped() is None or self._refs is None:
                return None
            mapped = (self._refs, self._map)
            made = patchread.reader_for(
                self.layout,
                self.entries,
                mapped,
                self.chunk_refs,
                self.chunk_bytes,
                self.path,
                self._marks,
                self.special_values,
            )
            reader = self._patches = made if made is not None else False
        if reader is False:
            return None
        assert isinstance(reader, patchread.PatchReader)
        self.ensure_unshortened()
        return reader.read(key, out)

    def close(self) -> None:
        """Close the file it opened (also done when the object is collected)."""
        self._closed = True
        self._map = None
        self._refs = None
        self._marks = None
        self._patches = False
        if self._owned:
            self._source.close()

    def chunk_bytes(self, number: int) -> np.ndarray[Any, Any]:
        """The stored bytes of chunk ``number`` (for a local file, a uint8 view of one read-only map of it).

        Only for chunks whose index entry is not special; a chunk not yet :meth:`check`-ed is
        checked first. The map is made on first use and shared by every later call (threads
        included); other sources are read.
        """
        if not self.complete and self._state[number] != CHECKED:
            self.check((number,))
        at = self.layout.start + self.entries[number]
        whole = self._mapped()
        if whole is None:  # a file object: read (and keep nothing)
            head = self._read(at + 12, 4)
            return np.frombuffer(self._read(at, i32(head, 0)), dtype=np.uint8)
        return whole[at : at + int(whole[at + 12 : at + 16].view("<i4")[0])]

    def _mapped(self) -> np.ndarray[Any, Any] | None:
        """The whole local file as a read-only uint8 map (made once), else ``None``.

        Not under an address-space limit (``RLIMIT_AS``, which counts a map at its full
        size): there chunks are read instead.
        """
        if self._map is None and not self._closed and isinstance(self._source, LocalFile) and may_map():
            with self._lock:
                # made once: a second map would orphan the chunk addresses of the first
                if self._map is None and not self._closed:
                    mapped = mmap.mmap(self._source.fileno(), 0, access=mmap.ACCESS_READ, **_UNTRACKED)
                    nchunks = self.layout.nchunks
                    self._refs = (
                        np.zeros(nchunks, dtype=np.int64),
                        np.zeros(nchunks, dtype=np.int64),
                        np.zeros(nchunks, dtype=np.uint8),
                    )
                    lay = self.layout
                    nblocks = -(-lay.chunksize // lay.blocksize) if lay.blocksize > 0 else 0
                    stride = -(-nblocks // 8) if 0 < nblocks <= BLOCKWISE_MAX else 0  # more: checked whole
                    self._marks = (np.zeros(nchunks * stride, dtype=np.uint8), stride) if stride else None
                    self._map = np.frombuffer(mapped, dtype=np.uint8)
        return self._map

    def chunk_refs(
        self, numbers: Sequence[int] | np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], Any] | None:
        """Where the stored bytes of chunks ``numbers`` lie in memory, checked first (for the block loop).

        Returns the addresses and the byte counts (int64 arrays, in the order of ``numbers``),
        a uint8 array that is 1 for the chunks whose blocks are yet to be checked, and the
        map they point into, which the caller keeps referenced while it uses them (a
        referenced map cannot be closed). Address 0 marks a chunk that needs no decoding
        (a zeros/NaN entry or a special chunk: :meth:`chunk_bytes` and the entries tell
        which). ``None`` when the file is not mapped (a file object, an address-space limit).

        Chunks are checked up to their block table here (spec 4.4.2-4.4.4, 4.4.6 rule 1);
        the caller MUST check each block of a flagged chunk before it decodes it (spec
        4.4.6, rules 2-3 for that block), as the compiled block loop does. A read then
        touches only the pages of the blocks it decodes, not every page of its chunks.
        The caller has checked the file itself first (:meth:`ensure_unshortened`, once per
        read: :func:`mlarray.reading.fast_read` does).
        """
        if self._closed:
            raise InvalidArgumentError("the array is closed", path=self.path)
        if not self.complete:
            with self._lock:
                self._settle(numbers, blocks=blockcopy.HELPER is None or self._mapped() is None)
        whole, refs = self._map, self._refs
        if whole is None or refs is None:
            return None
        picked = np.asarray(numbers, dtype=np.intp)
        return refs[0][picked], refs[1][picked], refs[2][picked], whole

    def special_values(self, numbers: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """For the checked stored chunks ``numbers``: each one's special kind (spec 4.4.4; 0 for
        a chunk with blocks) and the item's bytes a value run stands for (zero elsewhere), as
        ``(kinds, rows)``, read from the map all at once.

        ``None`` when the file is not mapped or a chunk is not checked yet (the caller then
        asks for chunks one by one, which checks them).
        """
        whole = self._map
        numbers = np.asarray(numbers, dtype=np.int64)
        if whole is None or (self._state[numbers] == UNCHECKED).any():
            return None
        at = self.layout.start + self.entries[numbers]
        if (at < 0).any():  # a zeros/NaN entry is not a stored chunk
            return None
        kinds = whole[at + 31] >> 4 & 0x07
        rows = np.zeros((len(numbers), self.layout.typesize), dtype=np.uint8)
        runs = kinds == SPECIAL_VALUE  # checked: 32 + typesize bytes long (spec 4.4.4)
        rows[runs] = whole[at[runs][:, None] + CHUNK_HEADER + np.arange(self.layout.typesize)]
        return kinds, rows

    def block_marks(self) -> tuple[np.ndarray[Any, Any], int] | None:
        """Where the compiled loop remembers the blocks it has checked, for reads of the map.

        A uint8 array of ``stride`` bytes per chunk (in C order over the chunk grid) and
        ``stride``: bit ``j`` of a chunk's bytes is set once its block ``j`` passed the checks
        of spec 4.4.6, which later reads of the map then skip. ``None`` when the file is not
        mapped, or its chunks hold more blocks than are checked one by one (checked whole).
        """
        return self._marks if self._mapped() is not None else None

    def chunk_offsets(
        self, numbers: Sequence[int] | np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int] | None:
        """Where the stored bytes of chunks ``numbers`` lie in the file, their headers checked (for pread).

        Returns the file offsets and byte counts (int64 arrays in the order of ``numbers``;
        offset 0 for a chunk that needs no decoding, as in :meth:`chunk_refs`) and the
        descriptor of the open file. The reader MUST check each chunk it reads whole
        (spec 4.4.4, 4.4.6) in its own copy, and that the copy's header is the one checked
        here. ``None`` where chunks are not read so: not a local file, not POSIX, not mapped.
        """
        if os.name != "posix" or not isinstance(self._source, LocalFile):
            return None
        found = self.chunk_refs(numbers)
        if found is None:
            return None
        addresses, sizes, _pending, whole = found
        base = int(whole.__array_interface__["data"][0])
        offsets = np.where(addresses != 0, addresses - base, 0).astype(np.int64)
        return offsets, sizes, self._source.fileno()

    def _read(self, at: int, size: int) -> bytes:
        try:
            return self._source.read(at, size)
        except TruncatedFileError:  # the file shrank (or was replaced) after its frame was checked
            raise self._fail("the file ends inside the data section") from None
        except (OSError, ValueError):
            if self._closed:  # by another thread, during this read
                raise InvalidArgumentError("the array is closed", path=self.path) from None
            raise

    def _fail(self, what: str) -> CorruptFrameError:
        return CorruptFrameError(f"the data section is corrupt: {what}", path=self.path)

    def _index(self) -> np.ndarray[Any, Any]:
        """Spec 4.4.1: the index chunk at ``header_size + element 5``, checked, then decoded."""
        lay = self.layout
        size = lay.data_size
        if not isinstance(size, int) or isinstance(size, bool):
            raise self._fail("frame header element 5 is not an integer")
        if lay.nchunks == 0:
            if lay.end != lay.start or size != 0:
                raise self._fail("a frame without chunks must have an empty data section")
            return np.zeros(0, dtype=np.int64)
        if size < 0 or lay.start + size + CHUNK_HEADER > lay.end:
            raise self._fail("element 5 leaves no room for the chunk index")
        head = self._read(lay.start, 16)  # spec 4.4.1: blosc2.open trusts the sizes of the first chunk
        largest = max(lay.chunksize, 8 * lay.nchunks)
        if not 16 <= i32(head, 12) <= lay.end - lay.start or not 0 <= i32(head, 4) <= largest:
            raise self._fail("the chunk at the start of the data section declares impossible sizes")
        chunk = self._read(lay.start + size, lay.end - lay.start - size)
        problem = structure_problem(chunk)
        if problem is None and i32(chunk, 4) != 8 * lay.nchunks:
            problem = "it does not hold one entry per chunk"
        if problem is None and chunk[3] != 8:
            problem = "its item size is not 8"
        if problem is not None:
            raise self._fail(f"the chunk index chunk: {problem}")
        kind = chunk[31] >> 4 & 0x07
        if kind == SPECIAL_ZERO:
            if len(chunk) != CHUNK_HEADER:
                raise self._fail("the chunk index is a zeros chunk of the wrong length")
            return _frozen(np.zeros(lay.nchunks, dtype=np.int64))
        if kind == SPECIAL_VALUE and len(chunk) == CHUNK_HEADER + 8:
            return _frozen(np.full(lay.nchunks, struct.unpack("<q", chunk[32:40])[0], dtype=np.int64))
        if kind:
            raise self._fail("the chunk index is a special chunk of another kind")
        try:
            body = blosc2.decompress(chunk)
        except Exception:
            raise self._fail("the chunk index cannot be decompressed") from None
        if not isinstance(body, bytes) or len(body) != 8 * lay.nchunks:
            raise self._fail("the chunk index decompressed to the wrong size")
        return _frozen(np.frombuffer(body, dtype="<i8").astype(np.int64))

    def check(self, numbers: Iterable[int] | np.ndarray[Any, Any]) -> None:
        """Spec 4.4.2-4.4.6 on the chunks ``numbers`` (each checked once per instance)."""
        with self._lock:
            self._settle(numbers)

    def _settle(self, numbers: Iterable[int] | np.ndarray[Any, Any], blocks: bool = True) -> None:
        """Check the chunks ``numbers`` not checked yet, in chunk order, as :meth:`_check_chunk` does
        (their blocks too unless ``blocks`` is false); the caller holds the lock.

        The bookkeeping is NumPy's, not a loop in Python per chunk: zero/NaN index entries
        (spec 4.4.2-4.4.3) are settled all at once, and chunks whose entries are the same
        offset are the same bytes, checked once (a frame of millions of chunks may point
        them all at one stored chunk). The error raised is the one a chunk-by-chunk walk
        in chunk order meets first; the chunks before it stay checked, as do those whose
        headers passed the check of many at once (:meth:`_quick`).
        """
        if isinstance(numbers, tuple) and len(numbers) == 1:  # one chunk (chunk_bytes): no arrays
            number = operator.index(numbers[0])
            state = self._state[number]
            if state == UNCHECKED or (blocks and state == HEAD_CHECKED):
                self._mark_one(number, CHECKED if self._check_chunk(number, blocks) else HEAD_CHECKED)
            return
        wanted = numbers if isinstance(numbers, np.ndarray) else np.fromiter(numbers, dtype=np.int64)
        wanted = wanted.astype(np.int64, copy=False)
        if not blocks and self._ahead < 2:
            self._ahead += 1
            if self._ahead == 2:  # a handle that reads again is likely to read on: all at once
                self._look_ahead()
        state = self._state[wanted]
        todo = _distinct(wanted[state == UNCHECKED] if not blocks else wanted[state != CHECKED])
        if not len(todo):
            return
        entries = self.entries[todo]
        special = entries < 0
        known = self._value_entries(entries)
        self._mark(todo[known], CHECKED)
        unknown = special & ~known
        stop = int(todo[np.argmax(unknown)]) if unknown.any() else None  # the first bad entry
        stored = todo[~special]
        if stop is not None:
            stored = stored[stored < stop]
        groups = shared_groups(self.entries[stored])
        if groups is None:  # the usual: a stored chunk per entry
            if not blocks:  # headers checked at once; the rest (uncommon forms, faults) one by one
                stored = self._quick(stored)
            for number in stored.tolist():
                self._mark_one(number, CHECKED if self._check_chunk(number, blocks) else HEAD_CHECKED)
        else:
            for group in groups:
                members = stored[group]
                walked = self._check_chunk(int(members[0]), blocks)
                self._share_refs(members)
                self._mark(members, CHECKED if walked else HEAD_CHECKED)
        if stop is not None:
            self._entry(stop)  # raises: the entry is neither an offset nor a zeros/NaN entry
            raise AssertionError(f"chunk {stop}: an index entry passed that was refused before")

    def _value_entries(self, entries: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Where ``entries`` are zeros or NaN index entries this frame may hold (spec 4.4.2-4.4.3)."""
        nan = (entries == ENTRY_NAN) & (self.layout.dtype in NAN_DTYPES)
        found: np.ndarray[Any, Any] = (entries == ENTRY_ZEROS) | nan
        return found

    def _look_ahead(self) -> None:
        """Once, at the second read of the map that leaves blocks to the block loop and meets
        chunks not checked yet: settle every chunk of a file of at most :data:`AHEAD` chunks whose
        header passes :func:`headers.quick_pass`.

        One pass over a few kilobytes of headers costs less than the checks the next reads
        of the handle would make (a patch touches a dozen chunks or more); the first read
        does not pay for it, as a handle opened for one patch reads no more.
        Quietly: a chunk that does not pass is left unchecked, for a read that touches it
        to check, and to fail if it is faulty; reads that do not touch it are not refused.
        """
        if self._map is None or self._refs is None or self.layout.nchunks > AHEAD:
            return
        todo = np.flatnonzero(self._state == UNCHECKED)
        entries = self.entries[todo]
        known = self._value_entries(entries)
        self._mark(todo[known], CHECKED)
        if isinstance(self._source, LocalFile) and self._size is not None:
            # read, not from the map: a first touch of a page costs more than reading 32 bytes,
            # and a read that touches a few of these chunks would map every header's page
            with contextlib.suppress(OSError):
                self._quick(todo[entries >= 0], headers.by_pread(self._source.fileno()), self._size)

    def _quick(
        self, stored: np.ndarray[Any, Any], heads: headers.Heads | None = None, size: int = 0
    ) -> np.ndarray[Any, Any]:
        """Settle the unchecked chunks ``stored`` (offset entries) whose headers pass
        :func:`headers.quick_pass`, their blocks left to the block loop; return the others, in order.

        The headers are read from the map unless ``heads`` (a file of ``size`` bytes) says otherwise.
        """
        whole, refs = self._map, self._refs
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
        if helper is not None:  # the addresses last, after a fence (see _check_chunk)
            helper.publish()
        refs[0][picked] = int(whole.__array_interface__["data"][0]) + self.layout.start + offsets[regular]
        self._mark(picked, HEAD_CHECKED)
        self._mark(stored[runs], CHECKED)
        rest: np.ndarray[Any, Any] = stored[~ok]
        return rest

    def _mark_one(self, number: int, state: int) -> None:
        if state == CHECKED and self._state[number] != CHECKED:
            self._nchecked += 1
        self._state[number] = state
        self.complete = self._nchecked == self.layout.nchunks

    def _mark(self, numbers: np.ndarray[Any, Any], state: int) -> None:
        """Record the distinct chunks ``numbers`` (none :data:`CHECKED` yet) as now in ``state``."""
        if state == CHECKED:
            self._nchecked += int(np.count_nonzero(self._state[numbers] != CHECKED))
        self._state[numbers] = state
        self.complete = self._nchecked == self.layout.nchunks

    def _share_refs(self, members: np.ndarray[Any, Any]) -> None:
        """Give chunks ``members`` (one entry, so the same bytes) the map reference of the first."""
        refs = self._refs
        if refs is None or len(members) < 2:
            return
        lead = int(members[0])
        refs[1][members] = refs[1][lead]
        refs[2][members] = refs[2][lead]
        helper = blockcopy.HELPER
        if helper is not None:  # the addresses last, after a fence (see _check_chunk)
            helper.publish()
        refs[0][members] = refs[0][lead]

    def stored_regular(self) -> np.ndarray[Any, Any]:
        """Per chunk number, whether its chunk is stored with blocks to decode: not a special
        entry (spec 4.4.2) and not a special-value chunk (4.4.3), which stand for one value
        that the checks of section 4.4 already settled. Reads one byte per distinct stored chunk."""
        entries = self.entries
        regular = entries >= 0
        offsets, inverse = np.unique(entries[regular], return_inverse=True)
        start = self.layout.start
        kinds = np.array([not self._read(start + int(o) + 31, 1)[0] & 0x70 for o in offsets], dtype=bool)
        regular[regular] = kinds[inverse]
        return regular

    def check_all(self, nthreads: int = 1) -> None:
        """Check every chunk not checked yet, on up to ``nthreads`` threads for a mapped file.

        The checks of a mapped chunk run mostly in C (the block table, spec 4.4.6) and
        first touch the chunk's pages, so threads share the work. The error raised is the
        one a one-thread check gives: that of the first bad chunk in chunk order. Like every
        read, it first checks that the file was not shortened or written in place since it
        was opened (:meth:`ensure_unshortened`).
        """
        self.ensure_unshortened()
        if self.complete:
            return
        with self._lock:
            self._check_all(nthreads)

    def _check_all(self, nthreads: int) -> None:
        todo = np.flatnonzero(self._state != CHECKED)
        if nthreads > 1 and len(todo) > 1 and self._mapped() is not None and not threads.address_space_limited():
            offsets = self.entries[todo]
            _, first = np.unique(offsets, return_index=True)
            lead = todo[first[offsets[first] >= 0]]  # one chunk per stored offset (all, in the usual file)
            passed: list[int] = []

            def one(number: int) -> None:
                self._check_chunk(number)
                passed.append(number)

            with contextlib.suppress(CorruptFrameError):  # reported in chunk order below
                threads.run_parallel(lead.tolist(), one, nthreads)
            self._mark(np.asarray(passed, dtype=np.int64), CHECKED)
        self._settle(todo)  # what is left (after a failure, the bad chunks), in order

    def check_key(self, key: Any) -> None:
        """Check the chunks ``array[key]`` touches (all of them for keys other than integers and slices)."""
        self.ensure_unshortened()
        if self.complete:
            return
        lay = self.layout
        numbers = touched_chunks(lay.grid, lay.chunks, lay.shape, key)
        if numbers is None:
            self.check_all()
        else:
            self.check(numbers)

    def _entry(self, number: int) -> int | None:
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

    def _check_length(self, number: int, entry: int, cbytes: int) -> None:
        if cbytes < CHUNK_HEADER or entry + cbytes > self.layout.data_size:
            raise self._fail(f"chunk {number} ends outside the chunks area")

    def _check_chunk(self, number: int, blocks: bool = True) -> bool:
        """Check chunk ``number`` (its blocks too unless ``blocks`` is false); whether its blocks were checked."""
        entry = self._entry(number)
        if entry is None:
            return True
        at = self.layout.start + entry
        whole = self._mapped()
        if whole is not None and at + CHUNK_HEADER <= len(whole):  # checked in place: nothing copied
            view = memoryview(whole)  # type: ignore[arg-type]
            cbytes = i32(view, at + 12)
            blocks = blocks or many_blocks(view, at) or bool(view[at + 31] & 0x70)  # special chunks: no blocks
            self._check_length(number, entry, cbytes)
            if at + cbytes > len(whole):
                raise self._fail("the file ends inside the data section")
            self._check_bytes(number, view[at : at + cbytes], blocks)
            refs = self._refs  # once: a close() by another thread sets it to None
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
        self._check_length(number, entry, cbytes)
        chunk = self._read(at, cbytes)
        blocks = blocks or many_blocks(chunk, 0)
        self._check_bytes(number, chunk, blocks)
        return blocks

    def _check_bytes(self, number: int, chunk: bytes | memoryview, blocks: bool = True) -> None:
        problem = structure_problem(chunk, blocks=blocks)
        if problem is None:
            problem = self._data_chunk_problem(chunk)
        if problem is not None:
            raise self._fail(f"chunk {number}: {problem}")

    def chunk_span(self, number: int) -> tuple[int, int] | None:
        """Where chunk ``number`` lies in the file: ``(offset, length)``, or ``None`` for a zeros/NaN entry.

        The length reaches to the next chunk (or the end of the chunks area), so one read
        holds the whole chunk of a file whose chunks are stored one after another;
        :meth:`checked_chunk` says if more is needed. Raises for a bad index entry.
        """
        entry = self._entry(number)
        if entry is None:
            return None
        if self._ends is None:
            offsets = self.entries[self.entries >= 0]
            starts = np.unique(np.append(offsets, int(self.layout.data_size))).tolist()
            self._ends = dict(zip(starts, starts[1:], strict=False))
        end = self._ends.get(entry, int(self.layout.data_size))
        return self.layout.start + entry, max(end - entry, CHUNK_HEADER)

    def chunk_length(self, number: int, head: bytes) -> int:
        """The checked length of chunk ``number`` from the first 16+ bytes of the chunk."""
        entry = self._entry(number)
        if entry is None or len(head) < 16:
            raise self._fail(f"chunk {number}: shorter than a chunk header")
        cbytes = i32(head, 12)
        self._check_length(number, entry, cbytes)
        return cbytes

    def checked_chunk(self, number: int, data: bytes) -> bytes:
        """Check chunk ``number`` given bytes read from its :meth:`chunk_span` start; return the chunk.

        ``data`` must hold at least :meth:`chunk_length` bytes (the rest is ignored).
        Spec 4.4.2-4.4.6 apply exactly as in :meth:`check`.
        """
        cbytes = self.chunk_length(number, data)
        if len(data) < cbytes:
            raise self._fail(f"chunk {number}: fewer bytes than its header declares were read")
        chunk = bytes(data[:cbytes])
        self._check_bytes(number, chunk)
        with self._lock:
            self._mark_one(number, CHECKED)
        return chunk

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
