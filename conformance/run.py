#!/usr/bin/env python3
"""Run the mlarray conformance suite against any reader executable.

Standard library only, so a reader written in any language can be checked without
installing anything but Python 3.8+::

    python3 conformance/run.py [--require must] [--case ID] -- READER_CMD [ARGS...]

For every selected case the runner calls ``READER_CMD... FILE PROBES_JSON`` and compares
the one JSON object the reader prints with the case's expected result. The protocol is
described in ``conformance/README.md``. Prints one row per case and a final line
``N passed, N failed``; exits 1 when a case fails (or none was selected), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LEVELS = ("must", "should", "may")


def same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (``1 == 1.0``), booleans distinct from numbers, order-free objects."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # noqa: B905 (lengths checked; Python 3.8)
    return type(a) is type(b) and a == b


def check(expected: dict[str, Any], answer: Any) -> str | None:
    """``None`` when ``answer`` matches ``expected``, else the reason it does not."""
    if not isinstance(answer, dict):
        return "the reader did not print a JSON object"
    if answer.get("valid") is not expected["valid"]:
        got = answer.get("error") if answer.get("valid") is False else "valid"
        want = expected["error"] if expected["valid"] is False else "valid"
        return f"expected {want}, got {got}"
    if not expected["valid"]:
        if answer.get("error") != expected["error"]:
            return f"expected error {expected['error']}, got {answer.get('error')}"
        return None
    if answer.get("error") is not None:
        return f'a valid answer must have "error": null, got {answer.get("error")!r}'
    for key in ("shape", "dtype", "sha256"):
        if not same(answer.get(key), expected[key]):
            return f"{key}: expected {expected[key]!r}, got {answer.get(key)!r}"
    if not same(answer.get("header"), expected["header"]):
        return "header: differs from the header stored in the file"
    want_probes = [p["sha256"] for p in expected["probes"]]
    got_probes = answer.get("probes")
    if not isinstance(got_probes, list) or len(got_probes) != len(want_probes):
        return f"probes: expected {len(want_probes)} hashes, got {got_probes!r}"
    for i, (want, got) in enumerate(zip(want_probes, got_probes)):  # noqa: B905
        if got != want:
            return f"probe {i} {expected['probes'][i]['slices']}: sha256 differs"
    return None


def run_case(entry: dict[str, Any], reader: list[str], root: Path, timeout: float) -> str | None:
    """Run the reader on one case; ``None`` when it passes, else why it failed."""
    expected = entry["expected"]
    probes = [p["slices"] for p in expected.get("probes", [])] if expected["valid"] else []
    path = root / entry["path"]
    try:
        proc = subprocess.run(
            [*reader, str(path), json.dumps(probes)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the reader did not finish within {timeout:g} s"
    except OSError as exc:
        return f"the reader cannot be started ({exc})"
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return f"the reader exited with status {proc.returncode} {tail[0][:200]}".rstrip()
    try:
        answer = json.loads(proc.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"the reader's output is not one JSON object ({exc})"
    return check(expected, answer)


def select(cases: list[dict[str, Any]], levels: list[str], ids: list[str], kind: str | None) -> list[dict[str, Any]]:
    chosen = [c for c in cases if c["requirement"] in levels and (kind is None or c["kind"] == kind)]
    if ids:
        known = {c["id"] for c in cases}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SystemExit(f"run.py: unknown case id(s): {', '.join(unknown)}")
        chosen = [c for c in chosen if c["id"] in ids]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the mlarray conformance suite against a reader executable.",
        usage="%(prog)s [options] -- READER_CMD [ARGS...]",
    )
    parser.add_argument("--manifest", type=Path, default=HERE / "manifest.json", help="manifest to run")
    parser.add_argument(
        "--require",
        default="must,should,may",
        help="comma-separated requirement levels to run (default: all); e.g. --require must",
    )
    parser.add_argument("--case", action="append", default=[], metavar="ID", help="run only this case (repeatable)")
    parser.add_argument("--kind", choices=("valid", "invalid"), help="run only valid or only invalid cases")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per case (default 60)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failing rows and the summary")
    parser.add_argument("reader", nargs=argparse.REMAINDER, help="the reader command")
    args = parser.parse_args(argv)
    reader = args.reader[1:] if args.reader[:1] == ["--"] else args.reader
    if not reader:
        parser.error("give the reader command after --")
    levels = [level.strip() for level in args.require.split(",") if level.strip()]
    bad = [level for level in levels if level not in LEVELS]
    if bad:
        parser.error(f"unknown requirement level(s) {bad}; use {', '.join(LEVELS)}")

    manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
    cases = select(manifest["cases"], levels, args.case, args.kind)
    passed = failed = 0
    for entry in cases:
        reason = run_case(entry, reader, args.manifest.resolve().parent, args.timeout)
        if reason is None:
            passed += 1
            if not args.quiet:
                print(f"PASS  {entry['requirement']:<6}  {entry['id']}")
        else:
            failed += 1
            print(f"FAIL  {entry['requirement']:<6}  {entry['id']}: {reason}")
        sys.stdout.flush()
    if not cases:
        print("no case selected", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
