"""Our own block decoder (mlarray.storage.fastread) against python-blosc2's slicing and NumPy.

Every comparison reads the same file three ways: through ``MLArray`` (which uses the fast
path; the ``fastread.reads`` counter proves it), through the python-blosc2 NDArray the
file is also opened as (its own slicing), and from the NumPy array that was saved.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from corrupt import break_block_offsets
from engines import select_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.errors import CorruptFrameError
from mlarray.storage import blockcopy, fastread, patchread, threads
from mlarray.storage.selection import plan
from mlarray.storage.structure import ENTRY_NAN, ENTRY_ZEROS

pytestmark = pytest.mark.skipif(not fastread.available(), reason=f"fast path unavailable: {fastread.STATUS}")


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the compiled block loop and with the NumPy copies that stand in for it.

    One-thread patch reads go through the fast path in both (without the compiled loop the
    default leaves them to python-blosc2).
    """
    return select_engine(str(request.param), monkeypatch)


def test_compiled_loop_serves_reads(tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the compiled loop a patch is one call into C; threads each make one call and share a counter.

    The first read of a chunk is refused by the short patch path (not checked yet): it
    checks the chunk and calls again.
    """
    a = values(np.random.default_rng(11), (30, 20, 10), "<i2", False)
    path = write(tmp_path, a, (8, 8, 10), (4, 4, 5))
    calls: list[tuple[int, int, bool, int]] = []
    if engine == "compiled":
        helper = copy.copy(blockcopy.HELPER)
        real = helper.read_region  # type: ignore[union-attr]

        def counting(*args: Any) -> int:
            done = int(real(*args))
            calls.append((args[18], args[19], args[20] is not None, done))  # first, count, shared lanes, result
            return done

        real_box = helper.read_box  # type: ignore[union-attr]

        def counting_box(args: int) -> int:  # the patch path: one grid-mode call, the whole box, no counter
            done = int(real_box(args))
            calls.append((-1, -1, False, done))
            return done

        helper.read_region = counting  # type: ignore[union-attr]
        helper.read_box = counting_box  # type: ignore[union-attr]
        monkeypatch.setattr(blockcopy, "HELPER", helper)
    with MLArray.open(path) as image:
        assert np.array_equal(image[3:20, 2:15, 1:9], a[3:20, 2:15, 1:9])
        # 3 x 2 x 1 chunks touched; 5 x 4 x 2 blocks of 4 x 4 x 5 decoded
        box = (-1, -1, False)
        assert calls == ([(*box, patchread.NOT_READY), (*box, 40)] if engine == "compiled" else [])
        calls.clear()
        assert np.array_equal(image[3:20, 2:15, 1:9], a[3:20, 2:15, 1:9])
        assert calls == ([(*box, 40)] if engine == "compiled" else [])
    with MLArray.open(path, dparams={"nthreads": 2}) as image:
        assert np.array_equal(image.to_numpy(), a)
    if engine == "compiled":  # one call per thread that started (the caller's and one helper), 12 chunks shared
        assert [c[:3] for c in calls[1:]] in ([(0, 12, True)], [(0, 12, True)] * 2)


DTYPES = ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16"]
CODECS = [blosc2.Codec.LZ4, blosc2.Codec.LZ4HC, blosc2.Codec.ZSTD, blosc2.Codec.ZLIB, blosc2.Codec.BLOSCLZ]
FILTERS = [[], [blosc2.Filter.SHUFFLE], [blosc2.Filter.BITSHUFFLE], [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA]]


def values(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, constant_part: bool) -> np.ndarray[Any, Any]:
    """Random values of ``dtype``; with ``constant_part`` the first half along axis 0 is zero."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        a = rng.integers(0, 2, size=shape).astype(dt)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    elif dt.kind == "f":
        a = (rng.normal(size=shape) * 100).astype(dt)
    else:
        a = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dt)
    if constant_part and shape:
        a[: shape[0] // 2] = 0
    return a


@st.composite
def layouts(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 13), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n + 3)) for n in shape)
    blocks = tuple(draw(st.integers(1, c)) for c in chunks)
    return shape, chunks, blocks


def axis_key(draw: st.DrawFn, n: int) -> Any:
    if draw(st.booleans()):
        return draw(st.integers(-n, n - 1))
    bound = st.none() | st.integers(-n - 2, n + 2)
    return slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1])))


@st.composite
def keys(draw: st.DrawFn, shape: tuple[int, ...]) -> Any:
    """Integers (negative too), slices (open, negative, empty, clipped) and at most one ``...``."""
    ndim = len(shape)
    count = draw(st.integers(0, ndim))
    if not draw(st.booleans()):
        parts = [axis_key(draw, n) for n in shape[:count]]
        return tuple(parts) if len(parts) != 1 or draw(st.booleans()) else parts[0]
    left = draw(st.integers(0, count))
    head = [axis_key(draw, n) for n in shape[:left]]
    tail = [axis_key(draw, n) for n in shape[ndim - (count - left) :]]
    return (*head, Ellipsis, *tail)


def write(tmp_path: Path, a: np.ndarray[Any, Any], chunks: Any, blocks: Any, cparams: Any = None) -> Path:
    path = tmp_path / "x.mla"
    MLArray(a, chunk_size=chunks, block_size=blocks, cparams=cparams).save(path)
    return path


def three_ways(path: Path, key: Any, expected: np.ndarray[Any, Any], nthreads: int = 1) -> None:
    """``key`` read by the fast path equals python-blosc2's slicing and NumPy, shape, dtype and bytes."""
    with MLArray.open(path, dparams={"nthreads": nthreads}) as image:
        before = fastread.reads
        fast = image[key]
        assert fastread.reads == before + 1, "the fast path did not serve the read"
        slow = np.asarray(image._nd[key])
    want = np.asarray(expected[key])
    assert type(fast) is type(expected[key])  # a NumPy scalar for one integer per axis, as NumPy gives
    fast = np.asarray(fast)
    assert fast.shape == want.shape == slow.shape
    assert fast.dtype == want.dtype == slow.dtype
    assert fast.tobytes() == want.tobytes() == slow.tobytes()


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=layouts(),
    dtype=st.sampled_from(DTYPES),
    codec=st.sampled_from(CODECS),
    filters=st.sampled_from(FILTERS),
    constant_part=st.booleans(),
    data=st.data(),
)
def test_fast_path_equals_blosc2_and_numpy(
    tmp_path: Path, layout: Any, dtype: str, codec: Any, filters: Any, constant_part: bool, data: Any
) -> None:
    shape, chunks, blocks = layout
    a = values(np.random.default_rng(len(shape) * 7 + sum(shape)), shape, dtype, constant_part)
    cparams = {"codec": codec, "clevel": 5, "filters": filters}
    path = write(tmp_path, a, chunks, blocks, cparams)
    for _ in range(3):
        three_ways(path, data.draw(keys(shape)), a, nthreads=data.draw(st.sampled_from([1, 3])))
    three_ways(path, ..., a)


def test_threads_give_identical_results(tmp_path: Path) -> None:
    a = values(np.random.default_rng(1), (37, 41, 29), "<f4", True)
    path = write(tmp_path, a, (16, 16, 8), (4, 8, 8))
    key = (slice(3, 35), slice(None), slice(5, 28))
    results = []
    for n in (1, 2, 4, 7):
        with MLArray.open(path, dparams={"nthreads": n}) as image:
            results.append((image[key], image[2:4], image.to_numpy()))
    for part in range(3):
        assert all(r[part].tobytes() == results[0][part].tobytes() for r in results)
    assert results[0][0].tobytes() == a[key].tobytes()
    assert results[0][2].tobytes() == a.tobytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nchunks=st.integers(1, 13), nthreads=st.integers(2, 7), whole=st.booleans())
def test_threads_taking_chunks_from_lanes_read_every_chunk_once(
    tmp_path: Path, nchunks: int, nthreads: int, whole: bool
) -> None:
    """The threads of a read take chunks from as many lanes as threads asked for, in turn
    (``mla_read_region``): more lanes than chunks, a short last lane or an even split, every
    chunk is read, and nothing outside the selection is written (a buffer of -1 around it)."""
    a = np.arange(nchunks * 4 * 3, dtype=np.int32).reshape(nchunks * 4, 3)
    path = write(tmp_path, a, (4, 3), (2, 3))
    key = slice(None) if whole else slice(1, nchunks * 4 - 1)
    expected = a[key]
    room = np.full(expected.size + 2, -1, dtype=np.int32)
    out = room[1:-1].reshape(expected.shape)
    with MLArray.open(path, dparams={"nthreads": nthreads}) as image:
        before = fastread.reads
        image.read(key, out=out)
        assert fastread.reads == before + 1
    assert np.array_equal(out, expected)
    assert room[0] == room[-1] == -1


@pytest.mark.parametrize("engine", ["compiled"], indirect=True)  # the NumPy stand-in has no lanes: a task per chunk
def test_a_thread_left_alone_reads_the_lanes_of_threads_that_never_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """Each thread starts with a lane of its own and then helps with the others: when only one of
    the threads asked for runs (the process could not start the rest), it reads every lane."""
    a = np.arange(11 * 4 * 3, dtype=np.int32).reshape(44, 3)
    path = write(tmp_path, a, (4, 3), (2, 3))
    ran: list[int] = []

    def only_the_first(tasks: Any, run: Any, nthreads: int) -> None:
        first = next(iter(tasks))
        ran.append(first)
        run(first)

    monkeypatch.setattr(threads, "run_parallel", only_the_first)
    for nthreads in (2, 3, 5):
        out = np.full(a.shape, -1, dtype=np.int32)
        with MLArray.open(path, dparams={"nthreads": nthreads}) as image:
            image.read(..., out=out)
        assert np.array_equal(out, a), nthreads
    assert ran == [0, 0, 0]  # one thread each time, and the parallel path was taken


def test_load_and_to_numpy_use_the_fast_path(tmp_path: Path) -> None:
    a = values(np.random.default_rng(2), (20, 30, 10), "<i2", False)
    path = write(tmp_path, a, (8, 8, 8), (4, 4, 8))
    before = fastread.reads
    assert np.array_equal(MLArray.load(path).to_numpy(), a)
    assert np.array_equal(MLArray.load(path, dparams={"nthreads": 2}).to_numpy(), a)
    with MLArray.open(path) as image:
        assert np.array_equal(image.to_numpy(), a)
        assert np.array_equal(np.asarray(image), a)
    assert fastread.reads == before + 4


def test_special_chunks_and_entries(tmp_path: Path) -> None:
    """Zeros, NaN and value runs, as chunks and as index entries, are filled without C."""
    shape, chunks, blocks = (12, 10, 9), (4, 5, 9), (2, 5, 3)
    cases: list[tuple[str, Any]] = [("<f4", 0), ("<f8", np.nan), ("<i2", 7), ("|b1", True), ("<c8", 1 + 2j)]
    for dtype, fill in cases:
        path = tmp_path / f"special-{np.dtype(dtype).name}.mla"
        image = MLArray.create(path, shape, dtype=dtype, fill_value=fill, chunk_size=chunks, block_size=blocks)
        expected = np.full(shape, fill, dtype=dtype)
        image[4:8] = values(np.random.default_rng(3), (4, 10, 9), dtype, False)
        expected[4:8] = image[4:8]
        image.close()
        with MLArray.open(path) as reopened:
            section = reopened._chunks
            assert section is not None
            kinds = set()
            for n, entry in enumerate(section.entries):
                kinds.add("entry" if entry < 0 else int(section.chunk_bytes(n)[31]) >> 4 & 7)
            assert kinds - {0}, f"no special chunk or entry in the {dtype} file: {kinds}"
        for key in [..., (slice(2, 10), slice(None), 3), (-1, -1), (slice(3, 5),)]:
            three_ways(path, key, expected)
            three_ways(path, key, expected, nthreads=2)  # the threads fill the special chunks between them
        for nthreads in (1, 2, 3):
            loaded = MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy()
            assert loaded.tobytes() == expected.tobytes()


@pytest.mark.parametrize("zeroed_min", [0, 1 << 62])
@pytest.mark.parametrize(("dtype", "fill", "skipped"), [("<f4", 0.0, True), ("<f4", -0.0, False), ("<i2", 0, True)])
def test_large_results_are_allocated_zeroed_and_zero_chunks_not_written(
    tmp_path: Path, engine: str, zeroed_min: int, dtype: str, fill: Any, skipped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From ZEROED_MIN bytes on, a result with zero chunks comes zeroed and those chunks are not written.

    Zero entries and chunks are skipped then; a run of -0.0 (whose bytes are not zero) is
    still written; whatever the threads, for loads, patches and keys that drop axes.
    """
    monkeypatch.setattr(fastread, "ZEROED_MIN", zeroed_min)
    path = tmp_path / "filled.mla"
    expected = np.full((16, 10, 9), fill, dtype=dtype)
    with MLArray.create(
        path, expected.shape, dtype=dtype, fill_value=fill, chunk_size=(2, 5, 9), block_size=(2, 5, 3)
    ) as image:
        expected[6:12] = values(np.random.default_rng(8), (6, 10, 9), dtype, False)
        image[6:12] = expected[6:12]
    allocated: list[tuple[int, int]] = []
    if engine == "compiled":
        real = fastread._NativeRead._allocate

        def spy(read: Any) -> np.ndarray[Any, Any]:
            before = int(read.fill_known.sum())
            result = real(read)
            allocated.append((before, int(read.fill_known.sum())))
            return result

        monkeypatch.setattr(fastread._NativeRead, "_allocate", spy)
    for key in [..., (slice(1, 14), slice(2, 10), 4), (slice(0, 5),)]:
        three_ways(path, key, expected)
        three_ways(path, key, expected, nthreads=2)
    for nthreads in (1, 2):
        assert MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy().tobytes() == expected.tobytes()
    if engine == "compiled":  # the first read is of the whole array: 10 of its 16 chunks hold the fill value
        assert allocated[0] == (10, 0 if skipped and zeroed_min == 0 else 10), allocated


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rows_of_whole_cache_lines_streamed_read_numpys_bytes(tmp_path: Path, engine: str, data: Any) -> None:
    """From STREAM_MIN bytes on (0 here), the compiled loop writes the block rows of whole cache lines
    that start on one with streaming stores (``stream_rows``): blocks whose rows are 1-3 cache lines,
    results whose rows are or are not a whole number of lines; loads on 1-3 threads (results
    allocated on a cache line), patches on the general path, and ``read(out=)`` into buffers at every
    item offset within a cache line all read NumPy's bytes."""
    dtype = np.dtype(data.draw(st.sampled_from(["|u1", "<i2", "<f4", "<f8"])))
    ndim = data.draw(st.integers(2, 3))
    blocks = [data.draw(st.integers(1, 3)) for _ in range(ndim - 1)]
    blocks.append(data.draw(st.integers(1, 3)) * 64 // dtype.itemsize)  # rows of whole cache lines
    chunks = [b * data.draw(st.integers(1, 2)) for b in blocks]
    shape = tuple(c * data.draw(st.integers(1, 3)) - data.draw(st.integers(0, c - 1)) for c in chunks)
    a = values(np.random.default_rng(data.draw(st.integers(0, 2**16))), shape, dtype.str, data.draw(st.booleans()))
    path = write(tmp_path, a, chunks, blocks)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastread, "STREAM_MIN", 0)
        mp.setattr(fastread, "ZEROED_MIN", data.draw(st.sampled_from([0, fastread.ZEROED_MIN])))
        for nthreads in (1, 2, 3):
            loaded = MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy()
            assert loaded.tobytes() == a.tobytes()
            if engine == "compiled":
                assert loaded.ctypes.data % 64 == 0
        with MLArray.open(path, mmap_mode="r+", dparams={"nthreads": data.draw(st.sampled_from([1, 2]))}) as image:
            for _ in range(3):
                key = data.draw(keys(shape))
                want = np.asarray(a[key])
                assert np.asarray(image[key]).tobytes() == want.tobytes(), key
                skip = dtype.itemsize * data.draw(st.integers(0, 64 // dtype.itemsize - 1))
                raw = np.full(want.nbytes + 64, 0x5A, dtype=np.uint8)
                out = raw[skip : skip + want.nbytes].view(dtype).reshape(want.shape)
                assert image.read(key, out=out) is out and out.tobytes() == want.tobytes(), (key, skip)
                assert (raw[:skip] == 0x5A).all() and (raw[skip + want.nbytes :] == 0x5A).all()


@pytest.mark.parametrize(("dtype", "fill"), [("<i2", -1024), ("<f4", 1.5), ("<f8", np.nan), ("|u1", 7)])
def test_chunks_of_one_value_streamed_read_numpys_bytes(tmp_path: Path, engine: str, dtype: str, fill: Any) -> None:
    """Chunks that stand for one value are filled with streaming stores too where their rows are
    whole cache lines (an item of one repeated byte goes to memset): loads on 1-3 threads, patches
    and ``read(out=)`` at every item offset within a cache line read NumPy's bytes."""
    chunks = (3, 4, 64 // np.dtype(dtype).itemsize)  # rows of one cache line
    expected = np.full((9, 11, 5 * chunks[2] - 3), fill, dtype=dtype)
    path = tmp_path / "filled.mla"
    with MLArray.create(path, expected.shape, dtype=dtype, fill_value=fill, chunk_size=chunks) as image:
        expected[3:6, 4:8] = values(np.random.default_rng(3), (3, 4, expected.shape[2]), dtype, False)
        image[3:6, 4:8] = expected[3:6, 4:8]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastread, "STREAM_MIN", 0)
        for nthreads in (1, 2, 3):
            loaded = MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy()
            assert loaded.tobytes() == expected.tobytes()
        with MLArray.open(path, mmap_mode="r+") as image:
            for key in [..., (slice(1, 8), slice(2, 11)), (slice(None), 5, slice(7, None))]:
                want = np.asarray(expected[key])
                assert np.asarray(image[key]).tobytes() == want.tobytes()
                for skip in range(0, 64, np.dtype(dtype).itemsize):
                    raw = np.full(want.nbytes + 64, 0x5A, dtype=np.uint8)
                    out = raw[skip : skip + want.nbytes].view(dtype).reshape(want.shape)
                    assert image.read(key, out=out) is out and out.tobytes() == want.tobytes(), (key, skip)


@pytest.mark.parametrize("make", [np.empty, np.zeros])
@pytest.mark.parametrize("dtype", ["|u1", "<i2", "<f8", "<c16"])
def test_results_on_a_cache_line(make: Any, dtype: str) -> None:
    """``on_cache_line`` gives ``make``'s array of the shape and dtype asked for, starting on a 64-byte line."""
    for shape in [(0,), (1,), (7, 5), (3, 4, 33)]:
        for _ in range(4):
            got = fastread.on_cache_line(shape, np.dtype(dtype), make)
            assert got.shape == shape and got.dtype == np.dtype(dtype) and got.flags.c_contiguous
            assert got.flags.writeable and (got.size == 0 or got.ctypes.data % 64 == 0)  # empty: no first byte
            if make is np.zeros:
                assert not got.any()
            got[...] = 1
            assert (got == 1).all()


def test_zero_entries_are_filled_without_fetching(tmp_path: Path) -> None:
    """A chunk whose index entry is the zeros entry is never fetched (get_chunk is not called)."""
    a = np.zeros((8, 8), np.uint16)
    a[4:] = 3
    path = write(tmp_path, a, (4, 8), (2, 4))
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        fetched: list[int] = []

        def get_chunk(number: int) -> bytes:
            fetched.append(number)
            return bytes(section.chunk_bytes(number))

        entries = list(section.entries)
        entries[0] = ENTRY_ZEROS
        out = fastread.read_region(section.layout, entries, get_chunk, ...)
    assert out is not None and not out[:4].any() and (out[4:] == 3).all()
    assert 0 not in fetched


@pytest.mark.parametrize("nthreads", [1, 2])
def test_chunks_sharing_an_entry_are_fetched_once_and_errors_name_the_first(
    tmp_path: Path, engine: str, nthreads: int
) -> None:
    """Touched chunks are settled with NumPy tables, not one by one: ``get_chunk`` is asked once per
    distinct index entry (first touched chunk first; the NumPy stand-in asks per chunk), values
    fill the right boxes, and a bad entry is reported for the first touched chunk that has it."""
    a = np.zeros((12, 8), np.float32)
    a[4:8] = 3.5  # chunk 1: a run of one value (a special chunk)
    a[8:] = np.arange(32, dtype=np.float32).reshape(4, 8)  # chunk 2: data to decode
    path = write(tmp_path, a, (4, 8), (2, 4))
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        section.check_all()
        real = list(section.entries)
        owner = {e: n for n, e in enumerate(real)}
        fetched: list[int] = []

        def get_chunk(number: int) -> bytes:
            fetched.append(number)
            return bytes(section.chunk_bytes(owner[entries[number]]))

        entries = [real[2], real[1], ENTRY_NAN, real[2], real[1], ENTRY_ZEROS]  # six chunks of a 24x8 array
        lay = dataclasses.replace(section.layout, shape=(24, 8), grid=(6, 1), nchunks=6)
        out = fastread.read_region(lay, entries, get_chunk, ..., nthreads=nthreads)
        assert out is not None
        expected = np.concatenate([a[8:], a[4:8], np.full((4, 8), np.nan, np.float32), a[8:], a[4:8], a[:4]])
        assert np.array_equal(out, expected, equal_nan=True)
        assert fetched == ([0, 1] if engine == "compiled" else [0, 1, 3, 4])
        fetched.clear()
        assert np.array_equal(fastread.read_region(lay, entries, get_chunk, slice(13, 24)), expected[13:])
        assert fetched == [3, 4]  # the first touched chunk of each entry
        bad = [*entries[:3], -5, real[2], -5]
        with pytest.raises(CorruptFrameError, match="chunk 3: the index entry 0xfffffffffffffffb"):
            fastread.read_region(lay, bad, get_chunk, ..., nthreads=nthreads)


def test_read_region_interface_with_bytes_and_out(tmp_path: Path) -> None:
    """The interface the remote reader uses: bytes from a callable, an ``out`` buffer, a path in errors."""
    a = values(np.random.default_rng(4), (9, 17, 6), "<u4", False)
    path = write(tmp_path, a, (4, 8, 6), (2, 4, 3))
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        section.check_all()

        def get_chunk(number: int) -> bytes:
            return bytes(section.chunk_bytes(number))

        lay, entries = section.layout, section.entries
        out = np.empty((5, 6), np.uint32)
        got = fastread.read_region(lay, entries, get_chunk, (slice(2, 7), 3), out=out, nthreads=2)
        assert got is out and np.array_equal(out, a[2:7, 3])
        with pytest.raises(ValueError, match="out must be"):
            fastread.read_region(lay, entries, get_chunk, (slice(2, 7), 3), out=np.empty((5, 7), np.uint32))
        for key in [slice(0, 9, 2), (np.array([1, 2]),), None, (Ellipsis, Ellipsis), 9, (0, 0, 0, 0)]:
            assert fastread.read_region(lay, entries, get_chunk, key) is None


def test_default_policy_patch_reads_need_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default a one-thread patch read goes to python-blosc2; two threads and whole reads come here."""
    monkeypatch.setattr(fastread, "PATCH_THREADS_MIN", 2)
    a = values(np.random.default_rng(9), (10, 12), "<i2", False)
    path = write(tmp_path, a, (4, 5), (2, 5))
    for nthreads, served in ((1, 0), (2, 1)):
        with MLArray.open(path, dparams={"nthreads": nthreads}) as image:
            before = fastread.reads
            assert np.array_equal(image[2:7, 1], a[2:7, 1])
            assert fastread.reads == before + served
            assert np.array_equal(image.to_numpy(), a)
            assert fastread.reads == before + served + 1


def test_keys_it_cannot_plan_fall_back_to_blosc2(tmp_path: Path) -> None:
    a = values(np.random.default_rng(5), (10, 12), "<i4", False)
    path = write(tmp_path, a, (4, 5), (2, 5))
    with MLArray.open(path) as image:
        before = fastread.reads
        assert np.array_equal(image[::2, 1:9:3], a[::2, 1:9:3])
        assert fastread.reads == before
        # fancy keys are read as boxes of step-1 slices (mlarray.indexing): rows 0 and 3 here
        assert np.array_equal(image[np.array([0, 3])], a[np.array([0, 3])])
        assert fastread.reads == before + 2
        with pytest.raises(IndexError):
            image[10]


def test_environment_variable_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = values(np.random.default_rng(6), (10, 12), "<f8", False)
    path = write(tmp_path, a, (4, 5), (2, 5))
    monkeypatch.setenv(fastread.DISABLE_ENV, "1")
    assert not fastread.available()
    with MLArray.open(path) as image:
        before = fastread.reads
        assert np.array_equal(image[1:9, 2], a[1:9, 2])
        assert np.array_equal(image.to_numpy(), a)
        assert fastread.reads == before


def test_writes_switch_to_blosc2_until_reopened(tmp_path: Path) -> None:
    """After a write through 'r+' or 'c' the chunk index we hold is stale: reads use python-blosc2."""
    a = values(np.random.default_rng(7), (10, 12), "<i2", False)
    path = write(tmp_path, a, (4, 5), (2, 5))
    for mode in ("r+", "c"):
        with MLArray.open(path, mmap_mode=mode) as image:
            before = fastread.reads
            assert np.array_equal(image[2:5], a[2:5])
            assert fastread.reads == before + 1
            image[3, 4] = -5
            expected = a.copy()
            expected[3, 4] = -5
            assert np.array_equal(image[2:5], expected[2:5])
            assert np.array_equal(image.to_numpy(), expected)
            assert fastread.reads == before + 1
        if mode == "r+":
            a = expected


def corrupt_stream(path: Path) -> None:
    """Overwrite the compressed bytes of the first block of the first stored chunk (structure intact)."""
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        number = next(n for n, e in enumerate(section.entries) if e >= 0)
        chunk = section.chunk_bytes(number)
        start = int(chunk[32:36].view("<i4")[0])  # block 0's first stream
        size = int(chunk[start : start + 4].view("<i4")[0])
        assert size > 8, "the stream is not compressed data"
        at = section.layout.start + section.entries[number] + start + 4
    raw = bytearray(path.read_bytes())
    raw[at : at + size] = b"\xff" * size
    path.write_bytes(bytes(raw))


def test_corrupt_chunk_data_is_a_corrupt_frame_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    a = np.repeat(rng.integers(0, 50, size=(16, 16, 4), dtype=np.int32), 4, axis=2)  # compressible
    path = write(tmp_path, a, (8, 16, 16), (4, 8, 16), {"codec": blosc2.Codec.LZ4, "filters": []})
    corrupt_stream(path)
    for nthreads in (1, 3):
        with MLArray.open(path, dparams={"nthreads": nthreads}) as image:
            with pytest.raises(CorruptFrameError, match="cannot decode"):
                image[0:4]
            with pytest.raises(CorruptFrameError):
                image.to_numpy()
    with pytest.raises(CorruptFrameError):
        MLArray.load(path)


def test_plan_covers_every_byte_once() -> None:
    """The plan's copies tile the result exactly: every byte of it is written once."""
    shape, chunks, blocks = (11, 7, 5), (4, 3, 5), (3, 2, 2)
    a = np.zeros(shape, np.int64)
    for key in itertools.product([slice(None), slice(2, 9), 4, -1], [slice(1, 6), 0], [slice(None), 2]):
        p = plan(shape, chunks, blocks, key, itemsize=8)
        assert p is not None and p.shape == a[key].shape
        hits = np.zeros(max(a[key].nbytes, 1), np.uint8)
        for chunk in p.chunks:
            for shape_, _src, dst, _src_at, dst_at, width in chunk.boxes:
                np.ndarray((*shape_, width), np.uint8, hits, dst_at, (*dst, 1))[...] += 1
        assert (hits[: a[key].nbytes] == 1).all(), key


def test_reads_go_on_when_no_thread_can_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a thread or address-space limit the read runs on the threads it gets, down to none."""
    a = values(np.random.default_rng(10), (30, 20, 10), "<f8", False)
    path = write(tmp_path, a, (8, 8, 10), (4, 4, 5))

    def refuse(self: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threads, "helpers", threads.Helpers())
    monkeypatch.setattr(threads.threading.Thread, "start", refuse)
    with MLArray.open(path, dparams={"nthreads": 4}) as image:
        assert image[3:29, 2:19].tobytes() == a[3:29, 2:19].tobytes()
        assert image.to_numpy().tobytes() == a.tobytes()


def test_chunk_refs_spare_the_python_per_chunk(tmp_path: Path, engine: str) -> None:
    """With ``refs`` (a mapped local file) only chunks that need no decoding are looked at in Python."""
    shape, chunks, blocks = (12, 10, 9), (4, 5, 9), (2, 5, 3)
    path = tmp_path / "refs.mla"
    image = MLArray.create(path, shape, dtype="<i2", fill_value=0, chunk_size=chunks, block_size=blocks)
    expected = np.zeros(shape, "<i2")
    expected[4:8] = values(np.random.default_rng(12), (4, 10, 9), "<i2", False)
    image[4:8] = expected[4:8]
    image.close()
    with MLArray.open(path) as reopened:
        section = reopened._chunks
        assert section is not None
        asked: list[int] = []

        def get_chunk(number: int) -> Any:
            asked.append(number)
            return section.chunk_bytes(number)

        got = fastread.read_region(section.layout, section.entries, get_chunk, ..., refs=section.chunk_refs)
        assert got is not None and got.tobytes() == expected.tobytes()
        plain = {n for n, e in enumerate(section.entries) if e >= 0 and not section.chunk_bytes(n)[31] & 0x70}
        assert plain, "the file has no chunk to decode"
        if engine == "compiled":  # plain chunks come from refs; only the special ones are fetched
            assert not plain & set(asked)
        addresses, sizes, pending, whole = section.chunk_refs(range(section.layout.nchunks))
        assert {n for n in range(section.layout.nchunks) if addresses[n]} == plain
        assert all(sizes[n] == len(section.chunk_bytes(n)) for n in plain)
        assert not pending.any()  # chunk_bytes checked every chunk whole above

        def strided(numbers: Any) -> Any:
            a, s, p, w = section.chunk_refs(numbers)
            both_ = np.stack([a, s], axis=1)
            return both_[:, 0], both_[:, 1], p, w  # views with a stride of 16 bytes

        if engine == "compiled":
            with pytest.raises(ValueError, match="contiguous vectors"):
                fastread.read_region(section.layout, section.entries, get_chunk, ..., refs=strided)


def test_a_threaded_whole_load_reports_the_first_bad_chunk(tmp_path: Path) -> None:
    """A bad chunk in a load on two threads is reported as one thread would report it."""
    a = np.random.default_rng(13).integers(0, 50, size=(24, 20, 10), dtype=np.int32)  # compressible
    path = write(tmp_path, a, (4, 5, 10), (2, 5, 5))
    with MLArray.open(path, dparams={"nthreads": 2}) as image:
        assert image.to_numpy().tobytes() == a.tobytes()
    bad = break_block_offsets(path, (5, 17))
    assert bad, "chunks 5 and 17 are stored uncompressed"
    for nthreads in (1, 2):
        with pytest.raises(CorruptFrameError, match=f"chunk {bad[0]}: block offset outside the chunk"):
            MLArray.load(path, dparams={"nthreads": nthreads})


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_whole_loads_from_the_file_match_numpy(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """Random layouts, dtypes and thread counts: a load through pread gives the array, byte for byte."""
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 14), min_size=ndim, max_size=ndim)))
    chunks = tuple(data.draw(st.integers(1, s)) for s in shape)
    blocks = tuple(data.draw(st.integers(1, c)) for c in chunks)
    dtype = data.draw(st.sampled_from(["|u1", "<i2", "<f4", "<f8", "<c8", "|b1"]))
    a = values(np.random.default_rng(data.draw(st.integers(0, 2**16))), shape, dtype, data.draw(st.booleans()))
    path = write(tmp_path_factory.mktemp("load"), a, chunks, blocks)
    got = MLArray.load(path, dparams={"nthreads": data.draw(st.integers(1, 3))}).to_numpy()
    assert got.dtype == a.dtype and got.shape == a.shape and got.tobytes() == a.tobytes()


def _load_twice_threaded(path: str, expected_sum: int, result: Any) -> None:
    result.put(int(MLArray.load(path, dparams={"nthreads": 2}).to_numpy().sum()) == expected_sum)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_reads_with_threads_after_its_parent_did(tmp_path: Path) -> None:
    """The parent's read threads do not run in a forked child (a DataLoader worker): the child's threaded
    read waited for them forever."""
    import multiprocessing

    volume = np.arange(48**3, dtype=np.int32).reshape(48, 48, 48)
    path = str(tmp_path / "a.mla")
    MLArray(volume, chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(path)
    assert np.array_equal(MLArray.load(path, dparams={"nthreads": 2}).to_numpy(), volume)  # threads started here
    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child = context.Process(target=_load_twice_threaded, args=(path, int(volume.sum()), result))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked child hung in a threaded read")
    assert child.exitcode == 0 and result.get(timeout=10) is True
