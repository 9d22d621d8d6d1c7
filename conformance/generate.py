"""Add new cases to the conformance corpus; never rewrite a released one.

Usage::

    PYTHONPATH=. python conformance/generate.py          # add the cases not yet in the manifest
    PYTHONPATH=. python conformance/generate.py --check  # exit 1 if some case is not generated yet

The cases are defined in ``valid*_cases.py`` and ``invalid*_cases.py``. A case whose id is
in ``manifest.json`` is released: its ``.mla`` file, its expected result and its manifest
entry are committed and this script never touches them again (the files are not
byte-reproducible across Blosc2 versions, so released files are the reference, not the
code that once made them). Every new case is checked against the reference reader before
it is added.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE / "readers"))

import jsonschema  # noqa: E402
import numpy as np  # noqa: E402
from casekit import InvalidCase, ValidCase  # noqa: E402
from invalid_cases import INVALID  # noqa: E402
from python_reader import read, sha256  # noqa: E402
from valid_cases import VALID  # noqa: E402

from mlarray.schema import committed_path  # noqa: E402
from mlarray.storage import decode_header  # noqa: E402
from mlarray.storage.frame import inspect_frame  # noqa: E402

MANIFEST = HERE / "manifest.json"
SUITE_VERSION = "1.1"


class ReleasedCaseError(RuntimeError):
    """Raised when asked to (re)write a case that is already released."""


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    if not path.exists():
        return {"suite": "mlarray-conformance", "spec_version": SUITE_VERSION, "cases": []}
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def save_manifest(manifest: dict[str, Any], path: Path = MANIFEST) -> None:
    text = json.dumps(manifest, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def probes_for(shape: Sequence[int], chunks: Sequence[int], blocks: Sequence[int]) -> list[list[list[int]]]:
    """2 to 4 slices that cross chunk edges, block edges and reach into the last (partial) chunk."""
    candidates = [
        # across the first chunk edge of every axis that has one
        [[c - 1, min(s, c + 2)] if c < s else [0, s] for s, c in zip(shape, chunks, strict=True)],
        # across the first block edge, inside the first chunk
        [[b - 1, min(s, b + 1)] if b < s else [max(0, s - 2), s] for s, b in zip(shape, blocks, strict=True)],
        # the far corner: the partial edge chunks
        [[max(0, s - 3), s] for s in shape],
        # a slab through the middle of axis 0, whole along the others
        [[s // 2, s // 2 + 1] if i == 0 else [0, s] for i, s in enumerate(shape)],
    ]
    out: list[list[list[int]]] = []
    for probe in candidates:
        if (
            probe not in out
            and all(b > a for a, b in probe)
            and all(b <= s for (_, b), s in zip(probe, shape, strict=True))
        ):
            out.append(probe)
    return out[:4]


def _schema_valid(header: Any) -> bool:
    schema = json.loads(committed_path().read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema).is_valid(header)


def _expected_valid(case: ValidCase, path: Path, array: np.ndarray[Any, Any] | None) -> dict[str, Any]:
    frame = inspect_frame(path)
    header = decode_header(frame.header_bytes)
    if array is None:
        expected = {
            "valid": True,
            "error": None,
            "header": header,
            "shape": None,
            "dtype": None,
            "sha256": None,
            "probes": [],
        }
    else:
        shape = list(array.shape)
        probes = probes_for(shape, frame.nd.chunks, frame.nd.blocks)
        expected = {
            "valid": True,
            "error": None,
            "header": header,
            "shape": shape,
            "dtype": header["array"]["dtype"],  # as the header spells it (the protocol)
            "sha256": sha256(array),
            "probes": [{"slices": p, "sha256": sha256(array[tuple(slice(a, b) for a, b in p)])} for p in probes],
        }
    answer = read(str(path), [p["slices"] for p in expected["probes"]])
    got = {k: answer.get(k) for k in ("valid", "error", "header", "shape", "dtype", "sha256")}
    want = {k: expected[k] for k in got}
    if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True) or answer.get("probes") != [
        p["sha256"] for p in expected["probes"]
    ]:
        raise AssertionError(f"{case.id}: the reference reader disagrees with the case ({answer.get('error')})")
    return expected


def _entry(case: ValidCase | InvalidCase, expected: dict[str, Any], path: Path, root: Path) -> dict[str, Any]:
    return {
        "id": case.id,
        "kind": "valid" if isinstance(case, ValidCase) else "invalid",
        "path": path.relative_to(root).as_posix(),
        "expected_path": path.with_suffix(".json").relative_to(root).as_posix(),
        "section": case.section,
        "requirement": case.requirement,
        "description": case.description,
        "sha256": file_sha256(path),
        "expected": expected,
    }


def _finite_json(value: Any) -> bool:
    """Whether every number in decoded JSON is a finite binary64 (what other languages can parse)."""
    if isinstance(value, dict):
        return all(_finite_json(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_json(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return math.isfinite(float(value))
        except OverflowError:  # an integer literal beyond binary64
            return False
    return True


def _header_of(path: Path) -> Any:
    """The stored header JSON object of ``path``, or ``None`` when it cannot be decoded."""
    try:
        header = decode_header(inspect_frame(path).header_bytes)
        json.dumps(header, allow_nan=False)
    except Exception:
        return None
    # a literal like 1e400 (inf) or 1 followed by 400 zeros: no number other languages can read
    return header if _finite_json(header) else None


def build_case(case: ValidCase | InvalidCase, root: Path = HERE) -> dict[str, Any]:
    """Write one case's files under ``root/cases`` and return its manifest entry."""
    kind = "valid" if isinstance(case, ValidCase) else "invalid"
    folder = root / "cases" / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.id}.mla"
    expected_path = path.with_suffix(".json")
    if path.exists() or expected_path.exists():
        raise ReleasedCaseError(f"{case.id}: {path.name} already exists; released files are never rewritten")
    try:
        if isinstance(case, ValidCase):
            expected = _expected_valid(case, path, case.build(path))
            schema_valid = _schema_valid(expected["header"])
        else:
            case.build(path)
            expected = {"valid": False, "error": case.code}
            answer = read(str(path), [])
            if answer != expected:
                raise AssertionError(f"{case.id}: the reference reader answers {answer}, expected {expected}")
            header = _header_of(path)
            schema_valid = None if header is None else _schema_valid(header)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    expected_path.write_text(
        json.dumps(expected, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    entry = _entry(case, expected, path, root)
    if kind == "invalid" and schema_valid is not None:
        entry["header"] = _header_of(path)
    if schema_valid is not None:
        entry["schema_valid"] = schema_valid
    return entry


def all_cases() -> list[ValidCase | InvalidCase]:
    cases: list[ValidCase | InvalidCase] = [*VALID, *INVALID]
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    return cases


def add_new_cases(cases: Iterable[ValidCase | InvalidCase], root: Path = HERE) -> list[str]:
    """Generate every case whose id is not in ``root/manifest.json``; return the added ids."""
    manifest_path = root / "manifest.json"
    manifest = load_manifest(manifest_path)
    released = {entry["id"] for entry in manifest["cases"]}
    added = []
    for case in cases:
        if case.id in released:
            continue
        manifest["cases"].append(build_case(case, root))
        save_manifest(manifest, manifest_path)  # after every case: an interruption loses nothing
        added.append(case.id)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report cases not generated yet")
    args = parser.parse_args(argv)
    if args.check:
        released = {entry["id"] for entry in load_manifest()["cases"]}
        missing = [c.id for c in all_cases() if c.id not in released]
        print(f"{len(missing)} case(s) not generated yet" + (": " + ", ".join(missing) if missing else ""))
        return 1 if missing else 0
    added = add_new_cases(all_cases())
    print(f"added {len(added)} case(s)" + (": " + ", ".join(added) if added else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
