"""Extract the Python examples from the seed README (plain text, no code fences).

A paragraph (text between blank lines) is code when it compiles as Python and looks
like a statement; consecutive code paragraphs form one example. ``print(x)  # value``
lines become assertions that ``x`` equals the commented value.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

SEED_README = Path(
    os.environ.get("MLARRAY_SEED_README", Path(__file__).resolve().parents[2] / "shared/seed/README-mlarray.txt")
)


def _is_code(paragraph: str) -> bool:
    try:
        compile(paragraph, "<seed>", "exec")
    except SyntaxError:
        return False
    return any(token in paragraph for token in ("import ", "=", "("))


def examples(text: str) -> list[str]:
    """The Python examples of the seed README, in order."""
    paragraphs = [p.strip("\n") for p in text.split("\n\n")]
    out: list[str] = []
    current: list[str] = []
    for paragraph in paragraphs:
        if paragraph.strip() and _is_code(paragraph):
            current.append(paragraph)
        elif current:
            out.append("\n\n".join(current))
            current = []
    if current:
        out.append("\n\n".join(current))
    return out


def with_checks(example: str) -> tuple[str, int]:
    """Turn ``print(expr)  # expected`` lines into assertions; return the code and the check count."""
    lines = []
    checks = 0
    for line in example.splitlines():
        stripped = line.strip()
        if stripped.startswith("print(") and "#" in stripped:
            code, _, comment = stripped.partition("#")
            try:
                expected = ast.literal_eval(comment.strip())
            except (ValueError, SyntaxError):
                lines.append(line)
                continue
            expr = code.strip()[len("print(") : -1]
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(f"{indent}assert {expr} == {expected!r}, ({expr!r}, {expr})")
            checks += 1
        else:
            lines.append(line)
    return "\n".join(lines), checks
