"""In-memory representation of an :class:`~mlarray.api.MLArray`: plain NumPy or Blosc2-compressed.

An in-memory image holds its data either as a NumPy array (the default: exact NumPy
semantics, fastest access) or, with ``compressed=True`` / :meth:`compress`, as an
in-memory Blosc2 NDArray laid out exactly as it will be saved (smaller in RAM; every
read decompresses). The representation never changes what a file contains: saving
either writes the same array with the layout recorded in ``meta.layout``.

This module also chooses the storage plan (layout and codec) that saving uses, so
the choice is made in one place for files and for in-memory compression.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import blosc2
import numpy as np

from mlarray._state import ImageState
from mlarray.errors import InvalidArgumentError
from mlarray.layout import choose_layout, default_compression
from mlarray.reading import decompress_all
from mlarray.storage.cparams import check_dparams, default_for, describe_cparams, make_cparams, named_enums
from mlarray.storage.io import compress_array, layout_of
from mlarray.storage.lazyframe import opened

_DEFAULT_ARGS: dict[str, Any] = {"patch_size": "default", "chunk_size": None, "block_size": None, "cparams": None}
UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "<unset>"})()
"""Marks an argument that was not given (``patch_size=None`` has a meaning of its own)."""


def _cparams_names(cparams: Any, itemsize: int) -> tuple[str, int, list[str]]:
    """Codec, level and filter names of the ``cparams`` a user gave.

    A dict is completed from this package's defaults for the dtype (LZ4HC and its
    filters), not python-blosc2's: ``{"clevel": 9}`` changes the level only.

    Raises
    ------
    InvalidArgumentError
        Not a dict or ``blosc2.CParams``, a key ``blosc2.CParams`` does not have, or a
        codec or filter the format does not support.
    """
    if isinstance(cparams, dict):
        base = make_cparams(*default_compression(itemsize), itemsize)
        given = named_enums(cparams)
        if "filters" in given and "filters_meta" not in given:  # one meta per filter, as python-blosc2 pads
            given["filters_meta"] = [0] * len(given["filters"])
        try:
            cparams = dataclasses.replace(base, **given)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"cparams {cparams!r} is not valid ({exc})") from None
    elif not isinstance(cparams, blosc2.CParams):
        raise InvalidArgumentError(f"cparams must be a dict or blosc2.CParams, got {type(cparams).__name__}")
    return describe_cparams(cparams)


def derived_layout(source: ImageState, shape: tuple[int, ...], dtype: Any) -> dict[str, Any] | None:
    """Layout arguments for an array of ``shape`` and ``dtype`` made with ``copy=source``.

    ``None`` keeps ``source``'s recorded layout as it is (same shape and type: the file is
    written as ``source``'s). For another shape or type the layout is derived again, for
    the new array, the way ``source``'s was: from its patch size (``patch``), by Blosc2
    (``blosc2``), or with its sizes as given (``manual``, when the number of axes is the
    same); with its codec and level, and its filters when the item size is the same.
    An unsaved ``source`` passes on the layout arguments it was given.
    """
    itemsize = np.dtype(dtype).itemsize
    recorded = source._meta.layout
    if recorded is None:
        pending = source._layout_args
        if pending is None:
            return None
        args = dict(pending)
        for name in ("chunk_size", "block_size"):
            given = args[name]
            if given is not None and (not hasattr(given, "__len__") or len(given) != len(shape)):
                args.update(chunk_size=None, block_size=None, patch_size="default")
        return args
    if shape == source.shape and np.dtype(dtype) == source.dtype:
        return None
    args = dict(_DEFAULT_ARGS)
    if recorded.strategy == "manual" and len(recorded.chunk_size) == len(shape):
        args.update(chunk_size=list(recorded.chunk_size), block_size=list(recorded.block_size))
    elif recorded.strategy == "patch" and recorded.patch_size is not None:
        args["patch_size"] = list(recorded.patch_size)
    elif recorded.strategy == "blosc2":
        args["patch_size"] = None
    same = source.dtype is not None and source.dtype.itemsize == itemsize
    filters = list(recorded.filters) if same else default_compression(itemsize)[2]
    args["cparams"] = make_cparams(recorded.codec, recorded.clevel, filters, itemsize)
    return args


class StoragePlan:
    """What a write uses: layout strategy, chunk/block sizes, patch size and compression parameters."""

    def __init__(
        self,
        strategy: str,
        chunks: Sequence[int] | None,
        blocks: Sequence[int] | None,
        patch: Sequence[int] | None,
        cparams: Any,
    ) -> None:
        self.strategy, self.chunks, self.blocks, self.patch, self.cparams = strategy, chunks, blocks, patch, cparams


def check_layout_args(shape: tuple[int, ...], itemsize: int, args: dict[str, Any]) -> None:
    """``INVALID_ARGUMENT`` for ``chunk_size``, ``block_size`` or ``cparams`` no save could use.

    ``patch_size`` waits for the save: its entries follow the spatial axes, which may
    still be labelled after the image is made.
    """
    try:
        if args["chunk_size"] is not None or args["block_size"] is not None:
            choose_layout(shape, itemsize, range(len(shape)), None, args["chunk_size"], args["block_size"])
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    if args["cparams"] is not None:
        _cparams_names(args["cparams"], itemsize)


class InMemoryCompression(ImageState):
    """``compress``/``decompress`` and the storage plan; mixed into :class:`~mlarray.api.MLArray`."""

    def _storage_plan(self, target: str | None) -> StoragePlan:
        """The layout and codec the next write of this image uses.

        Pending layout arguments (from the constructor or :meth:`compress`) win;
        otherwise the recorded ``meta.layout`` is kept; otherwise the default
        (``patch_size='default'``) applies.
        """
        shape, dtype = self.shape, self.dtype
        assert shape is not None and dtype is not None
        recorded = self._meta.layout
        if self._layout_args is None and recorded is not None:
            cparams = make_cparams(recorded.codec, recorded.clevel, list(recorded.filters), dtype.itemsize)
            return StoragePlan(
                recorded.strategy, recorded.chunk_size, recorded.block_size, recorded.patch_size, cparams
            )
        args = self._layout_args or _DEFAULT_ARGS
        axes = self._meta.spatial_axes() or list(range(len(shape)))
        try:
            choice = choose_layout(
                shape, dtype.itemsize, axes, args["patch_size"], args["chunk_size"], args["block_size"]
            )
        except ValueError as exc:
            raise InvalidArgumentError(str(exc), path=target) from None
        if args["cparams"] is not None:
            codec, clevel, filters = _cparams_names(args["cparams"], dtype.itemsize)
        else:  # label maps and masks are told apart from other 1-byte data on a sample of them
            codec, clevel, filters = default_for(self._data, self._meta.is_seg)
        cparams = make_cparams(codec, clevel, filters, dtype.itemsize)
        return StoragePlan(choice.strategy, choice.chunks, choice.blocks, choice.patch_size, cparams)

    @property
    def _backend(self) -> str | None:
        """``'blosc2'`` or ``'numpy'``: how the data are held (``None`` for a metadata-only image).

        Read-only, kept for code written for mlarray 0.0.x; a file-backed image is ``'blosc2'``.
        """
        if self._nd is not None:
            return "blosc2"
        return "numpy" if self._np is not None else None

    @property
    def _store(self) -> Any:
        """The object holding the data: a NumPy array or a ``blosc2.NDArray`` (read-only attribute).

        Kept for code written for mlarray 0.0.x that inspects it (``image._store.schunk.cbytes``).
        Writing through it bypasses the checks of ``image[...] = ...``; use that instead.
        """
        return opened(self._nd) if self._nd is not None else self._np

    @property
    def compressed(self) -> bool:
        """Whether the data are held Blosc2-compressed (in memory or in a file)."""
        return self._nd is not None

    def compress(
        self,
        patch_size: Any = UNSET,
        chunk_size: Sequence[int] | None = None,
        block_size: Sequence[int] | None = None,
        cparams: Any = None,
        dparams: Any = None,
    ) -> None:
        """Hold the data as an in-memory Blosc2 NDArray, laid out as the next save will write it.

        Layout arguments work as in the constructor; without any, the recorded layout
        (``meta.layout``) is kept, or the default patch layout chosen. ``meta.layout``
        then describes the compressed data. An image opened from a file is detached
        from it (its metadata edits are not written back; :meth:`save` persists).
        Reads decompress on one thread unless ``dparams`` asks for more: a C-Blosc2 thread
        pool does not survive a fork, so forked DataLoader workers could not read the image.

        Raises
        ------
        InvalidArgumentError
            The image is metadata-only, or the layout arguments are invalid.
        """
        if self._meta.array is None:
            raise InvalidArgumentError("this is a metadata-only image: it has no array to compress")
        check_dparams(dparams)
        previous = self._layout_args
        if patch_size is not UNSET or chunk_size is not None or block_size is not None or cparams is not None:
            self._layout_args = {
                "patch_size": "default" if patch_size is UNSET else patch_size,
                "chunk_size": chunk_size,
                "block_size": block_size,
                "cparams": cparams,
            }
        try:
            data = self.to_numpy()
            plan = self._storage_plan(target=None)
            # one decompression thread unless asked: C-Blosc2's thread pool would not survive a fork (DataLoader
            # workers)
            one = dparams if dparams is not None else {"nthreads": 1}
            nd = compress_array(data, chunks=plan.chunks, blocks=plan.blocks, cparams=plan.cparams, dparams=one)
        except BaseException:
            self._layout_args = previous  # a failed call leaves the image as it was
            raise
        layout = layout_of(nd, plan.strategy, plan.patch)
        self._detach()
        self._meta.layout = layout
        self._meta.integrity = None
        self._nd, self._np, self._layout_args = nd, None, None
        self._dparams = dparams

    def decompress(self) -> None:
        """Hold the data as a NumPy array in memory.

        ``meta.layout`` is kept: it is the layout the next :meth:`save` writes (mlarray
        0.0.x cleared it). An image opened from a file is detached from it.

        Raises
        ------
        InvalidArgumentError
            The image is metadata-only.
        """
        if self._meta.array is None:
            raise InvalidArgumentError("this is a metadata-only image: it has no array to decompress")
        if self._closed:
            raise InvalidArgumentError("the array is closed")
        if self._chunks is not None and self._nd is not None:
            self._chunks.check_all()  # spec 4.4.6: every chunk checked before blosc2 decompresses it
        data = decompress_all(self._nd, self._path) if self._nd is not None else self._np
        self._detach()
        self._meta.integrity = None
        self._np, self._nd = data, None

    def _detach(self) -> None:
        """Forget the file this image was opened from (and release its write lock).

        Data written through an ``'r+'``/``'w+'`` handle are in the file already: its
        digest is refreshed first, under the header the file had (metadata edits are not
        written back, as documented), so the file stays valid.
        """
        if self._path is None:
            return
        if self._dirty and self._mode in ("r+", "w+") and self._lock is not None and self._lock.holds(self._path):
            from mlarray._saving import _rewrite_header

            self._nd = None  # release the file's mapping: every write is in the file
            _rewrite_header(self._path, self._persisted_header(), refresh_digest=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._path = None
        self._mode = None
        self._persisted = None
        self._dirty = False
        if self._chunks is not None:  # reads must not go to the file's chunks any more (a 'c' handle's edits)
            self._chunks.close()
            self._chunks = None
