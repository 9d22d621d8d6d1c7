"""Forked children (DataLoader workers under Linux's default start method) with the parent's images.

C-Blosc2 contexts with a thread pool made in the parent do not survive a fork: the child has
none of the pool's threads, so using or freeing such a context waits forever (or crashes).
Found by the concurrency audit: fork workers hung on in-memory compressed images; a child
closing an inherited writer hung (and wrote the parent's file). Each case runs in a child with
an alarm, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlarray import MLArray

VOLUME = np.arange(32 * 64 * 64, dtype=np.int16).reshape(32, 64, 64)
LAYOUT = {"chunk_size": (16, 32, 32), "block_size": (8, 16, 16)}


def in_child(action: Callable[[], object]) -> str:
    """Run ``action`` in a forked child: ``'ok'``, ``'hang'``, ``'wrong'`` or how it died."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(20)
        try:
            code = 0 if action() is not False else 3
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "hang" if os.WTERMSIG(status) == signal.SIGALRM else f"signal {os.WTERMSIG(status)}"
    return {0: "ok", 3: "wrong", 4: "raised"}.get(os.WEXITSTATUS(status), f"exit {os.WEXITSTATUS(status)}")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    MLArray(VOLUME, **LAYOUT).save(tmp_path / "v.mla")  # type: ignore[arg-type]
    return tmp_path / "v.mla"


def test_a_child_reads_and_drops_an_in_memory_compressed_image(path: Path) -> None:
    image = MLArray.load(path, compressed=True)
    np.testing.assert_array_equal(image[3:9], VOLUME[3:9])  # the parent decompressed with it first
    assert in_child(lambda: np.array_equal(image[3:9, 4:40], VOLUME[3:9, 4:40])) == "ok"
    assert in_child(lambda: (image.__dict__.clear(), gc.collect())) == "ok"
    compressed = MLArray(VOLUME, **LAYOUT)  # type: ignore[arg-type]
    compressed.compress()
    np.testing.assert_array_equal(compressed.to_numpy(), VOLUME)
    assert in_child(lambda: np.array_equal(compressed[10:30:3], VOLUME[10:30:3])) == "ok"


def test_a_child_closing_an_inherited_writer_neither_hangs_nor_writes(path: Path) -> None:
    writer = MLArray.open(path, "r+")
    writer[0] = 1
    before = path.read_bytes()
    assert in_child(writer.close) == "ok"
    assert path.read_bytes() == before  # the file is the parent's: the child's close wrote nothing
    writer.close()  # the parent persists (digest refreshed)
    with MLArray.open(path) as again:
        assert again[0].max() == 1 and again.meta.integrity is not None

    created = MLArray.create(path.with_name("c.mla"), (32, 64, 64), np.int16)
    created[0:16] = 3
    assert in_child(created.close) == "ok"
    created.close()
    assert MLArray.load(path.with_name("c.mla")).to_numpy().sum() == 3 * 16 * 64 * 64


def test_a_child_closing_a_reader_whose_threaded_array_the_parent_opened(path: Path) -> None:
    reader = MLArray.open(path, dparams={"nthreads": 4})
    assert reader._store[0:4].shape == (4, 64, 64)  # 0.0.x-style access opens python-blosc2's array
    assert in_child(reader.close) == "ok"
    np.testing.assert_array_equal(reader.to_numpy(), VOLUME)
    reader.close()
