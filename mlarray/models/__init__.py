"""Header models, one subpackage per schema major version, and the one dispatch point.

:func:`parse_header` turns a decoded JSON object into a validated :class:`Meta`,
dispatching on ``schema_version``. Pure: no file access, no blosc2.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlarray.errors import HeaderValidationError, Problem, UnsupportedVersionError
from mlarray.models.base import (
    PROBLEM_KINDS,
    StrictModel,
    ignoring_unknown_fields,
    problems_from,
    strict_json_types,
)
from mlarray.models.jsonvalues import JsonList, JsonObject, overflowing_integers, to_json_value, without_overflow
from mlarray.models.v1 import (
    AXIS_VOCABULARY,
    DTYPES,
    ArrayInfo,
    BBoxes,
    ClassLocation,
    ClassLocations,
    Integrity,
    Layout,
    Meta,
    Scaling,
    Spatial,
    Stats,
    Writer,
    compose_affine,
    is_spatial_label,
)
from mlarray.versions import SCHEMA_VERSION, SUPPORTED_MAJOR, parse_version

__all__ = [
    "AXIS_VOCABULARY",
    "DTYPES",
    "PROBLEM_KINDS",
    "ArrayInfo",
    "BBoxes",
    "ClassLocation",
    "ClassLocations",
    "Integrity",
    "JsonList",
    "JsonObject",
    "Layout",
    "Meta",
    "Scaling",
    "Spatial",
    "Stats",
    "StrictModel",
    "Writer",
    "compose_affine",
    "is_spatial_label",
    "newer_members",
    "parse_header",
    "problems_from",
    "to_json_value",
]


def parse_header(data: Any, *, path: str | None = None) -> Meta:
    """Validate a decoded header object and return it as a :class:`Meta`.

    Raises
    ------
    UnsupportedVersionError
        The major version is not :data:`~mlarray.versions.SUPPORTED_MAJOR`.
    HeaderValidationError
        Anything else is wrong; every problem is listed.
    """
    if not isinstance(data, dict):
        raise HeaderValidationError(
            [Problem("", "wrong_type", f"the header must be a JSON object, got {type(data).__name__}")], path=path
        )
    version = data.get("schema_version")
    if not isinstance(version, str):
        raise HeaderValidationError(
            [Problem("schema_version", "missing_field", "schema_version is missing or not a string")], path=path
        )
    try:
        major, minor = parse_version(version)
    except ValueError as exc:
        raise HeaderValidationError([Problem("schema_version", "invalid_value", str(exc))], path=path) from None
    if major != SUPPORTED_MAJOR:
        raise UnsupportedVersionError(
            f"schema version {version} is not supported: this reader implements {SUPPORTED_MAJOR}.x "
            f"(writes {SCHEMA_VERSION}); upgrade mlarray to read this file",
            path=path,
        )
    overflow = overflowing_integers(data)
    ours = parse_version(SCHEMA_VERSION)[1]
    found: list[Problem] = []
    try:
        with strict_json_types():
            if minor > ours:
                with ignoring_unknown_fields():
                    meta = Meta.model_validate(without_overflow(data) if overflow else data)
            else:
                meta = Meta.model_validate(without_overflow(data) if overflow else data)
    except ValidationError as exc:
        found = problems_from(exc) or [Problem("", "rule_violation", str(exc))]
    except HeaderValidationError as exc:
        found = list(exc.problems) or [Problem("", "rule_violation", str(exc))]
    if overflow:  # the numbers themselves first; then the rest of the header, checked with null in their place
        places = [p.loc for p in overflow]
        found = overflow + [p for p in found if not any(_within(p.loc, place) for place in places)]
    if found:
        raise HeaderValidationError(found, path=path)
    return meta


def newer_members(data: dict[str, Any], meta: Meta) -> list[str]:
    """Locations of the members of decoded header ``data`` that ``meta`` does not hold.

    Only a header of a newer minor version than this package's has such members (spec 2.2:
    a reader ignores them); a writer drops them when it writes the header again (2.3).
    ``source`` and ``extra`` are kept whole and never searched.
    """
    version = data.get("schema_version")
    try:
        newer = isinstance(version, str) and parse_version(version)[1] > parse_version(SCHEMA_VERSION)[1]
    except ValueError:
        newer = False
    if not newer:
        return []
    found: list[str] = []
    stack: list[tuple[Any, Any, str]] = [(data, meta.model_dump(mode="json"), "")]
    while stack:
        raw, kept, loc = stack.pop()
        if isinstance(raw, dict) and isinstance(kept, dict):
            for key, value in raw.items():
                where = f"{loc}.{key}" if loc else key
                if key not in kept:
                    found.append(where)
                elif where not in ("source", "extra"):
                    stack.append((value, kept[key], where))
        elif isinstance(raw, list) and isinstance(kept, list) and len(raw) == len(kept):
            stack.extend((r, k, f"{loc}.{i}") for i, (r, k) in enumerate(zip(raw, kept, strict=True)))
    return sorted(found)


def _within(loc: str, place: str) -> bool:
    """``loc`` is ``place`` or inside it."""
    return loc == place or loc.startswith((place + ".", place + "["))
