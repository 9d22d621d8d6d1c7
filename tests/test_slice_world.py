"""``mlarray.convert.slice_world``: a converted 2-d slice's voxels land where the source file put them in 3-d."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from mlarray import MLArray
from mlarray.convert import convert_file, slice_world

INDICES = [(0, 0), (3, 1), (2, 4), (1, 3)]


def _world(matrix: np.ndarray, index: tuple[int, int]) -> np.ndarray:
    return (matrix @ np.array([*index, 0.0, 1.0]))[:3]


def test_a_nifti_slice_maps_like_nibabel(tmp_path: Path) -> None:
    affine = np.array([[0.0, -0.7, 0, 5.0], [1.2, 0.0, 0, -8.0], [0, 0, 2.5, 41.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.int16), affine), tmp_path / "s.nii.gz")
    convert_file(tmp_path / "s.nii.gz", tmp_path / "s.mla")
    image = MLArray.load(tmp_path / "s.mla")
    ras, lps = slice_world(image, "RAS"), slice_world(image, "LPS")
    assert ras is not None and lps is not None
    for index in INDICES:
        expected = nib.affines.apply_affine(affine, [*index, 0])
        np.testing.assert_allclose(_world(ras, index), expected)
        np.testing.assert_allclose(_world(lps, index), expected * [-1, -1, 1])


def test_an_nrrd_slice_in_a_3d_space_maps_like_its_header(tmp_path: Path) -> None:
    """A 2-d NRRD in ``left-posterior-superior``: world = space origin + space directions . index."""
    directions = np.array([[0.0, 0.7, 0.0], [-1.2, 0.0, 0.0]])
    origin = np.array([-5.0, 8.0, 41.0])
    header = {"space": "left-posterior-superior", "space directions": directions, "space origin": origin}
    nrrd.write(str(tmp_path / "s.nrrd"), np.zeros((4, 5), np.int16), header)
    convert_file(tmp_path / "s.nrrd", tmp_path / "s.mla")
    image = MLArray.load(tmp_path / "s.mla")
    assert image.ndim == 2
    lps, ras = slice_world(image, "LPS"), slice_world(image, "RAS")
    assert lps is not None and ras is not None
    for index in INDICES:
        expected = origin + np.asarray(index) @ directions
        np.testing.assert_allclose(_world(lps, index), expected)
        np.testing.assert_allclose(_world(ras, index), expected * [-1, -1, 1])


def test_images_with_nothing_to_place_give_none(tmp_path: Path) -> None:
    assert slice_world(MLArray(np.zeros((4, 5)), spacing=(1, 1))) is None  # no frame, no source
    assert slice_world(MLArray(np.zeros((2, 4, 5)), spacing=(1, 1, 1))) is None  # already 3-d
