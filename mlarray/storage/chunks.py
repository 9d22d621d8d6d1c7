"""Check the data section of a frame (spec 4.4) with our own code before any codec sees it.

Codecs trust the offsets inside a Blosc chunk (block starts, stream sizes) and the chunk
index's entries; C-Blosc2 3.3.5 crashed and read outside its buffers on files whose only
fault was such an offset. So every chunk is range-checked here, on its raw bytes, before
python-blosc2 is allowed to decompress it: the index chunk before ``blosc2.open`` (which
decompresses it), each data chunk before it is read. The rules and their order are those
of spec sections 4.4.1-4.4.6; every failure is a :class:`CorruptFrameError`.

This module opens and maps the file, reads and checks the chunk index and hands out chunks;
which chunks are checked, and how, is kept by :mod:`mlarray.storage.chunkchecks`. It reads
bytes (through :mod:`mlarray.storage.source`) and decodes nothing but the chunk index (after
checking it).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blosc2
import numpy as np

from mlarray.errors import CorruptFrameError, FileChangedError, InvalidArgumentError, TruncatedFileError
from mlarray.storage import blockcopy, headers, patchread
from mlarray.storage.chunkchecks import CHECKED, ChunkChecks
from mlarray.storage.selection import chunk_numbers, whole_axes
from mlarray.storage.source import ByteSource, LocalFile
from mlarray.storage.structure import (
    CHUNK_HEADER,
    SPECIAL_VALUE,
    SPECIAL_ZERO,
    i32,
    structure_problem,
)

if TYPE_CHECKING:
    from mlarray.storage.frame import FrameInfo


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
    parts = whole_axes(key if isinstance(key, tuple) else (key,), len(shape))
    if parts is None:
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


def _weak(section: Any, name: str) -> Callable[..., Any]:
    """The method ``name`` of ``section``, looked up at each call, without a reference to the section.

    The section holds what it hands these to (its ledger, its patch reader): bound methods
    would make a cycle, and a handle dropped without ``close`` would keep its file open until
    the garbage collector next runs, not just until its last reference goes.
    """
    ref = weakref.ref(section)

    def call(*args: Any) -> Any:
        found = ref()
        if found is None:  # the section is gone: nothing can still be reading through it
            raise InvalidArgumentError("the array is closed")
        return getattr(found, name)(*args)

    return call


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
        self._ends: dict[int, int] | None = None
        self._map: np.ndarray[Any, Any] | None = None
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
        weak = [_weak(self, name) for name in ("_read", "_fail", "_mapped", "_pread_heads")]
        self._checks = ChunkChecks(self.layout, self.entries, *weak)
        """What is known of each chunk, and the tables of the map."""

    @property
    def complete(self) -> bool:
        """Every chunk has been checked: reads need no more checks."""
        return self._checks.complete

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

    def read_patch(
        self, key: Any, out: np.ndarray[Any, Any] | None = None, limit: Callable[[], int] | None = None
    ) -> np.ndarray[Any, Any] | None:
        """``array[key]`` by the short patch path (:mod:`mlarray.storage.patchread`), or ``None``.

        With ``out``, decoded into it; ``limit``: the most bytes a new result may take (see
        :meth:`PatchReader.read`).

        ``None``: the key is not a box, a chunk it touches is not checked yet or special, or
        the section is not memory-mapped; the general path (:func:`mlarray.reading.fast_read`)
        reads it then. The file is checked first as every read checks it (:meth:`ensure_unshortened`).
        """
        reader = self._patches
        if reader is None:
            checks = self._checks
            if self._closed or blockcopy.HELPER is None or self._mapped() is None or checks.refs is None:
                return None
            mapped = (checks.refs, self._map)
            made = patchread.reader_for(
                self.layout,
                self.entries,
                mapped,
                _weak(self, "chunk_refs"),
                _weak(self, "chunk_bytes"),
                self.path,
                checks.marks,
                _weak(self, "special_values"),
                checks.state,
            )
            reader = self._patches = made if made is not None else False
        if reader is False:
            return None
        assert isinstance(reader, patchread.PatchReader)
        self.ensure_unshortened()
        return reader.read(key, out, limit)

    def close(self) -> None:
        """Close the file it opened (also done when the object is collected)."""
        self._closed = True
        self._map = None
        if hasattr(self, "_checks"):  # not when the index failed its checks
            self._checks.detach()
        self._patches = False
        if self._owned:
            self._source.close()

    def chunk_bytes(self, number: int) -> np.ndarray[Any, Any]:
        """The stored bytes of chunk ``number`` (for a local file, a uint8 view of one read-only map of it).

        Only for chunks whose index entry is not special; a chunk not yet :meth:`check`-ed is
        checked first. The map is made on first use and shared by every later call (threads
        included); other sources are read.
        """
        if not self.complete and self._checks.state[number] != CHECKED:
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
                    whole = np.frombuffer(mapped, dtype=np.uint8)
                    self._checks.attach(whole)
                    self._map = whole
        return self._map

    def _pread_heads(self) -> tuple[headers.Heads, int] | None:
        """Chunk headers read with ``pread`` from the local file, and its size; ``None`` for other sources."""
        if not isinstance(self._source, LocalFile) or self._size is None:
            return None
        return headers.by_pread(self._source.fileno()), self._size

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
                self._checks.settle(numbers, blocks=blockcopy.HELPER is None or self._mapped() is None)
        whole, refs = self._map, self._checks.refs
        if whole is None or refs is None:
            return None
        picked = np.asarray(numbers, dtype=np.intp)
        return refs[0][picked], refs[1][picked], refs[2][picked], whole

    def special_values(self, numbers: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """Special kinds and value-run items of the checked stored chunks ``numbers``, read from the map
        (:meth:`ChunkChecks.special_values <mlarray.storage.chunkchecks.ChunkChecks.special_values>`)."""
        return self._checks.special_values(numbers)

    def block_marks(self) -> tuple[np.ndarray[Any, Any], int] | None:
        """Where the compiled loop remembers the blocks it has checked, for reads of the map.

        A uint8 array of ``stride`` bytes per chunk (in C order over the chunk grid) and
        ``stride``: bit ``j`` of a chunk's bytes is set once its block ``j`` passed the checks
        of spec 4.4.6, which later reads of the map then skip. ``None`` when the file is not
        mapped, or its chunks hold more blocks than are checked one by one (checked whole).
        """
        return self._checks.marks if self._mapped() is not None else None

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
            self._checks.settle(numbers)

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
            self._checks.settle_all(nthreads)

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

    def chunk_span(self, number: int) -> tuple[int, int] | None:
        """Where chunk ``number`` lies in the file: ``(offset, length)``, or ``None`` for a zeros/NaN entry.

        The length reaches to the next chunk (or the end of the chunks area), so one read
        holds the whole chunk of a file whose chunks are stored one after another;
        :meth:`checked_chunk` says if more is needed. Raises for a bad index entry.
        """
        entry = self._checks.entry(number)
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
        entry = self._checks.entry(number)
        if entry is None or len(head) < 16:
            raise self._fail(f"chunk {number}: shorter than a chunk header")
        cbytes = i32(head, 12)
        self._checks.check_length(number, entry, cbytes)
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
        self._checks.check_bytes(number, chunk)
        with self._lock:
            self._checks.mark_one(number, CHECKED)
        return chunk
