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

from mlarray.convert.files import convert_file
from mlarray.convert.nifti import read_nifti, write_nifti
from mlarray.convert.nrrd import read_nrrd, write_nrrd

__all__ = ["convert_file", "read_nifti", "read_nrrd", "write_nifti", "write_nrrd"]
