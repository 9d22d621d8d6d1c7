"""Shared base of every header model (the free-form JSON containers are in :mod:`mlarray.models.jsonvalues`).

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
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mlarray.errors import HeaderValidationError, Problem, model_error
from mlarray.models.messages import is_union_tag, message

_LENIENT: ContextVar[bool] = ContextVar("mlarray_ignore_unknown_fields", default=False)


@contextlib.contextmanager
def ignoring_unknown_fields() -> Iterator[None]:
    """Within this block, validation drops unknown keys instead of refusing them (newer minor versions)."""
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)


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
