#!/usr/bin/env python3
"""Write every header of the conformance suite to its own JSON file, for non-Python validators.

Usage: ``python3 conformance/extract_headers.py OUT_DIR``. Standard library only.

Headers the reference implementation found valid against ``schema/`` go to
``OUT_DIR/schema-valid/<id>.json``, the others to ``OUT_DIR/schema-invalid/<id>.json``
(the manifest's ``schema_valid`` flag, which is relative to the newest schema in ``schema/``).
The header of every *valid* case is schema-valid by definition: the spec calls it valid,
so the published schema must accept it. The valid headers of each exact ``schema_version``
also go to ``OUT_DIR/by-version/<version>/<id>.json``, for the released older schemas.
``ajv-check.sh`` then asserts that ajv agrees on every one of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list) -> int:
    if len(argv) != 1:
        print("usage: extract_headers.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    counts = {"schema-valid": 0, "schema-invalid": 0}
    for case in manifest["cases"]:
        if "schema_valid" not in case:
            continue  # no decodable JSON header (broken frame, pickle, NaN, ...)
        header = case["expected"]["header"] if case["kind"] == "valid" else case["header"]
        if case["kind"] == "valid" and not case["schema_valid"]:
            print(f"{case['id']}: a valid case flagged schema-invalid", file=sys.stderr)
            return 1
        folder = "schema-valid" if case["schema_valid"] else "schema-invalid"
        text = json.dumps(header, ensure_ascii=False)
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / f"{case['id']}.json").write_text(text, encoding="utf-8")
        counts[folder] += 1
        version = header.get("schema_version") if isinstance(header, dict) else None
        if case["schema_valid"] and isinstance(version, str) and version.replace(".", "").isdigit():
            (out / "by-version" / version).mkdir(parents=True, exist_ok=True)
            (out / "by-version" / version / f"{case['id']}.json").write_text(text, encoding="utf-8")
    print(f"{counts['schema-valid']} schema-valid and {counts['schema-invalid']} schema-invalid headers in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
