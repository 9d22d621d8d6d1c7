"""Which NIfTI dimension each array axis is, when reading and when writing.

NIfTI gives its dimensions fixed meanings: 1 to 3 are space, 4 is time, 5 holds the
components of a vector (or other intent) at each voxel, 6 and 7 are anything else.
A vector image without time (a displacement field, say) is stored as dimension 5
after a dimension 4 of length 1, with ``intent_code`` VECTOR: this is how ITK and
nibabel write it, and how ITK reads it (as a 3-d image of vectors).

* Reading (:func:`array_dimensions`, :func:`dimension_labels`): each NIfTI dimension
  is an array axis, except that length-1 dimension 4 before a dimension 5.
* Writing (:func:`nifti_shape`): each axis goes to the dimension that reads back with
  its label, a ``channel`` axis to dimension 4 (read back as ``temporal``, as 4-D
  multi-modal NIfTI images hold their channels), and anything else that would read back
  as other axes is refused.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mlarray.errors import NotRepresentableError
from mlarray.models import is_spatial_label

EXTRA_AXIS_LABELS = ("temporal", "components", "non_spatial", "non_spatial")
"""Labels of NIfTI dimensions 4 to 7: time, then the 5th (vector/intent) dimension, then the rest."""

EXTRA_AXIS_DIMENSION = {"temporal": 4, "channel": 4, "components": 5}
"""The NIfTI dimension an axis after the spatial ones is written as; other labels take 6 or 7.

A ``channel`` axis is dimension 4, as multi-modal 4-D NIfTI images (the Medical Segmentation
Decathlon's) and MONAI store channels; NIfTI has no channel dimension, so it reads back as
``temporal``. A ``components`` axis (the vector at each voxel) is dimension 5."""

INTENT_VECTOR = 1007
"""``intent_code`` NIFTI_INTENT_VECTOR: dimension 5 holds the components of a vector at each voxel."""


def array_dimensions(nifti_shape: tuple[int, ...]) -> list[int]:
    """The NIfTI dimensions (1-based) that are array axes, in order.

    All of them, except a dimension 4 of length 1 that a 5th dimension follows
    (NIfTI's form of a vector image): the vector axis then follows the spatial ones.
    """
    vector_form = len(nifti_shape) >= 5 and nifti_shape[3] == 1
    return [d for d in range(1, len(nifti_shape) + 1) if d != 4 or not vector_form]


def dimension_labels(dimensions: list[int]) -> list[str]:
    """The axis labels of the NIfTI ``dimensions`` (from :func:`array_dimensions`)."""
    return ["spatial" if d <= 3 else EXTRA_AXIS_LABELS[d - 4] for d in dimensions]


def nifti_shape(labels: list[str], shape: tuple[int, ...], path: str) -> tuple[int, tuple[int, ...]]:
    """Number of spatial axes and the NIfTI dimensions (``dim[1:dim[0] + 1]``) an image is written as.

    Up to 3 spatial axes come first. The other axes take the dimension that reads
    back with their meaning (:data:`EXTRA_AXIS_DIMENSION`): ``temporal`` and ``channel``
    are dimension 4, ``components`` dimension 5 (a vector; without a time axis,
    dimension 4 gets length 1, which reading leaves out again), and other labels
    dimensions 6 and 7 after a dimension 5.

    Raises
    ------
    NotRepresentableError
        More than 7 axes, spatial axes not first, or an order that would read back
        as other axes (a ``non_spatial`` axis as time, a time axis after a vector
        axis, a length-1 dimension 5 that was not there ...).
    """
    spatial = [i for i, label in enumerate(labels) if is_spatial_label(label)]
    n = len(spatial)
    if len(shape) > 7:
        raise NotRepresentableError(f"NIfTI holds at most 7 dimensions, the array has {len(shape)}", path=path)
    if n == 0 or n > 3 or spatial != list(range(n)):
        raise NotRepresentableError(
            f"NIfTI stores 1 to 3 spatial axes first, then time and other axes; this image's axes are {labels} "
            "(move the axes, e.g. channel-last, before converting)",
            path=path,
        )
    if n < 3 and len(shape) > n:
        raise NotRepresentableError(
            f"NIfTI puts time and other axes after three spatial ones; this image has {n} spatial axes and "
            f"{len(shape) - n} others ({labels}): add singleton spatial axes first",
            path=path,
        )
    dimensions: list[int] = []
    for label in labels[n:]:
        last = dimensions[-1] if dimensions else 3
        dimension = EXTRA_AXIS_DIMENSION.get(label, max(6, last + 1))
        if dimension <= last or dimension > 7 or (dimension >= 6 and last < 5):
            raise NotRepresentableError(
                "NIfTI has fixed places for the axes after the three spatial ones: dimension 4 is time "
                "('temporal'), 5 a vector ('components' or 'channel'), 6 and 7 other axes after a dimension 5; "
                f"this image's axes are {labels}, which would read back as other axes (reorder or drop axes first)",
                path=path,
            )
        dimensions.append(dimension)
    nifti = list(shape[:n]) + [1] * ((dimensions[-1] - 3) if dimensions else 0)
    for dimension, size in zip(dimensions, shape[n:], strict=True):
        nifti[dimension - 1] = size
    return n, tuple(nifti)


def mark_vector(header: Any, source_fields: dict[str, Any]) -> None:
    """Set ``intent_code`` VECTOR on a header with a new 5th dimension and no intent.

    ``source_fields`` are the source's NIfTI header fields (empty when the image was
    not read from NIfTI). A source that had a 5th dimension, or an intent code, keeps
    its own ``intent_code``.
    """
    source_dim = source_fields.get("dim")
    had_5 = isinstance(source_dim, list) and bool(source_dim) and isinstance(source_dim[0], int) and source_dim[0] >= 5
    if int(header["dim"][0]) >= 5 and not had_5 and int(header["intent_code"]) == 0:
        header["intent_code"] = INTENT_VECTOR


def keep_unused_dims(header: Any, source_dim: Any) -> None:
    """Give ``dim[k]`` for ``k > dim[0]`` the source's values when the shape is the source's.

    nibabel sets the unused entries to 1; some writers leave them 0 (readers ignore them).
    """
    if not isinstance(source_dim, list) or len(source_dim) != len(header["dim"]):
        return
    used = int(header["dim"][0]) + 1
    if [int(v) for v in header["dim"][:used]] == source_dim[:used]:
        with contextlib.suppress(TypeError, ValueError, OverflowError):  # not numbers that fit: keep nibabel's 1s
            header["dim"] = source_dim
