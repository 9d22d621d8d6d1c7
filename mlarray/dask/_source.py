"""A picklable, read-only stand-in for one ``.mla`` file that Dask tasks read through.

python-blosc2 documents crashes when several threads use one ``NDArray`` at the
same time, so no handle is ever shared: :class:`MLAFile` holds only the path and
what the header says (shape, dtype, chunk shape). Each read opens the file
read-only with :meth:`mlarray.MLArray.open` in the calling thread, or reuses a handle
*that thread* opened before (a small per-thread cache, keyed by the file's identity so
a file replaced by an atomic save is reopened). An ``MLAFile`` made from an open image
(:meth:`mlarray.MLArray.to_dask`) stands for that image's file as it is (its size and
modification time): a task that finds it replaced or written since raises
:class:`~mlarray.errors.FileChangedError` rather than read another file than the image
reads. Pickling an ``MLAFile`` (what Dask does when it ships a task graph to a worker)
carries no handle and no data.

A URL (``s3://``, ``https://``, any fsspec URL) works the same way through
:mod:`mlarray.remote`: each thread opens its own read-only remote handle, and a read
of an object that changed since that handle was opened fails with
:class:`~mlarray.errors.RemoteChangedError` (the object's ETag is checked on every read).
``storage_options`` travel with the pickled ``MLAFile`` (credentials included), as they
do with fsspec's own Dask integrations.

This module does not import Dask: it is plain Python over the public API.
"""

from __future__ import annotations

import os
import secrets
import threading
import weakref
from collections import Counter, OrderedDict
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.errors import FileChangedError, InvalidArgumentError, MLArrayFileNotFoundError, RemoteChangedError
from mlarray.models import Meta
from mlarray.remote import is_remote

CACHE_SIZE = 8
"""Handles one thread keeps open at most (least recently used closed first)."""


def process_budget() -> int:
    """Handles all threads of this process keep open together at most: at least :data:`CACHE_SIZE`.

    An eighth of the soft limit on open files (``ulimit -n``; a handle of a local file holds
    two descriptors): Dask's threaded scheduler runs one thread per core, and 64 threads of
    :data:`CACHE_SIZE` handles each would need 1,024 descriptors.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return 1 << 12
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 12
    return max(CACHE_SIZE, int(soft) // 8)


_local = threading.local()

Stamp = tuple[int, int, int, int] | None


def _stamp(path: str) -> Stamp:
    """What tells one file at ``path`` from another: device, inode, size, modification time.

    ``None`` for a URL: a remote handle checks the object's ETag on every read instead.
    """
    if is_remote(path):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MLArrayFileNotFoundError("the file was deleted since the array was made", path=path) from None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


Key = tuple[str, Any]


class _Handles(OrderedDict[Key, MLArray]):
    """The handles one thread keeps open, least recently used first (hashed and compared by identity)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


_ALL: weakref.WeakSet[_Handles] = weakref.WeakSet()
"""Every thread's handles (a thread that ends takes its own with it)."""
_LOCK = threading.Lock()
"""Guards the caches (:func:`close_handles` empties other threads' caches) and the two below."""
_BUSY: Counter[int] = Counter()
"""Reads in progress per handle (by ``id``): such a handle is closed when its reads end."""
_DOOMED: dict[int, MLArray] = {}


def _cache() -> _Handles:
    cache: _Handles | None = getattr(_local, "handles", None)
    if cache is None:
        cache = _local.handles = _Handles()
        with _LOCK:
            _ALL.add(cache)
    return cache


def _retire(handles: list[MLArray]) -> list[MLArray]:
    """Of ``handles`` just taken out of a cache, those to close now; the busy ones close after their reads.

    Called with :data:`_LOCK` held.
    """
    now = []
    for handle in handles:
        if _BUSY[id(handle)]:
            _DOOMED[id(handle)] = handle
        else:
            now.append(handle)
    return now


def _over_budget(mine: _Handles) -> list[MLArray]:
    """Handles taken out of other threads' caches (their least recently used first) while all threads
    together keep more than :func:`process_budget`; called with :data:`_LOCK` held."""
    budget = process_budget()
    caches = [cache for cache in list(_ALL) if cache is not mine]
    total = len(mine) + sum(len(cache) for cache in caches)
    taken: list[MLArray] = []
    while total > budget and caches:
        fullest = max(caches, key=len)
        if not fullest:
            break
        taken.append(fullest.popitem(last=False)[1])
        total -= 1
    return taken


def close_handles() -> int:
    """Close the handles *every* thread of this process keeps open; returns how many were open.

    Dask worker threads keep up to :data:`CACHE_SIZE` handles each; this is for code that
    wants the files released (before deleting them, or their disk space stays in use while
    a handle holds them). On a cluster, run it on the workers: ``client.run(close_handles)``.
    A handle in the middle of a read is closed when that read ends; a thread that reads
    again opens a new one.
    """
    with _LOCK:
        taken = [handle for cache in list(_ALL) for handle in cache.values()]
        for cache in list(_ALL):
            cache.clear()
        closing = _retire(taken)
    for handle in closing:
        handle.close()
    return len(taken)


def open_handles(all_threads: bool = False) -> int:
    """How many handles the calling thread (or, with ``all_threads``, every thread) keeps open."""
    if not all_threads:
        return len(_cache())
    with _LOCK:
        return sum(len(cache) for cache in list(_ALL))


class MLAFile:
    """One ``.mla`` file as a lazily read, array-like object (``shape``, ``dtype``, ``chunks``, ``[...]``).

    Parameters
    ----------
    path : str or os.PathLike
        The file or URL; it is opened once here to read its header.
    dparams : dict, optional
        Blosc2 decompression parameters of each read (default: one thread per read,
        as :meth:`mlarray.MLArray.open`; Dask already runs reads in parallel).
    storage_options : dict, optional
        fsspec options for a URL (credentials, endpoint, ...), as in :meth:`mlarray.MLArray.open`.

    Raises
    ------
    MLArrayError
        The file cannot be opened (see :meth:`mlarray.MLArray.open`), or it is
        metadata-only (:class:`~mlarray.errors.InvalidArgumentError`).
    """

    __slots__ = ("path", "shape", "dtype", "chunks", "dparams", "storage_options", "version", "token", "remote")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dparams: dict[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        _image: MLArray | None = None,
    ) -> None:
        text = os.fspath(path)
        remote = isinstance(path, str) and is_remote(text)
        self.path = text if remote else os.path.abspath(text)
        self.dparams = dparams
        self.storage_options = storage_options
        self.version: tuple[int, int] | None = None
        """For an array of an open image (``to_dask``): size and modification time (ns) of its file."""
        self.token = secrets.token_hex(8)
        """Names this array's handles of a URL: a new array never reads through an older array's handle."""
        self.remote: tuple[Any, ...] | None = None
        """For a URL: the object as it was when this array was made (size, ETag, ...); every handle must see it."""
        found = _image._file_version() if _image is not None else None
        if _image is not None and found is not None:  # the file an open image reads, checked to be at the path
            self.path, self.version = found
            self._take_shape(_image)
            return
        pinned = _image._remote_version() if _image is not None else None
        if _image is not None and pinned is not None:  # the object an open image reads
            self._take_shape(_image)
            self.remote = pinned
            return
        with self._open(dparams) as image:
            self._take_shape(image)
            self.remote = image._remote_version()

    def _take_shape(self, image: MLArray) -> None:
        if image.shape is None or image.dtype is None:
            raise InvalidArgumentError("a metadata-only file has no array to read", path=self.path)
        self.shape: tuple[int, ...] = image.shape
        self.dtype: np.dtype[Any] = image.dtype
        chunks = image.chunks
        assert chunks is not None
        self.chunks: tuple[int, ...] = chunks

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"MLAFile({self.path!r}, shape={self.shape}, dtype={self.dtype}, chunks={self.chunks})"

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.path, self.shape, self.dtype.str, self.chunks, self.dparams, self.storage_options)
        return (_rebuild, (*fields, self.version, self.token, self.remote))

    def _open(self, dparams: dict[str, Any] | None = None) -> MLArray:
        if self.storage_options is not None:
            return MLArray.open(self.path, "r", dparams=dparams, storage_options=self.storage_options)
        return MLArray.open(self.path, "r", dparams=dparams)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        """Dask names arrays by this: the same unchanged file gives the same name."""
        try:
            stamp: Any = _stamp(self.path)
        except OSError:
            stamp = None
        options = repr(self.storage_options)
        return (
            "mlarray.MLAFile",
            self.path,
            stamp,
            self.version,
            self.token if stamp is None else None,
            self.shape,
            self.dtype.str,
            self.chunks,
            repr(self.dparams),
            options,
        )

    def meta(self) -> Meta:
        """The file's header (read now, not cached)."""
        with self._open() as image:
            return image.meta

    def handle(self) -> MLArray:
        """A read-only :class:`~mlarray.MLArray` on the file, owned by the calling thread.

        Raises :class:`~mlarray.errors.FileChangedError` when the file of the image this object
        was made from was replaced or written since, :class:`~mlarray.errors.MLArrayFileNotFoundError`
        when it was deleted, and :class:`~mlarray.errors.InvalidArgumentError` when a URL now
        holds another shape or dtype.
        """
        return self._take(self._key(), busy=False)

    def _key(self) -> Key:
        """What names the calling thread's handle: the path and the file's identity (a URL: this array's token)."""
        stamp = _stamp(self.path)
        if stamp is not None and self.version is not None and stamp[2:] != self.version:
            raise FileChangedError(
                "the file was replaced or written since this array was made; make the array again", path=self.path
            )
        return (self.path, stamp if stamp is not None else self.token)

    def _check_same(self, image: MLArray) -> None:
        """``INVALID_ARGUMENT`` when ``image`` (the file at the path now) has another shape or dtype than this array.

        A URL whose object is not the one this array was made from (size or ETag) is
        ``REMOTE_CHANGED``: tasks opening their handles one after another would otherwise
        read parts of two versions into one result.
        """
        if image.shape != self.shape or image.dtype != self.dtype:
            raise InvalidArgumentError(
                f"the file changed since the array was made: it holds {image.shape} {image.dtype}, "
                f"not {self.shape} {self.dtype}",
                path=self.path,
            )
        if self.remote is not None and image._remote_version() != self.remote:
            raise RemoteChangedError(
                "the object changed on the server since this array was made (its size or ETag differs); "
                "make the array again",
                path=self.path,
            )

    def _take(self, key: Key, *, busy: bool) -> MLArray:
        """The calling thread's handle for ``key`` (opened now if needed); with ``busy``, marked as reading."""
        cache = _cache()
        with _LOCK:
            image = cache.get(key)
            if image is not None:
                self._check_same(image)  # a handle another array of this path opened: of the file as it is now
                cache.move_to_end(key)
                if busy:
                    _BUSY[id(image)] += 1
                return image
        image = self._open(self.dparams)
        try:
            self._check_same(image)
        except BaseException:
            image.close()
            raise
        with _LOCK:
            stale = [cache.pop(k) for k in [k for k in cache if k[0] == self.path]]  # older versions of the path
            cache[key] = image
            while len(cache) > CACHE_SIZE:
                stale.append(cache.popitem(last=False)[1])
            stale += _over_budget(cache)
            if busy:
                _BUSY[id(image)] += 1
            closing = _retire(stale)
        for handle in closing:
            handle.close()
        return image

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        image = self._take(self._key(), busy=True)
        try:
            return np.asarray(image[key])
        finally:
            with _LOCK:
                _BUSY[id(image)] -= 1
                doomed = None
                if _BUSY[id(image)] <= 0:
                    del _BUSY[id(image)]
                    doomed = _DOOMED.pop(id(image), None)
            if doomed is not None:
                doomed.close()


def _rebuild(
    path: str,
    shape: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...],
    dparams: dict[str, Any] | None,
    storage_options: dict[str, Any] | None = None,
    version: tuple[int, int] | None = None,
    token: str | None = None,
    remote: tuple[Any, ...] | None = None,
) -> MLAFile:
    """Unpickle an :class:`MLAFile` without opening the file (the worker opens it when it reads)."""
    obj = MLAFile.__new__(MLAFile)
    obj.path, obj.shape, obj.dtype, obj.chunks = path, tuple(shape), np.dtype(dtype), tuple(chunks)
    obj.dparams, obj.storage_options = dparams, storage_options
    obj.version = tuple(version) if version is not None else None  # type: ignore[assignment]
    obj.token = token if token is not None else secrets.token_hex(8)
    obj.remote = tuple(remote) if remote is not None else None
    return obj
