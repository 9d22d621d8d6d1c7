"""Invalid cases: spellings settled with issue 12, and MUST rules no case covered before the coverage audit."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import blosc2
import datakit
import numpy as np
from casekit import (
    InvalidCase,
    channel_first_4d,
    frame_sizes,
    json_header,
    patch,
    patch_b2nd,
    raw_frame,
    resize_b2nd,
    rng,
    text_header,
    valid_base,
)
from invalidkit import (
    B2ND_NAME,
    DATA,
    HEADER,
    MLARRAY_NAME,
    MSGPACK_OFFSET,
    b2nd_changed,
    edited,
    field_set,
    fixed_section,
    frame_with_header_text,
    i16_frame,
    vl_section,
)

# --- open points settled with issue 12: geometry, JSON, integer and dtype spellings, patterns

_ARR = '"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"}'


def _b2nd_spelling(dtype: bytes) -> Any:
    """A valid int16 file whose b2nd dtype is spelled ``dtype`` (the header keeps ``<i2``)."""

    def build(path: Path) -> None:
        raw_frame(path, DATA, json_header(HEADER))
        resize_b2nd(path, lambda v: v.__setitem__(6, dtype))

    return build


SPELLINGS: list[InvalidCase] = [
    InvalidCase(
        "bbox-axes-without-labels",
        "6.2",
        "A 3-D array without axis_labels or geometry (every axis spatial) with 2-axis boxes.",
        "HEADER_INVALID",
        frame_with_header_text('{%s,"bbox":{"bboxes":[[[0,1],[0,2]]]}}' % _ARR),
    ),
    InvalidCase(
        "affine-nearly-singular",
        "6.5",
        "The affine's first two axis vectors are 1e-12 rad apart: determinant not 0, yet singular (6.5).",
        "HEADER_INVALID",
        frame_with_header_text('{%s,"spatial":{"affine":[[1,1,0,0],[0,1e-12,0,0],[0,0,1,0],[0,0,0,1]]}}' % _ARR),
    ),
    InvalidCase(
        "header-repeated-key-escaped",
        "4.7",
        'The member names "is_seg" and "is_s\\u0065g" are the same name after unescaping.',
        "HEADER_NOT_JSON",
        frame_with_header_text('{%s,"is_seg":true,"is_s\\u0065g":false}' % _ARR),
    ),
    InvalidCase(
        "integer-with-fraction",
        "5.1",
        "array.shape is written [3.0, 4, 5]: an integer member with a fraction.",
        "HEADER_INVALID",
        frame_with_header_text('{"schema_version":"1.0","array":{"shape":[3.0,4,5],"dtype":"<i2"}}'),
    ),
    InvalidCase(
        "integer-with-exponent",
        "5.1",
        "array.shape is written [3e0, 4, 5]: an integer member with an exponent.",
        "HEADER_INVALID",
        frame_with_header_text('{"schema_version":"1.0","array":{"shape":[3e0,4,5],"dtype":"<i2"}}'),
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
        frame_with_header_text('{"schema_version":"1.0\\n","array":{"shape":[3,4,5],"dtype":"<i2"}}'),
    ),
    InvalidCase(
        "digest-trailing-newline",
        "5.6",
        "integrity.digest is 64 hex digits and a newline: the pattern matches the whole string.",
        "HEADER_INVALID",
        frame_with_header_text('{%s,"integrity":{"algorithm":"sha256","digest":"%s\\n"}}' % (_ARR, "0" * 64)),
    ),
    InvalidCase(
        "newer-minor-known-member-invalid",
        "2.2",
        "schema_version 1.9 with an unknown member, and a negative spacing: known members are still checked.",
        "HEADER_INVALID",
        frame_with_header_text(
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
        i16_frame(path)
        at, chunk = datakit.compressed_chunk(path)
        datakit.patch(path, at + byte, bytes([chunk[byte] | bit]))

    return build


def _chunk_bytes(values: dict[int, int], codec: int | None = None) -> Any:
    """Set bytes of the first compressed data chunk's header (and the codec, bits 5-7 of byte 2)."""

    def build(path: Path) -> None:
        i16_frame(path)
        at, chunk = datakit.compressed_chunk(path)
        if codec is not None:
            datakit.patch(path, at + 2, bytes([chunk[2] & 0x1F | codec << 5]))
        for byte, value in values.items():
            datakit.patch(path, at + byte, bytes([value]))

    return build


def _shuffle_parameter(path: Path) -> None:
    """The first compressed data chunk's shuffle filter gets the parameter 4 (its items are 2 bytes)."""
    i16_frame(path)
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
        i16_frame(path)
        datakit.patch(path, datakit.section(path).index_at + byte, bytes([value]))

    return build


def _negative_ext_type(path: Path) -> None:
    """The frame header's filter-pipeline fixext16 (element 12) gets the ext type -1; the header is invalid."""
    raw_frame(path, DATA, json_header({**HEADER, "is_seg": "yes"}))
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


AUDIT: list[InvalidCase] = [
    InvalidCase(
        "axis-units-length",
        "5.9",
        "spatial.axis_units has 2 entries for a 3-D array (rule 5.9.2).",
        "HEADER_INVALID",
        field_set("spatial.axis_units", ["mm", "mm"]),
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
        field_set("bbox", {"bboxes": [_BOX, _BOX], "scores": [0.5]}),
    ),
    InvalidCase(
        "bbox-labels-length",
        "5.8",
        "bbox has 2 boxes but 3 labels (one per box).",
        "HEADER_INVALID",
        field_set("bbox", {"bboxes": [_BOX, _BOX], "labels": ["a", "b", 3]}),
    ),
    InvalidCase(
        "layout-chunk-size-length",
        "5.9",
        "layout.chunk_size and block_size have 2 entries for a 3-D array: HEADER_INVALID (step 8), not FRAME_MISMATCH.",
        "HEADER_INVALID",
        edited(lambda h: h["layout"].update(chunk_size=[4, 8], block_size=[2, 4])),
    ),
    InvalidCase(
        "layout-filter-delta",
        "5.5",
        "layout.filters is ['delta'] (Blosc2's delta breaks block-wise partial reads; not an allowed filter).",
        "HEADER_INVALID",
        edited(lambda h: h["layout"].update(filters=["delta"])),
    ),
    InvalidCase(
        "integrity-algorithm-md5",
        "5.6",
        "integrity.algorithm is 'md5' (sha256 is the only algorithm of version 1).",
        "HEADER_INVALID",
        edited(lambda h: h["integrity"].update(algorithm="md5")),
    ),
    InvalidCase(
        "stats-std-negative",
        "5.7",
        "stats.std is -0.5 (std MUST be >= 0).",
        "HEADER_INVALID",
        field_set("stats", {"mean": 1.0, "std": -0.5}),
    ),
    InvalidCase(
        "version-trailing-dot",
        "2.2",
        "schema_version '1.': the minor run of digits is empty.",
        "HEADER_INVALID",
        field_set("schema_version", "1."),
    ),
    InvalidCase(
        "version-minor-leading-zero",
        "2.2",
        "schema_version '1.01': the minor version has a leading zero (2.1, the schema pattern).",
        "HEADER_INVALID",
        field_set("schema_version", "1.01"),
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
        b2nd_changed(lambda v: v.__setitem__(4, [2, 0, 4])),
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
        fixed_section([(B2ND_NAME, MSGPACK_OFFSET)], 2),
    ),
    InvalidCase(
        "corrupt-vlmetalayer-count-mismatch",
        "4.5",
        "The variable-length metalayer section maps 1 name (mlarray) but holds 2 contents.",
        "CORRUPT_FRAME",
        vl_section([(MLARRAY_NAME, MSGPACK_OFFSET)], 2),
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
        edited(lambda h: h["layout"].update(chunk_size=[2**53, 10, 12], block_size=[2**53 + 1, 10, 12])),
    ),
]
