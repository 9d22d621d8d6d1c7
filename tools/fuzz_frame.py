"""A byte-level map of a valid ``.mla`` file, so the fuzzer can aim its mutations.

The fuzzer (``tools/fuzz.py``) mutates *valid* files. Random byte noise mostly hits
the compressed chunks; to reach the interesting code paths it must cut the file at
structural boundaries, flip bytes inside each region, patch declared sizes in place
and rebuild metalayer sections. This module finds those places: it walks the frame
header and trailer as msgpack (with its own span parser, so every object's start and
end offset is known) and the data section as a sequence of Blosc chunks.

It only ever parses *valid* seed files the fuzzer wrote itself; it is not a reader of
untrusted input and must not be used as one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PREFIX_LEN = 24
TRAILER_TAIL = 23
CHUNK_HEADER = 32
"""Length of an extended Blosc2 chunk header (sizes at bytes 4, 8, 12, little-endian int32)."""

FRAME_FIELDS = (
    "magic",
    "header_size",
    "frame_size",
    "flags",
    "nbytes",
    "cbytes",
    "typesize",
    "blocksize",
    "chunksize",
    "nthreads_comp",
    "nthreads_decomp",
    "has_vlmeta",
    "filters",
    "metalayers",
)
"""Names of the elements of the Blosc2 frame header array, in order."""

B2ND_FIELDS = ("version", "ndim", "shape", "chunks", "blocks", "dtype_format", "dtype")


@dataclass
class Node:
    """One msgpack object: ``[start, end)`` in the buffer, its type byte and its children."""

    start: int
    end: int
    tag: int
    body: int
    """Offset of the first byte after the type byte and length fields."""
    children: list[Node] = field(default_factory=list)

    def width(self) -> int:
        """Bytes of the value after the tag (for fixed-size integers)."""
        return self.end - self.body


_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_FIXED.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def parse(buf: bytes, pos: int = 0) -> Node:
    """Parse the msgpack object starting at ``pos`` and return its span tree."""
    tag = buf[pos]
    if tag <= 0x7F or tag >= 0xE0:
        return Node(pos, pos + 1, tag, pos + 1)
    if 0x80 <= tag <= 0x8F:
        return _container(buf, pos, tag, pos + 1, 2 * (tag & 0x0F))
    if 0x90 <= tag <= 0x9F:
        return _container(buf, pos, tag, pos + 1, tag & 0x0F)
    if 0xA0 <= tag <= 0xBF:
        return Node(pos, pos + 1 + (tag & 0x1F), tag, pos + 1)
    if tag in _FIXED:
        return Node(pos, pos + 1 + _FIXED[tag], tag, pos + 1)
    if tag in _FIXEXT:
        return Node(pos, pos + 2 + _FIXEXT[tag], tag, pos + 2)
    if tag in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB):
        width = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}[tag]
        length = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
        return Node(pos, pos + 1 + width + length, tag, pos + 1 + width)
    if tag in (0xC7, 0xC8, 0xC9):
        width = {0xC7: 1, 0xC8: 2, 0xC9: 4}[tag]
        length = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
        return Node(pos, pos + 2 + width + length, tag, pos + 2 + width)
    if tag in (0xDC, 0xDD, 0xDE, 0xDF):
        width = 2 if tag in (0xDC, 0xDE) else 4
        count = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
        return _container(buf, pos, tag, pos + 1 + width, count * (2 if tag >= 0xDE else 1))
    raise ValueError(f"unknown msgpack tag 0x{tag:02x} at {pos}")


def _container(buf: bytes, pos: int, tag: int, body: int, count: int) -> Node:
    children = []
    cursor = body
    for _ in range(count):
        child = parse(buf, cursor)
        children.append(child)
        cursor = child.end
    return Node(pos, cursor, tag, body, children)


@dataclass
class Section:
    """A ``[idx, {name: offset}, [content, ...]]`` metalayer section."""

    node: Node
    names: list[str]
    offsets: list[Node]
    contents: list[Node]
    """The ``bin`` nodes; ``content.body`` is where the metalayer bytes start."""


def _section(buf: bytes, node: Node) -> Section:
    idx_map, contents = node.children[1], node.children[2]
    names = [buf[k.body : k.end].decode() for k in idx_map.children[0::2]]
    return Section(node, names, idx_map.children[1::2], contents.children)


@dataclass
class Chunk:
    """A Blosc chunk stored in the data section (or the header chunk in the trailer)."""

    name: str
    start: int
    end: int


@dataclass
class FrameMap:
    """Where everything is in one valid frame."""

    data: bytes
    header_size: int
    frame_size: int
    trailer_len: int
    header: Node
    fields: dict[str, Node]
    meta: Section
    b2nd: dict[str, Node]
    """The b2nd content's elements, parsed at their absolute file offsets."""
    chunks: list[Chunk]
    """Data chunks in file order, then the chunk index (named ``index``)."""
    trailer: Node
    vlmeta: Section

    @property
    def trailer_start(self) -> int:
        return self.frame_size - self.trailer_len

    def vlmeta_content(self, name: str = "mlarray") -> Node:
        return self.vlmeta.contents[self.vlmeta.names.index(name)]

    def boundaries(self) -> dict[str, int]:
        """Every structural boundary worth cutting the file at, by name."""
        out: dict[str, int] = {"prefix_end": PREFIX_LEN, "header_size": self.header_size}
        for name, node in self.fields.items():
            out[f"field.{name}"] = node.start
        sec = self.meta.node
        out["metalayers.start"] = sec.start
        for i, (name, content) in enumerate(zip(self.meta.names, self.meta.contents, strict=True)):
            out[f"metalayer{i}.{name}.start"] = content.start
            out[f"metalayer{i}.{name}.body"] = content.body
        for name, node in self.b2nd.items():
            out[f"b2nd.{name}"] = node.start
        for chunk in self.chunks:
            out[f"{chunk.name}.start"] = chunk.start
            out[f"{chunk.name}.after_header"] = chunk.start + CHUNK_HEADER
            out[f"{chunk.name}.middle"] = (chunk.start + chunk.end) // 2
        out["trailer.start"] = self.trailer_start
        for i, child in enumerate(self.trailer.children):
            out[f"trailer.el{i}"] = child.start
        for i, (name, content) in enumerate(zip(self.vlmeta.names, self.vlmeta.contents, strict=True)):
            out[f"vlmeta{i}.{name}.start"] = content.start
            out[f"vlmeta{i}.{name}.body"] = content.body
            out[f"vlmeta{i}.{name}.after_chunk_header"] = content.body + CHUNK_HEADER
            out[f"vlmeta{i}.{name}.middle"] = (content.body + content.end) // 2
        out["tail23"] = self.frame_size - TRAILER_TAIL
        out["tail22"] = self.frame_size - TRAILER_TAIL + 1
        out["fingerprint"] = self.frame_size - 16
        out["end_minus_1"] = self.frame_size - 1
        return out

    def regions(self) -> dict[str, tuple[int, int]]:
        """Named byte ranges ``[start, end)`` to flip bytes in."""
        first_layer = self.meta.contents[0].body if self.meta.contents else self.meta.node.end
        out: dict[str, tuple[int, int]] = {
            "prefix": (0, PREFIX_LEN),
            "frame_fields": (PREFIX_LEN, self.meta.node.start),
            "metalayer_index": (self.meta.node.start, first_layer),
        }
        for i, content in enumerate(self.meta.contents):
            out[f"metalayer{i}"] = (content.body, content.end)
        for chunk in self.chunks:
            out[f"{chunk.name}.header"] = (chunk.start, min(chunk.start + CHUNK_HEADER, chunk.end))
            if chunk.end > chunk.start + CHUNK_HEADER:
                out[f"{chunk.name}.payload"] = (chunk.start + CHUNK_HEADER, chunk.end)
        content = self.vlmeta_content()
        out["trailer_head"] = (self.trailer_start, content.body)
        out["vlmeta.chunk_header"] = (content.body, content.body + CHUNK_HEADER)
        out["vlmeta.payload"] = (content.body + CHUNK_HEADER, content.end)
        out["trailer_rest"] = (content.end, self.frame_size - TRAILER_TAIL)
        out["tail23"] = (self.frame_size - TRAILER_TAIL, self.frame_size)
        return {k: v for k, v in out.items() if v[1] > v[0]}


def map_frame(data: bytes) -> FrameMap:
    """Map a *valid* frame written by blosc2 (raises on anything unexpected)."""
    (header_size,) = struct.unpack(">i", data[11:15])
    (frame_size,) = struct.unpack(">Q", data[16:24])
    (trailer_len,) = struct.unpack(">I", data[frame_size - 22 : frame_size - 18])
    header = parse(data, 0)
    if header.end != header_size or frame_size != len(data):
        raise ValueError("not a frame this mapper understands")
    fields = dict(zip(FRAME_FIELDS, header.children, strict=True))
    meta = _section(data, fields["metalayers"])
    b2nd_content = meta.contents[meta.names.index("b2nd")]
    b2nd_node = parse(data, b2nd_content.body)
    b2nd = dict(zip(B2ND_FIELDS, b2nd_node.children, strict=True))
    cbytes = int.from_bytes(data[fields["cbytes"].body : fields["cbytes"].end], "big", signed=True)
    chunks = []
    cursor, index_start = header_size, header_size + cbytes
    while cursor < index_start:
        size = int.from_bytes(data[cursor + 12 : cursor + 16], "little")
        chunks.append(Chunk(f"chunk{len(chunks)}", cursor, cursor + size))
        cursor += size
    if index_start < frame_size - trailer_len:  # a metadata-only frame has no chunk index
        size = int.from_bytes(data[index_start + 12 : index_start + 16], "little")
        chunks.append(Chunk("index", index_start, index_start + size))
    if (chunks[-1].end if chunks else header_size) != frame_size - trailer_len:
        raise ValueError("the data section does not end with the chunk index")
    trailer = parse(data, frame_size - trailer_len)
    vlmeta = _section(data, trailer.children[1])
    return FrameMap(data, header_size, frame_size, trailer_len, header, fields, meta, b2nd, chunks, trailer, vlmeta)


# --------------------------------------------------------------------------- rebuilding


def _str(name: bytes) -> bytes:
    if len(name) < 32:
        return bytes([0xA0 | len(name)]) + name
    return b"\xd9" + bytes([len(name)]) + name


def encode_section(idx: int, layers: list[tuple[bytes, bytes]], base: int) -> bytes:
    """Encode ``[idx, {name: offset}, [bin, ...]]`` as blosc2 does; ``base`` = absolute offset origin.

    Offsets point at each content's ``bin32`` marker, counted from ``base`` (the frame
    start for fixed metalayers, the trailer start for variable-length ones).
    """
    head = b"\x93\xcd" + struct.pack(">H", idx) + b"\xde" + struct.pack(">H", len(layers))
    names = [_str(name) for name, _ in layers]
    # every map entry is name + int32 offset (5 bytes); then array16 header (3 bytes)
    cursor = base + len(head) + sum(len(n) + 5 for n in names) + 3
    offsets = []
    for _, content in layers:
        offsets.append(cursor)
        cursor += 5 + len(content)
    out = bytearray(head)
    for name, offset in zip(names, offsets, strict=True):
        out += name + b"\xd2" + struct.pack(">i", offset)
    out += b"\xdc" + struct.pack(">H", len(layers))
    for _, content in layers:
        out += b"\xc6" + struct.pack(">I", len(content)) + content
    return bytes(out)


def _set_sizes(data: bytearray, header_size: int | None = None) -> bytearray:
    if header_size is not None:
        data[11:15] = struct.pack(">i", header_size)
    data[16:24] = struct.pack(">Q", len(data))
    return data


def rebuild_metalayers(fm: FrameMap, layers: list[tuple[bytes, bytes]], idx: int | None = None) -> bytes:
    """The file with its fixed metalayer section replaced (sizes fixed, data untouched)."""
    sec = fm.meta.node
    idx = fm.data[sec.start + 2] << 8 | fm.data[sec.start + 3] if idx is None else idx
    new_section = encode_section(idx, layers, sec.start)
    header = bytearray(fm.data[: sec.start]) + new_section
    out = header + fm.data[fm.header_size :]
    return bytes(_set_sizes(out, len(header)))


def rebuild_trailer(fm: FrameMap, layers: list[tuple[bytes, bytes]]) -> bytes:
    """The file with its variable-length metalayer section replaced (trailer_len fixed)."""
    sec = fm.vlmeta.node
    t0 = fm.trailer_start
    idx = fm.data[sec.start + 2] << 8 | fm.data[sec.start + 3]
    head = fm.data[t0 : sec.start]
    section = encode_section(idx, layers, len(head))
    fingerprint = fm.data[fm.frame_size - 18 :]
    trailer_len = len(head) + len(section) + 5 + len(fingerprint)
    trailer = head + section + b"\xce" + struct.pack(">I", trailer_len) + fingerprint
    out = bytearray(fm.data[:t0]) + trailer
    return bytes(_set_sizes(out))


def layers_of(fm: FrameMap, section: Section) -> list[tuple[bytes, bytes]]:
    """The ``(name, content)`` pairs of a section, as bytes."""
    return [(name.encode(), fm.data[c.body : c.end]) for name, c in zip(section.names, section.contents, strict=True)]
