"""The ``mlarray`` command line: thin typer commands over the public library.

Each command calls library functions that are public in Python
(:func:`mlarray.validate.validate_file`, :func:`mlarray.storage.read_header`,
:func:`mlarray.schema.render`, :func:`mlarray.legacy.migrate_file`,
``mlarray.convert.convert_file``) and only formats what they return
(:mod:`mlarray.cli.output`). Conventions:

* exit status 0 on success, 1 when a file is invalid or an operation failed,
  2 on usage errors (typer's convention);
* errors are one line on stderr (plus one line per header problem), never a
  traceback, unless ``--verbose`` is given;
* ``-h`` and ``--help`` on every command.

typer and rich are imported only by the ``mlarray.cli`` package.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from mlarray._version import __version__
from mlarray.cli.convert_jobs import Job, convert_one, format_of, plan, run_job
from mlarray.cli.migrate import migrate
from mlarray.cli.options import (
    APP_OPTIONS,
    AsJson,
    ClevelOpt,
    CodecOpt,
    JobsOpt,
    PatchSizeOpt,
    SchedulerOpt,
    StorageOpt,
    Verbose,
    errors,
    format_option,
    parse_storage_options,
    run_files,
)
from mlarray.cli.output import (
    describe,
    dumps,
    echo_line,
    error_lines,
    get_field,
    job_line,
    print_info,
    report_lines,
    summary_line,
)
from mlarray.cli.signals import orderly_sigterm
from mlarray.cli.stats import stats_command
from mlarray.errors import HeaderEncodingError, Problem
from mlarray.jobs import WORKER_LOST, each_once, find_mla, remove_orphans
from mlarray.models import Meta
from mlarray.remote import is_remote
from mlarray.storage import HeaderRead, decode_header, read_header
from mlarray.validate import Report, validate_file
from mlarray.versions import SCHEMA_VERSION

app = typer.Typer(
    name="mlarray",
    help="Validate, inspect, convert and migrate .mla files (N-d arrays with a JSON header in one Blosc2 file).",
    no_args_is_help=True,
    **APP_OPTIONS,
)


def _version(value: bool) -> None:
    if value:
        from mlarray.storage import blockcopy, chunkcompress, fastread

        typer.echo(f"mlarray {__version__} (header schema {SCHEMA_VERSION})")
        reads = fastread.STATUS if fastread.available() else f"python-blosc2 ({fastread.STATUS})"
        typer.echo(f"reads: {reads}; {blockcopy.STATUS}")
        typer.echo(f"writes: {chunkcompress.STATUS}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Verbose = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Validate, inspect, convert and migrate .mla files."""
    ctx.obj = {"verbose": verbose}


# --------------------------------------------------------------------------- validate


def collect_mla(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Files to validate: given files as they are, directories walked for ``*.mla``.

    Unfinished saves (``.mla-tmp-*``, a killed writer's) are not files of the dataset: they
    are skipped, and left alone (validating writes nothing). Returns the files and the
    directories in which no ``.mla`` file was found.
    """
    files: list[Path] = []
    empty: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = find_mla(path)
            files += found
            if not found:
                empty.append(path)
        else:
            files.append(path)
    return each_once(files), empty


@app.command()
def validate(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH", help="Files or URLs to check; directories are searched for *.mla."),
    ],
    deep: Annotated[
        bool,
        typer.Option(
            "--deep/--quick",
            help="--deep (the default): also check the digest and decompress every chunk, so 'valid' means the "
            "file loads completely. --quick: only the frame structure and the header.",
        ),
    ] = True,
    as_json: AsJson = False,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    storage_option: StorageOpt = None,
    verbose: Verbose = False,
) -> None:
    """Check files against the specification; list every problem with its location and code.

    By default every chunk is decompressed and the digest checked (with a progress bar for
    big files on a terminal); --quick reads only the frame and the header.
    Exit status: 0 when every file is valid, 1 when any is invalid, 2 on usage errors.
    """
    with errors(ctx, verbose):
        urls = [p for p in paths if is_remote(p)]
        storage_options = _url_options(storage_option, urls)
        files, empty = collect_mla([Path(p) for p in paths if not is_remote(p)])
        for directory in empty:
            echo_line(f"warning: no .mla files under {directory}", err=True)
        if not files and not urls:
            raise typer.BadParameter("no .mla files to validate", param_hint="PATH")
        serial = jobs == 1 and scheduler is None  # a bar per big file here, or one bar over all files
        check = partial(_validate_one, deep=deep, show_progress=serial and not as_json)
        reports: list[Report] = run_files(
            check,
            files,
            lost=_lost_report,
            jobs=jobs,
            scheduler=scheduler,
            what="validating",
            label=_name,
            bar=not serial,
            emit=None if as_json else _echo_report,
        )
        urls_checked = [_validate_url(url, deep, storage_options) for url in urls]
        reports += urls_checked
        if as_json:
            typer.echo(dumps([r.to_json() for r in reports]))
        else:
            for report in urls_checked:
                _echo_report(report)
            typer.echo(summary_line(reports))
        if not all(r.valid for r in reports):
            raise typer.Exit(1)


def _echo_report(report: Report) -> None:
    for line in report_lines(report):
        echo_line(line)


PROGRESS_MIN_BYTES = 64 << 20
"""Files at least this big get a progress bar during deep validation (on a terminal)."""


def _name(path: Path) -> str:
    return path.name


def _lost_report(path: Path, message: str) -> Report:
    return Report(str(path), [Problem("file", WORKER_LOST, message)])


def _validate_one(path: Path, deep: bool, *, show_progress: bool) -> Report:
    """:func:`validate_file`, with a transient progress bar on stderr for a big file on a terminal."""
    console = Console(stderr=True)
    try:
        big = path.is_file() and path.stat().st_size >= PROGRESS_MIN_BYTES
    except OSError:
        big = False
    if not (deep and show_progress and big and console.is_terminal):
        return validate_file(path, deep=deep)

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"checking {path.name}", total=None)
        return validate_file(
            path, deep=True, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )


# --------------------------------------------------------------------------- header, info, schema


def _validate_url(url: str, deep: bool, storage_options: dict[str, Any] | None = None) -> Report:
    from mlarray.remote.open import validate_remote

    return validate_remote(url, deep=deep, storage_options=storage_options)


def _url_options(values: list[str] | None, urls: list[str]) -> dict[str, Any] | None:
    """``--storage-option`` values parsed; a usage error when they are given but no path is a URL."""
    options = parse_storage_options(values)
    if options is not None and not urls:
        raise typer.BadParameter("storage options apply to URLs only", param_hint="--storage-option")
    return options


def _read_header(path: Path | str, storage_options: dict[str, Any] | None = None) -> HeaderRead:
    """:func:`read_header` of a local path, or of a URL (``s3://``, ``https://``, ...; fsspec credentials)."""
    if is_remote(path):
        from mlarray.remote.open import read_header_url

        return read_header_url(str(path), storage_options)
    return read_header(path)


def header_json(path: Path | str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored header of ``path`` as a JSON object, after full validation; the array is not read."""
    head = _read_header(path, storage_options)
    return decode_header(head.frame.header_bytes, path=str(path))


def _legacy_meta(path: str) -> Meta | None:
    """The header a local file of the earlier implementation maps to (as ``MLArray(path).meta``), else ``None``."""
    import warnings

    from mlarray.api import MLArray
    from mlarray.errors import LegacyFormatWarning
    from mlarray.legacy.reader import is_legacy_file

    if is_remote(path) or not is_legacy_file(path):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyFormatWarning)  # the command says it once, on stderr
        with MLArray.open(path, mmap_mode="r") as image:  # the header and the frame's layout; no data read
            return image.meta


def _legacy_header_json(path: str) -> dict[str, Any] | None:
    """:func:`_legacy_meta` as JSON."""
    meta = _legacy_meta(path)
    return None if meta is None else meta.model_dump(mode="json")


def header(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="An .mla file or URL.")],
    field: Annotated[
        str | None,
        typer.Option(
            "--field", "-f", help="Print only this value: a dotted path like spatial.spacing or spatial.spacing.0."
        ),
    ] = None,
    storage_option: StorageOpt = None,
    verbose: Verbose = False,
) -> None:
    """Print the header of an .mla file as JSON (the array data is not read).

    A file of the earlier implementation (0.0.x) prints the header it is read with here
    (its pickled header decoded without running code), with a note on stderr.
    """
    with errors(ctx, verbose):
        try:
            data = header_json(file, _url_options(storage_option, [file] if is_remote(file) else []))
        except HeaderEncodingError:
            legacy = _legacy_header_json(file)
            if legacy is None:
                raise
            echo_line(f"note: {file} {LEGACY_NOTE}", err=True)
            data = legacy
        typer.echo(dumps(data if field is None else get_field(data, field)))


app.command("header")(header)

LEGACY_NOTE = (
    "is a file of the earlier mlarray implementation (legacy header): printed as this package reads it; "
    "`mlarray migrate` converts it"
)


@app.command()
def info(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="An .mla file or URL.")],
    as_json: AsJson = False,
    storage_option: StorageOpt = None,
    verbose: Verbose = False,
) -> None:
    """Show shape, dtype, size on disk, compression ratio, layout and geometry (from the header only)."""
    with errors(ctx, verbose):
        options = _url_options(storage_option, [file] if is_remote(file) else [])
        try:
            head = _read_header(file, options)
            details = describe(str(file), head.meta, head.frame.file_size)
        except HeaderEncodingError:
            legacy = _legacy_meta(file)
            if legacy is None:
                raise
            echo_line(f"note: {file} {LEGACY_NOTE}", err=True)
            details = describe(str(file), legacy, os.path.getsize(file))
        if as_json:
            typer.echo(dumps(details))
        else:
            print_info(details, Console(highlight=False))


def schema_versions() -> list[str]:
    """Schema versions this package can print: the current one and any committed schema file."""
    from mlarray.schema import SCHEMA_DIR

    found = {SCHEMA_VERSION}
    if SCHEMA_DIR.is_dir():
        prefix, suffix = "mlarray-header-", ".schema.json"
        found |= {p.name[len(prefix) : -len(suffix)] for p in SCHEMA_DIR.glob(f"{prefix}*{suffix}")}
    return sorted(found)


@app.command()
def schema(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Option("--version", help=f"Schema version to print (default {SCHEMA_VERSION}).")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Print the JSON Schema (draft 2020-12) of the header."""
    from mlarray.schema import committed_path, render

    with errors(ctx, verbose):
        if version is None or version == SCHEMA_VERSION:
            typer.echo(render(), nl=False)
            return
        if version not in schema_versions():
            raise typer.BadParameter(
                f"unknown schema version {version!r}; available: {', '.join(schema_versions())}",
                param_hint="--version",
            )
        typer.echo(committed_path(version).read_text(encoding="utf-8"), nl=False)


# --------------------------------------------------------------------------- convert


def _lost_job(job: Job, message: str) -> Job:
    return Job(job.src, job.dst, ok=False, code=WORKER_LOST, error=message)


def _echo_job(job: Job) -> None:
    if job.skipped and job.ok is None:
        echo_line(f"skipped {job.src}: {job.error}")
    else:
        echo_line(job_line(str(job.src), str(job.dst or ""), job.ok, job.code, job.error))


def _run_jobs(
    jobs: list[Job], options: dict[str, Any], as_json: bool, n_jobs: int = 1, scheduler: str | None = None
) -> None:
    """Run a batch with a progress bar, printing each file's line as it is done; exit 1 if any failed."""
    jobs = run_files(
        partial(run_job, **options),
        jobs,
        lost=_lost_job,
        jobs=n_jobs,
        scheduler=scheduler,
        what="converting",
        label=lambda job: job.src.name,
        cleanup=lambda job: remove_orphans(job.dst, mine=True),
        emit=None if as_json else _echo_job,
    )
    if as_json:
        typer.echo(dumps([job.to_json() for job in jobs]))
    else:
        tried = [job for job in jobs if not job.skipped]
        failed = sum(not job.ok for job in tried)
        skipped = len(jobs) - len(tried)
        line = f"converted {len(tried) - failed} of {len(tried)} file{'s' if len(tried) != 1 else ''}, {failed} failed"
        if skipped:
            strict = any(job.skipped and job.ok is False for job in jobs)
            line += f", {skipped} skipped (unsupported{', failed with --strict' if strict else ''})"
        echo_line(line)
    if not all(job.ok or (job.skipped and job.ok is None) for job in jobs):
        raise typer.Exit(1)


def convert(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="IN OUT, DIR OUTDIR, or several inputs with --out-dir."),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", "-o", help="Convert every input (files or directories) into this directory."),
    ] = None,
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Output format in batch mode: mla, nii, nii.gz, nrrd or nhdr.", callback=format_option
        ),
    ] = "mla",
    patch_size: PatchSizeOpt = None,
    codec: CodecOpt = None,
    clevel: ClevelOpt = None,
    seg: Annotated[
        bool,
        typer.Option(
            "--seg",
            help="Label maps: fill is_seg, stats, per-class boxes and class locations; 1-byte ones compressed as such.",
        ),
    ] = False,
    keep_raw: Annotated[
        bool,
        typer.Option(
            "--keep-raw",
            help="Store a scaled source's raw values (with the scaling in the header) instead of physical values.",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="In batch mode, count files of unsupported formats as failures.")
    ] = False,
    series: Annotated[
        str | None,
        typer.Option("--series", help="SeriesInstanceUID of the DICOM series to convert when IN holds several."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-file report as JSON.")] = False,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    verbose: Verbose = False,
) -> None:
    """Convert NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and DICOM series to .mla and
    back (DICOM: read only), or relayout .mla files.

    Formats are told by the file endings. IN a directory and OUT a file name (e.g. ct.mla): IN is a DICOM
    series (--series UID when it holds several). Otherwise a directory input converts every file in it,
    recursively.
    In batch mode one failing file does not stop the others; the exit status is 1 if any failed.
    """
    options: dict[str, Any] = {
        "patch_size": patch_size,
        "codec": codec.value if codec else None,
        "clevel": clevel,
        "keep_raw": keep_raw,
    }
    if series is not None:
        options["series"] = series
    if seg:
        options["seg"] = True
    with errors(ctx, verbose):
        if out_dir is None:
            if len(paths) != 2:
                raise typer.BadParameter("give IN OUT, DIR OUTDIR, or several inputs with --out-dir", param_hint="PATH")
            src, dst = paths
            dicom_series = src.is_dir() and not dst.is_dir() and format_of(dst) is not None
            if dicom_series or (not src.is_dir() and not dst.is_dir()):
                if as_json:  # the report, even for a failure
                    _run_jobs([Job(src, dst)], options, as_json=True)
                    return
                convert_one(src, dst, **options)
                echo_line(f"ok      {src} -> {dst}")
                return
            paths, out_dir = [src], dst
        batch = plan(paths, out_dir, to, strict=strict)
        if not batch:
            raise typer.BadParameter("no convertible files found in the inputs", param_hint="PATH")
        if seg and to.lstrip(".") != "mla":  # refused before any folder is made
            raise typer.BadParameter(f"--seg needs .mla outputs, not --to {to.lstrip('.')}", param_hint="--seg")
        out_dir.mkdir(parents=True, exist_ok=True)
        _run_jobs(batch, options, as_json, jobs, scheduler)


app.command("convert")(convert)
app.command("stats")(stats_command)
app.command("migrate")(migrate)


# --------------------------------------------------------------------------- entry points

header_app = typer.Typer(help="Print the header of an .mla file as JSON.", **APP_OPTIONS)
header_app.command()(header)
convert_app = typer.Typer(help="Convert between .mla, NIfTI and NRRD files.", **APP_OPTIONS)
convert_app.command()(convert)


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
    """mlarray's own warnings as one ``warning: ...`` line on stderr, not Python's source-line form."""
    shown = warnings.showwarning

    def show(
        message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if category.__module__.startswith("mlarray"):
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


MIN_COLUMNS = 20
"""Narrower ``COLUMNS`` values are ignored (``0``, which some CI runners and ``docker exec`` export
for a 0x0 pseudo-terminal, made rich print nothing at all): the terminal's width or 80 then."""


@contextlib.contextmanager
def _terminal_and_output() -> Iterator[None]:
    """What the process meets outside any command: the terminal's width, output failures, interrupts.

    A ``COLUMNS`` below :data:`MIN_COLUMNS` is dropped; writing the help or version text
    failing (stdout on a full disk) is one error line and exit status 1; an interrupt
    leaves the terminal's cursor visible (a progress bar it cut short had hidden it).
    """
    columns = os.environ.get("COLUMNS")
    if columns is not None and not (columns.strip().isdigit() and int(columns) >= MIN_COLUMNS):
        del os.environ["COLUMNS"]
    try:
        yield
    except OSError as exc:
        for line in error_lines(exc):
            with contextlib.suppress(OSError, AttributeError):
                print(line, file=sys.stderr)
        sys.exit(1)
    except BaseException:
        _show_cursor()  # an interrupt as a progress bar started skips the bar's own cleanup
        raise


def _show_cursor() -> None:
    """Make the terminal's cursor visible again (a progress bar hides it while it runs)."""
    stream = sys.__stderr__  # the real one: a progress bar still running has put its proxy in sys.stderr
    with contextlib.suppress(Exception):
        if stream is not None and stream.isatty():
            stream.write("\x1b[?25h")
            stream.flush()


def main() -> None:
    """Entry point of ``mlarray`` and ``python -m mlarray`` (SIGTERM stops it as Ctrl-C does: exit status 143)."""
    with orderly_sigterm(), _plain_warnings(), _terminal_and_output():
        app(prog_name="mlarray")


def legacy_header() -> None:
    """Entry point of ``mlarray_header FILE`` (same as ``mlarray header FILE``)."""
    with orderly_sigterm(), _plain_warnings(), _terminal_and_output():
        header_app(prog_name="mlarray_header")


def legacy_convert() -> None:
    """Entry point of ``mlarray_convert IN OUT`` (same as ``mlarray convert IN OUT``)."""
    with orderly_sigterm(), _plain_warnings(), _terminal_and_output():
        convert_app(prog_name="mlarray_convert")
