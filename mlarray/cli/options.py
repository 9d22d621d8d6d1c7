"""Options, error handling and progress bars shared by the ``mlarray`` commands."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlarray.cli.convert_jobs import FORMATS, Codec, parse_patch_size
from mlarray.cli.output import echo_line, error_lines
from mlarray.jobs import run_each

T = TypeVar("T")
R = TypeVar("R")

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
APP_OPTIONS: dict[str, Any] = {
    "context_settings": CONTEXT,
    "add_completion": False,
    "pretty_exceptions_show_locals": False,
}


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show the full traceback when something fails.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of text.")]


def _patch_size_option(value: str | None) -> Any:
    try:
        return parse_patch_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def format_option(value: str) -> str:
    ext = value if value.startswith(".") else f".{value}"
    if ext not in FORMATS:
        raise typer.BadParameter(f"{value!r} is not a format: use one of {', '.join(f[1:] for f in FORMATS)}")
    return ext


PatchSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--patch-size",
        help="Training patch size the chunking is derived from: an int (every spatial axis), "
        "a comma list like 128,128,64, or 'default' (192).",
        callback=_patch_size_option,
    ),
]
CodecOpt = Annotated[Codec | None, typer.Option("--codec", help="Blosc2 codec.", case_sensitive=False)]
ClevelOpt = Annotated[int | None, typer.Option("--clevel", min=0, max=9, help="Compression level 0-9.")]


PIPE_CLOSED_EXIT = 141
"""Exit status when the reader of the output went away (128 + SIGPIPE, what a shell reports for ``cat``)."""


def _discard_output() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no stdout, or not a real file (a test runner's)
        pass
    finally:
        os.close(devnull)


@contextlib.contextmanager
def errors(ctx: typer.Context, verbose: bool) -> Iterator[None]:
    """Turn any failure into one clear line on stderr and exit status 1 (or re-raise with --verbose).

    A reader that stopped reading the output (``mlarray validate DIR | head -1``) is no failure
    of the command: it stops silently with :data:`PIPE_CLOSED_EXIT`, as a program ended by SIGPIPE.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except BrokenPipeError:
        _discard_output()
        raise typer.Exit(PIPE_CLOSED_EXIT) from None
    except Exception as exc:
        root = ctx.find_root().obj
        if verbose or (isinstance(root, dict) and root.get("verbose")):
            raise
        for line in error_lines(exc):
            echo_line(line, err=True)
        raise typer.Exit(1) from None


def progress_bar(console: Console, show: bool = True) -> Progress:
    """A progress bar on ``console`` that is shown only on a terminal (and ``show``) and removed when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (show and console.is_terminal),
    )


JobsOpt = Annotated[
    int,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        help="Files processed at once, in local worker processes (1, the default: one after another, here).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="A dask.distributed scheduler (tcp://host:8786): the files are processed on its workers, "
        "which must see the same paths. Needs mlarray[dask]; overrides --jobs.",
    ),
]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="An fsspec storage option for URLs, repeatable: anon=true, endpoint_url=http://host:9000, "
        "client_kwargs.region_name=eu-west-1 (dotted keys nest; values are JSON when they parse, else text).",
    ),
]


def parse_storage_options(values: Sequence[str] | None) -> dict[str, Any] | None:
    """``--storage-option`` values as the ``storage_options`` dict of fsspec (``None`` when none given).

    ``KEY=VALUE``: a dotted key makes nested dicts (``client_kwargs.region_name=x`` gives
    ``{"client_kwargs": {"region_name": "x"}}``); a value that parses as JSON (``true``,
    ``3``, ``null``, ``{"a": 1}``, ``"007"``) is that value, anything else is the text itself.
    """
    if not values:
        return None
    options: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        names = key.strip().split(".")
        if not sep or not all(names):
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--storage-option")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        where = options
        for name in names[:-1]:
            inner = where.setdefault(name, {})
            if not isinstance(inner, dict):
                raise typer.BadParameter(
                    f"{key!r} nests inside {name!r}, which has a value", param_hint="--storage-option"
                )
            where = inner
        if isinstance(where.get(names[-1]), dict):
            raise typer.BadParameter(f"{key!r} has nested options already", param_hint="--storage-option")
        where[names[-1]] = value
    return options


def run_files(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    lost: Callable[[T, str], R],
    jobs: int,
    scheduler: str | None,
    what: str,
    label: Callable[[T], str],
    bar: bool = True,
    cleanup: Callable[[T], None] | None = None,
    emit: Callable[[R], None] | None = None,
) -> list[R]:
    """:func:`mlarray.jobs.run_each` with a progress bar on stderr (on a terminal; ``bar=False``: none).

    ``what`` names the job in the bar and in Dask's task names; ``label(item)`` the file being started.
    ``emit(result)`` is called for each file as soon as it and every file before it are done
    (in the order of ``items``), so a report streams while the batch runs. A batch stopped by
    an interrupt says on stderr how many files were done before it re-raises.
    """
    ready: dict[int, R] = {}
    shown = 0
    finished = 0

    def done(index: int, result: R) -> None:
        nonlocal shown, finished
        finished += 1
        progress.advance(task)
        if emit is None:
            return
        ready[index] = result
        while shown in ready:
            emit(ready.pop(shown))
            shown += 1

    with progress_bar(Console(stderr=True), show=bar) as progress:
        task = progress.add_task(what, total=len(items))
        try:
            return run_each(
                func,
                items,
                lost=lost,
                jobs=jobs,
                scheduler=scheduler,
                on_start=lambda _, item: progress.update(task, description=label(item)),
                on_done=lambda index, _, result: done(index, result),
                cleanup=cleanup,
                name=f"mlarray-{what}",
            )
        except (KeyboardInterrupt, SystemExit) as stop:
            if not isinstance(stop, SystemExit) or stop.code not in (0, None):
                with contextlib.suppress(OSError, ValueError):
                    print(f"stopped after {finished} of {len(items)} files", file=sys.stderr, flush=True)
            raise
