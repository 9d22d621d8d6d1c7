"""Generate the JSON Schema of the header from the models, and check the committed copy.

``python -m mlarray.schema --write`` regenerates ``schema/mlarray-header-<version>.schema.json``;
a test fails when the committed file differs from what the models generate. The
output uses only standard draft 2020-12 keywords, so non-Python validators (ajv in
strict mode) accept it. Rules JSON Schema cannot express (lengths that depend on
other fields, orthonormality) are stated in ``spec/mlarray.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlarray.models import Meta
from mlarray.versions import SCHEMA_VERSION, parse_version

DRAFT = "https://json-schema.org/draft/2020-12/schema"
REPOSITORY_SCHEMAS = Path(__file__).resolve().parent.parent / "schema"
"""The committed schemas in a checkout of the repository (what ``--write`` regenerates)."""
SHIPPED_SCHEMAS = Path(__file__).resolve().parent / "schema_files"
"""The same files inside an installed package (a build copies them there: ``setup.py``)."""
SCHEMA_DIR = SHIPPED_SCHEMAS if SHIPPED_SCHEMAS.is_dir() else REPOSITORY_SCHEMAS
"""Where the committed schema of every version is read from."""


def schema_id(version: str = SCHEMA_VERSION) -> str:
    """The ``$id`` of the header schema of ``version``."""
    return f"urn:mlarray:schema:header:{version}"


def schema_filename(version: str = SCHEMA_VERSION) -> str:
    return f"mlarray-header-{version}.schema.json"


WHOLE_STRING = r"(?!\n)"
"""Appended to a pattern's final ``$``: ECMA-262 and Python's ``re`` then both match the whole string.

Python's ``$`` also matches before a final line feed, ECMA-262's does not (spec 5.1,
"Patterns"); ``$(?!\\n)`` means "the very end" in both dialects.
"""


def anchor(pattern: str) -> str:
    """``pattern`` with its final ``$`` made to match only at the very end of the string."""
    if pattern.endswith("$") and not pattern.endswith("\\$") and not pattern.endswith(WHOLE_STRING):
        return pattern + WHOLE_STRING
    return pattern


def _clean(node: Any) -> Any:
    """Drop pydantic-specific output that strict validators reject or that is noise; anchor patterns."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "format" and value not in {"date-time", "uri", "email"}:
                continue
            if key == "pattern" and isinstance(value, str):
                out[key] = anchor(value)
                continue
            out[key] = _clean(value)
        return out
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _known_minors_pattern(minor: int) -> str:
    """Regex of the ``schema_version`` strings ``1.0`` .. ``1.<minor>`` (the versions this schema knows)."""
    return anchor("^1\\.(" + "|".join(str(m) for m in range(minor + 1)) + ")$")


def _open(node: Any, names: set[str]) -> Any:
    """Copy of a schema node that ignores unknown members (spec 2.2 rule 3): no ``additionalProperties: false``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "additionalProperties" and value is False:
                continue
            if key == "$ref" and isinstance(value, str) and value.removeprefix("#/$defs/") in names:
                out[key] = value + "Open"
                continue
            out[key] = _open(value, names)
        return out
    if isinstance(node, list):
        return [_open(v, names) for v in node]
    return node


def header_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the header this package writes.

    Spec section 2.2 in schema form: a header whose ``schema_version`` is a minor
    version this schema knows is validated closed (unknown members refused); a header
    of a newer minor version is validated open (unknown members ignored at every
    level, the known members still checked).
    """
    body = _clean(Meta.model_json_schema(mode="validation"))
    defs: dict[str, Any] = body.pop("$defs", {})
    for key in ("title", "description"):
        body.pop(key, None)
    body["required"] = sorted(set(body.get("required", [])) | {"schema_version"})
    names = set(defs)
    minor = parse_version(SCHEMA_VERSION)[1]
    all_defs = {**defs, **{f"{name}Open": _open(value, names) for name, value in defs.items()}}
    all_defs["KnownMinor"] = body
    all_defs["NewerMinor"] = _open(body, names)
    return {
        "$schema": DRAFT,
        "$id": schema_id(),
        "title": f"mlarray header {SCHEMA_VERSION}",
        "description": "Header of an .mla file: UTF-8 JSON stored in the Blosc2 vlmetalayer 'mlarray'. "
        "See spec/mlarray.md for the rules a schema cannot express.",
        "$defs": all_defs,
        "type": "object",
        "required": ["schema_version"],
        "if": {
            "type": "object",
            "properties": {"schema_version": {"type": "string", "pattern": _known_minors_pattern(minor)}},
        },
        "then": {"$ref": "#/$defs/KnownMinor"},
        "else": {"$ref": "#/$defs/NewerMinor"},
    }


def render() -> str:
    """The schema as committed: indented, key order kept, trailing newline."""
    return json.dumps(header_schema(), indent=2, ensure_ascii=False) + "\n"


def committed_path(version: str = SCHEMA_VERSION) -> Path:
    return SCHEMA_DIR / schema_filename(version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write the mlarray header JSON Schema.")
    parser.add_argument("--write", action="store_true", help="write schema/ instead of printing")
    args = parser.parse_args(argv)
    if args.write:
        if not (REPOSITORY_SCHEMAS.parent / "pyproject.toml").is_file():
            print("--write regenerates the repository's schema/ folder: run it from a checkout", file=sys.stderr)
            return 2
        target = REPOSITORY_SCHEMAS / schema_filename()
        REPOSITORY_SCHEMAS.mkdir(exist_ok=True)
        target.write_text(render(), encoding="utf-8")
        print(f"wrote {target}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
