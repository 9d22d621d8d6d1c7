"""Lossless conversion between NIfTI / NRRD files and ``.mla``.

Importing this package needs nothing beyond mlarray itself; the readers (nibabel
for NIfTI, pynrrd for NRRD) are the optional extra ``mlarray[convert]`` and are
imported when a conversion runs. A missing one raises
:class:`~mlarray.errors.MissingDependencyError`.

Conversions keep the stored voxels (values, type, axis order), the index-to-world
map in the file's own world frame, and the whole source header in
``meta.source``; anything the target cannot hold raises
:class:`~mlarray.errors.NotRepresentableError` instead of being dropped. See
``docs/conversion.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mlarray.convert.files import convert_file
from mlarray.convert.nifti import read_nifti, write_nifti
from mlarray.convert.nrrd import read_nrrd, write_nrrd

if TYPE_CHECKING:
    from mlarray.api import MLArray

__all__ = ["convert_file", "read_nifti", "read_nrrd", "slice_world", "write_nifti", "write_nrrd"]


def slice_world(image: MLArray, frame: str = "RAS") -> np.ndarray[Any, Any] | None:
    """The 4x4 map of a 1-d or 2-d image's voxel indices into the 3-d world its source file placed it in.

    mlarray describes a slice in its own 2-d world (spec 6.5); where the slice lies in
    the scanner's 3-d world (its position across the plane) stays in ``meta.source``,
    from a NIfTI sform/qform, an NRRD ``space origin`` or a MetaImage of one slice. This
    combines the image's in-plane geometry with that position, as writing the image
    back to those formats does. ``frame`` is ``'RAS'`` or ``'LPS'`` (or another
    orientation code). ``None`` for images with 3 or more spatial axes, without a
    geometry, or whose source records no 3-d world.
    """
    from mlarray.convert._plane import slice_world as _slice_world
    from mlarray.frames import change_frame, orientation_matrix

    own = image.meta.spatial.coord_system
    affine = image.affine
    if own is None or affine is None:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    if own != frame:
        if orientation_matrix(own) is None or orientation_matrix(frame) is None:
            return None
        affine = change_frame(affine, own, frame)
    return _slice_world(image.meta, affine, frame)
