"""C-Blosc2 itself, loaded with :mod:`ctypes`: the library the python-blosc2 wheel ships.

The read path (:mod:`mlarray.storage.fastread`) calls C-Blosc2's decompression functions
directly; this module finds the library (``blosc2/lib/libblosc2.so*`` and the macOS and
Windows names), checks its version (:data:`SUPPORTED_MAJOR`, :data:`MIN_MINOR`: the
``blosc2_dparams`` layout and the ``getitem`` semantics relied on), declares the
signatures, and keeps one decompression context and its scratch buffers per thread
(:func:`worker`). :data:`LIB` is ``None`` when no usable library was found, and
:data:`STATUS` says which library or why none.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_MAJOR = 3
"""C-Blosc2 major version whose ``blosc2_dparams`` layout and ``getitem`` semantics we rely on."""
MIN_MINOR = 0
COPY_KEEP = 64 << 20
"""A thread keeps its buffer for chunks read from a file between reads up to this size."""


class _DParams(ctypes.Structure):
    """``blosc2_dparams`` of C-Blosc2 3.x (passed by value to ``blosc2_create_dctx``)."""

    _fields_ = [
        ("nthreads", ctypes.c_int16),
        ("schunk", ctypes.c_void_p),
        ("postfilter", ctypes.c_void_p),
        ("postparams", ctypes.c_void_p),
        ("typesize", ctypes.c_int32),
    ]


class Library:
    """The C-Blosc2 functions this module calls, with their signatures declared."""

    def __init__(self, lib: ctypes.CDLL, version: str) -> None:
        self.version = version
        lib.blosc2_init()
        self.create_dctx = lib.blosc2_create_dctx
        self.create_dctx.argtypes = [_DParams]
        self.create_dctx.restype = ctypes.c_void_p
        self.free_ctx = lib.blosc2_free_ctx
        self.free_ctx.argtypes = [ctypes.c_void_p]
        self.free_ctx.restype = None
        self.getitem = lib.blosc2_getitem_ctx
        self.getitem.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int32,
        ]
        self.getitem.restype = ctypes.c_int
        self.decompress = lib.blosc2_decompress_ctx
        self.decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32]
        self.decompress.restype = ctypes.c_int
        self.set_maskout = lib.blosc2_set_maskout
        self.set_maskout.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self.set_maskout.restype = ctypes.c_int
        self.lz4 = _lz4_table(lib)
        """The LZ4 functions and ``blosc2_shuffle`` for the write path (:mod:`mlarray.storage.chunkcompress`),
        as the int64 table ``mla_compress_chunk`` takes, or ``None`` when the library lacks one."""


_LZ4_FUNCTIONS = (
    "LZ4_compress_HC_extStateHC_fastReset",
    "LZ4_compress_fast_extState_fastReset",
    "blosc2_shuffle",
    "LZ4_initStreamHC",
    "LZ4_initStream",
)


def _lz4_table(lib: ctypes.CDLL) -> np.ndarray[Any, Any] | None:
    """Addresses of :data:`_LZ4_FUNCTIONS`, then the sizes of the LZ4HC and LZ4 states."""
    try:
        addresses = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0 for name in _LZ4_FUNCTIONS]
        sizes = [lib.LZ4_sizeofStateHC, lib.LZ4_sizeofState]
    except AttributeError:
        return None
    for size in sizes:
        size.argtypes = []
        size.restype = ctypes.c_int
    table = np.array([*addresses, *(int(size()) for size in sizes)], dtype=np.int64)
    return table if bool(np.all(table > 0)) else None


def _library_files() -> list[Path]:
    """Candidate ``libblosc2`` files of the installed python-blosc2 wheel (versioned name first)."""
    try:
        import blosc2
    except ImportError:  # pragma: no cover - blosc2 is a hard dependency
        return []
    folder = Path(blosc2.__file__).parent / "lib"
    found = sorted(folder.glob("libblosc2.so.*"), key=lambda p: len(p.name)) + sorted(folder.glob("libblosc2.so"))
    found += sorted(folder.glob("libblosc2*.dylib")) + sorted(folder.glob("blosc2.dll"))
    return found


def _version_ok(version: str) -> bool:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return match is not None and int(match[1]) == SUPPORTED_MAJOR and int(match[2]) >= MIN_MINOR


def _load() -> tuple[Library | None, str]:
    """The library, or ``None`` and why not."""
    for candidate in _library_files():
        try:
            lib = ctypes.CDLL(str(candidate))
            lib.blosc2_get_version_string.restype = ctypes.c_char_p
            raw = lib.blosc2_get_version_string()
            version = raw.decode("ascii") if isinstance(raw, bytes) else ""
        except (OSError, AttributeError, UnicodeDecodeError) as exc:
            return None, f"cannot load {candidate.name}: {exc}"
        if not _version_ok(version):
            return None, f"C-Blosc2 {version!r} is not a version this path was checked against"
        try:
            return Library(lib, version), f"C-Blosc2 {version} from {candidate}"
        except AttributeError as exc:
            return None, f"{candidate.name} lacks a function: {exc}"
    return None, "no libblosc2 next to the blosc2 package"


LIB, STATUS = _load()
"""The loaded library (or ``None``), and a sentence saying which one or why none."""


class Worker:
    """A decompression context and its buffers, owned by one thread and reused by every read."""

    def __init__(self, lib: Library) -> None:
        self._lib = lib
        ctx = lib.create_dctx(_DParams(1, None, None, None, 8))  # one thread: threads work on chunks
        if not ctx:
            raise MemoryError("C-Blosc2 could not create a decompression context")
        self.ctx: int = ctx
        self._buffer = np.empty(0, dtype=np.uint8)
        self.buffer_address = 0
        self._copy = np.empty(0, dtype=np.uint8)
        self.copy_address = 0
        self._mask = np.empty(0, dtype=np.bool_)
        self._mask_address = 0
        self._stage = np.empty(0, dtype=np.uint8)
        self._stage_address = 0

    def buffer(self, nbytes: int) -> np.ndarray[Any, Any]:
        """A scratch buffer of at least ``nbytes`` (never cleared: only decoded bytes are read)."""
        if self._buffer.nbytes < nbytes:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
            self.buffer_address = address(self._buffer)
        return self._buffer

    def stage(self, nbytes: int) -> tuple[int, int]:
        """Address and size of a buffer of at least ``nbytes`` for staged box reads (never cleared)."""
        if self._stage.nbytes < nbytes:
            self._stage = np.empty(nbytes, dtype=np.uint8)
            self._stage_address = address(self._stage)
        return self._stage_address, int(self._stage.nbytes)

    def copy(self, nbytes: int) -> int:
        """Make the buffer for chunks read from a file at least ``nbytes`` long; its size."""
        if self._copy.nbytes < nbytes:
            self._copy = np.empty(nbytes, dtype=np.uint8)
            self.copy_address = address(self._copy)
        return int(self._copy.nbytes)

    def trim_copy(self) -> None:
        """Let go of a chunk buffer larger than :data:`COPY_KEEP` (chunks may be up to 2 GiB)."""
        if self._copy.nbytes > COPY_KEEP:
            self._copy = np.empty(0, dtype=np.uint8)
            self.copy_address = 0

    def maskout(self, nblocks: int, wanted: Sequence[int]) -> None:
        """Make the next ``blosc2_decompress_ctx`` on this context decode only the blocks ``wanted``."""
        if self._mask.size < nblocks:
            self._mask = np.empty(nblocks, dtype=np.bool_)
            self._mask_address = address(self._mask)
        mask = self._mask[:nblocks]
        mask.fill(True)
        mask[wanted] = False
        if self._lib.set_maskout(self.ctx, self._mask_address, nblocks) < 0:
            raise MemoryError("C-Blosc2 refused the block mask")

    def __del__(self) -> None:
        ctx, self.ctx = self.ctx, 0
        if ctx:
            self._lib.free_ctx(ctx)


_local = threading.local()


def worker(lib: Library) -> Worker:
    """This thread's worker (made on its first read)."""
    found: Worker | None = getattr(_local, "worker", None)
    if found is None:
        found = _local.worker = Worker(lib)
    return found


def address(array: np.ndarray[Any, Any]) -> int:
    """Address of the first byte of ``array``.

    A writable, C-contiguous, non-empty array's buffer gives it in 0.35 us; the array
    interface (a dict made per call) takes 0.9 us, which the others use (read-only ones
    without trying the buffer: a refused export costs more than the interface).
    """
    if array.flags.writeable:
        try:
            return ctypes.addressof(ctypes.c_char.from_buffer(array))  # type: ignore[arg-type]
        except (ValueError, BufferError):  # not contiguous, or empty
            pass
    return int(array.__array_interface__["data"][0])
