"""The documentation is executable and current.

* Every ```python block of ``README.md`` and ``docs/**/*.md`` runs: the blocks of one
  page in order, sharing one namespace, in an empty temporary directory. A line
  ``print(x)  # text`` also checks that ``x`` prints as ``text``, so the outputs the
  docs show are true. A block may opt out only with ``<!-- skip-test: reason -->`` on
  the line before it; those are listed and capped at :data:`MAX_SKIPPED`, and a guard
  counts the fences independently so no block can be missed by the extractor. A page
  may name repository files to copy into its folder first (``<!-- docs-files: path -->``),
  e.g. a file written by the earlier implementation.
* ``mkdocs build --strict`` succeeds (mkdocs is in the ``dev`` extra: missing is a failure).
* The generated reference pages match the code (``python docs/gen_reference.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mlarray.errors import ALL_ERRORS
from mlarray.models import Meta

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
PYTHON = frozenset({"python", "py", "python3"})
MAX_SKIPPED = 2
"""At most this many blocks may opt out of being executed."""

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_FILES = re.compile(r"^\s*<!--\s*docs-files:\s*(?P<files>.*?)\s*-->\s*$", re.MULTILINE)
"""``<!-- docs-files: path ... -->``: repository files copied into the page's folder before its examples run."""
_SKIP = re.compile(r"^\s*<!--\s*skip-test:\s*(?P<reason>.*?)\s*-->\s*$")
_PRINT_CHECK = re.compile(r"^(?P<indent>[ \t]*)print\((?P<args>.*)\)[ \t]+#[ \t]?(?P<expected>.*?)[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the first code line
    language: str
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _language(info: str) -> str:
    first = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    return first.strip("{}").lstrip(".").lower()


def code_blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page`` (indented fences too, e.g. inside admonitions)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        skip = _SKIP.match(previous)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        blocks.append(
            Block(page, i + 2, _language(opening["info"]), "\n".join(body) + "\n", skip["reason"] if skip else None)
        )
        i = j + 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [b for b in code_blocks(page) if b.language in PYTHON]


def _with_print_checks(code: str) -> tuple[str, int]:
    """Turn ``print(x)  # text`` lines into calls that print and check the output."""
    out, checks = [], 0
    for line in code.splitlines():
        match = _PRINT_CHECK.match(line)
        if match and match["args"].count("(") == match["args"].count(")"):
            line = f"{match['indent']}__print_and_check__({match['args']}, expected={match['expected']!r})"
            checks += 1
        out.append(line)
    return "\n".join(out) + "\n", checks


def _print_and_check(*args: Any, expected: str) -> None:
    text = " ".join(str(a) for a in args)
    print(text)
    assert text == expected, f"the docs say this prints {expected!r}, but it prints {text!r}"


EXECUTED_PAGES = [page for page in PAGES if python_blocks(page)]


def test_every_python_fence_is_extracted() -> None:
    """Guard: a plain count of opening fences agrees with the extractor, and nothing is hidden."""
    fence = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*\{?\.?(python3?|py)\b", re.IGNORECASE | re.MULTILINE)
    counted = sum(len(fence.findall(page.read_text(encoding="utf-8"))) for page in PAGES)
    extracted = sum(len(python_blocks(page)) for page in PAGES)
    assert counted == extracted
    assert extracted >= 30, "the docs should show (and test) at least 30 Python examples"
    interactive = [b.where for p in PAGES for b in code_blocks(p) if b.language in {"pycon", "doctest"}]
    assert not interactive, f"write examples as plain ```python blocks, not console sessions: {interactive}"


def test_skipped_blocks_are_few_and_explained() -> None:
    skipped = [b for page in PAGES for b in python_blocks(page) if b.skip_reason is not None]
    for block in skipped:
        assert block.skip_reason, f"{block.where}: a skip-test marker needs a reason"
    listing = "\n".join(f"{b.where}: {b.skip_reason}" for b in skipped)
    assert len(skipped) <= MAX_SKIPPED, f"too many examples opt out of testing:\n{listing}"


def run_page(page: Path) -> int:
    """Execute the Python blocks of ``page`` in order in one namespace; return how many ran."""
    namespace: dict[str, Any] = {"__name__": "__docs__", "__print_and_check__": _print_and_check}
    for match in _FILES.finditer(page.read_text(encoding="utf-8")):
        for name in match["files"].split():
            shutil.copyfile(ROOT / name, Path.cwd() / Path(name).name)
    executed = 0
    for block in python_blocks(page):
        if block.skip_reason is not None:
            continue
        code, _ = _with_print_checks(block.code)
        # Pad with blank lines so tracebacks point at the line of the Markdown file.
        source = "\n" * (block.line - 1) + code
        name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
        exec(compile(source, str(name), "exec"), namespace)
        executed += 1
    return executed


def run_pages(workdir: Path, pages: list[Path]) -> None:
    """Run every page in its own empty folder of ``workdir``; append one JSON result per page to results.jsonl.

    This runs in a separate interpreter (see :func:`example_results`): mlarray is
    imported once for all pages, and an example that crashes the interpreter fails the
    pages from there on instead of the whole test session.
    """
    workdir, pages = workdir.resolve(), [page.resolve() for page in pages]
    results = workdir / "results.jsonl"
    for number, page in enumerate(pages):
        folder = workdir / f"page{number}"
        folder.mkdir()
        os.chdir(folder)
        try:
            record = {"page": str(page), "executed": run_page(page)}
        except BaseException:
            record = {"page": str(page), "error": traceback.format_exc()}
        with results.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def example_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run the examples of every page, once, in one fresh interpreter that turns warnings into errors."""
    workdir = tmp_path_factory.mktemp("docs-examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-W", "error", "-X", "faulthandler", __file__, str(workdir)]
    result = subprocess.run(
        [*command, *map(str, EXECUTED_PAGES)], cwd=workdir, capture_output=True, text=True, env=env, timeout=900
    )
    results_file = workdir / "results.jsonl"
    lines = results_file.read_text(encoding="utf-8").splitlines() if results_file.exists() else []
    found = {record["page"]: record for record in map(json.loads, lines)}
    if result.returncode != 0:
        how = signal.Signals(-result.returncode).name if result.returncode < 0 else f"exit code {result.returncode}"
        for page in EXECUTED_PAGES:
            found.setdefault(
                str(page), {"error": f"the interpreter running the examples died ({how}):\n{result.stderr}"}
            )
    return found


@pytest.mark.parametrize("page", EXECUTED_PAGES, ids=[str(p.relative_to(ROOT)) for p in EXECUTED_PAGES])
def test_examples_run(page: Path, example_results: dict[str, dict[str, Any]]) -> None:
    record = example_results[str(page)]
    assert "error" not in record, f"an example of {page.relative_to(ROOT)} failed:\n{record['error']}"
    expected = sum(1 for b in python_blocks(page) if b.skip_reason is None)
    assert record["executed"] == expected > 0


def test_print_checks_are_used() -> None:
    """The docs show outputs as ``print(x)  # output``; make sure those are being checked."""
    checks = sum(_with_print_checks(b.code)[1] for page in PAGES for b in python_blocks(page))
    assert checks >= 10


# --------------------------------------------------------------------------- the site


def test_site_builds_strictly(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "pymdownx"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed: install the dev extra (pip install -e '.[dev]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "getting-started/index.html", "reference/metadata/index.html"):
        assert (site / page).is_file(), page
    # The spec and the conformance guide are included from outside docs/ when they exist.
    for included, built in (
        ("spec/mlarray.md", "spec/index.html"),
        ("conformance/README.md", "conformance/index.html"),
    ):
        html = (site / built).read_text(encoding="utf-8")
        assert "include-repo-file" not in html
        if (ROOT / included).is_file():
            assert "Not written yet" not in html
            title = next(
                line for line in (ROOT / included).read_text(encoding="utf-8").splitlines() if line.startswith("# ")
            )
            assert title[2:].strip().split()[0] in html


# --------------------------------------------------------------------------- generated reference


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_is_current() -> None:
    generator = _load(DOCS / "gen_reference.py", "gen_reference")
    stale = [str(p.relative_to(ROOT)) for p in generator.stale_pages()]
    assert not stale, f"{stale} differ from the code: run python docs/gen_reference.py and commit the result"


def test_metadata_reference_covers_every_field() -> None:
    text = (DOCS / "reference" / "metadata.md").read_text(encoding="utf-8")
    pending: list[tuple[str, Any]] = [("", Meta)]
    while pending:
        prefix, model = pending.pop()
        for name, info in model.model_fields.items():
            assert f"| `{name}` |" in text, f"{prefix}{name} is missing from the metadata reference"
            nested = [a for a in getattr(info.annotation, "__args__", (info.annotation,)) if hasattr(a, "model_fields")]
            pending += [(f"{prefix}{name}.", a) for a in nested]


def test_errors_reference_lists_every_error() -> None:
    text = (DOCS / "reference" / "errors.md").read_text(encoding="utf-8")
    for cls in ALL_ERRORS:
        assert f"| `{cls.__name__}` | `{cls.code}` |" in text


# --------------------------------------------------------------------------- the include hook


def test_included_links_are_rewritten_for_the_site(tmp_path: Path) -> None:
    hooks = _load(ROOT / "tools" / "mkdocs_hooks.py", "mkdocs_hooks")
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "s.json").write_text("{}")
    (tmp_path / "conformance" / "readers").mkdir(parents=True)
    text = (
        "See [`schema/s.json`](../schema/s.json), [the suite](../conformance/README.md#running), "
        "[readers](../conformance/readers/) and [web](https://example.org/x.md).\n"
        "```\n[not a link](../schema/s.json)\n```\n"
        "Code: `[x](../schema/s.json)` stays.\n"
    )
    out = hooks._rewrite(text, "spec/mlarray.md", "spec.md", {"conformance/README.md": "conformance.md"}, tmp_path)
    assert "[`schema/s.json`](repo/schema/s.json)" in out
    assert "[the suite](conformance.md#running)" in out
    assert "readers (`conformance/readers`)" in out
    assert "(https://example.org/x.md)" in out
    assert "[not a link](../schema/s.json)" in out
    assert "`[x](../schema/s.json)`" in out


if __name__ == "__main__":
    run_pages(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
