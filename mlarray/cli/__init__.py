"""The ``mlarray`` command line (typer): one module per concern.

:mod:`~mlarray.cli.commands` holds the application and the small commands,
:mod:`~mlarray.cli.convert_jobs`, :mod:`~mlarray.cli.migrate` and
:mod:`~mlarray.cli.stats` the larger ones, :mod:`~mlarray.cli.options` the shared
options and :mod:`~mlarray.cli.output` the text and JSON formatting.
"""

from mlarray.cli.commands import app, convert_app, header_app, legacy_convert, legacy_header, main

__all__ = ["app", "convert_app", "header_app", "legacy_convert", "legacy_header", "main"]
