"""The valid cases of the conformance suite: files every reader must read.

Each case writes a tiny file (a few KB) and returns the array it holds; ``generate.py``
derives the expected result (header, shape, dtype, hashes, probes) from it. Ids are
permanent: a released case is never changed, a new idea gets a new id. The cases added
since issue 12 (the data section, zero-length arrays, nesting and spelling limits, boundary
values) are in ``valid_edge_cases.py``; ``VALID`` holds them after these, in manifest order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import blosc2
import numpy as np
from casekit import (
    ValidCase,
    frame_sizes,
    patch,
    raw_case,
    raw_frame,
    rng,
    save,
    text_header,
    valid_base,
)
from datakit import compressed_chunk
from valid_edge_cases import EDGE

Array = np.ndarray[Any, Any]


def _ints(seed: int, dtype: Any, shape: tuple[int, ...]) -> Array:
    info = np.iinfo(dtype)
    out = rng(seed).integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    flat = out.reshape(-1)
    flat[:2] = [info.min, info.max]  # the extremes always appear
    return out


def _dtype_case(seed: int, dtype: str, shape: tuple[int, ...], chunks: tuple[int, ...], blocks: tuple[int, ...]) -> Any:
    def build(path: Path) -> Array | None:
        dt = np.dtype(dtype)
        if dt.kind == "b":
            data = rng(seed).random(shape) < 0.4
        elif dt.kind in "iu":
            data = _ints(seed, dt, shape)
        elif dt.kind == "f":
            data = (rng(seed).standard_normal(shape) * 1000).astype(dt)
            flat = data.reshape(-1)
            flat[:5] = [0.0, -0.0, np.inf, -np.inf, np.nan]  # array data may hold any value
        else:
            part = np.float32 if dt.itemsize == 8 else np.float64
            values = rng(seed).standard_normal((2, *shape)).astype(part)
            data = (values[0] + 1j * values[1]).astype(dt)
        return save(path, data, chunk_size=chunks, block_size=blocks)

    return build


def _layout_case(seed: int, **kwargs: Any) -> Any:
    def build(path: Path) -> Array | None:
        data = rng(seed).integers(0, 4000, size=(20, 33, 17), dtype=np.uint16)
        return save(path, data, spacing=[3.0, 0.7, 0.7], **kwargs)

    return build


def _codec_case(seed: int, codec: Any, filters: list[Any], clevel: int = 5) -> Any:
    def build(path: Path) -> Array | None:
        base = np.cumsum(rng(seed).integers(-3, 4, size=(12, 20, 24)), axis=2)
        data = base.astype(np.int32)
        cparams = {"codec": codec, "clevel": clevel, "filters": filters}
        return save(path, data, chunk_size=(8, 16, 16), block_size=(4, 8, 8), cparams=cparams)

    return build


def _lz4hc_split(path: Path) -> Array | None:
    """mlarray's default codec for wider items: LZ4HC level 5, byte shuffle, one stream per byte (flag 0x10 clear)."""
    built = _codec_case(38, C.LZ4HC, [F.SHUFFLE])(path)
    _, chunk = compressed_chunk(path)
    if chunk[2] & 0x10 or chunk[3] != 4 or chunk[2] >> 5 != 1:
        raise AssertionError("the chunks are not LZ4 streams split by byte")
    return built


def _geometry_2d(path: Path) -> Array | None:
    data = rng(21).integers(0, 255, size=(48, 40), dtype=np.uint8)
    c, s = np.cos(0.3), np.sin(0.3)
    return save(
        path,
        data,
        spacing=[0.5, 0.25],
        origin=[-12.0, 7.5],
        direction=[[c, -s], [s, c]],
        chunk_size=(32, 32),
        block_size=(16, 8),
    )


def _ct_3d(path: Path) -> Array | None:
    data = rng(22).integers(-1024, 3000, size=(10, 24, 24), dtype=np.int16)
    return save(
        path,
        data,
        spacing=[2.5, 0.8, 0.8],
        origin=[-100.0, 50.25, -30.0],
        direction=[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        axis_labels=["spatial_z", "spatial_y", "spatial_x"],
        chunk_size=(4, 16, 16),
        block_size=(2, 8, 8),
        meta={"Modality": "CT", "SeriesDescription": "synthetic"},
    )


def _channels_4d(path: Path) -> Array | None:
    data = rng(23).standard_normal((3, 8, 12, 12)).astype(np.float32)
    return save(
        path,
        data,
        spacing=[1.0, 1.0, 1.2],
        axis_labels=["channel", "spatial", "spatial", "spatial"],
        chunk_size=(3, 4, 8, 8),
        block_size=(3, 2, 4, 4),
    )


def _time_4d(path: Path) -> Array | None:
    data = rng(24).integers(0, 60000, size=(5, 6, 10, 10), dtype=np.uint16)
    return save(
        path,
        data,
        spacing=[2.0, 2.0, 2.0],
        origin=[1.0, 2.0, 3.0],
        axis_labels=["temporal", "spatial_z", "spatial_y", "spatial_x"],
        chunk_size=(2, 4, 8, 8),
        block_size=(1, 2, 4, 8),
    )


def _metadata_only(path: Path) -> Array | None:
    return save(
        path,
        None,
        spacing=[0.8, 0.8, 3.0],
        origin=[10.0, 20.0, 30.0],
        meta={"PatientID": "anon-0042", "Modality": "MR", "EchoTime": 4.5},
    )


def _all_namespaces(path: Path) -> Array | None:
    from mlarray.models import BBoxes, Meta, Stats

    data = rng(25).integers(0, 3, size=(8, 16, 16), dtype=np.uint8)
    meta = Meta(
        stats=Stats(
            min=0.0,
            max=2.0,
            mean=0.98,
            median=1.0,
            std=0.81,
            percentile_min_key=0.5,
            percentile_max_key=99.5,
            percentile_min=0.0,
            percentile_max=2.0,
            percentile_mean=0.98,
            percentile_median=1.0,
            percentile_std=0.8,
        ),
        bbox=BBoxes(
            bboxes=[[[1, 5], [2, 10], [3, 12]], [[0, 7], [0, 15], [4, 4]]], scores=[0.9, 0.5], labels=["lesion", 2]
        ),
        is_seg=True,
        source={"format": "nifti", "descrip": "synthetic label map", "pixdim": [1.0, 1.5, 0.9, 0.9]},
        extra={"case": "all-namespaces", "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}}},
    )
    meta.spatial.spacing = [1.5, 0.9, 0.9]
    meta.spatial.origin = [0.0, -10.0, 5.0]
    meta.spatial.direction = [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]
    meta.spatial.axis_units = ["mm", "mm", "mm"]
    meta.spatial.coord_system = "RAS"
    meta.spatial.shape = [8, 16, 16]
    return save(
        path,
        data,
        meta=meta,
        axis_labels=["spatial_z", "spatial_y", "spatial_x"],
        chunk_size=(4, 8, 16),
        block_size=(2, 8, 8),
    )


def _zero_chunks_first(path: Path) -> Array | None:
    from mlarray import MLArray

    data = np.zeros((16, 16, 16), dtype=np.float32)
    data[12:, 9:, :] = rng(26).standard_normal((4, 7, 16)).astype(np.float32)
    with MLArray.create(path, data.shape, np.float32, chunk_size=(4, 8, 8), block_size=(2, 4, 8)) as image:
        image[12:, 9:, :] = np.ascontiguousarray(data[12:, 9:, :])
    return data


def _affine_sheared(path: Path) -> Array | None:
    data = rng(27).standard_normal((6, 7, 9))
    affine = [[0.0, 0.2, 1.2, -30.0], [0.0, 1.0, 0.0, -25.0], [2.0, 0.0, 0.0, 10.0], [0.0, 0.0, 0.0, 1.0]]
    return save(path, data, affine=affine, chunk_size=(4, 4, 8), block_size=(2, 2, 4))


def _affine_with_parts(path: Path) -> Array | None:
    from mlarray.models import Meta

    data = rng(28).integers(-5, 5, size=(5, 6, 7), dtype=np.int8)
    spacing, origin = [2.0, 1.0, 0.5], [3.0, -4.0, 5.0]
    direction = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction) @ np.diag(spacing)
    affine[:3, 3] = origin
    meta = Meta()
    meta.spatial.spacing, meta.spatial.origin = spacing, origin
    meta.spatial.direction, meta.spatial.affine = direction, affine.tolist()
    return save(path, data, meta=meta, chunk_size=(4, 4, 4), block_size=(2, 2, 4))


_MINIMAL = {"schema_version": "1.0", "array": {"shape": [5, 9], "dtype": "<i2"}}
_NEWER_MINOR = {
    "schema_version": "1.7",
    "future_top_level": {"anything": [1, 2, 3]},
    "array": {"shape": [5, 9], "dtype": "<i2", "future_array_member": True},
    "spatial": {"spacing": [1.0, 2.0], "future_spatial_member": "ignored"},
    "stats": {"min": 0.0, "future_stat": 1.5},
}
_PRETTY = (
    '\n  {\n    "schema_version" : "1.0",\n    "array" : {\n      "dtype" : "<i2",\n'
    '      "shape" : [ 5 , 9 ]\n    },\n    "spatial" : { "spacing" : [ 1.0E0 , 25e-1 ] }\n  }\n\t'
)
_ESCAPES = (
    '{"schema_version":"1.0","array":{"shape":[5,9],"dtype":"<i2"},'
    '"source":{"caf\\u00e9":"\\u00fcber \\ud83d\\ude00","tab":"a\\tb","quote":"\\"q\\"","slash":"a\\/b"}}'
)


def _str32(path: Path) -> Array | None:
    from mlarray.models import Meta

    data = rng(30).integers(0, 100, size=(5, 9), dtype=np.int16)
    extra = {"notes": [f"voxel note {i:05d}" for i in range(4500)]}  # more than 65535 bytes of JSON
    return save(path, data, meta=Meta(extra=extra), chunk_size=(4, 4), block_size=(2, 2))


def _unicode(path: Path) -> Array | None:
    from mlarray.models import Meta

    data = rng(31).integers(0, 2, size=(4, 4, 4), dtype=np.uint8).astype(bool)
    meta = Meta(
        source={"PatientName": "Müller^Zoë", "Institution": "東京大学病院", "Emoji": "🧠", "Empty": ""},
        extra={"Ελληνικά": "κείμενο", "rtl": "עברית"},
    )
    meta.spatial.axis_units = ["µm", "µm", "µm"]
    return save(path, data, meta=meta, chunk_size=(4, 4, 4), block_size=(2, 2, 2))


def _fixstr_metadata_only(path: Path) -> Array | None:
    data = np.zeros((0,), dtype=np.uint8)
    raw_frame(path, data, text_header('{"schema_version":"1.0"}'))
    return None


def _nested_64(path: Path) -> Array | None:
    """The deepest nesting a header may have: an object at level 64 inside ``extra``.

    The header object is level 1, ``extra`` level 2, then 61 arrays (levels 3 to 63), then
    an object at level 64 holding a number (numbers add no level).
    """
    inner = "[" * 61 + '{"leaf":1}' + "]" * 61
    text = '{"schema_version":"1.0","array":{"shape":[5,9],"dtype":"<i2"},"extra":{"deep":' + inner + "}}"
    return raw_case(None, text=text, seed=38)(path)


def _scaled(stored: str) -> Any:
    """A CT-like volume with intensity scaling (schema 1.1): physical values, or the raw ones kept."""

    def build(path: Path) -> Array | None:
        from mlarray.models import Meta, Scaling

        raw = rng(41).integers(0, 4096, size=(6, 10, 12), dtype=np.uint16)
        if stored == "physical":
            scaling = Scaling(slope=1.0, intercept=-1024.0, raw_dtype="<u2", stored="physical")
            data = (raw.astype(np.int32) - 1024).astype(np.int16)
        else:
            scaling = Scaling(slope=0.25, intercept=-1024.5, raw_dtype="<u2", stored="raw")
            data = raw
        meta = Meta(scaling=scaling, source={"format": "synthetic"})
        return save(path, data, meta=meta, spacing=[2.0, 0.8, 0.8], chunk_size=(4, 8, 8), block_size=(2, 4, 4))

    return build


_NEWER_MINOR_SCALING = {
    "schema_version": "1.2",
    "array": {"shape": [5, 9], "dtype": "<i2"},
    "scaling": {"slope": 2.0, "intercept": 0.5, "raw_dtype": "<i2", "stored": "raw", "future_member": [1]},
    "future_top_level": True,
}


def _class_locations(channel: bool) -> Any:
    """A label map with class locations (schema 1.1), optionally with a channel axis of length 1."""

    def build(path: Path) -> Array | None:
        from mlarray import MLArray
        from mlarray.stats import annotate

        labels = np.zeros((9, 14, 11), dtype=np.uint8)
        labels[2:6, 3:10, 4:8] = 1
        labels[rng(43).random(labels.shape) < 0.05] = 3
        labels[8, 13, 10] = 2
        data = labels[None] if channel else labels
        axes = ["channel", "spatial_z", "spatial_y", "spatial_x"] if channel else None
        image = MLArray(data, axis_labels=axes, spacing=[2.0, 0.7, 0.7], chunk_size=data.shape, block_size=data.shape)
        annotate(image, with_class_locations=True, seg=True, max_per_class=40)
        image.save(path)
        return data

    return build


def _fingerprint_ff(path: Path) -> Array | None:
    """A valid file whose trailer fingerprint has type byte 0xff and arbitrary bytes (readers ignore it)."""
    data = valid_base(path, seed=39)
    _, frame_size, _ = frame_sizes(path)
    if path.read_bytes()[frame_size - 18] != 0xD8:
        raise AssertionError("the trailer does not end in a fixext16 fingerprint")
    patch(path, frame_size - 17, b"\xff" + bytes(range(0xF0, 0x100)))
    return data


def _many_dims(seed: int, shape: tuple[int, ...], chunks: tuple[int, ...], blocks: tuple[int, ...], dtype: Any) -> Any:
    def build(path: Path) -> Array | None:
        data = rng(seed).integers(-100, 100, size=shape).astype(dtype)
        return save(path, data, chunk_size=chunks, block_size=blocks)

    return build


C = blosc2.Codec
F = blosc2.Filter

VALID: list[ValidCase] = [
    # --- every element type (section 5.4), over 1 to 6 dimensions
    ValidCase(
        "dtype-bool-2d",
        "5.4",
        "Boolean 2-D array (|b1), stored as one byte 0/1 per element.",
        _dtype_case(1, "|b1", (13, 21), (8, 16), (4, 8)),
    ),
    ValidCase(
        "dtype-int8-1d",
        "5.4",
        "int8 1-D array with the extreme values, several chunks.",
        _dtype_case(2, "|i1", (300,), (128,), (32,)),
    ),
    ValidCase(
        "dtype-uint8-2d",
        "5.4",
        "uint8 2-D array, shape not divisible by the chunks.",
        _dtype_case(3, "|u1", (30, 50), (16, 32), (8, 8)),
    ),
    ValidCase(
        "dtype-int16-3d",
        "5.4",
        "int16 3-D array (little-endian).",
        _dtype_case(4, "<i2", (9, 10, 11), (4, 8, 8), (2, 4, 4)),
    ),
    ValidCase("dtype-uint16-3d", "5.4", "uint16 3-D array.", _dtype_case(5, "<u2", (7, 12, 5), (4, 8, 5), (2, 4, 5))),
    ValidCase(
        "dtype-int32-4d", "5.4", "int32 4-D array.", _dtype_case(6, "<i4", (3, 5, 6, 7), (2, 4, 4, 4), (1, 2, 2, 4))
    ),
    ValidCase("dtype-uint32-2d", "5.4", "uint32 2-D array.", _dtype_case(7, "<u4", (17, 19), (8, 8), (4, 4))),
    ValidCase(
        "dtype-int64-1d",
        "5.4",
        "int64 1-D array including -2^63 and 2^63-1.",
        _dtype_case(8, "<i8", (50,), (16,), (8,)),
    ),
    ValidCase(
        "dtype-uint64-2d", "5.4", "uint64 2-D array including 2^64-1.", _dtype_case(9, "<u8", (6, 11), (4, 8), (2, 4))
    ),
    ValidCase(
        "dtype-float16-2d",
        "5.4",
        "float16 2-D array including 0, -0, +inf, -inf and NaN.",
        _dtype_case(10, "<f2", (10, 14), (8, 8), (4, 4)),
    ),
    ValidCase(
        "dtype-float32-3d",
        "5.4",
        "float32 3-D array including 0, -0, +inf, -inf and NaN.",
        _dtype_case(11, "<f4", (5, 9, 13), (4, 8, 8), (2, 4, 8)),
    ),
    ValidCase(
        "dtype-float64-3d",
        "5.4",
        "float64 3-D array including 0, -0, +inf, -inf and NaN.",
        _dtype_case(12, "<f8", (6, 7, 8), (4, 4, 8), (2, 4, 4)),
    ),
    ValidCase(
        "dtype-complex64-2d",
        "5.4",
        "complex64 2-D array (real then imaginary float32).",
        _dtype_case(13, "<c8", (9, 10), (8, 8), (4, 4)),
    ),
    ValidCase(
        "dtype-complex128-1d",
        "5.4",
        "complex128 1-D array (real then imaginary float64).",
        _dtype_case(14, "<c16", (40,), (16,), (8,)),
    ),
    ValidCase(
        "ndim-5",
        "5.4",
        "5-D int16 array with partial edge chunks.",
        _many_dims(15, (3, 4, 5, 3, 4), (2, 2, 4, 2, 4), (1, 2, 2, 2, 2), np.int16),
    ),
    ValidCase(
        "ndim-6",
        "5.4",
        "6-D int8 array with partial edge chunks.",
        _many_dims(16, (2, 3, 2, 3, 4, 5), (2, 2, 2, 2, 4, 4), (1, 1, 2, 2, 2, 4), np.int8),
    ),
    # --- geometry and axes (section 6)
    ValidCase(
        "geometry-2d-rotated", "6.3", "2-D image with spacing, origin and a rotated direction matrix.", _geometry_2d
    ),
    ValidCase(
        "geometry-3d-ct", "6.3", "3-D CT-like volume: permuted direction, spatial_z/y/x labels, source header.", _ct_3d
    ),
    ValidCase("axes-4d-channel", "6.1", "4-D image with a channel axis and three spatial axes.", _channels_4d),
    ValidCase("axes-4d-time", "6.1", "4-D time series: a temporal axis and three spatial axes.", _time_4d),
    ValidCase("geometry-affine-sheared", "6.4", "Sheared geometry stored as a standalone affine.", _affine_sheared),
    ValidCase(
        "geometry-affine-and-parts",
        "6.4",
        "Affine given together with matching spacing, origin and direction.",
        _affine_with_parts,
    ),
    # --- header contents (section 5)
    ValidCase("metadata-only", "4.8", "Metadata-only file: header without array (b2nd shape [0]).", _metadata_only),
    ValidCase(
        "metadata-only-fixstr",
        "4.7",
        'Smallest header {"schema_version":"1.0"}: a msgpack fixstr, metadata-only.',
        _fixstr_metadata_only,
    ),
    ValidCase(
        "header-all-namespaces",
        "5.2",
        "Every namespace populated: writer, array, layout, integrity, spatial, stats, bbox, is_seg, source, extra.",
        _all_namespaces,
    ),
    ValidCase(
        "header-minimal",
        "5.2",
        "Hand-written minimal header: only schema_version and array (no writer, layout, integrity).",
        raw_case(_MINIMAL),
    ),
    ValidCase(
        "header-newer-minor",
        "2.2",
        "schema_version 1.7 with unknown members at several levels: they are ignored.",
        raw_case(_NEWER_MINOR),
    ),
    ValidCase(
        "header-json-whitespace",
        "4.7",
        "Header JSON with whitespace, exponents and unusual member order.",
        raw_case(None, text=_PRETTY),
    ),
    ValidCase(
        "header-json-escapes",
        "4.7",
        "Header JSON with \\u escapes (including a surrogate pair) and escaped characters.",
        raw_case(None, text=_ESCAPES),
    ),
    ValidCase("header-str32", "4.7", "Header larger than 65535 bytes, stored as a msgpack str32.", _str32),
    ValidCase("header-unicode", "5.1", "Non-ASCII text in source, extra and axis_units (UTF-8, multi-byte).", _unicode),
    # --- layouts and compression (sections 4.4 and 5.5)
    ValidCase(
        "layout-manual",
        "5.5",
        "Manual chunk and block shapes that do not divide the shape.",
        _layout_case(17, chunk_size=(8, 16, 16), block_size=(4, 8, 8)),
    ),
    ValidCase(
        "layout-patch", "5.5", "Layout derived from a training patch size.", _layout_case(18, patch_size=(8, 16, 16))
    ),
    ValidCase("layout-blosc2", "5.5", "Layout chosen by Blosc2 itself.", _layout_case(19, patch_size=None)),
    ValidCase(
        "layout-one-chunk-blocks-split-inside",
        "5.5",
        "One chunk holding the whole array, its blocks split along the first and a middle axis "
        "(python-blosc2 before 3.8 read such a chunk as if in C order).",
        _dtype_case(45, "<i2", (6, 20, 8), (6, 20, 8), (3, 10, 8)),
    ),
    ValidCase(
        "layout-one-chunk-blocks-split-middle",
        "5.5",
        "One chunk holding the whole array, its blocks split along a middle axis only.",
        _dtype_case(46, "<u2", (5, 30, 7), (5, 30, 7), (5, 15, 7)),
    ),
    ValidCase(
        "data-zero-chunks-first",
        "4.4",
        "All-zero chunks (Blosc2 special chunks) before the data chunks.",
        _zero_chunks_first,
    ),
    ValidCase(
        "codec-zstd-bitshuffle",
        "4.4",
        "zstd codec with the bitshuffle filter.",
        _codec_case(32, C.ZSTD, [F.BITSHUFFLE], clevel=7),
    ),
    ValidCase("codec-zlib-shuffle", "4.4", "zlib codec with the shuffle filter.", _codec_case(33, C.ZLIB, [F.SHUFFLE])),
    ValidCase(
        "codec-lz4hc-shuffle",
        "4.4",
        "lz4hc codec at level 9 with the shuffle filter.",
        _codec_case(34, C.LZ4HC, [F.SHUFFLE], clevel=9),
    ),
    ValidCase(
        "codec-lz4hc-shuffle-split",
        "4.4.6",
        "lz4hc codec at level 5 with the shuffle filter, each block split into one stream per byte of its items "
        "(flag 0x10 clear; mlarray's default for items wider than one byte).",
        _lz4hc_split,
    ),
    ValidCase("codec-blosclz-nofilter", "4.4", "blosclz codec without filters.", _codec_case(35, C.BLOSCLZ, [])),
    ValidCase(
        "codec-lz4-bytedelta",
        "4.4",
        "lz4 codec with shuffle then bytedelta filters.",
        _codec_case(36, C.LZ4, [F.SHUFFLE, F.BYTEDELTA]),
    ),
    ValidCase(
        "codec-uncompressed",
        "4.4",
        "Compression level 0 (chunks stored uncompressed).",
        _codec_case(37, C.LZ4, [], clevel=0),
    ),
    ValidCase(
        "header-nesting-64",
        "4.7",
        "Arrays and objects nested exactly 64 levels deep inside extra (the limit).",
        _nested_64,
    ),
    ValidCase(
        "fingerprint-type-ff",
        "4.5",
        "The trailer fingerprint has type byte 0xff and 16 arbitrary bytes.",
        _fingerprint_ff,
    ),
    # --- schema 1.1: intensity scaling (section 5.10)
    ValidCase(
        "scaling-physical",
        "5.10",
        "Schema 1.1: int16 physical values with scaling (slope 1, intercept -1024, raw uint16).",
        _scaled("physical"),
    ),
    ValidCase(
        "scaling-raw",
        "5.10",
        "Schema 1.1: raw uint16 values kept, with the scaling that gives physical values.",
        _scaled("raw"),
    ),
    ValidCase(
        "scaling-newer-minor",
        "2.2",
        "schema_version 1.2: scaling is checked, its unknown member and an unknown top-level member are ignored.",
        raw_case(_NEWER_MINOR_SCALING, seed=42),
    ),
    # --- schema 1.1: class locations of label maps (section 5.11)
    ValidCase(
        "class-locations",
        "5.11",
        "Schema 1.1: a uint8 label map with per-class counts, boxes and up to 40 sampled voxel indices per class.",
        _class_locations(channel=False),
    ),
    ValidCase(
        "class-locations-channel-axis",
        "5.11",
        "Schema 1.1: class locations index the spatial axes only; the channel axis of length 1 does not count.",
        _class_locations(channel=True),
    ),
]
VALID += EDGE
