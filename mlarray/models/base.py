"""Shared base of every header model, and the free-form JSON containers.

Rules that hold for every model (spec section "Header"):

* unknown keys are refused, except inside the free-form ``source`` and ``extra``
  objects, and except when a reader reads a *newer minor* schema version (then
  unknown keys are dropped, see :func:`mlarray.models.parse_header`);
* numbers must be finite: JSON has no NaN or Infinity;
* an assignment is validated on a copy first and only committed when the whole
  model is still valid, so a rejected edit leaves the model unchanged.

This module must not import blosc2 or anything from :mod:`mlarray.storage`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetPydanticSchema, ValidationError, model_validator
from pydantic_core import core_schema

from mlarray.errors import HeaderValidationError, Problem, model_error
from mlarray.models.messages import is_union_tag, message
from mlarray.versions import MAX_NESTING

_LENIENT: ContextVar[bool] = ContextVar("mlarray_ignore_unknown_fields", default=False)


@contextlib.contextmanager
def ignoring_unknown_fields() -> Iterator[None]:
    """Within this block, validation drops unknown keys instead of refusing them (newer minor versions)."""
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)


_WALKED: ContextVar[bool] = ContextVar("mlarray_nesting_checked", default=False)
"""Set while the containers of a value whose nesting :func:`to_json_value` checked are converted."""

_STRICT: ContextVar[bool] = ContextVar("mlarray_strict_json_types", default=False)


@contextlib.contextmanager
def strict_json_types() -> Iterator[None]:
    """Within this block, values must have their exact JSON type: no ``"3"`` for 3, no ``1`` for true.

    :func:`mlarray.models.parse_header` validates decoded headers this way (spec: a value of
    the wrong JSON type is ``HEADER_INVALID``); Python callers building models keep the
    usual conversions (tuples, NumPy scalars).
    """
    token = _STRICT.set(True)
    try:
        yield
    finally:
        _STRICT.reset(token)


_KIND = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "finite_number": "not_finite",
    "literal_error": "invalid_value",
    "enum": "invalid_value",
    "string_pattern_mismatch": "invalid_value",
    "value_error": "rule_violation",
    "assertion_error": "rule_violation",
}
_RANGE = ("greater_than", "less_than", "too_short", "too_long", "string_too", "multiple_of")

PROBLEM_KINDS = (
    "missing_field",
    "unknown_field",
    "wrong_type",
    "not_finite",
    "out_of_range",
    "invalid_value",
    "rule_violation",
)
"""Closed list of header problem kinds reported by validation."""


def _kind(error_type: str) -> str:
    if error_type in _KIND:
        return _KIND[error_type]
    if error_type.startswith(_RANGE):
        return "out_of_range"
    return "wrong_type"


def problems_from(error: ValidationError, prefix: str = "") -> list[Problem]:
    """Convert a pydantic ``ValidationError`` into mlarray :class:`Problem` records, in the spec's words."""
    out: list[Problem] = []
    for item in error.errors(include_url=False):
        parts = [part for part in item["loc"] if not is_union_tag(part)]
        loc = ".".join(str(part) for part in (prefix, *parts) if part != "")
        ctx = item.get("ctx") or {}
        inner = ctx.get("error")
        kind = _kind(item["type"])
        if item["type"] in ("literal_error", "enum") and not isinstance(item.get("input"), str):
            kind = "wrong_type"  # spec 7.3: invalid_value is a string that is not one of the allowed ones
        if isinstance(inner, HeaderValidationError) and inner.problems:
            for sub in inner.problems:
                sub_loc = ".".join(part for part in (loc, sub.loc) if part).replace(".[", "[")
                out.append(Problem(loc=sub_loc, code=sub.code, message=sub.message))
            continue
        text = message(item["type"], ctx, item.get("input"), str(item["msg"]))
        _add(out, Problem(loc=loc, code=kind, message=text))
    return out


def _add(problems: list[Problem], new: Problem) -> None:
    """Append ``new``; the branches of a union (``string or integer``) become one problem."""
    last = problems[-1] if problems else None
    if last is not None and (last.loc, last.code) == (new.loc, new.code):
        if last.message == new.message:
            return
        if new.code == "wrong_type" and ", got " in last.message and ", got " in new.message:
            wanted, got = last.message.rsplit(", got ", 1)
            problems[-1] = Problem(last.loc, last.code, f"{wanted} or {new.message.split(', got ')[0][9:]}, got {got}")
            return
    problems.append(new)


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
        out: dict[str, Any] = _plain(self)
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


def _plain(value: Any) -> Any:
    """Convert mlarray JSON containers back to plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class StrictModel(BaseModel):
    """Base of every header model: closed, finite, validated on every assignment."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        validate_default=False,
        revalidate_instances="never",
        arbitrary_types_allowed=False,
    )

    _free_form: ClassVar[frozenset[str]] = frozenset()
    _positional: ClassVar[tuple[str, ...]] = ()
    """Fields that may also be given positionally, in this order (mlarray 0.0.x's signatures)."""

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_when_lenient(cls, data: Any) -> Any:
        """Newer minor versions may add fields; a reader ignores them (spec: stability policy)."""
        if _LENIENT.get() and isinstance(data, dict):
            known = set(cls.model_fields)
            return {k: v for k, v in data.items() if k in known}
        return data

    def __init__(self, /, *args: Any, **data: Any) -> None:
        if args:
            data = self._positional_data(args, data)
        try:
            if _STRICT.get():
                self.__pydantic_validator__.validate_python(data, self_instance=self, strict=True)
            else:
                super().__init__(**data)
        except ValidationError as exc:
            raise model_error(problems_from(exc)) from None
        except HeaderValidationError as exc:
            raise model_error(exc.problems) from None

    @classmethod
    def _positional_data(cls, args: tuple[Any, ...], data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with ``args`` assigned to the names of :attr:`_positional`, in order.

        A positional ``None`` means "not given" (the field keeps its default), as in
        mlarray 0.0.x, where ``Meta(None, None, spatial)`` was common.

        Raises
        ------
        TypeError
            More arguments than the model takes positionally, or a field given twice.
        """
        names = cls._positional
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes at most {len(names)} positional arguments ({len(args)} given)")
        out = dict(data)
        for name, value in zip(names, args, strict=False):
            if value is None:
                continue
            if name in out:
                raise TypeError(f"{cls.__name__}() got {name!r} both positionally and by keyword")
            out[name] = value
        return out

    def _stored(self) -> dict[str, Any]:
        """The values of the fields set on this model, exactly as stored (what serialises)."""
        return {key: self.__dict__[key] for key in type(self).model_fields if key in self.model_fields_set}

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
            return
        if name not in type(self).model_fields:
            if hasattr(type(self), name):  # a property or another class attribute: its own rules
                super().__setattr__(name, value)
                return
            # a typo (meta.is_sg = True): the error building the model with that member gives
            raise model_error(
                [Problem(name, "unknown_field", "unknown member: this schema version does not define it")]
            )
        data = self._stored()
        data[name] = value
        try:
            candidate = type(self).model_validate(data)
        except ValidationError as exc:
            raise model_error(problems_from(exc)) from None
        except HeaderValidationError as exc:
            raise model_error(exc.problems) from None
        self.__dict__[name] = candidate.__dict__[name]
        self.model_fields_set.add(name)

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        """Take NumPy arrays as nested lists, and one-field wrappers as their value.

        ``spacing=np.array(...)`` is ``spacing=[...]``; a model whose only field is
        named like the key it is given for (mlarray 0.0.x's ``is_seg=MetaIsSeg(is_seg=True)``)
        stands for that field's value.
        """
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] | None = None
        for key, value in data.items():
            if isinstance(value, np.ndarray):
                plain = value.tolist()
            elif isinstance(value, StrictModel) and list(type(value).model_fields) == [key]:
                plain = getattr(value, key)
            else:
                continue
            if out is None:
                out = dict(data)  # copy only when something changes: headers are parsed often
            out[key] = plain
        return data if out is None else out

    # ------------------------------------------------------------ mapping helpers

    def to_plain(self, include_none: bool = False) -> dict[str, Any]:
        """The model as plain JSON types (dicts, lists, str, numbers, bool).

        Fields that are ``None`` are left out unless ``include_none`` is true.
        """
        return dict(self.model_dump(mode="json", exclude_none=not include_none))

    def to_mapping(self) -> dict[str, Any]:
        """The model as plain JSON types with every field present (``None`` included)."""
        return dict(self.model_dump(mode="json"))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Any:
        """Build (and validate) the model from a mapping such as :meth:`to_mapping` returns.

        Raises
        ------
        TypeError
            ``data`` is not a mapping.
        HeaderKeyError
            ``data`` has keys the model does not define (a ``KeyError``, as in mlarray 0.0.x).
        HeaderValidationError
            Any other problem.
        """
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_mapping expects a mapping, got {type(data).__name__}")
        try:
            return cls(**dict(data or {}))
        except HeaderValidationError as exc:
            raise model_error(exc.problems, unknown_is_key_error=True) from None

    @classmethod
    def ensure(cls, value: Any) -> Any:
        """``value`` as an instance of this model: ``None`` builds the default, a mapping :meth:`from_mapping`.

        Raises
        ------
        TypeError
            ``value`` is neither ``None``, an instance nor a mapping.
        HeaderValidationError
            The model has mandatory fields (``None``) or the mapping is invalid.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_mapping(value)
        raise TypeError(f"expected None, a mapping or a {cls.__name__}, got {type(value).__name__}")

    def is_default(self) -> bool:
        """Whether every field holds its default value (``False`` when a field has no default)."""
        for name, info in type(self).model_fields.items():
            if info.is_required():
                return False
            value = self.__dict__[name]
            if isinstance(value, StrictModel):
                if not value.is_default():
                    return False
            elif value != info.get_default(call_default_factory=True):
                return False
        return True

    def reset(self) -> None:
        """Set every field to its default, validated as a whole; fields :meth:`copy_from` skips are kept.

        Raises
        ------
        HeaderValidationError
            A field has no default (the model cannot exist without it); nothing changes.
        """
        kept = {name: self.__dict__[name] for name in self._copy_skips() if name in self.model_fields_set}
        try:
            candidate = type(self).model_validate(kept)
        except ValidationError as exc:
            raise model_error(problems_from(exc)) from None
        for name in type(self).model_fields:
            self.__dict__[name] = candidate.__dict__[name]
        self.model_fields_set.clear()
        self.model_fields_set.update(candidate.model_fields_set)

    def _copy_skips(self) -> frozenset[str]:
        """Fields :meth:`copy_from` never copies (they describe this object's own data)."""
        return frozenset()

    def copy_from(self, other: StrictModel, *, overwrite: bool = False) -> None:
        """Copy the fields of ``other`` (same class) into this model, validated as a whole.

        With ``overwrite=False`` only fields that are unset here (``None``, an empty
        list or dict, or a nested model whose fields are all unset) are filled, nested
        models field by field; with ``overwrite=True`` every copyable field of
        ``other`` replaces this one's. The result is validated before anything
        changes: a copy that would make the model invalid raises
        :class:`~mlarray.errors.HeaderValidationError` and leaves it untouched.

        Raises
        ------
        TypeError
            ``other`` is not an instance of this model's class.
        """
        if type(other) is not type(self):
            raise TypeError(f"copy_from expects a {type(self).__name__}, got {type(other).__name__}")
        try:
            merged = _merged(self, other, overwrite)
            candidate = type(self).model_validate(merged)
        except ValidationError as exc:
            raise model_error(problems_from(exc)) from None
        for name in type(self).model_fields:
            if name in merged:
                self.__dict__[name] = candidate.__dict__[name]
                self.model_fields_set.add(name)


def _unset(value: Any) -> bool:
    if value is None or (isinstance(value, (list, dict)) and not value):
        return True
    if isinstance(value, StrictModel):
        return all(_unset(value.__dict__[name]) for name in type(value).model_fields)
    return False


def _merged(target: StrictModel, source: StrictModel, overwrite: bool) -> dict[str, Any]:
    """Field values of ``target`` with those of ``source`` copied in (see :meth:`StrictModel.copy_from`)."""
    out: dict[str, Any] = target._stored()
    skips = target._copy_skips()
    for name in type(target).model_fields:
        if name in skips:
            continue
        mine, theirs = target.__dict__[name], source.__dict__[name]
        if overwrite or _unset(mine):
            if overwrite or not _unset(theirs):
                out[name] = copy.deepcopy(theirs)
        elif isinstance(mine, StrictModel) and isinstance(theirs, StrictModel):
            out[name] = type(mine).model_validate(_merged(mine, theirs, overwrite=False))
    return out
