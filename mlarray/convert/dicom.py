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

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.convert._common import require
from mlarray.convert._scaling import integral_scaling, physical_dtype, physical_values
from mlarray.convert.metaimage import itk_to_parts
from mlarray.errors import (
    InvalidArgumentError,
    MLArrayError,
    MLArrayFileNotFoundError,
    NotRepresentableError,
    SourceFormatError,
)
from mlarray.models import Meta

FORMAT = "dicom"
"""Value of ``meta.source["format"]`` for images read from a DICOM series."""

BULK_BYTES = 1024
"""Binary header elements larger than this are left out of ``meta.source`` (their tag stays, empty)."""


def series_ids(directory: str | os.PathLike[str]) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM series in ``directory`` (not recursive)."""
    sitk = require("SimpleITK", os.fspath(directory))
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM prints a C++ warning for a folder without a series
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(os.fspath(directory)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


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
    slopes = [float(ds.get("RescaleSlope", 1.0)) for ds in datasets]
    intercepts = [float(ds.get("RescaleIntercept", 0.0)) for ds in datasets]
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
    result: dict[str, Any] = header.to_json_dict(bulk_data_threshold=BULK_BYTES, bulk_data_element_handler=lambda _: "")
    return result
