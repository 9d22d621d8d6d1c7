"""Nothing dropped, nothing written that others cannot read: every exported file is read back by SimpleITK."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray import MLArray
from mlarray.convert import convert_file, read_nifti, read_nrrd, write_nifti, write_nrrd
from mlarray.errors import NotRepresentableError

nib = pytest.importorskip("nibabel")
sitk = pytest.importorskip("SimpleITK")

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
REAL_FILES = ["anatomical.nii", "functional.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz"]


def _itk_array(path: Path) -> np.ndarray[Any, Any]:
    """The voxels as SimpleITK reads them, in the file's own (i, j, k, ...) axis order."""
    image = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(image)  # (k, j, i) or (k, j, i, components)
    spatial = image.GetDimension()
    order = list(range(spatial))[::-1] + list(range(spatial, data.ndim))
    return np.transpose(data, order)


@pytest.mark.parametrize("name", REAL_FILES)
@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".nhdr"])
def test_every_export_opens_in_simpleitk(tmp_path: Path, name: str, ending: str) -> None:
    src = NIBABEL_DATA / name
    convert_file(src, tmp_path / "x.mla")
    image = MLArray.load(tmp_path / "x.mla")
    out = tmp_path / f"out{ending}"
    convert_file(tmp_path / "x.mla", out)
    if name == "example_nifti2.nii.gz" and ending == ".nii.gz":
        # The NIfTI version is kept, and this ITK reads no NIfTI-2 at all (not even the source):
        with pytest.raises(RuntimeError, match="Unable to determine ImageIO"):
            sitk.ReadImage(str(src))
        np.testing.assert_array_equal(np.asanyarray(nib.load(str(out)).dataobj), image.to_numpy())
        return
    got = _itk_array(out)
    want = image.to_numpy()
    if got.ndim == want.ndim + 1 and got.shape[-1] == 1:
        got = got[..., 0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6 if got.dtype.kind == "f" else 0)


def test_4d_nifti_to_nrrd_opens_in_simpleitk_and_reads_back(tmp_path: Path) -> None:
    src = NIBABEL_DATA / "example4d.nii.gz"
    convert_file(src, tmp_path / "e4.nrrd")
    itk = sitk.ReadImage(str(tmp_path / "e4.nrrd"))
    assert itk.GetSize() == (128, 96, 24) and itk.GetNumberOfComponentsPerPixel() == 2
    np.testing.assert_array_equal(_itk_array(tmp_path / "e4.nrrd"), np.asanyarray(nib.load(str(src)).dataobj))
    back = read_nrrd(tmp_path / "e4.nrrd")
    assert back.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "temporal"]
    assert back.meta.spatial.axis_units == read_nifti(src).meta.spatial.axis_units


@pytest.mark.parametrize("writer", [write_nifti, write_nrrd])
def test_a_0_size_array_is_not_representable(tmp_path: Path, writer: Any) -> None:
    target = tmp_path / ("empty.nii" if writer is write_nifti else "empty.nrrd")
    with pytest.raises(NotRepresentableError, match="0-size"):
        writer(MLArray(np.zeros((4, 0, 3), np.int16)), target)
    assert not target.exists()


def _with_gap(tmp_path: Path, gap: bytes) -> tuple[Path, bytes, np.ndarray[Any, Any]]:
    """A NIfTI file whose vox_offset leaves ``gap`` between the header and the voxels (no extensions)."""
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "plain.nii")
    raw = bytearray((tmp_path / "plain.nii").read_bytes())
    (offset,) = struct.unpack_from("<f", raw, 108)
    out = raw[: int(offset)] + gap + raw[int(offset) :]
    struct.pack_into("<f", out, 108, offset + len(gap))
    path = tmp_path / "gap.nii"
    path.write_bytes(bytes(out))
    return path, bytes(out), data


def test_bytes_before_vox_offset_are_kept_and_written_back(tmp_path: Path) -> None:
    """Like the label-name table MRIcron's atlases keep between the header and the data."""
    gap = b"1 Left-Thalamus\n2 Right-Thalamus\n" + bytes(15)
    src, original, data = _with_gap(tmp_path, gap)
    image = read_nifti(src)
    np.testing.assert_array_equal(image.to_numpy(), data)
    convert_file(src, tmp_path / "gap.mla")
    convert_file(tmp_path / "gap.mla", tmp_path / "back.nii")
    assert (tmp_path / "back.nii").read_bytes() == original
    (tmp_path / "gap.nii.gz").write_bytes(gzip.compress(original))
    convert_file(tmp_path / "gap.nii.gz", tmp_path / "gz.mla")
    convert_file(tmp_path / "gz.mla", tmp_path / "back.nii.gz")
    assert gzip.decompress((tmp_path / "back.nii.gz").read_bytes()) == original
    np.testing.assert_array_equal(_itk_array(tmp_path / "back.nii"), data)
