"""One handle shared by threads, and handles that outlive another program's changes.

Found by the concurrency audit: threads that start reading a freshly opened handle at once
raced in the creation of its file map (a second map orphaned the chunk addresses of the
first: false CORRUPT_FRAME, or a read through an unmapped map, SIGSEGV).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from engines import select_engine

from mlarray import FileChangedError, MLArray

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


RACE = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    from mlarray import MLArray, MLArrayError

    volume = np.arange(64 * 64 * 64, dtype=np.int32).reshape(64, 64, 64)
    path = sys.argv[1]
    MLArray(volume, chunk_size=(16, 16, 32), block_size=(8, 16, 16)).save(path)
    failures = []
    for trial in range(40):
        with MLArray.open(path) as handle:
            barrier = threading.Barrier(6)

            def work(i):
                barrier.wait()
                try:
                    key = (slice(8 * i, 8 * i + 20), slice(0, 64), slice(5, 60))
                    got, expected = (handle.to_numpy(), volume) if i % 2 else (handle[key], volume[key])
                    if not np.array_equal(got, expected):
                        failures.append(f"wrong values in trial {trial}")
                except MLArrayError as exc:
                    failures.append(f"{exc.code}: {exc.message}")

            workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(60)
    print(len(failures), failures[:2])
    """
)


def test_threads_that_start_reading_a_fresh_handle_at_once_read_the_values(tmp_path: Path) -> None:
    """Run in a child process: the race could end a process (SIGSEGV)."""
    done = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path / "v.mla")], capture_output=True, text=True, timeout=600, env=_env()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0 []"


WRITE_IN_PLACE = """
import sys
from mlarray import MLArray
with MLArray.open(sys.argv[1], "r+") as image:
    exec(sys.argv[2])
"""


@pytest.mark.parametrize("engine", ["compiled", "numpy", "blosc2", "off"])
@pytest.mark.parametrize("edit", ["image[:] = image[:] + 1000", "image[5] = -7"])
def test_a_reader_of_a_file_another_program_wrote_in_place_is_told_to_reopen(
    tmp_path: Path, edit: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A persistent worker's handle: the file was written ('r+') and closed since; FILE_CHANGED, not CORRUPT_FRAME.

    On every read path: without the compiled loop (no C compiler at install time) or with
    our reader off, whole loads and patches were CORRUPT_FRAME (and a shortened file could
    fault the process), since only the compiled loop's chunk lookup checked the file.
    """
    if engine == "off":
        monkeypatch.setenv("MLARRAY_NO_FASTREAD", "1")
    else:
        select_engine(engine, monkeypatch)
    path = tmp_path / "v.mla"
    volume = np.arange(40 * 48 * 56, dtype=np.int32).reshape(40, 48, 56)
    MLArray(volume, patch_size=(16, 16, 16)).save(path)
    with MLArray.open(path) as reader:
        np.testing.assert_array_equal(reader[:8, :16, :16], volume[:8, :16, :16])
        subprocess.run([sys.executable, "-c", WRITE_IN_PLACE, str(path), edit], check=True, env=_env(), timeout=300)
        with pytest.raises(FileChangedError, match="written in place"):
            reader.to_numpy()
        with pytest.raises(FileChangedError):
            reader[20:30, :, 3]
    with MLArray.open(path) as fresh:  # the file itself is whole
        assert fresh[5].max() == (-7 if edit.startswith("image[5]") else volume[5].max() + 1000)


def test_a_readers_probe_for_writers_does_not_make_a_writer_fail(tmp_path: Path) -> None:
    """Opening for reading takes a shared lock for a moment; a writer opening then waits it out (was LockError)."""
    import fcntl
    import threading

    path = tmp_path / "v.mla"
    MLArray(np.zeros((4, 8, 8), np.int16)).save(path)
    probe = os.open(path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a reader's probe, caught in the act
    release = threading.Timer(0.02, os.close, args=(probe,))
    release.start()
    try:
        with MLArray.open(path, "r+") as writer:
            writer[0] = 5
    finally:
        release.join()
    created = MLArray.create(path, (4, 8, 8), np.int16, fill_value=3)
    created.close()
    assert MLArray.load(path).to_numpy().sum() == 3 * 256


HOLD_OPEN = """
import sys
from mlarray import MLArray
with MLArray.open(sys.argv[1], "r+"):
    print("open", flush=True)
    sys.stdin.read()
"""


def test_loading_a_file_another_process_writes_warns(tmp_path: Path) -> None:
    from mlarray import ConcurrentWriterWarning

    path = tmp_path / "v.mla"
    MLArray(np.zeros((4, 8, 8), np.int16)).save(path)
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env()
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"open\n"
        with pytest.warns(ConcurrentWriterWarning, match="open for writing"):
            MLArray.load(path)
        with pytest.warns(ConcurrentWriterWarning, match="open for writing"):
            MLArray(path)
    finally:
        writer.communicate(b"", timeout=300)


def test_a_pickled_handle_never_reads_another_version_than_its_original(tmp_path: Path) -> None:
    """The sender reads version 0; a copy unpickled after a save of version 1 refuses to read (it read 1 silently)."""
    import pickle

    path = tmp_path / "v.mla"
    MLArray(np.zeros((8, 16, 16), np.int16)).save(path)
    handle = MLArray.open(path)
    unchanged = pickle.loads(pickle.dumps(handle))
    np.testing.assert_array_equal(unchanged.to_numpy(), handle.to_numpy())  # same version: reads
    MLArray(np.ones((8, 16, 16), np.int16)).save(path)  # another program's atomic save
    copy = pickle.loads(pickle.dumps(handle))  # unpickling works (a Pool worker that cannot unpickle hangs the pool)
    with pytest.raises(FileChangedError, match="since the handle was pickled"):
        copy[0]
    assert handle[0, 0, 0] == 0  # the sender keeps its version
    for image in (handle, unchanged, copy):
        image.close()


def test_annotating_a_file_shows_readers_no_writer(tmp_path: Path) -> None:
    """``update_stats`` (``mlarray stats``) reads through a read-only handle: readers got a false writer warning."""
    import fcntl
    import threading

    from mlarray import LockError
    from mlarray.stats import update_stats

    path = tmp_path / "v.mla"
    MLArray(np.random.default_rng(0).integers(0, 9, (64, 128, 128), dtype=np.uint8)).save(path)
    seen, done = [], threading.Event()

    def probe() -> None:  # what another process's reader does (the library skips its own process's writers)
        while not done.is_set():
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                seen.append(False)
            except BlockingIOError:
                seen.append(True)
            finally:
                os.close(fd)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        meta = update_stats(path, with_class_locations=True)
    finally:
        done.set()
        prober.join()
    assert len(seen) > 10 and not any(seen)
    assert meta.is_seg and MLArray.open(path).meta.class_locations is not None

    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env()
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"open\n"
        with pytest.raises(LockError):
            update_stats(path)  # a writer has it open: refused, as before
    finally:
        writer.communicate(b"", timeout=300)


def test_threads_sharing_a_writable_handle_take_turns(tmp_path: Path) -> None:
    """One thread writes rows 32-63 while three read rows 0-31: reads failed (EBADF, a false TRUNCATED_FILE)."""
    import threading

    path = tmp_path / "v.mla"
    volume = np.arange(64 * 64 * 64, dtype=np.int32).reshape(64, 64, 64)
    MLArray(volume, chunk_size=(16, 16, 32), block_size=(8, 16, 16)).save(path)
    failures: list[str] = []
    written = np.array(volume)
    with MLArray.open(path, "r+") as handle:
        stop = threading.Event()

        def writer() -> None:
            rng = np.random.default_rng(1)
            for _ in range(80):
                z = int(rng.integers(32, 64))
                rows = rng.integers(0, 100, size=(1, 64, 64)).astype(np.int32)
                handle[z : z + 1] = rows
                written[z : z + 1] = rows
            stop.set()

        def reader(start: int) -> None:
            while not stop.is_set():
                key = (slice(start, 32), slice(3, 60), slice(None))
                try:
                    if not np.array_equal(handle[key], volume[key]):
                        failures.append("wrong values")
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return

        workers = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
    assert failures == []
    np.testing.assert_array_equal(MLArray.load(path).to_numpy(), written)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
@pytest.mark.parametrize("reads", [0, 1, 2])
def test_a_handle_dropped_without_close_lets_go_of_its_file_at_once(tmp_path: Path, reads: int) -> None:
    """No reference cycle keeps a dropped handle's file (and its map) open until the garbage collector runs:
    the section hands its ledger and its patch reader methods that do not hold it."""
    path = tmp_path / "a.mla"
    MLArray(np.arange(4096, dtype=np.int16).reshape(16, 16, 16), chunk_size=(8, 8, 8), block_size=(4, 4, 4)).save(path)
    gc.collect()
    gc.disable()
    try:
        before = len(os.listdir("/proc/self/fd"))
        image = MLArray.open(path)
        for k in range(reads):  # the first read makes the map and the patch reader, the second settles every chunk
            assert image[k : k + 9, 0:9, 3:12].sum() > 0
        del image
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()
