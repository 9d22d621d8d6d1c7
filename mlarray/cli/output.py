"""Human and JSON output of the ``mlarray`` command line.

Pure formatting: these functions turn library results (validation reports, headers,
conversion results) into lines, JSON values and rich tables. They never read files
themselves, so what a command prints is exactly what the library returned.
"""

from __future__ import annotations

import errno
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlarray.errors import InvalidArgumentError, MLArrayError
from mlarray.models import Meta
from mlarray.validate import Report


class CLIError(Exception):
    """A failure of the command line itself (not of a file), printed as one line ending with ``[code]``.

    ``code`` is one of the error reference's codes (``docs/reference/errors.md``).
    """

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


INLINE_WIDTH = 100
"""Lists of plain values up to this many characters are printed on one line."""


def _scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _pretty(value: Any, indent: int, ascii: bool) -> str:
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=ascii)}: {_pretty(v, indent + 2, ascii)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value:
        flat = json.dumps(value, ensure_ascii=ascii, allow_nan=False, separators=(", ", ": "))
        if all(_scalar(v) for v in value) and len(flat) <= INLINE_WIDTH:
            return flat
        rows = [f"{inner}{_pretty(v, indent + 2, ascii)}" for v in value]
        return "[\n" + ",\n".join(rows) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=ascii, allow_nan=False)


def dumps(value: Any) -> str:
    """JSON as the CLI prints it: indented, short lists of numbers on one line, UTF-8 kept, no NaN.

    Characters the output cannot encode (an 8-bit ``PYTHONIOENCODING``, or the lone
    surrogates of a file name that is not UTF-8) are written as ``\\uXXXX`` escapes instead,
    so the output is always JSON.
    """
    text = _pretty(value, 0, ascii=False)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return _pretty(value, 0, ascii=True)
    return text


_CONTROL = {i: f"\\x{i:02x}" for i in [*range(32), 127]} | {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``): one report line stays one line.

    A file name may hold a newline or a terminal escape; printed raw it would split its report
    line (``grep FAILED`` would see a line for a file that does not exist) or drive the terminal.
    """
    return text.translate(_CONTROL)


def echo_line(text: str, err: bool = False) -> None:
    """Print one report or message line (:func:`printable`)."""
    typer.echo(printable(text), err=err)


def one_line(text: str) -> str:
    """Collapse whitespace runs (newlines included) so a message fits on one line."""
    return " ".join(text.split())


def error_lines(exc: BaseException) -> list[str]:
    """The lines printed for a failed command: one line, plus one per header problem."""
    if isinstance(exc, MLArrayError):
        problems = getattr(exc, "problems", None)
        if problems:
            n = len(problems)
            head = f"{exc.path}: " if exc.path else ""
            lines = [f"error: {head}invalid header ({n} problem{'s' if n != 1 else ''}) [{exc.code}]"]
            return lines + [f"  {p.loc or '<header>'}: {one_line(p.message)} [{p.code}]" for p in problems]
        return [f"error: {explain(exc.code, exc.message)} [{exc.code}]"]
    if isinstance(exc, CLIError):
        return [f"error: {one_line(exc.message)} [{exc.code}]"]
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return [f"error: {where}{exc.strerror} [{os_error_code(exc)}]"]
    return [f"error: {type(exc).__name__}: {one_line(str(exc))} (run with --verbose for the traceback) [{UNEXPECTED}]"]


UNEXPECTED = "MLARRAY_ERROR"
"""The code printed for a failure that is no mlarray error (a bug, or a library's own exception): the root code."""


def os_error_code(exc: OSError) -> str:
    """The error reference's code for an operating-system error that is no mlarray error."""
    if isinstance(exc, FileNotFoundError):
        return "FILE_NOT_FOUND"
    if isinstance(exc, PermissionError):
        return "READ_ONLY"
    return "WRITE_FAILED" if exc.errno in _WRITE_ERRNOS else UNEXPECTED


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


# --------------------------------------------------------------------------- validate


LEGACY_HINT = "if the file was written by the earlier mlarray implementation, convert it with `mlarray migrate`"


def _strip_path(message: str, path: str) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def explain(code: str | None, message: str) -> str:
    """``message`` on one line, with a hint for codes that usually mean a legacy file."""
    text = one_line(message)
    return f"{text} ({LEGACY_HINT})" if code == "HEADER_ENCODING" else text


def report_lines(report: Report) -> list[str]:
    """``PATH: valid`` or one ``PATH:LOC: CODE: message`` line per problem."""
    if report.valid:
        return [f"{report.path}: valid"]
    return [
        f"{report.path}:{p.loc}: {p.code}: {explain(p.code, _strip_path(p.message, report.path))}"
        for p in report.problems
    ]


def summary_line(reports: Sequence[Report]) -> str:
    legacy = sum(r.code == "LEGACY_FORMAT" for r in reports)
    bad = sum(not r.valid for r in reports) - legacy
    n = len(reports)
    text = f"{n} file{'s' if n != 1 else ''} checked: {n - bad - legacy} valid, {bad} invalid"
    return f"{text}, {legacy} legacy (convert with `mlarray migrate`)" if legacy else text


def job_line(src: str, dst: str, ok: bool | None, code: str | None, error: str | None) -> str:
    """One line of the ``mlarray convert`` report."""
    if ok:
        return f"ok      {src} -> {dst}"
    return f"FAILED  {src}: {explain(code, _strip_path(error or '', src))} [{code}]"


# --------------------------------------------------------------------------- header


def get_field(header: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` (``spatial.spacing``, ``spatial.spacing.0``) of a header object.

    Raises
    ------
    InvalidArgumentError
        The path does not exist; the message lists the keys available where it stopped.
    """
    parts = dotted.split(".")
    if not dotted or any(not p for p in parts):
        raise InvalidArgumentError(f"invalid field path {dotted!r}: use dotted names like spatial.spacing")
    value: Any = header
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the header"
        if isinstance(value, dict):
            if part not in value:
                keys = ", ".join(sorted(value)) or "none"
                raise InvalidArgumentError(f"no field {dotted!r}: {here} has no {part!r} (available: {keys})")
            value = value[part]
        elif isinstance(value, list):
            if not part.isdigit() or int(part) >= len(value):
                raise InvalidArgumentError(
                    f"no field {dotted!r}: {here} is a list of {len(value)}; use an index 0..{len(value) - 1}"
                )
            value = value[int(part)]
        else:
            raise InvalidArgumentError(f"no field {dotted!r}: {here} is {json.dumps(value)}, not an object")
    return value


# --------------------------------------------------------------------------- info


def human_size(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _fmt(value: Any) -> str:
    """Compact text for a JSON value: ``[0.5, 0.5, 1]``, matrices row by row."""
    if value is None:
        return "-"
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return "\n".join(_fmt(row) for row in value)
        return "[" + ", ".join(_num(v) for v in value) + "]"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _num(value)


def describe(path: str, header: Meta, file_size: int) -> dict[str, Any]:
    """What ``mlarray info`` shows, as JSON: sizes, layout and geometry (from the header only)."""
    meta = header.model_dump(mode="json")
    out: dict[str, Any] = {
        "path": path,
        "schema_version": meta["schema_version"],
        "writer": meta.get("writer"),
        "shape": None,
        "dtype": None,
        "size_on_disk": file_size,
        "uncompressed_size": None,
        "compression_ratio": None,
    }
    array = meta.get("array")
    if array is not None:
        nbytes = math.prod(array["shape"]) * np.dtype(array["dtype"]).itemsize
        out.update(shape=array["shape"], dtype=array["dtype"], uncompressed_size=nbytes)
        out["compression_ratio"] = round(nbytes / file_size, 3) if file_size else None
    out["layout"] = meta.get("layout")
    out["spatial"] = {k: v for k, v in meta["spatial"].items() if v is not None}
    out["is_seg"] = meta.get("is_seg")
    out["scaling"] = meta.get("scaling")
    out["stats"] = meta.get("stats")
    bbox = meta.get("bbox")
    out["bbox_count"] = None if bbox is None else len(bbox["bboxes"])
    out["source_keys"] = sorted(meta.get("source") or {})
    out["extra_keys"] = sorted(meta.get("extra") or {})
    integrity = meta.get("integrity")
    out["integrity"] = integrity
    return out


@dataclass
class Section:
    title: str
    rows: list[tuple[str, str]]


def info_sections(info: dict[str, Any]) -> list[Section]:
    """Group :func:`describe` output into the table sections ``mlarray info`` prints."""
    writer = info.get("writer")
    general = [
        ("file", info["path"]),
        ("schema", info["schema_version"]),
        ("writer", f"{writer['name']} {writer['version']}" if writer else "-"),
    ]
    if info["shape"] is None:
        general.append(("array", "none (metadata-only file)"))
    else:
        general += [("shape", _fmt(info["shape"])), ("dtype", info["dtype"])]
    general.append(("size on disk", human_size(info["size_on_disk"])))
    if info["uncompressed_size"] is not None:
        general.append(("uncompressed", human_size(info["uncompressed_size"])))
        ratio = info["compression_ratio"]
        general.append(("compression ratio", "-" if ratio is None else f"{ratio:.2f}x"))
    sections = [Section("array", general)]
    layout = info.get("layout")
    if layout:
        filters = ", ".join(layout.get("filters") or []) or "none"
        sections.append(
            Section(
                "layout",
                [
                    ("strategy", layout["strategy"]),
                    ("chunk size", _fmt(layout["chunk_size"])),
                    ("block size", _fmt(layout["block_size"])),
                    ("patch size", _fmt(layout.get("patch_size"))),
                    ("codec", f"{layout['codec']} (level {layout['clevel']}, filters: {filters})"),
                ],
            )
        )
    spatial = info["spatial"]
    geometry = [(key.replace("_", " "), _fmt(value)) for key, value in spatial.items()]
    sections.append(Section("geometry", geometry or [("geometry", "none recorded")]))
    other: list[tuple[str, str]] = []
    if info["is_seg"] is not None:
        other.append(("segmentation", _fmt(info["is_seg"])))
    scaling = info.get("scaling")
    if scaling:
        formula = (
            f"physical = raw * {_num(scaling['slope'])} + {_num(scaling['intercept'])} (raw {scaling['raw_dtype']})"
        )
        kept = (
            "physical values" if scaling["stored"] == "physical" else "raw values: to_numpy(scaled=True) for physical"
        )
        other.append(("intensity scaling", f"{formula}; stores {kept}"))
    stats = info.get("stats")
    if stats:
        other.append(("stats", ", ".join(f"{k}={_num(v)}" for k, v in stats.items() if v is not None)))
    if info["bbox_count"] is not None:
        other.append(("bounding boxes", str(info["bbox_count"])))
    if info["source_keys"]:
        other.append(("source keys", ", ".join(info["source_keys"])))
    if info["extra_keys"]:
        other.append(("extra keys", ", ".join(info["extra_keys"])))
    integrity = info.get("integrity")
    if integrity:
        digest = str(integrity.get("digest", ""))
        other.append(
            ("integrity", f"{integrity.get('algorithm', '?')} {digest[:16]}{'...' if len(digest) > 16 else ''}")
        )
    if other:
        sections.append(Section("metadata", other))
    return sections


def print_info(info: dict[str, Any], console: Console) -> None:
    """Print :func:`info_sections` as one rich table."""
    table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for i, section in enumerate(info_sections(info)):
        if i:
            table.add_row("", "")
        table.add_row(Text(section.title, style="underline"), "")
        for key, value in section.rows:
            table.add_row(Text(f"  {key}"), Text(value))
    console.print(table)
