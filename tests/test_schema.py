"""The committed JSON Schema is what the models generate, and it is standard draft 2020-12."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mlarray import Meta, MLArray
from mlarray.schema import committed_path, header_schema, render, schema_id
from mlarray.versions import SCHEMA_VERSION


def test_committed_schema_is_up_to_date() -> None:
    path = committed_path()
    assert path.exists(), f"{path} is missing: run `make schema`"
    assert path.read_text(encoding="utf-8") == render(), "schema/ is stale: run `make schema` and commit"


def test_schema_is_valid_draft_2020_12_with_versioned_id() -> None:
    schema = header_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == schema_id() and SCHEMA_VERSION in schema["$id"]
    assert "schema_version" in schema["required"]
    assert "schema_version" in schema["$defs"]["KnownMinor"]["required"]


def _keywords(node: object, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, found)
            else:
                _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)


def test_schema_uses_only_standard_keywords() -> None:
    found: set[str] = set()
    _keywords(header_schema(), found)
    standard = {
        "$schema",
        "$id",
        "$defs",
        "$ref",
        "title",
        "description",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "default",
        "if",
        "then",
        "else",
        "not",
    }
    assert found <= standard, f"non-standard keywords: {found - standard}"
    assert "format" not in found


def test_written_headers_validate_against_the_schema(tmp_path: pytest.TempPathFactory) -> None:
    import numpy as np

    path = tmp_path / "a.mla"  # type: ignore[operator]
    MLArray(
        np.zeros((4, 5, 6), np.uint8), spacing=(1, 2, 3), meta=Meta(source={"a": [1, {"b": None}]}, is_seg=True)
    ).save(path)
    header = MLArray.open(path).meta.model_dump(mode="json")
    jsonschema.validate(header, header_schema())
    bad = json.loads(json.dumps(header))
    bad["spatial"]["spacing"] = [1, -2, 3]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, header_schema())


def test_the_schema_states_the_version_rule() -> None:
    """Spec 2.2: known minor versions are closed; a newer minor ignores unknown members at every level."""
    validator = jsonschema.Draft202012Validator(header_schema())
    base = {"array": {"shape": [2, 3], "dtype": "<i2"}, "spatial": {"spacing": [1.0, 2.0]}}
    future = {**base, "from_the_future": {"x": 1}, "spatial": {"spacing": [1.0, 2.0], "thickness": 3}}
    for known in ("1.0", SCHEMA_VERSION):
        assert validator.is_valid({"schema_version": known, **base})
        assert not validator.is_valid({"schema_version": known, **future})
    newer = f"1.{int(SCHEMA_VERSION.split('.')[1]) + 1}"
    assert validator.is_valid({"schema_version": newer, **future})
    assert validator.is_valid({"schema_version": "1.17", **future})
    # Known members are still checked in a newer minor version, and malformed versions fail either way.
    assert not validator.is_valid({"schema_version": newer, **future, "spatial": {"spacing": [-1.0, 2.0]}})
    assert not validator.is_valid({"schema_version": newer, **future, "is_seg": "yes"})
    for version in ("1.01", "2.0", "1", 1.1, None):
        assert not validator.is_valid({"schema_version": version, **base})
    assert not validator.is_valid(base)


def test_the_released_1_0_schema_is_kept() -> None:
    """Released schema files are never edited; the newest one is what the models generate."""
    old = committed_path("1.0")
    assert old.exists()
    assert json.loads(old.read_text(encoding="utf-8"))["$id"] == schema_id("1.0")
    assert committed_path() != old


def test_scaling_in_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(header_schema())
    scaling = {"slope": 0.5, "intercept": -1024, "raw_dtype": "<u2", "stored": "physical"}
    header = {"schema_version": SCHEMA_VERSION, "array": {"shape": [2], "dtype": "<f4"}, "scaling": scaling}
    assert validator.is_valid(header)
    for bad in ({"slope": 0}, {"stored": "both"}, {"raw_dtype": ">u2"}, {"offset": 1}):
        assert not validator.is_valid({**header, "scaling": {**scaling, **bad}}), bad
    assert not validator.is_valid({**header, "scaling": {k: v for k, v in scaling.items() if k != "intercept"}})
