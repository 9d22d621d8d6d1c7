"""Encode and decode the header bytes: a msgpack string holding UTF-8 JSON.

The header is stored as the content of the ``mlarray`` vlmetalayer. Its exact bytes
(after Blosc decompression) are one msgpack *str* object (fixstr, str8, str16 or
str32) whose payload is a UTF-8 JSON object. That keeps python-blosc2's
``vlmeta["mlarray"]`` returning the JSON text, and lets any reader decode it with
four lines of code. Decoding is our own code: no msgpack extension hook, no pickle,
nothing that constructs objects.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack

from mlarray.errors import HeaderEncodingError, HeaderNotJSONError, HeaderTooLargeError, HeaderValidationError, Problem
from mlarray.versions import MAX_HEADER_BYTES, MAX_NESTING

_UNSET = object()


def json_problem(value: Any) -> str | None:
    """Why ``value`` (decoded JSON) breaks the header's text rules, or ``None``.

    Spec: arrays/objects nest at most :data:`~mlarray.versions.MAX_NESTING` levels (the
    header object is level 1) and no string or key holds a lone surrogate. Iterative, so
    hostile nesting cannot exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_NESTING:
                return f"the header nests deeper than {MAX_NESTING} levels"
            items = node.items() if isinstance(node, dict) else ((None, v) for v in node)
            for key, child in items:
                if key is not None and not _encodable(key):
                    return f"the key {key!r} holds a lone surrogate"
                stack.append((child, depth + 1))
        elif isinstance(node, str) and not _encodable(node):
            return f"the string {node!r} holds a lone surrogate"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_header(header: dict[str, Any]) -> bytes:
    """Serialize a header object to its on-disk bytes (refusing NaN/Infinity, deep nesting, lone surrogates)."""
    problem = json_problem(header)
    if problem is not None:
        raise HeaderValidationError([Problem("", "invalid_value", problem)])
    text = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data: bytes = msgpack.packb(text, use_bin_type=True)
    if len(data) > MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"the header would be {len(data)} bytes (limit {MAX_HEADER_BYTES})")
    return data


def _str_payload(data: bytes, path: str | None) -> bytes:
    if not data:
        raise HeaderEncodingError("the header is empty", path=path)
    tag = data[0]
    if 0xA0 <= tag <= 0xBF:
        start, length = 1, tag & 0x1F
    elif tag in (0xD9, 0xDA, 0xDB):
        width = {0xD9: 1, 0xDA: 2, 0xDB: 4}[tag]
        if len(data) < 1 + width:
            raise HeaderEncodingError("the header string is truncated", path=path)
        start, length = 1 + width, int.from_bytes(data[1 : 1 + width], "big")
    else:
        kind = "a pickle" if tag == 0x80 else f"msgpack type 0x{tag:02x}"
        raise HeaderEncodingError(
            f"the header must be a msgpack string holding JSON, found {kind}; refusing to decode it", path=path
        )
    if start + length != len(data):
        raise HeaderEncodingError("the header string length disagrees with its bytes", path=path)
    return data[start:]


def _refuse_constant(name: str) -> Any:
    raise HeaderNotJSONError(f"the header contains {name}, which is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise HeaderNotJSONError(f"the header repeats the key {key!r}")
        out[key] = value
    return out


BEYOND_BINARY64 = 10**400
"""Stands in for an integer literal of more than :data:`INTEGER_DIGITS` digits."""
INTEGER_DIGITS = 400
"""Integer literals longer than this are beyond binary64 (its largest finite value has 309 digits)."""


def _integer(literal: str) -> int:
    """A JSON integer literal as an ``int``; one of more than 400 digits as :data:`BEYOND_BINARY64` (signed).

    Such a literal lies beyond binary64, so the header's finiteness rule (spec 5.1) refuses
    it wherever it is; its exact value is never needed. Converting it would hit Python's
    limit on digit strings (4300 digits), which is not a rule of the format.
    """
    if len(literal) <= INTEGER_DIGITS:
        return int(literal)
    return -BEYOND_BINARY64 if literal.startswith("-") else BEYOND_BINARY64


def decode_header(data: bytes, *, path: str | None = None) -> dict[str, Any]:
    """Decode on-disk header bytes into a JSON object (a ``dict``); nothing else is constructed.

    Raises
    ------
    HeaderTooLargeError, HeaderEncodingError, HeaderNotJSONError
    """
    if len(data) > MAX_HEADER_BYTES:
        raise HeaderTooLargeError(f"the header is {len(data)} bytes (limit {MAX_HEADER_BYTES})", path=path)
    payload = _str_payload(data, path)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderEncodingError(f"the header is not valid UTF-8 (byte {exc.start})", path=path) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_integer, object_pairs_hook=_no_duplicates)
    except HeaderNotJSONError as exc:
        raise HeaderNotJSONError(str(exc), path=path) from None
    except (ValueError, RecursionError) as exc:
        raise HeaderNotJSONError(f"the header is not valid JSON ({exc})", path=path) from None
    if not isinstance(value, dict):
        raise HeaderNotJSONError(f"the header must be a JSON object, got {type(value).__name__}", path=path)
    if not _surely_plain(text):
        problem = json_problem(value)
        if problem is not None:
            raise HeaderNotJSONError(problem, path=path)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _surely_plain(text: str) -> bool:
    """Whether JSON ``text`` surely decodes within :func:`json_problem`'s rules, judged from the text alone.

    Nesting deeper than :data:`~mlarray.versions.MAX_NESTING` levels needs more opening
    brackets than that, and a lone surrogate can only come from a ``\\uD800``-``\\uDFFF``
    escape (UTF-8 cannot encode one). ``False`` means "walk the value", not "invalid".
    """
    return text.count("[") + text.count("{") <= MAX_NESTING and _SURROGATE_ESCAPE.search(text) is None
