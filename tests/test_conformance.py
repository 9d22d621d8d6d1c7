"""The conformance corpus is present, intact and complete, and the reference reader passes it.

The runner and the generator live in ``conformance/`` (not a package); they are loaded
from there. Every case is checked in-process (fast); the subprocess protocol is checked
end to end on a few cases.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlarray.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "conformance"
READER = SUITE / "readers" / "python_reader.py"
sys.path[:0] = [str(SUITE), str(SUITE / "readers")]

run = importlib.import_module("run")
generate = importlib.import_module("generate")
python_reader = importlib.import_module("python_reader")

MANIFEST: dict[str, Any] = json.loads((SUITE / "manifest.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = MANIFEST["cases"]
IDS = [case["id"] for case in CASES]


def _spec_file_codes() -> set[str]:
    text = (ROOT / "spec" / "mlarray.md").read_text(encoding="utf-8")
    section = text[text.index("### 7.1") : text.index("### 7.2")]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))


def test_the_corpus_is_present_and_large_enough() -> None:
    valid = [c for c in CASES if c["kind"] == "valid"]
    invalid = [c for c in CASES if c["kind"] == "invalid"]
    assert len(valid) >= 30 and len(invalid) >= 25
    assert len(set(IDS)) == len(IDS)
    for case in CASES:
        assert (SUITE / case["path"]).is_file(), case["id"]
        assert (SUITE / case["expected_path"]).is_file(), case["id"]


def test_every_defined_case_is_released() -> None:
    """The generator has nothing left to add: the committed corpus is complete."""
    defined = [case.id for case in generate.all_cases()]
    assert sorted(defined) == sorted(IDS)


def test_no_stray_files() -> None:
    listed = {case["path"] for case in CASES} | {case["expected_path"] for case in CASES}
    present = {p.relative_to(SUITE).as_posix() for p in (SUITE / "cases").rglob("*") if p.is_file()}
    assert present == listed


def test_the_corpus_covers_the_required_kinds() -> None:
    dtypes = {c["expected"]["dtype"] for c in CASES if c["kind"] == "valid"}
    assert dtypes >= {"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16"}
    ndims = {len(c["expected"]["shape"]) for c in CASES if c["kind"] == "valid" and c["expected"]["shape"]}
    assert ndims >= {1, 2, 3, 4, 5, 6}
    assert any(c["expected"]["shape"] is None for c in CASES if c["kind"] == "valid")
    codes = {c["expected"]["error"] for c in CASES if c["kind"] == "invalid"}
    assert codes == _spec_file_codes(), "every file error code of the spec has at least one case"


def test_manifest_validates_against_its_schema() -> None:
    schema = json.loads((SUITE / "manifest.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(MANIFEST)]
    assert errors == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_file_hash_and_expected_file_match_the_manifest(case: dict[str, Any]) -> None:
    assert hashlib.sha256((SUITE / case["path"]).read_bytes()).hexdigest() == case["sha256"]
    assert json.loads((SUITE / case["expected_path"]).read_text(encoding="utf-8")) == case["expected"]


def test_error_codes_exist_in_the_spec_and_the_package() -> None:
    used = {c["expected"]["error"] for c in CASES if c["kind"] == "invalid"}
    assert used <= set(ERROR_CODES)
    assert used <= _spec_file_codes()


def test_probes_cross_chunk_edges() -> None:
    """Every valid case with data has 2-4 probes, and at least one crosses a chunk edge when there is one."""
    for case in CASES:
        expected = case["expected"]
        if case["kind"] != "valid" or expected["shape"] is None:
            continue
        if 0 in expected["shape"]:  # a zero-length array has no slice to probe (spec 4.4.8)
            assert expected["probes"] == [], case["id"]
            continue
        assert 2 <= len(expected["probes"]) <= 4, case["id"]
        chunks = case["expected"]["header"].get("layout", {}) or {}
        if chunks.get("chunk_size") and any(
            c < s for c, s in zip(chunks["chunk_size"], expected["shape"], strict=True)
        ):
            crossing = [
                p
                for p in expected["probes"]
                if any(a < c <= b - 1 for (a, b), c in zip(p["slices"], chunks["chunk_size"], strict=True))
            ]
            assert crossing, case["id"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_python_reader_passes(case: dict[str, Any]) -> None:
    expected = case["expected"]
    probes = [p["slices"] for p in expected.get("probes", [])] if expected["valid"] else []
    answer = python_reader.read(str(SUITE / case["path"]), probes)
    assert run.check(expected, json.loads(json.dumps(answer))) is None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUITE / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_the_runner_drives_the_python_reader_as_a_subprocess() -> None:
    chosen = ["dtype-complex128-1d", "metadata-only", "header-pickle", "digest-mismatch"]
    args = [arg for case in chosen for arg in ("--case", case)]
    result = _run(*args, "--", sys.executable, str(READER))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[-1] for line in lines[:-1]] == chosen
    assert all(line.startswith("PASS") for line in lines[:-1])
    assert lines[-1] == "4 passed, 0 failed"


def test_the_runner_reports_failures(tmp_path: Path) -> None:
    liar = tmp_path / "liar.py"
    liar.write_text('import json\nprint(json.dumps({"valid": False, "error": "NOT_A_FRAME"}))\n', encoding="utf-8")
    crash = tmp_path / "crash.py"
    crash.write_text("raise SystemExit(3)\n", encoding="utf-8")
    for reader, reason in ((liar, "expected valid, got NOT_A_FRAME"), (crash, "exited with status 3")):
        result = _run("--case", "dtype-int8-1d", "--case", "not-a-frame-text", "--", sys.executable, str(reader))
        assert result.returncode == 1
        lines = result.stdout.strip().splitlines()
        assert reason in lines[0] and lines[0].startswith("FAIL")
        assert lines[-1] == ("1 passed, 1 failed" if reader == liar else "0 passed, 2 failed")


def test_the_runner_selects_by_requirement() -> None:
    must = run.select(CASES, ["must"], [], None)
    assert must and all(c["requirement"] == "must" for c in must)
    assert "digest-mismatch" not in {c["id"] for c in must}
    assert len(run.select(CASES, ["must", "should", "may"], [], None)) == len(CASES)
    assert _run("--require", "may", "--case", "dtype-int8-1d", "--", "true").returncode == 1  # nothing selected


def test_the_runner_compares_json_values_strictly() -> None:
    assert run.same({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not run.same({"a": True}, {"a": 1})
    assert not run.same({"a": 1}, {"a": 1, "b": None})


def test_the_generator_never_rewrites_a_released_case(tmp_path: Path) -> None:
    released = next(c for c in generate.all_cases() if c.id == "dtype-int8-1d")
    entry = next(c for c in CASES if c["id"] == released.id)
    (tmp_path / "cases" / "valid").mkdir(parents=True)
    for key in ("path", "expected_path"):
        shutil.copyfile(SUITE / entry[key], tmp_path / entry[key])
    manifest = {**MANIFEST, "cases": [entry]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    before = (tmp_path / entry["path"]).read_bytes()

    new = next(c for c in generate.all_cases() if c.id == "not-a-frame-text")
    assert generate.add_new_cases([released, new], root=tmp_path) == ["not-a-frame-text"]
    assert (tmp_path / entry["path"]).read_bytes() == before
    ids = [c["id"] for c in json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["cases"]]
    assert ids == ["dtype-int8-1d", "not-a-frame-text"]
    assert generate.add_new_cases([released, new], root=tmp_path) == []

    # Asked directly, it refuses to overwrite an existing case file.
    with pytest.raises(generate.ReleasedCaseError):
        generate.build_case(released, root=tmp_path)
    assert (tmp_path / entry["path"]).read_bytes() == before


def test_schema_valid_flags_agree_with_the_committed_schema(tmp_path: Path) -> None:
    """The flags ajv-check.sh relies on: every decodable header's schema verdict, recomputed."""
    from mlarray.schema import committed_path

    validator = jsonschema.Draft202012Validator(json.loads(committed_path().read_text(encoding="utf-8")))
    flagged = [c for c in CASES if "schema_valid" in c]
    assert len(flagged) >= 50
    for case in flagged:
        header = case["expected"]["header"] if case["kind"] == "valid" else case["header"]
        assert validator.is_valid(header) is case["schema_valid"], case["id"]
    result = subprocess.run(
        [sys.executable, str(SUITE / "extract_headers.py"), str(tmp_path)], capture_output=True, text=True, check=True
    )
    written = sorted(
        p.stem for folder in ("schema-valid", "schema-invalid") for p in (tmp_path / folder).glob("*.json")
    )
    assert written == sorted(c["id"] for c in flagged), result.stdout
    # The schema accepts every header the spec calls valid (spec 2.2 included: header-newer-minor).
    assert all(c["schema_valid"] for c in flagged if c["kind"] == "valid")
    by_version = {p.parent.name for p in (tmp_path / "by-version").rglob("*.json")}
    assert "1.0" in by_version
