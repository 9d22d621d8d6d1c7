"""DICOM series and MetaImage input, checked voxel by voxel and point by point with SimpleITK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray import MLArray
from mlarray.convert import convert_file
from mlarray.convert.dicom import read_dicom, series_ids
from mlarray.convert.metaimage import read_metaimage, write_metaimage
from mlarray.errors import InvalidArgumentError, NotRepresentableError

sitk = pytest.importorskip("SimpleITK")
pydicom = pytest.importorskip("pydicom")

RNG = np.random.default_rng(11)


def _oblique() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Row and column direction cosines of an oblique slice (a rotation of the axial plane)."""
    a, b = np.deg2rad(20), np.deg2rad(-12)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    rotation = rz @ rx
    return rotation[:, 0], rotation[:, 1]


def write_series(
    folder: Path,
    raw: np.ndarray[Any, Any],
    *,
    spacing: tuple[float, float, float] = (0.7, 0.8, 2.5),
    origin: tuple[float, float, float] = (-120.0, 35.5, 80.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    uid: str | None = None,
    shuffle: bool = True,
) -> str:
    """A synthetic CT series: ``raw`` is (columns, rows, slices) uint16; files written in shuffled order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = uid or generate_uid()
    study = generate_uid()
    row, col = _oblique()
    normal = np.cross(row, col)
    order = RNG.permutation(raw.shape[2]) if shuffle else range(raw.shape[2])
    for k in order:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Synthetic^Phantom", "0001"
        ds.InstanceNumber = int(k) + 1
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[2] * normal]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # between rows, between columns
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = raw.shape[1], raw.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        ds.PixelData = np.ascontiguousarray(raw[:, :, k].T).astype("<u2").tobytes()
        ds.save_as(folder / f"{series[-6:]}-{k:03d}.dcm", enforce_file_format=True)
    return series


def _itk_series(folder: Path, uid: str | None = None) -> Any:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid or ""))
    return reader.Execute()


def _check_geometry(image: MLArray, itk: Any) -> None:
    """Index-to-world of every corner and a few inner voxels: mlarray's affine against SimpleITK."""
    shape = image.shape
    assert shape is not None
    points = [tuple(int(c) for c in corner) for corner in np.ndindex(*(2,) * 3)]
    points = [tuple((s - 1) * c for s, c in zip(shape[:3], corner, strict=True)) for corner in points]
    points += [(1, 2, 1), (3, 0, 2)]
    for index in points:
        ours = (image.affine @ np.array([*index, 1.0]))[:3]
        np.testing.assert_allclose(ours, itk.TransformIndexToPhysicalPoint(index), rtol=0, atol=1e-9)


def test_dicom_series_gives_physical_values_and_exact_geometry(tmp_path: Path) -> None:
    raw = RNG.integers(0, 4096, size=(6, 5, 4)).astype(np.uint16)  # columns, rows, slices
    write_series(tmp_path / "ct", raw)
    image = read_dicom(tmp_path / "ct")
    assert image.dtype == np.int16 and image.shape == (6, 5, 4)
    np.testing.assert_array_equal(image.to_numpy(), raw.astype(np.int32) - 1024)
    itk = _itk_series(tmp_path / "ct")
    itk_values = np.transpose(sitk.GetArrayFromImage(itk), (2, 1, 0))
    np.testing.assert_array_equal(image.to_numpy(), itk_values)
    _check_geometry(image, itk)
    assert image.meta.spatial.coord_system == "LPS"
    assert image.meta.scaling is not None and image.meta.scaling.raw_dtype == "<u2"
    assert image.meta.source["format"] == "dicom"
    assert image.meta.source["header"]["00080060"]["Value"] == ["CT"]  # Modality, DICOM JSON
    assert "7FE00010" not in image.meta.source["header"]  # no pixel data in the header


def test_dicom_keep_raw_and_fractional_scaling(tmp_path: Path) -> None:
    raw = RNG.integers(0, 1000, size=(4, 4, 3)).astype(np.uint16)
    write_series(tmp_path / "pet", raw, slope=0.25, intercept=-3.5)
    physical = read_dicom(tmp_path / "pet")
    assert physical.dtype == np.float32
    np.testing.assert_array_equal(physical.to_numpy(), raw * 0.25 - 3.5)
    kept = read_dicom(tmp_path / "pet", keep_raw=True)
    np.testing.assert_array_equal(kept.to_numpy(), raw)
    np.testing.assert_array_equal(kept.to_numpy(scaled=True), raw * 0.25 - 3.5)


def test_several_series_need_a_uid(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    a = write_series(folder, RNG.integers(0, 100, size=(3, 3, 2)).astype(np.uint16))
    b = write_series(folder, RNG.integers(0, 100, size=(4, 3, 3)).astype(np.uint16))
    assert sorted(series_ids(folder)) == sorted([a, b])
    with pytest.raises(InvalidArgumentError, match="--series"):
        read_dicom(folder)
    assert read_dicom(folder, series=b).shape == (4, 3, 3)
    with pytest.raises(InvalidArgumentError, match="no series"):
        read_dicom(folder, series="1.2.3")


def test_dicom_directory_converts_through_convert_file_and_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlarray.cli import app

    raw = RNG.integers(0, 4096, size=(5, 6, 3)).astype(np.uint16)
    write_series(tmp_path / "ct", raw)
    convert_file(tmp_path / "ct", tmp_path / "ct.mla")
    np.testing.assert_array_equal(MLArray.load(tmp_path / "ct.mla").to_numpy(), raw.astype(np.int32) - 1024)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "ct"), str(tmp_path / "ct.mha")])
    assert result.exit_code == 0, result.output
    itk = sitk.ReadImage(str(tmp_path / "ct.mha"))
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(itk), (2, 1, 0)), raw.astype(np.int32) - 1024)
    _check_geometry(MLArray.load(tmp_path / "ct.mla"), itk)


@pytest.mark.parametrize("ending", [".mha", ".mhd"])
def test_metaimage_round_trip_with_oblique_geometry(tmp_path: Path, ending: str) -> None:
    data = RNG.normal(size=(7, 5, 4)).astype(np.float32)
    itk = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)).copy())
    row, col = _oblique()
    direction = np.column_stack([row, col, np.cross(row, col)])
    itk.SetSpacing((0.5, 0.75, 2.0))
    itk.SetOrigin((10.0, -20.0, 5.5))
    itk.SetDirection(direction.ravel().tolist())
    src = tmp_path / f"src{ending}"
    sitk.WriteImage(itk, str(src))
    image = read_metaimage(src)
    np.testing.assert_array_equal(image.to_numpy(), data)
    _check_geometry(image, itk)
    convert_file(src, tmp_path / "x.mla")
    convert_file(tmp_path / "x.mla", tmp_path / f"back{ending}")
    back = sitk.ReadImage(str(tmp_path / f"back{ending}"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(itk))
    np.testing.assert_allclose(back.GetDirection(), itk.GetDirection(), atol=1e-12)
    assert back.GetOrigin() == itk.GetOrigin() and back.GetSpacing() == itk.GetSpacing()


def test_metaimage_vector_pixels_and_refusals(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 255, size=(4, 3, 3)).astype(np.uint8)
    image = MLArray(rgb, axis_labels=["spatial", "spatial", "channel"], spacing=[0.5, 0.5])
    write_metaimage(image, tmp_path / "rgb.mha")
    itk = sitk.ReadImage(str(tmp_path / "rgb.mha"))
    assert itk.GetNumberOfComponentsPerPixel() == 3 and itk.GetSize() == (4, 3)
    np.testing.assert_array_equal(read_metaimage(tmp_path / "rgb.mha").to_numpy(), rgb)
    with pytest.raises(NotRepresentableError):
        write_metaimage(MLArray(np.zeros((3, 0, 2), np.int16)), tmp_path / "empty.mha")
    with pytest.raises(NotRepresentableError):
        write_metaimage(MLArray(np.zeros((3, 4, 2), bool)), tmp_path / "mask.mha")


def test_multi_frame_dicom_file(tmp_path: Path) -> None:
    """One file holding every slice as a frame (NumberOfFrames, SpacingBetweenSlices)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    frames = RNG.integers(0, 4000, size=(3, 5, 6)).astype(np.uint16)  # frames, rows, columns
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CT"
    ds.NumberOfFrames = 3
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [1.0, 2.0, 3.0], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SpacingBetweenSlices, ds.SliceThickness = [0.8, 0.7], 2.5, 2.5
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 5, 6, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = frames.astype("<u2").tobytes()
    (tmp_path / "mf").mkdir()
    ds.save_as(tmp_path / "mf" / "frames.dcm", enforce_file_format=True)
    image = read_dicom(tmp_path / "mf")
    assert image.shape == (6, 5, 3) and image.spacing == [0.7, 0.8, 2.5]
    np.testing.assert_array_equal(image.to_numpy(), np.transpose(frames, (2, 1, 0)).astype(np.int32) - 1024)
    _check_geometry(image, sitk.ReadImage(str(tmp_path / "mf" / "frames.dcm")))


def test_colour_dicom_series_gets_a_trailing_samples_axis(tmp_path: Path) -> None:
    """RGB slices (SamplesPerPixel 3): values as SimpleITK reads them, samples last (was: a shape error)."""
    import pydicom

    write_series(tmp_path / "rgb", RNG.integers(0, 4096, size=(7, 6, 2)).astype(np.uint16))
    colours = RNG.integers(0, 255, size=(2, 6, 7, 3)).astype(np.uint8)  # slices, rows, columns, samples
    for k, path in enumerate(sorted((tmp_path / "rgb").iterdir())):
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.PixelData = colours[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
    image = read_dicom(tmp_path / "rgb")
    itk = _itk_series(tmp_path / "rgb")
    assert image.shape == (7, 6, 2, 3) and itk.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(image.to_numpy(), np.transpose(colours, (2, 1, 0, 3)))
    np.testing.assert_array_equal(image.to_numpy(), np.transpose(sitk.GetArrayFromImage(itk), (2, 1, 0, 3)))
    _check_geometry(image, itk)


def test_a_folder_without_a_series_is_refused_without_gdcm_noise(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "empty.mla"  # a folder whose name looks like a file
    folder.mkdir()
    (folder / "notes.txt").write_text("not DICOM")
    done = subprocess.run(
        [sys.executable, "-m", "mlarray", "convert", str(folder), str(tmp_path / "out.mla")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "no DICOM series" in done.stderr
    assert "GDCMSeriesFileNames" not in done.stderr and "WARNING" not in done.stderr
    assert series_ids(folder) == []
    assert sitk.ProcessObject.GetGlobalWarningDisplay()  # restored for the caller's own SimpleITK use
