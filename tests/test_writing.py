"""Writes into file-backed arrays follow NumPy exactly (mlarray/writing.py): values, broadcasting, errors."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlarray import MLArray, MLArrayError
from mlarray.writing import InvalidIndexError, InvalidKeyTypeError, ValueOverflowError

SHAPE = (5, 7, 6)
BASE = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
LAYOUT = {"chunk_size": (2, 4, 4), "block_size": (1, 2, 2)}


@st.composite
def keys(draw: Any) -> Any:
    kind = draw(st.sampled_from(["basic", "integers", "mask", "mixed", "bad"]))
    if kind == "basic":
        return draw(hnp.basic_indices(SHAPE, allow_newaxis=True, allow_ellipsis=True))
    if kind == "integers":
        return draw(hnp.integer_array_indices(SHAPE, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)))
    if kind == "mask":
        mask = draw(hnp.arrays(np.bool_, SHAPE[: draw(st.integers(1, 3))]))
        return mask
    if kind == "mixed":
        rows = draw(st.lists(st.integers(-SHAPE[1], SHAPE[1] - 1), min_size=1, max_size=4))
        return (draw(hnp.basic_indices((SHAPE[0],))), rows, draw(st.integers(-SHAPE[2], SHAPE[2] - 1)))
    return draw(st.sampled_from([(7,), (0, 0, 0, 0), ([0, 9],), (slice(None), [True, False]), (1.5,), ("a",)]))


@st.composite
def values(draw: Any, result_shape: tuple[int, ...]) -> Any:
    kind = draw(st.sampled_from(["scalar", "exact", "broadcast", "random", "overflow", "float"]))
    if kind == "scalar":
        return draw(st.integers(-1000, 1000))
    if kind == "overflow":
        return 70000
    if kind == "float":
        return draw(hnp.arrays(np.float64, result_shape, elements=st.floats(-100, 100)))
    if kind == "random":
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    elif kind == "exact":
        shape = result_shape
    else:
        shape = tuple(1 if draw(st.booleans()) else n for n in result_shape)
        shape = shape[draw(st.integers(0, len(shape))) :]
        if draw(st.booleans()):
            shape = (1, *shape)
    return draw(hnp.arrays(np.int16, shape, elements=st.integers(-300, 300)))


def _numpy_result(key: Any, value: Any) -> tuple[np.ndarray[Any, Any] | None, type[BaseException] | None]:
    expected = BASE.copy()
    try:
        expected[key] = value
    except (IndexError, TypeError, ValueError, OverflowError) as exc:
        return None, type(exc)
    return expected, None


@settings(max_examples=120)
@given(data=st.data())
def test_every_write_matches_numpy(data: st.DataObject) -> None:
    key = data.draw(keys(), label="key")
    try:
        result_shape = BASE[key].shape
    except (IndexError, TypeError, ValueError):
        result_shape = ()
    value = data.draw(values(result_shape), label="value")
    expected, error = _numpy_result(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.mla"
        MLArray(BASE, **LAYOUT).save(path)
        image = MLArray.open(path, mmap_mode="r+")
        if error is not None:
            with pytest.raises(error) as info:
                image[key] = value
            assert isinstance(info.value, MLArrayError) and info.value.code == "INVALID_ARGUMENT"
            np.testing.assert_array_equal(image.to_numpy(), BASE)  # nothing written
            image.close()
            np.testing.assert_array_equal(MLArray.load(path).to_numpy(), BASE)
            return
        image[key] = value
        np.testing.assert_array_equal(image.to_numpy(), expected)
        image.close()
        np.testing.assert_array_equal(MLArray.load(path).to_numpy(), expected)


@pytest.mark.parametrize("mode", ["r+", "c"])
def test_the_issues_examples(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "e.mla"
    MLArray(np.zeros((4, 16, 16), np.float32), **LAYOUT).save(path)
    e = MLArray.open(path, mmap_mode=mode)
    with pytest.raises(ValueError, match="could not broadcast") as info:
        e[0:2] = np.ones((3, 16, 16))  # today silently truncated
    assert isinstance(info.value, MLArrayError)
    assert not e.to_numpy().any()
    e[[0, 2]] = 1.0  # integer list
    e[e.to_numpy() > 0.5] = 2.0  # boolean mask
    e[1:3, [0, 5], 3] = np.array([7.0, 8.0])  # mixed fancy
    expected = np.zeros((4, 16, 16), np.float32)
    expected[[0, 2]] = 1.0
    expected[expected > 0.5] = 2.0
    expected[1:3, [0, 5], 3] = np.array([7.0, 8.0])
    np.testing.assert_array_equal(e.to_numpy(), expected)
    with pytest.raises(IndexError) as index_error:
        e[4] = 1
    assert isinstance(index_error.value, InvalidIndexError)
    with pytest.raises(IndexError):
        e["x"] = 1
    with pytest.raises(TypeError) as type_error:
        e[0] = {"a": 1}
    assert isinstance(type_error.value, InvalidKeyTypeError)
    e.close()
    on_disk = MLArray.load(path).to_numpy()
    np.testing.assert_array_equal(on_disk, expected if mode == "r+" else np.zeros((4, 16, 16), np.float32))


def test_integer_overflow_is_refused_like_numpy(tmp_path: Path) -> None:
    path = tmp_path / "u8.mla"
    MLArray(np.zeros((3, 4), np.uint8)).save(path)
    image = MLArray.open(path, mmap_mode="r+")
    with pytest.raises(OverflowError) as info:
        image[0] = 300
    assert isinstance(info.value, ValueOverflowError)
    image[0] = np.array([300, 1, 2, 3])  # an array is cast unsafely, as NumPy does
    assert image.to_numpy()[0].tolist() == [44, 1, 2, 3]


@settings(max_examples=40)
@given(data=st.data())
def test_copy_on_write_matches_numpy_and_keeps_the_file(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.mla"
        MLArray(BASE, **LAYOUT).save(path)
        before = path.read_bytes()
        image = MLArray.open(path, mmap_mode="c")
        expected = BASE.copy()
        for _ in range(data.draw(st.integers(1, 3), label="writes")):
            key = data.draw(keys(), label="key")
            try:
                result_shape = BASE[key].shape
            except (IndexError, TypeError, ValueError):
                continue
            value = data.draw(values(result_shape), label="value")
            try:
                expected[key] = value
            except (IndexError, TypeError, ValueError, OverflowError) as exc:
                with pytest.raises(type(exc)):
                    image[key] = value
                continue
            image[key] = value
            np.testing.assert_array_equal(image.to_numpy(), expected)
            probe = data.draw(keys(), label="read")
            try:
                want = expected[probe]
            except (IndexError, TypeError, ValueError):
                continue
            np.testing.assert_array_equal(image[probe], want)
        image.close()
        assert path.read_bytes() == before


def test_copy_on_write_keeps_only_the_written_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.mla"
    data = np.arange(32 * 32 * 32, dtype=np.int32).reshape(32, 32, 32)
    MLArray(data, chunk_size=(8, 8, 8), block_size=(4, 4, 4)).save(path)
    image = MLArray.open(path, mmap_mode="c")
    image[0, 0, 0] = -1
    image[9:11, 0, 0] = -2  # one chunk along axis 0: [8, 16)
    private = image._nd.private
    assert sorted(private) == [(0, 0, 0), (1, 0, 0)]  # 2 of 64 chunks, decompressed in memory
    expected = data.copy()
    expected[0, 0, 0], expected[9:11, 0, 0] = -1, -2
    np.testing.assert_array_equal(image.to_numpy(), expected)
    np.testing.assert_array_equal(image[8:12, :2, 0], expected[8:12, :2, 0])
    np.testing.assert_array_equal(image[[0, 9, 31], 0, 0], expected[[0, 9, 31], 0, 0])
    copy = tmp_path / "copy.mla"
    image.save(copy)
    np.testing.assert_array_equal(MLArray.load(copy).to_numpy(), expected)
    image.close()
    np.testing.assert_array_equal(MLArray.load(path).to_numpy(), data)
