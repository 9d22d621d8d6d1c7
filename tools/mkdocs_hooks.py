"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

The specification and the conformance guide are written outside ``docs/`` (in
``spec/`` and ``conformance/``) because they are documents of the format, not of the
Python package. The site shows them anyway: a docs page containing the line
``<!-- include-repo-file: spec/mlarray.md -->`` gets that file's text in its place.
Relative links in the included text are rewritten so they still work from the docs
page: links to another included file go to the page that includes it, links to
other repository files (the JSON Schema, example headers, ...) go to a copy of that
file published under ``repo/`` in the site. A link to a file that does not exist is
reported, which fails ``mkdocs build --strict``.

A file that is not there yet is replaced by a short note instead, and nav entries
listed in :data:`OPTIONAL_PAGES` are dropped while their page does not exist, so the
site builds strictly while other pages are still being written.

This module must not import mlarray: it only moves text around.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.mlarray")

OPTIONAL_PAGES = frozenset({"cli.md", "conversion.md", "performance.md", "security.md"})
"""Nav entries written by others that may not exist yet: left out of the nav until they do."""

PUBLISHED_PREFIX = "repo/"
"""Where copies of linked repository files are published in the site."""

INCLUDE = re.compile(r"^<!--\s*include-repo-file:\s*(\S+)\s*-->[ \t]*$", re.MULTILINE)
_INLINE_LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)((?:\s+\"[^\"\n]*\")?\))")
_REFERENCE_LINK = re.compile(r"^([ ]{0,3}\[[^\]\n]+\]:[ \t]*)(\S+)", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _repo_root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _includes(config: MkDocsConfig) -> dict[str, str]:
    """``{included repository path: docs page that includes it}`` over all docs pages."""
    found: dict[str, str] = {}
    docs = Path(config.docs_dir)
    for page in sorted(docs.rglob("*.md")):
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            found[match.group(1)] = page.relative_to(docs).as_posix()
    return found


# --------------------------------------------------------------------------- the nav


def _prune(entries: Any, docs: Path) -> Any:
    """``entries`` without the optional pages that do not exist."""
    if isinstance(entries, list):
        kept = [_prune(entry, docs) for entry in entries]
        return [entry for entry in kept if entry is not None]
    if isinstance(entries, dict):
        kept_items = {title: _prune(value, docs) for title, value in entries.items()}
        kept_items = {title: value for title, value in kept_items.items() if value is not None}
        return kept_items or None
    if isinstance(entries, str) and entries in OPTIONAL_PAGES and not (docs / entries).is_file():
        log.info("nav: leaving out %s, which does not exist yet", entries)
        return None
    return entries


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if config.nav is not None:
        config.nav = _prune(config.nav, Path(config.docs_dir))
    return config


# --------------------------------------------------------------------------- included files


def _mask(text: str) -> str:
    """``text`` with code blanked out (same length), so links are only found outside code.

    Fenced code blocks become spaces and the content of code spans becomes ``x``; the
    backticks stay, so a link whose text is a code span is still found.
    """
    out, fence = [], None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            out.append(re.sub(r"[^\n]", " ", line))
        elif fence is not None:
            if match and match.group(1) == fence:
                fence = None
            out.append(re.sub(r"[^\n]", " ", line))
        else:
            out.append(_CODE_SPAN.sub(lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", line))
    return "".join(out)


def _links(text: str) -> list[tuple[int, int, int, int]]:
    """``(link start, link end, target start, target end)`` of every link outside code, in order."""
    masked = _mask(text)
    found = [(m.start(), m.end(), m.start(2), m.end(2)) for m in _INLINE_LINK.finditer(masked)]
    found += [(m.start(2), m.end(2), m.start(2), m.end(2)) for m in _REFERENCE_LINK.finditer(masked)]
    return sorted(found)


def _resolve(target: str, included: str) -> tuple[str, str] | None:
    """The repository path and anchor a relative link of ``included`` points at (``None`` if not relative)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return None
    path, _, anchor = target.partition("#")
    return posixpath.normpath(posixpath.join(posixpath.dirname(included), path)), anchor


def _link_targets(text: str, included: str) -> Iterator[str]:
    for _, _, start, end in _links(text):
        resolved = _resolve(text[start:end], included)
        if resolved is not None:
            yield resolved[0]


def _published(repo_path: str, root: Path) -> bool:
    """Whether a linked repository file is copied into the site (any existing non-Markdown file)."""
    return (root / repo_path).is_file() and not repo_path.endswith(".md")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _repo_root(config)
    added: set[str] = set()
    for included in _includes(config):
        source = root / included
        if not source.is_file():
            continue
        for repo_path in _link_targets(source.read_text(encoding="utf-8"), included):
            if repo_path not in added and _published(repo_path, root):
                added.add(repo_path)
                files.append(File.generated(config, PUBLISHED_PREFIX + repo_path, abs_src_path=str(root / repo_path)))
    return files


def _rewrite(text: str, included: str, page: str, includes: dict[str, str], root: Path) -> str:
    """``text`` (the content of ``included``) with its relative links made valid from ``page``."""
    here = posixpath.dirname(page)

    def fix(target: str) -> str | None:
        resolved = _resolve(target, included)
        if resolved is None:
            return target
        repo_path, anchor = resolved
        suffix = f"#{anchor}" if anchor else ""
        if repo_path in includes:
            return posixpath.relpath(includes[repo_path], here or ".") + suffix
        if repo_path.startswith("docs/") and (root / repo_path).is_file():
            return posixpath.relpath(repo_path.removeprefix("docs/"), here or ".") + suffix
        if _published(repo_path, root):
            return posixpath.relpath(PUBLISHED_PREFIX + repo_path, here or ".") + suffix
        if (root / repo_path).exists():
            return None  # a folder or an unpublished page of the repository: keep the text, drop the link
        log.warning("%s links to %s, which does not exist in the repository", included, target)
        return target

    out, last = [], 0
    for link_start, link_end, start, end in _links(text):
        target = text[start:end]
        new = fix(target)
        if new is None and link_start != start:
            # an inline link to a folder or an unpublished page: keep its text, name the path
            label = text[link_start : start - 2].lstrip("!")[1:]
            out.append(text[last:link_start] + f"{label} (`{_resolve(target, included)[0]}`)")  # type: ignore[index]
        else:
            out.append(text[last:start] + (new if new is not None else "#"))
            out.append(text[end:link_end])
        last = link_end
    out.append(text[last:])
    return "".join(out)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    root = _repo_root(config)
    includes = _includes(config)

    def include(match: re.Match[str]) -> str:
        included = match.group(1)
        source = root / included
        if not source.is_file():
            return (
                '!!! note "Not written yet"\n\n'
                f"    This page shows `{included}` from the repository, which is not in this checkout yet."
            )
        text = source.read_text(encoding="utf-8")
        return _rewrite(text, included, page.file.src_uri, includes, root)

    return INCLUDE.sub(include, markdown)
