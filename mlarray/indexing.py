"""NumPy's indexing on arrays that are read box by box (file-backed and compressed images).

The decoders read boxes of step-1 slices. Every other key NumPy accepts (integer arrays
and lists, boolean masks, integers and ``None`` mixed with them in any order) is read
here in three steps, so the result is NumPy's in values, shape, order and errors:

1. NumPy indexes, with the key, one zero-byte view per axis that holds that axis's
   position: this gives the coordinates of every element of the result, and NumPy's own
   error for a key it refuses;
2. along each axis the coordinates used are grouped into runs of consecutive positions,
   and the boxes those runs span are read (so ``image[[0, -1]]`` reads two slices, not
   the whole volume); when the combinations of runs would be many, nearby runs merge;
3. the result is taken from the boxes read with NumPy's fancy indexing.

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


def coordinates(shape: tuple[int, ...], key: Any) -> tuple[Array, ...]:
    """Per axis, the position along it of every element of ``array[key]`` (arrays of the result's shape).

    Raises what NumPy raises for ``array[key]`` (``IndexError``, ``TypeError``, ...).
    """
    coords = []
    for axis, size in enumerate(shape):
        positions = np.arange(size, dtype=np.intp).reshape([-1 if k == axis else 1 for k in range(len(shape))])
        coords.append(np.asarray(np.broadcast_to(positions, shape)[key]))
    return tuple(coords)


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

    Raises
    ------
    IndexError, TypeError, ValueError
        NumPy refuses the key (its own exception and message).
    ResourceLimitError
        The boxes the key needs at once would take more than ``limit`` bytes.
    """
    dtype = np.dtype(dtype)
    coords = coordinates(shape, key)
    result_shape = coords[0].shape if coords else np.shape(np.empty((), dtype)[key])
    if not coords:  # a 0-d array: NumPy's key on its single element
        return np.asarray(read_box(()), dtype=dtype).reshape(())[key]
    if coords[0].size == 0:
        return np.empty(result_shape, dtype=dtype)
    used = [np.unique(c) for c in coords]
    split = sum(len(u) > 1 and bool(np.any(np.diff(u) > 1)) for u in used)
    most = max(1, int(MAX_BOXES ** (1 / split))) if split else 1
    runs = [_runs(u, most) for u in used]
    held = [np.concatenate([np.arange(lo, hi, dtype=np.intp) for lo, hi in axis]) for axis in runs]
    nbytes = math.prod(len(h) for h in held) * dtype.itemsize
    if nbytes > limit:
        raise ResourceLimitError(f"this read needs {nbytes} bytes of boxes, more than the machine's memory", path=path)
    held_data = np.empty([len(h) for h in held], dtype=dtype)
    offsets = [np.cumsum([0] + [hi - lo for lo, hi in axis]).tolist() for axis in runs]
    for combo in itertools.product(*(range(len(axis)) for axis in runs)):
        box = tuple(slice(*runs[a][i]) for a, i in enumerate(combo))
        at = tuple(slice(offsets[a][i], offsets[a][i + 1]) for a, i in enumerate(combo))
        held_data[at] = np.asarray(read_box(box)).reshape(held_data[at].shape)
    local = tuple(np.searchsorted(h, c) for h, c in zip(held, coords, strict=True))
    return held_data[local]
