"""A deterministic fuzz sample: mutated valid files must read correctly or fail with an MLArrayError.

The dedicated run is ``make fuzz`` (``tools/fuzz.py --count 10000``). Here a fixed
sample of about 500 mutated files goes through the same worker pool: every
operation (open, slices, close, load, read_header, validate shallow and deep) must
succeed or raise an :class:`mlarray.errors.MLArrayError`. A crash of the worker, a
hang, a ``MemoryError`` or any other exception is a *finding*.

``KNOWN_FINDINGS`` lists the cases of the sample that still produce findings in the
library, each with its finding class. Fix the library, then delete the ids: the test
fails both for a new finding and for a listed one that no longer reproduces, so the
list can only shrink.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import fuzz  # noqa: E402
from fuzz_frame import layers_of, map_frame, rebuild_metalayers, rebuild_trailer  # noqa: E402
from fuzz_headers import dumps, pack_str  # noqa: E402
from fuzz_mutators import Seed, make_seeds, with_header  # noqa: E402

from mlarray.errors import MLArrayError  # noqa: E402
from mlarray.storage import read_header  # noqa: E402
from mlarray.validate import validate_file  # noqa: E402

SAMPLE_SEED = 6
SAMPLE_SIZE = 500

KNOWN_FINDINGS: dict[str, str] = {}
"""Case id -> finding class, for findings of the sample not fixed yet (delete ids as they are fixed)."""

KNOWN_FLAKY: dict[str, str] = {}
"""Findings that depend on leftover memory in blosc2 and reproduce only sometimes: allowed, not required."""


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-seeds")


@pytest.fixture(scope="module")
def seeds(seeds_dir: Path) -> list[Seed]:
    return make_seeds(seeds_dir)


@pytest.fixture(scope="module")
def sample(seeds: list[Seed], seeds_dir: Path) -> fuzz.Summary:
    cases = fuzz.build_cases(seeds, SAMPLE_SIZE, SAMPLE_SEED, full=False)
    return fuzz.run_cases(cases, seeds_dir, seeds, workers=2, timeout=10.0)


def _describe(summary: fuzz.Summary, ids: list[str]) -> str:
    """One ``KNOWN_FINDINGS``-style line per case, with what went wrong."""
    lines = []
    for case_id in ids:
        result = summary.by_case[case_id]
        classes = sorted({fuzz.finding_class(f) for f in result.findings})
        first = result.findings[0]
        lines.append(f"    {case_id!r}: {' | '.join(classes)!r},")
        lines.append(f"        # {result.case.desc[:120]}; {first['op']}: {first['message'][:160]!r}")
    return "\n".join(lines)


@pytest.mark.slow
def test_sample_has_no_new_findings(sample: fuzz.Summary) -> None:
    listed = KNOWN_FINDINGS.keys() | KNOWN_FLAKY.keys()
    new = sorted(i for i, r in sample.by_case.items() if r.findings and i not in listed)
    assert not new, f"{len(new)} mutated files gave findings:\n{_describe(sample, new)}"


@pytest.mark.slow
def test_known_findings_still_reproduce(sample: fuzz.Summary) -> None:
    gone = sorted(i for i in KNOWN_FINDINGS if i not in sample.by_case or not sample.by_case[i].findings)
    assert not gone, f"fixed (or no longer generated): delete these ids from KNOWN_FINDINGS: {gone}"


@pytest.mark.slow
def test_sample_reaches_every_mutator_and_many_outcomes(sample: fuzz.Summary) -> None:
    """Guard against a vacuous fuzzer: every mutation kind ran and the files failed in many different ways."""
    assert sample.cases == SAMPLE_SIZE
    kinds = {r.case.kind for r in sample.by_case.values()}
    assert kinds >= {"truncate", "flip", "patch_int", "splice", "metalayers", "index", "consistent_huge"}
    codes = set(sample.outcomes) - {"FINDING"}
    expected = {"read_ok", "CORRUPT_FRAME", "TRUNCATED_FILE", "NOT_A_FRAME", "HEADER_ENCODING", "HEADER_NOT_JSON"}
    expected |= {"HEADER_INVALID", "FORBIDDEN_METALAYER", "DIGEST_MISMATCH"}
    assert codes >= expected, sample.outcomes
    loads = sample.per_op["load"]
    assert loads["ok_equal"] > 10, loads  # unharmed regions of the file still read back the seed's data


@pytest.mark.parametrize("failing", ["read_out", "getitem_staged"])
def test_a_case_failing_only_in_one_read_is_not_read_ok(seeds: list[Seed], failing: str) -> None:
    """The outcome of a case weighs every operation: one that only ``read(out=)`` or the stage refuses."""
    seed = seeds[0]
    result = fuzz.Result(fuzz.Case("one/op", seed.name, "test", failing, seed.data))
    result.ops = {op: "ok_equal" for op in fuzz.OPS} | {"validate": "valid", "validate_deep": "valid"}
    assert result.outcome == "read_ok"
    result.ops[failing] = "CORRUPT_FRAME"
    assert result.outcome == "CORRUPT_FRAME"


def test_worker_crashes_hangs_memory_and_foreign_errors_are_findings(seeds: list[Seed], seeds_dir: Path) -> None:
    seed = seeds[0]
    cases = [fuzz.Case(f"inject/{kind}", seed.name, "inject", kind, seed.data) for kind in ("none", "crash")]
    cases += [fuzz.Case(f"inject/{kind}", seed.name, "inject", kind, seed.data) for kind in ("hang", "memory", "error")]
    inject = {f"inject/{kind}": kind for kind in ("crash", "hang", "memory", "error")}
    summary = fuzz.run_cases(cases, seeds_dir, seeds, workers=2, timeout=3.0, env={"FUZZ_INJECT": json.dumps(inject)})
    clean = summary.by_case["inject/none"]
    assert not clean.findings and clean.outcome == "read_ok"
    assert clean.ops["load"] == clean.ops["getitem_all"] == clean.ops["read_out"] == "ok_equal"
    assert list(clean.ops) == list(fuzz.OPS)  # every operation the worker runs is one the outcome weighs, in order
    assert clean.ops["validate_deep"] == "valid"
    kinds = {case_id: {(f["kind"], f["type"], f["op"]) for f in r.findings} for case_id, r in summary.by_case.items()}
    assert kinds["inject/crash"] == {("crash", "SIGSEGV", "read_header")}
    assert kinds["inject/hang"] == {("hang", "no answer within 3 s", "read_header")}
    assert kinds["inject/memory"] == {("memory", "MemoryError", "read_header")}
    assert kinds["inject/error"] == {("exception", "TypeError", "read_header")}
    # the pool replaced the dead and the stuck worker: every later operation still ran
    assert summary.by_case["inject/error"].ops["validate_deep"] == "valid"


def test_seed_maps_rebuild_byte_exactly(seeds: list[Seed]) -> None:
    """The fuzzer's own frame tooling: rebuilding unchanged sections gives back the seed's bytes."""
    assert len(seeds) >= 10
    for seed in seeds:
        fm = map_frame(seed.data)
        assert rebuild_metalayers(fm, layers_of(fm, fm.meta)) == seed.data
        assert rebuild_trailer(fm, layers_of(fm, fm.vlmeta)) == seed.data
        bounds = fm.boundaries()
        assert all(0 < b < len(seed.data) for b in bounds.values())
        for start, end in fm.regions().values():
            assert 0 <= start < end <= len(seed.data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=20,
)
_header_keys = st.sampled_from(["schema_version", "array", "layout", "spatial", "stats", "bbox", "source", "x"])


@given(
    header=st.one_of(
        st.dictionaries(_header_keys, _json, max_size=6).map(lambda d: {"schema_version": "1.0", **d}),
        _json,
    ),
    seed_index=st.integers(0, 9),
)
def test_hypothesis_headers_fail_typed(
    seeds: list[Seed], tmp_path_factory: pytest.TempPathFactory, header: Any, seed_index: int
) -> None:
    """Random JSON headers spliced into valid files: the header reads or fails typed, and validate agrees.

    Only the header path runs here (in-process): the data section is the seed's, intact.
    """
    seed = seeds[seed_index % len(seeds)]
    path = tmp_path_factory.mktemp("hyp") / "h.mla"
    path.write_bytes(with_header(seed, pack_str(dumps(header))))
    try:
        read_header(path)
        code = None
    except MLArrayError as exc:
        code = exc.code
    assert validate_file(path).code == code


@pytest.mark.slow
def test_staged_reads_of_the_sample_end_as_plain_reads_do(sample: fuzz.Summary) -> None:
    """The fuzz sample read through the stage (``getitem_staged``) ends, case by case, as ``arr[...]`` does."""
    differ = [i for i, r in sample.by_case.items() if r.ops.get("getitem_staged") != r.ops.get("getitem_all")]
    assert not differ, differ[:10]
    assert sample.per_op["getitem_staged"]["CORRUPT_FRAME"] > 10 and sample.per_op["getitem_staged"]["ok_equal"] > 10
