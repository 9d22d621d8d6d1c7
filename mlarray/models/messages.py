"""Our own words for header problems, instead of the validation library's.

Pydantic reports problems in its own vocabulary ("Input should be a valid
dictionary", "Field required", locations ending in union tags like ``.str``). Users
and other tools read mlarray's problems (``mlarray validate``, error messages), so
each pydantic error type is worded here in the terms of the spec: JSON types
(object, array, string, number, integer, boolean, null) and member names. Pure: no
file access.
"""

from __future__ import annotations

from typing import Any

JSON_TYPES = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (tuple, "an array"),
    (dict, "an object"),
)

EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "string": "a string",
    "str": "a string",
    "list": "an array",
    "tuple": "an array",
    "dict": "an object",
    "model": "an object",
    "model_attributes": "an object",
    "none": "null",
}
"""Type name at the start of a pydantic error type (``int_parsing``, ``dict_type`` ...) -> what the spec expects."""

UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, as a phrase (``"a string"``, ``"null"`` ...)."""
    if value is None:
        return "null"
    for kind, name in JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def is_union_tag(part: Any) -> bool:
    """Whether a location part names a union branch or a validator, not a member or an index."""
    if not isinstance(part, str):
        return False
    return part in UNION_TAGS or "[" in part or part.startswith(("function-", "constrained-", "json-or-python"))


def expected_type(error_type: str) -> str | None:
    """What a type error expected (``"an integer"``), or ``None`` if ``error_type`` is no type error."""
    head = error_type.split("_")[0]
    if error_type.endswith(("_type", "_parsing", "_from_float")) or error_type in ("int_from_float",):
        return EXPECTED.get(head, EXPECTED.get(error_type.removesuffix("_type")))
    return None


def message(error_type: str, ctx: dict[str, Any], given: Any, original: str) -> str:
    """The message of one problem, in the spec's words."""
    expected = expected_type(error_type)
    if expected is not None:
        return f"expected {expected}, got {json_type(given)}"
    bounds = {
        "greater_than": "greater than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
    }
    if error_type == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if error_type in bounds:
        return "must be " + bounds[error_type].format(**ctx)
    words = {
        "missing": "this mandatory member is missing",
        "extra_forbidden": "unknown member: this schema version does not define it",
        "finite_number": "not finite: NaN and Infinity are not JSON numbers",
        "too_short": "must have at least {min_length} entries",
        "too_long": "must have at most {max_length} entries",
        "string_too_short": "must be at least {min_length} characters long",
        "string_too_long": "must be at most {max_length} characters long",
        "string_pattern_mismatch": "must match the pattern {pattern}",
        "literal_error": "must be one of {expected}",
        "enum": "must be one of {expected}",
    }
    if error_type in words:
        try:
            return words[error_type].format(**ctx)
        except (KeyError, IndexError):
            return words[error_type].split(" {")[0]
    return original.removeprefix("Value error, ").removeprefix("Assertion failed, ")
