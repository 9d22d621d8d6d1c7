"""Where the bytes of a frame come from: a local file, an open binary file object, or (in
:mod:`mlarray.remote`) an fsspec URL.

The frame checks (:mod:`mlarray.storage.frame`) and the chunk checks
(:mod:`mlarray.storage.chunks`) read through the small :class:`ByteSource` protocol, so
the very same checks guard a local path, a file object and a remote object before any
byte reaches C-Blosc2. A source returns exactly the bytes asked for or raises: a short
read is never passed on as data.

This module imports nothing beyond the standard library and :mod:`mlarray.errors`.
"""

from __future__ import annotations

import io
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from mlarray.errors import InvalidArgumentError, MLArrayError, RemoteError, TruncatedFileError


@runtime_checkable
class ByteSource(Protocol):
    """Random access to the bytes of one file.

    ``name`` is what error messages call the file (a path or a URL); ``size`` is its
    length in bytes, fixed when the source was opened.
    """

    name: str

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``; raise (never return fewer)."""
        ...

    def read_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """``read(offset, length)`` for each ``(offset, length)``, in order (remote sources: concurrently)."""
        ...

    def close(self) -> None: ...


def _short(name: str) -> TruncatedFileError:
    return TruncatedFileError("the file ends inside the frame", path=name)


def _check_range(offset: int, length: int, name: str) -> None:
    if offset < 0 or length < 0:
        raise InvalidArgumentError(f"invalid byte range ({offset}, {length})", path=name)


class LocalFile:
    """A local file, opened once and read with ``os.pread`` (safe from several threads).

    The descriptor stays open until :meth:`close` (or collection), so every read comes
    from the file that was opened, even when another process replaces the path.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        self.absolute = os.path.abspath(self.name)
        """The path made absolute when the file was opened (later working-directory changes do not move it)."""
        self._fd = os.open(self.name, os.O_RDONLY)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self._size = os.fstat(self._fd).st_size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        _check_range(offset, length, self.name)
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise _short(self.name)
        return data

    def read_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.read(offset, length) for offset, length in ranges]

    def fileno(self) -> int:
        """The open descriptor (e.g. to map the file); valid until :meth:`close`."""
        return self._fd

    def close(self) -> None:
        self._closer()

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileObjectSource:
    """An open binary file object (``io.BytesIO``, ``open(path, 'rb')``, an fsspec file, ...).

    The object must be readable and seekable. Reads seek and read under a lock, so one
    source may be shared by threads; the object's position is not preserved. The caller
    keeps ownership: :meth:`close` does not close the object.
    """

    def __init__(self, fileobj: Any, name: str | None = None) -> None:
        for method in ("read", "seek"):
            if not callable(getattr(fileobj, method, None)):
                raise InvalidArgumentError(f"a file object needs a {method}() method; got {type(fileobj).__name__}")
        if isinstance(fileobj, io.TextIOBase):
            raise InvalidArgumentError("the file object is opened in text mode; open it with 'rb'")
        if getattr(fileobj, "closed", False) is True:
            raise InvalidArgumentError(f"the file object is closed; got {fileobj!r}")
        seekable = getattr(fileobj, "seekable", None)
        if callable(seekable) and not seekable():
            raise InvalidArgumentError("the file object is not seekable; .mla files need random access")
        self._file = fileobj
        self.name = name or str(getattr(fileobj, "name", None) or f"<{type(fileobj).__name__}>")
        self._lock = threading.Lock()
        with self._lock:
            fileobj.seek(0, io.SEEK_END)  # some seek() methods return None (mmap before Python 3.13, SFTP files)
            self._size = int(fileobj.tell())

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        _check_range(offset, length, self.name)
        with self._lock:
            parts: list[bytes] = []
            got = 0
            try:
                self._file.seek(offset)
                while got < length:  # raw files may return fewer bytes than asked for
                    piece = self._file.read(length - got)
                    if not piece:
                        break
                    if not isinstance(piece, (bytes, bytearray, memoryview)):
                        raise InvalidArgumentError("the file object returned text; open it with 'rb'", path=self.name)
                    parts.append(bytes(piece))
                    got += len(piece)
            except (OSError, ValueError) as exc:  # an I/O error, a closed file: not a damaged .mla file
                if isinstance(exc, MLArrayError):
                    raise
                raise RemoteError(
                    f"reading the file object failed ({type(exc).__name__}: {exc})", path=self.name
                ) from None
        data = b"".join(parts)
        if len(data) != length:
            raise _short(self.name)
        return data

    def read_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.read(offset, length) for offset, length in ranges]

    def close(self) -> None:
        """Nothing to release: the file object belongs to the caller."""
