"""Regressions found by the conversion audit, checked against nibabel, pynrrd and SimpleITK.

1. A floating-point NIfTI with a whole-number scaling (slope 2, intercept 1) was stored raw
   and exported to NRRD and MetaImage as rounded integers.
2. A 2-d slice lost its position along the third world axis between NIfTI and NRRD, and
   the NRRD written (a 2-d image in a 3-d space) was refused by SimpleITK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from mlarray import Meta, MLArray
from mlarray.convert import convert_file, read_nrrd, write_nrrd
from mlarray.convert._plane import ORIGIN_FIELD, SPACE_FIELD
from mlarray.convert._scaling import physical_array, physical_values
from mlarray.models import Scaling

Array = np.ndarray[Any, Any]

# --------------------------------------------------------------------------- 1. scaling of float raw data

RAW = np.array([0.25, 0.5, 0.75, 1.0, 1.3, 2.9], dtype=np.float32).reshape(3, 2, 1)


def scaled_nifti(path: Path, raw: Array, slope: float, inter: float) -> Array:
    """Save ``raw`` with ``scl_slope``/``scl_inter``; returns nibabel's physical values (``get_fdata``)."""
    image = nib.Nifti1Image(raw, np.diag([0.5, 0.75, 2.0, 1.0]))
    image.header.set_slope_inter(slope, inter)
    nib.save(image, path)
    physical: Array = nib.load(path).get_fdata()
    return physical


def itk_values(path: Path) -> Array:
    """Voxels as SimpleITK reads them, in (i, j, k) order."""
    return np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), (2, 1, 0))


@pytest.mark.parametrize(
    ("slope", "inter", "dtype"), [(2.0, 1.0, np.float32), (1.0, -1024.0, np.float64), (-3.0, 0.0, np.float64)]
)
def test_float_raw_with_whole_number_scaling_stores_physical_floats(
    tmp_path: Path, slope: float, inter: float, dtype: Any
) -> None:
    want = scaled_nifti(tmp_path / "f.nii.gz", RAW, slope, inter)
    assert not np.array_equal(want, np.round(want))  # the values an integer type would round
    convert_file(tmp_path / "f.nii.gz", tmp_path / "f.mla")
    image = MLArray.load(tmp_path / "f.mla")
    assert image.meta.scaling is not None and image.meta.scaling.stored == "physical"
    assert image.meta.scaling.raw_dtype == "<f4"
    assert image.dtype == dtype  # float32 when every physical value is exactly a float32
    assert np.array_equal(want.astype(np.float32), want) == (dtype == np.float32)
    np.testing.assert_array_equal(image.to_numpy().astype(np.float64), want)
    # and NIfTI gets the raw values back bit for bit
    convert_file(tmp_path / "f.mla", tmp_path / "back.nii")
    back = nib.load(tmp_path / "back.nii")
    assert np.asanyarray(back.dataobj.get_unscaled()).tobytes() == RAW.tobytes()
    assert (float(back.dataobj.slope), float(back.dataobj.inter)) == (slope, inter)


@pytest.mark.parametrize("route", ["direct", "via_mla", "via_raw_mla"])
@pytest.mark.parametrize("ending", [".nrrd", ".nhdr", ".mha"])
def test_float_raw_scaled_exports_hold_nibabel_values(tmp_path: Path, route: str, ending: str) -> None:
    want = scaled_nifti(tmp_path / "f.nii.gz", RAW, 2.0, 1.0)
    src, out = tmp_path / "f.nii.gz", tmp_path / f"out{ending}"
    if route != "direct":
        convert_file(src, tmp_path / "f.mla", keep_raw=route == "via_raw_mla")
        src = tmp_path / "f.mla"
    convert_file(src, out)
    got = itk_values(out)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.astype(np.float64), want)
    if ending != ".mha":
        data, header = nrrd.read(str(out), index_order="F")
        assert header["type"] == "float" and data.dtype == np.float32
        np.testing.assert_array_equal(data.astype(np.float64), want)


def test_physical_values_not_exact_in_float32_are_exported_as_float64(tmp_path: Path) -> None:
    raw = np.array([1e-3, 0.1, 7.0], dtype=np.float32).reshape(3, 1, 1)  # 1 + 2 * raw needs > 24 bits
    want = scaled_nifti(tmp_path / "f.nii.gz", raw, 2.0, 1.0)
    assert not np.array_equal(want.astype(np.float32).astype(np.float64), want)
    convert_file(tmp_path / "f.nii.gz", tmp_path / "f.mla")
    assert MLArray.load(tmp_path / "f.mla").dtype == np.float64
    for ending in (".nrrd", ".mha"):
        convert_file(tmp_path / "f.mla", tmp_path / f"out{ending}")
        got = itk_values(tmp_path / f"out{ending}")
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_integer_raw_keeps_the_integer_rule(tmp_path: Path) -> None:
    ct = np.array([0, 1000, 4095, 3, 2, 1], dtype=np.uint16).reshape(3, 2, 1)
    image = nib.Nifti1Image(ct, np.eye(4))
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "ct.nii.gz")
    want = nib.load(tmp_path / "ct.nii.gz").get_fdata()
    convert_file(tmp_path / "ct.nii.gz", tmp_path / "ct.mla")
    assert MLArray.load(tmp_path / "ct.mla").dtype == np.int16
    convert_file(tmp_path / "ct.nii.gz", tmp_path / "raw.mla", keep_raw=True)
    for src in ("ct.mla", "raw.mla"):
        for ending in (".nrrd", ".mha"):
            out = tmp_path / f"{src}{ending}"
            convert_file(tmp_path / src, out)
            got = itk_values(out)
            assert got.dtype == np.int16
            np.testing.assert_array_equal(got, want)


def test_the_dtype_rule_looks_at_the_raw_type() -> None:
    stored, scaling = physical_values(RAW, 2.0, 1.0)
    assert scaling is not None and scaling.stored == "physical" and stored.dtype == np.float32
    np.testing.assert_array_equal(stored, RAW.astype(np.float64) * 2 + 1)
    whole = np.array([1.0, 2.0, -3.0], dtype=np.float32)  # whole raw floats still give a float type
    assert physical_values(whole, 2.0, 1.0)[0].dtype == np.float32
    kept = Scaling(slope=2.0, intercept=1.0, raw_dtype="<f4", stored="raw")
    out = physical_array(RAW, kept)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, RAW.astype(np.float64) * 2 + 1)
    ints = Scaling(slope=2.0, intercept=1.0, raw_dtype="<i2", stored="raw")
    assert physical_array(np.array([0, 5, -7], np.int16), ints).dtype == np.int8


# --------------------------------------------------------------------------- 2. 2-d slices in a 3-d world

SLICE_AFFINE = np.array([[0.75, 0.0, 0.0, 10.0], [0.0, 0.5, 0.0, -20.0], [0.0, 0.0, 1.5, 30.0], [0, 0, 0, 1.0]])
SLICE = np.arange(30, dtype=np.int16).reshape(5, 6)


def itk_geometry(path: Path) -> tuple[Array, Array, Array]:
    image = sitk.ReadImage(str(path))
    n = image.GetDimension()
    return np.array(image.GetSpacing()), np.array(image.GetOrigin()), np.array(image.GetDirection()).reshape(n, n)


def assert_same_itk_geometry(path: Path, spacing: Any, origin: Any, direction: Any) -> None:
    got = itk_geometry(path)
    for value, expected in zip(got, (spacing, origin, direction), strict=True):
        assert value.shape == np.shape(expected)
        np.testing.assert_array_equal(value, expected)


def convert_via(src: Path, out: Path, via_mla: bool) -> None:
    """``src`` converted to ``out``, directly or through an ``.mla`` file beside ``out``."""
    if via_mla:
        middle = out.with_name(out.name.split(".")[0] + "-via.mla")
        convert_file(src, middle)
        convert_file(middle, out)
    else:
        convert_file(src, out)


def nifti_slice(path: Path) -> Path:
    nib.save(nib.Nifti1Image(SLICE, SLICE_AFFINE), path)
    return path


def in_plane(affine: Array) -> Array:
    """The columns of a NIfTI affine a 2-d image determines: its two axes and its origin."""
    return affine[:3, [0, 1, 3]]


@pytest.mark.parametrize("via_mla", [False, True])
def test_2d_nifti_to_nrrd_keeps_the_slice_position_and_opens_in_simpleitk(tmp_path: Path, via_mla: bool) -> None:
    src = nifti_slice(tmp_path / "slice.nii.gz")
    out = tmp_path / "slice.nrrd"
    convert_via(src, out, via_mla)
    # SimpleITK reads the NRRD, with the geometry it reads from the NIfTI source (LPS, 2-d)
    assert_same_itk_geometry(out, [0.75, 0.5], [-10.0, 20.0], [[-1.0, 0.0], [0.0, -1.0]])
    np.testing.assert_array_equal(itk_geometry(src)[1], itk_geometry(out)[1])
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(out)))), SLICE)
    data, header = nrrd.read(str(out), index_order="F")
    np.testing.assert_array_equal(data, SLICE)
    assert header["space dimension"] == 2 and "space" not in header
    assert header[SPACE_FIELD] == "right-anterior-superior"
    assert header[ORIGIN_FIELD] == "(10.0,-20.0,30.0)"
    # read back: the frame and the slice position come back
    image = read_nrrd(out)
    assert image.meta.spatial.coord_system == "RAS"
    assert image.spacing == [0.75, 0.5] and image.origin == [10.0, -20.0]
    assert image.direction == [[1.0, 0.0], [0.0, 1.0]]
    for route in ("direct", "via_mla"):
        again = tmp_path / f"again-{route}.nii.gz"
        convert_via(out, again, route == "via_mla")
        np.testing.assert_array_equal(in_plane(nib.load(again).affine), in_plane(SLICE_AFFINE))
        assert_same_itk_geometry(again, *itk_geometry(src))
        np.testing.assert_array_equal(np.asanyarray(nib.load(again).dataobj), SLICE)


def test_mla_from_nrrd_slice_writes_the_same_nrrd_again(tmp_path: Path) -> None:
    convert_file(nifti_slice(tmp_path / "slice.nii.gz"), tmp_path / "a.nrrd")
    convert_file(tmp_path / "a.nrrd", tmp_path / "a.mla")
    convert_file(tmp_path / "a.mla", tmp_path / "b.nrrd")
    first, second = nrrd.read_header(str(tmp_path / "a.nrrd")), nrrd.read_header(str(tmp_path / "b.nrrd"))
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(np.asarray(first[key]), np.asarray(second[key]), err_msg=key)


def lps_slice_nrrd(path: Path, data: Array = SLICE, kinds: Any = None) -> Path:
    directions = np.array([[0.5, 0.0, 0.0], [0.0, 0.6, 0.0]])
    if kinds is not None:
        directions = np.vstack([np.full((1, 3), np.nan), directions])
    header = {
        "space": "left-posterior-superior",
        "space directions": directions,
        "space origin": np.array([1.0, 2.0, 3.0]),
        "kinds": kinds or ["domain", "domain"],
    }
    nrrd.write(str(path), data, header, index_order="F")
    return path


@pytest.mark.parametrize("via_mla", [False, True])
def test_2d_nrrd_in_3d_space_to_nifti_keeps_the_third_coordinate(tmp_path: Path, via_mla: bool) -> None:
    src = lps_slice_nrrd(tmp_path / "slice.nrrd")
    out = tmp_path / "slice.nii.gz"
    convert_via(src, out, via_mla)
    affine = nib.load(out).affine
    np.testing.assert_array_equal(affine[:3, 3], [-1.0, -2.0, 3.0])
    np.testing.assert_allclose(affine[:3, :2], [[-0.5, 0.0], [0.0, -0.6], [0.0, 0.0]], rtol=1e-7)  # float32
    # SimpleITK (LPS) sees the source's own numbers: origin (1, 2), identity direction
    spacing, origin, direction = itk_geometry(out)
    np.testing.assert_allclose(spacing, [0.5, 0.6], rtol=1e-7)  # NIfTI stores float32
    np.testing.assert_array_equal(origin, [1.0, 2.0])
    np.testing.assert_array_equal(direction, np.eye(2))
    # and back to NRRD: a file SimpleITK reads, with the slice still at S = 3
    convert_file(out, tmp_path / "back.nrrd")
    np.testing.assert_array_equal(itk_geometry(tmp_path / "back.nrrd")[1], [1.0, 2.0])
    header = nrrd.read_header(str(tmp_path / "back.nrrd"))
    assert header[SPACE_FIELD] == "right-anterior-superior"
    assert header[ORIGIN_FIELD] == "(-1.0,-2.0,3.0)"


def test_2d_nrrd_in_3d_space_written_anew_opens_in_simpleitk(tmp_path: Path) -> None:
    """A 2-d NRRD source in a 3-d space is refused by ITK; once its geometry changes, the file written is not."""
    image = read_nrrd(lps_slice_nrrd(tmp_path / "slice.nrrd"))
    image.meta.spatial.spacing = [0.25, 0.6]
    write_nrrd(image, tmp_path / "edited.nrrd")
    assert_same_itk_geometry(tmp_path / "edited.nrrd", [0.25, 0.6], [1.0, 2.0], np.eye(2))
    header = nrrd.read_header(str(tmp_path / "edited.nrrd"))
    assert header[SPACE_FIELD] == "left-posterior-superior" and header[ORIGIN_FIELD] == "(1.0,2.0,3.0)"
    back = read_nrrd(tmp_path / "edited.nrrd")
    assert back.meta.spatial.coord_system == "LPS" and back.spacing == [0.25, 0.6] and back.origin == [1.0, 2.0]


def test_2d_rgb_nrrd_in_3d_space_written_anew_opens_in_simpleitk(tmp_path: Path) -> None:
    data = np.arange(3 * 5 * 6, dtype=np.uint8).reshape(3, 5, 6)
    image = read_nrrd(lps_slice_nrrd(tmp_path / "rgb.nrrd", data, ["RGB-color", "domain", "domain"]))
    image.meta.spatial.origin = [4.0, 5.0]
    write_nrrd(image, tmp_path / "edited.nrrd")
    assert_same_itk_geometry(tmp_path / "edited.nrrd", [0.5, 0.6], [4.0, 5.0], np.eye(2))
    itk = sitk.ReadImage(str(tmp_path / "edited.nrrd"))
    assert itk.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(itk), (2, 1, 0)), data)
    assert nrrd.read_header(str(tmp_path / "edited.nrrd"))[ORIGIN_FIELD] == "(4.0,5.0,3.0)"
    convert_file(tmp_path / "edited.nrrd", tmp_path / "e.mla")
    back = MLArray.load(tmp_path / "e.mla")
    assert back.meta.spatial.axis_labels == ["channel", "spatial", "spatial"]
    assert back.meta.spatial.coord_system == "LPS" and back.origin == [4.0, 5.0]


@pytest.mark.parametrize(
    ("frame", "itk_origin", "itk_direction"),
    [("LPS", [1.0, 2.0], [[0.0, 1.0], [1.0, 0.0]]), ("RAS", [-1.0, -2.0], [[0.0, -1.0], [-1.0, 0.0]])],
)
def test_2d_image_built_in_memory_to_nrrd(tmp_path: Path, frame: str, itk_origin: Any, itk_direction: Any) -> None:
    spatial = {"spacing": [0.5, 0.6], "origin": [1.0, 2.0], "direction": [[0.0, 1.0], [1.0, 0.0]]}
    image = MLArray(SLICE[:4, :5].copy(), meta=Meta(spatial={**spatial, "coord_system": frame}))
    write_nrrd(image, tmp_path / "x.nrrd")
    assert_same_itk_geometry(tmp_path / "x.nrrd", [0.5, 0.6], itk_origin, itk_direction)
    back = read_nrrd(tmp_path / "x.nrrd")
    assert back.meta.spatial.coord_system == frame
    assert back.spacing == spatial["spacing"] and back.origin == spatial["origin"]
    assert back.direction == spatial["direction"]
    np.testing.assert_array_equal(back.to_numpy(), SLICE[:4, :5])
    # and MetaImage agrees with the NRRD: the NRRD's custom fields put the slice at z = 0 of a 3-d world, so the
    # MetaImage is that slice as a 3-d image of one slice (docs/conversion.md, DICOM series and MetaImage)
    convert_file(tmp_path / "x.nrrd", tmp_path / "x.mha")
    plane, volume = sitk.ReadImage(str(tmp_path / "x.nrrd")), sitk.ReadImage(str(tmp_path / "x.mha"))
    assert volume.GetSize() == (*plane.GetSize(), 1)
    for index in [(0, 0), (3, 4), (1, 2)]:
        expected = [*plane.TransformIndexToPhysicalPoint(index), 0.0]
        np.testing.assert_allclose(volume.TransformIndexToPhysicalPoint((*index, 0)), expected, rtol=0, atol=1e-12)


def test_stale_slice_fields_are_ignored(tmp_path: Path) -> None:
    """Custom fields that no longer agree with the standard ones (another tool moved the slice) are not trusted."""
    header = {
        "space dimension": 2,
        "space directions": np.array([[0.5, 0.0], [0.0, 0.6]]),
        "space origin": np.array([7.0, 8.0]),
        "kinds": ["domain", "domain"],
        SPACE_FIELD: "right-anterior-superior",
        ORIGIN_FIELD: "(10.0,-20.0,30.0)",
    }
    nrrd.write(str(tmp_path / "stale.nrrd"), SLICE, header, index_order="F")
    image = read_nrrd(tmp_path / "stale.nrrd")
    assert image.meta.spatial.coord_system is None and image.origin == [7.0, 8.0]


def test_exporting_through_a_symbolic_link_replaces_the_file_it_leads_to(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    source = tmp_path / "real" / "a.mla"
    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    MLArray(volume).save(source)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "real" / "out.nii.gz")
    link = tmp_path / "links" / "out.nii.gz"
    link.symlink_to("../real/out.nii.gz")
    convert_file(source, link)
    assert link.is_symlink()
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "real" / "out.nii.gz").dataobj), volume)
