"""The valid cases of the conformance suite: files every reader must read.

Each case writes a tiny file (a few KB) and returns the array it holds; ``generate.py``
derives the expected result (header, shape, dtype, hashes, probes) from it. Ids are
permanent: a released case is never changed, a new idea gets a new id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import blosc2
import numpy as np
from casekit import (
    ValidCase,
    channel_first_4d,
    frame_sizes,
    json_header,
    patch,
    raw_frame,
    rng,
    save,
    text_header,
    valid_base,
)
from datakit import compressed_chunk

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


def _raw_case(header: Any, *, text: str | None = None, seed: int = 29) -> Any:
    """A file written without the reference writer: the header stored exactly as given."""

    def build(path: Path) -> Array | None:
        data = rng(seed).integers(0, 100, size=(5, 9), dtype=np.int16)
        stored = text_header(text) if text is not None else json_header(header)
        raw_frame(path, data, stored, chunks=(4, 4), blocks=(2, 2))
        return data

    return build


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
    return _raw_case(None, text=text, seed=38)(path)


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
        _raw_case(_MINIMAL),
    ),
    ValidCase(
        "header-newer-minor",
        "2.2",
        "schema_version 1.7 with unknown members at several levels: they are ignored.",
        _raw_case(_NEWER_MINOR),
    ),
    ValidCase(
        "header-json-whitespace",
        "4.7",
        "Header JSON with whitespace, exponents and unusual member order.",
        _raw_case(None, text=_PRETTY),
    ),
    ValidCase(
        "header-json-escapes",
        "4.7",
        "Header JSON with \\u escapes (including a surrogate pair) and escaped characters.",
        _raw_case(None, text=_ESCAPES),
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
        _raw_case(_NEWER_MINOR_SCALING, seed=42),
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


VALID += [
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


VALID += [
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


VALID += [
    ValidCase(
        "affine-tiny-scale",
        "6.5",
        "An affine scaling by 1e-170: its determinant underflows to 0 in binary64, yet it is not singular.",
        _raw_case(_TINY_AFFINE, seed=43),
    ),
    ValidCase(
        "bbox-no-labels-all-axes-spatial",
        "6.2",
        "A 2-D array without axis_labels or geometry: both axes are spatial, boxes have 2 axes.",
        _raw_case(_BBOX_NO_LABELS, seed=44),
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

VALID += [
    ValidCase(
        "affine-zero-spatial-axes",
        "6.5",
        "No spatial axes and the affine [[1]]: (0+1) x (0+1), last row [1], the empty block is non-singular.",
        _raw_case(_AFFINE_ZERO_SPATIAL, seed=45),
    ),
]


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


VALID += [
    ValidCase(
        "stats-std-zero",
        "5.7",
        "stats.std and percentile_std are 0 (the bound of >= 0 is inclusive).",
        _raw_case(_STD_ZERO, seed=47),
    ),
    ValidCase(
        "version-minor-10",
        "2.2",
        "schema_version '1.10' is minor 10, newer than 1.1 (not the number 1.1): its unknown member is ignored.",
        _raw_case(_MINOR_10, seed=48),
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
