"""An orderly stop on SIGTERM, as on Ctrl-C (SIGINT).

Python turns SIGINT into :class:`KeyboardInterrupt`, which unwinds the stack: every
writer's ``except``/``finally`` removes its temporary file (``.mla-tmp-*``), and typer
exits with status 130. SIGTERM (``kill``, a batch scheduler's time limit, ``docker stop``)
would end the process on the spot instead and leave those files behind. While a command
runs, :func:`orderly_sigterm` makes SIGTERM raise :class:`Terminated` in the main thread,
so it unwinds the same way and the process exits with status 143 (128 + 15, what a shell
reports for a process ended by SIGTERM). SIGHUP (the terminal closed, an ssh session
dropped during a long ``migrate --in-place``) stops the same way, with status 129.

Only the entry points install the handler (not :data:`mlarray.cli.app` itself), so a
program that runs the typer app in-process keeps its own signal handling.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

TERMINATED_EXIT = 128 + signal.SIGTERM
"""Exit status after SIGTERM: 143."""


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM: unwinds like an interrupt, then exits with :data:`TERMINATED_EXIT`.

    A :class:`SystemExit` (not an ``Exception``), so the commands' error handling does not
    report it as a failed file; cleanup code that catches ``BaseException`` (or uses ``finally``) runs.
    """


HANGUP_EXIT = 128 + 1
"""Exit status after SIGHUP (the terminal closed, an ssh session dropped): 129."""

STOPPING = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
"""The signals that stop a command in order: SIGTERM, and SIGHUP where the system has it."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # one orderly stop: a second signal must not interrupt the cleanup the first one started
    for other in STOPPING:
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(128 + signum)


@contextlib.contextmanager
def orderly_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM (and SIGHUP) raise :class:`Terminated` (exit status 143, 129) instead of
    killing the process.

    Outside the main thread (where Python cannot install signal handlers) nothing changes.
    The previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in STOPPING}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
