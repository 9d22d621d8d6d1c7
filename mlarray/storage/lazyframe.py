"""A read-only file's ``blosc2.NDArray``, opened on first use.

Reading a file needs python-blosc2 only where our own block decoder
(:mod:`mlarray.storage.fastread`) cannot serve a read: keys it does not take, machines
without the compiled block loop, copying the frame's chunks into a new file. Opening the
frame with python-blosc2 costs about a sixth of an ``MLArray.open`` (0.13 of 0.75 ms on the
benchmark CT), which data loaders that open a file per sample pay every time. A handle
opened for reading therefore holds a :class:`LazyFrame`: shape, dtype, chunk and block
shape come from our own parse of the frame, and the first use of anything else opens the
NDArray, of the same file the handle checked.

"The same file": the handle's :class:`~mlarray.storage.chunks.DataSection` keeps the file it
checked open. When the path names another file by then (an atomic save by another process,
also one that happens while python-blosc2 opens it), the NDArray is opened through the
process's descriptor of the checked file (``/proc/self/fd/N``) where the system offers one,
else the read fails with ``FILE_CHANGED`` (:class:`~mlarray.errors.FileChangedError`): open
the file again. Under an address-space limit, where python-blosc2 reads through file I/O and
opens the path for every chunk, it always goes through that descriptor. Nothing of a
replacement is read under the old header. Left: a handle whose file lost its read
permission after it was opened can no longer open python-blosc2 (the fast path, which
reads through the descriptor it holds, still reads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from mlarray.errors import FileChangedError, MLArrayError
from mlarray.storage.chunks import DataSection, may_map

Opener = Callable[[str, str, Any], Any]


class LazyFrame:
    """Stands in for the ``blosc2.NDArray`` of a checked read-only file until one is needed.

    ``shape``, ``dtype``, ``chunks``, ``blocks`` and ``ndim`` are answered without opening;
    :meth:`opened` (and any other attribute, item access) opens the NDArray with
    ``opener(path, mmap_mode, dparams)`` once and delegates to it.
    """

    def __init__(self, path: str, mmap_mode: str, dparams: Any, section: DataSection, opener: Opener) -> None:
        layout = section.layout
        self.shape: tuple[int, ...] = tuple(layout.shape)
        self.dtype: np.dtype[Any] = np.dtype(layout.dtype)
        self.chunks: tuple[int, ...] = tuple(layout.chunks)
        self.blocks: tuple[int, ...] = tuple(layout.blocks)
        self.ndim = len(self.shape)
        self._path, self._mode, self._dparams = path, mmap_mode, dparams
        self._section = section
        self._opener = opener
        self._nd: Any = None
        self._lock = threading.Lock()

    def opened(self) -> Any:
        """The ``blosc2.NDArray`` of the checked file (opened now if not yet; once, whatever the threads)."""
        if self._nd is None:
            with self._lock:
                if self._nd is None:
                    self._nd = self._open()
        return self._nd

    def _open(self) -> Any:
        section, via = self._section, self._section.descriptor_path()
        if via is not None and not may_map():
            # read through file I/O, C-Blosc2 opens the path again for every chunk: keep it on the checked file
            return self._opener(via, self._mode, self._dparams)
        if section.names_checked_file(self._path):
            try:
                nd = self._opener(self._path, self._mode, self._dparams)
            except MLArrayError:
                if section.names_checked_file(self._path):
                    raise  # the checked file itself: its own error
                nd = None  # replaced while python-blosc2 opened it (it opens the path more than once)
            if nd is not None and section.names_checked_file(self._path):
                return nd
            del nd
        if via is None:
            raise FileChangedError(
                "the path names another file than this handle checked (replaced, moved or deleted since it was "
                "opened); open it again",
                path=self._path,
            )
        return self._opener(via, self._mode, self._dparams)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # our own attributes before __init__ set them, dunders: never the NDArray's
            raise AttributeError(name)
        return getattr(self.opened(), name)

    def __getitem__(self, key: Any) -> Any:
        return self.opened()[key]

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        state = "open" if self._nd is not None else "not opened yet"
        return f"<LazyFrame {self._path!r} shape={self.shape} dtype={self.dtype} ({state})>"


def opened(data: Any) -> Any:
    """``data``, or the NDArray a :class:`LazyFrame` stands in for."""
    return data.opened() if isinstance(data, LazyFrame) else data
