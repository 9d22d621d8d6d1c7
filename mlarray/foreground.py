"""Where the foreground of a label map is: per-class voxel counts and a bounded coordinate sample.

Patch samplers for segmentation training (nnU-Net's, ``mlarray.torch.PatchDataset``)
centre a share of their patches on a voxel of a randomly chosen foreground class.
Finding such voxels needs a pass over the whole label map; this module makes that
pass once and keeps, per class, the number of voxels and a uniform random sample of
at most :data:`MAX_PER_CLASS` of their coordinates (and :data:`MAX_TOTAL` over all
classes), small enough to live in the file header.

:func:`class_locations` works on an array in memory; :func:`locate_classes` gives the
same result from a pass (two with coordinates) over C-ordered slabs, so a label map
larger than memory never has to be loaded: it keeps per class a count, a box and the
sampled coordinates, and per slab the slab's foreground indices.

It is NumPy only: no file I/O, no header models, no torch (its errors are
:mod:`mlarray.errors`' ``InvalidArgumentError``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlarray.errors import InvalidArgumentError

MAX_PER_CLASS = 10_000
"""Most coordinates kept per class (nnU-Net keeps the same number)."""

MAX_TOTAL = 20_000
"""Most coordinates kept over all classes; with more than 2 classes each class keeps ``MAX_TOTAL // n``.

Every reader of the file parses the header, so it stays small: 20,000 indices are about
150 KB of JSON and add some 40 ms to opening the file; 100,000 would add 0.2 s."""

Coords = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class ClassSample:
    """One class of a label map: how many voxels it has and a random sample of their coordinates.

    ``coords`` has shape ``(k, n)`` (``k <= count``) with one row per sampled voxel, in index
    space of the label map's spatial axes, sorted in C order.
    """

    label: int
    count: int
    coords: Coords
    box: tuple[tuple[int, int], ...] | None = None
    """Inclusive ``(min, max)`` index of the class's voxels per axis (``None`` when not computed)."""


def _is_count(value: Any) -> bool:
    """An integer of at least 1 (``bool`` and floats are not)."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer)) and bool(value >= 1)


def _check_labels(dtype: np.dtype[Any], max_per_class: int, max_total: int) -> None:
    """Refuse a label map that does not hold integers and coordinate bounds below 1."""
    if dtype.kind not in "biu":
        raise InvalidArgumentError(f"a label map holds integers or booleans, got dtype {dtype}")
    check_bounds(max_per_class, max_total)


def check_bounds(max_per_class: int, max_total: int) -> None:
    """``INVALID_ARGUMENT`` unless both coordinate bounds are integers of at least 1."""
    if not all(_is_count(v) for v in (max_per_class, max_total)):
        raise InvalidArgumentError(
            f"the coordinate bounds must be positive integers, got max_per_class={max_per_class}, max_total={max_total}"
        )


def per_class_bound(n_classes: int, max_per_class: int = MAX_PER_CLASS, max_total: int = MAX_TOTAL) -> int:
    """How many coordinates each of ``n_classes`` classes keeps under both bounds."""
    if n_classes <= 0:
        return max_per_class
    return max(1, min(max_per_class, max_total // n_classes))


def class_locations(
    labels: np.ndarray[Any, Any],
    *,
    background: int | None = 0,
    max_per_class: int = MAX_PER_CLASS,
    max_total: int = MAX_TOTAL,
    seed: int = 0,
) -> list[ClassSample]:
    """Count every class of ``labels`` and sample up to the bound of its voxel coordinates.

    Parameters
    ----------
    labels : array_like of integers or booleans
        The label map, spatial axes only (at least one), in either byte order.
    background : int or None
        The class that is not foreground (left out); ``None`` keeps every class.
    max_per_class, max_total : int
        Bounds on the coordinates kept (see :func:`per_class_bound`).
    seed : int
        Seed of the random sample; the same map and seed give the same sample.

    Returns
    -------
    list of ClassSample
        One entry per class present, sorted by label.

    Raises
    ------
    InvalidArgumentError
        ``labels`` is not an integer or boolean array of at least one axis, or a bound
        is not positive (also a ``ValueError``).
    """
    labels = np.asarray(labels)
    _check_labels(labels.dtype, max_per_class, max_total)
    if labels.ndim == 0:
        raise InvalidArgumentError("a label map has at least one axis, got a 0-d array")
    flat = np.ascontiguousarray(labels).reshape(-1)
    where = np.arange(flat.size, dtype=np.int64) if background is None else np.flatnonzero(flat != background)
    values = flat[where]
    order = np.argsort(values, kind="stable")
    where, values = where[order], values[order]
    classes, starts, counts = np.unique(values, return_index=True, return_counts=True)
    bound = per_class_bound(len(classes), max_per_class, max_total)
    rng = np.random.default_rng(seed)
    out = []
    for label, start, count in zip(classes.tolist(), starts.tolist(), counts.tolist(), strict=True):
        members = where[start : start + count]
        box = _box(members, labels.shape)
        if count > bound:
            members = np.sort(rng.choice(members, size=bound, replace=False))
        coords = np.stack(np.unravel_index(members, labels.shape), axis=1).astype(np.int64)
        out.append(ClassSample(label=int(label), count=int(count), coords=coords, box=box))
    return out


def _box(flat: np.ndarray[Any, Any], shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Per axis, the smallest and largest index among C-order flat indices (one axis at a time, little memory)."""
    out = []
    stride = 1
    strides = []
    for size in reversed(shape):
        strides.append(stride)
        stride *= size
    for size, step in zip(shape, reversed(strides), strict=True):
        axis = (flat // step) % size
        out.append((int(axis.min()), int(axis.max())))
    return tuple(out)


def to_record(samples: list[ClassSample], shape: tuple[int, ...]) -> dict[str, Any]:
    """The header member ``class_locations`` (spec 5.11) of ``samples`` of a label map of spatial ``shape``."""
    classes = []
    for s in samples:
        flat = np.ravel_multi_index(tuple(s.coords.T), shape) if len(s.coords) else np.zeros(0, np.int64)
        classes.append({"label": s.label, "count": s.count, "indices": np.sort(flat).tolist()})
    return {"classes": classes}


def from_record(classes: list[tuple[int, int, list[int]]], shape: tuple[int, ...]) -> list[ClassSample]:
    """:class:`ClassSample` objects from ``(label, count, indices)`` of the header member ``class_locations``."""
    out = []
    for label, count, indices in classes:
        flat = np.asarray(indices, dtype=np.int64)
        coords = (
            np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
            if len(flat)
            else flat.reshape(0, len(shape))
        )
        out.append(ClassSample(label=int(label), count=int(count), coords=coords))
    return out


Slabs = Callable[[], Iterator[tuple[int, np.ndarray[Any, Any]]]]
"""Called once per pass: ``(flat offset, flat values)`` of consecutive runs covering the array in C order."""


def _slab_classes(values: np.ndarray[Any, Any]) -> Iterator[tuple[int, np.ndarray[Any, Any]]]:
    """``(label, local flat indices in increasing order)`` of each foreground class of one slab."""
    where = np.flatnonzero(values != 0)
    labels = values[where]
    order = np.argsort(labels, kind="stable")
    where, labels = where[order], labels[order]
    classes, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    for label, start, count in zip(classes.tolist(), starts.tolist(), counts.tolist(), strict=True):
        yield int(label), where[start : start + count]


def locate_classes(
    slabs: Slabs,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    *,
    with_coords: bool = True,
    max_per_class: int = MAX_PER_CLASS,
    max_total: int = MAX_TOTAL,
    seed: int = 0,
) -> list[ClassSample]:
    """:func:`class_locations` (background 0) of a label map read slab by slab; the same result, bounded memory.

    The first pass counts each class and finds its box; the random sample is then drawn
    exactly as :func:`class_locations` draws it (the same ranks among the class's voxels
    in C order, from the same generator), and a second pass (``with_coords``) picks the
    voxels of those ranks. Memory: one slab's foreground indices, and the sample.

    Parameters
    ----------
    slabs : callable
        See :data:`Slabs`; ``shape`` is the label map's (spatial) shape.
    with_coords : bool
        ``False`` skips the second pass: every ``coords`` is empty (boxes and counts only).

    Raises
    ------
    InvalidArgumentError
        ``dtype`` is not an integer or boolean type, or a bound is not positive (also a
        ``ValueError``).
    """
    _check_labels(np.dtype(dtype), max_per_class, max_total)
    counts: dict[int, int] = {}
    low: dict[int, np.ndarray[Any, Any]] = {}
    high: dict[int, np.ndarray[Any, Any]] = {}
    for offset, values in slabs():
        for label, members in _slab_classes(values):
            box = np.asarray(_box(members + offset, shape)).T
            counts[label] = counts.get(label, 0) + int(members.size)
            low[label] = np.minimum(low[label], box[0]) if label in low else box[0]
            high[label] = np.maximum(high[label], box[1]) if label in high else box[1]
    labels = sorted(counts)
    bound = per_class_bound(len(labels), max_per_class, max_total)
    rng = np.random.default_rng(seed)
    ranks = {}
    for label in labels:  # the draws class_locations makes, in its order
        count = counts[label]
        chosen = rng.choice(count, size=bound, replace=False) if count > bound else np.arange(count)
        ranks[label] = np.sort(chosen)
    picked: dict[int, list[np.ndarray[Any, Any]]] = {label: [] for label in labels}
    if with_coords:
        seen = dict.fromkeys(labels, 0)
        for offset, values in slabs():
            for label, members in _slab_classes(values):
                wanted = ranks[label]
                lo, hi = np.searchsorted(wanted, [seen[label], seen[label] + members.size])
                picked[label].append(members[wanted[lo:hi] - seen[label]] + offset)
                seen[label] += int(members.size)
    out = []
    for label in labels:
        flat = np.concatenate(picked[label]) if picked[label] else np.zeros(0, np.int64)
        coords = (
            np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
            if flat.size
            else flat.reshape(0, len(shape))
        )
        box = tuple((int(a), int(b)) for a, b in zip(low[label].tolist(), high[label].tolist(), strict=True))
        out.append(ClassSample(label=label, count=counts[label], coords=coords, box=box))
    return out
