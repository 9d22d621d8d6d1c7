"""The command-line entry points, importing nothing heavy before they can catch an interrupt.

``mlarray``, ``python -m mlarray``, ``mlarray_header`` and ``mlarray_convert`` start here.
Loading the command line (NumPy, Blosc2, pydantic, typer: up to a second or two on a cold
cache) happens inside :func:`_run`, so a Ctrl-C in that time ends the process quietly with
status 130, as during a command, instead of Python's traceback. Nothing has been read or
written at that point. SIGTERM and SIGHUP keep their default action until a command runs
(the process ends at once; there is nothing to clean up yet).
"""

from __future__ import annotations

import sys

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def _run(entry: str) -> None:
    try:
        from mlarray import cli
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)
    getattr(cli, entry)()


def main() -> None:
    """``mlarray`` and ``python -m mlarray``: :func:`mlarray.cli.main`."""
    _run("main")


def legacy_header() -> None:
    """``mlarray_header FILE`` (mlarray 0.0.x): :func:`mlarray.cli.legacy_header`."""
    _run("legacy_header")


def legacy_convert() -> None:
    """``mlarray_convert IN OUT`` (mlarray 0.0.x): :func:`mlarray.cli.legacy_convert`."""
    _run("legacy_convert")
