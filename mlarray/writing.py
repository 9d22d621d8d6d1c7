"""Writes into a file-backed array that follow NumPy exactly: ``image[key] = value``.

python-blosc2 assigns only part of what NumPy does (a value with too many elements is
cut short; integer lists, boolean masks and mixed fancy keys raise raw blosc2 errors).
Here every write is a read-modify-write of the smallest box of step-1 slices that holds
the selected elements:

1. NumPy itself performs the assignment on a stand-in of the array's shape and type
   that occupies one element, so key, broadcasting and casting are checked by NumPy,
   with NumPy's errors;
2. the box is decompressed into an ndarray and the value assigned into it;
3. only then is the box written back, so a failing write changes nothing.

NumPy's errors are raised as typed mlarray errors (code ``INVALID_ARGUMENT``) that still
inherit NumPy's builtin exception, so ``except IndexError`` keeps working. A write that
fills its box completely (step-1 slices and integers) skips the read. Scattered fancy
indices make a large box; like every read it is bounded by the machine's memory
(``RESOURCE_LIMIT``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mlarray.errors import InvalidArgumentError
from mlarray.indexing import coordinates, is_basic, probe
from mlarray.reading import check_result_size

Array = np.ndarray[Any, Any]


class InvalidIndexError(InvalidArgumentError, IndexError):
    """NumPy refuses the key (out of bounds, too many indices, mask of the wrong shape)."""


class InvalidKeyTypeError(InvalidArgumentError, TypeError):
    """The key or the value has a type NumPy cannot index or assign with."""


class ValueOverflowError(InvalidArgumentError, OverflowError):
    """A value does not fit the array's integer type (NumPy 2 refuses, e.g. 300 into uint8)."""


def _typed(exc: Exception, path: str | None) -> InvalidArgumentError:
    """NumPy's exception as the matching typed mlarray error, with NumPy's own message."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, IndexError):
        return InvalidIndexError(message, path=path)
    if isinstance(exc, OverflowError):
        return ValueOverflowError(message, path=path)
    if isinstance(exc, TypeError):
        return InvalidKeyTypeError(message, path=path)
    return InvalidArgumentError(message, path=path)


def _basic_box(shape: tuple[int, ...], key: tuple[Any, ...]) -> tuple[tuple[slice, ...], tuple[Any, ...]] | None:
    """For a valid basic ``key``: the step-1 box it touches and the same key relative to the box.

    ``None`` when the key selects nothing.
    """
    n_axes = sum(1 for part in key if part is not None and part is not Ellipsis)
    parts: list[Any] = []
    for part in key:
        if part is Ellipsis:
            parts += [slice(None)] * (len(shape) - n_axes)
        else:
            parts.append(part)
    box: list[slice] = []
    relative: list[Any] = []
    axis = 0
    for part in parts:
        if part is None:
            relative.append(None)
            continue
        size = shape[axis]
        if isinstance(part, slice):
            span = range(*part.indices(size))
            if len(span) == 0:
                return None
            low, high = min(span[0], span[-1]), max(span[0], span[-1])
            stop = span.stop - low
            relative.append(slice(span.start - low, stop if stop >= 0 else None, span.step))
        else:
            low = high = int(part) + size if int(part) < 0 else int(part)
            relative.append(0)
        box.append(slice(low, high + 1))
        axis += 1
    box += [slice(0, n) for n in shape[axis:]]
    return tuple(box), tuple(relative)


def _fancy_box(shape: tuple[int, ...], key: Any) -> tuple[tuple[slice, ...], tuple[Array, ...]] | None:
    """For a key with arrays or masks: the box of the selected elements and their coordinates in it.

    The coordinates along each axis come from indexing a zero-byte view that holds the
    axis index, so NumPy does all the work (and duplicate indices keep NumPy's order).
    """
    coords = coordinates(shape, key)
    if coords[0].size == 0:
        return None
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    relative = tuple(c - b.start for c, b in zip(coords, box, strict=True))
    return box, relative


Check = Callable[[tuple[slice, ...]], None]
"""Called with a box of step-1 slices before its chunks are read (the data-section checks of spec 4.4)."""


def assign(nd: Any, key: Any, value: Any, *, path: str | None = None, check: Check | None = None) -> None:
    """``nd[key] = value`` for a writable blosc2 NDArray, exactly as NumPy assigns into an ndarray.

    Raises
    ------
    InvalidIndexError, InvalidKeyTypeError, ValueOverflowError, InvalidArgumentError
        Whatever NumPy raises for the same assignment (``IndexError``, ``TypeError``,
        ``OverflowError``, ``ValueError``), typed; nothing is written.
    ResourceLimitError
        The box to rewrite would not fit in memory.
    """
    shape = tuple(nd.shape)
    dtype = np.dtype(nd.dtype)
    # NumPy runs the very same assignment on a writable array of the right shape and type whose
    # elements all share one scratch element: its checks of key and value, and its errors, are exact.
    stand_in = np.lib.stride_tricks.as_strided(
        np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * len(shape), writeable=True
    )
    try:
        stand_in[key] = value
        target = np.empty(np.shape(stand_in[key]), dtype=dtype)
        target[...] = value  # the value in the shape of the selection
    except (IndexError, TypeError, ValueError, OverflowError) as exc:
        raise _typed(exc, path) from None
    found = _selection(shape, key)
    if found is None:
        return  # nothing selected, and the value broadcast: NumPy writes nothing either
    box, relative = found
    if check is not None:
        check(box)  # blosc2 decompresses the chunks of a partly written box too
    box_shape = tuple(b.stop - b.start for b in box)
    if target.size == math.prod(box_shape) and all(
        r is None or isinstance(r, int) or (isinstance(r, slice) and r.step == 1) for r in relative
    ):
        block = target.reshape(box_shape)  # the write fills its box in order: nothing to read
    else:
        check_result_size(shape, dtype, box, path)
        block = np.array(nd[box], dtype=dtype).reshape(box_shape)
        block[relative] = target
    nd[box] = np.ascontiguousarray(block)


def _selection(shape: tuple[int, ...], key: Any) -> tuple[tuple[slice, ...], Any] | None:
    """The step-1 box a valid key touches and the key relative to it (``None``: nothing selected)."""
    parts = key if isinstance(key, tuple) else (key,)
    return _basic_box(shape, parts) if is_basic(parts) else _fancy_box(shape, key)


def written_box(shape: tuple[int, ...], key: Any) -> tuple[slice, ...] | None:
    """The step-1 box that writing ``array[key] = value`` touches (``None``: nothing selected).

    Raises NumPy's own ``IndexError``/``TypeError``/``ValueError`` for a key NumPy refuses.
    """
    probe(shape, key)  # _selection assumes a key NumPy takes
    found = _selection(shape, key)
    return None if found is None else found[0]


class PrivateChunks:
    """The array of a file opened with ``mmap_mode='c'``: reads from the mapping, writes kept in memory.

    A write loads the chunks it touches (decompressed) into a private store and changes
    them there; the file and the mapping are never written. Reads combine the mapping with
    the private chunks. Memory grows with the chunks written to, not with the file.
    """

    def __init__(self, nd: Any, path: str | None, check: Check | None = None) -> None:
        self._nd = nd
        self._path = path
        self._check = check
        self.shape: tuple[int, ...] = tuple(nd.shape)
        self.dtype = np.dtype(nd.dtype)
        self.chunks: tuple[int, ...] = tuple(nd.chunks)
        self.blocks: tuple[int, ...] = tuple(nd.blocks)
        self.private: dict[tuple[int, ...], Array] = {}

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def schunk(self) -> Any:
        """The mapped frame's super-chunk (compression parameters; the data may differ)."""
        return self._nd.schunk

    def _chunk_box(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.chunks, self.shape, strict=True))

    def _chunks_in(self, box: tuple[slice, ...]) -> list[tuple[int, ...]]:
        """Grid indices of the chunks that ``box`` touches."""
        ranges = [range(b.start // c, (b.stop - 1) // c + 1) for b, c in zip(box, self.chunks, strict=True)]
        return list(itertools.product(*ranges))

    @staticmethod
    def _overlap(box: tuple[slice, ...], chunk: tuple[slice, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """The common part of ``box`` and ``chunk``, relative to each."""
        lows = [max(b.start, c.start) for b, c in zip(box, chunk, strict=True)]
        highs = [min(b.stop, c.stop) for b, c in zip(box, chunk, strict=True)]
        in_box = tuple(slice(lo - b.start, hi - b.start) for lo, hi, b in zip(lows, highs, box, strict=True))
        in_chunk = tuple(slice(lo - c.start, hi - c.start) for lo, hi, c in zip(lows, highs, chunk, strict=True))
        return in_box, in_chunk

    def _read_box(self, box: tuple[slice, ...]) -> Array:
        if self._check is not None:
            self._check(box)
        out = np.array(self._nd[box], dtype=self.dtype).reshape([b.stop - b.start for b in box])
        for index in self._chunks_in(box):
            if index in self.private:
                in_box, in_chunk = self._overlap(box, self._chunk_box(index))
                out[in_box] = self.private[index][in_chunk]
        return out

    def __getitem__(self, key: Any) -> Any:
        if not self.private and is_basic(key if isinstance(key, tuple) else (key,)):
            return self._nd[key]  # blosc2 reads basic keys itself; other keys go through NumPy below
        expected = probe(self.shape, key)  # NumPy's error for a key it refuses: _selection assumes a valid key
        found = _selection(self.shape, key)
        if found is None:
            return np.empty(np.shape(expected), dtype=self.dtype)
        box, relative = found
        return self._read_box(box)[relative]

    def __setitem__(self, box: tuple[slice, ...], block: Array) -> None:
        """Write ``block`` into the step-1 ``box`` (what :func:`assign` does), in private chunks."""
        for index in self._chunks_in(box):
            chunk_box = self._chunk_box(index)
            chunk = self.private.get(index)
            if chunk is None:
                if self._check is not None:
                    self._check(chunk_box)
                chunk = np.array(self._nd[chunk_box], dtype=self.dtype).reshape([c.stop - c.start for c in chunk_box])
            in_box, in_chunk = self._overlap(box, chunk_box)
            chunk[in_chunk] = block[in_box]
            self.private[index] = chunk

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Array:
        out = self[...]
        return np.asarray(out, dtype=dtype)
