"""DICOM series (a directory of slices) to :class:`~mlarray.MLArray`: SimpleITK for geometry, pydicom for values.

SimpleITK (GDCM) finds the series in a directory, sorts its slices along the slice
normal and gives ITK's index-to-world map (LPS), which is ``meta.spatial``'s. The
voxels are the files' raw stored values, read with pydicom in ITK's slice order, and
RescaleSlope/RescaleIntercept turn them into physical values exactly as for NIfTI
(:mod:`mlarray.convert._scaling`; ``keep_raw`` keeps the raw values). The array axes
are ITK's ``(i, j, k)``: columns, rows, slices. The first slice's header (every element
but the pixel data) is kept in ``meta.source`` as DICOM JSON.

Writing DICOM is not supported: a series needs identifiers and modules this package
cannot invent truthfully.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.convert._common import require
from mlarray.convert._geometry import spatial_fields
from mlarray.convert._scaling import integral_scaling, physical_dtype, physical_values
from mlarray.convert.metaimage import itk_to_parts
from mlarray.errors import (
    InvalidArgumentError,
    MLArrayError,
    MLArrayFileNotFoundError,
    NotRepresentableError,
    SourceFormatError,
)
from mlarray.models import Meta, Spatial

FORMAT = "dicom"
"""Value of ``meta.source["format"]`` for images read from a DICOM series."""

BULK_BYTES = 1024
"""Binary header elements larger than this are left out of ``meta.source`` (their tag stays, empty)."""


@contextlib.contextmanager
def _quiet(sitk: Any) -> Iterator[None]:
    """No ITK/GDCM warnings on stderr: what they warn of is checked here and raised as a typed error."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def series_ids(directory: str | os.PathLike[str]) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM series in ``directory`` (not recursive)."""
    sitk = require("SimpleITK", os.fspath(directory))
    with _quiet(sitk):  # GDCM prints a C++ warning for a folder without a series
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(os.fspath(directory)))


def read_dicom_parts(
    path: str | os.PathLike[str], *, keep_raw: bool = False, series: str | None = None
) -> tuple[np.ndarray[Any, Any], Meta]:
    """The array and header of the DICOM series in directory ``path`` (``series``: its UID when there are several).

    Raises
    ------
    MLArrayFileNotFoundError
        ``path`` is not a directory.
    SourceFormatError
        No DICOM series in it, or SimpleITK/pydicom cannot read it.
    InvalidArgumentError
        Several series and no ``series``, or an unknown ``series`` UID.
    """
    p = os.fspath(path)
    if not os.path.isdir(p):
        raise MLArrayFileNotFoundError("a DICOM series is read from a directory; this is none", path=p)
    sitk = require("SimpleITK", p)
    pydicom = require("pydicom", p)
    ids = series_ids(p)
    if not ids:
        raise SourceFormatError("no DICOM series found in this directory", path=p)
    if series is None and len(ids) > 1:
        raise InvalidArgumentError(f"{len(ids)} DICOM series here; choose one with --series: {', '.join(ids)}", path=p)
    uid = series or ids[0]
    if uid not in ids:
        raise InvalidArgumentError(f"no series {uid!r} here; found {', '.join(ids)}", path=p)
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(p, uid))
    try:
        if len(files) == 1:  # one (possibly multi-frame) file: the series reader would add an axis
            image = sitk.ReadImage(files[0])
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            with _quiet(sitk):  # ITK warns of uneven slices: _slice_grid places or refuses them
                image = reader.Execute()
        datasets = [pydicom.dcmread(f) for f in files]
        raw = _raw_voxels(datasets)
    except MLArrayError:
        raise
    except Exception as exc:
        raise SourceFormatError(f"cannot read this DICOM series: {exc}", path=p) from None
    geometry_source, spatial = itk_to_parts(image, p)
    if geometry_source.shape != raw.shape:
        raise SourceFormatError(f"SimpleITK sees shape {geometry_source.shape} but the files hold {raw.shape}", path=p)
    spatial = _slice_grid(image, spatial, _slice_positions(datasets), p)
    slopes, intercepts = _rescale(datasets, p)
    if len(set(slopes)) == 1 and len(set(intercepts)) == 1:
        data, scaling = physical_values(raw, slopes[0], intercepts[0], keep_raw=keep_raw)
    elif keep_raw:
        raise NotRepresentableError(
            "the slices have different rescale slopes or intercepts: raw values cannot be kept with one scaling", path=p
        )
    else:  # one scaling per slice: store the physical values, record the scalings in source
        physical = raw.astype(np.float64) * np.asarray(slopes) + np.asarray(intercepts)
        integral = integral_scaling(raw.dtype, *slopes, *intercepts)
        data, scaling = physical.astype(physical_dtype(physical, integral=integral)), None
    source: dict[str, Any] = {
        "format": FORMAT,
        "series_uid": uid,
        "files": [Path(f).name for f in files],
        "header": _header_json(datasets[0]),
    }
    if scaling is None and (len(set(slopes)) > 1 or len(set(intercepts)) > 1):
        source["rescale_per_slice"] = {"slope": slopes, "intercept": intercepts}
    try:
        meta = Meta(spatial=spatial, source=source, scaling=scaling)
    except MLArrayError as exc:
        raise NotRepresentableError(f"the DICOM header cannot be stored: {exc}", path=p) from None
    return data, meta


def read_dicom(path: str | os.PathLike[str], *, keep_raw: bool = False, series: str | None = None) -> MLArray:
    """Read a DICOM series into an in-memory :class:`~mlarray.MLArray` (see :func:`read_dicom_parts`)."""
    data, meta = read_dicom_parts(path, keep_raw=keep_raw, series=series)
    return MLArray(data, meta=meta)


def _frames(datasets: list[Any]) -> int:
    """Number of slices: the frames of a single multi-frame file, else one per file."""
    if len(datasets) == 1:
        return max(1, int(datasets[0].get("NumberOfFrames", 1) or 1))
    return len(datasets)


def _frame_item(dataset: Any, frame: int, sequence: str) -> Any:
    """The item of functional group ``sequence`` for ``frame`` (per frame first, then shared), else ``None``."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = dataset.get(groups)
        if items is not None and index < len(items):
            found = items[index].get(sequence)
            if found:
                return found[0]
    return None


def _number(dataset: Any, keyword: str, default: float, path: str) -> float:
    """The decimal element ``keyword`` of ``dataset``; ``default`` when absent or empty (as GDCM reads it)."""
    value = dataset.get(keyword)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceFormatError(f"{keyword} {str(value)!r} is not a number", path=path) from None
    if not np.isfinite(number):
        raise SourceFormatError(f"{keyword} {str(value)!r} is not a finite number", path=path)
    return number


def _rescale(datasets: list[Any], path: str) -> tuple[list[float], list[float]]:
    """RescaleSlope and RescaleIntercept of every slice.

    Enhanced multi-frame files keep them in the functional groups (Pixel Value
    Transformation, per frame or shared); other files at the top level.
    """
    slopes, intercepts = [], []
    for k in range(_frames(datasets)):
        dataset = datasets[0] if len(datasets) == 1 else datasets[k]
        item = _frame_item(dataset, k, "PixelValueTransformationSequence")
        where = item if item is not None and "RescaleSlope" in item else dataset
        slopes.append(_number(where, "RescaleSlope", 1.0, path))
        intercepts.append(_number(where, "RescaleIntercept", 0.0, path))
    return slopes, intercepts


def _slice_positions(datasets: list[Any]) -> list[np.ndarray[Any, Any]] | None:
    """ImagePositionPatient of every slice (per frame for an enhanced multi-frame file); ``None`` if some lack one."""
    positions = []
    for k in range(_frames(datasets)):
        if len(datasets) == 1:
            item = _frame_item(datasets[0], k, "PlanePositionSequence")
            where = item if item is not None else (datasets[0] if _frames(datasets) == 1 else None)
        else:
            where = datasets[k]
        value = None if where is None else where.get("ImagePositionPatient")
        try:
            position = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
        except (TypeError, ValueError):
            position = None
        if position is None or position.shape != (3,) or not np.all(np.isfinite(position)):
            return None
        positions.append(position)
    return positions


def _slice_grid(image: Any, spatial: Spatial, positions: list[np.ndarray[Any, Any]] | None, path: str) -> Spatial:
    """``spatial`` with the slice axis where the slices are; refuse slices that lie on no regular grid.

    GDCM averages the spacing over the series: with a missing slice, varying slice
    spacing, or several phases (or echoes) of one position in one series, the grid places
    slices millimetres from where they were acquired, which ``meta.spatial`` cannot express.
    A CT series with a tilted gantry is regular, but its slices step partly within their
    plane, while SimpleITK steps along the slice normal: the slice axis then gets the
    true step between slice positions, a sheared grid that ``spatial.affine`` records exactly.
    """
    if positions is None or len(positions) < 2 or image.GetDimension() != 3 or image.GetSize()[2] != len(positions):
        return spatial
    count = len(positions)
    step = (positions[-1] - positions[0]) / (count - 1)
    length = float(np.linalg.norm(step))
    tolerance = 1e-2 * length + 1e-4  # DS values carry at most 16 characters; scanners jitter far below 1% of a slice
    itk_grid = [np.asarray(image.TransformIndexToPhysicalPoint((0, 0, k)), dtype=np.float64) for k in range(count)]
    if all(np.linalg.norm(p - q) <= tolerance for p, q in zip(positions, itk_grid, strict=True)):
        return spatial  # SimpleITK's grid is the slices' own
    for k, position in enumerate(positions):
        off = float(np.linalg.norm(position - (positions[0] + k * step)))
        if length == 0 or off > tolerance:
            raise NotRepresentableError(
                f"the slices do not lie on one regular grid: slice {k} is {off:.3g} mm from where {count} "
                f"evenly spaced slices ({length:.6g} mm apart) put it (a missing slice, varying slice spacing, or "
                "several phases or echoes in one series); an .mla file holds one regular grid: convert each phase "
                "as a series of its own, or resample the series onto a regular grid first",
                path=path,
            )
    affine = np.eye(4)
    affine[:3, :2] = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)[:, :2] * image.GetSpacing()[:2]
    affine[:3, 2], affine[:3, 3] = step, positions[0]
    fields = spatial_fields(affine)
    return Spatial(**fields, axis_labels=spatial.axis_labels, coord_system=spatial.coord_system)


def _raw_voxels(datasets: list[Any]) -> np.ndarray[Any, Any]:
    """Stored values as ``(columns, rows, slices)``, then a samples axis for colour (RGB) pixels.

    A single multi-frame file gives its frames as slices.
    """
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1)) > 1:
        frames = np.asarray(datasets[0].pixel_array)  # (frames, rows, columns[, samples])
        return np.ascontiguousarray(np.swapaxes(frames, 0, 2))
    slices = [np.swapaxes(np.asarray(ds.pixel_array), 0, 1) for ds in datasets]  # (columns, rows[, samples])
    return np.ascontiguousarray(np.stack(slices, axis=2))


def _header_json(dataset: Any) -> dict[str, Any]:
    """Every element of ``dataset`` but the pixel data, as DICOM JSON (PS3.18 F); big binary values left empty."""
    header = dataset.copy()
    if "PixelData" in header:
        del header.PixelData
    result: dict[str, Any] = header.to_json_dict(
        bulk_data_threshold=BULK_BYTES,
        bulk_data_element_handler=lambda _: "",
        suppress_invalid_tags=True,  # an element pydicom cannot encode (a malformed DS) is left out
    )
    return result
