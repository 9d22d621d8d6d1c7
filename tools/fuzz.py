"""Fuzz the ``.mla`` readers with mutated valid files (issue 6, "Fuzzing").

Usage::

    python tools/fuzz.py --count 10000 --seed 1 --out report.json [--workers 2]
    python tools/fuzz.py --replay "i16_2d/index/huge" --write case.mla

Every mutated file goes through ``MLArray.open`` (+ a small slice, ``[...]`` and
``close``), ``MLArray.load``, ``storage.read_header`` and ``validate_file`` (shallow and
deep), each in a worker process (:mod:`fuzz_worker`). An outcome is acceptable when
the call succeeds or raises an :class:`mlarray.errors.MLArrayError`; anything else is a
*finding*: another exception type, a ``MemoryError`` (even wrapped) under the worker's
memory cap (``RLIMIT_DATA``), a crash of the worker, or an operation running longer than the
timeout. Each finding's file is saved under ``--findings`` with a JSON description.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from fuzz_mutators import Case, Seed, make_seeds, random_case, regression_cases, structured_cases  # noqa: E402
from fuzz_worker import OPS  # noqa: E402

DEFAULT_FINDINGS = TOOLS / "fuzz-findings"
READY_TIMEOUT = 120.0


@dataclass
class Result:
    """Outcome of one case: per-operation outcomes and the findings among them."""

    case: Case
    ops: dict[str, str] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    rss_mb: float = 0.0

    @property
    def outcome(self) -> str:
        """``FINDING``, ``read_ok``, or the code of the first operation that failed cleanly."""
        if self.findings:
            return "FINDING"
        for op in OPS:
            value = self.ops.get(op, "")
            if value.startswith("invalid:"):
                return value.removeprefix("invalid:")
            if value and not value.startswith(("ok", "valid", "skipped")):
                return value
        return "read_ok"


def finding_class(f: dict[str, Any]) -> str:
    """A stable grouping key: what went wrong and where in our code."""
    if f["kind"] in ("crash", "hang"):
        return f"{f['kind']}: {f['type']} during {f['op']}"
    where = re.sub(r":\d+ in ", " in ", f.get("ours", "?"))
    return f"{f['kind']}: {f['type']} at {where}"


class Worker:
    """One worker process; restarted after a crash, a hang or ``max_cases`` cases."""

    def __init__(self, slot: int, workdir: Path, mem_mb: int, max_cases: int, env: dict[str, str]) -> None:
        self.slot, self.workdir, self.mem_mb, self.max_cases = slot, workdir, mem_mb, max_cases
        self.extra_env = env
        self.case_path = workdir / f"case-{slot}.mla"
        self.stderr_path = workdir / f"worker-{slot}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.result: Result | None = None
        self.op: str | None = None
        self.deadline = 0.0
        self.stderr_mark = 0
        self.done_cases = 0
        self.buf = b""

    def start(self) -> None:
        env = {**os.environ, **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["FUZZ_WORKER_MEM_MB"] = str(self.mem_mb)
        env.setdefault("BLOSC_NTHREADS", "1")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(TOOLS / "fuzz_worker.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=str(self.workdir),
            )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf, self.done_cases = b"", 0
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            for event in self.read_events(timeout=1.0):
                if event.get("ev") == "ready":
                    return
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"fuzz worker {self.slot} did not start; see {self.stderr_path}")

    def read_events(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Events the worker has written (waiting up to ``timeout`` for the first); EOFError if it died."""
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return []
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            raise EOFError
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def send(self, case: Case, npy: str | None, timeout: float) -> None:
        self.case_path.write_bytes(case.data)
        self.result = Result(case)
        self.op, self.deadline = None, time.monotonic() + timeout
        self.stderr_mark = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
        assert self.proc is not None and self.proc.stdin is not None
        msg = {"id": case.id, "path": str(self.case_path), "npy": npy}
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError), open(self.stderr_path, "rb") as f:
            f.seek(self.stderr_mark)
            return f.read()[-4000:].decode("utf-8", errors="replace")
        return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]
        self.proc = None


class Pool:
    """Runs cases on ``n`` workers; a dead or stuck worker becomes a finding and is replaced."""

    def __init__(
        self, n: int, workdir: Path, npy: dict[str, str], *, timeout: float, mem_mb: int, env: dict[str, str]
    ) -> None:
        self.workers = [Worker(i, workdir, mem_mb, max_cases=2000, env=env) for i in range(n)]
        self.npy, self.timeout = npy, timeout
        for w in self.workers:
            w.start()

    def close(self) -> None:
        for w in self.workers:
            w.kill()

    def run(self, cases: Iterable[Case], on_result: Callable[[Result], None]) -> None:
        """Run every case; worker ``i`` always gets cases ``i, i+n, i+2n, ...``.

        The fixed assignment makes each worker process see the same sequence of files
        in every run, so findings that depend on leftover memory reproduce too.
        """
        todo = list(cases)
        queues = [iter(todo[i :: len(self.workers)]) for i in range(len(self.workers))]
        while True:
            for w, queue in zip(self.workers, queues, strict=True):
                if w.result is None:
                    case = next(queue, None)
                    if case is not None:
                        w.send(case, self.npy.get(case.seed), self.timeout)
            busy = [w for w in self.workers if w.result is not None]
            if not busy:
                return
            wait = min(1.0, max(0.0, min(w.deadline for w in busy) - time.monotonic()))
            with selectors.DefaultSelector() as sel:
                for w in busy:
                    assert w.proc is not None and w.proc.stdout is not None
                    sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                readable = {key.data for key, _ in sel.select(wait)}
            for w in busy:
                finished = self._poll(w) if w in readable or time.monotonic() > w.deadline else None
                if finished is not None:
                    on_result(finished)

    def _poll(self, w: Worker) -> Result | None:
        assert w.result is not None
        try:
            events = w.read_events()
        except EOFError:
            return self._lost(w, "crash")
        for event in events:
            ev = event.get("ev")
            if ev == "start":
                w.op, w.deadline = event["op"], time.monotonic() + self.timeout
            elif ev == "end":
                w.result.ops[event["op"]] = event["outcome"]
                if event.get("finding"):
                    w.result.findings.append({"op": event["op"], **event["finding"]})
            elif ev == "done":
                result, w.result = w.result, None
                result.rss_mb = event.get("rss_mb", 0.0)
                w.done_cases += 1
                if w.done_cases >= w.max_cases:
                    w.kill()
                    w.start()
                return result
        if time.monotonic() > w.deadline:
            return self._lost(w, "hang")
        return None

    def _lost(self, w: Worker, kind: str) -> Result:
        assert w.result is not None and w.proc is not None
        if kind == "hang":
            w.proc.kill()
        code = w.proc.wait()
        result, w.result = w.result, None
        op = w.op or "startup"
        if kind == "crash":
            name = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        else:
            name = f"no answer within {self.timeout:g} s"
        result.ops[op] = kind.upper()
        result.findings.append(
            {"op": op, "kind": kind, "type": name, "message": w.stderr_tail(), "top": op, "ours": op}
        )
        w.kill()
        w.start()
        return result


# --------------------------------------------------------------------------- running


@dataclass
class Summary:
    """Counts of a run, and every finding grouped by class."""

    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    per_op: dict[str, Counter[str]] = field(default_factory=dict)
    per_kind: dict[str, Counter[str]] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    undetected_corruption: list[str] = field(default_factory=list)
    """Deep validation said valid, yet a read returned data other than the seed's."""
    validate_gaps: list[str] = field(default_factory=list)
    """Deep validation said valid, yet open, a slice or load failed with an MLArrayError."""
    max_rss_mb: float = 0.0
    by_case: dict[str, Result] = field(default_factory=dict)
    """Every result by case id (not in the JSON report)."""

    def add(self, r: Result, findings_dir: Path | None) -> None:
        self.cases += 1
        self.by_case[r.case.id] = Result(replace(r.case, data=b""), r.ops, r.findings, r.rss_mb)
        self.outcomes[r.outcome] += 1
        self.per_kind.setdefault(r.case.kind, Counter())[r.outcome] += 1
        self.max_rss_mb = max(self.max_rss_mb, r.rss_mb)
        for op, value in r.ops.items():
            self.per_op.setdefault(op, Counter())[value] += 1
        if r.ops.get("validate_deep") == "valid":
            read_ops = ("open", "getitem_small", "getitem_all", "read_out", "getitem_staged", "load")
            reads = [r.ops.get(op, "") for op in read_ops]
            if "ok_differs" in reads:
                self.undetected_corruption.append(r.case.id)
            elif any(v.isupper() and v not in ("INVALID_ARGUMENT", "FINDING", "CRASH", "HANG") for v in reads):
                self.validate_gaps.append(r.case.id)
        seen: set[str] = set()
        for f in r.findings:
            key = finding_class(f)
            entry = self.classes.setdefault(key, {"cases": 0, "ops": Counter(), "examples": [], "example": None})
            entry["ops"][f["op"]] += 1
            record = {"id": r.case.id, "desc": r.case.desc, "class": key, **f}
            if key not in seen:
                seen.add(key)
                entry["cases"] += 1
                if len(entry["examples"]) < 20:
                    entry["examples"].append(r.case.id)
            if entry["example"] is None:
                entry["example"] = record
            saved = save_finding(findings_dir, r.case, record) if findings_dir else None
            self.findings.append({k: v for k, v in record.items() if k != "traceback"} | {"file": saved})

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "outcomes": dict(self.outcomes.most_common()),
            "per_op": {op: dict(c.most_common()) for op, c in self.per_op.items()},
            "per_mutator": {k: dict(c.most_common()) for k, c in sorted(self.per_kind.items())},
            "finding_classes": {
                key: {**entry, "ops": dict(entry["ops"])}
                for key, entry in sorted(self.classes.items(), key=lambda kv: -kv[1]["cases"])
            },
            "findings": self.findings,
            "undetected_corruption": self.undetected_corruption,
            "validate_gaps": self.validate_gaps,
            "max_worker_rss_mb": round(self.max_rss_mb, 1),
        }


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)[:150]


def save_finding(directory: Path, case: Case, record: dict[str, Any]) -> str:
    """Write the finding's file and its description; return the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = _safe(case.id)
    path = directory / f"{stem}.mla"
    path.write_bytes(case.data)
    info = directory / f"{stem}.json"
    existing = json.loads(info.read_text()) if info.exists() else {"id": case.id, "desc": case.desc, "findings": []}
    existing["findings"].append(record)
    info.write_text(json.dumps(existing, indent=2))
    return str(path)


def build_cases(
    seeds: list[Seed], count: int, run_seed: int, *, full: bool = True, pool: list[str] | None = None
) -> list[Case]:
    """``count`` cases: regression and structured ones first (at most 40 %, evenly thinned), then random ones."""
    regressions = list(regression_cases(seeds))
    structured = list(structured_cases(seeds, full=full))[len(regressions) :]
    budget = min(len(structured), count * 2 // 5 - len(regressions))
    if budget < len(structured):
        step = len(structured) / max(budget, 1)
        structured = [structured[int(i * step)] for i in range(budget)]
    structured = regressions + structured
    randoms = [random_case(seeds, run_seed, k, pool) for k in range(count - len(structured))]
    return structured + randoms


def run_cases(
    cases: Iterable[Case],
    seeds_dir: Path,
    seeds: list[Seed],
    *,
    workers: int = 2,
    timeout: float = 10.0,
    mem_mb: int = 2048,
    findings_dir: Path | None = None,
    progress: Callable[[Summary], None] | None = None,
    env: dict[str, str] | None = None,
) -> Summary:
    """Run ``cases`` on a worker pool and summarize the outcomes (``env``: extra worker environment)."""
    npy = {s.name: str(seeds_dir / f"seed-{s.name}.npy") for s in seeds if s.array is not None}
    summary = Summary()
    with tempfile.TemporaryDirectory(prefix="mla-fuzz-") as tmp:
        pool = Pool(workers, Path(tmp), npy, timeout=timeout, mem_mb=mem_mb, env=env or {})
        try:

            def collect(r: Result) -> None:
                summary.add(r, findings_dir)
                if progress is not None:
                    progress(summary)

            pool.run(cases, collect)
        finally:
            pool.close()
    return summary


def replay(seeds: list[Seed], case_id: str, pool: list[str] | None = None) -> Case:
    """Rebuild the case named ``case_id`` (structured or random)."""
    m = re.fullmatch(r"r(\d+)/(\d+)/.*", case_id)
    if m:
        case = random_case(seeds, int(m.group(1)), int(m.group(2)), pool)
        if case.id != case_id:
            raise SystemExit(f"case {case_id} regenerates as {case.id}: different seeds or pool")
        return case
    for case in structured_cases(seeds, full=True):
        if case.id == case_id:
            return case
    raise SystemExit(f"no structured case named {case_id}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=10000, help="number of mutated files (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="run seed: the random cases and the Hypothesis pool")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one operation may take (default 10)")
    p.add_argument("--mem-mb", type=int, default=2048, help="data cap (RLIMIT_DATA) per worker, MiB (default 2048)")
    p.add_argument("--findings", type=Path, default=DEFAULT_FINDINGS, help="directory for finding files")
    p.add_argument("--hypothesis-pool", type=int, default=-1, help="Hypothesis headers to draw (default 12%% of count)")
    p.add_argument("--replay", metavar="ID", help="rebuild one case by id instead of fuzzing")
    p.add_argument("--write", type=Path, help="with --replay: where to write the case's file")
    return p


def _pool_for(args: argparse.Namespace, seeds: list[Seed]) -> list[str] | None:
    size = args.hypothesis_pool if args.hypothesis_pool >= 0 else min(args.count * 12 // 100, 2000)
    if size <= 0:
        return None
    try:
        from fuzz_headers import hypothesis_headers
    except ImportError:  # pragma: no cover - hypothesis is a dev dependency
        print("hypothesis is not installed: no Hypothesis headers", file=sys.stderr)
        return None
    template = next(s.header for s in seeds if s.name == "f32_3d_rich")
    return hypothesis_headers(size, args.seed, template)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mla-fuzz-seeds-") as tmp:
        seeds_dir = Path(tmp)
        seeds = make_seeds(seeds_dir)
        pool = _pool_for(args, seeds)
        if args.replay:
            case = replay(seeds, args.replay, pool)
            target = args.write or Path(_safe(case.id) + ".mla")
            target.write_bytes(case.data)
            print(f"{case.id}: {case.desc}\nwritten to {target}")
            return 0
        started = time.monotonic()
        cases = build_cases(seeds, args.count, args.seed, full=True, pool=pool)
        if args.findings.exists():
            shutil.rmtree(args.findings)

        def progress(s: Summary) -> None:
            if s.cases % 500 == 0:
                rate = s.cases / (time.monotonic() - started)
                print(f"{s.cases}/{len(cases)} cases, {s.outcomes['FINDING']} with findings ({rate:.0f}/s)", flush=True)

        summary = run_cases(
            cases,
            seeds_dir,
            seeds,
            workers=args.workers,
            timeout=args.timeout,
            mem_mb=args.mem_mb,
            findings_dir=args.findings,
            progress=progress,
        )
    report = {
        "count": args.count,
        "seed": args.seed,
        "hypothesis_pool": len(pool or []),
        "workers": args.workers,
        "timeout_s": args.timeout,
        "mem_cap_mb": args.mem_mb,
        "seconds": round(time.monotonic() - started, 1),
        **summary.to_json(),
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(_text_summary(report))
    return 1 if summary.classes else 0


def _text_summary(report: dict[str, Any]) -> str:
    lines = [f"{report['cases']} mutated files in {report['seconds']} s", "outcomes:"]
    lines += [f"  {k:28s} {v}" for k, v in report["outcomes"].items()]
    lines.append(f"deep validation 'valid' but a read failed: {len(report['validate_gaps'])} files")
    lines.append(f"deep validation 'valid' but data differ: {len(report['undetected_corruption'])} files")
    lines.append(f"finding classes: {len(report['finding_classes'])}")
    for key, entry in report["finding_classes"].items():
        lines.append(f"  {entry['cases']:6d} files  {key}   e.g. {entry['examples'][0]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
