"""mlarray.dask: lazy Dask arrays over .mla files, exact against NumPy, aligned to the file's chunks."""

from __future__ import annotations

import glob
import io
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray import InvalidArgumentError, MLArray, MLArrayError
from mlarray.models import Meta

da = pytest.importorskip("dask.array", reason="the dask extra is part of dev")
from mlarray.dask import (  # noqa: E402
    MLAFile,
    StackMismatchError,
    close_handles,
    expand,
    from_mla,
    open_handles,
    read_meta,
)

CHUNKS = (16, 16, 8)


def _save(path: Path, data: np.ndarray[Any, Any], chunks: tuple[int, ...] = CHUNKS, **meta: Any) -> Path:
    blocks = tuple(max(1, c // 2) for c in chunks)
    MLArray(data, patch_size=None, chunk_size=chunks, block_size=blocks, meta=Meta(**meta) if meta else None).save(path)
    return path


def _boundaries(block_sizes: tuple[int, ...]) -> list[int]:
    return list(np.cumsum(block_sizes)[:-1])


def _aligned(chunks: tuple[tuple[int, ...], ...], file_chunks: tuple[int, ...]) -> bool:
    return all(b % c == 0 for axis, c in zip(chunks, file_chunks, strict=True) for b in _boundaries(axis))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64", "bool", "complex64"])
def test_to_dask_equals_numpy_and_blocks_are_the_file_chunks(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(3)
    data = (rng.normal(size=(37, 40, 19)) * 50).astype(dtype)
    path = _save(tmp_path / "a.mla", data)
    with MLArray.open(path) as image:
        assert image.chunks == CHUNKS
        arr = image.to_dask()
    assert arr.chunks == ((16, 16, 5), (16, 16, 8), (8, 8, 3))
    out = arr.compute(scheduler="threads")
    assert out.dtype == data.dtype
    np.testing.assert_array_equal(out, data)
    # a slice reads only the blocks it touches and still matches NumPy exactly
    np.testing.assert_array_equal(arr[3:30, 17, ::3].compute(scheduler="threads"), data[3:30, 17, ::3])
    close_handles()


def test_dask_from_array_aligns_to_mlarray_chunks(tmp_path: Path) -> None:
    data = np.arange(64 * 48 * 40, dtype=np.int32).reshape(64, 48, 40)
    path = _save(tmp_path / "a.mla", data)
    with MLArray.open(path) as image:
        auto = da.from_array(image, chunks={0: 32, 1: "auto", 2: "auto"}, lock=True)
        assert _aligned(auto.chunks, CHUNKS)
        assert auto.chunks[0] == (32, 32)
        np.testing.assert_array_equal(auto.compute(scheduler="sync"), data)
    small = from_mla(path, chunks="auto")
    assert _aligned(small.chunks, CHUNKS)
    np.testing.assert_array_equal(small.compute(), data)
    close_handles()


def test_chunks_of_in_memory_images_are_what_save_writes(tmp_path: Path) -> None:
    data = np.zeros((300, 200, 10), dtype=np.float32)
    image = MLArray(data, patch_size=(64, 64, 8))
    planned = image.chunks
    assert planned is not None
    image.save(tmp_path / "a.mla")
    with MLArray.open(tmp_path / "a.mla") as saved:
        assert saved.chunks == planned
    assert MLArray(data, patch_size=None).chunks is None  # Blosc2 chooses when saving
    assert MLArray().chunks is None  # metadata-only
    closed = MLArray.open(tmp_path / "a.mla")
    closed.close()
    assert closed.chunks is None


@pytest.mark.parametrize("how", ["numpy", "compressed", "r+", "c"])
def test_to_dask_of_in_memory_and_writable_images(tmp_path: Path, how: str) -> None:
    data = np.random.default_rng(0).integers(0, 1000, size=(40, 33, 17), dtype=np.int64)
    if how == "numpy":
        image = MLArray(data, chunk_size=CHUNKS, block_size=(8, 8, 4))
    elif how == "compressed":
        image = MLArray(data, chunk_size=CHUNKS, block_size=(8, 8, 4), compressed=True)
    else:
        image = MLArray.open(_save(tmp_path / "a.mla", data), how)
        if how == "c":  # copy-on-write: the written chunk lives in memory, read through the image itself
            image[0, 0, 0] = -5
            data = data.copy()
            data[0, 0, 0] = -5
    arr = image.to_dask()
    assert _aligned(arr.chunks, CHUNKS)
    assert arr.chunks[0] == (16, 16, 8)
    np.testing.assert_array_equal(arr.compute(scheduler="threads"), data)
    image.close()


def test_stacking_many_files_lazily(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.integers(-100, 100, size=(20, 30, 9), dtype=np.int16) for _ in range(5)]
    for i, a in enumerate(arrays):
        _save(tmp_path / f"case_{i:02d}.mla", a, source={"case": i})
    stacked = from_mla(str(tmp_path / "case_*.mla"))
    assert stacked.shape == (5, 20, 30, 9)
    assert stacked.chunks[0] == (1,) * 5
    assert stacked.chunks[1:] == ((16, 4), (16, 14), (8, 1))
    np.testing.assert_array_equal(stacked.compute(scheduler="threads"), np.stack(arrays))
    # a sequence keeps its order; axis puts the new axis elsewhere
    order = [tmp_path / "case_03.mla", tmp_path / "case_01.mla"]
    last = from_mla(order, axis=-1)
    np.testing.assert_array_equal(last.compute(), np.stack([arrays[3], arrays[1]], axis=-1))
    # the headers come in the same order as the stack
    metas = read_meta(str(tmp_path / "case_*.mla"))
    assert [m.source["case"] for m in metas] == [0, 1, 2, 3, 4]
    assert [Path(p).name for p in expand(str(tmp_path / "case_*.mla"))] == [f"case_{i:02d}.mla" for i in range(5)]
    # one reduction over the stack touches each file's chunks only
    np.testing.assert_array_equal(stacked.sum(axis=0).compute(), np.sum(arrays, axis=0))
    close_handles()


def test_stacking_different_shapes_or_dtypes_is_a_typed_error(tmp_path: Path) -> None:
    _save(tmp_path / "a.mla", np.zeros((10, 10, 4), np.float32))
    _save(tmp_path / "b.mla", np.zeros((10, 11, 4), np.float32))
    _save(tmp_path / "c.mla", np.zeros((10, 10, 4), np.float64))
    with pytest.raises(StackMismatchError, match=r"b\.mla.*\(10, 11, 4\).*a\.mla") as err:
        from_mla([tmp_path / "a.mla", tmp_path / "b.mla"])
    assert isinstance(err.value, ValueError) and err.value.code == "INVALID_ARGUMENT"
    with pytest.raises(StackMismatchError, match="float64"):
        from_mla([tmp_path / "a.mla", tmp_path / "c.mla"])
    with pytest.raises(MLArrayError, match="no file matches"):
        from_mla(str(tmp_path / "nothing_*.mla"))
    with pytest.raises(FileNotFoundError):
        from_mla(tmp_path / "missing.mla")


class _Recorder(pickle.Pickler):
    """A pickler that notes the type of every object it pickles."""

    def __init__(self, buffer: io.BytesIO) -> None:
        super().__init__(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.types: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        self.types.add(f"{type(obj).__module__}.{type(obj).__qualname__}")
        return NotImplemented


def test_the_graph_carries_paths_not_handles_or_data(tmp_path: Path) -> None:
    data = np.random.default_rng(2).normal(size=(64, 64, 32))
    for i in range(3):
        _save(tmp_path / f"s{i}.mla", data + i)
    arr = from_mla(str(tmp_path / "s*.mla"))
    np.testing.assert_array_equal(arr.compute(scheduler="sync"), np.stack([data, data + 1, data + 2]))
    assert open_handles() == 3  # this thread read every file once and keeps its handles ...
    buffer = io.BytesIO()
    recorder = _Recorder(buffer)
    recorder.dump(dict(arr.__dask_graph__()))  # ... but the graph does not carry them
    assert "mlarray.dask._source.MLAFile" in recorder.types
    assert not any("MLArray" in t or "blosc2" in t or "ndarray" in t for t in recorder.types), recorder.types
    assert len(buffer.getvalue()) < 200 * arr.npartitions  # paths and slices, not 3 x 1 MiB of data
    restored = pickle.loads(buffer.getvalue())
    sources = [v for v in restored.values() if isinstance(v, MLAFile)]
    assert sorted(Path(s.path).name for s in sources) == ["s0.mla", "s1.mla", "s2.mla"]
    assert close_handles() == 3 and open_handles() == 0


def test_each_thread_reads_through_its_own_handle(tmp_path: Path) -> None:
    data = np.arange(32 * 32 * 16, dtype=np.uint16).reshape(32, 32, 16)
    source = MLAFile(_save(tmp_path / "a.mla", data))
    barrier = threading.Barrier(4)

    def work(_: int) -> tuple[int, int, bool]:
        barrier.wait()
        first, again = source.handle(), source.handle()
        ok = bool(np.array_equal(source[0:16, 16:32, :], data[0:16, 16:32, :]))
        handle_id = id(first)
        barrier.wait()  # every thread still holds its handle: ids cannot be reused by a freed one
        close_handles()
        return handle_id, id(again), ok

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    assert all(ok for _, _, ok in results)
    assert all(first == again for first, again, _ in results)  # cached within a thread
    assert len({first for first, _, _ in results}) == 4  # never shared between threads


def test_a_replaced_file_is_reopened(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.mla", np.zeros((20, 20, 8), np.float32))
    arr = from_mla(path)
    np.testing.assert_array_equal(arr.compute(scheduler="sync"), 0)
    _save(path, np.ones((20, 20, 8), np.float32))  # atomic save: a new file at the same path
    np.testing.assert_array_equal(arr.compute(scheduler="sync"), 1)
    _save(path, np.ones((20, 21, 8), np.float32))
    with pytest.raises(InvalidArgumentError, match="changed since the array was made"):
        arr.compute(scheduler="sync")
    close_handles()


def test_an_existing_file_name_with_glob_characters_is_taken_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scan[1].mla`` is that file, for ``from_mla``, ``expand`` and ``to_dask``, with or without a ``scan1.mla``."""
    monkeypatch.chdir(tmp_path)
    data = np.arange(24 * 20 * 10, dtype=np.float32).reshape(24, 20, 10)
    _save(tmp_path / "scan[1].mla", data)

    def check(arr: Any) -> None:
        assert arr.shape == data.shape
        np.testing.assert_array_equal(arr.compute(scheduler="sync"), data)

    with MLArray.open("scan[1].mla") as image:  # only scan[1].mla exists: the pattern would match nothing
        check(image.to_dask())
    check(from_mla("scan[1].mla"))
    check(from_mla(tmp_path / "scan[1].mla"))
    _save(tmp_path / "scan1.mla", np.zeros_like(data))  # now the pattern "scan[1].mla" would match this file
    assert expand("scan[1].mla") == ["scan[1].mla"]
    with MLArray.open("scan[1].mla") as image:
        check(image.to_dask())
    check(from_mla("scan[1].mla"))
    assert [meta.array.shape for meta in read_meta("scan[1].mla")] == [list(data.shape)]  # type: ignore[union-attr]
    # text that names no file is still a pattern, and an escaped name inside one matches only itself
    stacked = from_mla("scan[1x].mla")
    assert stacked.shape == (1, *data.shape) and not stacked.compute().any()
    assert expand(glob.escape("scan[1]") + "*.mla") == ["scan[1].mla"]
    close_handles()


def test_metadata_only_file_has_no_dask_array(tmp_path: Path) -> None:
    MLArray().save(tmp_path / "m.mla")
    with pytest.raises(InvalidArgumentError, match="metadata-only"):
        from_mla(tmp_path / "m.mla")
    with pytest.raises(InvalidArgumentError, match="metadata-only"):
        MLArray().to_dask()


def test_import_mlarray_does_not_import_dask() -> None:
    code = (
        "import sys, mlarray, mlarray.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_to_dask_reads_the_image_s_own_file_or_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlarray import FileChangedError

    data = np.arange(20 * 20 * 8, dtype=np.float32).reshape(20, 20, 8)
    _save(tmp_path / "a.mla", data)
    (tmp_path / "other").mkdir()
    _save(tmp_path / "other" / "a.mla", np.zeros_like(data))
    monkeypatch.chdir(tmp_path)
    image = MLArray.open("a.mla")  # a relative path
    monkeypatch.chdir(tmp_path / "other")  # where another a.mla lives
    np.testing.assert_array_equal(image.to_dask().compute(scheduler="sync"), data)
    lazy = image.to_dask()
    _save(tmp_path / "a.mla", data + 1)  # another process's atomic save over the image's file
    with pytest.raises(FileChangedError):
        lazy.compute(scheduler="sync")
    with pytest.raises(FileChangedError):
        image.to_dask()
    np.testing.assert_array_equal(image[...], data)  # the image itself still reads its file
    image.close()
    close_handles()


def test_a_file_deleted_before_the_graph_runs_is_a_typed_error(tmp_path: Path) -> None:
    from mlarray import MLArrayFileNotFoundError

    path = _save(tmp_path / "a.mla", np.ones((20, 20, 8), np.float32))
    lazy = from_mla(path)
    path.unlink()
    with pytest.raises(MLArrayFileNotFoundError):
        lazy.compute(scheduler="sync")


def test_a_new_array_of_a_url_never_reads_through_an_older_array_s_handle(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    path = _save(tmp_path / "a.mla", np.zeros((20, 20, 8), np.float32))
    url = path.as_uri()
    np.testing.assert_array_equal(from_mla(url).compute(scheduler="sync"), 0)
    _save(path, np.ones((20, 20, 8), np.float32))
    np.testing.assert_array_equal(from_mla(url).compute(scheduler="sync"), 1)
    close_handles()


@pytest.mark.parametrize("chunks", [2, -1, {0: 4}, {0: 2, 1: 3}, ((4, 4), (3, 3))])
def test_to_dask_of_images_in_memory_takes_any_dask_chunks(chunks: Any) -> None:
    data = np.arange(48, dtype=np.int32).reshape(8, 6)
    for image in (MLArray(data), MLArray(data, chunk_size=(4, 3), block_size=(2, 3))):
        if chunks == ((4, 4), (3, 3)):
            image.compress()
        lazy = image.to_dask(chunks=chunks)
        assert lazy.chunks == da.from_array(data, chunks=chunks).chunks
        np.testing.assert_array_equal(lazy.compute(scheduler="sync"), data)


def test_read_meta_gives_metadata_only_headers_too(tmp_path: Path) -> None:
    MLArray(meta=Meta(extra={"a": 1})).save(tmp_path / "m.mla")
    _save(tmp_path / "x.mla", np.zeros((4, 4, 4), np.float32))
    metas = read_meta([tmp_path / "m.mla", tmp_path / "x.mla"])
    assert metas[0].extra == {"a": 1} and metas[1].array is not None


@pytest.fixture
def opened_by_tasks(monkeypatch: pytest.MonkeyPatch) -> list[MLArray]:
    """Every handle the tasks open (through :class:`MLAFile`), to check which are still open."""
    handles: list[MLArray] = []
    real = MLAFile._open

    def recording(self: MLAFile, dparams: Any = None) -> MLArray:
        handle = real(self, dparams)
        handles.append(handle)
        return handle

    monkeypatch.setattr(MLAFile, "_open", recording)
    return handles


def _still_open(handles: list[MLArray]) -> int:
    return sum(1 for handle in handles if not handle._closed)


def test_close_handles_releases_the_handles_of_every_thread(tmp_path: Path, opened_by_tasks: list[MLArray]) -> None:
    close_handles()
    for i in range(3):
        _save(tmp_path / f"s{i}.mla", np.full((20, 20, 8), i, np.float32))
    arr = from_mla(str(tmp_path / "s*.mla"))
    sums = arr.sum(axis=(1, 2, 3)).compute(scheduler="threads", num_workers=3)
    np.testing.assert_array_equal(sums, [0.0, 3200.0, 6400.0])
    assert open_handles() == 0 and open_handles(all_threads=True) >= 3  # held by the pool's threads
    assert close_handles() >= 3
    assert open_handles(all_threads=True) == 0 and _still_open(opened_by_tasks) == 0


def test_a_handle_in_the_middle_of_a_read_is_closed_when_the_read_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened_by_tasks: list[MLArray]
) -> None:
    close_handles()
    data = np.arange(20 * 20 * 8, dtype=np.float32).reshape(20, 20, 8)
    source = MLAFile(_save(tmp_path / "a.mla", data))
    reading, resume = threading.Event(), threading.Event()
    real = MLArray.__getitem__

    def slow(self: MLArray, key: Any) -> Any:
        reading.set()
        resume.wait(10)
        return real(self, key)

    monkeypatch.setattr(MLArray, "__getitem__", slow)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(source.__getitem__, (slice(0, 5),))
        assert reading.wait(10)
        assert close_handles() == 1
        assert _still_open(opened_by_tasks) == 1  # still reading: not closed under the read
        resume.set()
        np.testing.assert_array_equal(pending.result(10), data[0:5])
    assert _still_open(opened_by_tasks) == 0


def test_handing_out_a_handle_leaves_no_read_marks_behind(tmp_path: Path) -> None:
    from mlarray.dask import _source

    close_handles()
    source = MLAFile(_save(tmp_path / "a.mla", np.ones((20, 20, 8), np.float32)))
    source[0:3]
    source.handle()  # after the read: a handle from the cache
    assert not _source._BUSY and not _source._DOOMED
    close_handles()


def test_an_older_array_of_a_replaced_file_refuses_a_handle_a_newer_array_opened(tmp_path: Path) -> None:
    """Cached handles are per file version: the shape check ran only for a handle opened now."""
    path = tmp_path / "a.mla"
    MLArray(np.zeros((4, 6), np.float32)).save(path)
    old = from_mla(path)
    MLArray(np.arange(64, dtype=np.float32).reshape(8, 8)).save(path)
    new = from_mla(path)
    np.testing.assert_array_equal(new.compute(scheduler="sync"), np.arange(64, dtype=np.float32).reshape(8, 8))
    with pytest.raises(InvalidArgumentError, match="changed since the array was made"):
        old.compute(scheduler="sync")


MANY_THREADS_FEW_DESCRIPTORS = """
import resource, sys
import numpy as np
import mlarray.dask
from mlarray.dask import from_mla, open_handles
resource.setrlimit(resource.RLIMIT_NOFILE, (160, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
stack = from_mla(sys.argv[1] + "/*.mla")
total = stack.sum().compute(scheduler="threads", num_workers=int(sys.argv[2]))
budget = getattr(mlarray.dask, "process_budget", lambda: -1)()
print(int(total), open_handles(all_threads=True), budget)
"""


def test_handles_of_all_threads_together_stay_within_the_descriptor_limit(tmp_path: Path) -> None:
    """Each thread kept 8 handles (2 descriptors each): a 64-core node's default pool over a big glob died
    with EMFILE under ``ulimit -n 1024`` (audit scale). All threads together now keep an eighth of the limit."""
    for i in range(150):
        MLArray(np.full((4, 4), i, np.int32)).save(tmp_path / f"c{i:03d}.mla")
    result = subprocess.run(
        [sys.executable, "-c", MANY_THREADS_FEW_DESCRIPTORS, str(tmp_path), "24"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    total, still_open, budget = map(int, result.stdout.split())
    assert total == 16 * sum(range(150))
    assert budget == 160 // 8 and still_open <= budget
