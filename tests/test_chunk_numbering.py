"""The NumPy numbering of touched chunks and the grouping of shared index entries."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mlarray.storage.selection import chunk_numbers, shared_groups

Box = tuple[list[int], list[int], list[int], list[int]]


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    ndim = draw(st.integers(1, 4))
    starts, stops, chunks, grid = [], [], [], []
    for _ in range(ndim):
        c = draw(st.integers(1, 5))
        g = draw(st.integers(1, 5))
        a = draw(st.integers(0, c * g - 1))
        b = draw(st.integers(a, c * g))  # b == a: an empty box
        starts.append(a)
        stops.append(b)
        chunks.append(c)
        grid.append(g)
    return starts, stops, chunks, grid


@given(boxes())
def test_chunk_numbers_are_the_touched_chunks_in_c_order(
    box: tuple[list[int], list[int], list[int], list[int]],
) -> None:
    starts, stops, chunks, grid = box
    expected = [
        int(np.ravel_multi_index(index, grid))
        for index in itertools.product(
            *(sorted({i // c for i in range(a, b)}) for a, b, c in zip(starts, stops, chunks, strict=True))
        )
    ]
    numbers = chunk_numbers(starts, stops, chunks, grid)
    assert numbers.dtype == np.int64
    assert numbers.tolist() == expected


@given(st.lists(st.integers(-3, 6), max_size=40))
def test_shared_groups_gather_equal_values_in_order_of_first_position(values: list[int]) -> None:
    groups = shared_groups(np.array(values, dtype=np.int64))
    if len(set(values)) == len(values):
        assert groups is None
        return
    assert groups is not None
    expected: dict[int, list[int]] = {}
    for position, value in enumerate(values):
        expected.setdefault(value, []).append(position)
    assert [g.tolist() for g in groups] == list(expected.values())
