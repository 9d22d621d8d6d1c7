"""Dask arrays over ``.mla`` files: one file, or many files of one shape stacked lazily."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from mlarray.dask._source import MLAFile
from mlarray.errors import InvalidArgumentError, MLArrayFileNotFoundError
from mlarray.models import Meta
from mlarray.remote import is_remote

if TYPE_CHECKING:
    import dask.array as da

    from mlarray.api import MLArray

PathsOrGlob = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class StackMismatchError(InvalidArgumentError):
    """Files to be stacked differ in shape or dtype (code ``INVALID_ARGUMENT``, a ``ValueError``)."""


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def expand(paths_or_glob: PathsOrGlob) -> list[str]:
    """The files :func:`from_mla` reads, in stacking order.

    An existing file is always itself, even when its name has ``*``, ``?`` or ``[``
    (``scan[1].mla``); so is a URL or a path without those characters. Any other
    local text with them is a pattern: expanded (``**`` matches sub-directories) and
    sorted. A sequence keeps its order and is never expanded. To use a file name as a
    pattern's literal part, escape it with :func:`glob.escape`.

    Raises
    ------
    MLArrayFileNotFoundError
        A pattern matches no file, or the sequence is empty.
    """
    if isinstance(paths_or_glob, (str, os.PathLike)):
        text = os.fspath(paths_or_glob)
        if is_remote(text) or not _is_glob(text) or os.path.isfile(text):
            return [text]
        found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not found:
            raise MLArrayFileNotFoundError("no file matches this pattern", path=text)
        return found
    found = [os.fspath(p) for p in paths_or_glob]
    if not found:
        raise MLArrayFileNotFoundError("no files given")
    return found


def read_meta(paths_or_glob: PathsOrGlob, *, storage_options: dict[str, Any] | None = None) -> list[Meta]:
    """The header of every file :func:`from_mla` would take, in the same order (the arrays are not read).

    Metadata-only files give their headers too (:func:`from_mla` refuses them).
    """
    from mlarray.api import MLArray

    headers = []
    for path in expand(paths_or_glob):
        with MLArray.open(path, "r", storage_options=storage_options) as image:
            headers.append(image.meta)
    return headers


def _dask_chunks(source: MLAFile, chunks: Any) -> Any:
    """``'file'``: the file's chunk shape (clipped to the array); anything else is Dask's ``chunks``."""
    if isinstance(chunks, str) and chunks == "file":
        return tuple(max(1, min(c, n)) for c, n in zip(source.chunks, source.shape, strict=True))
    return chunks


def _from_array(x: Any, **kwargs: Any) -> da.Array:
    """``dask.array.from_array`` (untyped in Dask) with its result typed."""
    import dask.array
    import dask.array.core

    chunks = kwargs.get("chunks", "auto")
    normalize: Any = dask.array.core.normalize_chunks
    try:
        normalize(chunks, tuple(x.shape), dtype=x.dtype)
    except (ValueError, TypeError, ZeroDivisionError) as exc:  # Dask's own errors name no argument (``chunks=0``)
        raise InvalidArgumentError(
            f"chunks={chunks!r} cannot split an array of shape {tuple(x.shape)} ({exc})"
        ) from None
    make: Any = dask.array.from_array
    return cast("da.Array", make(x, **kwargs))


def _one(source: MLAFile, chunks: Any) -> da.Array:
    meta = np.empty((0,) * source.ndim, dtype=source.dtype)
    return _from_array(source, chunks=_dask_chunks(source, chunks), meta=meta)


def _file(
    path: str,
    *,
    chunks: Any = "file",
    dparams: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> da.Array:
    """A lazy Dask array over the one file or URL ``path``, taken literally (never expanded as a pattern)."""
    return _one(MLAFile(path, dparams=dparams, storage_options=storage_options), chunks)


def from_mla(
    paths_or_glob: PathsOrGlob,
    *,
    chunks: Any = "file",
    axis: int = 0,
    dparams: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> da.Array:
    """A lazy Dask array over one ``.mla`` file, or over many stacked along a new axis.

    Each Dask task reads one block through its own read-only handle (see
    :class:`~mlarray.dask.MLAFile`): no handle is shared between threads or carried in
    the graph, so the graph can go to a ``dask.distributed`` cluster whose workers
    see the same paths. Values are the stored ones (``meta.scaling`` is not applied).

    Parameters
    ----------
    paths_or_glob : path, URL, glob pattern or sequence of them
        One path or URL gives the file's array; a local pattern (sorted matches) or a
        sequence gives the files stacked along a new axis ``axis``, in that order (see
        :func:`expand`). URLs (``s3://``, ``https://``, ...) need the ``remote`` extra.
    chunks : 'file' or Dask chunks
        ``'file'`` (default): one Dask block per file chunk, so a task decompresses
        exactly one chunk. ``'auto'`` lets Dask pick blocks that are whole multiples of
        the file's chunks; any other value is passed to :func:`dask.array.from_array`.
        Stacked files use the first file's chunk shape.
    axis : int
        Where the new axis goes when files are stacked.
    dparams : dict, optional
        Blosc2 decompression parameters of each read (default one thread per read).
    storage_options : dict, optional
        fsspec options for URLs (credentials, endpoint, ...); they travel with the graph.

    Returns
    -------
    dask.array.Array

    Raises
    ------
    StackMismatchError
        Stacked files differ in shape or dtype (the message names both files).
    MLArrayError
        A file cannot be opened (missing, not an ``.mla`` file, corrupt, ...).
    """
    import dask.array as da

    paths = expand(paths_or_glob)
    if isinstance(paths_or_glob, (str, os.PathLike)) and len(paths) == 1 and paths[0] == os.fspath(paths_or_glob):
        return _file(paths[0], chunks=chunks, dparams=dparams, storage_options=storage_options)
    sources = [MLAFile(p, dparams=dparams, storage_options=storage_options) for p in paths]
    first = sources[0]
    for other in sources[1:]:
        if other.shape != first.shape or other.dtype != first.dtype:
            raise StackMismatchError(
                f"holds {other.shape} {other.dtype} but {first.path} holds {first.shape} {first.dtype}; "
                "stacked files need one shape and dtype",
                path=other.path,
            )
    block = _dask_chunks(first, chunks)
    stack: Any = da.stack
    return cast("da.Array", stack([_one(s, block) for s in sources], axis=axis))


def array_of(image: MLArray, chunks: Any = "file") -> da.Array:
    """:meth:`mlarray.MLArray.to_dask`: a Dask array over ``image``.

    A file or URL opened read-only is read lazily through per-task handles (as
    :func:`from_mla`). An in-memory NumPy image is split into blocks of
    :attr:`~mlarray.MLArray.chunks`. Anything else (in-memory compressed, a file open for
    writing, a file object) is read through the image itself under a lock, one block at a
    time, so its one Blosc2 array is never used by two threads at once; such an array
    cannot be sent to other processes.
    """
    if image.shape is None or image.dtype is None:
        raise InvalidArgumentError("a metadata-only image has no array")
    path = image.filepath
    remote = image._remote
    # the image's own file, taken literally: its name is never a glob pattern (``scan[1].mla``)
    if remote is not None and remote[0] is not None:  # a URL, as the image reads it (file objects stay with the image)
        return _one(MLAFile(remote[0], storage_options=remote[1] or None, _image=image), chunks)
    if path is not None and not is_remote(path) and image.mmap_mode in ("r", None) and image.mode in ("r", None):
        return _one(MLAFile(path, _image=image), chunks)  # the very file the image reads, by its absolute path
    block = image.chunks if isinstance(chunks, str) and chunks == "file" else chunks
    if isinstance(chunks, str) and chunks == "file" and block is not None:
        block = tuple(max(1, min(int(c), n)) for c, n in zip(block, image.shape, strict=True))
    if not image.compressed:
        return _from_array(image.to_numpy(), chunks=block if block is not None else "auto")
    meta = np.empty((0,) * image.ndim, dtype=image.dtype)
    return _from_array(image, chunks=block if block is not None else "auto", lock=True, meta=meta, name=False)
