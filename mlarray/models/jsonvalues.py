"""The free-form JSON of a header: containers that hold only valid, finite JSON, and the checks.

``source`` and ``extra`` (and the other free-form members) are :class:`JsonObject` and
:class:`JsonList` values: every insertion is converted and checked (:func:`to_json_value`), so
a header never holds a value JSON cannot represent exactly (NaN, Infinity, integers beyond
binary64, bytes, lone surrogates, nesting deeper than the header's limit). Decoded headers are
checked without building anything first (:func:`overflowing_integers`).

This module must not import blosc2 or anything from :mod:`mlarray.storage`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Annotated, Any

import numpy as np
from pydantic import GetCoreSchemaHandler, GetPydanticSchema
from pydantic_core import core_schema

from mlarray.errors import HeaderValidationError, Problem
from mlarray.versions import MAX_NESTING

_WALKED: ContextVar[bool] = ContextVar("mlarray_nesting_checked", default=False)
"""Set while the containers of a value whose nesting :func:`to_json_value` checked are converted."""


def _fits_binary64(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _all_finite(value: Any) -> bool:
    """Whether every number in ``value`` is a finite binary64 (the quick pass: no locations built)."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is float:
            if not math.isfinite(node):
                return False
        elif isinstance(node, (dict, list, float)):
            return False  # subclasses: the full pass looks at them
        elif isinstance(node, int) and not isinstance(node, bool) and not _fits_binary64(node):
            return False
    return True


def overflowing_integers(value: Any, loc: str = "") -> list[Problem]:
    """Problems for every number in decoded JSON that is not a finite binary64 (iterative).

    Integers beyond the binary64 range, and literals like ``1e400`` (which Python's JSON
    parser turns into infinity), anywhere in the header, unknown members included.
    """
    if _all_finite(value):
        return []
    out: list[Problem] = []
    stack: list[tuple[Any, str]] = [(value, loc)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}.{i}") for i, v in enumerate(node))
        elif isinstance(node, int) and not isinstance(node, bool) and not _fits_binary64(node):
            out.append(Problem(where, "not_finite", "the integer is beyond the binary64 range"))
        elif isinstance(node, float) and math.isnan(node):
            out.append(Problem(where, "not_finite", "NaN is not a finite number (JSON has no NaN)"))
        elif isinstance(node, float) and not math.isfinite(node):
            out.append(Problem(where, "not_finite", "the number is not finite (beyond the binary64 range)"))
    return out


def without_overflow(value: Any) -> Any:
    """A copy of decoded JSON ``value`` with ``None`` for every number :func:`overflowing_integers` reports.

    So the rest of a header can still be checked, and all of its problems listed at once.
    """
    if isinstance(value, dict):
        return {k: without_overflow(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_overflow(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _fits_binary64(value):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _bad_json(loc: str, code: str, message: str) -> HeaderValidationError:
    return HeaderValidationError([Problem(loc, code, message)])


def to_json_value(value: Any, loc: str = "") -> Any:
    """Return ``value`` as a validated, finite JSON value made of mlarray containers.

    Dicts become :class:`JsonObject`, lists and tuples :class:`JsonList`; NumPy
    scalars and arrays become plain Python values. Raises
    :class:`~mlarray.errors.HeaderValidationError` (a ``ValueError``) naming the
    location of the first value JSON cannot represent exactly (NaN, Infinity, bytes,
    arbitrary objects, non-string keys).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_json(loc, "invalid_value", "the string holds a lone surrogate (not valid UTF-8)") from None
        return value
    if isinstance(value, np.generic):
        return to_json_value(value.item(), loc)
    if isinstance(value, int):
        if not _fits_binary64(value):
            raise _bad_json(loc, "not_finite", "the integer is beyond the binary64 range (JSON numbers must be finite)")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad_json(loc, "not_finite", f"{value!r} is not a finite number (JSON has no NaN/Infinity)")
        return float(value)
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist(), loc)
    if not isinstance(value, (Mapping, list, tuple)):
        raise _bad_json(loc, "wrong_type", f"{type(value).__name__} is not a JSON value")
    if _WALKED.get():  # inside a container whose whole nesting was checked
        return JsonObject(value, _loc=loc) if isinstance(value, Mapping) else JsonList(value, _loc=loc)
    if _nests_deeper(value, MAX_NESTING):
        # checked without recursion, once per conversion: a hostile nesting would exhaust the stack (RecursionError)
        raise _bad_json(loc, "invalid_value", f"nests deeper than {MAX_NESTING} levels (the header's limit)")
    token = _WALKED.set(True)
    try:
        return JsonObject(value, _loc=loc) if isinstance(value, Mapping) else JsonList(value, _loc=loc)
    finally:
        _WALKED.reset(token)


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value``'s dicts and lists nest more than ``limit`` levels (``value`` itself is level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, Mapping) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple)))
    return False


class JsonObject(dict[str, Any]):
    """A ``dict`` that only ever holds valid JSON: every insertion is validated.

    It compares, prints and serializes exactly like the plain dict it wraps.
    """

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), *, _loc: str = "") -> None:
        super().__init__()
        self._loc = _loc
        items = data.items() if isinstance(data, Mapping) else data
        for key, value in items:
            self[key] = value

    def _child(self, key: str) -> str:
        return f"{self._loc}.{key}" if self._loc else str(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise _bad_json(self._loc, "wrong_type", f"key {key!r} is not a string (JSON keys are strings)")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_json(
                self._child(key.encode("utf-8", "backslashreplace").decode("ascii")),
                "invalid_value",
                "the member name holds a lone surrogate (not valid UTF-8)",
            ) from None
        super().__setitem__(key, to_json_value(value, self._child(key)))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> JsonObject:  # type: ignore[override,misc]
        self.update(other)
        return self

    def copy(self) -> JsonObject:
        return JsonObject(self, _loc=self._loc)

    def to_plain(self) -> dict[str, Any]:
        """A plain ``dict`` copy (nested containers plain too)."""
        out: dict[str, Any] = plain_json(self)
        return out

    def __reduce__(self) -> Any:
        return (JsonObject, (dict(self),))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def build(value: Any) -> JsonObject:
            if isinstance(value, JsonObject):
                return value
            return JsonObject(value)

        return core_schema.no_info_after_validator_function(
            build,
            core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema()),
        )


JsonDict = Annotated[
    dict[str, Any], GetPydanticSchema(lambda source, handler: JsonObject.__get_pydantic_core_schema__(source, handler))
]
"""A model field holding a :class:`JsonObject`, typed as the plain dict users pass in (``Meta(source={...})``).

Type checkers without pydantic's plugin build a model's ``__init__`` from the annotations; a
``JsonObject`` annotation would refuse a dict literal. At run time the value is a ``JsonObject``.
"""


class JsonList(list[Any]):
    """A ``list`` that only ever holds valid JSON: every insertion is validated."""

    def __init__(self, data: Iterable[Any] = (), *, _loc: str = "") -> None:
        self._loc = _loc
        super().__init__(to_json_value(v, f"{_loc}[{i}]") for i, v in enumerate(data))

    def _check(self, value: Any) -> Any:
        return to_json_value(value, f"{self._loc}[]")

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            super().__setitem__(index, [self._check(v) for v in value])
        else:
            super().__setitem__(index, self._check(value))

    def append(self, value: Any) -> None:
        super().append(self._check(value))

    def insert(self, index: Any, value: Any) -> None:
        super().insert(index, self._check(value))

    def extend(self, values: Iterable[Any]) -> None:
        super().extend(self._check(v) for v in values)

    def __iadd__(self, values: Iterable[Any]) -> JsonList:  # type: ignore[misc]
        self.extend(values)
        return self

    def copy(self) -> JsonList:
        return JsonList(self, _loc=self._loc)

    def __reduce__(self) -> Any:
        return (JsonList, (list(self),))


def plain_json(value: Any) -> Any:
    """Convert mlarray JSON containers back to plain dicts and lists."""
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    return value
