"""Patch geometry for :class:`~mlarray.torch.PatchDataset`: where a patch may start, reading it, its affine.

Pure NumPy over mlarray's public API (``MLArray`` indexing, ``affine``,
``meta.spatial_axes()``); no torch, so it is easy to test and reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from mlarray import MLArray
from mlarray.frames import to_ras

PadMode = Literal["constant", "edge"]
Array = np.ndarray[Any, Any]
Index = Sequence[int] | Array
"""A corner or voxel: ints per spatial axis, as a sequence or an array."""


def corner_range(shape: Sequence[int], patch: Sequence[int]) -> tuple[Array, Array]:
    """Lowest and highest allowed patch corner per axis.

    A patch lies inside the image when it fits; a patch larger than the image
    covers it whole (the rest is padding). Either way every corner in the range
    gives a patch that overlaps the image.
    """
    s = np.asarray(shape, dtype=np.int64)
    p = np.asarray(patch, dtype=np.int64)
    return np.minimum(0, s - p), np.maximum(0, s - p)


def random_corner(rng: np.random.Generator, shape: Sequence[int], patch: Sequence[int]) -> Array:
    """A corner drawn uniformly from :func:`corner_range`."""
    low, high = corner_range(shape, patch)
    return rng.integers(low, high + 1)


def centred_corner(voxel: Index, shape: Sequence[int], patch: Sequence[int]) -> Array:
    """The corner of the patch centred on ``voxel``, moved into :func:`corner_range`.

    The voxel stays inside the patch: clipping moves the corner towards the image, never past the voxel.
    """
    low, high = corner_range(shape, patch)
    corner = np.asarray(voxel, dtype=np.int64) - np.asarray(patch, dtype=np.int64) // 2
    clipped: Array = np.clip(corner, low, high)
    return clipped


Pads = list[tuple[int, int]]
"""Per axis of a file, how many values to add before and after the part read."""


def read_region(image: MLArray, axes: Sequence[int], corner: Index, patch: Sequence[int]) -> tuple[Array, Pads]:
    """The part of the patch at ``corner`` that lies inside ``image``, and the padding that completes it.

    Only that part is read (a memory-mapped file decompresses just the blocks it touches);
    non-spatial axes are read whole. The array keeps the file's axis order and dtype.
    """
    shape = image.shape
    assert shape is not None
    key: list[slice] = [slice(None)] * len(shape)
    pads = [(0, 0)] * len(shape)
    for axis, c, p in zip(axes, corner, patch, strict=True):
        low, high = max(0, int(c)), min(shape[axis], int(c) + int(p))
        key[axis] = slice(low, high)
        pads[axis] = (low - int(c), int(c) + int(p) - high)
    return np.asarray(image[tuple(key)]), pads


def complete_patch(
    data: Array, pads: Pads, axes: Sequence[int], pad_mode: PadMode = "constant", pad_value: Any = 0
) -> Array:
    """``data`` from :func:`read_region` padded by ``pads`` and with its channel axes merged first.

    Padding happens in ``data``'s dtype: convert ``data`` to the dtype the caller returns
    first, so that the constant is exactly ``pad_value`` there. The result has shape
    ``(C, *patch)``, the non-spatial axes merged into one channel axis.
    """
    if any(before or after for before, after in pads):
        if pad_mode == "edge":
            data = np.pad(data, pads, mode="edge")
        else:
            data = np.pad(data, pads, mode="constant", constant_values=pad_value)
    others = [a for a in range(data.ndim) if a not in axes]
    data = np.moveaxis(data, [*others, *axes], list(range(data.ndim)))
    return data.reshape((-1, *data.shape[len(others) :]))


def read_patch(
    image: MLArray,
    axes: Sequence[int],
    corner: Index,
    patch: Sequence[int],
    pad_mode: PadMode = "constant",
    pad_value: Any = 0,
    dtype: np.dtype[Any] | None = None,
) -> Array:
    """The patch at ``corner`` over the spatial ``axes`` as ``(C, *patch)``, padded where it leaves the image.

    ``dtype`` (default: the file's) is the dtype of the result; the padding is ``pad_value`` in it.
    """
    data, pads = read_region(image, axes, corner, patch)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return complete_patch(data, pads, axes, pad_mode, pad_value)


def patch_affine(affine: Array, corner: Index) -> Array:
    """The index-to-world matrix of a patch: ``affine`` with its origin moved to the patch corner."""
    n = affine.shape[0] - 1
    out = np.array(affine, dtype=np.float64)
    out[:n, n] = affine[:n, :n] @ np.asarray(corner, dtype=np.float64) + affine[:n, n]
    return out


def ras_affine(image: MLArray) -> tuple[Array, str | None]:
    """The index-to-world matrix of ``image`` in RAS+ (the frame of nibabel, MONAI and TorchIO) and the frame it was in.

    A file whose frame is an orientation code is re-expressed in RAS+
    (:func:`mlarray.frames.to_ras`; LPS+, the usual frame of DICOM, ITK and NRRD, has its
    first two world axes negated); without a frame, or with a custom frame name, the
    matrix is returned unchanged.
    """
    frame = image.meta.spatial.coord_system
    return to_ras(image.affine, frame), frame
