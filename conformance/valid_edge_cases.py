"""Valid cases added since issue 12: the data section's forms, zero-length arrays, nesting and
spelling limits, and the boundary values of the coverage audit's invalid cases (``valid_cases.py``
lists them after its own; see there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import blosc2
import numpy as np
from casekit import (
    ValidCase,
    channel_first_4d,
    json_header,
    raw_case,
    raw_frame,
    rng,
    save,
    text_header,
)

Array = np.ndarray[Any, Any]

EDGE: list[ValidCase] = []


# --- the data section (spec 4.4) and zero-length arrays (4.4.8), added with issue 12


def _value_runs(path: Path) -> Array | None:
    """MLArray.create with a fill value: C-Blosc2 stores the untouched chunks as value runs."""
    from mlarray import MLArray

    data = np.full((9, 10), -7, dtype=np.int32)
    data[0:4, 0:8] = rng(40).integers(-50, 50, size=(4, 8), dtype=np.int32)
    with MLArray.create(path, data.shape, np.int32, fill_value=-7, chunk_size=(4, 8), block_size=(2, 4)) as image:
        image[0:4, 0:8] = np.ascontiguousarray(data[0:4, 0:8])
    return data


def _reverse_order(path: Path) -> Array | None:
    """Chunks written last-first: the chunks area holds them in reverse chunk order."""
    from mlarray import MLArray

    data = rng(41).integers(0, 60000, size=(12, 10), dtype=np.uint16)
    with MLArray.create(path, data.shape, np.uint16, chunk_size=(4, 5), block_size=(2, 5)) as image:
        for i in reversed(range(0, 12, 4)):
            for j in reversed(range(0, 10, 5)):
                image[i : i + 4, j : j + 5] = np.ascontiguousarray(data[i : i + 4, j : j + 5])
    return data


def _nan_entries(path: Path) -> Array | None:
    """A float32 array whose chunks are all NaN special entries (0x82), no stored chunk."""
    import struct

    import datakit

    nd = blosc2.zeros((10, 6), dtype=np.float32, chunks=(4, 6), blocks=(2, 3), urlpath=str(path), mode="w")
    header = {"schema_version": "1.0", "array": {"shape": [10, 6], "dtype": "<f4"}}
    nd.schunk.vlmeta.set_vlmeta("mlarray", json_header(header), typesize=1)
    del nd
    datakit.set_value_run_entry(path, struct.unpack("<q", bytes(7) + b"\x82")[0])
    return np.frombuffer(b"\x00\x00\xc0\x7f" * 60, dtype="<f4").reshape(10, 6)


def _zero_length(shape: tuple[int, ...], *, chunks: tuple[int, ...] | None = None) -> Any:
    def build(path: Path) -> Array | None:
        data = np.zeros(shape, dtype=np.int16)
        if chunks is None:
            return save(path, data)
        header = {"schema_version": "1.0", "array": {"shape": list(shape), "dtype": "<i2"}}
        raw_frame(path, data, json_header(header), chunks=chunks, blocks=chunks)
        return data

    return build


EDGE += [
    ValidCase(
        "data-value-run-chunks",
        "4.4.3",
        "Untouched chunks of a filled array are value-run special chunks (kind 3) beside regular ones.",
        _value_runs,
    ),
    ValidCase(
        "data-chunks-reverse-order",
        "4.4.2",
        "The chunks area holds the chunks in reverse order; index entries say where each one is.",
        _reverse_order,
    ),
    ValidCase(
        "data-special-nan-f4",
        "4.4.2",
        "Every chunk is the NaN special entry 0x82 of a float32 array (element bytes 00 00 c0 7f).",
        _nan_entries,
    ),
    ValidCase(
        "data-zero-length-1d",
        "4.4.8",
        "A 1-D array of shape [0]: no chunks, an empty data section, empty array bytes.",
        _zero_length((0,)),
    ),
    ValidCase(
        "data-zero-length-middle-axis",
        "4.4.8",
        "A 3-D array of shape [3, 0, 2]: no chunks, an empty data section, empty array bytes.",
        _zero_length((3, 0, 2)),
    ),
    ValidCase(
        "data-zero-length-chunkshape-0",
        "4.4.8",
        "A 1-D int16 array of shape [0] whose b2nd chunk and block shapes are [0].",
        _zero_length((0,), chunks=(0,)),
    ),
]


def _trailer_nesting_8(path: Path) -> Array | None:
    """A metadata-only file whose trailer version element nests arrays down to level 8, the limit."""
    import datakit

    raw_frame(path, np.zeros((0,), dtype=np.uint8), text_header('{"schema_version":"1.0"}'))
    content = datakit.vlmeta_content(path)
    section = datakit.layer_section(b"\xcd\x00\x00", [(datakit.fixstr("mlarray"), b"\xd2\x00\x00\x00\x00")], [content])
    datakit.replace_trailer(path, b"\x91" * 6 + b"\x90", section)
    return None


EDGE += [
    ValidCase(
        "trailer-nesting-8",
        "4.5",
        "Metadata-only; the trailer's version element nests arrays to level 8, the limit (C-Blosc2 may refuse it).",
        _trailer_nesting_8,
        requirement="may",
    ),
]


def _b2nd_u1_little(path: Path) -> Array | None:
    """A uint8 array whose b2nd dtype is <u1 while the header says |u1 (1-byte order is not significant)."""
    from casekit import resize_b2nd

    data = rng(42).integers(0, 255, size=(5, 9), dtype=np.uint8)
    header = {"schema_version": "1.0", "array": {"shape": [5, 9], "dtype": "|u1"}}
    raw_frame(path, data, json_header(header), chunks=(4, 4), blocks=(2, 2))
    resize_b2nd(path, lambda v: v.__setitem__(6, b"<u1"))
    return data


_TINY_AFFINE = {
    "schema_version": "1.0",
    "array": {"shape": [5, 9], "dtype": "<i2"},
    "spatial": {"affine": [[1e-170, 0.0, 0.0], [0.0, 1e-170, 0.0], [0.0, 0.0, 1.0]]},
}
_BBOX_NO_LABELS = {
    "schema_version": "1.0",
    "array": {"shape": [5, 9], "dtype": "<i2"},
    "bbox": {"bboxes": [[[0, 2], [1, 8]]]},
}
_BBOX_METADATA_ONLY = '{"schema_version":"1.0","bbox":{"bboxes":[[[0,1],[2,3],[4,5],[6,7]]]}}'


def _metadata_only_text(text: str) -> Any:
    def build(path: Path) -> Array | None:
        raw_frame(path, np.zeros((0,), dtype=np.uint8), text_header(text))
        return None

    return build


EDGE += [
    ValidCase(
        "affine-tiny-scale",
        "6.5",
        "An affine scaling by 1e-170: its determinant underflows to 0 in binary64, yet it is not singular.",
        raw_case(_TINY_AFFINE, seed=43),
    ),
    ValidCase(
        "bbox-no-labels-all-axes-spatial",
        "6.2",
        "A 2-D array without axis_labels or geometry: both axes are spatial, boxes have 2 axes.",
        raw_case(_BBOX_NO_LABELS, seed=44),
    ),
    ValidCase(
        "bbox-metadata-only-any-axes",
        "6.2",
        "Metadata-only, no labels, no geometry: the number of spatial axes is unknown, 4-axis boxes are fine.",
        _metadata_only_text(_BBOX_METADATA_ONLY),
    ),
    ValidCase(
        "b2nd-dtype-u1-byte-order",
        "5.9",
        "The b2nd dtype <u1 for the header's |u1: a 1-byte type's byte-order character is not significant.",
        _b2nd_u1_little,
    ),
]

_AFFINE_ZERO_SPATIAL = {
    "schema_version": "1.1",
    "array": {"shape": [5, 9], "dtype": "<i2"},
    "spatial": {"axis_labels": ["channel", "time"], "affine": [[1]]},
}

EDGE += [
    ValidCase(
        "affine-zero-spatial-axes",
        "6.5",
        "No spatial axes and the affine [[1]]: (0+1) x (0+1), last row [1], the empty block is non-singular.",
        raw_case(_AFFINE_ZERO_SPATIAL, seed=45),
    ),
]


def _huge_labels(path: Path) -> Array | None:
    """class_locations of two labels that differ only beyond 2**53 (the reference writer writes them exactly)."""
    from mlarray import MLArray
    from mlarray.stats import annotate

    labels = np.zeros((4, 5, 6), dtype=np.int64)
    labels[1:3, 1:4, 2:5] = 2**53
    labels[3, 4, 5] = 2**53 + 1
    image = MLArray(labels, spacing=[1.0, 1.0, 1.0], chunk_size=labels.shape, block_size=labels.shape)
    annotate(image, with_class_locations=True, seg=True, max_per_class=10)
    image.save(path)
    return labels


# --- counterparts of the coverage-audit invalid cases: the boundary values are valid

_STD_ZERO = {
    "schema_version": "1.0",
    "array": {"shape": [5, 9], "dtype": "<i2"},
    "stats": {"min": 3.0, "max": 3.0, "mean": 3.0, "std": 0.0, "percentile_std": 0},
}
_MINOR_10 = {
    "schema_version": "1.10",
    "array": {"shape": [5, 9], "dtype": "<i2"},
    "future_member": {"since": "1.10"},
}


EDGE += [
    ValidCase(
        "stats-std-zero",
        "5.7",
        "stats.std and percentile_std are 0 (the bound of >= 0 is inclusive).",
        raw_case(_STD_ZERO, seed=47),
    ),
    ValidCase(
        "version-minor-10",
        "2.2",
        "schema_version '1.10' is minor 10, newer than 1.1 (not the number 1.1): its unknown member is ignored.",
        raw_case(_MINOR_10, seed=48),
    ),
    ValidCase(
        "axis-units-channel-axis",
        "5.9",
        "A 4-D array with a channel axis and 4 axis_units (one per array axis, the channel's empty).",
        channel_first_4d(["", "mm", "mm", "mm"]),
    ),
    ValidCase(
        "class-locations-labels-beyond-2-53",
        "5.1",
        "An int64 label map with the labels 2**53 and 2**53 + 1: two labels, compared as exact integers.",
        _huge_labels,
    ),
]
