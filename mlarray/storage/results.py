"""Memory for large patch results, used again once nothing refers to it.

A training loop reads patches of one shape over and over, and drops each after its
batch is built. NumPy takes a new result from the C library's ``malloc``, which reuses
freed memory for results of a few MiB but maps every request of 32 MiB or more fresh
from the operating system (glibc's largest mmap threshold) and unmaps it when it is
freed; the kernel then zeroes every page again on the result's first write. On the
benchmark's 4-channel volume (128³ patches of 32 MiB) that was about a fifth of a read.

:class:`ResultCache` keeps a few such buffers. A result it hands out is a view of one
(``result.base`` is the buffer), and a buffer is handed out again only when the cache
holds the only reference to it: every array, view, ``memoryview`` or DLPack capsule
that can still reach the memory holds a reference to the buffer (NumPy points a view's
``base`` at the array owning the memory), so no live object ever sees its data change.
Reads in several threads are serialized by a lock around the look-up. Buffers are kept
up to :attr:`ResultCache.max_bytes` in all (those in use count); ``MLARRAY_RESULT_CACHE``
sets that limit in MiB at import (``0`` turns the cache off). Builds of Python without
the GIL get no cache (their reference counts are not exact while other threads run).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import warnings
from typing import Any

import numpy as np

CACHE_ENV = "MLARRAY_RESULT_CACHE"
"""Environment variable: the cache's limit in MiB (``0``: off)."""
MIN_BYTES = 32 << 20
"""Smaller results come from ``malloc``'s own free lists already."""
MAX_BYTES = 128 << 20
"""Default limit of the bytes the cache holds, in use or not."""


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


class ResultCache:
    """Buffers for results of at least ``min_bytes`` and at most ``max_bytes`` in all."""

    def __init__(self, min_bytes: int = MIN_BYTES, max_bytes: int = MAX_BYTES) -> None:
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._buffers: list[np.ndarray[Any, Any]] = []  # least recently handed out first
        self._lock = threading.Lock()
        self._unused = self._count_unused()

    def _count_unused(self) -> int:
        """The reference count a buffer shows in :meth:`_refs` when only the cache holds it."""
        self._buffers.append(np.empty(0, dtype=np.uint8))
        try:
            return self._refs(-1)
        finally:
            self._buffers.pop()

    def _refs(self, i: int) -> int:
        return sys.getrefcount(self._buffers[i])

    @property
    def held_bytes(self) -> int:
        """Bytes of the buffers kept (in use or not)."""
        return sum(b.nbytes for b in self._buffers)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """An uninitialised C-contiguous array, as :func:`numpy.empty` gives."""
        nbytes = dtype.itemsize
        for n in shape:
            nbytes *= n
        if nbytes < self.min_bytes or nbytes > self.max_bytes or dtype.hasobject or not _gil_enabled():
            return np.empty(shape, dtype=dtype)
        with self._lock:
            buffer = self._take(nbytes)
            if buffer is None:
                return np.empty(shape, dtype=dtype)
            return buffer.view(dtype).reshape(shape)

    def _take(self, nbytes: int) -> np.ndarray[Any, Any] | None:
        """A free buffer of ``nbytes``, or a new one kept in the cache (after dropping free ones to make
        room); ``None`` when the buffers in use leave no room."""
        for i in range(len(self._buffers)):
            if self._buffers[i].nbytes == nbytes and self._refs(i) == self._unused:
                buffer = self._buffers.pop(i)
                self._buffers.append(buffer)
                return buffer
        i = 0
        while self.held_bytes + nbytes > self.max_bytes and i < len(self._buffers):
            if self._refs(i) == self._unused:
                del self._buffers[i]
            else:
                i += 1
        if self.held_bytes + nbytes > self.max_bytes:
            return None
        buffer = np.empty(nbytes, dtype=np.uint8)
        self._buffers.append(buffer)
        return buffer

    def clear(self) -> None:
        """Forget every buffer (those in use stay valid: their arrays hold them)."""
        with self._lock:
            self._buffers.clear()

    def _after_fork(self) -> None:
        """In a forked child: a new lock (another thread of the parent may have held this one)."""
        self._lock = threading.Lock()


def _limit_from_env() -> int:
    text = os.environ.get(CACHE_ENV, "").strip()
    if not text:
        return MAX_BYTES
    try:
        mib = float(text)
    except ValueError:
        mib = math.nan
    if not mib >= 0 or math.isinf(mib):
        warnings.warn(f"{CACHE_ENV}={text!r} is not a number of MiB; using {MAX_BYTES >> 20}", stacklevel=2)
        return MAX_BYTES
    return int(mib * (1 << 20))


RESULTS = ResultCache(max_bytes=_limit_from_env())
"""The cache patch reads take new results from."""

if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=RESULTS._after_fork)
