"""Large patch results reuse memory only once nothing refers to it (``mlarray/storage/results.py``)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.storage import results
from mlarray.storage.results import ResultCache


def _data(a: np.ndarray[Any, Any]) -> int:
    return int(a.__array_interface__["data"][0])


def test_a_dropped_result_gives_its_memory_to_the_next() -> None:
    cache = ResultCache(min_bytes=1024, max_bytes=1 << 20)
    a = cache.empty((32, 32), np.dtype(np.float32))
    where = _data(a)
    del a
    b = cache.empty((16, 64), np.dtype(np.float32))
    assert _data(b) == where and b.shape == (16, 64) and b.dtype == np.float32 and b.flags.c_contiguous
    b[...] = 7
    assert b.flags.writeable and (b == 7).all()


def test_results_under_the_threshold_are_plain_arrays() -> None:
    cache = ResultCache(min_bytes=1 << 20, max_bytes=8 << 20)
    a = cache.empty((16, 16), np.dtype(np.int16))
    assert a.flags.owndata and cache.held_bytes == 0


HOLDERS: dict[str, Callable[[np.ndarray[Any, Any]], Any]] = {
    "the array": lambda r: r,
    "a slice": lambda r: r[1:3],
    "a reshaped view": lambda r: r.reshape(-1),
    "a memoryview": memoryview,
    "an array over a memoryview": lambda r: np.asarray(memoryview(r)),
    "a dtype view": lambda r: r.view(np.uint8),
    "a DLPack capsule": lambda r: r.__dlpack__(),
}


@pytest.mark.parametrize("holder", HOLDERS.values(), ids=HOLDERS.keys())
def test_memory_something_still_reaches_is_never_handed_out(holder: Callable[[np.ndarray[Any, Any]], Any]) -> None:
    cache = ResultCache(min_bytes=1024, max_bytes=1 << 20)
    first = cache.empty((8, 64), np.dtype(np.float64))
    first[...] = np.arange(first.size).reshape(first.shape)
    kept = holder(first)
    where = _data(first)
    del first
    second = cache.empty((8, 64), np.dtype(np.float64))
    second[...] = -1
    assert _data(second) != where
    reached = np.frombuffer(kept, dtype=np.float64) if isinstance(kept, memoryview) else kept
    if isinstance(reached, np.ndarray) and reached.dtype == np.float64:
        assert (reached.ravel() >= 0).all()  # not overwritten
    del kept, reached, second
    third = cache.empty((8, 64), np.dtype(np.float64))
    assert _data(third) in {where} | {_data(b) for b in cache._buffers}


def test_the_limit_counts_buffers_in_use_and_drops_free_ones_first() -> None:
    cache = ResultCache(min_bytes=1024, max_bytes=3 * 4096)
    alive = [cache.empty((1024,), np.dtype(np.float32)) for _ in range(4)]
    for i, a in enumerate(alive):
        a[...] = i
    assert cache.held_bytes == 3 * 4096  # the fourth is a plain array
    assert alive[3].flags.owndata and not any(a.flags.owndata for a in alive[:3])
    del alive[:2]  # two buffers free, one (alive[0] now) in use
    other = cache.empty((256,), np.dtype(np.float64))  # another size: a free buffer makes room
    assert not other.flags.owndata and cache.held_bytes == 2 * 4096 + 2048
    other[...] = -1
    cache.clear()
    assert cache.held_bytes == 0
    assert (alive[0] == 2).all() and (alive[1] == 3).all() and (other == -1).all()  # still valid


def test_results_larger_than_the_cache_and_object_arrays_are_plain() -> None:
    cache = ResultCache(min_bytes=16, max_bytes=1024)
    assert cache.empty((1024,), np.dtype(np.float32)).flags.owndata
    assert cache.empty((64,), np.dtype(object)).flags.owndata
    assert ResultCache(min_bytes=16, max_bytes=0).empty((64,), np.dtype(np.uint8)).flags.owndata


def test_threads_never_share_a_result() -> None:
    cache = ResultCache(min_bytes=1024, max_bytes=1 << 20)
    failures: list[str] = []

    def work(tag: int) -> None:
        for _ in range(200):
            r = cache.empty((64, 16), np.dtype(np.int32))
            r[...] = tag
            for _ in range(3):
                if not (r == tag).all():
                    failures.append(f"thread {tag} saw another thread's values")
                    return
            del r

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert cache.held_bytes <= 6 * 64 * 16 * 4


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["new", "drop"]), st.integers(0, 7), st.sampled_from([256, 512, 1024])),
        min_size=1,
        max_size=40,
    )
)
def test_live_results_keep_their_values_whatever_is_allocated(ops: list[tuple[str, int, int]]) -> None:
    """Every live result still holds the values written into it, after any sequence of allocations and drops."""
    cache = ResultCache(min_bytes=1024, max_bytes=3 * 4096)
    live: dict[int, tuple[np.ndarray[Any, Any], int]] = {}
    stamp = 0
    for op, slot, n in ops:
        if op == "drop":
            live.pop(slot, None)
            continue
        stamp += 1
        r = cache.empty((n,), np.dtype(np.int32))
        r[...] = stamp
        live[slot] = (r, stamp)
        for arr, value in live.values():
            assert (arr == value).all()
        assert cache.held_bytes <= cache.max_bytes


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(results.CACHE_ENV, "64")
    assert results._limit_from_env() == 64 << 20
    monkeypatch.setenv(results.CACHE_ENV, "0")
    assert results._limit_from_env() == 0
    monkeypatch.delenv(results.CACHE_ENV)
    assert results._limit_from_env() == results.MAX_BYTES
    for bad in ("lots", "-5", "nan", "inf"):
        monkeypatch.setenv(results.CACHE_ENV, bad)
        with pytest.warns(UserWarning, match="not a number of MiB"):
            assert results._limit_from_env() == results.MAX_BYTES


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> Iterator[ResultCache]:
    cache = ResultCache(min_bytes=4096, max_bytes=1 << 20)
    monkeypatch.setattr(results, "RESULTS", cache)
    yield cache


def test_patch_reads_reuse_a_dropped_result_and_spare_a_kept_one(tmp_path: Path, small_threshold: ResultCache) -> None:
    rng = np.random.default_rng(3)
    volume = rng.integers(-1000, 1000, size=(40, 48, 36)).astype(np.float32)
    path = tmp_path / "v.mla"
    MLArray(volume, patch_size=(16, 16, 16)).save(path)
    keys = [(slice(a, a + 20), slice(b, b + 24), slice(c, c + 16)) for a, b, c in rng.integers(0, 16, (6, 3))]
    with MLArray.open(path) as image, warnings.catch_warnings():
        warnings.simplefilter("error")
        first = image[keys[0]]
        assert first.base is not None and first.nbytes >= 4096  # from the cache
        where = _data(first)
        kept = first
        del first
        second = image[keys[1]]
        assert _data(second) != where  # `kept` still refers to the first buffer
        np.testing.assert_array_equal(kept, volume[keys[0]])
        np.testing.assert_array_equal(second, volume[keys[1]])
        del kept
        for key in keys[2:]:
            again = image[key]
            np.testing.assert_array_equal(again, volume[key])
            assert _data(again) in {_data(b) for b in small_threshold._buffers}
            del again
        assert len(small_threshold._buffers) == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork is POSIX only")
def test_a_child_forked_while_another_thread_allocates_can_still_allocate() -> None:
    """The cache's lock is made anew in a forked child, so a lock held in the parent at the fork cannot hang it."""
    import os

    cache = results.RESULTS
    with cache._lock:  # as if another thread were inside `empty` at the fork
        pid = os.fork()
        if pid == 0:  # the child: allocate through the module's cache, report by exit code
            try:
                r = cache.empty((cache.min_bytes // 4,), np.dtype(np.float32))
                os._exit(0 if r.shape == (cache.min_bytes // 4,) else 1)
            except BaseException:
                os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
