"""Map the metadata dict of an earlier-implementation file onto the current header.

Every version of the earlier implementation (0.0.23 to 0.0.54) is understood: the flat
0.0.23 layout (``image`` for the source header, ``_blosc2``, ``channel_axis``) and the
nested later one (``source``/``extra`` wrapped as ``{"data": ...}``, ``is_seg`` as
``{"is_seg": ...}``, ``blosc2``, ``_has_array``). Each recognised value is taken only if
the header stays valid with it; everything else is kept as JSON under
``meta.extra["legacy"]``, so nothing is lost. Pure: no file access.
"""

from __future__ import annotations

import base64
import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlarray.errors import MLArrayError
from mlarray.models import Meta, Stats

SPATIAL_KEYS = ("spacing", "origin", "direction", "affine", "axis_labels", "axis_units", "coord_system", "shape")
SOURCE_KEYS = ("source", "original", "image", "meta", "header")
"""Where versions kept the original header: ``image`` (0.0.23-0.0.27), ``original`` (0.0.28-0.0.33), ``source``."""
DERIVED_SPATIAL = ("shape", "_num_spatial_axes", "_num_non_spatial_axes")
"""Spatial entries the earlier implementation derived from the array; checked against it, not kept."""
WRAPPERS = {
    "source": "data",
    "original": "data",
    "extra": "data",
    "is_seg": "is_seg",
    "_has_array": "has_array",
    "_image_meta_format": "image_meta_format",
    "_mlarray_version": "mlarray_version",
}
"""Single-key wrappers of the nested layout (0.0.28 and later): ``{"is_seg": {"is_seg": True}}``."""


# --------------------------------------------------------------------------- mapping


@dataclass
class LegacyMapping:
    """The result of mapping a legacy metadata dict onto the current header."""

    meta: Meta
    mapped: list[str] = field(default_factory=list)
    """Legacy keys that became header fields."""
    kept: list[str] = field(default_factory=list)
    """Legacy keys stored under ``meta.extra["legacy"]``."""
    dropped: list[str] = field(default_factory=list)
    """Locations of values JSON cannot represent (NaN, Infinity); they are left out."""


_DROP: Any = object()
"""Marks a value :func:`to_json` left out."""


def to_json(value: Any, loc: str, dropped: list[str]) -> Any:
    """``value`` as plain JSON; values JSON cannot hold are left out and their location recorded.

    Tuples and sets become lists, non-string keys strings, UTF-8 bytes strings and
    other bytes ``{"base64": ...}``. The sentinel ``_DROP`` is returned for a value
    that was left out.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        dropped.append(loc)
        return _DROP
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            converted = to_json(item, f"{loc}.{name}", dropped)
            if converted is not _DROP:
                out[name] = converted
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if isinstance(value, (set, frozenset)):
            items = sorted(items, key=repr)
        converted_items = [to_json(v, f"{loc}[{i}]", dropped) for i, v in enumerate(items)]
        return [v for v in converted_items if v is not _DROP]
    dropped.append(loc)  # unreachable for SafeUnpickler output, kept for callers passing other dicts
    return _DROP


def _accepts(candidate: dict[str, Any], shape: tuple[int, ...] | None) -> bool:
    """Whether ``candidate`` is a valid header (for an array of ``shape``, when given)."""
    from mlarray.api import MLArray  # the API applies the shape-dependent rules (default axis labels)

    try:
        meta = Meta.model_validate(candidate)
        if shape is not None:
            # A zero-byte stand-in: the header rules depend on the shape only.
            MLArray(np.broadcast_to(np.zeros((), dtype=np.uint8), shape), meta=meta, patch_size=None)
    except (MLArrayError, ValueError):
        return False
    return True


def _normalise_direction(value: Any) -> Any:
    """A flat ``n*n`` direction (SimpleITK style, row-major) becomes an ``n x n`` matrix."""
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        n = math.isqrt(len(value))
        if n * n == len(value):
            return [list(value[i * n : (i + 1) * n]) for i in range(n)]
    return value


def _bbox_candidates(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [{k: v for k, v in value.items() if v is not None}]
    if isinstance(value, list):
        # Either a list of boxes, or a single box [[min, max], ...].
        return [{"bboxes": value}, {"bboxes": [value]}]
    return []


def _unwrap(key: str, value: Any) -> Any:
    """The value inside a single-key wrapper of the nested layout (see :data:`WRAPPERS`)."""
    inner = WRAPPERS.get(key)
    if inner is not None and isinstance(value, dict) and set(value) == {inner}:
        return value[inner]
    return value


def _labels_from_channel_axis(channel_axis: Any, ndim: int | None) -> list[str] | None:
    """0.0.23-0.0.34 marked one axis with ``spatial.channel_axis``; every other axis is spatial."""
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int) or ndim is None:
        return None
    axis = channel_axis + ndim if channel_axis < 0 else channel_axis
    if not 0 <= axis < ndim:
        return None
    return ["channel" if i == axis else "spatial" for i in range(ndim)]


def normalise(raw: dict[str, Any], shape: tuple[int, ...] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flatten one version's layout into recognised keys; returns ``(recognised, internal)``.

    ``internal`` holds the writer's own bookkeeping worth keeping (layout parameters,
    image format, version string); derived values (shape, axis counts, array presence)
    are left out.
    """
    data = {k: _unwrap(k, v) for k, v in raw.items()}
    internal: dict[str, Any] = {}
    for key in ("blosc2", "_blosc2"):
        if isinstance(data.get(key), dict):
            layout = {k: v for k, v in data.pop(key).items() if v is not None}
            if layout:
                internal["blosc2"] = layout
    for key, name in (("_image_meta_format", "image_meta_format"), ("_mlarray_version", "mlarray_version")):
        if key in data:
            value = data.pop(key)
            if value is not None:
                internal[name] = value
    data.pop("_has_array", None)
    spatial = data.get("spatial")
    if isinstance(spatial, dict):
        spatial = dict(spatial)
        ndim = len(shape) if shape is not None else None
        channel_axis = spatial.pop("channel_axis", None)
        if spatial.get("axis_labels") is None:
            labels = _labels_from_channel_axis(channel_axis, ndim)
            if labels is not None:
                spatial["axis_labels"] = labels
        elif channel_axis is not None:
            internal["channel_axis"] = channel_axis
        for key in DERIVED_SPATIAL:
            spatial.pop(key, None)
        data["spatial"] = {k: v for k, v in spatial.items() if v is not None}
    for key in ("stats", "bbox"):
        if key in data and data[key] is None:
            del data[key]
        if isinstance(data.get(key), dict):
            data[key] = {k: v for k, v in data[key].items() if v is not None}
            if not data[key]:
                del data[key]
    for key in ("is_seg", *SOURCE_KEYS, "extra"):
        if key in data and data[key] is None:
            del data[key]
    return data, internal


def map_legacy(raw: dict[Any, Any], shape: tuple[int, ...] | None = None) -> LegacyMapping:
    """Map a legacy metadata dict onto a :class:`Meta` for an array of ``shape``.

    Each recognised key is taken only if the header stays valid with it; otherwise
    it is kept under ``extra["legacy"]`` like every unrecognised key.
    """
    dropped: list[str] = []
    data = {str(k): to_json(v, str(k), dropped) for k, v in raw.items()}
    data = {k: v for k, v in data.items() if v is not _DROP}
    data, internal = normalise(data, shape)
    result = LegacyMapping(meta=Meta())
    candidate: dict[str, Any] = {"spatial": {}, "source": {}, "extra": {}}
    legacy: dict[str, Any] = {}

    def attempt(key: str, update: Any) -> bool:
        trial = copy.deepcopy(candidate)
        update(trial)
        if _accepts(trial, shape):
            candidate.clear()
            candidate.update(trial)
            result.mapped.append(key)
            return True
        return False

    nested_spatial = data.pop("spatial", None)
    spatial_items: list[tuple[str, str, Any]] = []
    if isinstance(nested_spatial, dict):
        spatial_items += [(f"spatial.{k}", k, v) for k, v in nested_spatial.items()]
    elif nested_spatial is not None:
        legacy["spatial"] = nested_spatial
    spatial_items += [(k, k, data.pop(k)) for k in SPATIAL_KEYS if k in data]
    # Labels first: they decide how many axes the geometry must describe.
    spatial_items.sort(key=lambda item: item[1] != "axis_labels")
    for label, name, value in spatial_items:
        if name == "direction":
            value = _normalise_direction(value)
        if name == "shape" and shape is not None and value == list(shape):
            continue  # the array's own shape, derived
        if name not in SPATIAL_KEYS or not attempt(label, lambda t, n=name, v=value: t["spatial"].__setitem__(n, v)):
            legacy[label] = value

    for key in SOURCE_KEYS:
        if key in data and isinstance(data[key], dict) and not candidate["source"]:
            value = data.pop(key)
            if not attempt(key, lambda t, v=value: t.__setitem__("source", v)):
                legacy[key] = value
    if isinstance(data.get("extra"), dict):
        value = data.pop("extra")
        if value and not attempt("extra", lambda t, v=value: t["extra"].update(v)):
            legacy["extra"] = value
    if isinstance(data.get("is_seg"), (bool, int)) and data["is_seg"] in (0, 1):
        value = bool(data.pop("is_seg"))
        if not attempt("is_seg", lambda t, v=value: t.__setitem__("is_seg", v)):
            legacy["is_seg"] = value
    if "stats" in data:
        value = data.pop("stats")
        known = {k: v for k, v in value.items() if k in Stats.model_fields} if isinstance(value, dict) else {}
        if known and attempt("stats", lambda t, v=known: t.__setitem__("stats", v)):
            rest = {k: v for k, v in value.items() if k not in known}
            if rest:
                legacy["stats"] = rest
        else:
            legacy["stats"] = value
    for key in ("bbox", "bboxes"):
        if key in data and "bbox" not in candidate:
            value = data.pop(key)
            if not any(attempt(key, lambda t, c=c: t.__setitem__("bbox", c)) for c in _bbox_candidates(value)):
                legacy[key] = value
    legacy.update(data)
    legacy.update(internal)
    if legacy:
        candidate["extra"] = {**candidate["extra"], "legacy": legacy}
    result.kept = sorted(legacy)
    result.dropped = dropped
    result.meta = Meta.model_validate(candidate)
    return result
