"""Invalid cases: the data section (spec 4.4) and the metalayer sections (4.2, 4.3, 4.5), added with issue 12."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import blosc2
import datakit
import numpy as np
from casekit import (
    InvalidCase,
    json_header,
    raw_frame,
    valid_base,
)
from invalidkit import (
    B2ND_NAME,
    DATA,
    MLARRAY_NAME,
    MSGPACK_IDX,
    MSGPACK_OFFSET,
    fixed_section,
    i16_frame,
    store_vlmeta_content,
    vl_section,
)

# --- the data section (spec 4.4), added with issue 12; built on raw bytes with datakit


def _block_start(change: Any) -> Any:
    """Replace the block-start table of the first compressed data chunk by ``change(starts, cbytes)``."""

    def build(path: Path) -> None:
        i16_frame(path)
        at, chunk = datakit.compressed_chunk(path)
        starts = change(datakit.block_starts(chunk), len(chunk))
        datakit.patch(path, at + 32, struct.pack(f"<{len(starts)}i", *starts))

    return build


def _stream_size(path: Path) -> None:
    """The first stream of block 1 of a compressed chunk declares more bytes than the chunk has."""
    i16_frame(path)
    at, chunk = datakit.compressed_chunk(path)
    start = datakit.block_starts(chunk)[1]
    datakit.patch(path, at + start, struct.pack("<i", len(chunk)))


def _second_stream_size(path: Path) -> None:
    """Block 1 of a chunk split into one stream per byte: its second stream declares more bytes than the chunk has."""
    i16_frame(path)
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
        i16_frame(path, integrity=integrity)
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
        i16_frame(path)
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
        i16_frame(path)
        datakit.set_element5(path, datakit.section(path).data_size + delta)

    return build


def _chunk_blocksize(path: Path) -> None:
    """A data chunk's header declares another block size than the frame (and its blocks say)."""
    i16_frame(path)
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
    raw_frame(path, DATA, None)
    store_vlmeta_content(path, bytes(chunk))


DATA_SECTION: list[InvalidCase] = [
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


def _b2nd_trailing(path: Path) -> None:
    """The b2nd content is the 7-element array followed by one more msgpack value (nil)."""
    valid_base(path)
    content = datakit.b2nd_content(path)
    datakit.replace_fixed_section(
        path, datakit.layer_section(MSGPACK_IDX, [(datakit.fixstr("b2nd"), MSGPACK_OFFSET)], [content + b"\xc0"])
    )


_NESTED_9 = b"\x91" * 7 + b"\x90"  # the trailer is level 1: arrays at levels 2..9

SECTIONS: list[InvalidCase] = [
    InvalidCase(
        "corrupt-metalayer-b2nd-twice",
        "4.2",
        "The fixed metalayer section names b2nd twice (with two identical contents).",
        "CORRUPT_FRAME",
        fixed_section([(B2ND_NAME, MSGPACK_OFFSET), (B2ND_NAME, MSGPACK_OFFSET)], 2),
    ),
    InvalidCase(
        "corrupt-vlmetalayer-mlarray-twice",
        "4.5",
        "The variable-length metalayer section names mlarray twice (with two identical headers).",
        "CORRUPT_FRAME",
        vl_section([(MLARRAY_NAME, MSGPACK_OFFSET), (MLARRAY_NAME, MSGPACK_OFFSET)], 2),
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
        vl_section([(MLARRAY_NAME, MSGPACK_OFFSET)], 1, idx=b"\xc0"),
    ),
    InvalidCase(
        "corrupt-metalayer-offset-string",
        "4.2",
        "The offset of b2nd in the fixed metalayer section is a string, not an integer.",
        "CORRUPT_FRAME",
        fixed_section([(B2ND_NAME, datakit.fixstr("0"))], 1),
    ),
    InvalidCase(
        "corrupt-trailer-nesting-9",
        "4.5",
        "The trailer's version element is arrays nested down to level 9 (the limit is 8).",
        "CORRUPT_FRAME",
        vl_section([(MLARRAY_NAME, MSGPACK_OFFSET)], 1, version=_NESTED_9),
    ),
]
