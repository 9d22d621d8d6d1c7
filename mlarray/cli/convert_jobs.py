"""What ``mlarray convert`` needs besides the command itself: dispatch and batch planning.

Every conversion, ``.mla`` -> ``.mla`` relayouts included, is done by
:func:`mlarray.convert.convert_file`, imported when a conversion runs so that a
broken or missing optional reader (the ``mlarray[convert]`` extra) gives one clear
line instead of a failing ``mlarray`` command. Batch planning (which inputs, which
output names) is kept apart from running, so it is easy to test. No typer or rich here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from mlarray.cli.output import UNEXPECTED, CLIError, one_line, os_error_code
from mlarray.errors import MLArrayError
from mlarray.jobs import is_temporary, is_within, remove_orphans
from mlarray.layout import PatchSize

FORMATS = (".mla", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File name endings ``mlarray convert`` understands (longest first where they overlap)."""

INSTALL_HINT = 'NIfTI/NRRD conversion needs the optional readers: pip install "mlarray[convert]"'


class Codec(str, Enum):
    """Blosc2 codecs the format records (``layout.codec``)."""

    blosclz = "blosclz"
    lz4 = "lz4"
    lz4hc = "lz4hc"
    zlib = "zlib"
    zstd = "zstd"


def parse_patch_size(text: str | None) -> PatchSize | None:
    """``'128'`` -> ``128``, ``'128,128,64'`` -> ``(128, 128, 64)``, ``'default'`` -> ``'default'``.

    Raises ``ValueError`` with a readable message for anything else.
    """
    if text is None:
        return None
    cleaned = text.strip().lower()
    if cleaned == "default":
        return "default"
    parts = [p.strip() for p in cleaned.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"{text!r} is not a patch size: use a positive integer, a comma list like 128,128,64, or 'default'"
        )
    sizes = tuple(int(p) for p in parts)
    return sizes[0] if len(sizes) == 1 else sizes


def format_of(path: Path | str) -> str | None:
    """The format ending of ``path`` (``'.nii.gz'``, ``'.mla'``...) or ``None`` if unknown."""
    name = os.fspath(path).lower()
    return next((ext for ext in FORMATS if name.endswith(ext)), None)


def stem_of(path: Path) -> str:
    """The file name without its format ending (``ct.nii.gz`` -> ``ct``)."""
    ext = format_of(path)
    return path.name[: -len(ext)] if ext else path.stem


def _converter() -> Callable[..., None]:
    try:
        from mlarray.convert import convert_file
    except ImportError as exc:
        raise CLIError(f"{INSTALL_HINT} ({exc})", code="MISSING_DEPENDENCY") from None
    return convert_file


def convert_one(
    src: Path,
    dst: Path,
    *,
    patch_size: PatchSize | None = None,
    codec: str | None = None,
    clevel: int | None = None,
    seg: bool = False,
    keep_raw: bool = False,
    series: str | None = None,
) -> None:
    """Convert one file with :func:`mlarray.convert.convert_file` (the endings tell the formats).

    ``.mla`` -> ``.mla`` is a relayout: options left at ``None`` keep what the file records.
    ``seg`` marks a label map written to ``.mla`` and fills its stats, boxes and class locations.
    ``keep_raw`` stores a scaled source's raw values instead of its physical values.
    """
    if seg and format_of(dst) != ".mla":
        raise CLIError(f"--seg needs an .mla output, not {dst}", code="INVALID_ARGUMENT")
    convert_file = _converter()
    remove_orphans(dst)  # what an unfinished earlier save of dst left (a killed run)
    try:
        extra: dict[str, Any] = {"keep_raw": True} if keep_raw else {}
        if series is not None:
            extra["series"] = series
        if seg and format_of(src) != ".mla":  # marked and compressed as a label map from the start
            extra["seg"] = True
        convert_file(src, dst, patch_size=patch_size, codec=codec, clevel=clevel, **extra)
    except ModuleNotFoundError as exc:
        if isinstance(exc, MLArrayError):  # already says what to install
            raise
        raise CLIError(f"{INSTALL_HINT} (missing module {exc.name!r})", code="MISSING_DEPENDENCY") from None
    if seg:
        from mlarray.stats import update_stats

        update_stats(dst, with_class_locations=True, seg=True)


# --------------------------------------------------------------------------- batches


@dataclass
class Job:
    """One conversion of a batch and its outcome."""

    src: Path
    dst: Path | None
    ok: bool | None = None
    code: str | None = None
    error: str | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "src": str(self.src),
            "dst": None if self.dst is None else str(self.dst),
            "ok": self.ok,
            "code": self.code,
            "error": self.error,
            "skipped": self.skipped,
        }


def find_inputs(root: Path) -> list[Path]:
    """Every convertible file under ``root`` (recursively), sorted; skips unfinished saves."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_temporary(d))  # unfinished saves' folders
        for name in sorted(filenames):
            if format_of(name) is not None and not is_temporary(name):
                found.append(Path(dirpath) / name)
    return found


def find_unsupported(root: Path) -> list[Path]:
    """Files under ``root`` that :func:`find_inputs` leaves out: not a convertible format.

    Unfinished saves and the data files of detached NRRD headers (``c.raw`` beside
    ``c.nhdr``) are not counted: they are parts of inputs, not inputs.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_temporary(d))  # unfinished saves' folders
        headers = {stem_of(Path(n)) for n in filenames if format_of(n) == ".nhdr"}
        for name in sorted(filenames):
            if format_of(name) is not None or is_temporary(name) or name.split(".")[0] in headers:
                continue
            out.append(Path(dirpath) / name)
    return out


def plan(inputs: Sequence[Path], out_dir: Path, to: str, *, strict: bool = False) -> list[Job]:
    """Pair each input (files, or directories walked recursively) with its output in ``out_dir``.

    A directory's files keep their relative sub-directories. Outputs that would
    collide (``a.nii`` and ``a.nii.gz`` -> ``a.mla``) are failed up front. Files of a
    directory that are not a convertible format become *skipped* jobs (failed ones
    with ``strict``), so a report never hides them.
    """
    ext = to if to.startswith(".") else f".{to}"
    if ext not in FORMATS:
        raise CLIError(
            f"--to {to!r}: unknown format; use one of {', '.join(f[1:] for f in FORMATS)}", code="INVALID_ARGUMENT"
        )
    jobs: list[Job] = []
    for item in inputs:
        if item.is_dir():  # an output folder inside the input holds earlier runs' outputs: never inputs
            found = [f for f in find_inputs(item) if not is_within(f, out_dir)]
            jobs += [Job(f, out_dir / f.relative_to(item).parent / f"{stem_of(f)}{ext}") for f in found]
            jobs += [
                Job(
                    f,
                    None,
                    ok=False if strict else None,
                    code="UNSUPPORTED_FORMAT",
                    error=f"not a format mlarray converts ({', '.join(FORMATS)})",
                    skipped=True,
                )
                for f in find_unsupported(item)
                if not is_within(f, out_dir)
            ]
        else:
            jobs.append(Job(item, out_dir / f"{stem_of(item)}{ext}"))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dst is None:
            continue
        key = job.dst.resolve()
        if key in seen:
            job.ok, job.code = False, "OUTPUT_COLLISION"
            job.error = f"{job.dst} would also be written from {seen[key]}; rename one of them"
        else:
            seen[key] = job.src
    return jobs


def run_job(job: Job, **options: Any) -> Job:
    """Run one job, recording success or the error (never raising for a bad file)."""
    if job.ok is False or job.skipped or job.dst is None:
        return job
    try:
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        convert_one(job.src, job.dst, **options)
    except (MLArrayError, CLIError) as exc:
        job.ok, job.code, job.error = False, exc.code, exc.message
    except OSError as exc:  # a converter's own file access
        job.ok, job.code = False, os_error_code(exc)
        job.error = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    except Exception as exc:  # a converter's unexpected failure is still one file's failure
        job.ok, job.code, job.error = False, UNEXPECTED, f"{type(exc).__name__}: {one_line(str(exc))}"
    else:
        job.ok = True
    return job


def run_batch(
    jobs: Iterable[Job],
    on_start: Callable[[Job], None],
    on_done: Callable[[Job], None],
    **options: Any,
) -> list[Job]:
    """Run every job in order, with callbacks around each; one failure does not stop the rest."""
    done = []
    for job in jobs:
        on_start(job)
        done.append(run_job(job, **options))
        on_done(job)
    return done
