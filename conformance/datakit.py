"""Tools for cases that break the data section (spec 4.4): find and patch chunks, entries, element 5.

The data section is patched on its raw bytes, as spec section 4.4 lays it out: the chunk
index at ``header_size`` + frame-header element 5, little-endian int64 entries counting
from ``header_size``, and 32-byte little-endian Blosc chunk headers. Used only by the case
builders.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import msgpack


@dataclass(frozen=True)
class Section:
    start: int  # header_size
    end: int  # frame_size - trailer_len
    data_size: int  # frame-header element 5
    element5_at: int  # file offset of element 5's msgpack int64 payload

    @property
    def index_at(self) -> int:
        return self.start + self.data_size


def section(path: Path) -> Section:
    raw = path.read_bytes()
    header_size = struct.unpack(">i", raw[11:15])[0]
    frame_size = struct.unpack(">Q", raw[16:24])[0]
    trailer_len = struct.unpack(">I", raw[frame_size - 22 : frame_size - 18])[0]
    unpacker = msgpack.Unpacker(io.BytesIO(raw[:header_size]), raw=True)
    unpacker.read_array_header()
    for _ in range(5):
        unpacker.skip()
    at = unpacker.tell()
    if raw[at] != 0xD3:
        raise ValueError("element 5 is not a msgpack int64")
    data_size = struct.unpack(">q", raw[at + 1 : at + 9])[0]
    return Section(header_size, frame_size - trailer_len, data_size, at + 1)


def entries(path: Path) -> list[int]:
    """The index entries of an index chunk stored uncompressed or as a value run."""
    raw = path.read_bytes()
    sec = section(path)
    chunk = raw[sec.index_at : sec.end]
    nbytes = struct.unpack("<i", chunk[4:8])[0]
    if chunk[31] >> 4 & 7 == 3:
        return list(struct.unpack("<q", chunk[32:40])) * (nbytes // 8)
    if not chunk[2] & 0x02:
        raise ValueError("the index chunk is compressed")
    return list(struct.unpack(f"<{nbytes // 8}q", chunk[32 : 32 + nbytes]))


def set_entry(path: Path, number: int, value: int) -> None:
    """Overwrite entry ``number`` of an uncompressed index chunk (little-endian int64)."""
    sec = section(path)
    entries(path)  # refuses a compressed index
    _patch(path, sec.index_at + 32 + 8 * number, struct.pack("<q", value))


def set_value_run_entry(path: Path, value: int) -> None:
    """Overwrite the repeated entry of a value-run index chunk (every chunk gets ``value``)."""
    sec = section(path)
    raw = path.read_bytes()
    if raw[sec.index_at + 31] >> 4 & 7 != 3:
        raise ValueError("the index chunk is not a value run")
    _patch(path, sec.index_at + 32, struct.pack("<q", value))


def set_element5(path: Path, value: int) -> None:
    _patch(path, section(path).element5_at, struct.pack(">q", value))


def compressed_chunk(path: Path) -> tuple[int, bytes]:
    """File offset and bytes of the first stored chunk that is compressed (has a block-start table)."""
    raw = path.read_bytes()
    sec = section(path)
    for entry in entries(path):
        if entry < 0:
            continue
        at = sec.start + entry
        cbytes = struct.unpack("<i", raw[at + 12 : at + 16])[0]
        chunk = raw[at : at + cbytes]
        if not chunk[2] & 0x02 and not chunk[31] & 0x70:
            return at, chunk
    raise ValueError("no compressed chunk")


def block_starts(chunk: bytes) -> list[int]:
    nbytes, blocksize = struct.unpack("<ii", chunk[4:12])
    nblocks = -(-nbytes // blocksize)
    return list(struct.unpack(f"<{nblocks}i", chunk[32 : 32 + 4 * nblocks]))


def _patch(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at : at + len(data)] = data
    path.write_bytes(bytes(raw))


def patch(path: Path, at: int, data: bytes) -> None:
    _patch(path, at, data)


# --- metalayer sections and trailers written byte by byte (spec 4.2, 4.5)


def fixstr(text: str) -> bytes:
    raw = text.encode()
    return bytes([0xA0 | len(raw)]) + raw


def bin32(content: bytes) -> bytes:
    return b"\xc6" + struct.pack(">I", len(content)) + content


def layer_section(idx: bytes, names: list[tuple[bytes, bytes]], contents: list[bytes]) -> bytes:
    """``[idx, {name: offset, ...}, [content, ...]]`` from encoded parts (names may repeat)."""
    out = b"\x93" + idx + b"\xde" + struct.pack(">H", len(names))
    out += b"".join(name + offset for name, offset in names)
    return out + b"\xdc" + struct.pack(">H", len(contents)) + b"".join(bin32(c) for c in contents)


def replace_fixed_section(path: Path, section_bytes: bytes) -> None:
    """Replace the frame header's last element (the fixed metalayer section); sizes follow."""
    raw = path.read_bytes()
    header_size = struct.unpack(">i", raw[11:15])[0]
    unpacker = msgpack.Unpacker(io.BytesIO(raw[:header_size]), raw=True)
    count = unpacker.read_array_header()
    for _ in range(count - 1):
        unpacker.skip()
    at = unpacker.tell()
    out = bytearray(raw[:at] + section_bytes + raw[header_size:])
    out[11:15] = struct.pack(">i", at + len(section_bytes))
    out[16:24] = struct.pack(">Q", len(out))
    path.write_bytes(bytes(out))


def replace_trailer(path: Path, version: bytes, section_bytes: bytes) -> None:
    """Rewrite the trailer as ``[version, section, trailer_len, fingerprint]`` from encoded parts."""
    raw = path.read_bytes()
    frame_size = struct.unpack(">Q", raw[16:24])[0]
    trailer_len = struct.unpack(">I", raw[frame_size - 22 : frame_size - 18])[0]
    fingerprint = raw[frame_size - 18 : frame_size]
    new_len = 1 + len(version) + len(section_bytes) + 5 + len(fingerprint)
    out = bytearray(raw[: frame_size - trailer_len] + b"\x94" + version + section_bytes)
    out += b"\xce" + struct.pack(">I", new_len) + fingerprint
    out[16:24] = struct.pack(">Q", len(out))
    path.write_bytes(bytes(out))


def vlmeta_content(path: Path, name: bytes = b"mlarray") -> bytes:
    raw = path.read_bytes()
    frame_size = struct.unpack(">Q", raw[16:24])[0]
    trailer_len = struct.unpack(">I", raw[frame_size - 22 : frame_size - 18])[0]
    unpacker = msgpack.Unpacker(io.BytesIO(raw[frame_size - trailer_len :]), raw=True)
    unpacker.read_array_header()
    unpacker.skip()
    _idx, names, contents = unpacker.unpack()
    return bytes(contents[list(names).index(name)])


def b2nd_content(path: Path) -> bytes:
    raw = path.read_bytes()
    header_size = struct.unpack(">i", raw[11:15])[0]
    fields = msgpack.unpackb(raw[:header_size], raw=True, strict_map_key=False)
    return bytes(fields[-1][2][list(fields[-1][1]).index(b"b2nd")])


def frame_element_at(raw: bytes, k: int) -> int:
    """File offset of frame-header element ``k`` (its msgpack type byte)."""
    unpacker = msgpack.Unpacker(io.BytesIO(raw[: struct.unpack(">i", raw[11:15])[0]]), raw=True)
    unpacker.read_array_header()
    for _ in range(k):
        unpacker.skip()
    return int(unpacker.tell())
