"""The :class:`MLArray` API: an N-d array with a validated, versioned header.

An ``MLArray`` is either *in memory* (a NumPy array, from ``MLArray(array)``,
``MLArray(path)`` or ``MLArray.load``; or an in-memory Blosc2 NDArray with
``compressed=True``, see :mod:`mlarray._compression`) or *file-backed* (a
memory-mapped Blosc2 NDArray, from ``MLArray.open`` or ``MLArray.create``). The
NumPy-style constructors live in :mod:`mlarray._constructors`. Indexing follows NumPy. Every
metadata edit is validated before it is kept, and every save validates the complete
header before the first byte is written, then replaces the target atomically.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import blosc2
import numpy as np
import numpy.typing as npt

from mlarray._compression import UNSET as _UNSET
from mlarray._compression import InMemoryCompression
from mlarray._constructors import ArrayConstructors
from mlarray._geometry import SpatialGeometry
from mlarray._inputs import ShapeOnly, as_storable, default_labels, tolist
from mlarray._version import __version__
from mlarray.errors import (
    CorruptFrameError,
    HeaderEncodingError,
    InvalidArgumentError,
    MLArrayError,
    ReadOnlyError,
)
from mlarray.layout import PatchSize
from mlarray.models import Meta, Writer, parse_header
from mlarray.reading import check_result_size, decompress_all, fast_read, threads_of
from mlarray.remote import is_remote as _is_remote
from mlarray.storage import (
    atomic_target,
    check_path,
    fastread,
    header_bytes,
    open_frame,
    write_frame,
    write_header,
)
from mlarray.storage.chunks import DataSection
from mlarray.storage.frame import inspect_frame
from mlarray.storage.io import (
    is_read_only,
    layout_of,
    make_cparams,
    normalize_dtype,
    open_checked,
    write_data,
)
from mlarray.storage.locking import FileLock, ensure_unlocked
from mlarray.versions import SCHEMA_VERSION
from mlarray.writing import PrivateChunks, assign

MMAP_MODES = ("r", "r+", "c")
WRITER = "mlarray"


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


class MLArray(ArrayConstructors, InMemoryCompression, SpatialGeometry):
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
        keep_layout = False
        if isinstance(array, (str, os.PathLike)):
            loaded = MLArray.load(array, dparams=dparams)
            base: Meta = loaded.meta
            self._np = loaded._np
            keep_layout = True
        else:
            values_of = array if isinstance(array, MLArray) else None
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
        data = base.model_dump(mode="json")
        if not keep_layout:
            data["layout"] = None
            self._layout_args = {
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
                spatial["axis_labels"] = default_labels(self._np.ndim, spatial)
            data["array"] = {"shape": list(self._np.shape), "dtype": self._np.dtype.str}
        elif not isinstance(array, (str, os.PathLike)):
            data["array"] = None
            data["layout"] = None
        self._meta = parse_header(data)
        if compressed and self._np is not None:
            self.compress(dparams=dparams)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | Any,
        dparams: Any = None,
        compressed: bool = False,
        *,
        storage_options: dict[str, Any] | None = None,
    ) -> MLArray:
        """Read a whole ``.mla`` file into memory (decompressing with all cores by default).

        ``path`` may also be a URL (``s3://``, ``https://``, any fsspec URL, with
        ``storage_options``) or an open binary file object: see :meth:`open`.
        A file of the earlier implementation (pickle header) is read safely too, with a
        :class:`~mlarray.errors.LegacyFormatWarning`; ``mlarray migrate`` converts it.
        ``compressed=True`` keeps the data Blosc2-compressed in memory (see :meth:`compress`).
        """
        if compressed:
            image = cls.load(path, dparams, storage_options=storage_options)
            image.compress(dparams=dparams)
            return image
        if _is_remote(path):
            from mlarray.remote.open import load_remote

            return load_remote(cls, path, dparams, storage_options)
        p = check_path(path, must_exist=True)
        try:
            head, nd = open_checked(p, "r", dparams if dparams is not None else {"nthreads": blosc2.nthreads})
        except HeaderEncodingError:
            from mlarray.legacy.reader import is_legacy_file, load_legacy_array

            if not is_legacy_file(p):
                raise
            return load_legacy_array(cls, p, dparams)
        obj = cls.__new__(cls)
        obj._init_empty(head.meta)
        if head.meta.array is not None:
            obj._np = decompress_all(nd, p, head.data, threads_of(dparams, blosc2.nthreads))
        return obj

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | Any,
        mmap_mode: str | None = "r",
        dparams: Any = None,
        *,
        mode: str = "r",
        storage_options: dict[str, Any] | None = None,
    ) -> MLArray:
        """Open ``path`` memory-mapped: ``'r'`` read-only, ``'r+'`` read/write, ``'c'`` copy-on-write.

        ``mmap_mode=None`` leaves the choice to ``mode`` as mlarray 0.0.x did: ``'r'``
        read-only, ``'a'`` read/write (the same access as ``'r'`` / ``'r+'``); with an
        ``mmap_mode``, ``mode`` is ignored. Both are kept as :attr:`mode` and :attr:`mmap_mode`.

        Reads decompress with one thread by default (the data-loader worker case); pass
        ``dparams={"nthreads": n}`` for more. Call :meth:`close` (or use ``with``) to
        persist metadata edits of an ``'r+'`` array. A file of the earlier implementation
        opens read-only (``'r'``, ``'c'``) with a :class:`~mlarray.errors.LegacyFormatWarning`;
        ``'r+'`` raises :class:`~mlarray.errors.LegacyFormatError` until it is migrated.

        ``path`` may be a URL (``s3://``, ``https://``, ``memory://``, any fsspec URL;
        ``storage_options`` go to fsspec) or an open binary file object; these open
        read-only and a patch read fetches only the chunks it touches (see
        :mod:`mlarray.remote`; needs the ``remote`` extra for URLs).
        """
        requested = (mode, mmap_mode)
        mmap_mode = _access(mode, mmap_mode)
        if _is_remote(path):
            from mlarray.remote.open import open_remote

            return open_remote(cls, path, mmap_mode, dparams, storage_options)
        if storage_options:
            raise InvalidArgumentError("storage_options apply to URLs only")
        p = check_path(path, must_exist=True)
        if mmap_mode == "r+" and is_read_only(p):
            raise ReadOnlyError("the file is not writable; open it with mmap_mode='r'", path=p)
        for _ in range(8):
            lock = FileLock(p) if mmap_mode == "r+" else None
            try:
                # 'c' maps read-only; written chunks are kept in memory (see __setitem__).
                frame_mode = "r" if mmap_mode == "c" else mmap_mode
                head, nd = open_checked(p, frame_mode, dparams if dparams is not None else {"nthreads": 1})
            except BaseException as exc:
                if lock is not None:
                    lock.release()
                if isinstance(exc, HeaderEncodingError):
                    from mlarray.legacy.reader import is_legacy_file, open_legacy

                    if is_legacy_file(p):
                        return open_legacy(cls, p, mmap_mode, dparams)
                raise
            if lock is None or lock.holds(p):
                break
            lock.release()  # the file was replaced after we locked it: lock the new one
        obj = cls.__new__(cls)
        obj._init_empty(head.meta)
        obj._nd = nd
        obj._chunks = head.data
        obj._lock = lock
        obj._path, obj._mode, obj._dparams = p, mmap_mode, dparams
        obj._requested = requested
        obj._persisted = head.meta.model_dump(mode="json")
        return obj

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        shape: Sequence[int],
        dtype: npt.DTypeLike = np.float64,
        meta: Meta | dict[str, Any] | None = None,
        mode: str = "w",
        mmap_mode: str | None = "w+",
        fill_value: Any = 0,
        **kwargs: Any,
    ) -> MLArray:
        """Create (or overwrite) ``path`` filled with ``fill_value`` and return it open read/write.

        ``meta`` and ``kwargs`` are the constructor's metadata and layout arguments
        (``spacing``, ``patch_size``, ``chunk_size``, ``block_size``, ``cparams``,
        ``dparams``, ...). ``mode`` must be ``'w'`` and ``mmap_mode`` ``'w+'`` or ``None``
        (the same read/write access; both kept for code written for mlarray 0.0.x).
        Until the file is complete the previous file at ``path`` (if any) is left untouched.
        """
        if mode != "w" or mmap_mode not in ("w+", None):
            raise InvalidArgumentError(
                f"MLArray.create needs mode='w' and mmap_mode='w+' (or None), got {mode!r} and {mmap_mode!r}"
            )
        if meta is not None:
            kwargs["meta"] = meta
        p = check_path(path, must_exist=False)
        shape = tuple(int(s) for s in shape)
        dt = normalize_dtype(dtype)
        template = cls(ShapeOnly(shape, dt), **kwargs)
        with atomic_target(p) as tmp:
            nd = template._write_to(tmp, source=ShapeOnly(shape, dt, fill_value), target=p)
            del nd
        obj = cls.open(p, "r+", dparams=kwargs.get("dparams"))
        obj._mode = "w+"
        obj._requested = (mode, mmap_mode)
        return obj

    def _init_empty(self, meta: Meta) -> None:
        self._np = None
        self._nd = None
        self._path = None
        self._mode = None
        self._closed = False
        self._dparams = None
        self._persisted = None
        self._dirty = False
        self._lock = None
        self._chunks = None
        self._remote = None
        self._layout_args = None
        self._requested = None
        self._meta = meta

    # ------------------------------------------------------------------ array protocol

    @property
    def _data(self) -> Any:
        if self._closed:
            raise InvalidArgumentError("the array is closed")
        return self._np if self._np is not None else self._nd

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
        if not self.shape:
            raise TypeError("len() of a metadata-only MLArray")
        return self.shape[0]

    def _require_array(self) -> Any:
        if not self._has_array():
            raise InvalidArgumentError("this is a metadata-only image: it has no array")
        return self._data

    def __getitem__(self, key: Any) -> Any:
        data = self._require_array()
        if self._nd is None:
            return data[key]
        check_result_size(data.shape, data.dtype, key, self._path)
        if self._chunks is not None:
            self._chunks.check_key(key)  # spec 4.4.6: the chunks read are checked before blosc2 sees them
            threads = threads_of(self._dparams, 1)
            if threads >= fastread.PATCH_THREADS_MIN and self._unwritten():
                out = fast_read(self._chunks, key, threads, self._path)
                if out is not None:
                    return out
        try:
            return data[key]
        except MLArrayError:
            raise  # remote arrays: typed errors of the read itself
        except RuntimeError as exc:  # C-Blosc2 reports undecodable chunks this way
            raise CorruptFrameError(f"the array data cannot be decompressed ({exc})", path=self._path) from None

    def _unwritten(self) -> bool:
        """The file's chunks are what :attr:`_chunks` indexed: no data written since it was opened."""
        return not self._dirty and not isinstance(self._nd, PrivateChunks)

    def __setitem__(self, key: Any, value: Any) -> None:
        data = self._require_array()
        if self._mode == "r":
            raise ReadOnlyError("the array was opened with mmap_mode='r'; open it with 'r+' to write", path=self._path)
        if isinstance(value, MLArray):
            value = value.to_numpy()
        check = self._chunks.check_key if self._chunks is not None else None
        if check is not None:
            check(key)  # spec 4.4.6: the chunks a write touches are checked before blosc2 sees them
        if self._mode == "c" and not isinstance(self._nd, PrivateChunks):
            data = self._nd = PrivateChunks(self._nd, self._path, check)  # written chunks stay in memory
        if self._nd is None:
            data[key] = value
            return
        assign(data, key, value, path=self._path, check=check)  # NumPy's semantics and errors; nothing written on error
        self._dirty = True
        if self._mode == "r+" and self._chunks is not None and self._path is not None:
            # blosc2 appended the rewritten chunks and a new chunk index: check against the file as it is now
            self._chunks.close()
            self._chunks = DataSection(self._path, inspect_frame(self._path))

    def to_numpy(self, *, scaled: bool = False) -> np.ndarray[Any, Any]:
        """The whole array as a NumPy array (decompressed for a file-backed array).

        With ``scaled=True`` the result holds physical values: when ``meta.scaling``
        says the array stores raw values (``stored='raw'``, e.g. ``convert --keep-raw``),
        ``raw * slope + intercept`` is applied in float64. Arrays that store physical
        values, or have no scaling, are returned as stored either way.
        """
        data = self._require_array()
        if isinstance(data, np.ndarray):
            out = data
        else:
            section = self._chunks if self._unwritten() else None
            if self._chunks is not None:
                self._chunks.check_all()  # spec 4.4.6: every chunk checked before blosc2 decompresses it
            out = decompress_all(data, self._path, section, threads_of(self._dparams, 1))
        scaling = self._meta.scaling
        if scaled and scaling is not None and scaling.stored == "raw":
            return scaling.to_physical(out)
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        out = self.to_numpy()
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out.copy() if copy else out

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

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> None:
        """Write the image to ``path`` atomically.

        The complete header is validated before anything is written; the data go to a
        temporary file beside ``path`` that is fsynced and renamed over it, so a failed
        or killed save leaves any previous file intact. Saving over the file this
        image was opened from works. A URL (``s3://...``, with ``storage_options``) is
        written to a local temporary file first and then uploaded once.
        """
        if _is_remote(path):
            from mlarray.remote.open import save_remote

            save_remote(self, str(path), storage_options)
            return
        p = check_path(path, must_exist=False)
        data = self._data if self._has_array() else None
        header_bytes(self._header_for_save(layout=self._meta.layout))
        local = self._path is not None and self._remote is None
        reopen = local and os.path.exists(p) and os.path.samefile(p, str(self._path))
        if not (self._lock is not None and self._lock.holds(p)):
            ensure_unlocked(p)
        with atomic_target(p) as tmp:
            self._write_to(tmp, source=data, target=p)
        if reopen:
            mode = "r+" if self._mode == "w+" else self._mode
            fresh = MLArray.open(p, mode or "r", dparams=self._dparams)
            if self._lock is not None:
                self._lock.release()
            self._nd, self._meta, self._persisted = fresh._nd, fresh._meta, fresh._persisted
            self._chunks = fresh._chunks
            self._lock, fresh._lock = fresh._lock, None
            self._dirty = False

    def _header_for_save(self, layout: Any) -> Meta:
        meta = self._meta.model_copy(deep=True)
        meta.schema_version = SCHEMA_VERSION  # the writer writes the version whose rules it checked
        meta.writer = Writer(name=WRITER, version=__version__)
        meta.layout = layout
        meta.integrity = self._meta.integrity if self._nd is not None and not self._dirty else None
        return meta

    def _write_to(self, tmp: str, source: Any, target: str | None = None) -> Any:
        """Write data and header to ``tmp``; returns the open blosc2 NDArray."""
        shape, dtype = self.shape, self.dtype
        if source is None or shape is None or dtype is None:
            nd = write_frame(tmp, None, chunks=None, blocks=None, cparams=make_cparams("lz4", 0, [], 1))
            meta = self._header_for_save(layout=None)
            write_header(nd, meta, digest_of=tmp)
            return nd
        plan = self._storage_plan(target or tmp)
        digest = None
        if isinstance(source, ShapeOnly):
            nd = source.write(tmp, plan.chunks, plan.blocks, plan.cparams)
        else:
            written = write_data(tmp, source, chunks=plan.chunks, blocks=plan.blocks, cparams=plan.cparams)
            nd, digest = written.nd, written.digest
        meta = self._header_for_save(layout=layout_of(nd, plan.strategy, plan.patch))
        write_header(nd, meta, digest_of=tmp, digest=digest)
        return nd

    def close(self) -> None:
        """Persist metadata edits (``'r+'``/``'w+'``) and release the file. Idempotent.

        The new header (and, after data writes, the refreshed integrity digest) is
        written to a copy of the file that atomically replaces it, so a crash during
        ``close`` leaves the previous, complete file. This costs one copy of the file.
        """
        if self._closed:
            return
        try:
            if self._nd is not None and self._mode in ("r+", "w+") and self._path is not None:
                current = self._meta.model_dump(mode="json")
                if current != self._persisted or self._dirty:
                    meta = self._header_for_save(layout=self._meta.layout)
                    header_bytes(meta)  # validate before touching anything
                    self._nd = None  # release the mapping: every write is in the file now
                    _rewrite_header(self._path, meta, refresh_digest=self._dirty)
        finally:
            self._nd = None
            self._np = None
            if self._chunks is not None:
                self._chunks.close()
                self._chunks = None
            self._closed = True
            if self._lock is not None:
                self._lock.release()
                self._lock = None

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
            return (MLArray.open, (self._path, "r", self._dparams))
        data = self.to_numpy() if self._has_array() else None
        return (_restore, (data, self._meta.model_dump(mode="json"), self._layout_args, self._nd is not None))

    def __enter__(self) -> MLArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _access(mode: str, mmap_mode: str | None) -> str:
    """The access an ``open(mode=..., mmap_mode=...)`` asks for: ``'r'``, ``'r+'`` or ``'c'``."""
    if mode not in ("r", "a"):
        raise InvalidArgumentError(f"mode must be 'r' or 'a', got {mode!r}")
    if mmap_mode is None:
        return "r+" if mode == "a" else "r"
    if mmap_mode not in MMAP_MODES:
        hint = "; use MLArray.create to create a file" if mmap_mode == "w+" else ""
        raise InvalidArgumentError(f"mmap_mode must be one of {MMAP_MODES} or None, got {mmap_mode!r}{hint}")
    return mmap_mode


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


def _rewrite_header(path: str, meta: Meta, *, refresh_digest: bool) -> None:
    """Replace the header of ``path`` by writing a copy and renaming it over the original."""
    with atomic_target(path) as tmp:
        shutil.copyfile(path, tmp)
        nd = open_frame(tmp, "r+")
        write_header(nd, meta, digest_of=tmp if refresh_digest else None)
        del nd
