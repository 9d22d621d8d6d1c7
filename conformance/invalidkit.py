"""Builders and headers the invalid cases share (``invalid_*_cases.py``).

Each builder returns a function that writes one broken file at a path: a valid base
file (``casekit.valid_base``) or a raw frame, then exactly one change.
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

DATA = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
HEADER = {"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<i2"}}
SCALING = {"slope": 1.5, "intercept": -2.0, "raw_dtype": "<u2", "stored": "physical"}


def file_bytes(content: bytes) -> Any:
    def build(path: Path) -> None:
        path.write_bytes(content)

    return build


def frame_with_header_bytes(raw: bytes) -> Any:
    """A valid frame whose header bytes are ``raw``."""

    def build(path: Path) -> None:
        raw_frame(path, DATA, raw)

    return build


def frame_with_header_text(text: str | bytes) -> Any:
    return frame_with_header_bytes(text_header(text))


def edited(change: Any, **base: Any) -> Any:
    """A valid file whose header object is then changed by ``change`` (data and digest untouched)."""

    def build(path: Path) -> None:
        valid_base(path, **base)
        edit_header(path, change)

    return build


def field_set(dotted: str, value: Any) -> Any:
    def change(header: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = header
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edited(change)


def truncated(keep: Any) -> Any:
    """A valid file cut to ``keep(size)`` bytes."""

    def build(path: Path) -> None:
        valid_base(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: keep(len(raw))])

    return build


def appended(extra: bytes) -> Any:
    def build(path: Path) -> None:
        valid_base(path)
        path.write_bytes(path.read_bytes() + extra)

    return build


def patched(offset_of: Any, data: bytes) -> Any:
    def build(path: Path) -> None:
        valid_base(path)
        patch(path, offset_of(path), data)

    return build


def with_metalayers(meta: dict[str, bytes]) -> Any:
    def build(path: Path) -> None:
        raw_frame(path, DATA, json_header(HEADER), meta=meta)

    return build


def schunk_frame(path: Path) -> None:
    import blosc2

    schunk = blosc2.SChunk(chunksize=40, data=DATA.tobytes(), urlpath=str(path), mode="w", cparams={"typesize": 2})
    schunk.vlmeta.set_vlmeta("mlarray", json_header(HEADER), typesize=1)
    del schunk


def no_header(vlmeta: dict[str, bytes]) -> Any:
    def build(path: Path) -> None:
        raw_frame(path, DATA, None, vlmeta=vlmeta)

    return build


def header_chunk_padded(path: Path) -> None:
    """The header chunk followed by bytes its Blosc header does not account for."""
    import blosc2

    raw_frame(path, DATA, None)
    chunk = blosc2.compress2(json_header(HEADER), typesize=1)
    store_vlmeta_content(path, chunk + b"\x00\x00\x00\x00")


def store_vlmeta_content(path: Path, content: bytes) -> None:
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


def corrupt_first_chunk(offset: int, value: bytes) -> Any:
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


def wrong_digest(path: Path) -> None:
    valid_base(path)
    header = stored_header(path)
    digest = header["integrity"]["digest"]
    header["integrity"]["digest"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    set_header_bytes(path, json_header(header))


def metadata_claim_with_data(path: Path) -> None:
    raw_frame(path, DATA, json_header({"schema_version": "1.0", "array": None}))


def b2nd_changed(change: Any) -> Any:
    def build(path: Path) -> None:
        valid_base(path)
        patch_b2nd(path, change)

    return build


def b2nd_dtype(dtype: bytes) -> Any:
    """A valid file whose b2nd dtype is ``dtype`` (any length: the frame header grows or shrinks)."""

    def build(path: Path) -> None:
        valid_base(path)
        resize_b2nd(path, lambda v: v.__setitem__(6, dtype))

    return build


def big_header(path: Path) -> None:
    text = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"pad":"' + " " * (17 << 20) + '"}}'
    raw_frame(path, DATA, text_header(text))


def field_deleted(dotted: str) -> Any:
    def change(header: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = header
        for key in parents:
            node = node[key]
        del node[last]

    return edited(change)


def special_header_chunk(value: Any) -> Any:
    """A frame whose header chunk is a Blosc2 special-value chunk (made by C-Blosc2 itself)."""

    def build(path: Path) -> None:
        schunk = blosc2.SChunk(chunksize=64, cparams={"typesize": 1})
        schunk.fill_special(64, value)
        chunk = schunk.get_chunk(0)
        if len(chunk) != 32 or chunk[31] & 0x70 == 0:
            raise AssertionError("C-Blosc2 did not make a special-value chunk")
        raw_frame(path, DATA, None)
        store_vlmeta_content(path, chunk)

    return build


def nested_extra(levels: int) -> str:
    """A header whose deepest container, an object inside ``extra``, is at nesting level ``levels``.

    The header object is level 1, ``extra`` level 2, then ``levels - 3`` arrays, then the object.
    """
    inner = "[" * (levels - 3) + '{"leaf":1}' + "]" * (levels - 3)
    return '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"deep":' + inner + "}}"


HEADER_NAN = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"spatial":{"spacing":[NaN,1.0,1.0]}}'
HEADER_INF = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"source":{"max":Infinity}}'
HEADER_DUP = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"is_seg":true,"is_seg":false}'
HEADER_OVERFLOW = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"spatial":{"spacing":[1e400,1,1]}}'
HEADER_BIG_INT = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"count":1' + "0" * 400 + "}}"
HEADER_HUGE_INT = (
    '{"schema_version":"1.1","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"count":-1' + "0" * 4999 + "}}"
)
HEADER_LONE_HIGH = (
    '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"extra":{"note":"before \\ud800\\u0041 after"}}'
)
HEADER_LONE_LOW = '{"schema_version":"1.0","array":{"shape":[3,4,5],"dtype":"<i2"},"source":{"\\udc00":"name"}}'
PICKLED_HEADER = pickle.dumps(HEADER, protocol=4)
SHEARED_DIRECTION = [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def i16_frame(path: Path, *, integrity: bool = False) -> None:
    """A (32, 40) int16 array in 2 compressed chunks of 4 blocks, without ``integrity`` unless asked."""
    data = ((np.arange(1280, dtype=np.int16) // 40) * 3).reshape(32, 40)
    header = {"schema_version": "1.0", "array": {"shape": [32, 40], "dtype": "<i2"}}
    raw_frame(path, data, json_header(header), chunks=(16, 40), blocks=(8, 20))
    if integrity:
        from mlarray.storage.frame import data_digest

        header["integrity"] = {"algorithm": "sha256", "digest": data_digest(path)}
        set_header_bytes(path, json_header(header))


# msgpack pieces of the metalayer sections (spec 4.2, 4.3, 4.5)
MSGPACK_OFFSET = b"\xd2" + struct.pack(">i", 0)
MSGPACK_IDX = b"\xcd\x00\x00"
B2ND_NAME = datakit.fixstr("b2nd")
MLARRAY_NAME = datakit.fixstr("mlarray")


def fixed_section(names: list[tuple[bytes, bytes]], count: int, idx: bytes = MSGPACK_IDX) -> Any:
    """A valid file whose fixed metalayer section is rebuilt with ``names`` and ``count`` b2nd contents."""

    def build(path: Path) -> None:
        valid_base(path)
        content = datakit.b2nd_content(path)
        datakit.replace_fixed_section(path, datakit.layer_section(idx, names, [content] * count))

    return build


def vl_section(names: list[tuple[bytes, bytes]], count: int, idx: bytes = MSGPACK_IDX, version: bytes = b"\x00") -> Any:
    """A valid file whose trailer is rebuilt with ``names`` and ``count`` copies of the header chunk."""

    def build(path: Path) -> None:
        valid_base(path)
        content = datakit.vlmeta_content(path)
        datakit.replace_trailer(path, version, datakit.layer_section(idx, names, [content] * count))

    return build


def prefix_field(offset: int) -> Any:
    return lambda path: offset
