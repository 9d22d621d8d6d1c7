"""NRRD <-> .mla conversion is lossless, and NIfTI <-> NRRD through .mla keeps the world map.

Synthetic files are written with pynrrd. The cross-format tests also let SimpleITK
(an independent reader of both formats) map voxel indices to physical points and
resample one file onto the other: the voxels must land exactly on each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conversion_helpers import roundtrip as conversion_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.convert import convert_file, read_nifti, read_nrrd, write_nifti, write_nrrd
from mlarray.errors import NotRepresentableError, SourceFormatError

nrrd = pytest.importorskip("nrrd")
nib = pytest.importorskip("nibabel")

RNG = np.random.default_rng(11)


def rotation(angle: float) -> np.ndarray[Any, Any]:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.array([[1, 0, 0], [0, c, s], [0, -s, c]])


DIRECTIONS = {
    "identity": np.eye(3),
    "oblique": rotation(0.35),
    "permuted": np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float),
    "flipped": np.diag([1.0, -1.0, -1.0]),
}
SPACING = np.array([0.8, 1.25, 2.5])
ORIGIN = np.array([-20.5, 14.0, 3.25])
INDICES = [(0, 0, 0), (1, 2, 3), (3, 0, 4), (2, 4, 1)]


def write(path: Path, data: np.ndarray[Any, Any], header: dict[str, Any], **kwargs: Any) -> Path:
    nrrd.write(str(path), data, header, **kwargs)
    return path


def space_header(direction: Any, space: str = "left-posterior-superior", **extra: Any) -> dict[str, Any]:
    return {
        "space": space,
        "space directions": (np.asarray(direction) @ np.diag(SPACING)).T,  # one row per axis
        "space origin": ORIGIN.copy(),
        "kinds": ["domain"] * 3,
        **extra,
    }


def roundtrip(src: Path, tmp_path: Path, name: str = "back.nrrd") -> tuple[MLArray, Path]:
    return conversion_roundtrip(src, tmp_path, name)


def assert_same_header(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = ("type", "data file")) -> None:
    assert set(a) - set(ignore) == set(b) - set(ignore)
    for key in set(a) - set(ignore):
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray):
            np.testing.assert_allclose(x, y, rtol=0, atol=0, err_msg=key)
        else:
            assert x == y, key


def world(image: MLArray, index: Any) -> np.ndarray[Any, Any]:
    s = image.meta.spatial
    return np.asarray(s.origin) + np.asarray(s.direction) @ np.diag(s.spacing) @ np.asarray(index, dtype=float)


def nrrd_world(header: dict[str, Any], index: Any) -> np.ndarray[Any, Any]:
    rows = [r for r in np.asarray(header["space directions"], dtype=float) if not np.all(np.isnan(r))]
    return np.asarray(header["space origin"]) + np.asarray(rows).T @ np.asarray(index, dtype=float)


# --------------------------------------------------------------------------- NRRD round trips


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_geometry_round_trip(tmp_path: Path, name: str) -> None:
    data = RNG.integers(-500, 500, (4, 5, 6)).astype(np.int16)
    src = write(tmp_path / "src.nrrd", data, space_header(DIRECTIONS[name]))
    image, out = roundtrip(src, tmp_path)

    np.testing.assert_array_equal(image.to_numpy(), data)
    assert image.dtype == np.int16
    assert image.meta.spatial.coord_system == "LPS"
    np.testing.assert_allclose(image.spacing, SPACING, rtol=1e-12)
    np.testing.assert_allclose(image.direction, DIRECTIONS[name], atol=1e-12)
    header = nrrd.read_header(str(src))
    for index in INDICES:
        np.testing.assert_allclose(world(image, index), nrrd_world(header, index), rtol=0, atol=1e-12)

    back, back_header = nrrd.read(str(out))
    np.testing.assert_array_equal(back, data)
    assert back.dtype == data.dtype
    assert_same_header(nrrd.read_header(str(src)), back_header)


def test_detached_header_round_trip(tmp_path: Path) -> None:
    data = RNG.integers(0, 255, (5, 6, 7)).astype(np.uint8)
    src = write(tmp_path / "ball.nhdr", data, {**space_header(np.eye(3)), "encoding": "raw"})
    assert (tmp_path / "ball.raw").exists()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    image, out = roundtrip(src, out_dir, "ball.nhdr")
    assert image.meta.source["header"]["data file"] == "ball.raw"
    assert sorted(p.name for p in out_dir.iterdir()) == ["ball.nhdr", "ball.raw", "image.mla"]
    back, header = nrrd.read(str(out))
    np.testing.assert_array_equal(back, data)
    assert header["data file"] == "ball.raw" and header["encoding"] == "raw"
    assert (out_dir / "ball.raw").read_bytes() == (tmp_path / "ball.raw").read_bytes()


def test_custom_fields_measurement_frame_and_encodings(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5))
    frame = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    header = space_header(np.eye(3), "right-anterior-superior", encoding="bzip2", **{"measurement frame": frame})
    header.update({"patient name": "anonymous", "b-value": "1000", "DWMRI_gradient_0000": "0 0 1"})
    src = write(tmp_path / "custom.nrrd", data, header)
    image, out = roundtrip(src, tmp_path)
    assert image.meta.source["custom"] == {
        "patient name": "anonymous",
        "b-value": "1000",
        "DWMRI_gradient_0000": "0 0 1",
    }
    assert image.meta.source["header"]["measurement frame"] == frame.tolist()
    assert image.meta.spatial.coord_system == "RAS"
    text = out.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "patient name:=anonymous" in text and "DWMRI_gradient_0000:=0 0 1" in text
    assert "encoding: bzip2" in text
    assert_same_header(nrrd.read_header(str(src)), nrrd.read_header(str(out)))


def test_4d_vector_and_color_axes_are_labelled(tmp_path: Path) -> None:
    none = [np.nan] * 3
    vector = {
        **space_header(np.eye(3)),
        "space directions": np.vstack([none, np.diag(SPACING)]),
        "kinds": ["vector", "domain", "domain", "domain"],
    }
    image, out = roundtrip(write(tmp_path / "vec.nrrd", RNG.random((3, 4, 5, 6)).astype(np.float32), vector), tmp_path)
    assert image.meta.spatial.axis_labels == ["components", "spatial", "spatial", "spatial"]
    assert_same_header(nrrd.read_header(str(tmp_path / "vec.nrrd")), nrrd.read_header(str(out)))

    series = {
        **space_header(np.eye(3)),
        "space directions": np.vstack([np.diag(SPACING), none]),
        "kinds": ["domain", "domain", "domain", "time"],
        "units": ["", "", "", "s"],
        "space units": ["mm", "mm", "mm"],
    }
    image, out = roundtrip(write(tmp_path / "t.nrrd", RNG.random((3, 4, 5, 2)), series), tmp_path, "t_back.nrrd")
    assert image.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "temporal"]
    assert image.meta.spatial.axis_units == ["mm", "mm", "mm", "s"]
    assert_same_header(nrrd.read_header(str(tmp_path / "t.nrrd")), nrrd.read_header(str(out)))

    color = {"kinds": ["RGB-color", "domain", "domain"], "spacings": np.array([np.nan, 0.5, 0.25])}
    data = RNG.integers(0, 255, (3, 4, 5)).astype(np.uint8)
    image, out = roundtrip(write(tmp_path / "rgb.nrrd", data, color), tmp_path, "rgb_back.nrrd")
    assert image.meta.spatial.axis_labels == ["channel", "spatial", "spatial"]
    assert image.meta.spatial.spacing == [0.5, 0.25] and image.meta.spatial.coord_system is None
    np.testing.assert_array_equal(nrrd.read(str(out))[0], data)


def test_2d_image_in_3d_space(tmp_path: Path) -> None:
    header = {
        "space": "left-posterior-superior",
        "space directions": np.array([[0.0, 2.0, 0.0], [1.5, 0.0, 0.0]]),
        "space origin": np.array([1.0, 2.0, 42.0]),  # the slice position along S
    }
    data = RNG.random((4, 5))
    image, out = roundtrip(write(tmp_path / "slice.nrrd", data, header), tmp_path)
    assert image.spacing == [2.0, 1.5] and image.origin == [1.0, 2.0]
    assert image.direction == [[0.0, 1.0], [1.0, 0.0]]
    back = nrrd.read_header(str(out))
    np.testing.assert_array_equal(back["space origin"], [1.0, 2.0, 42.0])
    np.testing.assert_array_equal(back["space directions"], header["space directions"])

    tilted = {**header, "space directions": np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1.5]])}
    with pytest.raises(NotRepresentableError, match="tilted.nrrd"):
        read_nrrd(write(tmp_path / "tilted.nrrd", data, tilted))


def test_big_endian_and_ascii(tmp_path: Path) -> None:
    data = RNG.integers(-(2**30), 2**30, (3, 4, 5)).astype(">i4")
    image, out = roundtrip(write(tmp_path / "be.nrrd", data, {"encoding": "raw", "spacings": np.ones(3)}), tmp_path)
    assert image.meta.array is not None and image.meta.array.dtype == "<i4"
    back, header = nrrd.read(str(out))
    assert header["endian"] == "big" and back.dtype == np.dtype(">i4")
    np.testing.assert_array_equal(back, data)

    text = RNG.random((2, 3))
    image, out = roundtrip(write(tmp_path / "a.nrrd", text, {"encoding": "ascii"}), tmp_path, "a_back.nrrd")
    np.testing.assert_array_equal(nrrd.read(str(out))[0], text)  # %.17g text is exact
    assert nrrd.read_header(str(out))["encoding"] == "ascii"


def test_plain_mla_to_nrrd(tmp_path: Path) -> None:
    plain = MLArray(np.arange(60, dtype=np.uint16).reshape(3, 4, 5), spacing=[0.5, 1.0, 2.0])
    write_nrrd(plain, tmp_path / "plain.nrrd")
    header = nrrd.read_header(str(tmp_path / "plain.nrrd"))
    assert list(header["spacings"]) == [0.5, 1.0, 2.0] and "space" not in header
    assert header["kinds"] == ["domain"] * 3
    back = read_nrrd(tmp_path / "plain.nrrd")
    assert back.meta.spatial.spacing == [0.5, 1.0, 2.0] and back.meta.spatial.coord_system is None

    oriented = MLArray(np.zeros((3, 4, 5), np.float32), spacing=[1, 2, 3], origin=[4, 5, 6], direction=rotation(1.0))
    oriented.meta.spatial.axis_labels = ["spatial"] * 3
    write_nrrd(oriented, tmp_path / "oriented.nhdr")
    header = nrrd.read_header(str(tmp_path / "oriented.nhdr"))
    assert header["space dimension"] == 3 and "space" not in header
    back = read_nrrd(tmp_path / "oriented.nhdr")
    np.testing.assert_allclose(back.affine, oriented.affine, rtol=0, atol=1e-12)


@settings(max_examples=20)  # each example writes and reads three files
@given(
    angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 2),
    spacing=st.tuples(*[st.floats(0.05, 20)] * 3),
    origin=st.tuples(*[st.floats(-500, 500)] * 3),
    flips=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
    order=st.permutations([0, 1, 2]),
)
def test_any_orthonormal_geometry_round_trips(
    tmp_path_factory: pytest.TempPathFactory, angles: Any, spacing: Any, origin: Any, flips: Any, order: Any
) -> None:
    """NRRD -> .mla -> NRRD is exact; -> NIfTI maps every voxel to the same place (LPS -> RAS)."""
    tmp = tmp_path_factory.mktemp("h")
    c0, s0, c1, s1 = np.cos(angles[0]), np.sin(angles[0]), np.cos(angles[1]), np.sin(angles[1])
    rot = np.array([[c0, -s0, 0], [s0, c0, 0], [0, 0, 1]]) @ np.array([[c1, 0, s1], [0, 1, 0], [-s1, 0, c1]])
    direction = rot[:, list(order)] @ np.diag(flips)
    header = {
        "space": "left-posterior-superior",
        "space directions": (direction @ np.diag(spacing)).T,
        "space origin": np.asarray(origin, dtype=float),
    }
    src = write(tmp / "src.nrrd", np.arange(24, dtype=np.int16).reshape(2, 3, 4), header)
    image, out = roundtrip(src, tmp)
    assert_same_header(nrrd.read_header(str(src)), nrrd.read_header(str(out)))
    write_nifti(image, tmp / "out.nii")
    ras = nib.load(str(tmp / "out.nii")).affine
    for index in [(0, 0, 0), (1, 2, 3)]:
        lps = nrrd_world(header, index)
        np.testing.assert_allclose((ras @ [*index, 1])[:3], [-lps[0], -lps[1], lps[2]], rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.bool_, np.float16, np.complex64])
def test_types_nrrd_lacks_are_refused(tmp_path: Path, dtype: Any) -> None:
    with pytest.raises(NotRepresentableError, match="NRRD has no type"):
        write_nrrd(MLArray(np.zeros((2, 3), dtype)), tmp_path / "x.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_file_and_unknown_frame(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(b"NRRD0004\ntype: nonsense\n\n")
    with pytest.raises(SourceFormatError, match="bad.nrrd"):
        read_nrrd(bad)
    image = MLArray(np.zeros((2, 3, 4), np.float32), spacing=[1, 1, 1], origin=[1, 1, 1])
    image.meta.spatial.coord_system = "MNI152"
    with pytest.raises(NotRepresentableError, match="MNI152"):
        write_nrrd(image, tmp_path / "x.nrrd")


# --------------------------------------------------------------------------- across formats


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_nrrd_lps_to_nifti_flips_x_and_y(tmp_path: Path, name: str) -> None:
    data = RNG.random((4, 5, 6)).astype(np.float32)
    src = write(tmp_path / "src.nrrd", data, space_header(DIRECTIONS[name]))
    convert_file(src, tmp_path / "image.mla")
    convert_file(tmp_path / "image.mla", tmp_path / "out.nii")
    written = nib.load(str(tmp_path / "out.nii"))
    np.testing.assert_array_equal(np.asarray(written.dataobj), data)
    header = nrrd.read_header(str(src))
    for index in INDICES:
        lps = nrrd_world(header, index)
        ras = (written.affine @ [*index, 1])[:3]
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], rtol=0, atol=1e-5)  # float32 sform


def test_nifti_to_nrrd_keeps_ras_and_shear(tmp_path: Path) -> None:
    aff = np.array([[2.0, 0.5, 0.0, 10.0], [0.0, 2.0, 0.0, 20.0], [0.0, 0.0, 3.0, 30.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(RNG.random((3, 4, 5)).astype(np.float32), aff)
    nib.save(image, str(tmp_path / "sheared.nii"))
    convert_file(tmp_path / "sheared.nii", tmp_path / "sheared.nrrd")
    header = nrrd.read_header(str(tmp_path / "sheared.nrrd"))
    assert header["space"] == "right-anterior-superior"
    np.testing.assert_allclose(np.asarray(header["space directions"]).T, aff[:3, :3], atol=1e-6)
    np.testing.assert_allclose(header["space origin"], aff[:3, 3], atol=1e-6)
    back = read_nifti(tmp_path / "sheared.nii")
    write_nifti(read_nrrd(tmp_path / "sheared.nrrd"), tmp_path / "again.nii")
    np.testing.assert_allclose(nib.load(str(tmp_path / "again.nii")).affine, back.affine, atol=1e-6)


def test_simpleitk_agrees_and_resamples_one_onto_the_other(tmp_path: Path) -> None:
    """An independent reader maps every voxel of both outputs to the same physical point."""
    sitk = pytest.importorskip("SimpleITK")
    direction = DIRECTIONS["oblique"] @ DIRECTIONS["permuted"] @ np.diag([1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = direction @ np.diag(SPACING)
    aff[:3, 3] = ORIGIN
    data = RNG.integers(0, 30000, (6, 7, 8)).astype(np.int16)
    nifti = nib.Nifti1Image(data, aff)
    nifti.header.set_qform(aff, code=1)
    nib.save(nifti, str(tmp_path / "a.nii"))
    convert_file(tmp_path / "a.nii", tmp_path / "a.mla")
    convert_file(tmp_path / "a.mla", tmp_path / "a.nrrd")  # RAS space
    lps = write(tmp_path / "b.nrrd", data, space_header(direction))  # LPS space
    convert_file(lps, tmp_path / "b.mla")
    convert_file(tmp_path / "b.mla", tmp_path / "b.nii")  # LPS -> RAS

    original, via_nrrd = sitk.ReadImage(str(tmp_path / "a.nii")), sitk.ReadImage(str(tmp_path / "a.nrrd"))
    from_lps, as_nifti = sitk.ReadImage(str(lps)), sitk.ReadImage(str(tmp_path / "b.nii"))
    for index in [(0, 0, 0), (5, 6, 7), (2, 3, 1)]:
        np.testing.assert_allclose(
            original.TransformIndexToPhysicalPoint(index), via_nrrd.TransformIndexToPhysicalPoint(index), atol=1e-4
        )
        np.testing.assert_allclose(
            from_lps.TransformIndexToPhysicalPoint(index), as_nifti.TransformIndexToPhysicalPoint(index), atol=1e-4
        )
    for fixed, moving in ((original, via_nrrd), (from_lps, as_nifti)):
        resampled = sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, -1)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(fixed))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(fixed).transpose(2, 1, 0), data)
