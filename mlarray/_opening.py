"""Opening ``.mla`` files as :class:`~mlarray.api.MLArray`: ``load``, ``open`` and ``create``.

``load`` reads a whole file into memory; ``open`` memory-maps it (read-only,
read/write under a write lock, or copy-on-write) and keeps the chunk index that
every read is checked against (spec 4.4.6); ``create`` writes a new file filled with
one value and opens it read/write. URLs and file objects go to :mod:`mlarray.remote`,
files of the earlier implementation to :mod:`mlarray.legacy`.

Kept apart from :mod:`mlarray.api` so the ``MLArray`` class stays readable.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import blosc2
import numpy as np
import numpy.typing as npt

from mlarray._inputs import ShapeOnly, as_shape
from mlarray._state import ImageState
from mlarray.errors import ConcurrentWriterWarning, HeaderEncodingError, InvalidArgumentError, ReadOnlyError
from mlarray.models import Meta
from mlarray.reading import decompress_all, threads_of
from mlarray.remote import is_remote as _is_remote
from mlarray.storage import atomic_target, check_path
from mlarray.storage.cparams import check_dparams
from mlarray.storage.io import is_read_only, normalize_dtype, open_checked, write_destination
from mlarray.storage.locking import FileLock, another_writer_holds, replacing

if TYPE_CHECKING:
    from mlarray.api import MLArray

MMAP_MODES = ("r", "r+", "c")


def _warn_if_written(path: str, stacklevel: int) -> None:
    """Warn (:class:`ConcurrentWriterWarning`) when another process has ``path`` open for writing."""
    if another_writer_holds(path):
        warnings.warn(
            f"{path}: another process has this file open for writing (mmap_mode='r+'); what is read "
            "while that process writes may be neither the old nor the new values",
            ConcurrentWriterWarning,
            stacklevel=stacklevel + 1,
        )


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


def _mlarray(cls: type[FileOpening]) -> type[MLArray]:
    """``cls`` typed as what it is: this mixin is mixed into :class:`~mlarray.api.MLArray` only."""
    return cast("type[MLArray]", cls)


class FileOpening(ImageState):
    """The class methods ``load``, ``open`` and ``create``; mixed into :class:`~mlarray.api.MLArray`."""

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
        mla = _mlarray(cls)
        check_dparams(dparams)
        if compressed:
            image = mla.load(path, dparams, storage_options=storage_options)
            image.compress(dparams=dparams)
            return image
        if _is_remote(path):
            from mlarray.remote.open import load_remote

            return load_remote(mla, path, dparams, storage_options)
        p = check_path(path, must_exist=True)
        try:
            head, nd = open_checked(
                p, "r", dparams if dparams is not None else {"nthreads": blosc2.nthreads}, lazy=True
            )
        except HeaderEncodingError:
            from mlarray.legacy.reader import is_legacy_file, load_legacy_array

            if not is_legacy_file(p):
                raise
            return load_legacy_array(mla, p, dparams)
        obj = mla.__new__(mla)
        obj._init_empty(head.meta, head.dropped)
        if head.meta.array is not None:
            _warn_if_written(p, stacklevel=2)
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
        mla = _mlarray(cls)
        check_dparams(dparams)
        requested = (mode, mmap_mode)
        mmap_mode = _access(mode, mmap_mode)
        if _is_remote(path):
            from mlarray.remote.open import open_remote

            return open_remote(mla, path, mmap_mode, dparams, storage_options)
        if storage_options:
            raise InvalidArgumentError("storage_options apply to URLs only")
        p = check_path(path, must_exist=True)
        if mmap_mode == "r+" and is_read_only(p):
            raise ReadOnlyError("the file is not writable; open it with mmap_mode='r'", path=p)
        if mmap_mode == "r+" and not os.access(os.path.dirname(write_destination(p)) or ".", os.W_OK):
            raise ReadOnlyError(
                "the folder holding the file is not writable, and a writer rewrites the file's header "
                "when it closes; open it with mmap_mode='r' (or 'c' for edits kept in memory)",
                path=p,
            )
        for _ in range(8):
            lock = FileLock(p) if mmap_mode == "r+" else None
            try:
                # 'c' maps read-only; written chunks are kept in memory (see __setitem__).
                frame_mode = "r" if mmap_mode == "c" else mmap_mode
                head, nd = open_checked(
                    p, frame_mode, dparams if dparams is not None else {"nthreads": 1}, lazy=frame_mode == "r"
                )
            except BaseException as exc:
                if lock is not None:
                    lock.release()
                if isinstance(exc, HeaderEncodingError):
                    from mlarray.legacy.reader import is_legacy_file, open_legacy

                    if is_legacy_file(p):
                        return open_legacy(mla, p, mmap_mode, dparams)
                raise
            if lock is None or lock.holds(p):
                break
            lock.release()  # the file was replaced after we locked it: lock the new one
        obj = mla.__new__(mla)
        obj._init_empty(head.meta, head.dropped)
        obj._nd = nd
        obj._chunks = head.data
        obj._lock = lock
        obj._path, obj._mode, obj._dparams = p, mmap_mode, dparams
        obj._requested = requested
        # what close() compares the metadata with, to persist edits: writers only
        obj._persisted = head.meta.model_dump(mode="json") if mmap_mode == "r+" else None
        if lock is None:
            _warn_if_written(p, stacklevel=2)
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
        The new file is written beside ``path`` and renamed over it before this returns: a
        failure here leaves a previous file at ``path`` untouched, but once this has returned
        the previous file is replaced, before any region is filled (a fill interrupted by an
        exception leaves a valid file holding ``fill_value`` where nothing was written).
        A file a writer of another process holds open (``'r+'``) is not replaced
        (``LockError``); a handle of this process that has it open keeps the old file, and
        its edits are not written over the new one.
        """
        mla = _mlarray(cls)
        if mode != "w" or mmap_mode not in ("w+", None):
            raise InvalidArgumentError(
                f"MLArray.create needs mode='w' and mmap_mode='w+' (or None), got {mode!r} and {mmap_mode!r}"
            )
        if meta is not None:
            kwargs["meta"] = meta
        p = check_path(path, must_exist=False)
        dt = normalize_dtype(dtype)
        shape = as_shape(shape, dt)
        template = mla(ShapeOnly(shape, dt), **kwargs)
        # another process's writer keeps the file (LOCKED); one of this process's is left with the old file
        with replacing(p, except_this_process=True), atomic_target(p) as tmp:
            nd = template._write_to(tmp, source=ShapeOnly(shape, dt, fill_value), target=p)
            del nd
        obj = mla.open(p, "r+", dparams=kwargs.get("dparams"))
        obj._mode = "w+"
        obj._requested = (mode, mmap_mode)
        return obj

    def _init_empty(self, meta: Meta, dropped: tuple[str, ...] = ()) -> None:
        """Set every attribute of an instance made with ``__new__``: in memory, no data yet, header ``meta``.

        ``dropped``: members of the file's newer-minor header that ``meta`` does not hold.
        """
        self._dropped = dropped
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
