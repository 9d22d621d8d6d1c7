"""The published benchmark results are a real run: the page's tables come from the committed JSON.

Nothing here measures time; it checks that ``docs/performance.md`` shows exactly what
``python -m benchmarks.report --publish`` renders from ``docs/benchmark-results.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402


def _results() -> dict:
    return json.loads(report.DOCS_JSON.read_text())


def test_the_page_shows_the_committed_run() -> None:
    block = report.published_block(report.DOCS_PAGE.read_text())
    assert block == report.docs_block(_results()), "run: python -m benchmarks.report --publish <results.json>"


def test_the_committed_run_is_a_full_run_of_every_format_checked_against_its_source() -> None:
    results = _results()
    assert results["config"]["quick"] is False and results["config"]["patches"] >= 50
    for name, entry in results["datasets"].items():
        assert set(entry["formats"]) == set(results["config"]["formats"]), name
        ours = entry["formats"]["mlarray"]
        assert ours["size_bytes"] > 0 and ours["patch128_ms"] > 0, name
    targets = report.summarize(results)["targets"]
    assert targets and all(t["measured"] is not None for t in targets)


def test_publish_rewrites_only_the_results_block(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Title\n\nprose before\n\n{report.DOCS_START}\nstale table\n{report.DOCS_END}\n\nprose after\n")
    run = _results()
    run.pop("repeat_runs", None)
    source = tmp_path / "run.json"
    source.write_text(json.dumps(run))
    report.publish([source], page=page, json_copy=tmp_path / "copy.json")
    text = page.read_text()
    assert text.startswith("# Title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert "stale table" not in text
    assert report.published_block(text) == report.docs_block(run)
    assert json.loads((tmp_path / "copy.json").read_text()) == run
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(dict(run, repeat_runs=[run])))  # nested repeats are dropped
    report.publish([source, earlier], page=page, json_copy=tmp_path / "copy.json")
    assert len(json.loads((tmp_path / "copy.json").read_text())["repeat_runs"]) == 1
    assert "Spread over 2 runs" in report.published_block(page.read_text())
    page.write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        report.publish([source], page=page, json_copy=tmp_path / "copy.json")
