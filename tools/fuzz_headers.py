"""Hostile header payloads for the fuzzer: what an attacker could put in the ``mlarray`` vlmetalayer.

Every function returns the *decompressed* header bytes ``H`` (normally one msgpack
string of UTF-8 JSON, spec section 4.7); :mod:`fuzz_mutators` compresses them into a
Blosc chunk and splices them into a valid file. The generators are driven by a
``random.Random`` so a case id reproduces the same bytes, except
:func:`hypothesis_headers`, which asks Hypothesis for a pool of JSON headers.
"""

from __future__ import annotations

import copy
import gzip
import json
import pickle
import random
import struct
from collections.abc import Callable
from typing import Any

import msgpack

MAX_HEADER_BYTES = 16 * 1024 * 1024

_WEIRD_TEXT = [
    "",
    "\x00",
    "\ud800",
    "\udfff",
    "\uffff",
    "\U0010ffff",
    "é",
    "\u202e",
    "../../etc/passwd",
    "%s%n",
    "<i2",
    "1.0",
    "NaN",
    "x" * 300,
]
_NUMBERS: list[Any] = [0, -0.0, 1, -1, 2**31, 2**53 + 1, 2**63, 2**64 + 1, -(2**63) - 1, 1e308, 5e-324, 0.5, 10**30]
_ALT_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, "", "x", [], {}, [None], {"a": 1}, [[]], 2**70, -(10**20)]


def pack_str(text: str) -> bytes:
    """``text`` as one msgpack string (lone surrogates are kept, as invalid UTF-8)."""
    return _str_of_bytes(text.encode("utf-8", errors="surrogatepass"))


def dumps(value: Any) -> str:
    """JSON text of ``value``; NaN/Infinity are written as the (invalid) JSON constants."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


# --------------------------------------------------------------------------- random JSON


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value (objects and arrays up to a small depth)."""
    roll = rng.random()
    if depth < 4 and roll < 0.25:
        return {random_text(rng): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    if depth < 4 and roll < 0.4:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(_NUMBERS)
    if kind == 2:
        return rng.randint(-(2**70), 2**70) if rng.random() < 0.3 else rng.randint(-10, 1000)
    if kind == 3:
        return rng.uniform(-1e6, 1e6)
    return random_text(rng)


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(_WEIRD_TEXT)
    return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x10FFFF)])) for _ in range(rng.randint(0, 12)))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return root


def type_change(header: dict[str, Any], rng: random.Random) -> tuple[Any, str]:
    """The header with one to three values replaced by values of other types (or keys removed/added)."""
    out: Any = copy.deepcopy(header)
    notes = []
    for _ in range(rng.randint(1, 3)):
        paths = _paths(out)
        path = rng.choice(paths[1:] or paths)
        action = rng.random()
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        if action < 0.12 and path and isinstance(parent, dict):
            del parent[path[-1]]
            notes.append(f"del {'/'.join(map(str, path))}")
        elif action < 0.2 and isinstance(parent, dict):
            key = rng.choice(["unknown", "schema_version", "array", "", "\x00", "layout"])
            parent[key] = random_json(rng)
            notes.append(f"add {'/'.join(map(str, path[:-1]))}/{key!r}")
        else:
            new = rng.choice(_ALT_VALUES + _NUMBERS) if rng.random() < 0.7 else random_json(rng)
            out = _replace(out, path, new)
            notes.append(f"set {'/'.join(map(str, path))}={str(new)[:20]!r}")
    return out, "; ".join(notes)


# --------------------------------------------------------------------------- splice kinds


def _nested_text(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _deep(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    """Deeply nested arrays or objects, at the top level or inside one header member."""
    depth = rng.choice([50, 150, 250, 400, 900, 990, 1000, 3000, 20000])
    kind = rng.choice(["list", "dict"])
    where = rng.choice(["top", "source", "extra", "spatial.spacing", "array.shape", "bbox.bboxes"])
    nested = _nested_text(depth, kind)
    if where == "top":
        return pack_str(nested), f"deep {kind} x{depth} at top level"
    out = copy.deepcopy(header)
    section, _, key = where.partition(".")
    marker = "\x00NESTED\x00"
    if key:
        target = out.get(section)
        if not isinstance(target, dict):
            target = out[section] = {}
        target[key] = marker
    else:  # inside the free-form object: {"source": {"deep": [[[...]]]}}
        out[section] = {"deep": marker}
    text = dumps(out).replace(json.dumps(marker), nested)
    return pack_str(text), f"deep {kind} x{depth} in {where}"


def _huge(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    size = rng.choice([1 << 20, 4 << 20, MAX_HEADER_BYTES - 1024, MAX_HEADER_BYTES - 5, MAX_HEADER_BYTES + 7])
    out = copy.deepcopy(header)
    where = rng.choice(["source", "extra", "writer.name", "schema_version", "spatial.axis_units"])
    base = len(pack_str(dumps(out)))
    filler = rng.choice(["x", " ", "é", "\\"])
    n = max(0, (size - base) // max(1, len(filler.encode())))
    if where == "writer.name":
        out["writer"] = {"name": filler * n, "version": "1"}
    elif where == "schema_version":
        out["schema_version"] = "1." + "0" * n
    elif where == "spatial.axis_units":
        out.setdefault("spatial", {})["axis_units"] = [filler * n]
    else:
        out[where] = {"s": filler * n}
    return pack_str(dumps(out)), f"huge string ~{size} bytes in {where}"


def _nan(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    const = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0"])
    numbers = [p for p in _paths(header) if p and isinstance(_get(header, p), (int, float))]
    text = dumps(header)
    if numbers and rng.random() < 0.7:
        path = rng.choice(numbers)
        marker = "\x00MARK\x00"
        text = dumps(_replace(copy.deepcopy(header), path, marker)).replace(json.dumps(marker), const)
        return pack_str(text), f"{const} at {'/'.join(map(str, path))}"
    return pack_str(text[:-1] + f',"extra":{{"v":{const}}}}}'), f"{const} in extra"


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


def _msgpack_other(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    text = dumps(header)
    choices: list[tuple[str, Callable[[], bytes]]] = [
        ("ext", lambda: msgpack.packb(msgpack.ExtType(rng.randrange(128), text.encode()))),
        ("timestamp-ext", lambda: b"\xd6\xff" + bytes(4)),
        ("bin", lambda: msgpack.packb(text.encode(), use_bin_type=True)),
        ("map", lambda: msgpack.packb(header)),
        ("array", lambda: msgpack.packb([text])),
        ("int", lambda: msgpack.packb(rng.randint(-(2**63), 2**64 - 1))),
        ("nil", lambda: b"\xc0"),
        ("float", lambda: msgpack.packb(1.5)),
        ("true", lambda: b"\xc3"),
        ("str-in-str", lambda: pack_str(pack_str(text).decode("latin-1"))),
        ("str-then-more", lambda: pack_str(text) + pack_str(text)),
        ("fixext", lambda: bytes([0xD4 + rng.randrange(5)]) + bytes(rng.randrange(20))),
        ("never-used-0xc1", lambda: b"\xc1" + text.encode()),
    ]
    name, make = rng.choice(choices)
    return make(), f"msgpack {name}"


def _pickle(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    proto = rng.randrange(0, pickle.HIGHEST_PROTOCOL + 1)
    raw = pickle.dumps(header, protocol=proto)
    how = rng.choice(["plain", "gzip", "in-msgpack-bin"])
    if how == "gzip":
        raw = gzip.compress(raw)
    elif how == "in-msgpack-bin":
        raw = msgpack.packb(raw, use_bin_type=True)
    return raw, f"pickle protocol {proto} ({how})"


def _wrong_length(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    payload = dumps(header).encode()
    n = len(payload)
    form = rng.choice(["fixstr", "str8", "str16", "str32"])
    tag, width = {"fixstr": (0xA0, 0), "str8": (0xD9, 1), "str16": (0xDA, 2), "str32": (0xDB, 4)}[form]
    declared = rng.choice([0, 1, n - 1, n + 1, n + 1000, 2 ** (8 * max(width, 1)) - 1, n // 2])
    if form == "fixstr":
        head = bytes([0xA0 | (declared & 0x1F)])
    else:
        head = bytes([tag]) + (declared % (1 << (8 * width))).to_bytes(width, "big")
    cut = payload[: rng.choice([n, n, n // 2, 0])]
    return head + cut, f"{form} declaring {declared} for {len(cut)} payload bytes"


def _bad_text(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    text = dumps(header)
    options: list[tuple[str, bytes]] = [
        ("invalid utf-8", text.encode()[:-1] + b"\xff}"),
        ("overlong utf-8", b'{"schema_version":"1.0","source":{"a":"\xc0\xaf"}}'),
        ("surrogate utf-8", b'{"schema_version":"1.0","source":{"a":"\xed\xa0\x80"}}'),
        ("bom", "\ufeff".encode() + text.encode()),
        ("utf-16", text.encode("utf-16")),
        ("trailing garbage", text.encode() + b" xyz"),
        ("truncated json", text.encode()[: rng.randrange(max(1, len(text)))]),
        ("comment", b"/* hi */" + text.encode()),
        ("single quotes", text.replace('"', "'").encode()),
        ("whitespace only", b"  \n\t "),
        ("empty", b""),
        ("nul inside", text.encode()[:5] + b"\x00" + text.encode()[5:]),
        ("escaped surrogate", text[:-1].encode() + b',"extra":{"\\ud800":"\\udc00\\ud800"}}'),
        ("5000-digit int", text[:-1].encode() + b',"extra":{"n":' + b"9" * 5000 + b"}}"),
        ("huge exponent", text[:-1].encode() + b',"extra":{"n":1e999999999}}'),
    ]
    name, raw = rng.choice(options)
    return _str_of_bytes(raw), name


def _str_of_bytes(payload: bytes) -> bytes:
    """A msgpack string header (shortest form) around arbitrary payload bytes."""
    n = len(payload)
    if n < 32:
        return bytes([0xA0 | n]) + payload
    if n < 256:
        return b"\xd9" + bytes([n]) + payload
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + payload
    return b"\xdb" + struct.pack(">I", n) + payload


def _dup_keys(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    text = dumps(header)
    key = rng.choice(["schema_version", "array", "layout", "source"])
    if key in header:
        extra = json.dumps(header[key]) if rng.random() < 0.5 else json.dumps(random_json(rng))
        return pack_str(text[:-1] + f',"{key}":{extra}}}'), f"duplicate key {key}"
    return pack_str('{"a":1,"a":2,' + text[1:]), "duplicate key a"


def _random_header(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    value = random_json(rng)
    if rng.random() < 0.7:
        value = value if isinstance(value, dict) else {"v": value}
        if rng.random() < 0.6:
            value["schema_version"] = rng.choice(["1.0", "1.1", "1.99", "2.0", "0.9", "1", 1.0, "1.0 "])
    return pack_str(dumps(value)), "random json"


def _type_changed(rng: random.Random, header: dict[str, Any]) -> tuple[bytes, str]:
    value, notes = type_change(header, rng)
    return pack_str(dumps(value)), f"type change: {notes}"


SPLICES: dict[str, Callable[[random.Random, dict[str, Any]], tuple[bytes, str]]] = {
    "random_json": _random_header,
    "type_change": _type_changed,
    "deep_nesting": _deep,
    "huge_string": _huge,
    "nan_inf": _nan,
    "msgpack_other": _msgpack_other,
    "pickle": _pickle,
    "wrong_length": _wrong_length,
    "bad_text": _bad_text,
    "dup_keys": _dup_keys,
}
"""Every way of replacing the header payload, by name."""


# --------------------------------------------------------------------------- hypothesis


def hypothesis_headers(count: int, seed: int, template: dict[str, Any]) -> list[str]:
    """``count`` JSON header texts drawn by Hypothesis (``seed`` makes the pool reproducible).

    Three shapes: any JSON object; an object with the header's top-level keys holding
    arbitrary JSON; and ``template`` with Hypothesis-chosen leaves replaced.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20)
        | st.sampled_from(["1.0", "<i2", "|b1", "spatial", "lz4", "manual", "RAS"])
    )
    values = st.recursive(
        leaves, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5)
    )
    keys = st.sampled_from(sorted(template) + ["unknown"])
    shaped = st.dictionaries(keys, values, max_size=8).map(lambda d: {"schema_version": "1.0", **d})
    paths = [p for p in _paths(template) if p]

    @st.composite
    def edited(draw: st.DrawFn) -> Any:
        out = copy.deepcopy(template)
        for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
            try:
                out = _replace(out, path, draw(values))
            except (KeyError, IndexError, TypeError):
                continue
        return out

    pool: list[str] = []

    @hseed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(st.dictionaries(st.text(max_size=10), values, max_size=6), shaped, edited()))
    def collect(value: Any) -> None:
        pool.append(dumps(value))

    collect()
    return pool
