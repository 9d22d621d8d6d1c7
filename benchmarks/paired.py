"""Paired, interleaved measurements of the issue 15 targets: mlarray against ``mlarray==0.0.54``.

:mod:`benchmarks.run` measures one format completely, then the next; on a shared machine
whose speed drifts from second to second, the ratio of two such medians moves by 20% or
more from one run to the next. Here both sides answer the same small groups of requests
in turn (the earlier release from a worker process in its own virtualenv, which stays
up for the whole run, ours in this process), the order alternating from round to round;
each round gives one ratio, and the result is the median ratio over the rounds with its
quartiles. A drift slower than a round cancels out of every ratio.

    python -m benchmarks.paired                       # every volume, 9 rounds
    python -m benchmarks.paired --datasets ct,mr --rounds 15

Measured per round (the same patch positions for both sides, fresh ones each round):
``patch128``/``patch192`` (open handle), ``openread128`` (open, read, close), ``load1``/
``load2`` (whole array, one or two threads) and ``write``; for ours also NumPy memmap
on the same patches, and our two-thread load against our one-thread load. ``floor128``/
``floor192`` pair the decode floor of our file (:mod:`benchmarks.floor`: C-Blosc2 decoding
just the blocks each patch overlaps, nothing allocated or copied) with 0.0.54's read of the
same patches: a bound on the patch ratio that no read path of our file can go below.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks import datasets, peers, run

RESULTS_DIR = Path(__file__).parent / "results"
GROUP = 10
"""Patch reads per side and round."""
TARGETS: list[tuple[str, str, str, float]] = [
    ("patch128", "ours / 0.0.54", "earlier", 0.7),
    ("patch192", "ours / 0.0.54", "earlier", 0.7),
    ("openread128", "ours / 0.0.54", "earlier", 0.8),
    ("patch128", "ours / NumPy memmap", "npy", 2.2),
    ("load2", "ours 2 threads / ours 1 thread", "self", 0.6),
    ("write", "ours / 0.0.54", "earlier", 0.5),
]
"""(measurement, what the ratio is, against what, the issue's limit)."""
EARLIER_ONLY = ("load1",)
"""Measured against 0.0.54 for the table, without a target of their own."""
BOUNDS: list[tuple[str, str, str]] = [
    ("floor128", "our decode floor / 0.0.54", "earlier"),
    ("floor192", "our decode floor / 0.0.54", "earlier"),
    ("floor128", "our decode floor / NumPy memmap", "npy"),
]
"""(measurement, what the ratio is, against what): the lowest ratio a read of our file could reach."""


class Side(Protocol):
    """One format's answers to the requests of a round."""

    def write(self, path: str) -> float: ...

    def reads(self, path: str, keys: list[peers.Key], reopen: bool) -> list[float]: ...

    def load(self, path: str, nthreads: int) -> float: ...

    def close(self) -> None: ...


def encode_key(key: peers.Key) -> list[list[int] | None]:
    """A key of slices as JSON: ``[start, stop]`` per axis, ``None`` for a whole axis."""
    return [None if k == slice(None) else [k.start, k.stop] for k in key]


def decode_key(key: list[list[int] | None]) -> peers.Key:
    return tuple(slice(None) if k is None else slice(k[0], k[1]) for k in key)


class LocalSide:
    """A :class:`benchmarks.peers.Format` measured in this process (also used by the worker)."""

    def __init__(self, fmt: peers.Format, ds: datasets.Dataset) -> None:
        self.fmt, self.ds = fmt, ds

    def write(self, path: str) -> float:
        self.fmt.remove(path)
        gc.collect()
        t0 = time.perf_counter()
        self.fmt.write(self.ds, path)
        return time.perf_counter() - t0

    def reads(self, path: str, keys: list[peers.Key], reopen: bool) -> list[float]:
        """Wall seconds per read (:func:`benchmarks.run.time_reads`: every result checked against the source)."""
        return run.time_reads(self.fmt, self.ds, path, keys, reopen)[2]

    def load(self, path: str, nthreads: int) -> float:
        gc.collect()
        t0 = time.perf_counter()
        out = self.fmt.load(path, nthreads)
        dt = time.perf_counter() - t0
        if out.shape != self.ds.array.shape:
            raise RuntimeError(f"{self.fmt.name} loaded shape {out.shape}")
        return dt

    def close(self) -> None:
        """Nothing stays open between requests."""


class FloorSide:
    """The decode floor of our file at the requested patches (:class:`benchmarks.floor.DecodeFloor`)."""

    def write(self, path: str) -> float:
        raise NotImplementedError("the floor side only reads")

    def reads(self, path: str, keys: list[peers.Key], reopen: bool) -> list[float]:
        """Seconds to decode the blocks each key overlaps, after one untimed pass as :func:`run.time_reads`."""
        from benchmarks.floor import DecodeFloor

        if reopen:
            raise ValueError("the decode floor is measured on an open file")
        with DecodeFloor(path, keys) as floor:
            floor.decode(len(keys) - 1)
            times = []
            for i in range(len(keys)):
                t0 = time.perf_counter()
                floor.decode(i)
                times.append(time.perf_counter() - t0)
        return times

    def load(self, path: str, nthreads: int) -> float:
        raise NotImplementedError("the floor side only reads")

    def close(self) -> None:
        """Nothing stays open between requests."""


def serve(side: LocalSide, stdin: Any = sys.stdin, stdout: Any = sys.stdout) -> None:
    """Answer JSON-line requests (``write``, ``reads``, ``load``, ``close``) until ``close``."""
    for line in stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "write":
            answer: Any = side.write(request["path"])
        elif op == "reads":
            answer = side.reads(request["path"], [decode_key(k) for k in request["keys"]], request["reopen"])
        elif op == "load":
            answer = side.load(request["path"], request["nthreads"])
        elif op == "close":
            side.close()
            return
        else:
            raise ValueError(f"unknown request {op!r}")
        stdout.write(json.dumps({"answer": answer}) + "\n")
        stdout.flush()


class WorkerSide:
    """``mlarray==0.0.54`` in a worker process of its own virtualenv (:mod:`benchmarks.earlier_worker`)."""

    def __init__(self, ds: datasets.Dataset, workdir: str) -> None:
        from benchmarks import earlier

        python = earlier.peer_python(_log)
        self._source = os.path.join(workdir, f"{ds.name}-source.npy")
        np.save(self._source, ds.array)
        request = {
            "source": self._source,
            "name": ds.name,
            "description": ds.description,
            "axis_labels": ds.axis_labels,
            "spacing": ds.spacing,
            "workdir": workdir,
            "repo": str(Path(__file__).resolve().parent.parent),
            "expected_version": earlier.VERSION,
            "serve": True,
        }
        self._proc = subprocess.Popen(
            [str(python), str(earlier.WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=workdir,  # not the repository: `import mlarray` must find the peer's package
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        self.versions: dict[str, str] = self._ask(request)  # the worker's mlarray and python-blosc2

    def _ask(self, request: dict[str, Any]) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the 0.0.54 worker stopped (exit code {self._proc.wait()})")
        return json.loads(line)["answer"]

    def write(self, path: str) -> float:
        return float(self._ask({"op": "write", "path": path}))

    def reads(self, path: str, keys: list[peers.Key], reopen: bool) -> list[float]:
        return [
            float(t)
            for t in self._ask({"op": "reads", "path": path, "keys": [encode_key(k) for k in keys], "reopen": reopen})
        ]

    def load(self, path: str, nthreads: int) -> float:
        return float(self._ask({"op": "load", "path": path, "nthreads": nthreads}))

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"op": "close"}) + "\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
        os.remove(self._source)


def summarize(ratios: list[float]) -> dict[str, Any]:
    """Median, quartiles and extremes of the per-round ratios."""
    ordered = sorted(ratios)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "q1": q1,
        "q3": q3,
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def paired_rounds(
    ours: Side, theirs: Side, ours_path: str, theirs_path: str, rounds: int, request: Callable[[Side, str, int], float]
) -> list[float]:
    """Per round: ``request(side, path, round)`` for both sides, order alternating; the ratio ours / theirs."""
    ratios = []
    for r in range(rounds):
        first, second = (
            ((ours, ours_path), (theirs, theirs_path)) if r % 2 == 0 else ((theirs, theirs_path), (ours, ours_path))
        )
        a = request(first[0], first[1], r)
        b = request(second[0], second[1], r)
        mine, other = (a, b) if r % 2 == 0 else (b, a)
        ratios.append(mine / other)
    return ratios


def measure_dataset(name: str, ds: datasets.Dataset, workdir: str, rounds: int, seed: int) -> dict[str, Any]:
    """Every paired ratio of one volume."""
    ours = LocalSide(peers.MLArrayFormat(), ds)
    npy = LocalSide(peers.NpyMmap(), ds)
    floor = FloorSide()
    worker = WorkerSide(ds, workdir)
    theirs: Side = worker
    paths = {s: os.path.join(workdir, f"{name}.{s}") for s in ("ours.mla", "earlier.mla", "npy")}
    paths["npy"] += ".npy"
    try:
        ours.write(paths["ours.mla"])
        theirs.write(paths["earlier.mla"])
        npy.write(paths["npy"])
        for p in paths.values():
            run.warm(p)

        def patches(edge: int, reopen: bool, side: Side, path: str, r: int) -> float:
            keys = _keys(ds, edge, GROUP, [seed, sum(map(ord, name)), edge, int(reopen), r])
            return statistics.median(side.reads(path, keys, reopen))

        out: dict[str, Any] = {"peer_versions": worker.versions}
        spatial = [ds.array.shape[a] for a in ds.spatial_axes]
        for edge in (128, 192):
            if all(edge >= s for s in spatial):
                continue
            fn = functools.partial(patches, edge, False)
            out[f"patch{edge}"] = summarize(
                paired_rounds(ours, theirs, paths["ours.mla"], paths["earlier.mla"], rounds, fn)
            )
            out[f"floor{edge}"] = summarize(
                paired_rounds(floor, theirs, paths["ours.mla"], paths["earlier.mla"], rounds, fn)
            )
            if edge == 128:
                out["patch128_npy"] = summarize(paired_rounds(ours, npy, paths["ours.mla"], paths["npy"], rounds, fn))
                out["floor128_npy"] = summarize(paired_rounds(floor, npy, paths["ours.mla"], paths["npy"], rounds, fn))
                fn = functools.partial(patches, edge, True)
                out["openread128"] = summarize(
                    paired_rounds(ours, theirs, paths["ours.mla"], paths["earlier.mla"], rounds, fn)
                )
        for n in (1, 2):
            out[f"load{n}"] = summarize(
                paired_rounds(
                    ours, theirs, paths["ours.mla"], paths["earlier.mla"], rounds, lambda s, p, r, n=n: s.load(p, n)
                )
            )
        out["load2_self"] = summarize(_two_vs_one(ours, paths["ours.mla"], rounds))
        out["write"] = summarize(
            paired_rounds(ours, theirs, paths["ours.mla"], paths["earlier.mla"], rounds, lambda s, p, r: s.write(p))
        )
        return out
    finally:
        ours.close()
        theirs.close()


def _two_vs_one(ours: LocalSide, path: str, rounds: int) -> list[float]:
    """Per round our two-thread and one-thread loads (order alternating); their ratio."""
    ratios = []
    for r in range(rounds):
        if r % 2 == 0:
            two = ours.load(path, 2)
            one = ours.load(path, 1)
        else:
            one = ours.load(path, 1)
            two = ours.load(path, 2)
        ratios.append(two / one)
    return ratios


def _keys(ds: datasets.Dataset, edge: int, n: int, seed: list[int]) -> list[peers.Key]:
    return run.patch_keys(ds, edge, n, np.random.default_rng(seed))


def _spread(s: dict[str, Any]) -> str:
    return f"{s['median']:.2f} [{s['q1']:.2f} - {s['q3']:.2f}], {s['min']:.2f} - {s['max']:.2f} (n={s['n']})"


def markdown(results: dict[str, Any]) -> str:
    """The targets table of a paired run (the NumPy memmap limit is the CT's; other volumes are shown without)."""
    rows = [
        "| volume | measurement | ratio | limit | median [quartiles], min - max over rounds | verdict |",
        "|---|---|---|---|---|---|",
    ]
    labels = {"patch128": "128³ patch", "patch192": "192³ patch", "openread128": "open + 128³ patch"}
    labels.update({"load2": "full load", "write": "write"})
    for name, entry in results["datasets"].items():
        for key, what, against, limit in TARGETS:
            s = entry.get({"npy": f"{key}_npy", "self": "load2_self"}.get(against, key))
            if s is None:
                continue
            applies = against != "npy" or name == "ct"
            verdict = ("met" if s["median"] <= limit else "**missed**") if applies else ""
            shown = f"<= {limit}" if applies else ""
            rows.append(f"| {name} | {labels[key]}: {what} | {s['median']:.2f} | {shown} | {_spread(s)} | {verdict} |")
        for key in EARLIER_ONLY:
            s = entry.get(key)
            if s is not None:
                rows.append(f"| {name} | full load, 1 thread: ours / 0.0.54 | {s['median']:.2f} | | {_spread(s)} | |")
        for key, what, against in BOUNDS:
            s = entry.get(f"{key}_npy" if against == "npy" else key)
            if s is not None:
                edge = key.removeprefix("floor")
                row = f"{edge}³ patch: {what} (bound)"
                rows.append(f"| {name} | {row} | {s['median']:.2f} | | {_spread(s)} | |")
    peers_seen = sorted({_versions(e["peer_versions"]) for e in results["datasets"].values() if "peer_versions" in e})
    if peers_seen:
        rows += ["", "0.0.54 measured with " + "; ".join(peers_seen) + "."]
    return "\n".join(rows) + "\n"


def _versions(v: dict[str, str]) -> str:
    return f"mlarray {v['mlarray']}, python-blosc2 {v['blosc2']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ct,seg,mr,4ch", help="comma-separated volumes (ct, seg, mr, 4ch)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per measurement (default 9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the small volumes of a quick run (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    names = [n for n in args.datasets.split(",") if n]
    results: dict[str, Any] = {"rounds": args.rounds, "group": GROUP, "datasets": {}}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mlarray-paired-") as workdir:
        for name in names:
            ds = (datasets.QUICK if args.quick else datasets.FULL)[name]()
            t0 = time.perf_counter()
            results["datasets"][name] = measure_dataset(name, ds, workdir, args.rounds, args.seed)
            _log(f"{name}: done in {time.perf_counter() - t0:.0f} s")
            del ds
    results["elapsed_s"] = time.time() - started
    text = markdown(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest-paired.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "latest-paired.md").write_text(text)
    _log(f"results: {args.out / 'latest-paired.json'} (total {results['elapsed_s']:.0f} s)")
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
