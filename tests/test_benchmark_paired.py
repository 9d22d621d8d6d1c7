"""The paired benchmark's bookkeeping: rounds alternate, ratios are ours / theirs, the worker protocol round-trips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import datasets, paired, peers


class Recorder:
    """A side whose answers are scripted; records the order it was asked in."""

    def __init__(self, name: str, value: float, log: list[str]) -> None:
        self.name, self.value, self.log = name, value, log

    def load(self, path: str, nthreads: int) -> float:
        self.log.append(self.name)
        return self.value


def test_rounds_alternate_the_order_and_divide_ours_by_theirs() -> None:
    log: list[str] = []
    ours, theirs = Recorder("ours", 1.0, log), Recorder("theirs", 4.0, log)
    ratios = paired.paired_rounds(ours, theirs, "a", "b", 4, lambda side, path, r: side.load(path, 1))  # type: ignore[arg-type]
    assert ratios == [0.25, 0.25, 0.25, 0.25]
    assert log == ["ours", "theirs", "theirs", "ours", "ours", "theirs", "theirs", "ours"]


def test_summary_of_ratios() -> None:
    s = paired.summarize([0.9, 0.5, 0.7, 0.6, 0.8])
    assert (s["median"], s["min"], s["max"], s["n"]) == (0.7, 0.5, 0.9, 5)
    assert s["q1"] == pytest.approx(0.6) and s["q3"] == pytest.approx(0.8)
    assert paired.summarize([2.0])["q1"] == 2.0


def test_keys_survive_json() -> None:
    key = (slice(3, 131), slice(None), slice(0, 128))
    assert paired.decode_key(json.loads(json.dumps(paired.encode_key(key)))) == key


def test_the_worker_protocol_answers_reads_and_loads(tmp_path: Path) -> None:
    """``serve`` (what the 0.0.54 worker runs) answers each request with one JSON line, checked data included."""
    ds = datasets.Dataset(
        "tiny", "tiny", np.arange(24 * 20 * 16, dtype=np.int16).reshape(24, 20, 16), ["spatial"] * 3, [1.0] * 3
    )
    side = paired.LocalSide(peers.MLArrayFormat(), ds)
    path = str(tmp_path / "t.mla")
    key = paired.encode_key((slice(2, 10), slice(0, 20), slice(5, 9)))
    requests = [
        {"op": "write", "path": path},
        {"op": "reads", "path": path, "keys": [key, key], "reopen": False},
        {"op": "reads", "path": path, "keys": [key], "reopen": True},
        {"op": "load", "path": path, "nthreads": 2},
        {"op": "close"},
    ]
    out = io.StringIO()
    paired.serve(side, io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    answers = [json.loads(line)["answer"] for line in out.getvalue().splitlines()]
    assert len(answers) == 4
    assert answers[0] > 0 and len(answers[1]) == 2 and len(answers[2]) == 1 and answers[3] > 0


def test_a_wrong_answer_is_caught(tmp_path: Path) -> None:
    ds = datasets.Dataset("tiny", "tiny", np.zeros((8, 8, 8), dtype=np.uint8), ["spatial"] * 3, [1.0] * 3)
    side = paired.LocalSide(peers.NpyMmap(), ds)
    path = str(tmp_path / "t.npy")
    side.write(path)
    np.save(path, np.ones((8, 8, 8), dtype=np.uint8))  # the file no longer holds the dataset
    with pytest.raises(RuntimeError, match="wrong data"):
        side.reads(path, [(slice(0, 4), slice(0, 4), slice(0, 4))], reopen=True)


def test_the_floor_side_times_each_key_of_an_open_file(tmp_path: Path) -> None:
    """The decode floor answers one time per key, and only for reads of an open file."""
    ds = datasets.Dataset(
        "tiny", "tiny", np.arange(48 * 40 * 32, dtype=np.int16).reshape(48, 40, 32), ["spatial"] * 3, [1.0] * 3
    )
    path = str(tmp_path / "t.mla")
    paired.LocalSide(peers.MLArrayFormat(), ds).write(path)
    keys = [(slice(2, 30), slice(0, 40), slice(5, 29)), (slice(20, 48), slice(3, 11), slice(0, 8))]
    side = paired.FloorSide()
    times = side.reads(path, keys, reopen=False)
    assert len(times) == 2 and all(t > 0 for t in times)
    with pytest.raises(ValueError, match="open file"):
        side.reads(path, keys, reopen=True)


def test_the_table_shows_bounds_without_a_verdict() -> None:
    s = paired.summarize([0.8, 0.7, 0.9])
    results = {"datasets": {"ct": {"patch128": s, "floor128": s, "floor128_npy": paired.summarize([2.1])}}}
    rows = paired.markdown(results).splitlines()
    bound = [r for r in rows if "(bound)" in r]
    assert bound == [
        "| ct | 128³ patch: our decode floor / 0.0.54 (bound) | 0.80 | | 0.80 [0.75 - 0.85], 0.70 - 0.90 (n=3) | |",
        "| ct | 128³ patch: our decode floor / NumPy memmap (bound) | 2.10 | "
        "| 2.10 [2.10 - 2.10], 2.10 - 2.10 (n=1) | |",
    ]
    assert any("128³ patch: ours / 0.0.54 | 0.80 | <= 0.7" in r and "**missed**" in r for r in rows)


def test_the_table_names_the_peer_it_measured() -> None:
    s = paired.summarize([0.8])
    versions = {"mlarray": "0.0.54", "blosc2": "4.14.1"}
    results = {"datasets": {"ct": {"patch128": s, "peer_versions": versions}, "mr": {"peer_versions": versions}}}
    lines = paired.markdown(results).splitlines()
    assert lines[-1] == "0.0.54 measured with mlarray 0.0.54, python-blosc2 4.14.1."
    assert not any("peer_versions" in line for line in lines)


def test_a_pinned_python_blosc2_gets_a_virtualenv_of_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from benchmarks import earlier

    monkeypatch.setenv("MLARRAY_BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("MLARRAY_BENCH_PEER_BLOSC2", raising=False)
    assert earlier.requirements() == ["mlarray==0.0.54"]
    default = earlier.cache_dir()
    monkeypatch.setenv("MLARRAY_BENCH_PEER_BLOSC2", "4.14.1")
    assert earlier.requirements() == ["mlarray==0.0.54", "blosc2==4.14.1"]
    assert earlier.cache_dir() != default and earlier.cache_dir().parent == tmp_path
    monkeypatch.setenv("MLARRAY_BENCH_PEER_BLOSC2", "4.14; rm -rf /")
    with pytest.raises(ValueError, match="not a release number"):
        earlier.requirements()
