"""The :class:`MLArray` API: an N-d array with a validated, versioned header.

An ``MLArray`` is either *in memory* (a NumPy array, from ``MLArray(array)``,
``MLArray(path)`` or ``MLArray.load``; or an in-memory Blosc2 NDArray with
``compressed=True``, see :mod:`mlarray._compression`) or *file-backed* (a
memory-mapped Blosc2 NDArray, from ``MLArray.open`` or ``MLArray.create``). Indexing
follows NumPy. Every metadata edit is validated before it is kept, and every save
validates the complete header before the first byte is written, then replaces the
target atomically.

This module holds construction, the array's properties, the metadata, the frame write
and pickling. The rest of the class comes from mixins, each in a module of its own, over
the shared attributes declared in :mod:`mlarray._state`:

- :mod:`mlarray._access`: indexing, ``read``, ``to_numpy`` and in-place writes;
- :mod:`mlarray._opening`: ``load``, ``open`` and ``create``;
- :mod:`mlarray._saving`: ``save`` and ``close``;
- :mod:`mlarray._compression`: ``compress``/``decompress`` and the storage plan;
- :mod:`mlarray._geometry`: ``spacing``, ``origin``, ``affine`` and the other geometry;
- :mod:`mlarray._constructors`: ``zeros``, ``arange``, ``*_like`` and the other NumPy-style constructors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlarray._access import ArrayAccess
from mlarray._compression import UNSET as _UNSET
from mlarray._compression import InMemoryCompression, check_layout_args, derived_layout
from mlarray._constructors import ArrayConstructors
from mlarray._geometry import SpatialGeometry
from mlarray._inputs import ShapeOnly, as_storable, default_labels, tolist
from mlarray._opening import MMAP_MODES as MMAP_MODES
from mlarray._opening import FileOpening
from mlarray._saving import WRITER as WRITER
from mlarray._saving import FilePersistence
from mlarray.errors import (
    FileChangedError,
    InvalidArgumentError,
)
from mlarray.layout import PatchSize
from mlarray.models import Meta, parse_header
from mlarray.storage import write_frame, write_header
from mlarray.storage.chunks import DataSection
from mlarray.storage.compress import check_chunk_count
from mlarray.storage.cparams import check_dparams, make_cparams
from mlarray.storage.io import layout_of, write_data
from mlarray.storage.locking import FileLock


def _as_meta(meta: Meta | dict[str, Any] | None) -> Meta:
    """``meta`` as a fresh :class:`Meta`: a dict is the ``source`` namespace."""
    if meta is None:
        return Meta()
    if isinstance(meta, Meta):
        return meta.model_copy(deep=True)
    if isinstance(meta, dict):
        return Meta(source=meta)
    raise InvalidArgumentError(f"meta must be a Meta or a dict, got {type(meta).__name__}")


def _validated(meta: Meta) -> Meta:
    """Revalidate ``meta`` as a whole (cross-field rules included); return the validated copy."""
    return parse_header(meta.model_dump(mode="json"))


class MLArray(ArrayAccess, ArrayConstructors, FileOpening, FilePersistence, InMemoryCompression, SpatialGeometry):
    """An N-dimensional array with spatial geometry and metadata, stored as ``.mla``.

    Parameters
    ----------
    array : array-like, path or None
        The data (any array-like; big-endian data is stored little-endian), a path to
        an ``.mla`` file to load into memory, or ``None`` for a metadata-only image.
    spacing, origin, direction, affine, axis_labels
        Geometry of the spatial axes (see :class:`mlarray.models.Spatial`). Explicit
        values override ``meta`` and ``copy``.
    meta : Meta or dict, optional
        Header contents; a plain dict is taken as ``meta.source``.
    copy : MLArray, optional
        Fill every argument not given explicitly from this image: its metadata
        (except ``stats``, which describe other data) and its layout.
    patch_size : 'default', int, sequence or None
        Training patch size the layout is derived from (``'default'`` = 192 per spatial
        axis). ``None`` with no chunk/block size lets Blosc2 choose the layout.
    chunk_size, block_size : sequence of int, optional
        Manual layout; overrides ``patch_size``.
    cparams, dparams : dict or blosc2.CParams / blosc2.DParams, optional
        Blosc2 compression / decompression parameters (codec, clevel, filters, nthreads).
    compressed : bool, default False
        Hold the data in memory as a Blosc2 NDArray laid out as it will be saved
        (less RAM, slower access) instead of a NumPy array; see :meth:`compress`.
    """

    def __init__(
        self,
        array: Any = None,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] | None = None,
        direction: Sequence[Sequence[float]] | None = None,
        affine: Any = None,
        axis_labels: Sequence[str] | None = None,
        meta: Meta | dict[str, Any] | None = None,
        copy: MLArray | None = None,
        patch_size: PatchSize = _UNSET,
        chunk_size: Sequence[int] | None = None,
        block_size: Sequence[int] | None = None,
        cparams: Any = None,
        dparams: Any = None,
        compressed: bool = False,
    ) -> None:
        check_dparams(dparams)  # before anything is written (MLArray.create builds its template here)
        self._np: np.ndarray[Any, Any] | None = None
        self._nd: Any = None
        self._path: str | None = None
        self._mode: str | None = None
        self._closed = False
        self._dparams = dparams
        self._persisted: dict[str, Any] | None = None
        self._dirty = False
        self._lock: FileLock | None = None
        self._requested: tuple[str, str | None] | None = None
        self._chunks: DataSection | None = None
        self._remote: tuple[str | None, dict[str, Any]] | None = None  # (URL or None for a file object, options)
        self._dropped: tuple[str, ...] = ()
        keep_layout = False
        if isinstance(array, bytes):  # a path, as MLArray.load takes it (0-d bytes data has no use here)
            array = os.fsdecode(array)
        if isinstance(array, (str, os.PathLike)):
            loaded = MLArray.load(array, dparams=dparams)
            base: Meta = loaded.meta
            self._np = loaded._np
            self._dropped = loaded._dropped
            keep_layout = True
        else:
            values_of = array if isinstance(array, MLArray) else None
            if copy is not None and not isinstance(copy, MLArray):
                raise InvalidArgumentError(f"copy must be an MLArray, got {type(copy).__name__}")
            if isinstance(array, MLArray):
                copy = array if copy is None else copy
                array = array.to_numpy() if array.shape is not None else None
            if array is not None:
                self._np = as_storable(array)
            base = _as_meta(meta)
            if copy is not None:
                if meta is None:
                    base = copy.meta.model_copy(deep=True)
                    base.stats = None
                    base.class_locations = None  # like stats, they describe the other image's data
                    if copy is not values_of:  # copy's scaling describes copy's values, not these
                        base.scaling = None
                keep_layout = True
                base.layout = copy.meta.layout.model_copy() if copy.meta.layout is not None else None
        if meta is not None and isinstance(array, (str, os.PathLike)):
            base = _as_meta(meta).model_copy(update={"array": base.array, "layout": base.layout, "writer": base.writer})
        self._layout_args: dict[str, Any] | None = None
        if patch_size is not _UNSET or chunk_size is not None or block_size is not None or cparams is not None:
            keep_layout = False
        derived = None
        if keep_layout and copy is not None and self._np is not None:
            derived = derived_layout(copy, tuple(self._np.shape), self._np.dtype)  # None: copy's layout fits as is
            keep_layout = derived is None and base.layout is not None
        data = base.model_dump(mode="json")
        if not keep_layout:
            data["layout"] = None
            self._layout_args = derived or {
                "patch_size": "default" if patch_size is _UNSET else patch_size,
                "chunk_size": chunk_size,
                "block_size": block_size,
                "cparams": cparams,
            }
        spatial = data["spatial"]
        given = {"spacing": spacing, "origin": origin, "direction": direction, "axis_labels": axis_labels}
        for key, value in given.items():
            if value is not None:
                spatial[key] = tolist(value)
        if affine is not None:
            spatial["affine"] = tolist(affine)
        if self._np is not None:
            if spatial.get("axis_labels") is None:
                spatial["axis_labels"] = default_labels(self._np.ndim, spatial, refuse_empty=True)
            data["array"] = {"shape": list(self._np.shape), "dtype": self._np.dtype.str}
        elif not isinstance(array, (str, os.PathLike)):
            data["array"] = None
            data["layout"] = None
        self._meta = parse_header(data)
        if derived is not None and isinstance(derived["patch_size"], list):
            spatial_axes = self._meta.spatial_axes() or range(self.ndim)
            if len(derived["patch_size"]) != len(spatial_axes):  # copy had other spatial axes
                derived["patch_size"] = "default"
        if self._layout_args is not None and self._np is not None:  # here, not at a save much later
            check_layout_args(tuple(self._np.shape), self._np.dtype.itemsize, self._layout_args)
        if compressed and self._np is not None:
            self.compress(dparams=dparams)

    # ------------------------------------------------------------------ array protocol

    @property
    def _data(self) -> Any:
        data = self._np if self._np is not None else self._nd
        if self._closed or (data is None and self._has_array()):  # the second: closed by another thread meanwhile
            raise InvalidArgumentError("the array is closed")
        return data

    def _has_array(self) -> bool:
        return self._meta.array is not None

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape of the array (``None`` for a metadata-only image)."""
        return tuple(self._meta.array.shape) if self._meta.array is not None else None

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """Element type of the array (``None`` for a metadata-only image)."""
        return np.dtype(self._meta.array.dtype) if self._meta.array is not None else None

    @property
    def ndim(self) -> int:
        """Number of array dimensions (0 for a metadata-only image)."""
        return len(self._meta.array.shape) if self._meta.array is not None else 0

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes."""
        axes = self._meta.spatial_axes()
        return 0 if axes is None else len(axes)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape is not None else 0

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Blosc2 chunk shape of the file or compressed data, else the one :meth:`save` writes (``None``: none yet).

        ``dask.array.from_array`` aligns its blocks to it; :meth:`to_dask` gives one block per chunk."""
        if not self._has_array() or self._closed:
            return None
        chunks = self._nd.chunks if self._nd is not None else self._storage_plan(None).chunks
        return None if chunks is None else tuple(int(c) for c in chunks)

    def to_dask(self, chunks: Any = "file") -> Any:
        """A lazy Dask array over this image, one block per chunk (:func:`mlarray.dask.array_of`; needs dask)."""
        from mlarray.dask import array_of

        return array_of(self, chunks=chunks)

    def __len__(self) -> int:
        """Length of the first axis; 0 for a metadata-only image (as in mlarray 0.0.x)."""
        return self.shape[0] if self.shape else 0

    def _file_version(self) -> tuple[str, tuple[int, int]] | None:
        """For a local file open read-only: its absolute path and version (size, mtime in ns), else ``None``.

        For views that reopen the file by path (Dask graphs): the path is made absolute when
        the file was opened. Raises :class:`~mlarray.errors.FileChangedError` when the path
        names another file by now than the one this image reads.
        """
        if self._chunks is None or self._mode not in ("r", None) or self._closed:
            return None
        found = self._chunks.checked_file()
        if found is None:
            return None
        if not self._chunks.names_checked_file(found[0]):
            raise FileChangedError(
                "the path names another file than this image reads (replaced, moved or deleted since it was "
                "opened); open it again",
                path=found[0],
            )
        return found

    def _remote_version(self) -> tuple[Any, ...] | None:
        """For an image read from a URL: what names the object as it was opened (size, ETag, ...), else ``None``."""
        if self._remote is None or self._remote[0] is None or self._nd is None:
            return None
        version: tuple[Any, ...] | None = getattr(getattr(self._nd, "source", None), "version", None)
        return version

    @property
    def filepath(self) -> str | None:
        """The file or URL this image is open on (``open``/``create``), else ``None`` (also for a file object)."""
        return None if self._remote is not None and self._remote[0] is None else self._path

    @property
    def mode(self) -> str | None:
        """The ``mode`` given to ``open`` (``'r'``/``'a'``) or ``create`` (``'w'``); ``None`` in memory."""
        return self._requested[0] if self._requested is not None and self._path is not None else None

    @property
    def mmap_mode(self) -> str | None:
        """The ``mmap_mode`` given to ``open``/``create`` (``None`` if none was, and in memory).

        The access actually granted is read-only for ``'r'`` (or ``mode='r'`` without
        ``mmap_mode``), read/write for ``'r+'``/``'w+'`` (or ``mode='a'``), copy-on-write for ``'c'``.
        """
        if self._path is None:
            return None
        return self._requested[1] if self._requested is not None else self._mode

    def __repr__(self) -> str:
        where = f", path={self._path!r}, mmap_mode={self._mode!r}" if self._path else ""
        if not self._has_array():
            return f"MLArray(metadata-only{where})"
        return f"MLArray(shape={self.shape}, dtype={self.dtype}{where})"

    # ------------------------------------------------------------------ metadata

    @property
    def meta(self) -> Meta:
        """The header (``source``, ``extra``, ``spatial``, ``stats``, ``bbox``, ``is_seg``, ...)."""
        return self._meta

    @meta.setter
    def meta(self, value: Meta | dict[str, Any]) -> None:
        new = _as_meta(value)
        new.array, new.layout, new.writer = self._meta.array, self._meta.layout, self._meta.writer
        self._meta = _validated(new)

    # ------------------------------------------------------------------ writing the frame, pickling

    def _write_to(self, tmp: str, source: Any, target: str | None = None) -> Any:
        """Write data and header to ``tmp``; returns the open blosc2 NDArray (for ``save`` and ``create``)."""
        shape, dtype = self.shape, self.dtype
        if source is None or shape is None or dtype is None:
            nd = write_frame(tmp, None, chunks=None, blocks=None, cparams=make_cparams("lz4", 0, [], 1))
            meta = self._header_for_save(layout=None)
            write_header(nd, meta, digest_of=tmp)
            return nd
        plan = self._storage_plan(target or tmp)
        if plan.chunks is not None:
            check_chunk_count(shape, plan.chunks, target or tmp)  # before a write of hours no reader would open
        digest = None
        if isinstance(source, ShapeOnly):
            nd = source.write(tmp, plan.chunks, plan.blocks, plan.cparams)
        else:
            if source is self._nd and self._chunks is not None:
                self._chunks.check_all()  # spec 4.4.6: the file's chunks are checked before any is copied or decoded
            written = write_data(tmp, source, chunks=plan.chunks, blocks=plan.blocks, cparams=plan.cparams)
            nd, digest = written.nd, written.digest
        meta = self._header_for_save(layout=layout_of(nd, plan.strategy, plan.patch))
        write_header(nd, meta, digest_of=tmp, digest=digest)
        return nd

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle support for data loaders: a read-only handle reopens the file; in-memory copies data."""
        if self._closed:
            raise TypeError("cannot pickle a closed MLArray")
        if self._remote is not None:
            url, options = self._remote
            if url is None:
                raise TypeError("an MLArray read from a file object cannot be pickled; open the file in each process")
            from mlarray.remote.open import reopen_url

            return (reopen_url, (url, self._dparams, options))
        if self._nd is not None and self._path is not None:
            if self._mode != "r":
                raise TypeError(
                    f"an MLArray opened with mmap_mode={self._mode!r} cannot be pickled; "
                    "open the file in each process instead (only one writer may hold it)"
                )
            found = self._chunks.checked_file() if self._chunks is not None else None
            if found is None:
                return (MLArray.open, (os.path.abspath(self._path), "r", self._dparams))
            where, version = found  # absolute as opened (not the receiver's cwd), and the version read
            return (_reopen, (where, self._dparams, version))
        data = self.to_numpy() if self._has_array() else None
        return (_restore, (data, self._meta.model_dump(mode="json"), self._layout_args, self._nd is not None))

    def __enter__(self) -> MLArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reopen(path: str, dparams: Any, version: tuple[int, int]) -> MLArray:
    """Unpickle a read-only handle: open ``path`` again; its reads refuse another version than was pickled.

    Unpickling itself does not raise (a ``multiprocessing.Pool`` worker that cannot unpickle
    its task dies and the pool waits forever): every array read raises ``FILE_CHANGED``.
    """
    image = MLArray.open(path, "r", dparams)
    if image._chunks is not None:
        image._chunks.expect_version(
            (version[0], version[1]), "the file was replaced or written since the handle was pickled; open it again"
        )
    return image


def _restore(
    data: Any, header: dict[str, Any], layout_args: dict[str, Any] | None, compressed: bool = False
) -> MLArray:
    """Rebuild a pickled in-memory MLArray (the header is revalidated)."""
    obj = MLArray.__new__(MLArray)
    obj._init_empty(parse_header(header))
    obj._np = data
    obj._layout_args = layout_args
    if compressed:
        obj.compress()
    return obj
