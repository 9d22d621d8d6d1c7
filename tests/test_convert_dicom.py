"""DICOM as scanners write it: enhanced multi-frame rescale, uneven slices, malformed elements.

Ground truth is SimpleITK (GDCM) for values; slice positions are the files' own
ImagePositionPatient, which a regular grid must reproduce or the series is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray.convert.dicom import read_dicom
from mlarray.errors import NotRepresentableError, SourceFormatError

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

RNG = np.random.default_rng(23)


def _dataset(sop_class: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def write_slices(folder: Path, raw: np.ndarray[Any, Any], positions: list[float], **elements: Any) -> None:
    """One file per slice of ``raw`` (columns, rows, slices), slice ``k`` at ``positions[k]`` mm along z."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for k, z in enumerate(positions):
        ds = _dataset(CTImageStorage)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, k + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-10.0, 5.0, float(z)]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.7], 2.5
        ds.Rows, ds.Columns = raw.shape[1], raw.shape[0]
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
        ds.PixelData = np.ascontiguousarray(raw[:, :, k % raw.shape[2]].T).astype("<u2").tobytes()
        ds.save_as(folder / f"s{k:03d}.dcm", enforce_file_format=True)


def write_enhanced(
    folder: Path, frames: np.ndarray[Any, Any], shared: tuple[float, float] | None, per_frame: Any
) -> Path:
    """An Enhanced CT file: rescale in the shared and/or per-frame Pixel Value Transformation groups."""
    ds = _dataset(EnhancedCTImageStorage)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape
    group = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    group.PlaneOrientationSequence = Sequence([orientation])
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness, measures.SpacingBetweenSlices = [0.8, 0.7], 2.5, 2.5
    group.PixelMeasuresSequence = Sequence([measures])
    if shared is not None:
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = shared[0], shared[1], "HU"
        group.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    items = []
    for k in range(frames.shape[0]):
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [1.0, 2.0, 3.0 + 2.5 * k]
        item.PlanePositionSequence = Sequence([position])
        if per_frame is not None:
            transform = Dataset()
            transform.RescaleSlope, transform.RescaleIntercept = per_frame[k]
            item.PixelValueTransformationSequence = Sequence([transform])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.PixelData = frames.astype("<u2").tobytes()
    folder.mkdir(parents=True)
    ds.save_as(folder / "enhanced.dcm", enforce_file_format=True)
    return folder / "enhanced.dcm"


def _patch(folder: Path, old: bytes, new: bytes) -> None:
    """Replace an encoded element in every file: a malformed value, as some scanners write (pydicom refuses to)."""
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        assert data.count(old) == 1
        path.write_bytes(data.replace(old, new))


def _itk_values(path: Path) -> np.ndarray[Any, Any]:
    return np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), (2, 1, 0))


def test_enhanced_multi_frame_rescale_from_the_shared_functional_group(tmp_path: Path) -> None:
    frames = RNG.integers(0, 3000, size=(4, 5, 6)).astype(np.uint16)
    path = write_enhanced(tmp_path / "e", frames, shared=(2.0, -1024.0), per_frame=None)
    image = read_dicom(tmp_path / "e")
    expected = np.transpose(frames, (2, 1, 0)).astype(np.int64) * 2 - 1024
    np.testing.assert_array_equal(image.to_numpy(), expected)
    np.testing.assert_array_equal(image.to_numpy(), _itk_values(path))
    assert image.meta.scaling is not None and image.meta.scaling.slope == 2.0
    assert image.meta.scaling.intercept == -1024.0
    raw = read_dicom(tmp_path / "e", keep_raw=True)
    np.testing.assert_array_equal(raw.to_numpy(), np.transpose(frames, (2, 1, 0)))
    assert raw.meta.scaling is not None and raw.meta.scaling.stored == "raw"


def test_enhanced_multi_frame_rescale_per_frame(tmp_path: Path) -> None:
    frames = RNG.integers(0, 3000, size=(3, 4, 5)).astype(np.uint16)
    per_frame = [(1.0, -1024.0), (0.5, -1000.0), (2.0, 0.0)]
    write_enhanced(tmp_path / "e", frames, shared=(9.0, 9.0), per_frame=per_frame)  # per frame wins
    image = read_dicom(tmp_path / "e")
    raw = np.transpose(frames, (2, 1, 0)).astype(np.float64)
    expected = raw * np.array([s for s, _ in per_frame]) + np.array([i for _, i in per_frame])
    np.testing.assert_array_equal(image.to_numpy(), expected)
    assert image.meta.source["rescale_per_slice"] == {"slope": [1.0, 0.5, 2.0], "intercept": [-1024.0, -1000.0, 0.0]}
    with pytest.raises(NotRepresentableError):
        read_dicom(tmp_path / "e", keep_raw=True)


@pytest.mark.parametrize(
    ("positions", "why"),
    [
        ([0.0, 2.5, 7.5, 10.0], "a missing slice"),
        ([0.0, 2.5, 5.0, 8.0, 11.0], "the spacing changes"),
        ([0.0, 0.0, 2.5, 2.5, 5.0, 5.0], "two phases at every position"),
    ],
)
def test_slices_off_one_regular_grid_are_refused(tmp_path: Path, positions: list[float], why: str) -> None:
    raw = RNG.integers(0, 3000, size=(5, 4, 3)).astype(np.uint16)
    write_slices(tmp_path / "s", raw, positions)
    with pytest.raises(NotRepresentableError, match="regular grid"):
        read_dicom(tmp_path / "s")


def test_slice_positions_rounded_by_the_scanner_still_convert(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    raw = RNG.integers(0, 3000, size=(5, 4, 6)).astype(np.uint16)
    jitter = [0.0, 2.5003, 4.9998, 7.5001, 10.0, 12.4997]  # what DS rounding and table encoders leave
    write_slices(tmp_path / "s", raw, jitter)
    image = read_dicom(tmp_path / "s")
    np.testing.assert_array_equal(image.to_numpy(), raw)
    assert abs(image.spacing[2] - 12.4997 / 5) < 1e-9
    missing = tmp_path / "m"
    write_slices(missing, raw, [0.0, 2.5, 7.5, 10.0])
    capfd.readouterr()
    with pytest.raises(NotRepresentableError):
        read_dicom(missing)
    assert "WARNING" not in capfd.readouterr().err  # ITK's own warning is replaced by the typed error


def test_an_empty_rescale_slope_is_one_and_a_malformed_element_elsewhere_is_left_out(tmp_path: Path) -> None:
    raw = RNG.integers(0, 3000, size=(4, 3, 3)).astype(np.uint16)
    write_slices(tmp_path / "s", raw, [0.0, 2.5, 5.0], RescaleSlope="", RescaleIntercept="-1024")
    image = read_dicom(tmp_path / "s")
    np.testing.assert_array_equal(image.to_numpy(), raw.astype(np.int32) - 1024)
    bad = tmp_path / "b"
    write_slices(bad, raw, [0.0, 2.5, 5.0])
    _patch(bad, b"\x18\x00\x50\x00DS\x04\x002.5 ", b"\x18\x00\x50\x00DS\x04\x002.5x")  # SliceThickness
    image = read_dicom(bad)
    np.testing.assert_array_equal(image.to_numpy(), raw)
    assert "00180050" not in image.meta.source["header"]  # left out of the DICOM JSON
    assert "00080060" in image.meta.source["header"]


def test_a_rescale_slope_that_is_not_a_number_is_a_source_error(tmp_path: Path) -> None:
    raw = RNG.integers(0, 3000, size=(4, 3, 2)).astype(np.uint16)
    write_slices(tmp_path / "s", raw, [0.0, 2.5], RescaleSlope="9.5")
    _patch(tmp_path / "s", b"\x28\x00\x53\x10DS\x04\x009.5 ", b"\x28\x00\x53\x10DS\x04\x00nine")
    with pytest.raises(SourceFormatError, match="RescaleSlope"):
        read_dicom(tmp_path / "s")


def _tilted_series(folder: Path, raw: np.ndarray[Any, Any], tilt_degrees: float) -> list[list[float]]:
    """A CT series whose gantry is tilted: the image plane leans by ``tilt_degrees``, the table steps along z."""
    write_slices(folder, raw, [2.5 * k for k in range(raw.shape[2])])
    t = np.deg2rad(tilt_degrees)
    orientation = [1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t))]
    positions = []
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = [-10.0, 5.0, 2.5 * k]
        ds.GantryDetectorTilt = tilt_degrees
        ds.save_as(path, enforce_file_format=True)
        positions.append([-10.0, 5.0, 2.5 * k])
    return positions


def _dicom_world(position: list[float], orientation: list[float], spacing: list[float], i: int, j: int) -> Any:
    """PS3.3 C.7.6.2.1.1: where pixel (column i, row j) of a slice lies (PixelSpacing is row, column spacing)."""
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.asarray(position) + i * spacing[1] * row + j * spacing[0] * column


@pytest.mark.parametrize("tilt", [20.0, -12.5, 0.5])
def test_a_tilted_gantry_series_keeps_every_slice_where_it_was_acquired(tmp_path: Path, tilt: float) -> None:
    """It was refused; SimpleITK alone would place the slices along the slice normal, off by up to centimetres."""
    raw = RNG.integers(0, 3000, size=(5, 4, 6)).astype(np.uint16)
    positions = _tilted_series(tmp_path / "t", raw, tilt)
    image = read_dicom(tmp_path / "t")
    np.testing.assert_array_equal(image.to_numpy(), raw)
    assert image.meta.spatial.coord_system == "LPS"
    t = np.deg2rad(tilt)
    orientation = [1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t))]
    affine = image.affine
    for k, position in enumerate(positions):
        for i, j in ((0, 0), (4, 0), (0, 3), (4, 3)):
            expected = _dicom_world(position, orientation, [0.8, 0.7], i, j)
            np.testing.assert_allclose((affine @ [i, j, k, 1.0])[:3], expected, rtol=0, atol=1e-9)
    assert image.meta.spatial.affine is not None  # a sheared grid: no orthonormal direction holds it
    target = tmp_path / "t.mla"
    image.save(target)
    np.testing.assert_array_equal(mlarray_open_affine(target), affine)


def mlarray_open_affine(path: Path) -> Any:
    from mlarray import MLArray

    with MLArray.open(path) as opened:
        return opened.affine


def test_a_tilted_gantry_series_exports_to_nifti_at_the_same_places(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    from mlarray.convert import write_nifti

    raw = RNG.integers(0, 3000, size=(5, 4, 6)).astype(np.uint16)
    _tilted_series(tmp_path / "t", raw, 15.0)
    image = read_dicom(tmp_path / "t")
    write_nifti(image, tmp_path / "t.nii.gz")
    loaded = nib.load(tmp_path / "t.nii.gz")
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(loaded.affine, lps_to_ras @ image.affine, rtol=0, atol=1e-6)  # float32 sform
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), raw)


def test_slices_on_no_regular_grid_are_still_refused_when_the_gantry_is_tilted(tmp_path: Path) -> None:
    raw = RNG.integers(0, 3000, size=(5, 4, 4)).astype(np.uint16)
    _tilted_series(tmp_path / "t", raw, 20.0)
    last = sorted((tmp_path / "t").iterdir())[-1]
    ds = pydicom.dcmread(last)
    ds.ImagePositionPatient = [-10.0, 5.0, 10.0]  # a missing slice: 0, 2.5, 5, 10
    ds.save_as(last, enforce_file_format=True)
    with pytest.raises(NotRepresentableError, match="regular grid"):
        read_dicom(tmp_path / "t")
