"""Reads with any NumPy key from file-backed and compressed images equal NumPy's (mlarray.indexing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlarray import MLArray
from mlarray.errors import ResourceLimitError
from mlarray.indexing import MAX_BOXES, gather, gives_scalar, is_basic

DTYPES = ["bool", "int8", "uint16", "int32", "float32", "float64", "complex64"]


@st.composite
def keys(draw: st.DrawFn, shape: tuple[int, ...]) -> Any:
    """A key NumPy accepts for ``shape``: per axis an int, a slice, an int list/array or a mask, with ``None``s."""
    parts: list[Any] = []
    for n in shape:
        kinds = ["slice", "array", "list"] + (["int", "mask"] if n else ["mask"])
        kind = draw(st.sampled_from(kinds))
        if kind == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            bound = st.none() | st.integers(-n - 2, n + 2)
            parts.append(slice(draw(bound), draw(bound), draw(st.none() | st.sampled_from([1, 2, 3, -1, -2]))))
        elif kind == "mask":
            parts.append(draw(hnp.arrays(np.bool_, (n,))))
        else:
            values = st.lists(st.integers(-n, n - 1), max_size=5) if n else st.just([])
            picked = draw(values)
            parts.append(picked if kind == "list" and picked else np.asarray(picked, dtype=np.intp))
        if draw(st.integers(0, 5)) == 0:
            parts.append(None)
    if parts and draw(st.booleans()):
        cut = draw(st.integers(0, len(parts) - 1))
        parts = parts[:cut] + [Ellipsis] + parts[cut + 1 :]
    return tuple(parts)


def _numpy_or_error(array: np.ndarray[Any, Any], key: Any) -> Any:
    try:
        return array[key]
    except (IndexError, ValueError, TypeError) as exc:
        return type(exc)


def _same(got: Any, expected: Any) -> None:
    assert type(got) is type(expected) or (isinstance(got, np.ndarray) and isinstance(expected, np.ndarray))
    np.testing.assert_array_equal(got, expected, strict=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_any_key_reads_as_numpy(tmp_path: Path, shape: tuple[int, ...], dtype: str, data: Any) -> None:
    rng = np.random.default_rng(len(shape))
    array = (rng.normal(size=shape) * 50).astype(dtype)
    key = data.draw(keys(shape))
    expected = _numpy_or_error(array, key)
    path = tmp_path / "a.mla"
    MLArray(array, patch_size=None, chunk_size=[max(1, n // 2) for n in shape]).save(path)
    images = [MLArray(array, compressed=True, patch_size=None, chunk_size=[max(1, n // 2) for n in shape])]
    for mode in ("r", "r+", "c"):
        images.append(MLArray.open(path, mmap_mode=mode))
    try:
        for image in images:
            if isinstance(expected, type):
                with pytest.raises(expected):
                    image[key]
                continue
            got = image[key]
            _same(got, expected)
            if isinstance(got, np.ndarray) and got.size:
                assert got.flags.writeable
                before = image[key]
                got[...] = got.flat[-1] if array.dtype == bool else got.flat[-1] + 1  # an independent copy
                _same(image[key], before)
    finally:
        for image in images[1:]:
            image.close()


def test_the_audit_keys(tmp_path: Path) -> None:
    """Arrays separated by slices or ``None``: once refused as "corrupt" by the file-backed path."""
    array = np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6)
    MLArray(array).save(tmp_path / "a.mla")
    mask = np.array([True, False, True, False, False, False])
    cases = [
        (0, slice(None), [1, 2]),
        ([0, 1], slice(None), [1, 2]),
        (0, slice(None), mask),
        (0, None, [1, 2]),
        (None, 0, [1, 2]),
        (slice(None), 0, [1, 2]),
    ]
    with MLArray.open(tmp_path / "a.mla") as image:
        for key in cases:
            _same(image[key], array[key])
            out = np.empty(array[key].shape, np.int32)
            assert image.read(key, out=out) is out
            _same(out, array[key])


def test_scalars_and_zero_d_arrays_as_numpy(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    MLArray(array).save(tmp_path / "a.mla")
    for mode in ("r", "r+", "c"):
        with MLArray.open(tmp_path / "a.mla", mmap_mode=mode) as image:
            if mode == "c":
                image[0, 0, 0] = 0  # private chunks from now on
            for key in [(1, 2, 3), (-1, 0, np.int64(2)), (Ellipsis, 1, 2, 3), (1, Ellipsis, 2, 3), (1, 2, 3, None)]:
                _same(image[key], array[key])
    assert gives_scalar((1, np.uint8(2)), 2) and not gives_scalar((1, Ellipsis, 2), 2) and not gives_scalar((1,), 2)
    assert is_basic((1, slice(None), None, Ellipsis)) and not is_basic(([1],)) and not is_basic((True,))


def test_sparse_picks_read_only_the_boxes_they_need() -> None:
    shape = (400, 30, 40)
    array = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    boxes: list[tuple[slice, ...]] = []

    def read(box: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        boxes.append(box)
        return array[box]

    key: Any = ([0, -1, 1, 399],)
    _same(gather(shape, array.dtype, key, read, 1 << 30), array[key])
    assert sorted(b[0] for b in boxes) == [slice(0, 2), slice(399, 400)]  # two runs, not the whole axis
    scattered = [
        (np.arange(0, 400, 3)[:, None], slice(None), [0, 39]),
        np.ix_(np.arange(0, 400, 2), [1, 5, 9], np.arange(0, 40, 2)),
    ]
    for key in scattered:
        boxes.clear()
        _same(gather(shape, array.dtype, key, read, 1 << 30), array[key])
        assert 1 <= len(boxes) <= MAX_BOXES


def test_a_key_whose_boxes_exceed_the_memory_limit_is_refused() -> None:
    array = np.zeros((100, 100), np.float64)
    with pytest.raises(ResourceLimitError):
        gather(array.shape, array.dtype, ([0, 99], slice(None)), lambda box: array[box], limit=1000)
    got = gather(array.shape, array.dtype, ([0, 99], slice(0, 2)), lambda box: array[box], limit=1000)
    _same(got, array[[0, 99], 0:2])


def test_bad_keys_raise_numpys_errors(tmp_path: Path) -> None:
    array = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    MLArray(array).save(tmp_path / "a.mla")
    with MLArray.open(tmp_path / "a.mla") as image:
        for key, error in [
            ((0, slice(None), [7]), IndexError),
            (([0, 1], slice(None), [0, 1, 2]), IndexError),
            ((0, np.array([True, False])), IndexError),
            ((-1, slice(-2, -5, -1), np.array([-2, -1]), np.array([], np.int8)), IndexError),
            ((0, [1.5]), IndexError),
        ]:
            with pytest.raises(error):
                array[key]
            with pytest.raises(error):
                image[key]


def test_zero_d_index_arrays_keep_numpys_scalar_or_array(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.int16)
    MLArray(array).save(tmp_path / "a.mla")
    with MLArray.open(tmp_path / "a.mla") as image:
        for key in [
            (Ellipsis, np.array(-5)),
            (np.array(2), Ellipsis),
            (np.array(2), None),
            (np.array(2),),
            np.array(3),
        ]:
            _same(image[key], array[key])  # (..., 0-d array) is a 0-d array in NumPy, (0-d array,) a scalar


def test_a_list_key_needs_memory_of_the_result_not_of_coordinates() -> None:
    import tracemalloc

    shape = (2, 1024, 1024)
    array = np.arange(np.prod(shape), dtype=np.uint32).astype(np.uint8).reshape(shape)
    tracemalloc.start()
    got = gather(shape, array.dtype, ([0, 1],), lambda box: array[box], 1 << 30)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    _same(got, array[[0, 1]])
    assert peak < 3 * array.nbytes  # boxes and result; was 57x the result (an intp per element and axis)


def test_scattered_picks_on_many_axes_read_few_small_boxes() -> None:
    shape = (6,) * 7
    array = np.arange(6**7, dtype=np.int32).reshape(shape)
    boxes: list[tuple[slice, ...]] = []

    def read(box: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        boxes.append(box)
        return array[box]

    key = ([0, 5],) * 7
    _same(gather(shape, array.dtype, key, read, limit=1 << 20), array[key])
    assert all(b.stop - b.start == 1 for box in boxes for b in box)  # was: every axis merged into one run


def _bad_key_cases() -> list[Any]:
    return [
        (-5,),
        (5,),
        (0, 5),
        (..., -5),
        (0, 0, 0),
        (..., 0, slice(0, 1.5)),
        (2, slice(0, 1.5), slice(None, None, -1)),
    ]


def test_a_copy_on_write_image_checks_keys_after_a_write(tmp_path: Path) -> None:
    """``mmap_mode="c"`` after a write: out-of-range keys once read other positions' values."""
    array = np.arange(3 * 4, dtype=np.int32).reshape(3, 4)
    MLArray(array).save(tmp_path / "a.mla")
    with MLArray.open(tmp_path / "a.mla", mmap_mode="c") as image:
        image[0, 0] = -1
        array[0, 0] = -1
        for key in _bad_key_cases():
            expected = _numpy_or_error(array, key)
            assert isinstance(expected, type), key
            with pytest.raises(expected):
                image[key]
        _same(image[-3], array[-3])
        _same(image[[0, -1], -4], array[[0, -1], -4])


def test_keys_with_two_problems_raise_numpys_error_everywhere(tmp_path: Path) -> None:
    """NumPy reports the wrong number of indices before a float slice; so must every image."""
    array = np.arange(7 * 3, dtype=np.int32).reshape(7, 3)
    MLArray(array).save(tmp_path / "a.mla")
    images = [MLArray(array, compressed=True), MLArray.open(tmp_path / "a.mla")]
    images.append(MLArray.open(tmp_path / "a.mla", mmap_mode="r+"))
    try:
        for key in [(..., 0, 0, slice(0, 1.5)), (9, slice(0, 1.5), 0)]:
            expected = _numpy_or_error(array, key)
            for image in images:
                with pytest.raises(expected):
                    image[key]
    finally:
        for image in images[1:]:
            image.close()


@pytest.mark.parametrize("index_dtype", ["uint8", "int8", "uint16", "int16"])
def test_small_integer_index_arrays_on_long_axes(tmp_path: Path, index_dtype: str) -> None:
    """``part + n`` in the index's own dtype overflowed (uint8 indices on an axis of 300)."""
    array = np.arange(300 * 2, dtype=np.int16).reshape(300, 2)
    MLArray(array).save(tmp_path / "a.mla")
    index = np.array([1, 2, 127] + ([-1, -2] if index_dtype.startswith("int") else []), dtype=index_dtype)
    with MLArray.open(tmp_path / "a.mla") as image:
        for key in [(index,), (index, 1), (slice(None), np.array([1, 0], dtype=index_dtype))]:
            _same(image[key], array[key])
            _same(MLArray(array, compressed=True)[key], array[key])
