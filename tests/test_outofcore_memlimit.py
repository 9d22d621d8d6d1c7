"""The memory-limit helper (tests/memlimit.py) that the out-of-core tests rely on."""

from __future__ import annotations

import pytest
from memlimit import LimitExceeded, run_limited

MiB = 1 << 20


def test_an_allocation_within_the_budget_runs_and_is_measured() -> None:
    run = run_limited(
        "import numpy as np\na = np.ones(80 << 20, dtype=np.uint8)\nresult = int(a.sum())", budget=200 * MiB
    )
    assert run.result == 80 * MiB
    assert run.limit == run.baseline_vm + 200 * MiB
    assert 80 * MiB <= run.peak_over_baseline < 200 * MiB


def test_an_allocation_past_the_budget_is_refused() -> None:
    with pytest.raises(LimitExceeded):
        run_limited("import numpy as np\na = np.ones(300 << 20, dtype=np.uint8)\nresult = 1", budget=200 * MiB)


def test_without_a_budget_nothing_is_limited() -> None:
    run = run_limited("import numpy as np\nresult = int(np.ones(300 << 20, dtype=np.uint8).sum())", budget=None)
    assert run.limit is None
    assert run.result == 300 * MiB
    # measured, not exact: pages of the baseline may leave the resident set meanwhile (seen: 299.96 MiB)
    assert run.peak_over_baseline >= 280 * MiB


def test_a_failing_snippet_reports_its_error() -> None:
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_limited("result = 1 / 0", budget=None)


def test_variables_are_defined_for_the_snippet() -> None:
    assert run_limited("result = [a + 1, b]", budget=None, variables={"a": 1, "b": "x"}).result == [2, "x"]


def test_the_peak_is_the_childs_own_not_its_parents() -> None:
    """Linux carries ru_maxrss over fork/exec; a big parent (pytest) must not inflate the child's peak."""
    import numpy as np

    held = np.ones(200 * MiB, dtype=np.uint8)  # resident in this (the parent) process
    run = run_limited("result = 1", budget=100 * MiB)
    assert held[-1] == 1
    assert run.peak_rss < 200 * MiB
    assert run.peak_over_baseline < 50 * MiB
