"""The invalid cases of the conformance suite: files every reader must refuse with a given code.

Like PngSuite's broken files, each case breaks exactly one rule of ``spec/mlarray.md``;
the expected code is the one the reader algorithm (spec section 8) reaches first. Ids are
permanent: a released case is never changed.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import blosc2
import datakit
import msgpack
import numpy as np
from casekit import (
    InvalidCase,
    channel_first_4d,
    edit_header,
    frame_sizes,
    json_header,
    patch,
    patch_b2nd,
    raw_frame,
    resize_b2nd,
    rng,
    set_header_bytes,
    stored_header,
    text_header,
    valid_base,
)

_DATA = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
_HEADER = {"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<i2"}}
_SCALING = {"slope": 1.5, "intercept": -2.0, "raw_dtype": "<u2", "stored": "physical"}


def _bytes(content: bytes) -> Any:
    def build(path: Path) -> None:
        path.write_bytes(content)

    return build


def _header_bytes(raw: bytes) -> Any:
    """A valid frame whose header bytes are ``raw``."""

    def build(path: Path) -> None:
        raw_frame(path, _DATA, raw)

    return build


def _header_text(text: str | bytes) -> Any:
    return _header_bytes(text_header(text))


def _edit(change: Any, **base: Any) -> Any:
    """A valid file whose header object is then changed by ``change`` (data and digest untouched)."""

    def build(path: Path) -> None:
        valid_base(path, **base)
        edit_header(path, change)

    return build


def _set(dotted: str, value: Any) -> Any:
    def change(header: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = header
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return _edit(change)


def _truncate(keep: Any) -> Any:
    """A valid file cut to ``keep(size)`` bytes."""

    def build(path: Path) -> None:
        valid_base(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: keep(len(raw))])

    return build


def _append(extra: bytes) -> Any:
    def build(path: Path) -> None:
        valid_base(path)
        path.write_bytes(path.read_bytes() + extra)

    return build


def _patched(offset_of: Any, data: bytes) -> Any:
    def build(path: Path) -> None:
        valid_base(path)
        patch(path, offset_of(path), data)

    return build


def _meta(meta: dict[str, bytes]) -> Any:
    def build(path: Path) -> None:
        raw_frame(path, _DATA, json_header(_HEADER), meta=meta)

    return build


def _schunk(path: Path) -> None:
    import blosc2

    schunk = blosc2.SChunk(chunksize=40, data=_DATA.tobytes(), urlpath=str(path), mode="w", cparams={"typesize": 2})
    schunk.vlmeta.set_vlmeta("mlarray", json_header(_HEADER), typesize=1)
    del schunk


def _no_header(vlmeta: dict[str, bytes]) -> Any:
    def build(path: Path) -> None:
        raw_frame(path, _DATA, None, vlmeta=vlmeta)

    return build


def _header_chunk_padded(path: Path) -> None:
    """The header chunk followed by bytes its Blosc header does not account for."""
    import blosc2

    raw_frame(path, _DATA, None)
    chunk = blosc2.compress2(json_header(_HEADER), typesize=1)
    _store_vlmeta_content(path, chunk + b"\x00\x00\x00\x00")


def _store_vlmeta_content(path: Path, content: bytes) -> None:
    """Rewrite the frame trailer so the ``mlarray`` vlmetalayer content is exactly ``content``."""
    raw = bytearray(path.read_bytes())
    header_size, frame_size, trailer_len = frame_sizes(path)
    trailer = msgpack.unpackb(bytes(raw[frame_size - trailer_len :]), raw=True, strict_map_key=False)
    version, fingerprint = trailer[0], trailer[3]
    body = msgpack.packb([version, [0, {"mlarray": 0}, [content]]], use_bin_type=True)
    # [version, vlmeta, trailer_len, fingerprint]: rebuild the array header for 4 elements
    items = body[1:]  # drop the fixarray(2) marker
    fp = msgpack.packb(fingerprint, use_bin_type=True)
    new_len = 1 + len(items) + 5 + len(fp)
    new_trailer = b"\x94" + items + b"\xce" + struct.pack(">I", new_len) + fp
    out = bytes(raw[: frame_size - trailer_len]) + new_trailer
    out = out[:16] + struct.pack(">Q", len(out)) + out[24:]
    path.write_bytes(out)


def _corrupt_first_chunk(offset: int, value: bytes) -> Any:
    """Break the Blosc header of the first data chunk of a file without ``integrity``."""

    def build(path: Path) -> None:
        data = rng(5).integers(0, 1000, size=(40, 100)).astype(np.int32)
        raw_frame(
            path,
            data,
            json_header({"schema_version": "1.0", "array": {"shape": [40, 100], "dtype": "<i4"}}),
            chunks=(20, 50),
            blocks=(10, 25),
        )
        header_size, _, _ = frame_sizes(path)
        patch(path, header_size + offset, value)

    return build


def _wrong_digest(path: Path) -> None:
    valid_base(path)
    header = stored_header(path)
    digest = header["integrity"]["digest"]
    header["integrity"]["digest"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    set_header_bytes(path, json_header(header))


def _metadata_claim_with_data(path: Path) -> None:
    raw_frame(path, _DATA, json_header({"schema_version": "1.0", "array": None}))


def _b2nd(change: Any) -> Any:
    def build(path: Path) -> None:
        valid_base(path)
        patch_b2nd(path, change)

    return build


def _b2nd_dtype(dtype: bytes) -> Any:
    """A valid file whose b2nd dtype is ``dtype`` (any length: the frame header grows or shrinks)."""

    def build(path: Path) -> None:
        valid_base(path)
        resize_b2nd(path, lambda v: v.__setitem__(6, dtype))

    return build


def _big_header(path: Path) -> None:
    text = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"pad":"' + " " * (17 << 20) + '"}}'
    raw_frame(path, _DATA, text_header(text))


def _del(dotted: str) -> Any:
    def change(header: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = header
        for key in parents:
            node = node[key]
        del node[last]

    return _edit(change)


def _special_header_chunk(value: Any) -> Any:
    """A frame whose header chunk is a Blosc2 special-value chunk (made by C-Blosc2 itself)."""

    def build(path: Path) -> None:
        schunk = blosc2.SChunk(chunksize=64, cparams={"typesize": 1})
        schunk.fill_special(64, value)
        chunk = schunk.get_chunk(0)
        if len(chunk) != 32 or chunk[31] & 0x70 == 0:
            raise AssertionError("C-Blosc2 did not make a special-value chunk")
        raw_frame(path, _DATA, None)
        _store_vlmeta_content(path, chunk)

    return build


def _nested_extra(levels: int) -> str:
    """A header whose deepest container, an object inside ``extra``, is at nesting level ``levels``.

    The header object is level 1, ``extra`` level 2, then ``levels - 3`` arrays, then the object.
    """
    inner = "[" * (levels - 3) + '{"leaf":1}' + "]" * (levels - 3)
    return '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"deep":' + inner + "}}"


_HEADER_NAN = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"spatial":{"spacing":[NaN,1.0,1.0]}}'
_HEADER_INF = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"source":{"max":Infinity}}'
_HEADER_DUP = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"is_seg":true,"is_seg":false}'
_HEADER_OVERFLOW = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"spatial":{"spacing":[1e400,1,1]}}'
_HEADER_BIG_INT = (
    '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"count":1' + "0" * 400 + "}}"
)
_HEADER_HUGE_INT = (
    '{"schema_version":"1.1","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"count":-1' + "0" * 4999 + "}}"
)
_HEADER_LONE_HIGH = (
    '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"note":"before \\ud800\\u0041 after"}}'
)
_HEADER_LONE_LOW = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"source":{"\\udc00":"name"}}'
_PICKLE = pickle.dumps(_HEADER, protocol=4)
_ROT = [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def _prefix_field(offset: int) -> Any:
    return lambda path: offset


INVALID: list[InvalidCase] = [
    # --- not a frame / broken frame structure (sections 4.1, 4.2, 4.5)
    InvalidCase("not-a-frame-empty", "4.1", "An empty file.", "NOT_A_FRAME", _bytes(b"")),
    InvalidCase(
        "not-a-frame-text", "4.1", "A text file.", "NOT_A_FRAME", _bytes(b"This is not an mlarray file.\n" * 3)
    ),
    InvalidCase(
        "not-a-frame-npy",
        "4.1",
        "A NumPy .npy file.",
        "NOT_A_FRAME",
        _bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }" + b" " * 60),
    ),
    InvalidCase(
        "not-a-frame-bad-magic",
        "4.1",
        "A valid file with one byte of the magic changed.",
        "NOT_A_FRAME",
        _patched(_prefix_field(2), b"B"),
    ),
    InvalidCase(
        "not-a-frame-schunk", "4.2", "A Blosc2 super-chunk frame without the b2nd metalayer.", "NOT_A_FRAME", _schunk
    ),
    InvalidCase("truncated-half", "4.1", "A valid file cut in half.", "TRUNCATED_FILE", _truncate(lambda n: n // 2)),
    InvalidCase(
        "truncated-last-byte",
        "4.1",
        "A valid file missing its last byte.",
        "TRUNCATED_FILE",
        _truncate(lambda n: n - 1),
    ),
    InvalidCase(
        "truncated-prefix-only",
        "4.1",
        "Only the first 30 bytes of a valid file.",
        "TRUNCATED_FILE",
        _truncate(lambda n: 30),
    ),
    InvalidCase(
        "corrupt-trailing-bytes", "4.1", "A valid file followed by extra bytes.", "CORRUPT_FRAME", _append(b"\x00extra")
    ),
    InvalidCase(
        "corrupt-prefix-marker",
        "4.1",
        "The int32 marker before header_size is wrong.",
        "CORRUPT_FRAME",
        _patched(_prefix_field(10), b"\xd3"),
    ),
    InvalidCase(
        "corrupt-header-size",
        "4.1",
        "header_size smaller than the prefix.",
        "CORRUPT_FRAME",
        _patched(_prefix_field(11), struct.pack(">i", 10)),
    ),
    InvalidCase(
        "corrupt-trailer-marker",
        "4.5",
        "The uint32 marker of trailer_len is wrong.",
        "CORRUPT_FRAME",
        _patched(lambda p: frame_sizes(p)[1] - 23, b"\xcd"),
    ),
    InvalidCase(
        "corrupt-trailer-len",
        "4.5",
        "trailer_len larger than the frame.",
        "CORRUPT_FRAME",
        _patched(lambda p: frame_sizes(p)[1] - 22, struct.pack(">I", 1 << 20)),
    ),
    InvalidCase(
        "corrupt-b2nd-shape-length",
        "4.3",
        "b2nd ndim disagrees with the length of its shape.",
        "CORRUPT_FRAME",
        _b2nd(lambda v: v.__setitem__(1, 2)),
    ),
    InvalidCase(
        "corrupt-b2nd-typesize",
        "4.3",
        "The b2nd dtype (<i4) disagrees with the frame's type size (2).",
        "CORRUPT_FRAME",
        _b2nd(lambda v: v.__setitem__(6, "<i4")),
    ),
    InvalidCase(
        "corrupt-b2nd-nbytes",
        "4.3",
        "The b2nd shape needs more chunks than the frame's nbytes holds.",
        "CORRUPT_FRAME",
        _b2nd(lambda v: v[2].__setitem__(0, 9)),
    ),
    InvalidCase(
        "resource-too-many-chunks",
        "4.3",
        "The b2nd shape declares 2^27 chunks (limit 2^24).",
        "RESOURCE_LIMIT",
        _b2nd(lambda v: v[2].__setitem__(0, 1 << 27)),
    ),
    InvalidCase(
        "corrupt-header-chunk-size",
        "4.6",
        "Header chunk followed by bytes its Blosc header does not count.",
        "CORRUPT_FRAME",
        _header_chunk_padded,
    ),
    InvalidCase(
        "corrupt-chunk-nbytes",
        "4.4",
        "The first data chunk's Blosc header declares a wrong nbytes.",
        "CORRUPT_FRAME",
        _corrupt_first_chunk(4, struct.pack("<i", 123)),
    ),
    InvalidCase(
        "corrupt-chunk-cbytes",
        "4.4",
        "The first data chunk's Blosc header declares a wrong cbytes.",
        "CORRUPT_FRAME",
        _corrupt_first_chunk(12, struct.pack("<i", 99999)),
    ),
    # --- metalayers (section 4.2)
    InvalidCase(
        "forbidden-metalayer-b2o",
        "4.2",
        "An extra fixed metalayer 'b2o' (python-blosc2 object rebuild).",
        "FORBIDDEN_METALAYER",
        _meta({"b2o": msgpack.packb(["LazyExpr", {}])}),
    ),
    InvalidCase(
        "forbidden-metalayer-proxy",
        "4.2",
        "An extra fixed metalayer 'proxy-source' naming another file.",
        "FORBIDDEN_METALAYER",
        _meta({"proxy-source": msgpack.packb({"urlpath": "/etc/passwd", "caterva2": False})}),
    ),
    InvalidCase(
        "forbidden-metalayer-custom",
        "4.2",
        "An extra fixed metalayer with an arbitrary name.",
        "FORBIDDEN_METALAYER",
        _meta({"mymeta": b"\x01\x02\x03"}),
    ),
    # --- the header chunk and its encoding (sections 4.5 to 4.7)
    InvalidCase(
        "missing-header",
        "4.5",
        "A Blosc2 NDArray without any variable-length metalayer.",
        "MISSING_HEADER",
        _no_header({}),
    ),
    InvalidCase(
        "missing-header-other-vlmeta",
        "4.5",
        "A Blosc2 NDArray whose only vlmetalayer is not 'mlarray'.",
        "MISSING_HEADER",
        _no_header({"meta": json_header(_HEADER)}),
    ),
    InvalidCase(
        "header-too-large", "4.6", "A header of 17 MiB (it compresses to a few KB).", "HEADER_TOO_LARGE", _big_header
    ),
    InvalidCase(
        "header-trailer-too-large",
        "4.5",
        "trailer_len beyond the 17 MiB limit.",
        "HEADER_TOO_LARGE",
        _patched(lambda p: frame_sizes(p)[1] - 22, struct.pack(">I", 20_000_000)),
    ),
    InvalidCase(
        "header-pickle",
        "4.7",
        "The header is a pickle of the header dict (never unpickled).",
        "HEADER_ENCODING",
        _header_bytes(_PICKLE),
    ),
    InvalidCase(
        "header-msgpack-ext",
        "4.7",
        "The header is a msgpack extension object.",
        "HEADER_ENCODING",
        _header_bytes(msgpack.packb(msgpack.ExtType(42, b"{}"))),
    ),
    InvalidCase(
        "header-msgpack-map",
        "4.7",
        "The header is a msgpack map instead of a JSON string.",
        "HEADER_ENCODING",
        _header_bytes(msgpack.packb(_HEADER)),
    ),
    InvalidCase(
        "header-msgpack-bin",
        "4.7",
        "The header JSON is stored as msgpack bin, not str.",
        "HEADER_ENCODING",
        _header_bytes(msgpack.packb(json_header(_HEADER)[2:], use_bin_type=True)),
    ),
    InvalidCase(
        "header-not-utf8",
        "4.7",
        "The header string is Latin-1, not UTF-8.",
        "HEADER_ENCODING",
        _header_text('{"schema_version":"1.0","source":{"name":"Müller"}}'.encode("latin-1")),
    ),
    InvalidCase(
        "header-length-mismatch",
        "4.7",
        "The msgpack str length is shorter than the bytes stored.",
        "HEADER_ENCODING",
        _header_bytes(b"\xd9\x05" + json_header(_HEADER)[2:]),
    ),
    InvalidCase(
        "header-not-json",
        "4.7",
        "The header string is not JSON.",
        "HEADER_NOT_JSON",
        _header_text("schema_version = 1.0"),
    ),
    InvalidCase(
        "header-json-truncated",
        "4.7",
        "The header JSON text ends early.",
        "HEADER_NOT_JSON",
        _header_text('{"schema_version":"1.0","array":{"shape":[3,4,5]'),
    ),
    InvalidCase(
        "header-json-array",
        "4.7",
        "The header JSON is an array, not an object.",
        "HEADER_NOT_JSON",
        _header_text('["schema_version", "1.0"]'),
    ),
    InvalidCase(
        "header-bom",
        "4.7",
        "The header JSON text starts with a byte order mark.",
        "HEADER_NOT_JSON",
        _header_text("\ufeff" + json_header(_HEADER)[2:].decode("utf-8")),
    ),
    InvalidCase("header-nan", "4.7", "The header contains NaN.", "HEADER_NOT_JSON", _header_text(_HEADER_NAN)),
    InvalidCase(
        "header-infinity",
        "4.7",
        "The header contains Infinity (in source).",
        "HEADER_NOT_JSON",
        _header_text(_HEADER_INF),
    ),
    InvalidCase(
        "header-duplicate-key", "4.7", "The header repeats a member name.", "HEADER_NOT_JSON", _header_text(_HEADER_DUP)
    ),
    # --- versions (section 2.2)
    InvalidCase(
        "version-major-2",
        "2.2",
        "schema_version 2.0: an unknown major version.",
        "UNSUPPORTED_VERSION",
        _set("schema_version", "2.0"),
    ),
    InvalidCase(
        "version-major-0",
        "2.2",
        "schema_version 0.9: an unknown major version.",
        "UNSUPPORTED_VERSION",
        _set("schema_version", "0.9"),
    ),
    InvalidCase("version-missing", "2.2", "No schema_version.", "HEADER_INVALID", _del("schema_version")),
    InvalidCase(
        "version-malformed",
        "2.2",
        "schema_version '1.0.0' is not MAJOR.MINOR.",
        "HEADER_INVALID",
        _set("schema_version", "1.0.0"),
    ),
    InvalidCase(
        "version-non-ascii-digit",
        "2.2",
        "schema_version '\u0662.0' uses an Arabic-Indic digit.",
        "HEADER_INVALID",
        _set("schema_version", "\u0662.0"),
    ),
    InvalidCase(
        "version-number",
        "2.2",
        "schema_version is a number, not a string.",
        "HEADER_INVALID",
        _set("schema_version", 1.0),
    ),
    # --- header rules (sections 5 and 6)
    InvalidCase(
        "schema-unknown-member",
        "2.2",
        "An unknown top-level member in a 1.0 header.",
        "HEADER_INVALID",
        _set("colour", "blue"),
    ),
    InvalidCase(
        "schema-unknown-nested",
        "2.2",
        "An unknown member inside spatial.",
        "HEADER_INVALID",
        _set("spatial.thickness", 2.0),
    ),
    InvalidCase(
        "schema-shape-strings",
        "5.1",
        "array.shape holds strings instead of integers.",
        "HEADER_INVALID",
        _set("array.shape", ["6", "10", "12"]),
    ),
    InvalidCase(
        "schema-is-seg-string",
        "5.1",
        "is_seg is the string 'yes', not a boolean.",
        "HEADER_INVALID",
        _set("is_seg", "yes"),
    ),
    InvalidCase(
        "schema-spacing-bool",
        "5.1",
        "A spacing entry is a boolean, not a number.",
        "HEADER_INVALID",
        _set("spatial.spacing", [True, 1.0, 1.0]),
    ),
    InvalidCase(
        "schema-dtype-big-endian",
        "5.4",
        "array.dtype '>i2' (only little-endian types are allowed).",
        "HEADER_INVALID",
        _set("array.dtype", ">i2"),
    ),
    InvalidCase(
        "schema-shape-9-dims",
        "5.4",
        "array.shape with 9 entries.",
        "HEADER_INVALID",
        _set("array.shape", [1, 1, 1, 1, 1, 1, 6, 10, 12]),
    ),
    InvalidCase(
        "schema-spatial-null", "5.1", "spatial is null (it is not nullable).", "HEADER_INVALID", _set("spatial", None)
    ),
    InvalidCase(
        "schema-digest-uppercase",
        "5.6",
        "integrity.digest in upper case.",
        "HEADER_INVALID",
        _edit(lambda h: h["integrity"].update(digest=h["integrity"]["digest"].upper())),
    ),
    InvalidCase(
        "number-overflow",
        "5.1",
        "A number literal that overflows binary64 (1e400).",
        "HEADER_INVALID",
        _header_text(_HEADER_OVERFLOW),
    ),
    InvalidCase(
        "spacing-negative", "6.5", "A negative spacing.", "HEADER_INVALID", _set("spatial.spacing", [2.0, -1.0, 1.0])
    ),
    InvalidCase(
        "spacing-length",
        "6.5",
        "spacing has 2 entries for 3 spatial axes.",
        "HEADER_INVALID",
        _set("spatial.spacing", [1.0, 1.0]),
    ),
    InvalidCase(
        "direction-not-orthonormal",
        "6.5",
        "direction with a shear of 0.1.",
        "HEADER_INVALID",
        _set("spatial.direction", _ROT),
    ),
    InvalidCase(
        "direction-not-square",
        "6.5",
        "direction is 3x2.",
        "HEADER_INVALID",
        _set("spatial.direction", [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
    ),
    InvalidCase(
        "affine-disagrees",
        "6.4",
        "affine disagrees with spacing.",
        "HEADER_INVALID",
        _set("spatial.affine", [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]),
    ),
    InvalidCase(
        "affine-last-row",
        "6.5",
        "affine's last row is not [0, 0, 0, 1].",
        "HEADER_INVALID",
        _edit(
            lambda h: h["spatial"].update(
                spacing=None, affine=[[2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.5, 1.0]]
            )
        ),
    ),
    InvalidCase(
        "affine-singular",
        "6.5",
        "A singular affine.",
        "HEADER_INVALID",
        _edit(
            lambda h: h["spatial"].update(
                spacing=None, affine=[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]
            )
        ),
    ),
    InvalidCase(
        "axis-labels-length",
        "5.9",
        "axis_labels has 2 entries for a 3-D array.",
        "HEADER_INVALID",
        _set("spatial.axis_labels", ["spatial", "spatial"]),
    ),
    InvalidCase(
        "axis-labels-geometry",
        "6.2",
        "Labels mark 2 spatial axes but spacing has 3 entries.",
        "HEADER_INVALID",
        _set("spatial.axis_labels", ["channel", "spatial", "spatial"]),
    ),
    InvalidCase(
        "spatial-shape-mismatch",
        "5.9",
        "spatial.shape disagrees with array.shape.",
        "HEADER_INVALID",
        _set("spatial.shape", [6, 10, 13]),
    ),
    InvalidCase(
        "stats-min-above-max",
        "5.7",
        "stats.min greater than stats.max.",
        "HEADER_INVALID",
        _set("stats", {"min": 5.0, "max": 1.0}),
    ),
    InvalidCase(
        "bbox-min-above-max",
        "5.8",
        "A bounding box whose min is above its max.",
        "HEADER_INVALID",
        _set("bbox", {"bboxes": [[[4, 2], [0, 1], [0, 1]]]}),
    ),
    InvalidCase(
        "layout-block-above-chunk",
        "5.5",
        "layout.block_size larger than chunk_size.",
        "HEADER_INVALID",
        _edit(lambda h: h["layout"].update(block_size=[8, 8, 8])),
    ),
    InvalidCase(
        "layout-without-array",
        "5.9",
        "A metadata-only header with a layout.",
        "HEADER_INVALID",
        _edit(lambda h: h.update(array=None)),
    ),
    # --- header against the frame (section 5.9)
    InvalidCase(
        "mismatch-shape",
        "5.9",
        "array.shape differs from the frame's shape.",
        "FRAME_MISMATCH",
        _set("array.shape", [6, 10, 11]),
    ),
    InvalidCase(
        "mismatch-dtype",
        "5.9",
        "array.dtype <u2 but the frame holds <i2.",
        "FRAME_MISMATCH",
        _set("array.dtype", "<u2"),
    ),
    InvalidCase(
        "mismatch-layout",
        "5.9",
        "layout.chunk_size differs from the frame's chunk shape.",
        "FRAME_MISMATCH",
        _edit(lambda h: h["layout"].update(chunk_size=[4, 8, 4], block_size=[2, 4, 4])),
    ),
    InvalidCase(
        "mismatch-b2nd-dtype-unknown",
        "5.9",
        "The b2nd dtype '<x2' is not a type string (sizes agree).",
        "FRAME_MISMATCH",
        _b2nd(lambda v: v.__setitem__(6, "<x2")),
    ),
    InvalidCase(
        "mismatch-metadata-only",
        "5.9",
        "array is null but the frame holds data.",
        "FRAME_MISMATCH",
        _metadata_claim_with_data,
    ),
    # --- rules made exact after readers disagreed (spec change log)
    InvalidCase(
        "corrupt-header-chunk-uninit",
        "4.6",
        "The header chunk is a Blosc2 special-value chunk of 'uninitialized' bytes.",
        "CORRUPT_FRAME",
        _special_header_chunk(blosc2.SpecialValue.UNINIT),
    ),
    InvalidCase(
        "corrupt-header-chunk-zeros",
        "4.6",
        "The header chunk is a Blosc2 special-value chunk of zeros.",
        "CORRUPT_FRAME",
        _special_header_chunk(blosc2.SpecialValue.ZERO),
    ),
    InvalidCase(
        "header-nesting-65",
        "4.7",
        "Arrays and objects nested 65 levels deep (inside extra); the limit is 64.",
        "HEADER_NOT_JSON",
        _header_text(_nested_extra(65)),
    ),
    InvalidCase(
        "header-lone-high-surrogate",
        "4.7",
        "A \\ud800 escape followed by \\u0041, not by a low surrogate (in extra).",
        "HEADER_NOT_JSON",
        _header_text(_HEADER_LONE_HIGH),
    ),
    InvalidCase(
        "header-lone-low-surrogate",
        "4.7",
        "A member name of source that is a lone \\udc00 escape.",
        "HEADER_NOT_JSON",
        _header_text(_HEADER_LONE_LOW),
    ),
    InvalidCase(
        "number-overflow-integer",
        "5.1",
        "An integer literal of 401 digits in extra (beyond binary64, written without exponent).",
        "HEADER_INVALID",
        _header_text(_HEADER_BIG_INT),
    ),
    InvalidCase(
        "number-overflow-integer-5000-digits",
        "5.1",
        "An integer literal of 5000 digits in extra (more digits than some JSON parsers convert by default).",
        "HEADER_INVALID",
        _header_text(_HEADER_HUGE_INT),
    ),
    InvalidCase(
        "corrupt-b2nd-dtype-format",
        "4.3",
        "The b2nd dtype_format is 1 (only 0, a NumPy type string, is defined).",
        "CORRUPT_FRAME",
        _b2nd(lambda v: v.__setitem__(5, 1)),
    ),
    InvalidCase(
        "corrupt-b2nd-shape-float",
        "4.3",
        "The b2nd shape entries are msgpack float64 values (6.0, 10.0, 12.0), not integers.",
        "CORRUPT_FRAME",
        _b2nd(lambda v: v.__setitem__(2, [float(s) for s in v[2]])),
    ),
    InvalidCase(
        "corrupt-b2nd-dtype-space",
        "4.3",
        "The b2nd dtype '<i 2': a space before the item size (NumPy reads it as int16).",
        "CORRUPT_FRAME",
        _b2nd_dtype(b"<i 2"),
    ),
    InvalidCase(
        "corrupt-b2nd-dtype-sign",
        "4.3",
        "The b2nd dtype '<i+2': a sign before the item size (NumPy reads it as int16).",
        "CORRUPT_FRAME",
        _b2nd_dtype(b"<i+2"),
    ),
    InvalidCase(
        "corrupt-b2nd-dtype-non-ascii-digit",
        "4.3",
        "The b2nd dtype '<i\u0662': the item size is an Arabic-Indic digit two.",
        "CORRUPT_FRAME",
        _b2nd_dtype("<i\u0662".encode()),
    ),
    InvalidCase(
        "corrupt-b2nd-dtype-no-byte-order",
        "4.3",
        "The b2nd dtype 'i2' has no byte-order character (NumPy reads it as int16).",
        "CORRUPT_FRAME",
        _b2nd_dtype(b"i2"),
    ),
    # --- schema 1.1: intensity scaling (section 5.10)
    InvalidCase(
        "scaling-slope-zero",
        "5.10",
        "scaling.slope is 0 (raw values could not be recovered).",
        "HEADER_INVALID",
        _set("scaling", {**_SCALING, "slope": 0}),
    ),
    InvalidCase(
        "scaling-raw-dtype-mismatch",
        "5.10",
        "scaling.stored is 'raw' but array.dtype (<i2) differs from raw_dtype (<u2).",
        "HEADER_INVALID",
        _set("scaling", {**_SCALING, "stored": "raw"}),
    ),
    InvalidCase(
        "scaling-unknown-member",
        "5.10",
        "A schema 1.1 header whose scaling has a member 1.1 does not define.",
        "HEADER_INVALID",
        _set("scaling", {**_SCALING, "offset": 3}),
    ),
    InvalidCase(
        "scaling-missing-stored",
        "5.10",
        "scaling without its mandatory member stored.",
        "HEADER_INVALID",
        _set("scaling", {k: v for k, v in _SCALING.items() if k != "stored"}),
    ),
    InvalidCase(
        "scaling-slope-string",
        "5.10",
        "scaling.slope is the string '1.5', not a number.",
        "HEADER_INVALID",
        _set("scaling", {**_SCALING, "slope": "1.5"}),
    ),
    # --- schema 1.1: class locations (section 5.11, rule 11 of 5.9); the base array has 6*10*12 = 720 voxels
    InvalidCase(
        "class-locations-index-outside",
        "5.9",
        "A class_locations index (720) outside the 720 spatial voxels.",
        "HEADER_INVALID",
        _set("class_locations", {"classes": [{"label": 1, "count": 2, "indices": [3, 720]}]}),
    ),
    InvalidCase(
        "class-locations-count-too-large",
        "5.9",
        "A class_locations count (721) larger than the 720 spatial voxels.",
        "HEADER_INVALID",
        _set("class_locations", {"classes": [{"label": 1, "count": 721, "indices": [0]}]}),
    ),
    InvalidCase(
        "class-locations-unsorted",
        "5.11",
        "class_locations indices not strictly increasing.",
        "HEADER_INVALID",
        _set("class_locations", {"classes": [{"label": 1, "count": 3, "indices": [5, 2]}]}),
    ),
    InvalidCase(
        "class-locations-more-than-count",
        "5.11",
        "More class_locations indices (3) than the class count (2).",
        "HEADER_INVALID",
        _set("class_locations", {"classes": [{"label": 1, "count": 2, "indices": [1, 2, 3]}]}),
    ),
    InvalidCase(
        "class-locations-duplicate-label",
        "5.11",
        "The same label twice in class_locations.classes.",
        "HEADER_INVALID",
        _set(
            "class_locations",
            {"classes": [{"label": 1, "count": 1, "indices": [0]}, {"label": 1, "count": 1, "indices": [1]}]},
        ),
    ),
    InvalidCase(
        "class-locations-too-many-indices",
        "5.11",
        "10,001 indices for one class (the bound is 10,000).",
        "HEADER_INVALID",
        _set("class_locations", {"classes": [{"label": 1, "count": 10001, "indices": list(range(10001))}]}),
    ),
    InvalidCase(
        "class-locations-count-zero",
        "5.11",
        "A class with count 0.",
        "HEADER_INVALID",
        _set("class_locations", {"classes": [{"label": 1, "count": 0, "indices": []}]}),
    ),
    # --- integrity (section 4.9)
    InvalidCase(
        "digest-mismatch",
        "4.9",
        "integrity.digest differs from the data section's SHA-256.",
        "DIGEST_MISMATCH",
        _wrong_digest,
        requirement="should",
    ),
]


# --- the data section (spec 4.4), added with issue 12; built on raw bytes with datakit


def _i16_frame(path: Path, *, integrity: bool = False) -> None:
    """A (32, 40) int16 array in 2 compressed chunks of 4 blocks, without ``integrity`` unless asked."""
    data = ((np.arange(1280, dtype=np.int16) // 40) * 3).reshape(32, 40)
    header = {"schema_version": "1.0", "array": {"shape": [32, 40], "dtype": "<i2"}}
    raw_frame(path, data, json_header(header), chunks=(16, 40), blocks=(8, 20))
    if integrity:
        from mlarray.storage.frame import data_digest

        header["integrity"] = {"algorithm": "sha256", "digest": data_digest(path)}
        set_header_bytes(path, json_header(header))


def _block_start(change: Any) -> Any:
    """Replace the block-start table of the first compressed data chunk by ``change(starts, cbytes)``."""

    def build(path: Path) -> None:
        _i16_frame(path)
        at, chunk = datakit.compressed_chunk(path)
        starts = change(datakit.block_starts(chunk), len(chunk))
        datakit.patch(path, at + 32, struct.pack(f"<{len(starts)}i", *starts))

    return build


def _stream_size(path: Path) -> None:
    """The first stream of block 1 of a compressed chunk declares more bytes than the chunk has."""
    _i16_frame(path)
    at, chunk = datakit.compressed_chunk(path)
    start = datakit.block_starts(chunk)[1]
    datakit.patch(path, at + start, struct.pack("<i", len(chunk)))


def _second_stream_size(path: Path) -> None:
    """Block 1 of a chunk split into one stream per byte: its second stream declares more bytes than the chunk has."""
    _i16_frame(path)
    at, chunk = datakit.compressed_chunk(path)
    if chunk[2] & 0x10 or chunk[3] != 2:
        raise AssertionError("the chunk's blocks are not split into two streams")
    start = datakit.block_starts(chunk)[1]
    (csize,) = struct.unpack("<i", chunk[start : start + 4])
    second = start + 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
    datakit.patch(path, at + second, struct.pack("<i", len(chunk)))


def _undecodable(integrity: bool) -> Any:
    """A compressed stream's bytes are all 0xff: every offset and size holds, the codec fails."""

    def build(path: Path) -> None:
        _i16_frame(path, integrity=integrity)
        at, chunk = datakit.compressed_chunk(path)
        start = datakit.block_starts(chunk)[0]
        (csize,) = struct.unpack("<i", chunk[start : start + 4])
        neblock = struct.unpack("<i", chunk[8:12])[0] // chunk[3]
        if not 0 < csize < neblock:
            raise AssertionError("the first stream is not compressed data")
        datakit.patch(path, at + start + 4, b"\xff" * csize)

    return build


def _entry(number: int, value: Any) -> Any:
    """Index entry ``number`` of the (32, 40) int16 frame set to ``value(entries, element5)``."""

    def build(path: Path) -> None:
        _i16_frame(path)
        entries = datakit.entries(path)
        datakit.set_entry(path, number, value(entries, datakit.section(path).data_size))

    return build


def _special_index(dtype: Any, byte7: int) -> Any:
    """An all-zero array (value-run index of 0x81 entries) whose entries become ``byte7`` << 56."""

    def build(path: Path) -> None:
        nd = blosc2.zeros((10, 6), dtype=dtype, chunks=(4, 6), blocks=(2, 3), urlpath=str(path), mode="w")
        header = {"schema_version": "1.0", "array": {"shape": [10, 6], "dtype": np.dtype(dtype).str}}
        nd.schunk.vlmeta.set_vlmeta("mlarray", json_header(header), typesize=1)
        del nd
        datakit.set_value_run_entry(path, struct.unpack("<q", bytes(7) + bytes([byte7]))[0])

    return build


def _element5(delta: int) -> Any:
    def build(path: Path) -> None:
        _i16_frame(path)
        datakit.set_element5(path, datakit.section(path).data_size + delta)

    return build


def _chunk_blocksize(path: Path) -> None:
    """A data chunk's header declares another block size than the frame (and its blocks say)."""
    _i16_frame(path)
    at, chunk = datakit.compressed_chunk(path)
    datakit.patch(path, at + 8, struct.pack("<i", struct.unpack("<i", chunk[8:12])[0] * 2))


def _header_chunk_block_start(path: Path) -> None:
    """The header chunk is compressed and its second block starts past its end."""
    padding = "mlarray " * 3000
    header = {"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<i2"}, "extra": {"pad": padding}}
    chunk = bytearray(blosc2.compress2(json_header(header), typesize=1, blocksize=4096))
    if chunk[2] & 0x02 or chunk[2] & 0x05 != 0x05:
        raise AssertionError("the header chunk is not a compressed extended chunk")
    chunk[36:40] = struct.pack("<i", len(chunk) + 64)
    raw_frame(path, _DATA, None)
    _store_vlmeta_content(path, bytes(chunk))


INVALID += [
    InvalidCase(
        "corrupt-block-offset-past-end",
        "4.4.6",
        "A compressed data chunk's second block starts 100 bytes past the chunk's end.",
        "CORRUPT_FRAME",
        _block_start(lambda s, n: [s[0], n + 100, *s[2:]]),
    ),
    InvalidCase(
        "corrupt-block-offset-negative",
        "4.4.6",
        "A compressed data chunk's second block starts at offset -64.",
        "CORRUPT_FRAME",
        _block_start(lambda s, n: [s[0], -64, *s[2:]]),
    ),
    InvalidCase(
        "corrupt-block-offsets-overlap",
        "4.4.6",
        "Two blocks of a compressed data chunk start at the same offset (their ranges overlap).",
        "CORRUPT_FRAME",
        _block_start(lambda s, n: [s[0], s[0], *s[2:]]),
    ),
    InvalidCase(
        "corrupt-block-offset-in-table",
        "4.4.6",
        "A block starts inside the chunk's own block-start table.",
        "CORRUPT_FRAME",
        _block_start(lambda s, n: [s[0], 36, *s[2:]]),
    ),
    InvalidCase(
        "corrupt-stream-size-past-end",
        "4.4.6",
        "A stream of a compressed data chunk declares more bytes than the chunk has.",
        "CORRUPT_FRAME",
        _stream_size,
    ),
    InvalidCase(
        "corrupt-second-stream-past-end",
        "4.4.6",
        "Blocks split into one stream per byte of the items: the second stream of a block declares more bytes "
        "than the chunk has (the first is intact).",
        "CORRUPT_FRAME",
        _second_stream_size,
    ),
    InvalidCase(
        "corrupt-header-chunk-block-offset",
        "4.6",
        "The (compressed) header chunk's second block starts past the chunk's end.",
        "CORRUPT_FRAME",
        _header_chunk_block_start,
    ),
    InvalidCase(
        "corrupt-chunk-blocksize",
        "4.4.4",
        "A data chunk's header declares twice the frame's block size.",
        "CORRUPT_FRAME",
        _chunk_blocksize,
    ),
    InvalidCase(
        "corrupt-chunk-undecodable",
        "4.4.7",
        "The bytes of a compressed stream are all 0xff: every offset holds, decompression fails.",
        "CORRUPT_FRAME",
        _undecodable(False),
    ),
    InvalidCase(
        "corrupt-index-entry-past-area",
        "4.4.2",
        "An index entry 16 bytes before the end of the chunks area: the chunk header would reach the index.",
        "CORRUPT_FRAME",
        _entry(1, lambda e, c: c - 16),
    ),
    InvalidCase(
        "corrupt-index-entry-into-index",
        "4.4.2",
        "An index entry points at the index chunk itself (offset = element 5).",
        "CORRUPT_FRAME",
        _entry(0, lambda e, c: c),
    ),
    InvalidCase(
        "corrupt-index-entry-uninit",
        "4.4.2",
        "Every index entry is 0x8400000000000000: uninitialised chunks (refused, never read as anything).",
        "CORRUPT_FRAME",
        _special_index(np.float32, 0x84),
    ),
    InvalidCase(
        "corrupt-index-entry-unknown-special",
        "4.4.2",
        "Every index entry is 0x8300000000000000, a special value that does not exist.",
        "CORRUPT_FRAME",
        _special_index(np.float32, 0x83),
    ),
    InvalidCase(
        "corrupt-index-entry-nan-int16",
        "4.4.2",
        "NaN special entries (0x82) in an int16 array: NaN exists only for <f4 and <f8.",
        "CORRUPT_FRAME",
        _special_index(np.int16, 0x82),
    ),
    InvalidCase(
        "corrupt-index-position",
        "4.4.1",
        "Frame-header element 5 is 8 bytes short: the index chunk is not where its cbytes says.",
        "CORRUPT_FRAME",
        _element5(-8),
    ),
    InvalidCase(
        "digest-and-corrupt-chunk",
        "8",
        "A chunk fails to decompress and integrity.digest is stale: checked data come first, CORRUPT_FRAME.",
        "CORRUPT_FRAME",
        _undecodable(True),
    ),
]


# --- metalayer sections and msgpack nesting (spec 4.2, 4.3, 4.5), added with issue 12

_OFFSET = b"\xd2" + struct.pack(">i", 0)
_IDX = b"\xcd\x00\x00"


def _fixed_section(names: list[tuple[bytes, bytes]], count: int, idx: bytes = _IDX) -> Any:
    """A valid file whose fixed metalayer section is rebuilt with ``names`` and ``count`` b2nd contents."""

    def build(path: Path) -> None:
        valid_base(path)
        content = datakit.b2nd_content(path)
        datakit.replace_fixed_section(path, datakit.layer_section(idx, names, [content] * count))

    return build


def _vl_section(names: list[tuple[bytes, bytes]], count: int, idx: bytes = _IDX, version: bytes = b"\x00") -> Any:
    """A valid file whose trailer is rebuilt with ``names`` and ``count`` copies of the header chunk."""

    def build(path: Path) -> None:
        valid_base(path)
        content = datakit.vlmeta_content(path)
        datakit.replace_trailer(path, version, datakit.layer_section(idx, names, [content] * count))

    return build


def _b2nd_trailing(path: Path) -> None:
    """The b2nd content is the 7-element array followed by one more msgpack value (nil)."""
    valid_base(path)
    content = datakit.b2nd_content(path)
    datakit.replace_fixed_section(
        path, datakit.layer_section(_IDX, [(datakit.fixstr("b2nd"), _OFFSET)], [content + b"\xc0"])
    )


_B2ND = datakit.fixstr("b2nd")
_MLARRAY = datakit.fixstr("mlarray")
_NESTED_9 = b"\x91" * 7 + b"\x90"  # the trailer is level 1: arrays at levels 2..9

INVALID += [
    InvalidCase(
        "corrupt-metalayer-b2nd-twice",
        "4.2",
        "The fixed metalayer section names b2nd twice (with two identical contents).",
        "CORRUPT_FRAME",
        _fixed_section([(_B2ND, _OFFSET), (_B2ND, _OFFSET)], 2),
    ),
    InvalidCase(
        "corrupt-vlmetalayer-mlarray-twice",
        "4.5",
        "The variable-length metalayer section names mlarray twice (with two identical headers).",
        "CORRUPT_FRAME",
        _vl_section([(_MLARRAY, _OFFSET), (_MLARRAY, _OFFSET)], 2),
    ),
    InvalidCase(
        "corrupt-b2nd-trailing-bytes",
        "4.3",
        "The b2nd content has one byte (a msgpack nil) after its 7-element array.",
        "CORRUPT_FRAME",
        _b2nd_trailing,
    ),
    InvalidCase(
        "corrupt-metalayer-idx-nil",
        "4.5",
        "The idx of the variable-length metalayer section is nil, not an integer.",
        "CORRUPT_FRAME",
        _vl_section([(_MLARRAY, _OFFSET)], 1, idx=b"\xc0"),
    ),
    InvalidCase(
        "corrupt-metalayer-offset-string",
        "4.2",
        "The offset of b2nd in the fixed metalayer section is a string, not an integer.",
        "CORRUPT_FRAME",
        _fixed_section([(_B2ND, datakit.fixstr("0"))], 1),
    ),
    InvalidCase(
        "corrupt-trailer-nesting-9",
        "4.5",
        "The trailer's version element is arrays nested down to level 9 (the limit is 8).",
        "CORRUPT_FRAME",
        _vl_section([(_MLARRAY, _OFFSET)], 1, version=_NESTED_9),
    ),
]


# --- open points settled with issue 12: geometry, JSON, integer and dtype spellings, patterns

_ARR = '"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"}'


def _b2nd_spelling(dtype: bytes) -> Any:
    """A valid int16 file whose b2nd dtype is spelled ``dtype`` (the header keeps ``<i2``)."""

    def build(path: Path) -> None:
        raw_frame(path, _DATA, json_header(_HEADER))
        resize_b2nd(path, lambda v: v.__setitem__(6, dtype))

    return build


INVALID += [
    InvalidCase(
        "bbox-axes-without-labels",
        "6.2",
        "A 3-D array without axis_labels or geometry (every axis spatial) with 2-axis boxes.",
        "HEADER_INVALID",
        _header_text('{%s,"bbox":{"bboxes":[[[0,1],[0,2]]]}}' % _ARR),
    ),
    InvalidCase(
        "affine-nearly-singular",
        "6.5",
        "The affine's first two axis vectors are 1e-12 rad apart: determinant not 0, yet singular (6.5).",
        "HEADER_INVALID",
        _header_text('{%s,"spatial":{"affine":[[1,1,0,0],[0,1e-12,0,0],[0,0,1,0],[0,0,0,1]]}}' % _ARR),
    ),
    InvalidCase(
        "header-repeated-key-escaped",
        "4.7",
        'The member names "is_seg" and "is_s\\u0065g" are the same name after unescaping.',
        "HEADER_NOT_JSON",
        _header_text('{%s,"is_seg":true,"is_s\\u0065g":false}' % _ARR),
    ),
    InvalidCase(
        "integer-with-fraction",
        "5.1",
        "array.shape is written [3.0, 4, 5]: an integer member with a fraction.",
        "HEADER_INVALID",
        _header_text('{"schema_version":"1.0","array":{"shape":[3.0,4,5],"dtype":"<i2"}}'),
    ),
    InvalidCase(
        "integer-with-exponent",
        "5.1",
        "array.shape is written [3e0, 4, 5]: an integer member with an exponent.",
        "HEADER_INVALID",
        _header_text('{"schema_version":"1.0","array":{"shape":[3e0,4,5],"dtype":"<i2"}}'),
    ),
    InvalidCase(
        "mismatch-b2nd-dtype-native-order",
        "5.9",
        "The b2nd dtype is =i2 (machine order) for the header's <i2.",
        "FRAME_MISMATCH",
        _b2nd_spelling(b"=i2"),
    ),
    InvalidCase(
        "mismatch-b2nd-dtype-pipe-multibyte",
        "5.9",
        "The b2nd dtype is |i2 for the header's <i2 (| only for 1-byte types).",
        "FRAME_MISMATCH",
        _b2nd_spelling(b"|i2"),
    ),
    InvalidCase(
        "version-trailing-newline",
        "2.2",
        'schema_version is "1.0\\n": patterns match the whole string (Python\'s $ would accept it).',
        "HEADER_INVALID",
        _header_text('{"schema_version":"1.0\\n","array":{"shape":[3,4,5],"dtype":"<i2"}}'),
    ),
    InvalidCase(
        "digest-trailing-newline",
        "5.6",
        "integrity.digest is 64 hex digits and a newline: the pattern matches the whole string.",
        "HEADER_INVALID",
        _header_text('{%s,"integrity":{"algorithm":"sha256","digest":"%s\\n"}}' % (_ARR, "0" * 64)),
    ),
    InvalidCase(
        "newer-minor-known-member-invalid",
        "2.2",
        "schema_version 1.9 with an unknown member, and a negative spacing: known members are still checked.",
        "HEADER_INVALID",
        _header_text(
            '{"schema_version":"1.9","future":{"x":1},"array":{"shape":[3,4,5],"dtype":"<i2"},'
            '"spatial":{"spacing":[-1.0,1.0,1.0]}}'
        ),
    ),
]


# --- MUST rules the readers enforce that no case covered yet (coverage audit)

_BOX = [[0, 1], [0, 2], [0, 3]]
_MAX_CHUNK = 2147483647  # C-Blosc2's chunk limit (spec 4.3, check 6)


def _u1_frame(path: Path) -> None:
    """A 1-D uint8 array of 100 elements in 2 chunks, without ``integrity``."""
    header = {"schema_version": "1.0", "array": {"shape": [100], "dtype": "|u1"}}
    raw_frame(path, np.arange(100, dtype=np.uint8), json_header(header), chunks=(50,), blocks=(10,))


def _u1_chunkshape(chunk: int, block: int) -> Any:
    """The 1-D uint8 file whose b2nd chunkshape and blockshape become ``[chunk]`` and ``[block]``."""

    def build(path: Path) -> None:
        def change(v: list[Any]) -> None:
            v[3], v[4] = [chunk], [block]

        _u1_frame(path)
        patch_b2nd(path, change)

    return build


def _block_above_chunk(path: Path) -> None:
    """Chunks and blocks of 64 uint8 written by C-Blosc2, then the b2nd chunkshape set to [50].

    Every size still agrees (the extended chunk is ceil(50 / 64) * 64 = 64 bytes, 2 chunks of
    100 elements): only 1 <= blockshape <= chunkshape fails.
    """
    header = {"schema_version": "1.0", "array": {"shape": [100], "dtype": "|u1"}}
    raw_frame(path, np.arange(100, dtype=np.uint8), json_header(header), chunks=(64,), blocks=(64,))
    patch_b2nd(path, lambda v: v.__setitem__(3, [50]))


def _header_size_over_limit(path: Path) -> None:
    """The b2nd dtype '<u00...01' (itemsize 1) is padded with zeros until header_size is 1048577."""
    _u1_frame(path)
    (header_size,) = struct.unpack(">i", path.read_bytes()[11:15])
    digits = "0" * (1048577 - header_size) + "1"  # the dtype grows by 1048577 - header_size bytes
    resize_b2nd(path, lambda v: v.__setitem__(6, ("<u" + digits).encode()))
    if frame_sizes(path)[0] != 1048577:
        raise AssertionError("header_size is not 1 MiB + 1")


def _chunk_flag(byte: int, bit: int) -> Any:
    """Set ``bit`` of byte ``byte`` of the first compressed data chunk's header (no ``integrity``)."""

    def build(path: Path) -> None:
        _i16_frame(path)
        at, chunk = datakit.compressed_chunk(path)
        datakit.patch(path, at + byte, bytes([chunk[byte] | bit]))

    return build


def _chunk_bytes(values: dict[int, int], codec: int | None = None) -> Any:
    """Set bytes of the first compressed data chunk's header (and the codec, bits 5-7 of byte 2)."""

    def build(path: Path) -> None:
        _i16_frame(path)
        at, chunk = datakit.compressed_chunk(path)
        if codec is not None:
            datakit.patch(path, at + 2, bytes([chunk[2] & 0x1F | codec << 5]))
        for byte, value in values.items():
            datakit.patch(path, at + byte, bytes([value]))

    return build


def _shuffle_parameter(path: Path) -> None:
    """The first compressed data chunk's shuffle filter gets the parameter 4 (its items are 2 bytes)."""
    _i16_frame(path)
    at, chunk = datakit.compressed_chunk(path)
    slot = list(chunk[16:22]).index(1)
    datakit.patch(path, at + 24 + slot, bytes([4]))


def _runs_unsplit(path: Path) -> None:
    """Blocks of one value each (every stream a run); the first chunk's flags get 0x10 (not split)."""
    data = np.repeat(np.repeat(np.arange(1, 9, dtype=np.int16).reshape(4, 2) * 257, 8, axis=0), 20, axis=1)
    header = {"schema_version": "1.0", "array": {"shape": [32, 40], "dtype": "<i2"}}
    raw_frame(path, data, json_header(header), chunks=(16, 40), blocks=(8, 20))
    at, chunk = datakit.compressed_chunk(path)
    datakit.patch(path, at + 2, bytes([chunk[2] | 0x10]))


def _index_byte(byte: int, value: int) -> Any:
    """Set byte ``byte`` of the chunk index chunk's header."""

    def build(path: Path) -> None:
        _i16_frame(path)
        datakit.patch(path, datakit.section(path).index_at + byte, bytes([value]))

    return build


def _negative_ext_type(path: Path) -> None:
    """The frame header's filter-pipeline fixext16 (element 12) gets the ext type -1; the header is invalid."""
    raw_frame(path, _DATA, json_header({**_HEADER, "is_seg": "yes"}))
    raw = path.read_bytes()
    at = datakit.frame_element_at(raw, 12)
    if raw[at] != 0xD8:
        raise AssertionError("element 12 is not a fixext16")
    patch(path, at + 1, b"\xff")


def _metadata_only_float_size(path: Path) -> None:
    """A metadata-only frame whose chunksize (element 8) is a msgpack float32 instead of an int32."""
    raw_frame(path, np.zeros((0,), dtype=np.uint8), text_header('{"schema_version":"1.0"}'))
    raw = path.read_bytes()
    at = datakit.frame_element_at(raw, 8)
    if raw[at] != 0xD2:
        raise AssertionError("element 8 is not an int32")
    patch(path, at, b"\xca")


def _special_block_size(path: Path) -> None:
    """A stored value-run chunk (kind 3) whose cblocksize is 8 more than the frame's blocksize."""
    from mlarray import MLArray

    with MLArray.create(path, (9, 10), np.int32, fill_value=-7, chunk_size=(4, 8), block_size=(2, 4)) as image:
        image[0:4, 0:8] = np.arange(32, dtype=np.int32).reshape(4, 8)
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        start, entries = section.layout.start, section.entries
    raw = path.read_bytes()
    for entry in entries:
        at = start + entry
        if entry >= 0 and raw[at + 31] >> 4 & 7 == 3:
            blocksize = struct.unpack("<i", raw[at + 8 : at + 12])[0]
            patch(path, at + 8, struct.pack("<i", blocksize + 8))
            return
    raise AssertionError("no stored value-run chunk")


def _bytedelta_zero(path: Path) -> None:
    """An int32 chunk with shuffle then bytedelta; bytedelta's parameter (its item size) set to 0."""
    from mlarray import MLArray

    data = np.cumsum(rng(36).integers(-3, 4, size=(12, 20, 24)), axis=2).astype(np.int32)
    cparams = {"codec": blosc2.Codec.LZ4, "clevel": 5, "filters": [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA]}
    MLArray(data, chunk_size=(8, 16, 16), block_size=(4, 8, 8), cparams=cparams).save(path)
    at, chunk = datakit.compressed_chunk(path)
    slot = list(chunk[16:22]).index(35)
    if chunk[24 + slot] != 4:
        raise AssertionError("bytedelta's parameter is not the item size")
    patch(path, at + 24 + slot, b"\x00")


def _frame_header_leftover(path: Path) -> None:
    """A msgpack nil after the frame header array, counted in header_size (the data section moves with it)."""
    valid_base(path)
    raw = path.read_bytes()
    header_size, frame_size, _ = frame_sizes(path)
    out = bytearray(raw[:header_size] + b"\xc0" + raw[header_size:])
    out[11:15] = struct.pack(">i", header_size + 1)
    out[16:24] = struct.pack(">Q", frame_size + 1)
    path.write_bytes(bytes(out))


def _zero_length_i16(path: Path) -> None:
    header = {"schema_version": "1.0", "array": {"shape": [0], "dtype": "<i2"}}
    raw_frame(path, np.zeros((0,), dtype=np.int16), json_header(header))


def _no_chunks_element5(path: Path) -> None:
    """A zero-length array (N == 0, empty data section) whose frame-header element 5 is 32."""
    _zero_length_i16(path)
    if datakit.section(path).data_size != 0:
        raise AssertionError("element 5 is not 0")
    datakit.set_element5(path, 32)


def _no_chunks_data(path: Path) -> None:
    """A zero-length array (N == 0) whose data section holds 32 bytes (element 5 stays 0)."""
    _zero_length_i16(path)
    sec = datakit.section(path)
    if sec.start != sec.end:
        raise AssertionError("the data section is not empty")
    raw = path.read_bytes()
    out = bytearray(raw[: sec.start] + bytes(32) + raw[sec.start :])
    out[16:24] = struct.pack(">Q", len(out))
    path.write_bytes(bytes(out))


def _stored_special(kind: int) -> Any:
    """A filled int32 array (every chunk a stored value run, kind 3) whose first chunk becomes ``kind``."""

    def build(path: Path) -> None:
        nd = blosc2.full((9, 10), -7, dtype=np.int32, chunks=(4, 8), blocks=(2, 4), urlpath=str(path), mode="w")
        header = {"schema_version": "1.0", "array": {"shape": [9, 10], "dtype": "<i4"}}
        nd.schunk.vlmeta.set_vlmeta("mlarray", json_header(header), typesize=1)
        del nd
        at = datakit.section(path).start + datakit.entries(path)[0]
        raw = path.read_bytes()
        if raw[at + 31] != 0x30:
            raise AssertionError("the first chunk is not a stored value run")
        datakit.patch(path, at + 31, bytes([kind << 4]))

    return build


INVALID += [
    InvalidCase(
        "axis-units-length",
        "5.9",
        "spatial.axis_units has 2 entries for a 3-D array (rule 5.9.2).",
        "HEADER_INVALID",
        _set("spatial.axis_units", ["mm", "mm"]),
    ),
    InvalidCase(
        "axis-units-spatial-count",
        "5.9",
        "A 4-D array with a channel axis: 3 axis_units (one per spatial axis) instead of one per array axis.",
        "HEADER_INVALID",
        channel_first_4d(["mm", "mm", "mm"]),
    ),
    InvalidCase(
        "bbox-scores-length",
        "5.8",
        "bbox has 2 boxes but 1 score (one per box).",
        "HEADER_INVALID",
        _set("bbox", {"bboxes": [_BOX, _BOX], "scores": [0.5]}),
    ),
    InvalidCase(
        "bbox-labels-length",
        "5.8",
        "bbox has 2 boxes but 3 labels (one per box).",
        "HEADER_INVALID",
        _set("bbox", {"bboxes": [_BOX, _BOX], "labels": ["a", "b", 3]}),
    ),
    InvalidCase(
        "layout-chunk-size-length",
        "5.9",
        "layout.chunk_size and block_size have 2 entries for a 3-D array: HEADER_INVALID (step 8), not FRAME_MISMATCH.",
        "HEADER_INVALID",
        _edit(lambda h: h["layout"].update(chunk_size=[4, 8], block_size=[2, 4])),
    ),
    InvalidCase(
        "layout-filter-delta",
        "5.5",
        "layout.filters is ['delta'] (Blosc2's delta breaks block-wise partial reads; not an allowed filter).",
        "HEADER_INVALID",
        _edit(lambda h: h["layout"].update(filters=["delta"])),
    ),
    InvalidCase(
        "integrity-algorithm-md5",
        "5.6",
        "integrity.algorithm is 'md5' (sha256 is the only algorithm of version 1).",
        "HEADER_INVALID",
        _edit(lambda h: h["integrity"].update(algorithm="md5")),
    ),
    InvalidCase(
        "stats-std-negative",
        "5.7",
        "stats.std is -0.5 (std MUST be >= 0).",
        "HEADER_INVALID",
        _set("stats", {"mean": 1.0, "std": -0.5}),
    ),
    InvalidCase(
        "version-trailing-dot",
        "2.2",
        "schema_version '1.': the minor run of digits is empty.",
        "HEADER_INVALID",
        _set("schema_version", "1."),
    ),
    InvalidCase(
        "version-minor-leading-zero",
        "2.2",
        "schema_version '1.01': the minor version has a leading zero (2.1, the schema pattern).",
        "HEADER_INVALID",
        _set("schema_version", "1.01"),
    ),
    InvalidCase(
        "corrupt-b2nd-block-above-chunk",
        "4.3",
        "The b2nd blockshape [64] exceeds the chunkshape [50]; every frame size agrees with them (check 5 alone).",
        "CORRUPT_FRAME",
        _block_above_chunk,
    ),
    InvalidCase(
        "corrupt-b2nd-block-zero",
        "4.3",
        "The b2nd blockshape [2, 0, 4] has a 0 entry (check 5: 1 <= blockshape; no division by it).",
        "CORRUPT_FRAME",
        _b2nd(lambda v: v.__setitem__(4, [2, 0, 4])),
    ),
    InvalidCase(
        "resource-chunk-too-large",
        "4.3",
        "uint8 chunkshape [2^31-1] with blockshape [2]: the extended chunk is 2^31 bytes, over the limit (check 6).",
        "RESOURCE_LIMIT",
        _u1_chunkshape(_MAX_CHUNK, 2),
    ),
    InvalidCase(
        "corrupt-chunk-at-size-limit",
        "4.3",
        "uint8 chunkshape [2^31-1], blockshape [1]: exactly the chunk limit passes check 6, chunksize fails check 8.",
        "CORRUPT_FRAME",
        _u1_chunkshape(_MAX_CHUNK, 1),
    ),
    InvalidCase(
        "corrupt-header-size-over-limit",
        "4.1",
        "header_size is 1048577 (1 MiB + 1) for an otherwise readable frame header (a b2nd dtype padded with zeros).",
        "CORRUPT_FRAME",
        _header_size_over_limit,
    ),
    InvalidCase(
        "corrupt-chunk-flags2-varlen",
        "4.4.4",
        "A data chunk's byte 30 has bit 0x01 (variable-length blocks) set (check 2).",
        "CORRUPT_FRAME",
        _chunk_flag(30, 0x01),
    ),
    InvalidCase(
        "corrupt-chunk-lazy-bit",
        "4.4.4",
        "A data chunk's byte 31 has bit 0x08 (lazy chunk) set (check 2).",
        "CORRUPT_FRAME",
        _chunk_flag(31, 0x08),
    ),
    InvalidCase(
        "corrupt-chunk-instrumented-codec",
        "4.4.4",
        "A data chunk's byte 31 has bit 0x80 (instrumented codec: it decodes to timings) set (check 2).",
        "CORRUPT_FRAME",
        _chunk_flag(31, 0x80),
    ),
    InvalidCase(
        "corrupt-chunk-user-defined-codec",
        "4.4.7",
        "A data chunk names codec 6 (user-defined) with byte 22 = 35 (C-Blosc2's ZFP plugin, which crashed on it).",
        "CORRUPT_FRAME",
        _chunk_bytes({22: 35}, codec=6),
    ),
    InvalidCase(
        "corrupt-chunk-reserved-codec",
        "4.4.7",
        "A data chunk names codec 2 in bits 5-7 of its flags (a reserved code).",
        "CORRUPT_FRAME",
        _chunk_bytes({}, codec=2),
    ),
    InvalidCase(
        "corrupt-chunk-item-size",
        "4.4.4",
        "A data chunk's ctypesize (byte 3) is 1 in an int16 frame (check 3; C-Blosc2 would shuffle and run bytes by it).",
        "CORRUPT_FRAME",
        _chunk_bytes({3: 1}),
    ),
    InvalidCase(
        "corrupt-chunk-filter-parameter",
        "4.4.7",
        "A data chunk's shuffle filter has the parameter 4 (bytes 24-29): C-Blosc2 would shuffle 4-byte items of 2-byte data.",
        "CORRUPT_FRAME",
        _shuffle_parameter,
    ),
    InvalidCase(
        "corrupt-chunk-blocks-leave-gaps",
        "4.4.6",
        "Blocks whose two byte streams are runs; flags bit 0x10 set: one stream per block, the second left between "
        "blocks (rule 3: blocks tile the chunk; C-Blosc2 would spread the first run over the block).",
        "CORRUPT_FRAME",
        _runs_unsplit,
    ),
    InvalidCase(
        "corrupt-index-zeros-long",
        "4.4.3",
        "The chunk index chunk is marked a zeros chunk (byte 31 = 0x10) but keeps its full length.",
        "CORRUPT_FRAME",
        _index_byte(31, 0x10),
    ),
    InvalidCase(
        "corrupt-index-item-size",
        "4.4.4",
        "The chunk index chunk's ctypesize (byte 3) is 4, not 8 (check 3).",
        "CORRUPT_FRAME",
        _index_byte(3, 4),
    ),
    InvalidCase(
        "header-invalid-behind-negative-ext-type",
        "4.2",
        "The frame header's filter-pipeline fixext16 has the ext type -1 (readers skip ext values); the header's "
        'is_seg is "yes": the first failing step is the header\'s.',
        "HEADER_INVALID",
        _negative_ext_type,
    ),
    InvalidCase(
        "corrupt-metadata-only-float-size",
        "4.3",
        "A metadata-only frame whose chunksize (element 8) is a msgpack float32: check 1 comes before check 4.",
        "CORRUPT_FRAME",
        _metadata_only_float_size,
    ),
    InvalidCase(
        "corrupt-special-chunk-block-size",
        "4.4.4",
        "A stored value-run chunk whose cblocksize differs from the frame's blocksize (check 4 holds for special chunks).",
        "CORRUPT_FRAME",
        _special_block_size,
    ),
    InvalidCase(
        "corrupt-chunk-bytedelta-parameter-zero",
        "4.4.7",
        "A chunk's bytedelta parameter (its item size) is 0, not ctypesize (C-Blosc2 then decodes whole chunks only).",
        "CORRUPT_FRAME",
        _bytedelta_zero,
    ),
    InvalidCase(
        "corrupt-chunk-plugin-filter",
        "4.4.7",
        "A data chunk's last filter slot (byte 21) holds 33 (C-Blosc2's ndmean plugin), not a listed filter.",
        "CORRUPT_FRAME",
        _chunk_bytes({21: 33}),
    ),
    InvalidCase(
        "corrupt-frame-header-leftover",
        "4.2",
        "One msgpack nil after the frame header array, inside header_size: bytes left over.",
        "CORRUPT_FRAME",
        _frame_header_leftover,
    ),
    InvalidCase(
        "corrupt-metalayer-count-mismatch",
        "4.2",
        "The fixed metalayer section maps 1 name (b2nd) but holds 2 contents.",
        "CORRUPT_FRAME",
        _fixed_section([(_B2ND, _OFFSET)], 2),
    ),
    InvalidCase(
        "corrupt-vlmetalayer-count-mismatch",
        "4.5",
        "The variable-length metalayer section maps 1 name (mlarray) but holds 2 contents.",
        "CORRUPT_FRAME",
        _vl_section([(_MLARRAY, _OFFSET)], 2),
    ),
    InvalidCase(
        "corrupt-no-chunks-element5",
        "4.4.1",
        "A zero-length array (N == 0, empty data section) whose frame-header element 5 is 32, not 0.",
        "CORRUPT_FRAME",
        _no_chunks_element5,
    ),
    InvalidCase(
        "corrupt-no-chunks-data",
        "4.4.1",
        "A zero-length array (N == 0) whose data section is 32 zero bytes instead of empty.",
        "CORRUPT_FRAME",
        _no_chunks_data,
    ),
    InvalidCase(
        "corrupt-stored-special-uninit",
        "4.4.3",
        "A stored data chunk that is a special-value chunk of kind 4 (uninitialised).",
        "CORRUPT_FRAME",
        _stored_special(4),
    ),
    InvalidCase(
        "corrupt-stored-special-kind-7",
        "4.4.3",
        "A stored data chunk that is a special-value chunk of kind 7 (no such value).",
        "CORRUPT_FRAME",
        _stored_special(7),
    ),
    # --- integer members compare exactly (section 5.1), added with the 2**53 review
    InvalidCase(
        "layout-block-above-chunk-beyond-2-53",
        "5.1",
        "layout.block_size 2**53 + 1 against chunk_size 2**53: larger, although both round to the same binary64 value.",
        "HEADER_INVALID",
        _edit(lambda h: h["layout"].update(chunk_size=[2**53, 10, 12], block_size=[2**53 + 1, 10, 12])),
    ),
]
