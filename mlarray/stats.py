"""Statistics, bounding boxes and class locations computed from the array and written into the header.

Files converted from NIfTI/NRRD carry no ``stats``, ``bbox``, ``is_seg`` or
``class_locations``. :func:`annotate` computes them for an image; :func:`update_stats`
does it for a file and rewrites only its header (atomically, through ``MLArray.open``
in ``'r+'`` mode and ``close()``); ``mlarray stats`` is the command-line front end.

Label maps are recognised by :func:`looks_like_labels` when ``is_seg`` is not set:
an integer or boolean array with no negative value and at most
:data:`MAX_DETECTED_LABELS` distinct values. Pass ``seg=True`` / ``seg=False`` to decide
yourself.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.foreground import MAX_PER_CLASS, MAX_TOTAL, class_locations, to_record
from mlarray.models import BBoxes, ClassLocations, Meta, Stats

PERCENTILES = (0.5, 99.5)
"""The percentiles bounding the robust statistics (``percentile_*``), as nnU-Net uses for CT normalisation."""

MAX_DETECTED_LABELS = 255
"""Most distinct values an array may have to be taken for a label map when ``is_seg`` is unset."""


def intensity_stats(data: np.ndarray[Any, Any]) -> Stats | None:
    """``min``/``max``/``mean``/``median``/``std`` and the robust ``percentile_*`` values (``None`` if complex)."""
    if data.dtype.kind == "c" or data.size == 0:
        return None
    values = data.astype(np.float64, copy=False).reshape(-1)
    finite = values[np.isfinite(values)] if data.dtype.kind == "f" else values
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, PERCENTILES)
    inside = finite[(finite >= low) & (finite <= high)]
    return Stats(
        min=float(finite.min()),
        max=float(finite.max()),
        mean=float(finite.mean()),
        median=float(np.median(finite)),
        std=float(finite.std()),
        percentile_min=float(low),
        percentile_max=float(high),
        percentile_mean=float(inside.mean()),
        percentile_median=float(np.median(inside)),
        percentile_std=float(inside.std()),
        percentile_min_key=PERCENTILES[0],
        percentile_max_key=PERCENTILES[1],
    )


def looks_like_labels(data: np.ndarray[Any, Any]) -> bool:
    """Whether ``data`` is taken for a label map: integers or booleans, none negative, few distinct values."""
    if data.dtype.kind not in "biu" or data.size == 0:
        return False
    if data.dtype.kind == "i" and data.min() < 0:
        return False
    return len(np.unique(data)) <= MAX_DETECTED_LABELS


def _spatial_labels(image: MLArray, data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    axes = image.meta.spatial_axes() or list(range(data.ndim))
    others = [a for a in range(data.ndim) if a not in axes]
    if any(data.shape[a] != 1 for a in others):
        raise InvalidArgumentError("class locations need a label map whose non-spatial axes have length 1")
    return data.reshape([data.shape[a] for a in axes])


def annotate(
    image: MLArray,
    *,
    with_class_locations: bool = False,
    seg: bool | None = None,
    max_per_class: int = MAX_PER_CLASS,
    max_total: int = MAX_TOTAL,
    seed: int = 0,
) -> Meta:
    """Fill ``stats``, ``is_seg`` and, for a label map, ``bbox`` (one box per class) and optionally ``class_locations``.

    Parameters
    ----------
    image : MLArray
        An in-memory or ``'r+'`` image; its metadata is changed in place.
    with_class_locations : bool
        Also record per-class voxel counts and up to ``max_per_class`` voxels per class
        (``max_total`` over all classes), for patch samplers. Images that are not label
        maps get statistics only.
    seg : bool or None
        Whether the image is a label map; ``None`` keeps a recorded ``is_seg`` or
        detects it (:func:`looks_like_labels`).

    Returns
    -------
    Meta
        The image's updated header.

    Raises
    ------
    InvalidArgumentError
        A label map with a non-spatial axis longer than 1.
    """
    data = np.asarray(image.to_numpy())
    meta = image.meta.model_copy(deep=True)
    meta.stats = intensity_stats(data)
    is_seg = seg if seg is not None else meta.is_seg if meta.is_seg is not None else looks_like_labels(data)
    meta.is_seg = is_seg
    if is_seg:
        labels = _spatial_labels(image, data)
        samples = class_locations(labels, max_per_class=max_per_class, max_total=max_total, seed=seed)
        boxes = [[list(pair) for pair in s.box or ()] for s in samples]
        meta.bbox = BBoxes(boxes, labels=[s.label for s in samples]) if samples else None
        if with_class_locations:
            meta.class_locations = ClassLocations.model_validate(to_record(samples, labels.shape))
    image.meta = meta
    return image.meta


def update_stats(
    path: str | os.PathLike[str],
    *,
    with_class_locations: bool = False,
    seg: bool | None = None,
    seed: int = 0,
) -> Meta:
    """:func:`annotate` the file at ``path`` and rewrite only its header, atomically.

    The array data are not rewritten; a crash leaves the previous file complete.
    """
    with MLArray.open(path, "r+") as image:
        return annotate(image, with_class_locations=with_class_locations, seg=seg, seed=seed)
