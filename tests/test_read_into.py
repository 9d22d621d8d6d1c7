"""``MLArray.read(key, out=...)``: reads decoded straight into the caller's array.

The buffer is deliberately dirty before each read (filled with a value the file never
holds), so a read that skipped any element of it, such as a chunk of zeros that the
decoder fills instead of decoding, shows up as a mismatch.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from corrupt import break_block_offsets
from engines import ENGINES, select_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.errors import CorruptFrameError, InvalidArgumentError
from mlarray.reading import selects_all
from mlarray.storage import fastread


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Reads through the compiled block loop, its NumPy stand-in, and python-blosc2's slicing."""
    return select_engine(str(request.param), monkeypatch)


def volume(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray[Any, Any]:
    """Random values with a zero slab and a constant slab (special chunks and runs), never 250."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 200, size=shape).astype(dtype)
    a[: shape[0] // 3] = 0
    a[shape[0] // 3 : shape[0] // 2] = 5
    return a


def dirty(shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
    return np.full(shape, 250, dtype=dtype)


@st.composite
def basic_keys(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """Slices (clipped, negative, empty) and integers over a prefix of the axes."""
    parts: list[Any] = []
    for n in shape[: draw(st.integers(0, len(shape)))]:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 2, n + 2)
            parts.append(slice(draw(bound), draw(bound)))
    return tuple(parts)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(1, 14), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from(["|u1", "<i2", "<f4", "<f8"]),
    data=st.data(),
)
def test_read_into_equals_numpy(tmp_path: Path, engine: str, shape: tuple[int, ...], dtype: str, data: Any) -> None:
    a = volume(shape, dtype, seed=len(shape))
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    blocks = tuple(data.draw(st.integers(1, c)) for c in chunks)
    path = tmp_path / "x.mla"
    MLArray(a, chunk_size=chunks, block_size=blocks, cparams={"codec": blosc2.Codec.LZ4HC}).save(path)
    threads = data.draw(st.sampled_from([1, 2]))
    with MLArray.open(path, dparams={"nthreads": threads}) as image:
        out = None
        for _ in range(3):
            key = data.draw(basic_keys(shape))
            want = a[key]
            if out is None or out.shape != np.shape(want):
                out = dirty(np.shape(want), a.dtype)
            else:
                out.fill(250)  # a reused buffer: every element must be written again
            before = fastread.reads
            got = image.read(key, out=out)
            assert got is out
            assert out.tobytes() == np.asarray(want).tobytes()
            # the path the engine names served it; the whole array is always loaded as to_numpy loads it
            assert (fastread.reads > before) == (engine != "blosc2" or selects_all(a.shape, key))


def test_reused_buffer_over_many_patches(tmp_path: Path, engine: str) -> None:
    """A training loop's pattern: one buffer, many random patches, some in special (zero) chunks."""
    a = volume((40, 36, 30), "<i2", seed=3)
    path = tmp_path / "ct.mla"
    MLArray(a, chunk_size=(10, 12, 15), block_size=(5, 6, 5)).save(path)
    rng = np.random.default_rng(4)
    out = dirty((16, 16, 16), a.dtype)
    with MLArray.open(path) as image:
        for _ in range(25):
            start = [int(rng.integers(0, n - 16 + 1)) for n in a.shape]
            key = tuple(slice(s, s + 16) for s in start)
            image.read(key, out=out)
            assert np.array_equal(out, a[key])


def test_read_into_a_batch_slot(tmp_path: Path, engine: str) -> None:
    a = volume((20, 18, 16), "<f4", seed=5)
    path = tmp_path / "mr.mla"
    MLArray(a, chunk_size=(8, 8, 8), block_size=(4, 4, 8)).save(path)
    batch = dirty((3, 1, 8, 8, 8), a.dtype)
    starts = [(0, 0, 0), (12, 10, 8), (5, 3, 7)]
    with MLArray.open(path) as image:
        for i, (z, y, x) in enumerate(starts):
            image.read((slice(z, z + 8), slice(y, y + 8), slice(x, x + 8)), out=batch[i, 0])
    for i, (z, y, x) in enumerate(starts):
        assert np.array_equal(batch[i, 0], a[z : z + 8, y : y + 8, x : x + 8])


def test_whole_array_scalars_and_without_out(tmp_path: Path, engine: str) -> None:
    a = volume((9, 7, 5), "<u2", seed=6)
    path = tmp_path / "w.mla"
    MLArray(a, chunk_size=(4, 4, 5), block_size=(2, 4, 5)).save(path)
    with MLArray.open(path) as image:
        whole = dirty(a.shape, a.dtype)
        assert np.array_equal(image.read(out=whole), a)
        point = dirty((), a.dtype)
        assert image.read((8, 6, 4), out=point) is point and point == a[8, 6, 4]
        assert np.array_equal(image.read((slice(2, 5), 1)), a[2:5, 1])  # no out: a new array
        assert isinstance(image.read((1, 2, 3)), np.ndarray)


def test_in_memory_images(tmp_path: Path) -> None:
    """Images that are not file-backed copy ``self[key]`` into ``out``."""
    a = volume((12, 10, 8), "<i2", seed=7)
    compressed = MLArray(a)
    compressed.compress()  # in place, as in mlarray 0.0.x
    for image in (MLArray(a), compressed):
        out = dirty((6, 10), a.dtype)
        assert image.read((slice(3, 9), slice(None), 4), out=out) is out
        assert np.array_equal(out, a[3:9, :, 4])


def test_written_images_read_their_new_values(tmp_path: Path) -> None:
    a = volume((12, 10, 8), "<f4", seed=8)
    path = tmp_path / "rw.mla"
    MLArray(a, chunk_size=(4, 5, 8)).save(path)
    with MLArray.open(path, mmap_mode="r+") as image:
        image[0:4] = 3.5
        out = dirty((6, 10, 8), a.dtype)
        image.read(slice(0, 6), out=out)
    a[0:4] = 3.5
    assert np.array_equal(out, a[0:6])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: np.empty((4, 5, 7), "<i2"), "shape (4, 5, 7) (the read has (4, 5, 6))"),
        (lambda: np.empty((4, 5, 6), "<f4"), "dtype float32 (the image stores int16)"),
        (lambda: np.empty((4, 5, 12), "<i2")[:, :, ::2], "is not C-contiguous"),
        (lambda: np.empty((4, 5, 6), ">i2"), "dtype >i2 (the image stores int16)"),
        (lambda: np.empty((4, 5, 6), "<i2").T.copy().T, "is not C-contiguous"),
        (lambda: [[0] * 6] * 5, "out must be a NumPy array, got list"),
    ],
)
def test_out_that_does_not_fit(tmp_path: Path, make: Any, message: str) -> None:
    a = volume((10, 5, 6), "<i2", seed=9)
    path = tmp_path / "bad.mla"
    MLArray(a).save(path)
    with MLArray.open(path) as image, pytest.raises(InvalidArgumentError, match=re.escape(message)):
        image.read(slice(2, 6), out=make())


def test_read_only_out_and_bad_keys(tmp_path: Path) -> None:
    a = volume((10, 5, 6), "<i2", seed=10)
    path = tmp_path / "ro.mla"
    MLArray(a).save(path)
    frozen = np.zeros((5, 6), a.dtype)
    frozen.flags.writeable = False
    with MLArray.open(path) as image:
        with pytest.raises(InvalidArgumentError, match="is read-only"):
            image.read(3, out=frozen)
        assert not frozen.any()
        with pytest.raises(IndexError):
            image.read(10, out=np.zeros((5, 6), a.dtype))
        with pytest.raises(IndexError):
            image.read((0, 0, 0, 0), out=np.zeros((), a.dtype))


def test_whole_array_reads_like_to_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``read(out=...)`` of the whole array takes the path of ``to_numpy``: chunks read from the file."""
    if not fastread.available():
        pytest.skip(f"fast path unavailable: {fastread.STATUS}")
    a = volume((24, 20, 10), "<f4", seed=11)
    path = tmp_path / "whole.mla"
    MLArray(a, chunk_size=(8, 10, 10), block_size=(4, 5, 5)).save(path)
    whole_keys = [..., (), slice(None), (slice(None),) * 3, (slice(0, 24), ...), (..., slice(-10, None))]
    for threads in (1, 2):
        with MLArray.open(path, dparams={"nthreads": threads}) as image:
            section = image._chunks
            assert section is not None
            used: list[int] = []

            def counted(numbers: Any, real: Any = section.chunk_offsets, used: list[int] = used) -> Any:
                used.append(len(numbers))
                return real(numbers)

            monkeypatch.setattr(section, "chunk_offsets", counted)
            out = dirty(a.shape, a.dtype)
            assert image.read(out=out) is out
            assert out.tobytes() == a.tobytes()
            assert used == [6], "the whole array was not read from the file chunk by chunk"
            for key in whole_keys:
                used.clear()
                out = dirty(a.shape, a.dtype)
                assert image.read(key, out=out) is out
                assert out.tobytes() == a.tobytes()
                assert used == [6], f"key {key!r} selects the whole array but took the patch path"
            out = dirty((23, 20, 10), a.dtype)
            used.clear()
            assert image.read(slice(0, 23), out=out).tobytes() == a[:23].tobytes()
            assert used == [], "a part of the array was read as a whole"


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple), data=st.data())
def test_selects_all_only_for_the_whole_array(shape: tuple[int, ...], data: Any) -> None:
    """A key called whole gives the array itself in its own shape; full slices and ``...`` are called whole."""
    x = np.arange(math.prod(shape)).reshape(shape)
    key = data.draw(basic_keys(shape) | st.just(...) | st.just((..., slice(None))))
    try:
        expected = x[key]
    except IndexError:
        return
    if selects_all(shape, key):
        assert expected.shape == x.shape and np.array_equal(expected, x)
    full = tuple(slice(None) if data.draw(st.booleans()) else slice(0, n) for n in shape)
    assert selects_all(shape, full) and selects_all(shape, ...) and selects_all(shape, ())


def test_whole_array_read_reports_the_first_bad_chunk(tmp_path: Path) -> None:
    """A damaged chunk fails ``read(out=...)`` as it fails ``to_numpy``, whatever the threads."""
    a = np.random.default_rng(13).integers(0, 50, size=(24, 20, 10), dtype=np.int32)  # compressible
    path = tmp_path / "bad-chunks.mla"
    MLArray(a, chunk_size=(4, 5, 10), block_size=(2, 5, 5)).save(path)
    bad = break_block_offsets(path, (5, 17))
    assert bad, "chunks 5 and 17 are stored uncompressed"
    for threads in (1, 2):
        with MLArray.open(path, dparams={"nthreads": threads}) as image:
            with pytest.raises(CorruptFrameError, match=f"chunk {bad[0]}: block offset outside the chunk"):
                image.to_numpy()
            with pytest.raises(CorruptFrameError, match=f"chunk {bad[0]}: block offset outside the chunk"):
                image.read(out=np.zeros(a.shape, a.dtype))
