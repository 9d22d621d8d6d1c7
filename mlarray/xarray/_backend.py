"""The xarray backend: ``xarray.open_dataset(path, engine="mlarray")`` on an ``.mla`` file.

xarray finds :class:`MLArrayBackendEntrypoint` through the ``xarray.backends`` entry
point of the package metadata. Opening reads the header and the chunk index only
(``MLArray.open`` in mode ``'r'``); the array is wrapped in :class:`MLArrayBackendArray`,
whose reads xarray makes lazily, through its explicit-indexing adapter, as plain
``image[slices]`` reads of the public :class:`~mlarray.MLArray` API. Only the chunks a
selection touches are decompressed.

This module imports xarray, so ``mlarray`` itself never imports it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from mlarray.api import MLArray
from mlarray.errors import FileChangedError
from mlarray.xarray._coords import DEFAULT_TOLERANCE, geometry

IGNORED_DECODERS = (
    "mask_and_scale",
    "decode_times",
    "decode_timedelta",
    "use_cftime",
    "concat_characters",
    "decode_coords",
)
"""Options of :func:`xarray.open_dataset` that decode CF conventions: nothing to decode here."""
VARIABLE = "image"
"""Name of the data variable of every dataset (and of the DataArray ``open_dataarray`` returns)."""


_OPEN: OrderedDict[int, weakref.ref[MLArrayBackendArray]] = OrderedDict()
"""Arrays whose file is open, least recently read first (by ``id``; an array collected drops out)."""
_OPEN_LOCK = threading.RLock()  # re-entrant: a weak reference's callback may run while this thread holds it


def open_files_budget() -> int:
    """Files the arrays of this backend keep open together: xarray's own ``file_cache_maxsize`` (default 128).

    ``open_mfdataset`` over thousands of files would otherwise keep every one open (two
    descriptors each) and fail with "Too many open files" under ``ulimit -n 1024``.
    """
    options: Any = xr.get_options
    return max(1, int(options()["file_cache_maxsize"]))


class MLArrayBackendArray(BackendArray):
    """The array of one ``.mla`` file, read on demand through ``MLArray.open(path, 'r')``.

    python-blosc2 must not share one open array between threads, so every read holds a
    lock (dask's threaded scheduler may read several chunks at once). Pickling keeps the
    path only, made absolute here, so the unpickled copy opens the same file again on its
    first read even in a process with another working directory.
    """

    def __init__(self, path: str, image: MLArray) -> None:
        self.path = os.path.abspath(path)
        shape, dtype = image.shape, image.dtype
        if shape is None or dtype is None:
            raise ValueError("a metadata-only file has no array")
        self.shape: tuple[int, ...] = shape
        self.dtype: np.dtype[Any] = dtype
        self._image: MLArray | None = image
        self._lock = threading.Lock()
        with self._lock:
            self._touch()
        _shrink(keep=self)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.shape, self.dtype = state["path"], state["shape"], state["dtype"]
        self._image = None
        self._lock = threading.Lock()

    def _open(self) -> MLArray:
        if self._image is None:
            image = MLArray.open(self.path, "r")
            if image.shape != self.shape or image.dtype != self.dtype:
                shape, dtype = image.shape, image.dtype
                image.close()
                raise FileChangedError(
                    f"the file changed since it was opened: now {shape} {dtype}, was {self.shape} {self.dtype}",
                    path=self.path,
                )
            self._image = image
        self._touch()
        return self._image

    def _touch(self) -> None:
        """Mark this array's file as open and the most recently read (:func:`_shrink` closes the oldest)."""
        key = id(self)
        with _OPEN_LOCK:
            if key not in _OPEN:
                _OPEN[key] = weakref.ref(self, _forgetting(key))
            _OPEN.move_to_end(key)

    def _release(self) -> bool:
        """Close the file unless a read of it is in progress (a later read opens it again); whether it was closed."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._image is not None:
                self._image.close()
                self._image = None
            _forget(id(self))
            return True
        finally:
            self._lock.release()

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        # outer keys with one index array: MLArray reads only the rows that array picks
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._read)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray[Any, Any]:
        """``key``: slices, integers and at most one 1-d integer array, with outer semantics."""
        dropped = [i for i, part in enumerate(key) if isinstance(part, (int, np.integer))]
        # integers read as length-1 slices, so an index array anywhere keeps its axis's place (NumPy
        # would move it first when integers and the array are separated by a slice)
        box = tuple(
            slice(int(part) % n, int(part) % n + 1) if i in dropped else part
            for i, (part, n) in enumerate(zip(key, self.shape, strict=False))
        )
        with self._lock:
            out = np.asarray(self._open()[box])
        _shrink(keep=self)
        return out.reshape([n for i, n in enumerate(out.shape) if i not in dropped]) if dropped else out

    def close(self) -> None:
        """Release the file (a later read opens it again)."""
        with self._lock:
            if self._image is not None:
                self._image.close()
                self._image = None
            _forget(id(self))


def _shrink(keep: MLArrayBackendArray) -> None:
    """Close the least recently read files while more than :func:`open_files_budget` are open.

    A file is closed only when no read of it is in progress (its array's lock is free; a
    busy one is passed over until a later read); it opens again on its next read.
    """
    with _OPEN_LOCK:
        excess = len(_OPEN) - open_files_budget()
        candidates = [ref() for k, ref in _OPEN.items() if k != id(keep)] if excess > 0 else []
    for other in candidates:
        if excess <= 0:
            break
        if other is not None and other._release():
            excess -= 1


def _forget(key: int) -> None:
    with _OPEN_LOCK:
        _OPEN.pop(key, None)


def _forgetting(key: int) -> Callable[[Any], None]:
    """A weak reference's callback: the collected array drops out of :data:`_OPEN` (its file closes with it)."""
    return lambda _: _forget(key)


def _variable_name(taken: set[str]) -> str:
    """``image``, or ``image_data`` (``image_data_1``, ...) when an axis or coordinate is named so."""
    if VARIABLE not in taken:
        return VARIABLE
    name, k = f"{VARIABLE}_data", 1
    while name in taken:
        name, k = f"{VARIABLE}_data_{k}", k + 1
    return name


def _names(drop_variables: str | Iterable[str] | None) -> set[str]:
    if drop_variables is None:
        return set()
    if isinstance(drop_variables, str):
        return {drop_variables}
    return set(drop_variables)


def open_mla_dataset(
    path: str | os.PathLike[str],
    *,
    drop_variables: str | Iterable[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> xr.Dataset:
    """The dataset of one ``.mla`` file: the lazy data variable ``image``, its coordinates and the header as attrs.

    Parameters
    ----------
    path : path
        The ``.mla`` file; it is opened read-only. It is made absolute (``~`` expanded) at
        once, as xarray's own backends do: ``encoding["source"]`` and the pickled array
        hold that absolute path, so an unpickled copy reads the same file whatever the
        working directory of the process that receives it.
    drop_variables : str or iterable of str, optional
        Variables left out (the data variable ``image`` and/or coordinates), as in
        :func:`xarray.open_dataset`.
    tolerance : float
        Relative size of an off-axis affine entry still taken for zero when deciding
        whether the volume is aligned (see :mod:`mlarray.xarray._coords`).
    """
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    image = MLArray.open(p, "r")
    try:
        drop = _names(drop_variables)
        meta = image.meta
        if meta.array is None:
            ds = xr.Dataset(attrs={"schema_version": meta.schema_version, "metadata_only": True})
            image.close()
            return ds
        geo = geometry(meta, image.affine, tolerance)
        layout = meta.layout
        encoding: dict[str, Any] = {"source": p, "dtype": image.dtype}
        if layout is not None:
            encoding["chunks"] = tuple(layout.chunk_size)
            encoding["preferred_chunks"] = dict(zip(geo.dims, layout.chunk_size, strict=True))
        coords = {name: xr.Variable(*spec) for name, spec in geo.coords.items() if name not in drop}
        variables: dict[str, xr.Variable] = {}
        closer = None
        name = _variable_name(set(geo.dims) | set(geo.coords))
        if name not in drop:
            backend = MLArrayBackendArray(p, image)
            data = indexing.LazilyIndexedArray(backend)
            variables[name] = xr.Variable(geo.dims, data, geo.attrs, encoding)
            closer = backend.close
        else:
            image.close()
        ds = xr.Dataset(variables, coords=coords, attrs={"schema_version": meta.schema_version})
        ds.set_close(closer)
        return ds
    except BaseException:
        image.close()
        raise


class MLArrayBackendEntrypoint(BackendEntrypoint):
    """xarray backend for ``.mla`` files (``engine="mlarray"``)."""

    description = "Open .mla files (Blosc2 arrays with a JSON header) lazily, with world coordinates"
    url = "https://pypi.org/project/mlarray/"  # the guide: docs/guide/xarray.md
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "tolerance", *IGNORED_DECODERS)

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        **decoders: Any,
    ) -> xr.Dataset:
        """Open ``filename_or_obj`` (a path) lazily; see :func:`open_mla_dataset`.

        xarray's decoding options (:data:`IGNORED_DECODERS`) are accepted and have no effect:
        the stored values carry no CF encoding.
        """
        unknown = sorted(set(decoders) - set(IGNORED_DECODERS))
        if unknown:
            raise TypeError(f"the mlarray engine takes no option {', '.join(unknown)}")
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            raise TypeError(f"the mlarray engine opens paths, got {type(filename_or_obj).__name__}")
        return open_mla_dataset(filename_or_obj, drop_variables=drop_variables, tolerance=tolerance)

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """A path ending in ``.mla`` (the extension :meth:`mlarray.MLArray.open` takes)."""
        if not isinstance(filename_or_obj, (str, os.PathLike)):
            return False
        return os.fspath(filename_or_obj).endswith(".mla")
