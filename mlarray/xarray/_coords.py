"""Dimension names, coordinates and attributes of an ``.mla`` header, for the xarray backend.

This module is NumPy only (no xarray, no file I/O) so that the geometry rules can be
tested on their own. The rules, also stated in ``docs/guide/xarray.md``:

* **Dimension names** come from ``spatial.axis_labels``. A label used by one axis only
  is the name as it is; a label shared by several axes (``spatial`` three times, say)
  gets the array axis number appended (``spatial_0``, ``spatial_1``, ...). Without
  labels the names are ``dim_0``, ``dim_1``, ... (xarray's own default names). A name
  that would still collide falls back to ``dim_<axis>``, and, if that is taken too, to
  ``dim_<axis>_1``, ``dim_<axis>_2``, ...: names are always unique.
* **Aligned volumes** get world coordinates. The volume is *aligned* when the linear
  part ``A`` of the index-to-world affine is a scaled signed permutation: every column
  (spatial axis ``k``) has exactly one entry ``A[j, k]`` that is not negligible, and no
  two columns share their row ``j``. Identity directions, axis permutations (a volume
  stored as ``x, y, z`` while the world is ``z, y, x``) and flips (``-1`` entries, e.g.
  LPS versus RAS) are aligned. Then moving along spatial axis ``k`` moves only world
  axis ``j``, so the world position along ``j`` is a function of index ``i`` alone::

      coordinate_k[i] = A[j, n] + A[j, k] * i      (origin_j + sign * spacing_k * i)

  which is the exact world position of every voxel on that axis (a flip makes the
  coordinate decrease). The coordinate's attributes say which world axis it measures
  (``world_axis``) and its unit. "Negligible" means ``|A[r, k]| <= tolerance * |A[j, k]|``
  (default ``1e-6``: direction cosines written as 32-bit floats are then still aligned;
  the world positions ignore those residues and are off by at most ``tolerance``
  times the distance from voxel 0). ``tolerance=0`` demands an exact permutation.
* **Oblique volumes** (any other affine: a rotation, or shear) have no per-axis world
  coordinate. Their spatial axes get integer index coordinates and the full affine
  stays in the attributes, with ``world_coordinates = False``.
* Non-spatial axes (channel, time, ...) get no coordinate.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlarray.models import Meta

DEFAULT_TOLERANCE = 1e-6
"""Relative size below which an off-axis entry of the affine counts as zero (see the module docstring)."""


def dimension_names(labels: list[str] | None, ndim: int) -> list[str]:
    """The dimension name of each array axis (rules in the module docstring)."""
    if labels is None:
        return [f"dim_{k}" for k in range(ndim)]
    counts = Counter(labels)
    names = [label if counts[label] == 1 else f"{label}_{k}" for k, label in enumerate(labels)]
    seen = Counter(names)
    names = [name if seen[name] == 1 else f"dim_{k}" for k, name in enumerate(names)]
    used: set[str] = set()
    for k, name in enumerate(names):  # a fallback name may still be some other axis's name
        candidates = itertools.chain((name, f"dim_{k}"), (f"dim_{k}_{j}" for j in itertools.count(1)))
        names[k] = next(c for c in candidates if c not in used and (c == name or c not in names))
        used.add(names[k])
    return names


def aligned_axes(affine: np.ndarray[Any, Any], tolerance: float = DEFAULT_TOLERANCE) -> list[int] | None:
    """For an aligned affine, the world axis each spatial axis moves along; ``None`` when oblique."""
    n = affine.shape[0] - 1
    linear = np.abs(np.asarray(affine, dtype=np.float64)[:n, :n])
    rows: list[int] = []
    for k in range(n):
        column = linear[:, k]
        j = int(np.argmax(column))
        others = np.delete(column, j)
        if column[j] == 0 or np.any(others > tolerance * column[j]):
            return None
        rows.append(j)
    return rows if len(set(rows)) == n else None


@dataclass
class Geometry:
    """What the backend attaches to the data variable: dims, coordinates and attributes."""

    dims: list[str]
    coords: dict[str, tuple[str, np.ndarray[Any, Any], dict[str, Any]]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


def _json_safe(value: Any) -> Any:
    """``value`` unchanged if ``json.dumps`` takes it (header dumps always are): a guard, not a conversion."""
    json.dumps(value, allow_nan=False)
    return value


def geometry(meta: Meta, affine: np.ndarray[Any, Any], tolerance: float = DEFAULT_TOLERANCE) -> Geometry:
    """Dimension names, coordinates and attributes of an array with header ``meta``.

    Parameters
    ----------
    meta : Meta
        The header (it must describe an array).
    affine : ndarray
        The ``(n+1) x (n+1)`` index-to-world matrix of the ``n`` spatial axes
        (``MLArray.affine``).
    tolerance : float
        Relative size of an off-axis affine entry still taken for zero.
    """
    if meta.array is None:
        raise ValueError("a metadata-only header has no array to describe")
    shape = list(meta.array.shape)
    spatial = meta.spatial
    dims = dimension_names(spatial.axis_labels, len(shape))
    axes = meta.spatial_axes() or []
    units = spatial.axis_units
    world = aligned_axes(affine, tolerance) if axes else None
    n = len(axes)
    out = Geometry(dims=dims)
    for k, axis in enumerate(axes):
        name = dims[axis]
        attrs: dict[str, Any] = {}
        if units is not None and units[axis]:
            attrs["units"] = units[axis]
        index = np.arange(shape[axis], dtype=np.int64)
        if world is None:
            attrs["long_name"] = f"voxel index along array axis {axis}"
            out.coords[name] = (name, index, attrs)
            continue
        j = world[k]
        step, start = float(affine[j, k]), float(affine[j, n])
        attrs["world_axis"] = j
        if spatial.coord_system in ("RAS", "LPS") and n == 3:
            attrs["long_name"] = f"world position along {spatial.coord_system[j]} (world axis {j})"
        else:
            attrs["long_name"] = f"world position along world axis {j}"
        out.coords[name] = (name, start + step * index.astype(np.float64), attrs)
    out.attrs = header_attrs(meta, affine, world_coordinates=world is not None and bool(axes))
    return out


def header_attrs(meta: Meta, affine: np.ndarray[Any, Any], *, world_coordinates: bool) -> dict[str, Any]:
    """The header members kept as DataArray attributes (JSON-safe values; absent members left out)."""
    dumped = meta.model_dump(mode="json")
    spatial = dumped["spatial"]
    attrs: dict[str, Any] = {"schema_version": dumped["schema_version"]}
    for key in ("spacing", "origin", "direction", "axis_labels", "axis_units", "coord_system"):
        if spatial.get(key) is not None:
            attrs[key] = spatial[key]
    if affine.shape[0] > 1:
        attrs["affine"] = np.asarray(affine, dtype=np.float64).tolist()
    attrs["world_coordinates"] = world_coordinates
    for key in ("is_seg", "stats", "bbox", "scaling", "source", "extra"):
        value = dumped.get(key)
        if value is not None and value != {}:
            attrs[key] = value
    return {key: _json_safe(value) for key, value in attrs.items()}
