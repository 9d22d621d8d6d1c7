"""Advisory write locks: at most one writer per ``.mla`` file.

A writer (``MLArray.open(..., 'r+')``, ``MLArray.create``) holds an exclusive
``flock`` on the file for as long as it is open; a second writer, in this or any
other process, gets :class:`~mlarray.errors.LockError` instead of corrupting the
file. ``save`` (and every other write that replaces a file) refuses to replace a file
another writer holds, and holds the lock itself until the new file is in place
(:func:`replacing`); ``MLArray.create`` refuses when the writer is another process, and
replaces the file when the writer is a handle of this process (numpy.memmap's ``'w+'``
semantics: that handle then holds the old file, whose edits are not written over the new
one). A writer whose file was replaced by anything else reports it at ``close``. Readers
take no lock: they see either the old or the new file of an atomic save, never a torn one.

The locks are advisory (POSIX ``flock``); on platforms without ``fcntl`` they are a no-op.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from mlarray.errors import LockError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


_HELD: dict[tuple[int, int, int], int] = {}
"""How many locks each process holds per file (process id, device, inode): a forked child
inherits this dict, and the parent's locks must not count as the child's own."""

_REPLACED: set[tuple[int, int, int]] = set()
"""Files (process id, device, inode) a writer of this process held when this process replaced
them (``MLArray.create``): closing that writer then writes nothing, quietly."""


def _identity(fd_or_path: int | str) -> tuple[int, int, int]:
    st = os.fstat(fd_or_path) if isinstance(fd_or_path, int) else os.stat(fd_or_path)
    return os.getpid(), st.st_dev, st.st_ino


PROBE_RETRIES = 50
"""Attempts at the exclusive lock, :data:`PROBE_PAUSE` apart: a reader's probe for writers
(:func:`another_writer_holds`) holds a shared lock for microseconds, a writer for as long as it is open."""
PROBE_PAUSE = 0.002


def _lock_exclusive(fd: int) -> bool:
    """Take the exclusive lock on ``fd``; ``False`` when a writer holds the file (past any reader's probe)."""
    assert fcntl is not None
    for _ in range(PROBE_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(PROBE_PAUSE)
        else:
            return True
    return False


WRITER_HOLDS = "another writer has this file open (mmap_mode 'r+' or 'w+'); close it first"


def refuse_writers(path: str | os.PathLike[str]) -> None:
    """Raise ``LOCK_HELD`` when another process has the file at ``path`` open for writing."""
    where = os.fspath(path)
    if another_writer_holds(where):
        raise LockError(WRITER_HOLDS, path=where)


class FileLock:
    """An exclusive lock held on the inode of ``path`` until :meth:`release`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY)
        self._inode = _identity(self._fd)
        if fcntl is not None and not _lock_exclusive(self._fd):
            os.close(self._fd)
            self._fd = None
            raise LockError(WRITER_HOLDS, path=path) from None
        _HELD[self._inode] = _HELD.get(self._inode, 0) + 1

    def inherited(self) -> bool:
        """Whether this process is a fork of the one that took the lock (the writer is the parent's)."""
        return self._inode[0] != os.getpid()

    def replaced_here(self) -> bool:
        """Whether this process replaced the file this lock is on (see :func:`replacing`)."""
        return self._inode in _REPLACED

    def holds(self, path: str) -> bool:
        """Whether this lock is on the file currently at ``path``."""
        if self._fd is None:
            return False
        try:
            return os.path.samestat(os.fstat(self._fd), os.stat(path))
        except OSError:
            return False

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            left = _HELD.get(self._inode, 1) - 1
            if left:
                _HELD[self._inode] = left
            else:
                _HELD.pop(self._inode, None)

    def __del__(self) -> None:
        self.release()


@contextlib.contextmanager
def replacing(path: str, *, except_this_process: bool = False) -> Iterator[None]:
    """Keep writers off the file at ``path`` while the ``with`` block replaces it.

    Raises :class:`LockError` when a writer holds the file. Otherwise a shared lock taken on
    it is held until the block ends, so that no writer (whose lock is exclusive) opens the
    old file between this check and the rename that replaces it (its edits would be lost
    with the old file); readers, and other replacements, are not kept off.
    A missing file needs no lock. With ``except_this_process``, a file that a writer of
    this process holds is replaced anyway (that writer's close then writes nothing).
    """
    if fcntl is None or not os.path.exists(path):
        yield
        return
    if except_this_process:
        identity = None
        with contextlib.suppress(OSError):
            identity = _identity(path)
        if identity is not None and identity in _HELD:
            _REPLACED.add(identity)
            yield  # outside any handler: the block's own errors pass through unchanged
            return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:  # shared: writers (exclusive) are kept off, readers probing for writers are not misled
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError("another writer has this file open; refusing to replace it", path=path) from None
        yield
    finally:
        os.close(fd)


def another_writer_holds(path: str) -> bool:
    """Whether a writer of another process holds the file at ``path`` (``False`` without ``fcntl``)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if _identity(fd) in _HELD:
            return False  # this process's own writer
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # releases the shared lock, if taken
