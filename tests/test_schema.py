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
