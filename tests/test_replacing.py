"""Files replaced while others use them: locks held through the rename, edits never lost quietly.

Each scenario runs real processes (fork) against real files: a writer holding a file,
another process replacing it, the temporary files of a save in progress, the permissions
of a replaced file.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray import ConcurrentWriterWarning, MLArray
from mlarray.errors import LockError, WriteFailedError
from mlarray.jobs import remove_orphans
from mlarray.legacy.migrate import keep_current
from mlarray.storage.io import TMP_PREFIX, temporary_name, writer_alive
from mlarray.storage.locking import replacing

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="these scenarios fork processes (POSIX)")

CONTEXT = multiprocessing.get_context("fork") if hasattr(os, "fork") else None


def _volume() -> np.ndarray:
    return np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10)


def _open_writer(path: str, ready: Any, done: Any, result: Any) -> None:
    try:
        with MLArray.open(path, mmap_mode="r+") as image:
            ready.set()
            done.wait(60)
            image[0, 0, 0] = 1
        result.put("closed")
    except LockError:
        ready.set()
        result.put("LOCKED")


def _held_by_another_process(path: Path) -> tuple[Any, Any, Any, Any]:
    assert CONTEXT is not None
    ready, done, result = CONTEXT.Event(), CONTEXT.Event(), CONTEXT.Queue()
    child = CONTEXT.Process(target=_open_writer, args=(str(path), ready, done, result))
    child.start()
    assert ready.wait(60)
    return child, done, result, ready


def test_no_writer_opens_a_file_while_it_is_being_replaced(tmp_path: Path) -> None:
    """The lock is held from the check to the rename: a writer opening in between is refused."""
    path = tmp_path / "a.mla"
    MLArray(_volume()).save(path)
    with replacing(str(path)):
        child, done, result, _ = _held_by_another_process(path)
        done.set()
        child.join(60)
        assert result.get(timeout=10) == "LOCKED"
    child, done, result, _ = _held_by_another_process(path)  # after the replacement: free again
    done.set()
    child.join(60)
    assert result.get(timeout=10) == "closed"


def test_saves_and_copies_refuse_a_file_another_process_writes(tmp_path: Path) -> None:
    path, other = tmp_path / "a.mla", tmp_path / "b.mla"
    MLArray(_volume()).save(path)
    MLArray(_volume() + 1).save(other)
    child, done, result, _ = _held_by_another_process(path)
    try:
        with pytest.raises(LockError):
            MLArray(_volume() * 2).save(path)
        migrated = keep_current(other, path)  # `mlarray migrate current.mla held.mla` copied over it
        assert migrated.status == "failed" and isinstance(migrated.error, LockError)
    finally:
        done.set()
        child.join(60)
    assert result.get(timeout=10) == "closed"
    assert MLArray.load(path).to_numpy()[0, 0, 0] == 1  # the writer's edit is in the file


def test_a_writer_whose_file_another_program_replaced_says_so_at_close(tmp_path: Path) -> None:
    path, other = tmp_path / "a.mla", tmp_path / "b.mla"
    MLArray(_volume()).save(path)
    MLArray(_volume() + 1).save(other)
    image = MLArray.open(path, mmap_mode="r+")
    image[0, 0, 0] = 99
    os.replace(other, path)  # `mv b.mla a.mla` while the writer is open
    with pytest.raises(WriteFailedError, match="replaced by another program"):
        image.close()
    assert MLArray.load(path).to_numpy()[0, 0, 0] == 1  # the replacement stays, untouched
    quiet = MLArray.open(path, mmap_mode="r+")  # no edits: nothing to lose, nothing to say
    MLArray(_volume()).save(tmp_path / "c.mla")
    os.replace(tmp_path / "c.mla", path)
    quiet.close()


def test_temporary_files_of_a_running_writer_are_not_orphans(tmp_path: Path) -> None:
    target = tmp_path / "a.mla"
    MLArray(_volume()).save(target)
    live = tmp_path / temporary_name(target.name)  # this process: alive
    assert CONTEXT is not None
    finished = CONTEXT.Process(target=os._exit, args=(0,))
    finished.start()
    finished.join(60)
    dead = tmp_path / f"{TMP_PREFIX}{finished.pid}.00ab12cd-{target.name}"
    old_style = tmp_path / f"{TMP_PREFIX}00ab12cd-{target.name}"
    for path in (live, dead, old_style):
        path.write_bytes(b"partial")
    assert writer_alive(live.name) and not writer_alive(dead.name) and not writer_alive(old_style.name)
    remove_orphans(target)
    assert live.exists() and not dead.exists() and not old_style.exists()


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "private.mla"
    MLArray(_volume()).save(path)
    os.chmod(path, 0o600)
    MLArray(_volume() + 1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with MLArray.open(path, mmap_mode="r+") as image:  # close rewrites the header: a new file
        image[0, 0, 0] = 5
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    with MLArray.open(path, mmap_mode="r+") as image:
        image.meta.source = {"note": "edited"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert MLArray.load(path).to_numpy()[0, 0, 0] == 5


OPEN_IN_LOCKED_FOLDER = """
import os, sys
from mlarray import ConcurrentWriterWarning, MLArray
from mlarray.errors import ReadOnlyError
if os.geteuid() == 0:  # root writes anywhere: become an ordinary user, as the file's owner is
    os.setgid(65534)
    os.setuid(65534)
try:
    MLArray.open(sys.argv[1], mmap_mode="r+")
    print("opened")
except ReadOnlyError as exc:
    print(exc)
"""


def test_a_writer_is_refused_where_its_close_could_not_write() -> None:
    """r+ in a folder that is not writable: its close (a header rewrite beside the file) would fail."""
    base = Path(tempfile.mkdtemp(prefix="mla-ro-"))  # not under pytest's folder, which only root may enter
    folder = base / "locked"
    try:
        os.chmod(base, 0o755)
        folder.mkdir()
        path = folder / "a.mla"
        MLArray(_volume()).save(path)
        if os.geteuid() == 0:
            os.chown(folder, 65534, 65534)
            os.chown(path, 65534, 65534)
        os.chmod(folder, 0o555)
        run = subprocess.run(
            [sys.executable, "-c", OPEN_IN_LOCKED_FOLDER, str(path)], capture_output=True, text=True, timeout=120
        )
        assert "folder holding the file is not writable" in run.stdout, run.stderr
    finally:
        if folder.exists():
            os.chmod(folder, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_errors_inside_a_replacement_pass_through_unchanged(tmp_path: Path) -> None:
    """An OSError (WriteFailedError is one) raised while this process's own writer was being replaced was
    swallowed by the lock's context manager, which then failed with "generator didn't stop"."""
    path = tmp_path / "a.mla"
    MLArray(_volume()).save(path)
    held = MLArray.open(path, mmap_mode="r+")
    try:
        for error in (WriteFailedError("disk full", path=str(path)), OSError("I/O error"), KeyError("x")):
            with pytest.raises(type(error)), replacing(str(path), except_this_process=True):
                raise error
            with pytest.raises(type(error)), replacing(str(tmp_path / "missing.mla")):
                raise error
    finally:
        held.close()


def test_a_reader_is_warned_when_another_process_writes_the_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "a.mla"
    MLArray(_volume()).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no writer: no warning
        MLArray.open(path).close()
        with MLArray.open(path, mmap_mode="r+"):  # this process's own writer: it knows
            MLArray.open(path).close()
    child, done, result, _ = _held_by_another_process(path)
    try:
        with pytest.warns(ConcurrentWriterWarning, match="another process has this file open for writing"):
            image = MLArray.open(path)
        assert np.array_equal(image[...], _volume())  # reading still works
        image.close()
    finally:
        done.set()
        child.join(60)
    assert result.get(timeout=10) == "closed"


@pytest.mark.parametrize("stem", ["x" * 246, "é" * 120, "scan_" + "ü" * 100 + "_" + "1.2.840" * 4])
def test_names_up_to_the_file_system_limit_are_saved_and_rewritten(tmp_path: Path, stem: str) -> None:
    """The temporary file beside the target (``.mla-tmp-<pid>.<random>-<name>``) overflowed NAME_MAX for
    names over ~230 bytes: save failed as WRITE_FAILED ("Could not build uninit array"), stats in place too."""
    from mlarray.stats import update_stats

    path = tmp_path / f"{stem}.mla"
    assert len(path.name.encode()) <= 255
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[1:3, 2:5, 3:4] = 2
    MLArray(labels).save(path)
    MLArray(labels + 1).save(path)  # replaces the file through a temporary one
    assert update_stats(path).bbox is not None  # rewrites its header the same way
    np.testing.assert_array_equal(MLArray.load(path).to_numpy(), labels + 1)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    orphan = tmp_path / temporary_name(path.name).replace(f"{os.getpid()}.", "4194303.", 1)  # a killed writer's
    assert len(orphan.name.encode()) <= 255
    orphan.write_bytes(b"partial")
    other = tmp_path / f"{TMP_PREFIX}4194303.0badf00d-other.mla"
    other.write_bytes(b"partial")
    remove_orphans(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other.name])
