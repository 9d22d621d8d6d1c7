"""The napari writer: Image and Labels layers to ``.mla``, with their placement as geometry.

A multiscale layer saves its full-resolution level; an RGB(A) layer saves its colour
as a trailing ``components`` axis, which the reader shows as RGB again.

napari places a layer with ``affine @ (translate + rotate @ shear @ diag(scale))``;
the writer composes that into one index-to-world matrix and stores it as the
header's geometry, so reading the file back places it exactly where it was. A layer
the reader made carries its file's frame in ``metadata["coord_system"]``; its
placement (in napari's RAS+ world, see :mod:`mlarray.frames`) is turned back
into that frame, so the copy has the original's physical geometry and frame. Its
axis labels are kept too, so only the spatial axes get geometry. The save is
:meth:`mlarray.MLArray.save`: validated first, then written atomically.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.frames import from_ras
from mlarray.models import AXIS_VOCABULARY, is_spatial_label
from mlarray.napari._reader import _UNIT_ALIASES

Matrix = np.ndarray[Any, np.dtype[np.float64]]

_UNIT_NAMES = {"pixel": "", "millimeter": "mm", "micrometer": "um", "second": "s"}
"""pint's names of the units the reader renames, back in the short form files use (``mm``)."""


def _square(value: Any, m: int, name: str) -> np.ndarray[Any, Any]:
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.shape != (m, m):
        raise InvalidArgumentError(f"layer {name} must be {m}x{m}, got shape {matrix.shape}")
    return matrix


def _shear(value: Any, m: int) -> np.ndarray[Any, Any]:
    """napari gives shear either as a matrix or as the upper-triangular values, row by row."""
    values = np.asarray(value, dtype=np.float64)
    if values.ndim == 2:
        return _square(values, m, "shear")
    out = np.eye(m)
    rows, cols = np.triu_indices(m, k=1)
    if values.size != rows.size:
        raise InvalidArgumentError(f"layer shear must have {rows.size} values for {m} axes, got {values.size}")
    out[rows, cols] = values
    return out


def world_affine(attributes: dict[str, Any], m: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The ``(m+1) x (m+1)`` data-to-world matrix of a layer from its napari attributes."""
    scale = np.asarray(attributes.get("scale", np.ones(m)), dtype=np.float64)
    translate = np.asarray(attributes.get("translate", np.zeros(m)), dtype=np.float64)
    rotate = _square(attributes.get("rotate", np.eye(m)), m, "rotate")
    shear = _shear(attributes.get("shear", np.zeros(m * (m - 1) // 2)), m)
    if scale.shape != (m,) or translate.shape != (m,):
        raise InvalidArgumentError(f"layer scale and translate must have {m} entries")
    inner = np.eye(m + 1)
    inner[:m, :m] = rotate @ shear @ np.diag(scale)
    inner[:m, m] = translate
    outer_value = attributes.get("affine")
    outer = np.eye(m + 1) if outer_value is None else np.asarray(getattr(outer_value, "affine_matrix", outer_value))
    if outer.shape != (m + 1, m + 1):
        raise InvalidArgumentError(f"layer affine must be {m + 1}x{m + 1}, got shape {outer.shape}")
    out: np.ndarray[Any, np.dtype[np.float64]] = outer.astype(np.float64) @ inner
    return out


def _header_units(attributes: dict[str, Any], m: int) -> list[str] | None:
    """The axis units of the file a layer was read from, for the layer's ``m`` axes (its channel axis left out)."""
    metadata = attributes.get("metadata") or {}
    header = metadata.get("header") if isinstance(metadata, dict) else None
    spatial = header.get("spatial") if isinstance(header, dict) else None
    if not isinstance(spatial, dict) or not isinstance(spatial.get("axis_units"), list):
        return None
    units = [str(u) for u in spatial["axis_units"]]
    labels = spatial.get("axis_labels")
    if len(units) == m + 1 and isinstance(labels, list) and "channel" in labels and len(labels) == m + 1:
        units.pop(labels.index("channel"))
    return units if len(units) == m else None


def _units(attributes: dict[str, Any], m: int) -> list[str] | None:
    """The layer's units as the header's ``axis_units``: the file's own spelling where napari's names match it."""
    units = attributes.get("units")
    if units is None:
        return None
    names = [str(u) for u in units]
    if len(names) != m or all(name == "pixel" for name in names):
        return None
    original = _header_units(attributes, m)
    if original is not None and [_UNIT_ALIASES.get(u, u) for u in original] == names:
        return original  # as the reader found them ("mm", not pint's "millimeter")
    return [_UNIT_NAMES.get(name, name) for name in names]


def file_labels(layer_labels: Any, m: int) -> list[str] | None:
    """mlarray axis labels of a layer's ``axis_labels``, or ``None`` when none of them is spatial.

    The reader makes repeated labels distinct (``spatial`` x3 becomes ``spatial_0``,
    ``spatial_1``, ``spatial_2``); that suffix is taken off again. A layer made in napari
    (labels ``-3``, ``-2``, ``-1``) has no spatial label: every axis is then spatial.
    """
    if layer_labels is None:
        return None
    labels = [str(label) for label in layer_labels]
    if len(labels) != m:
        return None
    out = []
    for label in labels:
        match = re.fullmatch(r"(.+)_\d+", label)
        out.append(match.group(1) if label not in AXIS_VOCABULARY and match and match[1] in AXIS_VOCABULARY else label)
    return out if any(is_spatial_label(label) for label in out) else None


def _spatial_part(world: Matrix, labels: list[str] | None) -> tuple[Matrix, list[str] | None]:
    """The matrix over the spatial axes of ``labels`` and the labels to save with it.

    Non-spatial axes have no geometry in ``.mla``: their own scale or translation is
    dropped. A layer whose placement mixes them with spatial axes (a rotation across
    time and space) is saved as napari shows it instead: every axis spatial, no labels.
    """
    m = world.shape[0] - 1
    if labels is None:
        return world, None
    spatial = [i for i, label in enumerate(labels) if is_spatial_label(label)]
    others = [i for i in range(m) if i not in spatial]
    if np.any(world[np.ix_(spatial, others)]) or np.any(world[np.ix_(others, spatial)]):
        return world, None
    keep = [*spatial, m]
    out: Matrix = world[np.ix_(keep, keep)]
    return out, labels


def _write(path: str, data: Any, attributes: dict[str, Any], is_seg: bool) -> list[str]:
    if attributes.get("multiscale") or isinstance(data, (list, tuple)):
        data = data[0]  # the full-resolution level (napari passes a MultiScaleData, whose array is the smallest)
    array = np.asarray(data)
    if is_seg and array.dtype.kind not in "iub":
        raise InvalidArgumentError(f"a labels layer must hold integers, got {array.dtype}")
    rgb = bool(attributes.get("rgb")) and not is_seg and array.ndim >= 2 and array.shape[-1] in (3, 4)
    m = array.ndim - 1 if rgb else array.ndim  # an RGB(A) layer's last axis is its colour: no geometry
    metadata = attributes.get("metadata") or {}
    source = metadata.get("source") if isinstance(metadata.get("source"), dict) else {}
    frame = metadata.get("coord_system") if isinstance(metadata.get("coord_system"), str) else None
    given = file_labels(attributes.get("axis_labels"), m)
    world, labels = _spatial_part(world_affine(attributes, m), given)
    if given is not None and labels is None:  # saved with every axis spatial: the frame's axes are lost
        frame = None
    units = _units(attributes, m)
    if rgb:
        labels = [*(labels or ["spatial"] * m), "components"]
        units = None if units is None else [*units, ""]
    image = MLArray(array, affine=from_ras(world, frame), axis_labels=labels, meta=source)
    image.meta.is_seg = is_seg
    image.meta.spatial.coord_system = frame
    if units is not None:
        image.meta.spatial.axis_units = units
    image.save(path)
    return [os.fspath(path)]


def write_image(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Image layers: save ``data`` at ``path`` (``.mla``) atomically."""
    return _write(path, data, attributes, is_seg=False)


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels layers: like :func:`write_image`, marked ``is_seg``."""
    return _write(path, data, attributes, is_seg=True)
