"""An interrupt (Ctrl-C, or the CLI's SIGTERM) arriving at any point of a save stays an interrupt.

Python runs a signal handler between bytecodes of the main thread, so ``KeyboardInterrupt`` (or
the CLI's :class:`~mlarray.cli.signals.Terminated`) can be raised inside any Python function a
save calls, including functions that C extensions call back (a pydantic serializer, a JSON
hook). Such an extension may wrap the exception in one of its own (pydantic reported it as a
``PydanticSerializationError``, which the save then turned into ``WRITE_FAILED``, and the CLI
into one failed file, after which it ignored further signals and finished the whole batch).

These tests raise the interrupt at the N-th Python function call of the operation, for every
N (or a dense sample), with a trace function: a deterministic stand-in for a signal arriving
at that moment. The operation either completes (the interrupt fell into a ``__del__`` or a
callback whose exceptions Python ignores) or ends with that very interrupt and leaves the
previous file byte for byte. Its temporary file is gone once the interrupted frames are:
an interrupt at the very entry of a ``with`` block's exit stops the save before its
cleanup runs, and the cleanup then runs when the suspended writer is collected (the command
line's batches remove such a file at once, see ``test_an_interrupted_batch_removes_its_own_temporary_file``).
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

from mlarray import Meta, MLArray
from mlarray.cli.signals import Terminated
from mlarray.jobs import remove_orphans, run_each
from mlarray.stats import update_stats
from mlarray.storage.io import TMP_PREFIX, temporary_name
from mlarray.validate import validate_file

RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
"""Generator frames: a trace 'call' is also each resumption, and the one that closes a dropped
generator runs at its finalization, where Python ignores exceptions."""

SOURCE = {"format": "nifti", "header": {"descrip": "scan", "dims": [3, 16, 16, 16]}}
META = Meta(source=SOURCE, extra={"k": [1]})  # free-form members: serialized with the header


def _calls(operation: Callable[[], Any]) -> int:
    """How many Python function calls (generator resumptions aside) ``operation`` makes in this thread."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        count += event == "call" and not frame.f_code.co_flags & RESUMABLE

    sys.settrace(tracer)
    try:
        operation()
    finally:
        sys.settrace(None)
    return count


def _interrupted_at(n: int, operation: Callable[[], Any], interrupt: Callable[[], BaseException]) -> str | None:
    """Run ``operation``, raising ``interrupt()`` at its ``n``-th Python call; what came out, if anything."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call" and not frame.f_code.co_flags & RESUMABLE:
            count += 1
            if count == n:
                raise interrupt()

    sys.settrace(tracer)
    try:
        operation()
    except BaseException as exc:  # the test inspects whatever came out
        return f"{type(exc).__name__}: {exc}"
    finally:
        sys.settrace(None)
    return None


def _check(
    path: Path, before: bytes, outcome: str | None, interrupt: Callable[[], BaseException], n: int, new: Any
) -> None:
    """The interrupt came out as itself (or not at all); the file is the previous one or the whole new one."""
    if outcome is not None:
        assert outcome.startswith(f"{type(interrupt()).__name__}:"), f"call {n}: {outcome}"
    if path.read_bytes() != before:  # the interrupt came after the rename, or not at all
        assert validate_file(path).valid, f"call {n}: the file is neither the previous one nor valid"
        new(MLArray(path))
        path.write_bytes(before)
    if list(path.parent.glob(f"{TMP_PREFIX}*")):
        gc.collect()  # the interrupted frames (and a suspended writer among them) are gone now
        assert not list(path.parent.glob(f"{TMP_PREFIX}*")), f"call {n}: a temporary file was left"


INTERRUPTS = [pytest.param(KeyboardInterrupt, 0, id="sigint"), pytest.param(lambda: Terminated(143), 1, id="sigterm")]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # interrupts inside __del__
@pytest.mark.parametrize(("interrupt", "offset"), INTERRUPTS)
def test_an_interrupt_anywhere_in_a_save_stays_an_interrupt(
    tmp_path: Path, interrupt: Callable[[], BaseException], offset: int
) -> None:
    path = tmp_path / "scan.mla"
    data = np.arange(16**3, dtype=np.int16).reshape(16, 16, 16)
    MLArray(data - 1, spacing=(1, 1, 1)).save(path)
    before = path.read_bytes()

    def save() -> None:
        MLArray(data, spacing=(0.5, 0.5, 2), meta=META).save(path)

    save()  # first-time work (imports, caches) happens once, here, not in the counted save
    total = _calls(save)
    path.write_bytes(before)
    assert total > 500  # the trace sees the save's own Python code

    def is_new(image: MLArray) -> None:
        np.testing.assert_array_equal(image.to_numpy(), data)
        assert image.meta.source == SOURCE and image.spacing == [0.5, 0.5, 2.0]

    completed = 0
    for n in range(1 + offset, total + 1, 2):  # the two interrupts together: every call
        outcome = _interrupted_at(n, save, interrupt)
        completed += outcome is None
        _check(path, before, outcome, interrupt, n, is_new)
    assert completed < total // 20  # nearly every call is one the interrupt stops the save at


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_anywhere_in_a_header_rewrite_stays_an_interrupt(tmp_path: Path) -> None:
    """``mlarray stats`` rewrites headers; its batch must stop at the interrupt, not report a failed file."""
    path = tmp_path / "scan.mla"
    MLArray(np.arange(8**3, dtype=np.int16).reshape(8, 8, 8), spacing=(1, 1, 1), meta=META).save(path)
    before = path.read_bytes()

    def rewrite() -> None:
        update_stats(path)

    total = _calls(rewrite)
    path.write_bytes(before)

    def is_new(image: MLArray) -> None:
        assert image.meta.stats is not None and image.meta.source == SOURCE

    for n in range(1, total + 1, max(1, total // 1000)):
        outcome = _interrupted_at(n, rewrite, lambda: Terminated(143))
        _check(path, before, outcome, lambda: Terminated(143), n, is_new)


def test_an_interrupted_batch_removes_its_own_temporary_file(tmp_path: Path) -> None:
    """A serial batch stopped by an interrupt runs its cleanup for the stopped item; another writer's file stays."""
    target = tmp_path / "scan.mla"
    target.write_bytes(b"previous")
    other = tmp_path / f"{TMP_PREFIX}{os.getppid()}.0badcafe-scan.mla"  # a save by a process that still runs
    other.write_bytes(b"half")

    def stopped_save(path: Path) -> None:
        (path.parent / temporary_name(path.name)).write_bytes(b"half")  # where the interrupt found the save
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_each(stopped_save, [target], lost=lambda item, message: None, cleanup=remove_orphans)
    assert len(list(tmp_path.glob(f"{TMP_PREFIX}*"))) == 2  # without mine=True, a live writer's (ours) stays
    with pytest.raises(KeyboardInterrupt):
        run_each(stopped_save, [target], lost=lambda item, message: None, cleanup=partial(remove_orphans, mine=True))
    assert list(tmp_path.glob(f"{TMP_PREFIX}*")) == [other]
    assert target.read_bytes() == b"previous"
