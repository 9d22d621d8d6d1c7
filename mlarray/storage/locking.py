"""Advisory write locks: at most one writer per ``.mla`` file.

A writer (``MLArray.open(..., 'r+')``, ``MLArray.create``) holds an exclusive
``flock`` on the file for as long as it is open; a second writer, in this or any
other process, gets :class:`~mlarray.errors.LockError` instead of corrupting the
file. ``save`` refuses to replace a file another writer holds. Readers take no lock:
they see either the old or the new file of an atomic save, never a torn one.

The locks are advisory (POSIX ``flock``); on platforms without ``fcntl`` they are a no-op.
"""

from __future__ import annotations

import contextlib
import os

from mlarray.errors import LockError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FileLock:
    """An exclusive lock held on the inode of ``path`` until :meth:`release`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY)
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise LockError(
                "another writer has this file open (mmap_mode 'r+' or 'w+'); close it first", path=path
            ) from None

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

    def __del__(self) -> None:
        self.release()


def ensure_unlocked(path: str) -> None:
    """Raise :class:`LockError` if a writer holds ``path`` (a missing file is unlocked)."""
    if fcntl is None or not os.path.exists(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockError("another writer has this file open; refusing to replace it", path=path) from None
    finally:
        os.close(fd)
