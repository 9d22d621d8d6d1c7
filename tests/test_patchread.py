"""The short path of one-thread patch reads (mlarray.storage.patchread).

A box key of an image opened read-only goes to C in one call with the tables of every
chunk; the first read of a chunk is refused there, checked and noted (special chunks'
values included), and read again. Every test compares with NumPy byte for byte and counts
the reads the general path (``fastread.read_region``) served.
"""

from __future__ import annotations

import array
import ctypes
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corrupt import break_block_offsets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.errors import CorruptFrameError, FileChangedError, MLArrayError
from mlarray.storage import blockcopy, fastread, patchread

pytestmark = pytest.mark.skipif(
    blockcopy.HELPER is None or not fastread.available(), reason=f"no compiled loop: {blockcopy.STATUS}"
)


@pytest.fixture
def general(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The keys the general read path was asked to read."""
    asked: list[Any] = []
    real = fastread.read_region

    def counting(layout: Any, entries: Any, get_chunk: Any, key: Any, **kwargs: Any) -> Any:
        asked.append(key)
        return real(layout, entries, get_chunk, key, **kwargs)

    monkeypatch.setattr(fastread, "read_region", counting)
    return asked


def special_file(path: Path, dtype: str, fill: Any) -> np.ndarray[Any, Any]:
    """A file of 3 x 2 x 2 chunks, all but the middle slab of one value (special chunks and entries)."""
    shape = (12, 10, 9)
    image = MLArray.create(path, shape, dtype=dtype, fill_value=fill, chunk_size=(4, 5, 5), block_size=(2, 5, 3))
    expected = np.full(shape, fill, dtype=dtype)
    rng = np.random.default_rng(7)
    middle = rng.integers(0, 100, size=(4, 10, 9)).astype(dtype)
    image[4:8] = middle
    expected[4:8] = middle
    image.close()
    return expected


CASES = [
    ("<f4", 0.0),  # zeros
    ("<f8", np.nan),  # NaN
    ("<i2", 7),  # bytes 07 00: not one byte repeated
    ("<i2", -1),  # bytes ff ff: a memset
    ("|u1", 200),
    ("|b1", True),
    ("<c8", 1 + 2j),
    ("<u8", 2**63 + 5),
]


@pytest.mark.parametrize(("dtype", "fill"), CASES)
def test_special_chunks_are_filled_by_the_short_path(tmp_path: Path, dtype: str, fill: Any, general: list[Any]) -> None:
    """Boxes over special chunks and entries: their values are learnt once, then filled in C."""
    path = tmp_path / "special.mla"
    expected = special_file(path, dtype, fill)
    keys = [
        (slice(0, 12), slice(0, 10), slice(0, 9)),
        (slice(1, 5), slice(3, 8), slice(2, 9)),
        (slice(9, 40), slice(None), slice(4, 5)),
    ]
    with MLArray.open(path) as image:
        for key in keys:
            assert image[key].tobytes() == expected[key].tobytes()
        reader = image._chunks._patches  # type: ignore[union-attr]
        assert isinstance(reader, patchread.PatchReader)
        assert reader._known.sum() == 8  # the chunks outside the middle slab stand for the fill value
        for key in keys:
            got = image[key]
            assert got.dtype == expected.dtype and got.tobytes() == expected[key].tobytes()
    assert general == []


def test_boxes_of_unchecked_chunks_are_checked_first(tmp_path: Path) -> None:
    """A box refused in C (chunks not checked) is checked and read in the same call; a damaged block is reported."""
    a = np.arange(20 * 20 * 10, dtype="<i4").reshape(20, 20, 10)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(5, 10, 10), block_size=(5, 5, 5)).save(path)
    bad = break_block_offsets(path, [3])
    assert bad == [3]
    with MLArray.open(path) as image:
        assert np.array_equal(image[0:5, 0:10, 0:10], a[0:5, 0:10, 0:10])  # chunk 0: fine
        with pytest.raises(CorruptFrameError, match="chunk 3: block offset outside the chunk"):
            image[5:10, 10:20, 0:10]  # chunk 3 alone
        with pytest.raises(CorruptFrameError, match="chunk 3"):
            image[:, :, :]  # every chunk, 3 among them: nothing returned


def test_blocks_are_checked_on_their_first_decoding_only(tmp_path: Path) -> None:
    """Reads of the map remember the blocks they checked (a bit per block): later reads skip their checks.

    The short path and the general path (here an integer key, and a handle reading with
    two threads) share the section's marks. A damaged block of a chunk is still reported
    when a read first touches it, after other blocks of the same chunk were read.
    """
    a = np.arange(20 * 20 * 10, dtype="<i4").reshape(20, 20, 10)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(5, 10, 10), block_size=(5, 5, 5)).save(path)  # 4 blocks a chunk
    assert break_block_offsets(path, [3]) == [3]  # block 0 of chunk 3
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        marks = section.block_marks()
        assert marks is not None and marks[1] == 1 and not marks[0].any()
        for _ in range(2):
            assert np.array_equal(image[5:10, 15:20, 5:10], a[5:10, 15:20, 5:10])  # block 3 of chunk 3
            assert np.array_equal(image[0:5, 0:5, 0:10], a[0:5, 0:5, 0:10])  # blocks 0 and 1 of chunk 0
            reader = section._patches
            assert isinstance(reader, patchread.PatchReader) and reader._done is marks[0]
            assert marks[0].tolist() == [0b0011, 0, 0, 0b1000, 0, 0, 0, 0]
        assert np.array_equal(image[12, 0:10], a[12, 0:10])  # an integer key: the general path, chunk 4
        assert marks[0].tolist() == [0b0011, 0, 0, 0b1000, 0b1111, 0, 0, 0]
        with pytest.raises(CorruptFrameError, match="chunk 3: block offset outside the chunk"):
            image[5:10, 10:15, 0:5]  # block 0 of chunk 3
        with pytest.raises(CorruptFrameError, match="chunk 3: block offset outside the chunk"):
            image[7, 10:15]  # the same block, by the general path
        assert marks[0][3] == 0b1000
        assert np.array_equal(image[5:10, 15:20, 5:10], a[5:10, 15:20, 5:10])
    with MLArray.open(path, dparams={"nthreads": 2}) as image:  # the general path, on two threads
        assert np.array_equal(image[10:20, 0:20, 0:10], a[10:20, 0:20, 0:10])  # chunks 4-7
        marks = image._chunks.block_marks()  # type: ignore[union-attr]
        assert marks is not None and marks[0].tolist() == [0, 0, 0, 0, 0b1111, 0b1111, 0b1111, 0b1111]
        with pytest.raises(CorruptFrameError, match="chunk 3"):
            image[5:10, 10:20, 0:10]


def test_box_keys(tmp_path: Path) -> None:
    """What the short path reads (slices of step 1 and integers, as NumPy reads them), and that
    the other keys still read as NumPy reads them."""
    shape = (6, 7)
    assert patchread.box((slice(1, 3), slice(None)), shape) == ([1, 0], [3, 7], (2, 7))
    assert patchread.box((slice(np.int64(2), np.int32(9)), slice(0, 7, 1)), shape) == ([2, 0], [6, 7], (4, 7))
    assert patchread.box((slice(-2, None), slice(None)), shape) == ([4, 0], [6, 7], (2, 7))  # from the end
    assert patchread.box((slice(-9, 2),), shape) == ([0, 0], [2, 7], (2, 7))  # clipped; a missing axis is whole
    assert patchread.box((1, slice(2, 5)), shape) == ([1, 2], [2, 5], (3,))  # an integer drops its axis
    assert patchread.box((-1, np.int8(-7)), shape) == ([5, 0], [6, 1], ())
    assert patchread.box(3, shape) == ([3, 0], [4, 7], (7,))
    assert patchread.box((..., 2), shape) == ([0, 2], [6, 3], (6,))
    assert patchread.box((2, ..., slice(1, 2)), shape) == ([2, 1], [3, 2], (1,))  # ... of no axis
    for key in [
        (slice(0, 3, 2), slice(None)),  # a step
        (slice(None, None, -1), slice(None)),
        (slice(3, 3), slice(None)),  # empty
        (slice(4, 2), slice(None)),
        (6, slice(None)),  # an integer outside its axis
        (slice(None), -8),
        (..., ..., 1),  # two ...
        (1, 2, 3),  # too many axes
        (None, slice(None)),  # a new axis
        (True, slice(None)),  # a mask
        (np.True_, 1),
        (np.array([1, 2]), slice(None)),  # an index array
        (slice(0.5, 3), slice(None)),  # not an integer
        (1.0, slice(None)),
        [slice(0, 2), slice(0, 2)],  # a list
    ]:
        assert patchread.box(key, shape) is None, key
    assert patchread.box((), ()) is None  # no axes: nothing for the loop to read
    a = np.arange(42, dtype=np.uint16).reshape(shape)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(2, 3), block_size=(1, 3)).save(path)
    with MLArray.open(path) as image:
        for key in [
            (slice(0, 3, 2), slice(1, 9)),
            (slice(4, 2), slice(None)),
            (None, 1),
            (np.array([1, 2]), slice(None)),
        ]:
            assert np.array_equal(image[key], a[key]), key
        with pytest.raises(TypeError):
            image[slice(0.5, 3), slice(None)]
        with pytest.raises(IndexError):
            image[6, 0]


DTYPES = ["|u1", "<i2", "<u4", "<f4", "<f8", "|b1", "<c16"]


def random_file(data: st.DataObject, folder: Path, most: int) -> tuple[Path, np.ndarray[Any, Any]]:
    """A file of a random shape (1-4 axes of up to ``most``), layout and dtype, mostly zeros (special
    chunks) among random values, and its array."""
    ndim = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, most), min_size=ndim, max_size=ndim)))
    chunks = tuple(data.draw(st.integers(1, n + 2)) for n in shape)
    blocks = tuple(data.draw(st.integers(1, c)) for c in chunks)
    dtype = np.dtype(data.draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = (rng.integers(0, 4, size=shape) * (rng.random(shape) < 0.3)).astype(dtype)
    path = folder / f"r{ndim}.mla"
    MLArray(a, chunk_size=chunks, block_size=blocks).save(path)
    return path, a


def _basic_key(data: st.DataObject, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """A random key of step-1 slices (negative and out-of-range bounds too) and integers, with
    at most one ``...`` or fewer parts than axes."""
    parts: list[Any] = []
    for n in shape:
        if data.draw(st.booleans()):
            parts.append(data.draw(st.integers(-n, n - 1)))
        else:
            lo = data.draw(st.integers(-n - 2, n - 1))
            hi = data.draw(st.integers(-n, n + 2))
            parts.append(slice(data.draw(st.sampled_from([lo, None])), data.draw(st.sampled_from([hi, None]))))
    how = data.draw(st.sampled_from(["all", "fewer", "ellipsis"]))
    if how == "fewer":
        parts = parts[: data.draw(st.integers(0, len(parts)))]
    elif how == "ellipsis":
        lo = data.draw(st.integers(0, len(parts)))
        hi = data.draw(st.integers(lo, len(parts)))
        parts = [*parts[:lo], ..., *parts[hi:]]
    return tuple(parts)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_basic_keys_match_numpy_on_the_short_path(
    tmp_path: Path, data: st.DataObject, general: list[Any]
) -> None:
    """Integers, negative bounds, ``...`` and missing axes: NumPy's values, shapes and scalars through
    ``image[key]`` (no read planned in Python) and ``read(key, out=...)``."""
    path, a = random_file(data, tmp_path, most=7)
    shape, dtype = a.shape, a.dtype
    with MLArray.open(path) as image:
        for _ in range(4):
            key = _basic_key(data, shape)
            expected = a[key]
            planned = len(general)
            got = image[key]
            if np.size(expected):  # empty selections are the general path's
                assert len(general) == planned, key
            if np.ndim(expected) == 0:  # an integer per axis: a NumPy scalar, as NumPy gives
                assert type(got) is type(expected) and got.tobytes() == expected.tobytes(), key
                continue
            assert got.shape == expected.shape and got.dtype == a.dtype and got.tobytes() == expected.tobytes(), key
            out = np.full(expected.shape, 1, dtype=dtype)
            assert image.read(key, out=out) is out
            assert out.tobytes() == expected.tobytes(), key


def test_threads_learn_and_read_one_handle_at_once(tmp_path: Path) -> None:
    """Threads read boxes of one fresh handle at once: chunks are checked and learnt while others read."""
    path = tmp_path / "special.mla"
    expected = special_file(path, "<i2", 7)
    rng = np.random.default_rng(5)
    keys = []
    for _ in range(200):
        lo = [int(rng.integers(0, n)) for n in expected.shape]
        hi = [int(rng.integers(x + 1, n + 1)) for x, n in zip(lo, expected.shape, strict=True)]
        keys.append(tuple(slice(x, y) for x, y in zip(lo, hi, strict=True)))
    failures: list[str] = []
    with MLArray.open(path) as image:
        barrier = threading.Barrier(4)

        def work(offset: int) -> None:
            barrier.wait()
            for key in keys[offset::4]:
                if image[key].tobytes() != expected[key].tobytes():
                    failures.append(repr(key))

        workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert failures == []


def test_a_file_written_in_place_is_refused(tmp_path: Path) -> None:
    """The short path checks the file first, as every read does: written in place since, it is FILE_CHANGED."""
    a = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(5, 5, 5), block_size=(5, 5, 5)).save(path)
    with MLArray.open(path) as image:
        assert np.array_equal(image[0:5, 0:5, 0:5], a[0:5, 0:5, 0:5])
        with MLArray.open(path, mmap_mode="r+") as writer:
            writer[0:2, 0:2, 0:2] = 5
        with pytest.raises(FileChangedError):
            image[0:5, 0:5, 0:5]


@pytest.mark.parametrize("how", ["r+", "nthreads"])
def test_other_handles_take_the_general_path(tmp_path: Path, how: str, general: list[Any]) -> None:
    """Writable handles and threaded reads are read by the general path."""
    a = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(5, 5, 5), block_size=(5, 5, 5)).save(path)
    opened = MLArray.open(path, mmap_mode="r+") if how == "r+" else MLArray.open(path, dparams={"nthreads": 2})
    with opened as image:
        key = (slice(2, 8), slice(0, 10), slice(3, 4))
        assert np.array_equal(image[key], a[key])
    assert general == [key]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_boxes_match_numpy(tmp_path: Path, data: st.DataObject) -> None:
    """Random layouts and dtypes, regions of one value among random ones, random boxes: NumPy's bytes."""
    path, a = random_file(data, tmp_path, most=9)
    shape = a.shape
    with MLArray.open(path) as image:
        for _ in range(4):
            lo = [data.draw(st.integers(0, n - 1)) for n in shape]
            hi = [data.draw(st.integers(x + 1, n + 3)) for x, n in zip(lo, shape, strict=True)]
            key = tuple(slice(x, y) for x, y in zip(lo, hi, strict=True))
            got = image[key]
            assert got.shape == a[key].shape and got.dtype == a.dtype and got.tobytes() == a[key].tobytes()


def test_reads_into_a_buffer_take_the_short_path(tmp_path: Path, general: list[Any]) -> None:
    """``read(key, out=...)`` of a box decodes straight into the buffer, special chunks included."""
    path = tmp_path / "special.mla"
    expected = special_file(path, "<i2", 7)
    buffer = np.full((4, 5, 5), -3, dtype=np.int16)
    with MLArray.open(path) as image:
        for key in [(slice(0, 4), slice(0, 5), slice(0, 5)), (slice(6, 10), slice(5, 10), slice(4, 9))]:
            got = image.read(key, out=buffer)
            assert got is buffer and buffer.tobytes() == expected[key].tobytes()
        reader = image._chunks._patches  # type: ignore[union-attr]
        assert isinstance(reader, patchread.PatchReader)
        strided = np.zeros((8, 5, 5), dtype=np.int16)[::2]  # not C-contiguous: refused here, as read() refuses it
        assert reader.read((slice(0, 4), slice(0, 5), slice(0, 5)), strided) is None
    assert general == []


def test_closing_while_threads_read_gives_typed_errors(tmp_path: Path) -> None:
    """A handle closed while other threads read it: every read either succeeds or raises an MLArrayError."""
    a = np.arange(48 * 40 * 36, dtype="<i4").reshape(48, 40, 36)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(16, 16, 12), block_size=(8, 8, 12)).save(path)
    untyped: list[str] = []
    for trial in range(40):
        image = MLArray.open(path)
        image[0:16, 0:16, 0:12]
        stop = threading.Event()

        def reader(seed: int, image: MLArray = image, stop: threading.Event = stop) -> None:
            rng = np.random.default_rng(seed)
            while not stop.is_set():
                key = tuple(slice(int(x), int(x) + 12) for x in rng.integers(0, 24, 3))
                try:
                    assert image[key].tobytes() == a[key].tobytes()
                except MLArrayError:
                    return
                except Exception as exc:  # noqa: BLE001 - what the test looks for
                    untyped.append(f"{type(exc).__name__}: {exc}")
                    return

        workers = [threading.Thread(target=reader, args=(trial * 4 + k,)) for k in range(3)]
        for w in workers:
            w.start()
        time.sleep(0.002)
        image.close()
        stop.set()
        for w in workers:
            w.join()
        section = image._chunks
        assert section is None or section._map is None  # nothing mapped the file again after close
    assert untyped == []


@pytest.mark.parametrize("dtype", ["|u1", "<i2", "<f8"])
def test_every_row_width_is_copied(tmp_path: Path, dtype: str, general: list[Any]) -> None:
    """Rows of every width from 1 item to a whole block (the copy has a case per width class)."""
    a = np.random.default_rng(3).integers(0, 250, size=(3, 4, 300)).astype(dtype)
    path = tmp_path / "rows.mla"
    MLArray(a, chunk_size=(3, 4, 300), block_size=(1, 2, 150)).save(path)
    with MLArray.open(path) as image:
        for width in range(1, 151):
            for start in (0, 150 - width, 149 - width // 2):  # at either edge of a block, and across two
                key = (slice(0, 3), slice(1, 4), slice(start, start + width))
                assert image[key].tobytes() == a[key].tobytes(), (width, start)
    assert general == []


@pytest.mark.parametrize(("dtype", "fill"), [("|u1", 200), ("<i2", -1024), ("<f8", 1.5), ("<c16", 1 - 2j)])
def test_special_chunks_fill_rows_of_every_width(tmp_path: Path, dtype: str, fill: Any, general: list[Any]) -> None:
    """Special chunks fill rows of every width: longer than the fill's 1 KiB pieces, and whole runs of rows."""
    shape = (4, 6, 400)
    path = tmp_path / "fill.mla"
    image = MLArray.create(path, shape, dtype=dtype, fill_value=fill, chunk_size=(2, 6, 400), block_size=(1, 3, 200))
    expected = np.full(shape, fill, dtype=dtype)
    varied = np.arange(6 * 400).reshape(1, 6, 400).astype(dtype)
    image[2:3] = varied  # the second chunk decoded, the first stands for the fill value
    expected[2:3] = varied
    image.close()
    with MLArray.open(path) as image:
        for width in [*range(1, 40), 127, 128, 129, 130, 200, 255, 256, 257, 300, 399, 400]:
            for start in {0, 400 - width, (400 - width) // 3}:
                for rows in (slice(0, 4), slice(1, 2), slice(0, 3)):
                    for lines in (slice(0, 6), slice(2, 5)):  # whole rows of the chunk follow one another
                        key = (rows, lines, slice(start, start + width))
                        assert image[key].tobytes() == expected[key].tobytes(), (width, start, rows, lines)
        reader = image._chunks._patches  # type: ignore[union-attr]
        assert reader._known.sum() == 1  # the first chunk was filled in C
    assert general == []


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every box of two or more axes read through the stage, with streaming stores where the build has them."""
    assert blockcopy.HELPER is not None
    monkeypatch.setattr(patchread, "STAGE_MIN", 0)
    monkeypatch.setattr(blockcopy.HELPER, "streams", True)  # the C falls back to plain copies without SSE2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_staged_reads_match_numpy(tmp_path: Path, data: st.DataObject, staged: None) -> None:
    """Boxes read a row of chunks at a time through the stage: NumPy's bytes, integers and ``out=`` too."""
    path, a = random_file(data, tmp_path, most=9)
    used = 0
    with MLArray.open(path) as image:
        for _ in range(4):
            key = _basic_key(data, a.shape)
            expected = a[key]
            if not np.size(expected) or np.ndim(expected) == 0:
                continue
            before = patchread.staged
            got = image[key]
            assert got.shape == expected.shape and got.tobytes() == expected.tobytes(), key
            out = np.full(expected.shape, 1, dtype=a.dtype)
            assert image.read(key, out=out) is out and out.tobytes() == expected.tobytes(), key
            used += patchread.staged - before
    event(f"staged reads: {'some' if used else 'none'}")


@pytest.mark.parametrize(("dtype", "fill"), CASES)
def test_staged_reads_fill_special_chunks(tmp_path: Path, dtype: str, fill: Any, staged: None) -> None:
    expected = special_file(tmp_path / "s.mla", dtype, fill)
    with MLArray.open(tmp_path / "s.mla") as image:
        for key in [(slice(None),) * 3, (slice(1, 11), slice(2, 9), slice(0, 9)), (slice(3, 9), 4, slice(1, 8))]:
            before = patchread.staged
            got = image[key]
            assert got.tobytes() == expected[key].tobytes(), key
            assert patchread.staged > before  # twice where the first call left special chunks to Python


def test_every_read_of_two_or_more_axes_takes_the_stage(tmp_path: Path, staged: None, general: list[Any]) -> None:
    a = np.random.default_rng(5).normal(size=(20, 18, 16)).astype("<f4")
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(6, 7, 16), block_size=(3, 7, 4)).save(path)
    with MLArray.open(path) as image:
        for key in [(slice(2, 19), slice(0, 18), slice(3, 16)), (4, slice(1, 17), slice(0, 9)), (slice(5, 6), 3, 2)]:
            before = patchread.staged
            assert image[key].tobytes() == a[key].tobytes(), key
            assert patchread.staged > before, key  # twice for the first read of a fresh handle's chunks
    assert general == []


def test_the_staged_call_refuses_a_small_stage_or_other_strides(
    tmp_path: Path, staged: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_box_staged`` refuses a stage smaller than a row's part, a result not in C order or a box
    beyond the chunk grid, writing nothing and reading no table out of bounds."""
    a = np.arange(12 * 10 * 9, dtype=np.int32).reshape(12, 10, 9)
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(4, 5, 9), block_size=(2, 5, 3)).save(path)
    helper = blockcopy.HELPER
    assert helper is not None
    real = helper.read_box
    captured: list[array.array[int]] = []

    def capturing(address: int) -> int:
        captured.append(array.array("q", (ctypes.c_int64 * (22 + 3 * 3)).from_address(address)))
        return int(real(address))

    monkeypatch.setattr(helper, "read_box", capturing)
    key = (slice(1, 11), slice(2, 9), slice(0, 9))
    with MLArray.open(path) as image:
        assert image[key].tobytes() == a[key].tobytes()
        args = captured[-1]
        assert args[20] != 0 and args[21] >= 4 * 4 * 9 * 4  # staged: a row's part is 4 x 4 x 9 items at most
        stage = np.empty(4 * 4 * 9 * 4, dtype=np.uint8)
        for spoil in ("stage", "strides", "grid"):
            out = np.full((10, 7, 9), -5, dtype=np.int32)
            args[17], args[18] = out.ctypes.data, 0
            args[20], args[21] = stage.ctypes.data, stage.nbytes - (1 if spoil == "stage" else 0)
            args[-3:] = array.array("q", [9 * 4, 10 * 9 * 4, 4] if spoil == "strides" else [7 * 9 * 4, 9 * 4, 4])
            args[22 + 3] = 13 if spoil == "grid" else 11  # hi on axis 0: 13 lies in a fourth row of chunks
            assert real(args.buffer_info()[0]) == -1001, spoil
            assert args[18] == -1 and (out == -5).all(), spoil
            args[-3:] = array.array("q", [7 * 9 * 4, 9 * 4, 4])
            args[21], args[22 + 3] = stage.nbytes, 11
        assert real(args.buffer_info()[0]) > 0  # the same call, as it should be: read
        assert out.tobytes() == a[key].tobytes()


def test_boxes_whose_rows_of_chunks_cover_too_much_are_not_staged(
    tmp_path: Path, staged: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row of chunks whose part of the result exceeds ``STAGE_MAX`` is copied straight: no large stage is kept."""
    a = np.random.default_rng(9).integers(0, 9, size=(16, 24, 20)).astype("<i2")
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(8, 24, 20), block_size=(4, 12, 10)).save(path)
    monkeypatch.setattr(patchread, "STAGE_MAX", 8 * 24 * 20 * 2 - 1)  # one row of chunks: 8 x 24 x 20 items
    with MLArray.open(path) as image:
        before = patchread.staged
        assert image[0:16, 0:24, 0:20].tobytes() == a.tobytes()
        assert image[0:16, 0:24, 0:19].tobytes() == a[:, :, :19].tobytes()
        assert patchread.staged == before + 1  # only the second: 8 x 24 x 19 items fit


def read_path(mp: pytest.MonkeyPatch, how: str) -> str:
    """Set up reads of ``how`` (``"plain"``, ``"staged"``: every box of two or more axes through the
    stage, ``"general"``) for the life of ``mp``; the open mode that takes that path."""
    if how == "staged":
        assert blockcopy.HELPER is not None
        mp.setattr(patchread, "STAGE_MIN", 0)
        mp.setattr(blockcopy.HELPER, "streams", True)  # the C falls back to plain copies without SSE2
    return "r+" if how == "general" else "r"


def tiled_file(data: st.DataObject, folder: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    """A file made with a fill value (special chunks of one value), some chunks then written with
    zeros (of 32 bytes or more: special zeros chunks) or random data, drawn chunk by chunk, so
    runs of chunks of one value meet other values on every axis."""
    ndim = data.draw(st.integers(2, 4))
    grid = [data.draw(st.integers(1, 4)) for _ in range(ndim)]
    chunks = [data.draw(st.integers(2, 5)) for _ in range(ndim)]
    shape = tuple(g * c - data.draw(st.integers(0, c - 1)) for g, c in zip(grid, chunks, strict=True))
    blocks = tuple(data.draw(st.integers(1, c)) for c in chunks)
    dtype = np.dtype(data.draw(st.sampled_from(["|u1", "<i2", "<f4", "<f8", "<c8"])))
    fill = data.draw(st.sampled_from([1, 5] + ([np.nan] if dtype.kind in "fc" else [])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    path = folder / f"tiles{ndim}.mla"
    a = np.full(shape, fill, dtype=dtype)
    image = MLArray.create(path, shape, dtype=dtype, fill_value=fill, chunk_size=tuple(chunks), block_size=blocks)
    for at in np.ndindex(*grid):
        part = tuple(slice(q * c, (q + 1) * c) for q, c in zip(at, chunks, strict=True))
        kind = data.draw(st.sampled_from(["fill", "zeros", "random"]))
        if kind != "fill":
            a[part] = rng.integers(1, 100, size=a[part].shape) if kind == "random" else 0
            image[part] = a[part]
    image.close()
    return path, a


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_runs_of_chunks_of_one_value_match_numpy(tmp_path: Path, data: st.DataObject) -> None:
    """Chunks of one value next to each other are filled as one box where they hold the same value
    and cover the box on the trailing axes (``fill_run`` in ``csrc/loop.c``): NumPy's bytes through
    the patch path (plain and staged) and the general path, ``out=`` too, on boxes that start and
    end on chunk edges as often as not."""
    path, a = tiled_file(data, tmp_path)
    how = data.draw(st.sampled_from(["plain", "staged", "general"]))
    with pytest.MonkeyPatch.context() as mp, MLArray.open(path, mmap_mode=read_path(mp, how)) as image:
        chunks = image.meta.blosc2.chunk_size
        assert chunks is not None
        for _ in range(4):
            key = []
            for n, c in zip(a.shape, chunks, strict=True):
                edges = sorted({*range(0, n, c), n})
                lo = data.draw(st.sampled_from(edges[:-1]) | st.integers(0, n - 1))
                hi = data.draw(st.sampled_from([e for e in edges if e > lo]) | st.integers(lo + 1, n))
                key.append(slice(lo, hi))
            expected = a[tuple(key)]
            got = image[tuple(key)]
            assert got.shape == expected.shape and got.tobytes() == expected.tobytes(), key
            out = np.full(expected.shape, 3, dtype=a.dtype)
            assert image.read(tuple(key), out=out) is out and out.tobytes() == expected.tobytes(), key


# values whose bytes are all one byte (a run C-Blosc2 stores in a few bytes) and values whose are not
RUN_VALUES = {"|u1": [7, 255], "<i2": [0x0707, 7], "<f4": [np.frombuffer(b"AAAA", "<f4")[0], 1.5], "<f8": [-1.0]}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_blocks_of_one_byte_match_numpy(tmp_path: Path, data: st.DataObject) -> None:
    """Blocks whose streams are runs of one byte are filled in C, not decoded (``block_run`` in
    ``csrc/checks.c``), where the filters leave those bytes as they are: blocks of zeros, of one
    byte, of one item of different bytes, of random values and of values a filter turns into
    a run (a ramp under byte-delta, a bit pattern under bit-shuffle), under every filter
    pipeline and split mode, read through the patch path (plain and staged) and the general path."""
    import blosc2

    ndim = data.draw(st.integers(1, 3))
    blocks = [data.draw(st.integers(1, 6)) for _ in range(ndim - 1)]
    blocks.append(data.draw(st.integers(1, 6) | st.just(16)))  # 16 items: rows of 64 bytes for 4-byte items
    chunks = [b * data.draw(st.integers(1, 3)) for b in blocks]
    shape = tuple(c * data.draw(st.integers(1, 3)) - data.draw(st.integers(0, c - 1)) for c in chunks)
    dtype = data.draw(st.sampled_from(sorted(RUN_VALUES)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = np.zeros(shape, dtype=dtype)
    grid = [-(-n // b) for n, b in zip(shape, blocks, strict=True)]
    for at in np.ndindex(*grid):
        part = tuple(slice(q * b, (q + 1) * b) for q, b in zip(at, blocks, strict=True))
        kind = data.draw(st.sampled_from(["zeros", "value", "random", "ramp", "bits"]))
        size = a[part].size
        if kind == "value":
            a[part] = data.draw(st.sampled_from(RUN_VALUES[dtype]))
        elif kind == "random":
            a[part] = rng.integers(0, 100, size=a[part].shape)
        elif kind == "ramp":  # a run of 7s once byte-delta encoded (one-byte items)
            a[part] = (7 * np.arange(1, size + 1) % 256).reshape(a[part].shape)
        else:  # a run of 0x0f once bit-shuffled (one-byte items)
            a[part] = np.resize(np.array([255] * 4 + [0] * 4), size).reshape(a[part].shape)
    filters = data.draw(
        st.sampled_from(
            [
                [],
                [blosc2.Filter.SHUFFLE],
                [blosc2.Filter.BITSHUFFLE],
                [blosc2.Filter.BYTEDELTA],
                [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA],
                [blosc2.Filter.BITSHUFFLE, blosc2.Filter.BYTEDELTA],
            ]
        )
    )
    cparams = {
        "codec": data.draw(st.sampled_from([blosc2.Codec.LZ4, blosc2.Codec.ZSTD])),
        "filters": filters,
        "filters_meta": [0] * len(filters),
        "splitmode": data.draw(st.sampled_from([blosc2.SplitMode.ALWAYS_SPLIT, blosc2.SplitMode.NEVER_SPLIT])),
    }
    path = tmp_path / "runs.mla"
    MLArray(a, chunk_size=tuple(chunks), block_size=tuple(blocks), cparams=cparams).save(path)
    how = data.draw(st.sampled_from(["plain", "staged", "general"]))
    with pytest.MonkeyPatch.context() as mp:
        # the general path's results come zeroed (and zeros are not written) where some chunk is zeros
        mp.setattr(fastread, "ZEROED_MIN", data.draw(st.sampled_from([0, fastread.ZEROED_MIN])))
        # and block rows of whole cache lines (16 items of 4 or 8 bytes) written with streaming stores
        mp.setattr(fastread, "STREAM_MIN", data.draw(st.sampled_from([0, fastread.STREAM_MIN])))
        with MLArray.open(path, mmap_mode=read_path(mp, how)) as image:
            for _ in range(3):
                lo = [data.draw(st.integers(0, n - 1)) for n in shape]
                key = tuple(slice(x, data.draw(st.integers(x + 1, n))) for x, n in zip(lo, shape, strict=True))
                assert image[key].tobytes() == a[key].tobytes(), key
                out = np.full(a[key].shape, 3, dtype=dtype)
                assert image.read(key, out=out) is out and out.tobytes() == a[key].tobytes(), key
        nthreads = data.draw(st.sampled_from([1, 2]))
        assert MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy().tobytes() == a.tobytes()


@pytest.mark.parametrize(
    ("dtype", "filters", "halves"),
    [
        ("|u1", ["bitshuffle"], ([255] * 4 + [0] * 4, [255] * 4 + [0] * 4)),  # streams: runs of 0x0f
        ("|u1", ["bitshuffle"], ([0], [0])),  # zeros stay zeros: filled
        ("|u1", [], ([7], [7])),  # a run of 7s: filled
        ("<i2", [], ([0x0707], [0x0909])),  # split streams: a run of 07s, then one of 09s
        ("<i2", ["shuffle"], ([7], [7])),  # streams: 07s, then 00s
        ("<i2", ["shuffle"], ([0x0707], [0x0707])),  # streams: 07s twice (shuffled, so decoded)
        ("<f4", ["bitshuffle"], ([0.0], [0.0])),
    ],
)
@pytest.mark.parametrize("split", ["ALWAYS_SPLIT", "NEVER_SPLIT"])
def test_blocks_whose_streams_are_runs(tmp_path: Path, dtype: str, filters: list[str], halves: Any, split: str) -> None:
    """Blocks whose streams are runs, where a filter or split streams make the values other than
    the runs' byte: NumPy's values (a fill of the stream's byte would differ), on every path."""
    import blosc2

    rows = [np.resize(np.array(half, dtype=dtype), (8, 16)) for half in halves]
    a = np.concatenate([np.concatenate(rows), np.zeros((16, 16), dtype=dtype)], axis=1)  # a block, then zeros
    cparams = {
        "codec": blosc2.Codec.LZ4,
        "filters": [getattr(blosc2.Filter, f.upper()) for f in filters],
        "filters_meta": [0] * len(filters),
        "splitmode": getattr(blosc2.SplitMode, split),
    }
    MLArray(a, chunk_size=(16, 32), block_size=(16, 16), cparams=cparams).save(tmp_path / "r.mla")
    for mode in ("r", "r+"):
        with MLArray.open(tmp_path / "r.mla", mmap_mode=mode) as image:
            for key in [(slice(None), slice(None)), (slice(3, 13), slice(5, 20)), (slice(0, 9), slice(15, 17))]:
                assert image[key].tobytes() == a[key].tobytes(), (mode, key)
