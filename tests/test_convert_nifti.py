"""NIfTI <-> .mla conversion is lossless: voxels, type, axis order, geometry, header fields.

Synthetic files are written with nibabel's own writer (an independent implementation
of the format) and read back with nibabel after our round trip; real files come
from the NIfTI test data nibabel ships in its wheel.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conversion_helpers import roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.convert import convert_file, read_nifti, write_nifti
from mlarray.errors import (
    InvalidArgumentError,
    MissingDependencyError,
    MLArrayFileNotFoundError,
    NotRepresentableError,
    SourceFormatError,
    WrongExtensionError,
)
from mlarray.models import Scaling

nib = pytest.importorskip("nibabel")  # the dev extra installs it; skipped only without the convert extra

RNG = np.random.default_rng(7)
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def rotation(ax: float, ay: float, az: float) -> np.ndarray[Any, Any]:
    """A proper rotation from three angles (radians)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(direction: Any, spacing: Any, origin: Any) -> np.ndarray[Any, Any]:
    out = np.eye(4)
    out[:3, :3] = np.asarray(direction, dtype=float) @ np.diag(spacing)
    out[:3, 3] = origin
    return out


DIRECTIONS = {
    "identity": np.eye(3),
    "oblique": rotation(0.3, -0.2, 0.5),
    "permuted": np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float),
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    "permuted_flipped": np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], dtype=float),
}


def write_nib(
    path: Path,
    data: np.ndarray[Any, Any],
    aff: Any,
    *,
    version: int = 1,
    endianness: str = "<",
    units: tuple[str, str] | None = None,
    **fields: Any,
) -> Path:
    """Write a NIfTI file with nibabel (sform and qform both set, unless ``aff`` is None)."""
    header_class = nib.Nifti2Header if version == 2 else nib.Nifti1Header
    image_class = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    header = header_class(endianness=endianness)
    header.set_data_dtype(data.dtype)
    image = image_class(data, aff, header=header)
    if aff is not None:
        image.header.set_sform(aff, code=1)
        image.header.set_qform(aff, code=1)
    if units is not None:
        image.header.set_xyzt_units(*units)
    for key, value in fields.items():
        image.header[key] = value
    nib.save(image, str(path))
    return path


def raw(path: Path) -> np.ndarray[Any, Any]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj.get_unscaled())


def header_fields(path: Path) -> dict[str, Any]:
    """Every header field of ``path`` as read without nibabel's fixes or scaling consumption."""
    from nibabel.openers import ImageOpener

    header_class = type(nib.load(str(path))).header_class
    with ImageOpener(str(path), "rb") as f:
        header = header_class.from_fileobj(f, check=False)
    return {key: header[key].tolist() for key in header}


def assert_same_header(a: Path, b: Path) -> None:
    ha, hb = header_fields(a), header_fields(b)
    assert ha.keys() == hb.keys()
    for key in ha:
        np.testing.assert_array_equal(np.asarray(ha[key]), np.asarray(hb[key]), err_msg=key)


def world_of(image: MLArray, index: Any) -> np.ndarray[Any, Any]:
    """World position of a voxel from the mlarray geometry: origin + D diag(s) i (or the affine)."""
    s = image.meta.spatial
    i = np.asarray(index, dtype=float)
    if s.affine is not None:
        a = np.asarray(s.affine)
        return a[:-1, :-1] @ i + a[:-1, -1]
    return np.asarray(s.origin) + np.asarray(s.direction) @ np.diag(s.spacing) @ i


INDICES = [(0, 0, 0), (1, 2, 3), (3, 0, 4), (2, 4, 1)]


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_geometry_round_trip(tmp_path: Path, name: str) -> None:
    aff = affine(DIRECTIONS[name], [0.7, 1.3, 2.1], [-12.5, 30.25, 7.0])
    data = RNG.integers(-1000, 1000, (4, 5, 6)).astype(np.int16)
    src = write_nib(tmp_path / "src.nii", data, aff)
    image, out = roundtrip(src, tmp_path)

    assert image.dtype == np.int16 and image.shape == (4, 5, 6)
    np.testing.assert_array_equal(image.to_numpy(), data)
    assert image.meta.spatial.coord_system == "RAS"
    assert image.meta.spatial.axis_labels == ["spatial"] * 3
    np.testing.assert_allclose(image.spacing, [0.7, 1.3, 2.1], rtol=1e-6)
    np.testing.assert_allclose(image.direction, DIRECTIONS[name], atol=1e-6)
    # the stored geometry maps voxel indices exactly where nibabel's affine does
    nib_affine = nib.load(str(src)).affine
    for index in INDICES:
        np.testing.assert_allclose(world_of(image, index), (nib_affine @ [*index, 1])[:3], rtol=0, atol=1e-9)

    back = nib.load(str(out))
    np.testing.assert_array_equal(raw(out), data)
    assert raw(out).dtype == np.int16
    np.testing.assert_allclose(back.affine, nib_affine, rtol=0, atol=1e-12)
    assert_same_header(src, out)
    assert out.read_bytes() == src.read_bytes()


def test_sheared_affine_is_stored_whole(tmp_path: Path) -> None:
    aff = np.array([[2.0, 0.5, 0.0, 10.0], [0.0, 2.0, 0.3, 20.0], [0.1, 0.0, 3.0, 30.0], [0, 0, 0, 1]])
    data = RNG.random((3, 4, 5)).astype(np.float32)
    src = write_nib(tmp_path / "src.nii", data, aff)
    image, out = roundtrip(src, tmp_path)
    s = image.meta.spatial
    assert s.spacing is None and s.direction is None
    np.testing.assert_allclose(s.affine, aff, rtol=0, atol=1e-6)
    for index in INDICES[:2]:
        np.testing.assert_allclose(world_of(image, index), (aff @ [*index, 1])[:3], atol=1e-5)
    np.testing.assert_allclose(nib.load(str(out)).get_sform(), nib.load(str(src)).get_sform(), rtol=0, atol=0)
    assert out.read_bytes() == src.read_bytes()


def test_method_1_geometry_has_no_frame(tmp_path: Path) -> None:
    """qform_code = sform_code = 0: only the voxel size is known (NIfTI method 1)."""
    image = nib.Nifti1Image(np.ones((2, 3, 4), np.uint8), None)
    image.header.set_zooms((1.5, 2.0, 2.5))
    image.header.set_sform(None, code=0)
    image.header.set_qform(None, code=0)
    src = tmp_path / "m1.nii"
    nib.save(image, str(src))
    mla, out = roundtrip(src, tmp_path)
    assert mla.meta.spatial.spacing == [1.5, 2.0, 2.5]
    assert mla.meta.spatial.origin is None and mla.meta.spatial.coord_system is None
    assert out.read_bytes() == src.read_bytes()


@settings(max_examples=20)  # each example writes and reads three files
@given(
    angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
    spacing=st.tuples(*[st.floats(0.05, 20)] * 3),
    origin=st.tuples(*[st.floats(-500, 500)] * 3),
    flips=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
)
def test_any_orthonormal_geometry_round_trips(
    tmp_path_factory: pytest.TempPathFactory, angles: Any, spacing: Any, origin: Any, flips: Any
) -> None:
    tmp = tmp_path_factory.mktemp("h")
    aff = affine(rotation(*angles) @ np.diag(flips), spacing, origin)
    src = write_nib(tmp / "src.nii", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), aff)
    image, out = roundtrip(src, tmp)
    want = nib.load(str(src)).affine
    np.testing.assert_allclose(image.affine, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(nib.load(str(out)).affine, want, rtol=0, atol=1e-9)
    assert_same_header(src, out)


# --------------------------------------------------------------------------- axes and types


def test_2d_image_keeps_the_slice_position(tmp_path: Path) -> None:
    aff = np.diag([2.0, 3.0, 1.0, 1.0])
    aff[:3, 3] = [5.0, -4.0, 50.0]  # the slice sits at z = 50, which a 2-d geometry cannot hold
    data = RNG.integers(0, 100, (5, 6)).astype(np.uint16)
    src = write_nib(tmp_path / "src.nii", data, aff)
    image, out = roundtrip(src, tmp_path)
    assert image.shape == (5, 6) and image.meta.spatial.axis_labels == ["spatial", "spatial"]
    assert image.spacing == [2.0, 3.0] and image.origin == [5.0, -4.0]
    assert image.meta.source["header"]["srow_z"] == [0.0, 0.0, 1.0, 50.0]
    assert out.read_bytes() == src.read_bytes()


def test_2d_image_in_an_oblique_plane_is_refused(tmp_path: Path) -> None:
    aff = affine(rotation(0.4, 0.0, 0.0), [1, 1, 1], [0, 0, 0])  # the j axis leaves the xy plane
    src = write_nib(tmp_path / "oblique2d.nii", np.zeros((4, 5), np.int16), aff)
    with pytest.raises(NotRepresentableError, match="oblique2d.nii.*world axis 2"):
        read_nifti(src)


def test_4d_time_series(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5, 6)).astype(np.float32)
    aff = affine(np.eye(3), [1, 1, 2], [0, 0, 0])
    src = write_nib(tmp_path / "src.nii.gz", data, aff, units=("mm", "msec"), toffset=1.25)
    image, out = roundtrip(src, tmp_path, "back.nii.gz")
    assert image.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "temporal"]
    assert image.meta.spatial.axis_units == ["mm", "mm", "mm", "ms"]
    assert image.meta.source["header"]["toffset"] == 1.25
    np.testing.assert_array_equal(image.to_numpy(), data)
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(src.read_bytes())


def test_5d_vector_image(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5, 1, 3)).astype(np.float64)
    src = write_nib(tmp_path / "src.nii", data, np.eye(4), intent_code=1007)  # NIFTI_INTENT_VECTOR
    image, out = roundtrip(src, tmp_path)
    # NIfTI's vector form: the length-1 dimension 4 is left out of the array and written back
    assert image.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "components"]
    assert image.meta.source["header"]["intent_code"] == 1007
    np.testing.assert_array_equal(image.to_numpy(), data[:, :, :, 0, :])
    assert out.read_bytes() == src.read_bytes()


def test_rgb24_becomes_a_channel_axis(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 5), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = 10, RNG.integers(0, 255, (3, 4, 5)), 200
    src = write_nib(tmp_path / "rgb.nii", rgb, np.eye(4))
    image, out = roundtrip(src, tmp_path)
    assert image.shape == (3, 4, 5, 3) and image.dtype == np.uint8
    assert image.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "channel"]
    np.testing.assert_array_equal(image[..., 1], rgb["G"])
    assert out.read_bytes() == src.read_bytes()


def test_scaled_int16_stores_physical_values_and_converts_back(tmp_path: Path) -> None:
    data = RNG.integers(-2000, 2000, (4, 5, 6)).astype(np.int16)
    src = write_nib(tmp_path / "scaled.nii", data, np.eye(4), scl_slope=0.5, scl_inter=-1024.0)
    image, out = roundtrip(src, tmp_path)
    # Multiples of 0.5 below 2^24 are exact in float32: the smallest exact type.
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image.to_numpy(), data * 0.5 - 1024.0)
    np.testing.assert_array_equal(image.to_numpy(), np.asanyarray(nib.load(str(src)).dataobj))
    assert image.meta.scaling == Scaling(slope=0.5, intercept=-1024.0, raw_dtype="<i2", stored="physical")
    assert "scaling" not in image.meta.source
    back = nib.load(str(out))
    assert back.header.get_data_dtype() == np.int16
    assert (back.dataobj.slope, back.dataobj.inter) == (0.5, -1024.0)
    np.testing.assert_array_equal(np.asarray(back.dataobj.get_unscaled()), data)
    assert out.read_bytes() == src.read_bytes()


def test_keep_raw_stores_raw_values_with_the_scaling(tmp_path: Path) -> None:
    data = RNG.integers(-2000, 2000, (4, 5, 6)).astype(np.int16)
    src = write_nib(tmp_path / "scaled.nii", data, np.eye(4), scl_slope=0.5, scl_inter=-1024.0)
    image = read_nifti(src, keep_raw=True)
    assert image.dtype == np.int16
    np.testing.assert_array_equal(image.to_numpy(), data)
    np.testing.assert_array_equal(image.to_numpy(scaled=True), data * 0.5 - 1024.0)
    assert image.meta.scaling == Scaling(slope=0.5, intercept=-1024.0, raw_dtype="<i2", stored="raw")
    image.save(tmp_path / "raw.mla")
    loaded = MLArray.open(tmp_path / "raw.mla")
    np.testing.assert_array_equal(loaded.to_numpy(scaled=True), np.asanyarray(nib.load(str(src)).dataobj))
    write_nifti(loaded, tmp_path / "back.nii")
    assert (tmp_path / "back.nii").read_bytes() == src.read_bytes()


def test_ct_with_integral_scaling_becomes_int16_hounsfield_units(tmp_path: Path) -> None:
    raw = RNG.integers(0, 4096, (4, 5, 6)).astype(np.uint16)
    src = write_nib(tmp_path / "ct.nii", raw, np.eye(4), scl_slope=1.0, scl_inter=-1024.0)
    image, out = roundtrip(src, tmp_path)
    assert image.dtype == np.int16
    np.testing.assert_array_equal(image.to_numpy(), raw.astype(np.int32) - 1024)
    assert image.meta.scaling is not None and image.meta.scaling.raw_dtype == "<u2"
    assert out.read_bytes() == src.read_bytes()


def test_scaling_that_needs_float64(tmp_path: Path) -> None:
    raw = RNG.integers(-30000, 30000, (3, 4, 5)).astype(np.int16)
    src = write_nib(tmp_path / "f.nii", raw, np.eye(4), scl_slope=0.1, scl_inter=7.3)
    image, out = roundtrip(src, tmp_path)
    assert image.dtype == np.float64
    np.testing.assert_array_equal(image.to_numpy(), np.asanyarray(nib.load(str(src)).dataobj))
    assert out.read_bytes() == src.read_bytes()


def test_functional_nii_gives_nibabels_values_and_converts_back_exactly(tmp_path: Path) -> None:
    """The issue's example: slope 0.0754, intercept 3100.8 (nibabel's own test data)."""
    src = NIBABEL_DATA / "functional.nii"
    expected = np.asanyarray(nib.load(str(src)).dataobj)
    image, out = roundtrip(src, tmp_path)
    assert image.meta.scaling is not None and image.meta.scaling.stored == "physical"
    assert image.meta.scaling.raw_dtype == "<i2"
    np.testing.assert_array_equal(image.to_numpy(), expected.astype(image.dtype))
    np.testing.assert_allclose(image.to_numpy(), expected, rtol=np.finfo(image.dtype).eps, atol=0)
    assert out.read_bytes() == src.read_bytes()


def test_big_endian(tmp_path: Path) -> None:
    data = RNG.integers(-30000, 30000, (4, 5, 6)).astype(">i2")
    src = write_nib(tmp_path / "be.nii", data, np.eye(4), endianness=">")
    image, out = roundtrip(src, tmp_path)
    assert image.meta.array is not None and image.meta.array.dtype == "<i2"
    np.testing.assert_array_equal(image.to_numpy(), data)
    assert image.meta.source["endianness"] == ">"
    assert nib.load(str(out)).header.endianness == ">"
    assert out.read_bytes() == src.read_bytes()


def test_nifti2_round_trip(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5)).astype(np.float64)
    aff = affine(DIRECTIONS["oblique"], [1, 2, 3], [4, 5, 6])
    src = write_nib(tmp_path / "v2.nii", data, aff, version=2)
    image, out = roundtrip(src, tmp_path, "v2_back.nii")
    assert image.meta.source["nifti_version"] == 2
    assert isinstance(nib.load(str(out)), nib.Nifti2Image)
    np.testing.assert_array_equal(raw(out), data)
    assert out.read_bytes() == src.read_bytes()


def test_header_text_nan_and_extensions_survive(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), np.eye(4))
    image.header["descrip"] = b"scan \xb5m"  # not UTF-8: kept as bytes
    image.header["intent_name"] = b"label map"
    image.header["cal_max"] = np.nan
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"hello extension"))
    src = tmp_path / "ext.nii"
    nib.save(image, str(src))
    mla, out = roundtrip(src, tmp_path)
    text = json.dumps(mla.meta.model_dump(mode="json"), allow_nan=False)  # JSON without NaN
    assert '"cal_max": null' in text
    assert mla.meta.source["header"]["intent_name"] == "label map"
    assert mla.meta.source["extensions"][0]["code"] == 6
    assert out.read_bytes() == src.read_bytes()


# --------------------------------------------------------------------------- from other sources


def test_lps_image_is_written_in_ras(tmp_path: Path) -> None:
    direction = DIRECTIONS["oblique"]
    image = MLArray(np.zeros((3, 4, 5), np.float32), spacing=[1, 2, 3], origin=[10, 20, 30], direction=direction)
    image.meta.spatial.coord_system = "LPS"
    write_nifti(image, tmp_path / "lps.nii")
    written = nib.load(str(tmp_path / "lps.nii"))
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    np.testing.assert_allclose(written.affine, expected, atol=1e-5)
    assert int(written.header["sform_code"]) == 1 and int(written.header["qform_code"]) == 1
    back = read_nifti(tmp_path / "lps.nii")
    assert back.meta.spatial.coord_system == "RAS"
    for index in INDICES:
        lps = world_of(image, index)
        np.testing.assert_allclose(world_of(back, index), [-lps[0], -lps[1], lps[2]], atol=1e-4)


def test_plain_spacing_round_trips_without_a_frame(tmp_path: Path) -> None:
    image = MLArray(np.arange(60, dtype=np.int32).reshape(3, 4, 5), spacing=[0.5, 1.0, 2.0])
    write_nifti(image, tmp_path / "plain.nii")
    back = read_nifti(tmp_path / "plain.nii")
    assert back.meta.spatial.spacing == [0.5, 1.0, 2.0] and back.meta.spatial.coord_system is None
    np.testing.assert_array_equal(back.to_numpy(), image.to_numpy())


def test_source_scaling_is_dropped_when_the_type_changed(tmp_path: Path) -> None:
    src = write_nib(tmp_path / "ct.nii", np.zeros((2, 3, 4), np.int16), np.eye(4), scl_slope=2.0, scl_inter=5.0)
    ct = read_nifti(src)
    mask = MLArray(np.ones((2, 3, 4), np.uint8), copy=ct)  # inherits meta.source from the CT
    write_nifti(mask, tmp_path / "mask.nii")
    back = nib.load(str(tmp_path / "mask.nii"))
    assert (back.dataobj.slope, back.dataobj.inter) == (1.0, 0.0)
    np.testing.assert_array_equal(back.get_fdata(), 1.0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("dtype", [np.bool_, np.float16])
def test_types_nifti_lacks_are_refused(tmp_path: Path, dtype: Any) -> None:
    with pytest.raises(NotRepresentableError, match="NIfTI has no data type"):
        write_nifti(MLArray(np.zeros((2, 3, 4), dtype)), tmp_path / "x.nii")
    assert not (tmp_path / "x.nii").exists()


def test_channel_first_is_refused(tmp_path: Path) -> None:
    image = MLArray(np.zeros((3, 4, 5, 6), np.float32), axis_labels=["channel", "spatial", "spatial", "spatial"])
    with pytest.raises(NotRepresentableError, match="spatial axes first"):
        write_nifti(image, tmp_path / "x.nii")


def test_unknown_frame_and_units_are_refused(tmp_path: Path) -> None:
    image = MLArray(np.zeros((2, 3, 4), np.float32), spacing=[1, 1, 1], origin=[1, 2, 3])
    image.meta.spatial.coord_system = "MNI152"
    with pytest.raises(NotRepresentableError, match="MNI152"):
        write_nifti(image, tmp_path / "x.nii")
    image.meta.spatial.coord_system = "RAS"
    image.meta.spatial.axis_units = ["cm", "cm", "cm"]
    with pytest.raises(NotRepresentableError, match="axis units"):
        write_nifti(image, tmp_path / "x.nii")


def test_unreadable_and_misnamed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"\x00" * 400)
    with pytest.raises(SourceFormatError, match="bad.nii"):
        read_nifti(bad)
    good = write_nib(tmp_path / "good.nii", np.zeros((10, 10, 10), np.float32), np.eye(4))
    (tmp_path / "short.nii").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(SourceFormatError, match="short.nii"):
        read_nifti(tmp_path / "short.nii")
    with pytest.raises(MLArrayFileNotFoundError):
        read_nifti(tmp_path / "missing.nii")
    with pytest.raises(WrongExtensionError):
        read_nifti(tmp_path / "image.img")
    with pytest.raises(WrongExtensionError, match="unknown format"):
        convert_file(bad, tmp_path / "out.tiff")


def test_layout_options_only_apply_to_mla(tmp_path: Path) -> None:
    src = write_nib(tmp_path / "a.nii", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(InvalidArgumentError, match="only apply"):
        convert_file(src, tmp_path / "b.nii", codec="zstd")
    with pytest.raises(InvalidArgumentError, match="unknown codec"):
        convert_file(src, tmp_path / "b.mla", codec="brotli")


def test_missing_nibabel_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_nib(tmp_path / "a.nii", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(MissingDependencyError, match=r"mlarray\[convert\]") as info:
        read_nifti(src)
    assert isinstance(info.value, ImportError) and info.value.code == "MISSING_DEPENDENCY"


# --------------------------------------------------------------------------- .mla options and real files


def test_layout_and_codec_are_applied_and_relayout_keeps_the_header(tmp_path: Path) -> None:
    src = write_nib(tmp_path / "a.nii", RNG.random((8, 8, 8)).astype(np.float32), np.eye(4))
    convert_file(src, tmp_path / "a.mla", patch_size=4, codec="zstd", clevel=3)
    first = MLArray.load(tmp_path / "a.mla")
    assert first.meta.layout is not None
    assert (first.meta.layout.patch_size, first.meta.layout.codec, first.meta.layout.clevel) == ([4, 4, 4], "zstd", 3)
    convert_file(tmp_path / "a.mla", tmp_path / "b.mla", codec="lz4")
    second = MLArray.load(tmp_path / "b.mla")
    assert second.meta.layout is not None and second.meta.layout.codec == "lz4"
    assert second.meta.layout.chunk_size == first.meta.layout.chunk_size
    assert second.meta.source == first.meta.source and second.meta.spatial == first.meta.spatial
    np.testing.assert_array_equal(second.to_numpy(), first.to_numpy())


REAL_FILES = ["anatomical.nii", "functional.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz"]


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_round_trip_byte_for_byte(tmp_path: Path, name: str) -> None:
    src = NIBABEL_DATA / name
    ending = ".nii.gz" if name.endswith(".gz") else ".nii"
    image, out = roundtrip(src, tmp_path, "back" + ending)
    original = nib.load(str(src))
    np.testing.assert_array_equal(image.to_numpy(), np.asanyarray(original.dataobj))  # physical values
    np.testing.assert_allclose(nib.load(str(out)).affine, original.affine, rtol=0, atol=0)
    read = gzip.decompress if ending == ".nii.gz" else (lambda b: b)
    assert read(out.read_bytes()) == read(src.read_bytes())


def test_real_files_meta(tmp_path: Path) -> None:
    big_endian = read_nifti(NIBABEL_DATA / "anatomical.nii")
    assert big_endian.meta.source["endianness"] == ">" and big_endian.dtype == np.int16
    scaled = read_nifti(NIBABEL_DATA / "functional.nii")
    assert scaled.meta.scaling is not None and scaled.meta.scaling.stored == "physical"
    assert scaled.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "temporal"]
    assert scaled.meta.spatial.axis_units == ["mm", "mm", "mm", "s"]
    assert read_nifti(NIBABEL_DATA / "example_nifti2.nii.gz").meta.source["nifti_version"] == 2


def test_physical_values_changed_after_conversion_are_not_rounded_to_raw(tmp_path: Path) -> None:
    """Edited physical values that no raw integer gives are written as they are, without the scaling."""
    src = write_nib(
        tmp_path / "s.nii", RNG.integers(0, 100, (3, 4, 5)).astype(np.int16), np.eye(4), scl_slope=0.5, scl_inter=0.0
    )
    convert_file(src, tmp_path / "s.mla")
    with MLArray.open(tmp_path / "s.mla", mmap_mode="r+") as image:
        image[0, 0, 0] = 0.3  # float32 array; no raw integer * 0.5 gives 0.3
        edited = image.to_numpy()
    convert_file(tmp_path / "s.mla", tmp_path / "edited.nii")
    back = nib.load(str(tmp_path / "edited.nii"))
    assert back.get_data_dtype() == np.float32 and (back.dataobj.slope, back.dataobj.inter) == (1.0, 0.0)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), edited)
