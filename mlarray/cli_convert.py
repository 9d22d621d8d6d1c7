"""Conversion dispatch and batch planning behind ``mlarray convert`` and ``mlarray migrate``.

``.mla`` -> ``.mla`` (a relayout) is done here with the public API; every other
pair of formats goes to :func:`mlarray.convert.convert_file`, imported only when
needed because its readers (nibabel, pynrrd, SimpleITK) are the optional extra
``mlarray[convert]``. Batch planning (which inputs, which output names) is kept
apart from running, so it is easy to test. No typer here; rich is used only by
the caller for the progress bar.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from mlarray.api import MLArray
from mlarray.cli_format import CLIError
from mlarray.errors import MLArrayError
from mlarray.layout import PatchSize
from mlarray.storage.io import make_cparams

FORMATS = (".mla", ".nii.gz", ".nii", ".nrrd", ".nhdr")
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


def relayout(
    src: Path | str,
    dst: Path | str,
    *,
    patch_size: PatchSize | None = None,
    codec: str | None = None,
    clevel: int | None = None,
) -> None:
    """Rewrite the ``.mla`` file ``src`` as ``dst`` with a new layout or compression.

    Options left at ``None`` keep what ``src`` records: with only ``codec``/``clevel``
    the chunking is kept, with only ``patch_size`` the compression is kept. ``src``
    and ``dst`` may be the same file (the write is atomic).
    """
    image = MLArray.load(src)
    old = image.meta.layout
    if image.shape is None or (patch_size is None and codec is None and clevel is None):
        image.save(dst)
        return
    kwargs: dict[str, Any] = {}
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    elif old is not None and old.strategy == "manual":
        kwargs.update(chunk_size=old.chunk_size, block_size=old.block_size)
    elif old is not None:
        kwargs["patch_size"] = None if old.strategy == "blosc2" else old.patch_size
    dtype = image.dtype
    assert dtype is not None
    kwargs["cparams"] = make_cparams(
        codec or (old.codec if old else "lz4"),
        clevel if clevel is not None else (old.clevel if old else 5),
        list(old.filters) if old else ["shuffle"],
        dtype.itemsize,
    )
    MLArray(image.to_numpy(), meta=image.meta, **kwargs).save(dst)


def _external_converter() -> Callable[..., None]:
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
) -> None:
    """Convert one file; the formats are told by the file name endings."""
    src_fmt, dst_fmt = format_of(src), format_of(dst)
    if src_fmt is None or dst_fmt is None:
        bad = src if src_fmt is None else dst
        raise CLIError(f"{bad}: unknown format; use one of {', '.join(FORMATS)}", code="WRONG_EXTENSION")
    if not src.is_file():
        raise CLIError(f"{src}: no such file", code="FILE_NOT_FOUND")
    if src_fmt == ".mla" and dst_fmt == ".mla":
        relayout(src, dst, patch_size=patch_size, codec=codec, clevel=clevel)
        return
    convert_file = _external_converter()
    try:
        convert_file(src, dst, patch_size=patch_size, codec=codec, clevel=clevel)
    except ModuleNotFoundError as exc:
        raise CLIError(f"{INSTALL_HINT} (missing module {exc.name!r})", code="MISSING_DEPENDENCY") from None


# --------------------------------------------------------------------------- batches


@dataclass
class Job:
    """One conversion of a batch and its outcome."""

    src: Path
    dst: Path
    ok: bool | None = None
    code: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst), "ok": self.ok, "code": self.code, "error": self.error}


def find_inputs(root: Path) -> list[Path]:
    """Every convertible file under ``root`` (recursively), sorted; skips unfinished saves."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if format_of(name) is not None and not name.startswith(".mla-tmp-"):
                found.append(Path(dirpath) / name)
    return found


def plan(inputs: Sequence[Path], out_dir: Path, to: str) -> list[Job]:
    """Pair each input (files, or directories walked recursively) with its output in ``out_dir``.

    A directory's files keep their relative sub-directories. Outputs that would
    collide (``a.nii`` and ``a.nii.gz`` -> ``a.mla``) are failed up front.
    """
    ext = to if to.startswith(".") else f".{to}"
    if ext not in FORMATS:
        raise CLIError(f"--to {to!r}: unknown format; use one of {', '.join(f[1:] for f in FORMATS)}")
    jobs: list[Job] = []
    for item in inputs:
        if item.is_dir():
            jobs += [Job(f, out_dir / f.relative_to(item).parent / f"{stem_of(f)}{ext}") for f in find_inputs(item)]
        else:
            jobs.append(Job(item, out_dir / f"{stem_of(item)}{ext}"))
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.dst.resolve()
        if key in seen:
            job.ok, job.code = False, "OUTPUT_COLLISION"
            job.error = f"{job.dst} would also be written from {seen[key]}; rename one of them"
        else:
            seen[key] = job.src
    return jobs


def run_job(job: Job, **options: Any) -> Job:
    """Run one job, recording success or the error (never raising for a bad file)."""
    if job.ok is False:
        return job
    try:
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        convert_one(job.src, job.dst, **options)
    except (MLArrayError, CLIError) as exc:
        job.ok, job.code, job.error = False, exc.code, exc.message
    except Exception as exc:  # a converter's unexpected failure is still one file's failure
        job.ok, job.code, job.error = False, type(exc).__name__, str(exc) or type(exc).__name__
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
