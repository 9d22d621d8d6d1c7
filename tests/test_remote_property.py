"""Property: a read through a byte source equals NumPy's answer on the same data, for any layout and key.

The file is read from an ``io.BytesIO`` (no server: the decoding is what varies here);
both decoders run: the block-level reader of :mod:`mlarray.storage.fastread` when it is
present, and the NumPy chunk decoder of :mod:`mlarray.remote.decode`. Zeros chunks (stored
as index entries) are drawn too.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mlarray import MLArray

DTYPES = ["|u1", "<i2", "<u4", "<f4", "<f8", "|b1", "<c8"]


@st.composite
def layout_and_key(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str, Any]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 13), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    blocks = tuple(draw(st.integers(1, c)) for c in chunks)
    dtype = draw(st.sampled_from(DTYPES))
    parts: list[Any] = []
    for n in shape[: draw(st.integers(0, ndim))]:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
        else:
            start = draw(st.none() | st.integers(-n - 2, n + 2))
            stop = draw(st.none() | st.integers(-n - 2, n + 2))
            step = draw(st.none() | st.integers(1, 4) | st.integers(-4, -1))
            parts.append(slice(start, stop, step))
    if parts and draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), Ellipsis)
    for _ in range(draw(st.integers(0, 2))):  # new axes: they must not be counted as axes of the array
        parts.insert(draw(st.integers(0, len(parts))), None)
    return shape, chunks, blocks, dtype, tuple(parts)


@pytest.mark.parametrize("decoder", ["default", "numpy"])
@given(case=layout_and_key(), seed=st.integers(0, 2**16), zero_first=st.booleans())
@example(case=((3, 5), (2, 2), (1, 1), "<i2", (Ellipsis, 4, None)), seed=0, zero_first=False)
def test_reads_through_a_byte_source_equal_numpy(
    case: tuple[Any, ...], seed: int, zero_first: bool, decoder: str
) -> None:
    shape, chunks, blocks, dtype, key = case
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 200, shape).astype(dtype)
    if zero_first:
        data[tuple(slice(0, c) for c in chunks)] = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.mla"
        MLArray(data, chunk_size=chunks, block_size=blocks).save(path)
        stored = path.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        if decoder == "numpy":
            patch.setattr("mlarray.remote.array._fastread", lambda: None)
        image = MLArray.open(io.BytesIO(stored))
        np.testing.assert_array_equal(image.to_numpy(), data)
        try:
            expected = data[key]
        except IndexError:  # e.g. an integer that lands on a shorter axis after the ellipsis
            with pytest.raises(IndexError):
                image[key]
            return
        got = image[key]
        np.testing.assert_array_equal(got, expected)
        assert np.asarray(got).dtype == data.dtype and np.shape(got) == np.shape(expected)
