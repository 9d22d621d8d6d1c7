"""Seed files and mutations for the fuzzer: every mutated file is reproducible from its case id.

Seeds are small valid ``.mla`` files written with the public API (several dtypes,
1 to 4 dimensions, several chunks, zero chunks, a metadata-only file, rich headers).
Mutations start from a seed's bytes and its :class:`fuzz_frame.FrameMap`:

* structured cases (:func:`structured_cases`) enumerate truncations at every structural
  boundary, in-place patches of every declared size with hostile values, rebuilt
  metalayer sections, hostile chunk indexes and every kind of spliced header;
* random cases (:func:`random_case`) draw a seed and a mutator from
  ``random.Random(f"{run_seed}/{k}")``, so case ``k`` of run ``run_seed`` is always the
  same file.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import msgpack
import numpy as np
from fuzz_frame import FrameMap, Node, layers_of, map_frame, rebuild_metalayers, rebuild_trailer
from fuzz_headers import SPLICES, dumps, pack_str

from mlarray import MLArray
from mlarray.models import Meta

INT64 = [0, 1, -1, 2, 255, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**40, 2**53, 2**62, 2**63 - 1, -(2**63)]
INT32 = [0, 1, -1, 2, 3, 7, 255, 2**15, 2**16, 2**24, 2**30, 2**31 - 1, -(2**31)]
BYTE = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xC0, 0xFF]


@dataclass
class Seed:
    """One valid seed file: its bytes, its map, its decoded header and its data."""

    name: str
    data: bytes
    fm: FrameMap
    header: dict[str, Any]
    array: np.ndarray[Any, Any] | None


@dataclass
class Case:
    """One mutated file."""

    id: str
    seed: str
    kind: str
    desc: str
    data: bytes


def _rich_meta(**extra: Any) -> Meta:
    return Meta.model_validate(
        {
            "source": {"modality": "CT", "nested": {"list": [1, 2.5, None, True, "é"]}, "empty": {}},
            "extra": {"fold": 3, "tags": ["a", "b"]},
            **extra,
        }
    )


def _seed_arrays() -> list[tuple[str, Any, dict[str, Any]]]:
    rng = np.random.default_rng(1234)
    perm = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
    return [
        ("i16_2d", np.arange(600, dtype=np.int16).reshape(6, 100), {"chunk_size": (2, 100), "block_size": (1, 50)}),
        (
            "f32_3d_rich",
            rng.standard_normal((8, 9, 10)).astype(np.float32),
            {
                "spacing": [1.5, 0.8, 0.8],
                "origin": [-10.0, 5.0, 2.5],
                "direction": perm,
                "chunk_size": (4, 5, 5),
                "block_size": (2, 5, 5),
                "meta": _rich_meta(
                    stats={"min": -4.0, "max": 4.0, "mean": 0.0, "std": 1.0},
                    bbox={"bboxes": [[[1, 3], [2, 4], [0, 9]]], "scores": [0.5], "labels": ["x"]},
                    spatial={"coord_system": "RAS"},
                ),
            },
        ),
        (
            "u8_1d_zstd",
            rng.integers(0, 256, 1000, dtype=np.uint8),
            {
                "chunk_size": (300,),
                "block_size": (100,),
                "cparams": {"codec": blosc2.Codec.ZSTD, "clevel": 9, "filters": [blosc2.Filter.BITSHUFFLE]},
            },
        ),
        (
            "f64_4d_channels",
            rng.standard_normal((2, 3, 4, 5)),
            {
                "axis_labels": ["channel", "spatial", "spatial", "spatial"],
                "spacing": [1.0, 1.0, 2.0],
                "chunk_size": (1, 2, 2, 3),
                "block_size": (1, 1, 2, 3),
            },
        ),
        (
            "bool_3d_seg",
            rng.random((5, 6, 7)) > 0.7,
            {"patch_size": None, "meta": _rich_meta(is_seg=True, bbox={"bboxes": [[[0, 1], [0, 2], [1, 5]]]})},
        ),
        (
            "c64_2d",
            (rng.standard_normal((5, 7)) + 1j * rng.standard_normal((5, 7))).astype(np.complex64),
            {"chunk_size": (2, 7), "block_size": (1, 7)},
        ),
        ("u16_zeros", np.zeros((20, 30), dtype=np.uint16), {"chunk_size": (10, 10), "block_size": (5, 5)}),
        ("meta_only", None, {"spacing": [1.0, 2.0, 3.0], "meta": _rich_meta()}),
        ("i64_1d_one_chunk", np.arange(-25, 25, dtype=np.int64) * 2**40, {"patch_size": None}),
        (
            "f16_affine",
            np.linspace(-2, 2, 24, dtype=np.float16).reshape(4, 6),
            {
                "affine": [[1.0, 0.5, 3.0], [0.0, 2.0, -1.0], [0.0, 0.0, 1.0]],
                "chunk_size": (2, 3),
                "block_size": (1, 3),
            },
        ),
    ]


def make_seeds(directory: Path) -> list[Seed]:
    """Write the seed files into ``directory`` with the public API and map them."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = []
    # one compression thread: with several, blosc2 stores blocks in completion order
    # and the seed bytes (so the case ids' meaning) would change from run to run
    previous = blosc2.set_nthreads(1)
    try:
        for name, array, kwargs in _seed_arrays():
            path = directory / f"seed-{name}.mla"
            MLArray(array, **kwargs).save(path)
    finally:
        blosc2.set_nthreads(previous)
    for name, array, _ in _seed_arrays():
        path = directory / f"seed-{name}.mla"
        data = path.read_bytes()
        fm = map_frame(data)
        content = fm.vlmeta_content()
        raw = blosc2.decompress(data[content.body : content.end])
        header = json.loads(msgpack.unpackb(raw))
        stored = None if array is None else MLArray.load(path).to_numpy()
        if stored is not None:
            np.save(directory / f"seed-{name}.npy", stored)
        seeds.append(Seed(name, data, fm, header, stored))
    return seeds


# --------------------------------------------------------------------------- helpers


def compress_header(raw: bytes, rng: random.Random | None = None) -> bytes:
    """``raw`` as a Blosc chunk, as the content of the ``mlarray`` vlmetalayer."""
    codec = (
        blosc2.Codec.ZSTD if rng is None else rng.choice([blosc2.Codec.ZSTD, blosc2.Codec.LZ4, blosc2.Codec.BLOSCLZ])
    )
    clevel = 5 if rng is None else rng.choice([0, 1, 5, 9])
    out: bytes = blosc2.compress2(raw, typesize=1, codec=codec, clevel=clevel)
    return out


def with_header_chunk(seed: Seed, chunk: bytes) -> bytes:
    """The seed with the ``mlarray`` vlmetalayer content replaced by ``chunk``."""
    layers = [(n, chunk if n == b"mlarray" else c) for n, c in layers_of(seed.fm, seed.fm.vlmeta)]
    return rebuild_trailer(seed.fm, layers)


def with_header(seed: Seed, raw: bytes, rng: random.Random | None = None) -> bytes:
    """The seed with decompressed header bytes ``raw``."""
    return with_header_chunk(seed, compress_header(raw, rng))


def _set_frame_size(data: bytes) -> bytes:
    if len(data) < 24:
        return data
    return data[:16] + struct.pack(">Q", len(data)) + data[24:]


def _pack_int(value: int, width: int, order: str = "big") -> bytes:
    lo, hi = -(1 << (8 * width - 1)), (1 << (8 * width)) - 1
    value = min(max(value, lo), hi)
    return value.to_bytes(width, order, signed=value < 0)


@dataclass
class IntField:
    """A fixed-width integer somewhere in the file."""

    name: str
    offset: int
    width: int
    order: str
    orig: int


_FIELDS: dict[bytes, list[IntField]] = {}


def int_fields(seed: Seed) -> list[IntField]:
    """Every declared size or count in the seed that can be patched in place."""
    if seed.data not in _FIELDS:
        _FIELDS[seed.data] = _int_fields(seed)
    return _FIELDS[seed.data]


def _int_fields(seed: Seed) -> list[IntField]:
    fm, data = seed.fm, seed.data
    out: list[IntField] = []

    def node_field(name: str, node: Node) -> None:
        if node.width() in (1, 2, 4, 8) and node.tag in (0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3):
            raw = data[node.body : node.end]
            out.append(IntField(name, node.body, node.width(), "big", int.from_bytes(raw, "big", signed=True)))
        elif node.tag <= 0x7F:
            out.append(IntField(name, node.start, 1, "big", node.tag))

    for name, node in fm.fields.items():
        if name not in ("magic", "flags", "filters", "metalayers", "has_vlmeta"):
            node_field(f"frame.{name}", node)
    for name in ("version", "ndim", "dtype_format"):
        node_field(f"b2nd.{name}", fm.b2nd[name])
    for name in ("shape", "chunks", "blocks"):
        for i, child in enumerate(fm.b2nd[name].children):
            node_field(f"b2nd.{name}[{i}]", child)
    for sec_name, sec in (("metalayer", fm.meta), ("vlmeta", fm.vlmeta)):
        for i, (off, content) in enumerate(zip(sec.offsets, sec.contents, strict=True)):
            node_field(f"{sec_name}{i}.offset", off)
            out.append(IntField(f"{sec_name}{i}.binlen", content.start + 1, 4, "big", content.end - content.body))
    chunk_starts = [(c.name, c.start) for c in fm.chunks] + [("vlmeta.chunk", fm.vlmeta_content().body)]
    for cname, start in chunk_starts:
        for fname, rel, width in (("nbytes", 4, 4), ("blocksize", 8, 4), ("cbytes", 12, 4), ("typesize", 3, 1)):
            raw = data[start + rel : start + rel + width]
            out.append(IntField(f"{cname}.{fname}", start + rel, width, "little", int.from_bytes(raw, "little")))
        for fname, rel in (("version", 0), ("flags", 2), ("filter5", 21), ("compmeta", 23), ("blosc2_flags", 31)):
            out.append(IntField(f"{cname}.{fname}", start + rel, 1, "little", data[start + rel]))
    t = fm.frame_size - 22
    out.append(IntField("trailer_len", t, 4, "big", fm.trailer_len))
    return out


def hostile_values(f: IntField) -> list[int]:
    base = {1: BYTE, 2: [0, 1, -1, 0x7FFF, -0x8000, 0xFFFF], 4: INT32, 8: INT64}[f.width]
    rel = [f.orig + 1, f.orig - 1, f.orig * 2, f.orig * 1000, f.orig // 2]
    return sorted(set(base + rel))


def patch_int(seed: Seed, f: IntField, value: int) -> bytes:
    data = bytearray(seed.data)
    data[f.offset : f.offset + f.width] = _pack_int(value, f.width, f.order)
    return bytes(data)


# --------------------------------------------------------------------------- mutators


def m_truncate(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    bounds = seed.fm.boundaries()
    if rng.random() < 0.7:
        name = rng.choice(sorted(bounds))
        delta = rng.choice([-1, 0, 0, 1])
        cut, where = bounds[name] + delta, f"{name}{delta:+d}"
    else:
        cut = rng.randrange(len(seed.data))
        where = f"random@{cut}"
    data = seed.data[: min(max(cut, 0), len(seed.data) - 1)]  # always lose at least one byte
    if rng.random() < 0.5:
        return _set_frame_size(data), f"truncate at {where}, frame_size fixed"
    return data, f"truncate at {where}"


def m_excise(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """Cut out a range between two boundaries and fix frame_size (the trailer stays intact)."""
    points = sorted(set(seed.fm.boundaries().values()) | {seed.fm.header_size})
    a, b = sorted(rng.sample(points, 2))
    if rng.random() < 0.4:
        insert = bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 32, 100])))
        return _set_frame_size(seed.data[:a] + insert + seed.data[a:]), f"insert {len(insert)} bytes at {a}"
    return _set_frame_size(seed.data[:a] + seed.data[b:]), f"excise [{a}, {b})"


def _flip_at(data: bytearray, pos: int, rng: random.Random) -> str:
    how = rng.randrange(4)
    if how == 0:
        bit = rng.randrange(8)
        data[pos] ^= 1 << bit
        return f"{pos}^bit{bit}"
    if how == 1:
        data[pos] = rng.choice(BYTE)
    elif how == 2:
        data[pos] ^= rng.randrange(1, 256)
    else:
        data[pos] = rng.randrange(256)
    return f"{pos}={data[pos]:#04x}"


def m_flip(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    regions = seed.fm.regions()
    name = rng.choice(sorted(regions))
    start, end = regions[name]
    data = bytearray(seed.data)
    n = 1 if rng.random() < 0.6 else rng.randint(2, 8)
    notes = [_flip_at(data, rng.randrange(start, end), rng) for _ in range(n)]
    return bytes(data), f"flip in {name}: {', '.join(notes)}"


def m_flip_anywhere(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(seed.data)
    notes = [_flip_at(data, rng.randrange(len(data)), rng) for _ in range(rng.randint(1, 16))]
    return bytes(data), f"flip anywhere: {', '.join(notes)}"


def m_patch_int(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    f = rng.choice(int_fields(seed))
    value = rng.choice(hostile_values(f))
    return patch_int(seed, f, value), f"patch {f.name}: {f.orig} -> {value}"


def m_splice(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(sorted(SPLICES))
    raw, desc = SPLICES[kind](rng, seed.header)
    return with_header(seed, raw, rng), f"splice {kind}: {desc}"


def m_header_chunk(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """Replace the header's Blosc chunk itself with something that is not a good chunk."""
    good = compress_header(pack_str(dumps(seed.header)), rng)
    choice = rng.randrange(6)
    if choice == 0:
        chunk, desc = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))), "random bytes"
    elif choice == 1:
        chunk, desc = good[: rng.randrange(len(good))], "truncated chunk"
    elif choice == 2:
        chunk, desc = good + bytes(rng.randrange(1, 40)), "chunk with trailing bytes"
    elif choice == 3:
        field, rel = rng.choice([("nbytes", 4), ("blocksize", 8), ("cbytes", 12)])
        value = rng.choice(INT32)
        chunk = good[:rel] + _pack_int(value, 4, "little") + good[rel + 4 :]
        desc = f"header chunk {field}={value}"
    elif choice == 4:
        raw = blosc2.compress2(pack_str(dumps(seed.header)), typesize=rng.choice([1, 2, 4, 8, 16, 255]), clevel=9)
        chunk, desc = raw, "header chunk with another typesize"
    else:
        chunk = blosc2.compress2(np.zeros(rng.choice([0, 1, 1000]), dtype=np.uint8).tobytes(), typesize=1)
        desc = "header chunk of zeros"
    return with_header_chunk(seed, chunk), desc


def consistent_huge(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """Declare a huge shape (or chunk/block) in b2nd *and* in the header, so the frame passes our checks."""
    if seed.header.get("array") is None:
        return m_patch_int(seed, rng)
    header = json.loads(json.dumps(seed.header))
    header.pop("integrity", None)
    shape = list(header["array"]["shape"])
    layout = header.get("layout") or {}
    chunks, blocks = list(layout.get("chunk_size", [])), list(layout.get("block_size", []))
    axis = rng.randrange(len(shape))
    what = rng.choice(["shape", "shape", "chunks", "chunks+blocks", "all"])
    big = rng.choice([2**31 - 1, 2**31, 2**32, 2**40, 2**50, 2**62, 2**63 - 1, 10**6, 10**9])
    big32 = rng.choice([2**16, 2**24, 2**30, 2**31 - 1])
    if what in ("shape", "all"):
        shape[axis] = big
    if what != "shape" and chunks:
        chunks[axis] = big32
    if what in ("chunks+blocks", "all") and blocks:
        blocks[axis] = big32
    header["array"]["shape"] = shape
    if layout:
        layout["chunk_size"], layout["block_size"] = chunks, blocks
    data = bytearray(with_header(seed, pack_str(dumps(header))))
    nd = seed.fm.b2nd
    for name, values, width in (("shape", shape, 8), ("chunks", chunks, 4), ("blocks", blocks, 4)):
        for node, value in zip(nd[name].children, values, strict=False):
            data[node.body : node.end] = _pack_int(value, width)
    desc = f"consistent huge {what}: shape={shape} chunks={chunks} blocks={blocks}"
    return bytes(data), desc


META_VARIANTS = (
    "b2nd_twice",
    "b2nd_and_other",
    "other_then_b2nd",
    "no_metalayers",
    "b2nd_renamed",
    "b2nd_empty",
    "b2nd_second_shape",
    "vlmeta_twice",
    "vlmeta_twice_other_header",
    "vlmeta_removed",
    "vlmeta_extra",
    "vlmeta_only_other",
    "vlmeta_empty_content",
)


def meta_variant(seed: Seed, variant: str) -> bytes:
    """Duplicated, removed or extra metalayers (fixed and variable-length), rebuilt byte-exactly."""
    fm = seed.fm
    fixed, vl = layers_of(fm, fm.meta), layers_of(fm, fm.vlmeta)
    b2nd = dict(fixed)[b"b2nd"]
    if variant == "b2nd_twice":
        return rebuild_metalayers(fm, fixed + fixed)
    if variant == "b2nd_and_other":
        return rebuild_metalayers(fm, [*fixed, (b"b2o", msgpack.packb({"kind": "x"}))])
    if variant == "other_then_b2nd":
        return rebuild_metalayers(fm, [(b"proxy-source", msgpack.packb({"urlpath": "/etc/passwd"})), *fixed])
    if variant == "no_metalayers":
        return rebuild_metalayers(fm, [])
    if variant == "b2nd_renamed":
        return rebuild_metalayers(fm, [(b"B2ND", b2nd)])
    if variant == "b2nd_empty":
        return rebuild_metalayers(fm, [(b"b2nd", b"")])
    if variant == "b2nd_second_shape":
        value = msgpack.unpackb(b2nd)
        value[2] = [s + 1 for s in value[2]]
        return rebuild_metalayers(fm, [*fixed, (b"b2nd", msgpack.packb(value))])
    header_chunk = dict(vl)[b"mlarray"]
    if variant == "vlmeta_twice":
        return rebuild_trailer(fm, vl + vl)
    if variant == "vlmeta_twice_other_header":
        other = dict(seed.header, extra={"second": True})
        return rebuild_trailer(fm, [*vl, (b"mlarray", compress_header(pack_str(dumps(other))))])
    if variant == "vlmeta_removed":
        return rebuild_trailer(fm, [])
    if variant == "vlmeta_extra":
        return rebuild_trailer(fm, [(b"b2o", header_chunk), *vl])
    if variant == "vlmeta_only_other":
        return rebuild_trailer(fm, [(b"mlarray2", header_chunk)])
    if variant == "vlmeta_empty_content":
        return rebuild_trailer(fm, [(b"mlarray", b"")])
    raise ValueError(variant)


def m_meta(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    variant = rng.choice(META_VARIANTS)
    return meta_variant(seed, variant), f"metalayers: {variant}"


def m_b2nd_reencode(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """Re-encode the b2nd metalayer with a changed structure (the frame header changes size)."""
    value = msgpack.unpackb(dict(layers_of(seed.fm, seed.fm.meta))[b"b2nd"])
    edits: list[tuple[str, Callable[[list[Any]], Any]]] = [
        ("dtype |O8", lambda v: v.__setitem__(6, "|O8")),
        ("dtype <U4", lambda v: v.__setitem__(6, "<U4")),
        ("dtype struct", lambda v: v.__setitem__(6, "[('a', '<i4'), ('b', '<f8')]")),
        ("dtype >f8", lambda v: v.__setitem__(6, ">f8")),
        ("dtype empty", lambda v: v.__setitem__(6, "")),
        ("dtype bytes", lambda v: v.__setitem__(6, b"\xff\xfe")),
        ("dtype_format 1", lambda v: v.__setitem__(5, 1)),
        ("ndim 9", lambda v: v.__setitem__(1, 9)),
        ("ndim 0", lambda v: (v.__setitem__(1, 0), v.__setitem__(2, []), v.__setitem__(3, []), v.__setitem__(4, []))),
        ("shape one more axis", lambda v: v[2].append(1)),
        ("shape floats", lambda v: v.__setitem__(2, [float(s) for s in v[2]])),
        ("shape strings", lambda v: v.__setitem__(2, [str(s) for s in v[2]])),
        ("shape small ints", lambda v: v.__setitem__(2, list(v[2]))),
        ("9 dims", lambda v: (v.__setitem__(1, 9), v.__setitem__(2, [1] * 9), v.__setitem__(3, [1] * 9))),
        ("extra element", lambda v: v.append(0)),
        ("missing element", lambda v: v.pop()),
        ("version 99", lambda v: v.__setitem__(0, 99)),
        ("not a list", lambda v: v.clear() or v.append({"shape": 1})),
    ]
    name, edit = rng.choice(edits)
    edit(value)
    content = msgpack.packb(value[0] if name == "not a list" else value)
    return rebuild_metalayers(seed.fm, [(b"b2nd", content)]), f"b2nd re-encoded: {name}"


INDEX_VARIANTS = (
    "huge",
    "negative",
    "into_header",
    "past_end",
    "all_same",
    "swap",
    "self",
    "fewer",
    "more",
    "garbage",
    "empty_chunk",
    "special_values",
)


def index_variant(seed: Seed, variant: str, rng: random.Random) -> bytes:
    """Replace the chunk index (offsets of the data chunks) with hostile offsets."""
    fm = seed.fm
    index = fm.chunks[-1]
    offsets = np.frombuffer(blosc2.decompress(fm.data[index.start : index.end]), dtype=np.int64).copy()
    n = len(offsets)
    i = rng.randrange(max(n, 1))
    data_len = index.start - fm.header_size
    if variant == "garbage":
        new_index = bytes(rng.randrange(256) for _ in range(index.end - index.start))
    elif variant == "empty_chunk":
        new_index = blosc2.compress2(b"", typesize=8)
    else:
        if n == 0:
            offsets = np.zeros(1, dtype=np.int64)
            n, i = 1, 0
        if variant == "huge":
            offsets[i] = rng.choice([2**31, 2**40, 2**62, 2**63 - 1])
        elif variant == "negative":
            offsets[i] = rng.choice([-1, -2, -(2**31), -(2**63)])
        elif variant == "into_header":
            offsets[i] = -fm.header_size + rng.randrange(fm.header_size)
        elif variant == "past_end":
            offsets[i] = data_len + rng.randrange(1, 1000)
        elif variant == "all_same":
            offsets[:] = offsets[0]
        elif variant == "swap" and n > 1:
            offsets[[0, -1]] = offsets[[-1, 0]]
        elif variant == "self":
            offsets[i] = data_len
        elif variant == "fewer":
            offsets = offsets[:-1]
        elif variant == "more":
            offsets = np.concatenate([offsets, offsets[-1:] + 7])
        elif variant == "special_values":
            offsets[i] = rng.choice([-(1 << 62), -(2 << 62) + 1, np.iinfo(np.int64).min + 3])
        new_index = blosc2.compress2(offsets.tobytes(), typesize=8)
    out = fm.data[: index.start] + new_index + fm.data[index.end :]
    return _set_frame_size(out)


def m_index(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    if not any(c.name == "index" for c in seed.fm.chunks):
        return m_flip(seed, rng)
    variant = rng.choice(INDEX_VARIANTS)
    return index_variant(seed, variant, rng), f"chunk index: {variant}"


def m_chunk_swap(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """Copy one stored chunk over another of the same or a different size (offsets stay)."""
    chunks = [c for c in seed.fm.chunks if c.name != "index"]
    if len(chunks) < 2:
        return m_flip(seed, rng)
    a, b = rng.sample(chunks, 2)
    data = bytearray(seed.data)
    piece = seed.data[a.start : a.end][: b.end - b.start]
    data[b.start : b.start + len(piece)] = piece
    return bytes(data), f"copy {a.name} over {b.name} ({len(piece)} bytes)"


MUTATORS: dict[str, tuple[Callable[[Seed, random.Random], tuple[bytes, str]], int]] = {
    "truncate": (m_truncate, 10),
    "excise": (m_excise, 5),
    "flip": (m_flip, 22),
    "flip_anywhere": (m_flip_anywhere, 6),
    "patch_int": (m_patch_int, 12),
    "consistent_huge": (consistent_huge, 5),
    "splice": (m_splice, 18),
    "header_chunk": (m_header_chunk, 4),
    "metalayers": (m_meta, 3),
    "b2nd_reencode": (m_b2nd_reencode, 3),
    "index": (m_index, 5),
    "chunk_swap": (m_chunk_swap, 2),
}
"""Random mutators and their weights; ``hyp_header`` is added when a Hypothesis pool is given."""


def random_case(seeds: list[Seed], run_seed: int, k: int, pool: list[str] | None = None) -> Case:
    """Case ``k`` of random run ``run_seed`` (always the same bytes for the same seeds and pool)."""
    rng = random.Random(f"{run_seed}/{k}")
    seed = rng.choice(seeds)
    names = sorted(MUTATORS)
    weights = [MUTATORS[n][1] for n in names]
    if pool:
        names.append("hyp_header")
        weights.append(12)
    kind = rng.choices(names, weights)[0]
    if kind == "hyp_header":
        assert pool is not None
        j = rng.randrange(len(pool))
        data, desc = with_header(seed, pack_str(pool[j]), rng), f"hypothesis header #{j}: {pool[j][:80]}"
    else:
        data, desc = MUTATORS[kind][0](seed, rng)
    return Case(f"r{run_seed}/{k}/{seed.name}/{kind}", seed.name, kind, desc, data)


def regression_cases(seeds: list[Seed]) -> Iterator[Case]:
    """Minimal files for findings of earlier runs (minimized by hand), kept in every sample."""
    seed = next(s for s in seeds if s.name == "bool_3d_seg")
    fm = seed.fm
    data = bytearray(seed.data)
    data[fm.vlmeta_content().body + 35] = 0x09  # the header chunk's first block offset, high byte
    desc = "header chunk: first block offset 0x09xxxxxx (far past the chunk)"
    yield Case(f"{seed.name}/regress/header-block-offset", seed.name, "regress", desc, bytes(data))
    data = bytearray(seed.data)
    start = fm.chunks[0].start
    data[start + 6], data[start + 15] = 0x34, 0x6D  # nbytes and cbytes (little-endian int32 at 4 and 12)
    desc = "chunk0: nbytes and cbytes both raised (0x0034xxxx, 0x6d0000xx)"
    yield Case(f"{seed.name}/regress/chunk0-nbytes-cbytes", seed.name, "regress", desc, bytes(data))
    nested = '{"a":' * 300 + "1" + "}" * 300
    text = dumps(dict(seed.header, extra={"deep": "\x00"})).replace(json.dumps("\x00"), nested)
    desc = "extra.deep nested 300 objects deep"
    yield Case(f"{seed.name}/regress/deep-extra", seed.name, "regress", desc, with_header(seed, pack_str(text)))


def structured_cases(seeds: list[Seed], *, full: bool = True) -> Iterator[Case]:
    """Systematic cases: boundaries, size fields, metalayer variants, index variants, splice kinds.

    The per-field patches cover the first four seeds (``full=False``: the first one, and
    fewer splices: the normal test suite's sample). The regression cases come first.
    """
    yield from regression_cases(seeds)
    for seed in seeds:
        for name, cut in sorted(seed.fm.boundaries().items(), key=lambda kv: kv[1]):
            yield Case(f"{seed.name}/truncate/{name}", seed.name, "truncate", f"cut at {name} ({cut})", seed.data[:cut])
            fixed = _set_frame_size(seed.data[:cut])
            yield Case(f"{seed.name}/truncate-fixsize/{name}", seed.name, "truncate", f"cut at {name}", fixed)
        for variant in META_VARIANTS:
            yield Case(
                f"{seed.name}/metalayers/{variant}", seed.name, "metalayers", variant, meta_variant(seed, variant)
            )
        if any(c.name == "index" for c in seed.fm.chunks):
            for variant in INDEX_VARIANTS:
                rng = random.Random(f"{seed.name}/{variant}")
                data = index_variant(seed, variant, rng)
                yield Case(f"{seed.name}/index/{variant}", seed.name, "index", variant, data)
    patched = seeds[:4] if full else seeds[:1]
    for seed in patched:
        for f in int_fields(seed):
            for value in hostile_values(f):
                desc = f"patch {f.name}: {f.orig} -> {value}"
                yield Case(
                    f"{seed.name}/patch/{f.name}={value}", seed.name, "patch_int", desc, patch_int(seed, f, value)
                )
    for seed in seeds if full else seeds[:1]:
        for kind in sorted(SPLICES):
            for i in range(6 if full else 2):
                rng = random.Random(f"{seed.name}/{kind}/{i}")
                raw, desc = SPLICES[kind](rng, seed.header)
                data = with_header(seed, raw)
                yield Case(f"{seed.name}/splice/{kind}/{i}", seed.name, "splice", f"{kind}: {desc}", data)
