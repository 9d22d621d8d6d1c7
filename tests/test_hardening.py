"""Crash safety and concurrent access, proven with real processes.

Semantics under test (documented in docs/security.md and the spec):
* a save killed at any moment leaves the complete old file or the complete new one;
* a header rewrite by ``close()`` of an r+ file is atomic too;
* any number of readers (forked from one open handle, or reopening per sample) read correct data;
* a second writer gets LockError; a reader racing a writer's saves sees old or new, never torn.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlarray import LockError, MLArray
from mlarray.storage.io import TMP_PREFIX
from mlarray.validate import validate_file

SAVER = """
import sys, numpy as np
from mlarray import MLArray
path, size = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
gen = 0
while True:
    gen += 1
    data = np.full((size, 64, 64), gen % 100, dtype=np.int16)
    MLArray(data, meta={"generation": gen % 100}, patch_size=32).save(path)
"""

HEADER_EDITOR = """
import sys
from mlarray import MLArray
path = sys.argv[1]
print("ready", flush=True)
n = 0
while True:
    n += 1
    with MLArray.open(path, mmap_mode="r+") as image:
        image.meta.extra["n"] = n
        image.meta.extra["padding"] = "x" * (n % 50) * 100
"""


def _check_consistent(path: Path) -> int:
    """The file is complete: valid (deep), and its data match the generation in its header."""
    report = validate_file(path, deep=True)
    assert report.valid, report.problems
    image = MLArray(path)
    generation = image.meta.source["generation"]
    data = image.to_numpy()
    assert (data == generation).all()
    return int(generation)


def _run_and_kill(script: str, args: list[str], delay: float) -> None:
    """Start ``script``, wait until it has imported everything, let it work ``delay`` s, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def test_save_killed_at_random_moments_never_leaves_a_partial_file(tmp_path: Path) -> None:
    rng = random.Random(1234)
    path = tmp_path / "target.mla"
    MLArray(np.zeros((8, 64, 64), np.int16), meta={"generation": 0}).save(path)
    seen = set()
    for _trial in range(50):
        size = rng.choice([8, 40, 160])
        _run_and_kill(SAVER, [str(path), str(size)], delay=rng.uniform(0.0, 0.3))
        seen.add(_check_consistent(path))
        for leftover in tmp_path.glob(f"{TMP_PREFIX}*"):
            leftover.unlink()  # a killed save may leave its clearly named temporary file
    assert len(seen) > 1, "no save ever completed: the trials did not exercise the race"


def test_header_rewrite_killed_at_random_moments_is_atomic(tmp_path: Path) -> None:
    rng = random.Random(99)
    path = tmp_path / "edited.mla"
    data = np.random.default_rng(0).integers(0, 1000, (96, 64, 64), dtype=np.int32)
    MLArray(data, meta={"generation": 0}).save(path)
    values = set()
    for _ in range(20):
        _run_and_kill(HEADER_EDITOR, [str(path)], delay=rng.uniform(0.0, 0.3))
        report = validate_file(path, deep=True)
        assert report.valid, report.problems
        image = MLArray(path)
        np.testing.assert_array_equal(image.to_numpy(), data)
        values.add(image.meta.extra.get("n"))
        for leftover in tmp_path.glob(f"{TMP_PREFIX}*"):
            leftover.unlink()
    assert len(values) > 1


def _expected(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(7).integers(-1000, 1000, shape, dtype=np.int16)


_INHERITED: dict[str, MLArray] = {}


def _reader(args: tuple[str, str, int, int]) -> int:
    how, path, seed, n = args
    handle = _INHERITED["handle"] if how == "inherited" else None
    rng = np.random.default_rng(seed)
    shape = (48, 64, 80)
    expected = _expected(shape)
    checked = 0
    for _ in range(n):
        z, y, x = (int(rng.integers(0, s - 16)) for s in shape)
        key = (slice(z, z + 16), slice(y, y + 16), slice(x, x + 16))
        if handle is not None:
            got = handle[key]  # type: ignore[index]
        else:
            with MLArray.open(path, mmap_mode="r") as image:
                got = image[key]
        np.testing.assert_array_equal(got, expected[key])
        checked += 1
    return checked


def test_forked_readers_share_one_handle_or_reopen_per_sample(tmp_path: Path) -> None:
    path = tmp_path / "shared.mla"
    MLArray(_expected((48, 64, 80)), chunk_size=(16, 32, 32), block_size=(8, 16, 16)).save(path)
    _INHERITED["handle"] = MLArray.open(path, mmap_mode="r")  # opened before the fork, like a Dataset
    try:
        with mp.get_context("fork").Pool(4) as pool:
            shared = pool.map(_reader, [("inherited", str(path), seed, 40) for seed in range(4)])
            reopened = pool.map(_reader, [("reopen", str(path), seed, 40) for seed in range(4, 8)])
    finally:
        _INHERITED.pop("handle").close()
    assert sum(shared) == 160 and sum(reopened) == 160


def _read_pickled(image: MLArray) -> bool:
    return bool(np.array_equal(image[5:20, 3:40, 7:9], _expected((48, 64, 80))[5:20, 3:40, 7:9]))


def test_read_only_handles_pickle_for_spawned_workers(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "pickled.mla"
    MLArray(_expected((48, 64, 80))).save(path)
    with MLArray.open(path, mmap_mode="r") as image, mp.get_context("spawn").Pool(2) as pool:
        assert pool.map(_read_pickled, [image, image]) == [True, True]
    in_memory = MLArray(np.arange(6), spacing=(2.0,), meta={"a": 1})
    clone = pickle.loads(pickle.dumps(in_memory))
    assert clone.spacing == [2.0] and clone.meta.source == {"a": 1}
    np.testing.assert_array_equal(clone.to_numpy(), np.arange(6))
    with MLArray.open(path, mmap_mode="r+") as writer, pytest.raises(TypeError):
        pickle.dumps(writer)


def _try_open_writer(path: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        MLArray.open(path, mmap_mode="r+")
        queue.put("opened")
    except LockError as exc:
        queue.put(f"locked:{exc.code}")
    try:
        MLArray(np.zeros(3)).save(path)
        queue.put("saved")
    except LockError as exc:
        queue.put(f"locked:{exc.code}")
    try:
        MLArray.create(path, (7, 7), np.uint8)
        queue.put("created")
    except LockError as exc:
        queue.put(f"locked:{exc.code}")


def test_a_second_writer_gets_a_lock_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.mla"
    MLArray(np.arange(10)).save(path)
    writer = MLArray.open(path, mmap_mode="r+")
    with pytest.raises(LockError):
        MLArray.open(path, mmap_mode="r+")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_try_open_writer, args=(str(path), queue))
    proc.start()
    proc.join(60)
    assert [queue.get(timeout=5) for _ in range(3)] == ["locked:LOCKED"] * 3  # open r+, save, create
    assert MLArray.open(path, mmap_mode="r")[3] == 3  # readers are never blocked
    writer[0] = 42
    writer.close()
    with MLArray.open(path, mmap_mode="r+") as again:  # released on close
        assert again[0] == 42


def test_create_over_a_file_this_process_holds_replaces_it_and_the_old_handle_keeps_off(tmp_path: Path) -> None:
    """The seed README's pattern: an 'r+' handle still alive while ``MLArray.create`` rewrites the path."""
    from mlarray.validate import validate_file

    path = tmp_path / "sample.mla"
    MLArray(np.arange(10)).save(path)
    old = MLArray.open(path, mmap_mode="r+")
    old[0] = 99
    old.meta.source["note"] = "old"
    new = MLArray.create(path, (7, 7), np.uint8, fill_value=3)
    old.close()  # its file was replaced: nothing of it is written over the new one
    new[0, 0] = 5
    new.close()
    image = MLArray.load(path)
    assert image.shape == (7, 7) and image[0, 0] == 5 and image[1, 1] == 3 and "note" not in image.meta.source
    assert validate_file(path).valid


def test_a_forked_child_does_not_take_its_parents_writer_for_its_own(tmp_path: Path) -> None:
    """The lock registry is per process: a DataLoader-style fork must not replace a file the parent writes."""
    path = tmp_path / "held.mla"
    MLArray(np.zeros((4, 4), np.float32)).save(path)
    writer = MLArray.open(path, mmap_mode="r+")
    writer[0, 0] = 7
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            MLArray.create(path, (2, 2), np.uint8)
            os.write(write, b"created")
        except LockError:
            os.write(write, b"locked")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.waitpid(pid, 0)
    os.close(read)
    writer.close()
    assert answer == b"locked"
    again = MLArray.load(path)
    assert again.shape == (4, 4) and float(again[0, 0]) == 7.0


def test_readers_racing_a_writer_see_old_or_new_never_torn(tmp_path: Path) -> None:
    path = tmp_path / "race.mla"
    MLArray(np.zeros((40, 64, 64), np.int16), meta={"generation": 0}).save(path)
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), "40"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        generations = set()
        deadline = time.monotonic() + 4
        reads = 0
        while time.monotonic() < deadline:
            with MLArray.open(path, mmap_mode="r") as image:
                generation = image.meta.source["generation"]
                data = image[...]
            assert (data == generation).all(), "torn read: data disagree with the header"
            generations.add(generation)
            reads += 1
        assert reads > 10 and len(generations) > 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    for leftover in tmp_path.glob(f"{TMP_PREFIX}*"):
        os.unlink(leftover)


def test_out_of_memory_while_decompressing_is_a_resource_limit_not_a_corrupt_file() -> None:
    """python-blosc2 running out of memory says nothing about the file: RESOURCE_LIMIT, not CORRUPT_FRAME."""
    from mlarray.errors import CorruptFrameError, ResourceLimitError
    from mlarray.reading import decompress_all

    class Starved:
        shape, dtype = (4, 4), np.dtype("<i2")

        def __getitem__(self, key: object) -> None:
            raise MemoryError

    with pytest.raises(ResourceLimitError) as caught:
        decompress_all(Starved(), "x.mla")
    assert not isinstance(caught.value, CorruptFrameError) and caught.value.code == "RESOURCE_LIMIT"

    class Broken(Starved):
        def __getitem__(self, key: object) -> None:
            raise RuntimeError("blosc2 error")

    with pytest.raises(CorruptFrameError):
        decompress_all(Broken(), "x.mla")
