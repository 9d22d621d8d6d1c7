"""NumPy's indexing on arrays that are read box by box (file-backed and compressed images).

The decoders read boxes of step-1 slices. Every other key NumPy accepts (integer arrays
and lists, boolean masks, integers and ``None`` mixed with them in any order) is read
here in three steps, so the result is NumPy's in values, shape, order, scalar-ness and errors:

1. NumPy checks the key on a view of zero-byte elements of the array's shape (its own
   errors; nothing the size of the result is allocated);
2. along each axis the positions the key uses (a slice's range, an integer, the unique
   values of an index array; a mask counts as its ``nonzero()`` arrays) are grouped into
   runs of consecutive positions, and the boxes those runs span are read (so
   ``image[[0, -1]]`` reads two slices, not the whole volume); when the combinations of
   runs would be many, nearby runs merge;
3. the key is re-expressed for the boxes, part by part and in place, and NumPy applies it.

The boxes read at once are bounded by the machine's memory, as every read is
(``RESOURCE_LIMIT``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mlarray.errors import ResourceLimitError

Array = np.ndarray[Any, Any]
ReadBox = Callable[[tuple[slice, ...]], Any]
"""Reads a box of step-1 slices (one per axis) as an array of exactly that box's shape."""

MAX_BOXES = 64
"""At most this many boxes are read for one key (runs along an axis merge beyond it)."""


def is_basic(key: Any) -> bool:
    """Whether ``key`` holds only integers, slices, ``...`` and ``None`` (no fancy or boolean indexing)."""
    for part in key if isinstance(key, tuple) else (key,):
        if part is None or part is Ellipsis or isinstance(part, slice):
            continue
        if isinstance(part, (int, np.integer)) and not isinstance(part, (bool, np.bool_)):
            continue
        return False
    return True


def gives_scalar(key: Any, ndim: int) -> bool:
    """Whether NumPy returns a scalar (not a 0-d array) for ``array[key]``: one integer per axis, nothing else."""
    parts = key if isinstance(key, tuple) else (key,)
    return len(parts) == ndim and all(
        isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)) for p in parts
    )


ZERO_BYTES = np.dtype("V0")
"""Elements of no size: NumPy checks a key on a view of them without allocating its result."""


def probe(shape: tuple[int, ...], key: Any) -> Any:
    """What NumPy gives for ``array[key]`` on an array of ``shape`` (zero bytes): its shape and scalar-ness.

    Raises what NumPy raises for ``array[key]`` (``IndexError``, ``TypeError``, ...).
    """
    return np.broadcast_to(np.zeros((), ZERO_BYTES), shape)[key]


def coordinates(shape: tuple[int, ...], key: Any) -> tuple[Array, ...]:
    """Per axis, the position along it of every element of ``array[key]`` (arrays of the result's shape).

    For writes, whose value has the result's shape anyway. Raises what NumPy raises.
    """
    coords = []
    for axis, size in enumerate(shape):
        positions = np.arange(size, dtype=np.intp).reshape([-1 if k == axis else 1 for k in range(len(shape))])
        coords.append(np.asarray(np.broadcast_to(positions, shape)[key]))
    return tuple(coords)


def _takes_no_axis(part: Any) -> bool:
    """``None``, ``...`` and 0-d booleans (NumPy adds an axis for those) index no axis of the array."""
    return (
        part is None
        or part is Ellipsis
        or isinstance(part, (bool, np.bool_))
        or (isinstance(part, np.ndarray) and part.dtype == np.bool_ and part.ndim == 0)
    )


def _parts(shape: tuple[int, ...], key: Any) -> list[Any]:
    """``key`` as a list in which every boolean mask is its ``nonzero()`` arrays (NumPy's own equivalence).

    Lists become arrays; ``...`` stays (it expands the same way on the boxes read).
    """
    out: list[Any] = []
    for part in key if isinstance(key, tuple) else (key,):
        if not (_takes_no_axis(part) or isinstance(part, (slice, int, np.integer))):
            part = np.asarray(part)
            if part.dtype == np.bool_:
                out.extend(part.nonzero())
                continue
        out.append(part)
    return out


def _runs(used: Array, most: int) -> list[tuple[int, int]]:
    """``used`` (sorted, unique) as at most ``most`` half-open runs that cover it; the widest gaps stay open."""
    breaks = np.flatnonzero(np.diff(used) > 1) + 1  # where a new run starts
    if len(breaks) >= most:
        gaps = used[breaks] - used[breaks - 1]
        keep = np.sort(breaks[np.argsort(gaps, kind="stable")[len(breaks) - (most - 1) :]]) if most > 1 else breaks[:0]
        breaks = keep
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [len(used)]))
    return [(int(used[a]), int(used[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def gather(shape: tuple[int, ...], dtype: Any, key: Any, read_box: ReadBox, limit: int, path: str | None = None) -> Any:
    """``array[key]`` for any key NumPy accepts, from boxes read with ``read_box`` (see the module docstring).

    The key is re-expressed for the boxes read, part by part and in place (integers,
    slices and index arrays shifted into the boxes, ``None`` and ``...`` kept), so NumPy
    applies exactly its own rules to it: result shape, order, and scalar or 0-d array.
    Memory: the boxes and the key's own index arrays, never arrays the size of the result.

    Raises
    ------
    IndexError, TypeError, ValueError
        NumPy refuses the key (its own exception and message).
    ResourceLimitError
        The boxes the key needs at once would take more than ``limit`` bytes.
    """
    dtype = np.dtype(dtype)
    expected = probe(shape, key)  # NumPy's errors; and an empty result needs no read
    if np.size(expected) == 0:
        return np.empty(np.shape(expected), dtype=dtype)
    parts = _parts(shape, key)
    used_axes = sum(not _takes_no_axis(p) for p in parts)
    axes: list[Any] = []  # per array axis: a slice, an int or the sorted unique positions of an index array
    local: list[Any] = []  # the key for the boxes; index arrays filled in once the runs are known
    pending: list[tuple[int, int, Array]] = []  # (place in local, axis, normalized index array)
    for part in parts:
        if part is Ellipsis:
            axes.extend([slice(None)] * (len(shape) - used_axes))
            local.append(Ellipsis)
        elif _takes_no_axis(part):
            local.append(part)
        elif isinstance(part, slice):
            axes.append(part)
            local.append(part)  # made relative below
        elif isinstance(part, (int, np.integer)):
            n = shape[len(axes)]
            axes.append(int(part) + n if part < 0 else int(part))
            local.append(0)
        else:
            n = shape[len(axes)]
            index = part.astype(np.intp)  # in the index's own dtype, part + n can overflow (uint8, n = 300)
            index = np.where(index < 0, index + n, index)
            pending.append((len(local), len(axes), index))
            axes.append(np.unique(index))
            local.append(None)
    axes.extend([slice(None)] * (len(shape) - len(axes)))
    spans: list[list[tuple[int, int]]] = []
    split = sum(isinstance(a, np.ndarray) and bool(np.any(np.diff(a) > 1)) for a in axes)
    most = max(2, int(MAX_BOXES ** (1 / split))) if split else 1
    for n, part in zip(shape, axes, strict=True):
        if isinstance(part, slice):
            span = range(*part.indices(n))  # not empty: the result is not
            spans.append([(min(span[0], span[-1]), max(span[0], span[-1]) + 1)])
        elif isinstance(part, int):
            spans.append([(part, part + 1)])
        else:
            spans.append(_runs(part, most))
    held = [np.concatenate([np.arange(lo, hi, dtype=np.intp) for lo, hi in runs]) for runs in spans]
    nbytes = math.prod(len(h) for h in held) * dtype.itemsize
    if nbytes > limit:
        raise ResourceLimitError(f"this read needs {nbytes} bytes of boxes, more than the machine's memory", path=path)
    held_data = np.empty([len(h) for h in held], dtype=dtype)
    offsets = [np.cumsum([0] + [hi - lo for lo, hi in runs]).tolist() for runs in spans]
    for combo in itertools.product(*(range(len(runs)) for runs in spans)):
        box = tuple(slice(*spans[a][i]) for a, i in enumerate(combo))
        at = tuple(slice(offsets[a][i], offsets[a][i + 1]) for a, i in enumerate(combo))
        held_data[at] = np.asarray(read_box(box)).reshape(held_data[at].shape)
    for place, axis, index in pending:
        local[place] = np.searchsorted(held[axis], index).reshape(index.shape)
    axis = 0
    for place, part in enumerate(local):  # slices relative to their boxes, in the same place of the key
        if part is Ellipsis:
            axis += len(shape) - used_axes
        elif isinstance(part, slice):
            low = spans[axis][0][0]
            span = range(*part.indices(shape[axis]))
            stop = span.stop - low
            local[place] = slice(span.start - low, stop if stop >= 0 else None, span.step)
            axis += 1
        elif not _takes_no_axis(part):
            axis += 1
    return held_data[tuple(local)]
