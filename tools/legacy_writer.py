"""Writer run INSIDE a throw-away virtualenv that has one published ``mlarray`` 0.0.x installed.

``tools/legacy_fixtures.py`` copies this file into the virtualenv and runs it there; it is never
imported by the project (its ``import mlarray`` is the earlier implementation, whose import name
collides with ours). It writes a small set of ``.mla`` files with that version's public API, covering
every header feature the version has (detected by looking at its classes and signatures), reopens
each file with the same API, and prints one JSON report on stdout: for every file what was written,
the raw header bytes, the header decoded to JSON, and what the version's API reported on reopening.

Usage: ``python legacy_writer.py OUT_DIR``. Only numpy, blosc2 and mlarray 0.0.x are imported.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import gzip
import hashlib
import inspect
import json
import pickle
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import blosc2
import msgpack
import numpy as np
from mlarray.mlarray import MLArray

from mlarray import meta as legacy_meta

SHAPE = (6, 10, 12)


# --------------------------------------------------------------------------- feature detection


def _fields(cls_name: str) -> list[str]:
    cls = getattr(legacy_meta, cls_name, None)
    if cls is None or not dataclasses.is_dataclass(cls):
        return []
    return [f.name for f in dataclasses.fields(cls)]


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


META_FIELDS = _fields("Meta")
SPATIAL_FIELDS = _fields("MetaSpatial")
BBOX_FIELDS = _fields("MetaBbox")
STATS_FIELDS = _fields("MetaStatistics")
INIT_PARAMS = _params(MLArray.__init__)
SAVE_PARAMS = _params(MLArray.save)

SOURCE_KEY = next(k for k in ("image", "original", "source") if k in META_FIELDS)
BLOSC2_KEY = "blosc2" if "blosc2" in META_FIELDS else "_blosc2"
OLD_META = not hasattr(legacy_meta.Meta, "from_mapping")  # 0.0.23..0.0.27: plain dataclass fields
HAS_CHANNEL_AXIS = "channel_axis" in SPATIAL_FIELDS
HAS_AXIS_LABELS = "axis_labels" in SPATIAL_FIELDS
HAS_AXIS_UNITS = "axis_units" in SPATIAL_FIELDS
HAS_COORD_SYSTEM = "coord_system" in SPATIAL_FIELDS
HAS_AFFINE = "affine" in SPATIAL_FIELDS
RICH_BBOX = "scores" in BBOX_FIELDS
PERCENTILE_KEYS = "percentile_min_key" in STATS_FIELDS
LAYOUT_IN_INIT = "patch_size" in INIT_PARAMS  # 0.0.46+: layout given to the constructor, save(path) only


def features() -> dict[str, Any]:
    """What this version's API offers, as detected."""
    return {
        "source_key": SOURCE_KEY,
        "blosc2_key": BLOSC2_KEY,
        "old_meta": OLD_META,
        "channel_axis": HAS_CHANNEL_AXIS,
        "axis_labels": HAS_AXIS_LABELS,
        "axis_units": HAS_AXIS_UNITS,
        "coord_system": HAS_COORD_SYSTEM,
        "affine": HAS_AFFINE,
        "rich_bbox": RICH_BBOX,
        "percentile_keys": PERCENTILE_KEYS,
        "layout_in_init": LAYOUT_IN_INIT,
    }


# --------------------------------------------------------------------------- deterministic content


def _stats(array: np.ndarray) -> dict[str, float]:
    data = array.astype(np.float64)
    lo, hi = np.percentile(data, [0.5, 99.5])
    inside = data[(data >= lo) & (data <= hi)]
    out = {
        "min": float(data.min()),
        "max": float(data.max()),
        "mean": float(data.mean()),
        "median": float(np.median(data)),
        "std": float(data.std()),
        "percentile_min": float(lo),
        "percentile_max": float(hi),
        "percentile_mean": float(inside.mean()),
        "percentile_median": float(np.median(inside)),
        "percentile_std": float(inside.std()),
    }
    if PERCENTILE_KEYS:
        out["percentile_min_key"] = 0.005
        out["percentile_max_key"] = 0.995
    return out


def _bbox(boxes: list[list[list[int]]], scores: list[float], labels: list[Any]) -> Any:
    if OLD_META:
        return boxes
    if RICH_BBOX:
        return {"bboxes": boxes, "scores": scores, "labels": labels}
    return {"bboxes": boxes}


def _axes(labels: list[str], units: list[str]) -> dict[str, Any]:
    """Constructor keyword for the axis roles plus meta.spatial entries, where the version has them."""
    out: dict[str, Any] = {"init": {}, "spatial": {}}
    if HAS_AXIS_LABELS:
        out["init"]["axis_labels"] = labels
        if HAS_AXIS_UNITS:
            out["spatial"]["axis_units"] = units
    elif HAS_CHANNEL_AXIS and "channel" in labels:
        out["init"]["channel_axis"] = labels.index("channel")
    return out


def cases() -> list[dict[str, Any]]:
    """The files this version writes: name, array (or None), constructor keywords, meta sections, layout."""
    rng = np.random.default_rng(20260123)
    out: list[dict[str, Any]] = []

    ct = rng.integers(-1024, 2000, size=SHAPE, dtype=np.int16)
    ct_meta: dict[str, Any] = {
        SOURCE_KEY: {"modality": "CT", "patient": {"age": 42, "sex": "F"}, "tags": ["a", "b"], "ok": True},
        "extra": {"study": "legacy-fixtures", "rev": 3, "weights": [0.5, 1.5]},
        "stats": _stats(ct),
    }
    ct_spatial: dict[str, Any] = {}
    if HAS_COORD_SYSTEM:
        ct_spatial["coord_system"] = "LPS"
    out.append(
        {
            "name": "ct_int16",
            "array": ct,
            "init": {
                "spacing": [2.5, 0.8, 0.75],
                "origin": [-10.0, 20.5, 30.25],
                "direction": [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
            },
            "meta": ct_meta,
            "spatial": ct_spatial,
            "layout": {"patch_size": [4, 8, 8]},
            "features": ["spacing", "origin", "direction", "source", "extra", "stats", "patch_size"]
            + (["coord_system"] if HAS_COORD_SYSTEM else []),
        }
    )

    seg = rng.integers(0, 4, size=SHAPE, dtype=np.uint8)
    boxes = [[[0, 3], [1, 6], [2, 9]], [[2, 5], [0, 10], [4, 12]]]
    out.append(
        {
            "name": "seg_uint8",
            "array": seg,
            "init": {"spacing": [1.0, 1.0, 1.0]},
            "meta": {"is_seg": True, "bbox": _bbox(boxes, [0.9, 0.75], ["liver", 2])},
            "spatial": {},
            "layout": {"patch_size": None, "chunk_size": [3, 10, 6], "block_size": [3, 5, 3]},
            "features": ["spacing", "is_seg", "bbox"]
            + (["bbox_scores", "bbox_labels"] if RICH_BBOX else [])
            + ["chunk_size", "block_size"],
        }
    )

    mask = rng.random(SHAPE) > 0.7
    out.append(
        {
            "name": "mask_bool",
            "array": mask,
            "init": {},
            "meta": {"is_seg": False},
            "spatial": {},
            "layout": {},
            "features": ["is_seg", "default_layout"],
        }
    )

    labels2d = rng.integers(-5, 100000, size=(10, 12), dtype=np.int32)
    out.append(
        {
            "name": "labels_int32_2d",
            "array": labels2d,
            "init": {"spacing": [0.5, 0.25], "origin": [1.0, -2.0]},
            "meta": {"extra": {"kind": "2d"}},
            "spatial": {},
            "layout": {"patch_size": [8, 8]},
            "features": ["spacing", "origin", "extra", "patch_size", "2d"],
        }
    )

    counts = rng.integers(-(2**40), 2**40, size=SHAPE, dtype=np.int64)
    out.append(
        {
            "name": "counts_int64",
            "array": counts,
            "init": {},
            "meta": {"stats": _stats(counts)},
            "spatial": {},
            "layout": {"patch_size": None},
            "features": ["stats", "no_patch_size"],
        }
    )

    probs = np.round(rng.random((2, *SHAPE)), 3).astype(np.float32)
    axes = _axes(["channel", "spatial_z", "spatial_y", "spatial_x"], ["", "mm", "mm", "mm"])
    out.append(
        {
            "name": "channels_float32",
            "array": probs,
            "init": {"spacing": [2.0, 1.0, 1.0], **axes["init"]},
            "meta": {},
            "spatial": axes["spatial"],
            "layout": {},
            "features": ["spacing"]
            + (["channel_axis"] if axes["init"] else [])
            + (["axis_labels"] if HAS_AXIS_LABELS else [])
            + (["axis_units"] if axes["spatial"] else []),
        }
    )

    series = np.round(rng.normal(size=(3, 4, 5, 6)), 2).astype(np.float64)
    if HAS_AXIS_LABELS:
        axes = _axes(["temporal", "spatial_z", "spatial_y", "non_spatial"], ["s", "mm", "mm", "a.u."])
        out.append(
            {
                "name": "nonspatial_float64",
                "array": series,
                "init": {"spacing": [3.0, 1.5], **axes["init"]},
                "meta": {},
                "spatial": axes["spatial"],
                "layout": {"patch_size": None, "chunk_size": [1, 4, 5, 6], "block_size": [1, 2, 5, 6]},
                "features": ["spacing", "axis_labels", "non_spatial_axes", "chunk_size", "block_size"]
                + (["axis_units"] if axes["spatial"] else []),
            }
        )
    else:
        out.append(
            {
                "name": "series_float64",
                "array": series,
                "init": {},
                "meta": {},
                "spatial": {},
                "layout": {"patch_size": None, "chunk_size": [1, 4, 5, 6], "block_size": [1, 2, 5, 6]},
                "features": ["4d", "chunk_size", "block_size"],
            }
        )

    if HAS_AFFINE:
        field = np.round(rng.normal(size=SHAPE), 3).astype(np.float32)
        out.append(
            {
                "name": "affine_float32",
                "array": field,
                "init": {
                    "affine": [
                        [0.0, 0.0, 1.5, 10.0],
                        [0.0, 0.8, 0.1, -5.0],
                        [-0.75, 0.0, 0.0, 2.5],
                        [0.0, 0.0, 0.0, 1.0],
                    ]
                },
                "meta": {"extra": {"sheared": True}},
                "spatial": {},
                "layout": {},
                "features": ["affine", "extra"],
            }
        )

    wave = np.round(rng.normal(size=(4, 5, 6)), 2) + 1j * np.round(rng.normal(size=(4, 5, 6)), 2)
    out.append(
        {
            "name": "complex64",
            "array": wave.astype(np.complex64),
            "init": {"spacing": [1.0, 2.0, 3.0]},
            "meta": {},
            "spatial": {},
            "layout": {},
            "features": ["spacing", "complex"],
        }
    )

    out.append(
        {
            "name": "meta_only",
            "array": None,
            "init": {"spacing": [1.25, 1.25, 3.0], "origin": [0.0, 0.0, -50.0]},
            "meta": {SOURCE_KEY: {"note": "header without voxels"}, "extra": {"n": 1}},
            "spatial": {},
            "layout": {},
            "features": ["metadata_only", "spacing", "origin", "source", "extra"],
        }
    )

    scan = rng.integers(0, 4096, size=SHAPE, dtype=np.uint16)
    out.append(
        {
            "name": "dictmeta_uint16",
            "array": scan,
            "init": {"spacing": [3.0, 0.5, 0.5], "meta": {"patient_id": "p01", "nested": {"a": [1, 2], "b": None}}},
            "meta": {},
            "spatial": {},
            "layout": {},
            "features": ["spacing", "source", "plain_dict_meta"],
        }
    )

    volume = rng.integers(0, 60000, size=SHAPE, dtype=np.uint16)
    out.append(
        {
            "name": "created_mmap_uint16",
            "array": volume,
            "create": {"spacing": [1.5, 0.7, 0.7]},
            "features": ["created_memory_mapped", "spacing", "default_layout"],
        }
    )

    plain = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) / 7
    out.append(
        {
            "name": "defaults_float32",
            "array": plain,
            "init": {},
            "meta": {},
            "spatial": {},
            "layout": {},
            "features": ["default_layout"],
        }
    )
    return out


# --------------------------------------------------------------------------- writing


def _build_meta(case: dict[str, Any]) -> Any:
    sections = dict(case["meta"])
    if case["spatial"]:
        sections["spatial"] = dict(case["spatial"])
    if not sections:
        return None
    return legacy_meta.Meta(**sections)


def write(case: dict[str, Any], path: Path) -> None:
    """Write one file with this version's public API."""
    if "create" in case:
        create_memory_mapped(case, path)
        return
    meta = _build_meta(case)
    init = dict(case["init"])
    if meta is not None:
        init["meta"] = meta
    layout = dict(case["layout"])
    if LAYOUT_IN_INIT:
        image = MLArray(case["array"], **init, **layout)
        image.save(str(path))
    else:
        image = MLArray(case["array"], **init)
        image.save(str(path), **layout)


def create_memory_mapped(case: dict[str, Any], path: Path) -> None:
    """The other write path: create an empty memory-mapped file, fill it in place, set spacing, close.

    0.0.23-0.0.26 ``MLArray().open(path, shape, dtype, mmap="w+")``; 0.0.27-0.0.39 the same as a class
    method; 0.0.40 ``open(..., mode="w", mmap_mode="w+")``; 0.0.41+ ``MLArray.create(path, shape, dtype)``.
    """
    data = case["array"]
    if hasattr(MLArray, "create"):
        image = MLArray.create(str(path), shape=data.shape, dtype=data.dtype)
    else:
        kwargs: dict[str, Any] = {"shape": data.shape, "dtype": data.dtype}
        if "mmap_mode" in _params(MLArray.open):
            kwargs.update(mode="w", mmap_mode="w+")
        else:
            kwargs["mmap"] = "w+"
        is_classmethod = isinstance(inspect.getattr_static(MLArray, "open"), classmethod)
        opener = MLArray.open if is_classmethod else MLArray().open
        image = opener(str(path), **kwargs)
    image[...] = data
    image.meta.spatial.spacing = case["create"]["spacing"]
    image.close()


# --------------------------------------------------------------------------- reading back


def plain(value: Any) -> Any:
    """JSON-able copy: tuples and the library's frozen containers become lists, enums their value."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.dtype):
        return value.str
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"__repr__": repr(value)}


def _unwrap(section: Any) -> Any:
    """A section's value: the wrapped value of the single-key classes of 0.0.28+, else as it is."""
    if section is None:
        return None
    if hasattr(section, "value") and dataclasses.is_dataclass(section):
        return section.value
    return section


def _sub(section: Any, name: str) -> Any:
    return getattr(section, name) if section is not None else None


def api_view(image: Any) -> dict[str, Any]:
    """What this version's API reports about an opened image (only what it has)."""
    meta = image.meta
    out: dict[str, Any] = {}
    shape = image.shape
    out["shape"] = None if shape is None else [int(n) for n in shape]
    dtype = image.dtype
    out["dtype"] = None if dtype is None else np.dtype(dtype).str
    for name in ("spacing", "origin", "direction", "affine"):
        out[name] = plain(getattr(image, name))
    spatial = meta.spatial
    for name in ("axis_labels", "axis_units", "coord_system", "channel_axis"):
        if name in SPATIAL_FIELDS:
            out[name] = plain(getattr(spatial, name))
    out["is_seg"] = plain(_unwrap(meta.is_seg))
    src = _unwrap(getattr(meta, SOURCE_KEY))
    out["source"] = plain(src) if src not in ({}, None) else plain(src)
    out["extra"] = plain(_unwrap(meta.extra))
    stats = meta.stats
    if stats is None:
        out["stats"] = None
    else:
        values = {f: getattr(stats, f) for f in STATS_FIELDS if not f.startswith("_")}
        values = {k: plain(v) for k, v in values.items() if v is not None}
        out["stats"] = values or None
    bbox = meta.bbox
    if bbox is None or _sub(bbox, "bboxes") is None:
        out["bbox"] = None
    else:
        out["bbox"] = {f: plain(getattr(bbox, f)) for f in BBOX_FIELDS if not f.startswith("_")}
    layout = getattr(meta, BLOSC2_KEY)
    for name in ("chunk_size", "block_size", "patch_size"):
        out[name] = plain(_sub(layout, name))
    out["has_array"] = plain(_unwrap(meta._has_array))
    out["image_meta_format"] = plain(_unwrap(meta._image_meta_format))
    out["mlarray_version"] = plain(_unwrap(meta._mlarray_version))
    return out


def _header(path: Path) -> dict[str, Any]:
    """The raw vlmeta bytes and the header they hold, decoded the way the version stored it."""
    nd = blosc2.open(str(path), mode="r")
    raw = bytes(nd.schunk.vlmeta.get_vlmeta("mlarray"))
    value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if isinstance(value, bytes):
        encoding = "gzip-pickle"
        decoded = pickle.loads(gzip.decompress(value))  # our own fresh file, inside the throw-away venv
    else:
        encoding = "msgpack"
        decoded = _strip_tuple_marker(value)
    return {"encoding": encoding, "raw_vlmeta": base64.b64encode(raw).decode("ascii"), "header": plain(decoded)}


def _strip_tuple_marker(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_tuple_marker(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and value[0] == "__tuple__":
            value = value[1:]
        return [_strip_tuple_marker(v) for v in value]
    return value


def array_record(array: np.ndarray | None) -> dict[str, Any] | None:
    if array is None:
        return None
    le = array.astype(array.dtype.newbyteorder("<"), copy=False)
    data = np.ascontiguousarray(le).tobytes(order="C")
    return {"shape": list(array.shape), "dtype": le.dtype.str, "sha256": hashlib.sha256(data).hexdigest()}


def main() -> int:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "mlarray": metadata.version("mlarray"),
        "blosc2": metadata.version("blosc2"),
        "numpy": metadata.version("numpy"),
        "msgpack": metadata.version("msgpack"),
        "python": sys.version.split()[0],
        "detected": features(),
        "files": [],
        "skipped": [],
    }
    for case in cases():
        path = out_dir / f"{case['name']}.mla"
        try:
            write(case, path)
        except Exception as exc:  # a feature this version cannot write: recorded, not fatal
            report["skipped"].append({"name": case["name"], "error": f"{type(exc).__name__}: {exc}"})
            path.unlink(missing_ok=True)
            continue
        image = MLArray(str(path))
        api = api_view(image)
        data = None if case["array"] is None else np.asarray(image.to_numpy())
        written = array_record(case["array"])
        read = array_record(data)
        if written != read:
            raise SystemExit(f"{case['name']}: array read back differs: {written} vs {read}")
        report["files"].append(
            {
                "name": case["name"],
                "features": case["features"],
                "array": written,
                "api": api,
                **_header(path),
            }
        )
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
