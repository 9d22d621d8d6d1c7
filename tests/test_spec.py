"""The specification (spec/mlarray.md) agrees with the implementation.

The example headers validate against the committed JSON Schema and the models; the
closed lists the spec states (error codes, problem kinds, dtypes, axis labels, limits)
are exactly those of the code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlarray.errors import ERROR_CODES
from mlarray.models import AXIS_VOCABULARY, DTYPES, PROBLEM_KINDS, parse_header
from mlarray.models.v1.spatial import AFFINE_TOL, ORTHONORMAL_TOL, SINGULAR_TOL
from mlarray.schema import committed_path
from mlarray.storage import encode_header
from mlarray.storage.frame import MAX_FRAME_HEADER, MAX_TRAILER, TRAILER_TAIL
from mlarray.versions import ALLOWED_METALAYERS, HEADER_KEY, MAX_HEADER_BYTES, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec" / "mlarray.md"
EXAMPLES = sorted((ROOT / "spec" / "examples").glob("*.json"))


def _spec() -> str:
    return SPEC.read_text(encoding="utf-8")


def _section(title_start: str) -> str:
    """The text of the section whose heading starts with ``title_start`` (up to the next heading)."""
    text = _spec()
    match = re.search(rf"^#+ {re.escape(title_start)}.*?$(.*?)(?=^#+ )", text, re.M | re.S)
    assert match, f"spec section {title_start!r} not found"
    return match.group(1)


def _first_column(section: str) -> list[str]:
    """Backquoted values in the first column of the markdown tables of ``section``."""
    return re.findall(r"^\| `([^`]+)` \|", section, re.M)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_against_the_committed_schema(path: Path) -> None:
    schema = json.loads(committed_path().read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [e.message for e in validator.iter_errors(json.loads(path.read_text(encoding="utf-8")))]
    assert errors == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_parses_as_a_header(path: Path) -> None:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    meta = parse_header(data)
    assert meta.schema_version == SCHEMA_VERSION
    # Nothing in the example is dropped or changed by validation.
    dumped = meta.model_dump(mode="json", exclude_unset=True)
    assert json.loads(json.dumps(dumped)) == data


def test_every_error_code_is_in_the_spec_and_nothing_else() -> None:
    in_spec = set(_first_column(_section("7.1"))) | set(_first_column(_section("7.2")))
    assert in_spec == set(ERROR_CODES)


def test_file_codes_are_the_reader_algorithm_codes() -> None:
    """Every file code of 7.1 is produced by some step of the reader algorithm, and only those."""
    file_codes = set(_first_column(_section("7.1")))
    algorithm = set(re.findall(r"`([A-Z][A-Z_]+)`", _section("8. Reader algorithm")))
    assert algorithm == file_codes


def test_problem_kinds_match() -> None:
    assert _first_column(_section("7.3")) == list(PROBLEM_KINDS)


def test_dtype_table_matches_the_models() -> None:
    section = _section("5.4").replace("<code>&#124;", "`|").replace("</code>", "`")
    cells = re.findall(r"^\| `([^`]+)`(?: / `([^`]+)`)?(?: / `([^`]+)`)? \|", section, re.M)
    listed = [c for row in cells for c in row if c and c[0] in "<|"]
    assert sorted(listed) == sorted(DTYPES)


def test_axis_vocabulary_matches_the_models() -> None:
    rows = re.findall(r"^\| (`[^|]+`) \|", _section("6.1 Axes"), re.M)
    labels = [label for row in rows for label in re.findall(r"`([^`]+)`", row)]
    assert labels == list(AXIS_VOCABULARY)


def test_limits_and_constants_match() -> None:
    text = _spec()
    assert f"`MAX_HEADER_BYTES` = {MAX_HEADER_BYTES}" in text
    assert f"min(frame_size - {TRAILER_TAIL}, {MAX_FRAME_HEADER})" in text
    assert f"`trailer_len > {MAX_TRAILER}`" in text
    (ortho,) = re.findall(r"\|\(Dᵀ D − I\)\[r\]\[c\]\| <= ([0-9e.-]+)`", text)
    assert float(ortho) == ORTHONORMAL_TOL
    (atol, rtol) = re.findall(r"<= ([0-9e.-]+) \+ ([0-9e.-]+) · \|B\[r\]\[c\]\|`", text)[0]
    assert float(atol) == float(rtol) == AFFINE_TOL
    assert {"b2nd"} == ALLOWED_METALAYERS and "exactly one** fixed metalayer, named `b2nd`" in text
    assert f"named `{HEADER_KEY}`" in text
    assert f"version **{SCHEMA_VERSION}**" in text


def test_the_encoding_example_is_exact() -> None:
    data = encode_header({"schema_version": "1.0"})
    assert len(data) == 25 and data[0] == 0xB8
    assert "the 25\nbytes `b8 7b 22 73 63 ... 7d`" in _spec()
    assert data[:5].hex(" ") == "b8 7b 22 73 63" and data[-1] == 0x7D


def test_the_singularity_tolerance_is_the_models_one() -> None:
    (tol,) = re.findall(r"has an absolute value `<= ([0-9e.-]+)`", _section("6.5"))
    assert float(tol) == SINGULAR_TOL


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


def test_every_schema_pattern_matches_the_whole_string_in_python_too() -> None:
    """Spec 5.1 "Patterns": anchored as ``^...$(?!\\n)``, so Python's ``re`` agrees with ECMA-262."""
    schema = json.loads(committed_path().read_text(encoding="utf-8"))
    patterns = _patterns(schema)
    assert len(patterns) >= 3
    for pattern in patterns:
        assert pattern.startswith("^") and pattern.endswith("$(?!\\n)"), pattern
    version = next(p for p in patterns if p.startswith("^1"))
    digest = next(p for p in patterns if "0-9a-f" in p)
    assert re.search(version, "1.0") and not re.search(version, "1.0\n")
    assert re.search(digest, "0" * 64) and not re.search(digest, "0" * 64 + "\n")
    assert re.search("^1\\.(0|[1-9][0-9]*)$", "1.0\n"), "a plain $ would accept the newline in Python"
