"""Streaming ``stats``: slab by slab, the same values as the whole-array NumPy computation it replaced."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlarray import MLArray
from mlarray import slabs as slabs_module
from mlarray.foreground import class_locations, locate_classes
from mlarray.slabs import OrderStatistics, median_of, percentile_of, slab_keys, sortable_keys
from mlarray.stats import PERCENTILES, _Source, _summarise, annotate

ORDER_FIELDS = ("min", "max", "median", "percentile_min", "percentile_max", "percentile_median")


def scaled_std(values: np.ndarray[Any, Any]) -> float:
    """``numpy.std`` of the values times the power of two that brings their range to about 1, scaled back.

    The same as ``numpy.std`` (scaling by a power of two is exact) except where NumPy's squares
    underflow: ``numpy.std([1e-200, 0])`` is 0, this is 5e-201.
    """
    width = float(values.max() - values.min()) if values.size else 0.0
    if width == 0:
        return float(values.std())
    exponent = math.frexp(width)[1]
    return math.ldexp(float(np.ldexp(values, -exponent).std()), exponent)


def reference_stats(data: np.ndarray[Any, Any]) -> dict[str, float] | None:
    """What ``mlarray.stats.intensity_stats`` computed before it streamed: NumPy on the whole array."""
    if data.dtype.kind == "c" or data.size == 0:
        return None
    values = data.astype(np.float64, copy=False).reshape(-1)
    finite = values[np.isfinite(values)] if data.dtype.kind == "f" else values
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, PERCENTILES)
    inside = finite[(finite >= low) & (finite <= high)]
    if inside.size == 0:  # two distinct values: the earlier code failed here (a NaN mean); now they are left out
        inside = np.array([np.nan])
    return {
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "std": scaled_std(finite),
        "percentile_min": float(low),
        "percentile_max": float(high),
        "percentile_mean": float(inside.mean()),
        "percentile_median": float(np.median(inside)),
        "percentile_std": scaled_std(inside),
    }


def reference_is_labels(data: np.ndarray[Any, Any]) -> bool:
    if data.dtype.kind not in "biu" or data.size == 0:
        return False
    if data.dtype.kind == "i" and data.min() < 0:
        return False
    return len(np.unique(data)) <= 255


def _streamed(data: np.ndarray[Any, Any], budget: int) -> tuple[Any, bool]:
    """Statistics over slabs of at most ``budget`` bytes (small, so that many slabs are merged)."""
    return _summarise(_Source(data.__getitem__, data.shape, data.dtype, None, budget))


def _compare(data: np.ndarray[Any, Any], budget: int) -> None:
    expected = reference_stats(data)
    two_values = expected is not None and math.isnan(expected["percentile_mean"])
    stats, labels = _streamed(data, budget)
    assert labels == reference_is_labels(data)
    if expected is None:
        assert stats is None
        return
    assert stats is not None
    for name in ORDER_FIELDS:  # order statistics: exactly NumPy's values
        if two_values and name == "percentile_median":
            continue
        assert getattr(stats, name) == expected[name], name
    exact = data.dtype.kind in "biu" and data.dtype.itemsize <= 4
    for name in ("mean", "percentile_mean"):
        if two_values and name == "percentile_mean":
            continue
        if exact:  # exact integer sums: NumPy's float64 sums are exact here too
            assert getattr(stats, name) == expected[name], name
        else:
            # 64-bit integers: NumPy rounds each value to float64 before adding, the stream adds exactly
            scale = max(abs(expected["min"]), abs(expected["max"])) * data.size
            assert getattr(stats, name) == pytest.approx(expected[name], rel=1e-12, abs=1e-15 * scale), name
    for name in ("std", "percentile_std"):
        if two_values and name == "percentile_std":
            continue
        scale = max(abs(expected["min"]), abs(expected["max"]))  # NumPy's rounded mean leaves ~1e-16 * scale
        assert getattr(stats, name) == pytest.approx(expected[name], rel=1e-9, abs=1e-12 * scale), name
    if two_values:  # nothing lies strictly between the percentiles: the earlier code failed on these
        assert stats.percentile_mean is None and stats.percentile_median is None


INT_DTYPES = ["u1", "i1", "u2", "i2", "i4", "u4", "i8", "u8", "bool"]


@given(
    st.sampled_from(INT_DTYPES).flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=1, max_dims=3, max_side=9))
    ),
    st.sampled_from([8, 24, 64, 1 << 20]),
)
def test_integer_statistics_equal_numpy(data: np.ndarray[Any, Any], budget: int) -> None:
    _compare(data, budget)


@given(
    st.sampled_from(["f2", "f4", "f8"]).flatmap(
        lambda dt: hnp.arrays(
            np.dtype(dt),
            hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
            elements=st.floats(-6e4, 6e4, width=8 * np.dtype(dt).itemsize)
            | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0]),
        )
    ),
    st.sampled_from([8, 40, 1 << 20]),
)
def test_float_statistics_equal_numpy(data: np.ndarray[Any, Any], budget: int) -> None:
    _compare(data, budget)


def test_order_statistics_descend_through_every_digit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With collection disabled the selection refines 16 bits per pass down to the exact key."""
    monkeypatch.setattr(slabs_module, "COLLECT", 0)
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1e3, 5000), rng.normal(0, 1e-9, 5000), [np.finfo(np.float64).max]])
    parts = np.array_split(values, 7)
    selector = OrderStatistics(lambda: (sortable_keys(p) for p in parts))
    ranks = [0, 1, 4999, 5000, 5001, 10_000]
    found = selector.select(ranks)
    ordered = np.sort(values)
    assert {r: slabs_module.key_values(np.array([k], np.uint64), "f")[0] for r, k in found.items()} == {
        r: ordered[r] for r in ranks
    }
    assert selector.passes_made == 4  # the top histogram, then three refinements of 16 bits


@given(st.integers(1, 10**6), st.sampled_from([0.0, 0.5, 25.0, 50.0, 99.5, 100.0, 33.3]))
def test_percentile_and_median_formulas_equal_numpy(n: int, q: float) -> None:
    rng = np.random.default_rng(n)
    values = np.sort(rng.normal(0, 1, min(n, 2000)))
    n = values.size
    assert percentile_of(n, q, lambda r: float(values[r])) == float(np.percentile(values, q))
    assert median_of(n, lambda r: float(values[r])) == float(np.median(values))


@given(
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12), elements=st.integers(0, 4)),
    st.sampled_from([1, 5, 17, 1 << 20]),
    st.integers(1, 6),
    st.integers(0, 3),
)
def test_streamed_class_locations_equal_the_in_memory_ones(
    labels: np.ndarray[Any, Any], budget: int, bound: int, seed: int
) -> None:
    keys = list(slab_keys(labels.shape, 1, None, budget))
    streamed = locate_classes(
        lambda: ((o, labels[k].reshape(-1)) for o, k in keys),
        labels.dtype,
        labels.shape,
        max_per_class=bound,
        seed=seed,
    )
    expected = class_locations(labels, max_per_class=bound, seed=seed)
    assert [(s.label, s.count, s.box) for s in streamed] == [(s.label, s.count, s.box) for s in expected]
    for a, b in zip(streamed, expected, strict=True):
        assert np.array_equal(a.coords, b.coords)


@given(
    hnp.array_shapes(min_dims=0, max_dims=4, max_side=7),
    st.sampled_from([1, 2, 8]),
    st.integers(1, 200),
)
def test_slabs_cover_the_array_once_in_c_order(shape: tuple[int, ...], itemsize: int, budget: int) -> None:
    data = np.arange(math.prod(shape)).reshape(shape)
    blocks = tuple(max(1, s // 2) for s in shape)
    seen = []
    for offset, key in slab_keys(shape, itemsize, blocks, budget):
        part = data[key].reshape(-1)
        assert part.size * itemsize <= budget or part.size == 1 or key == ()
        assert np.array_equal(part, np.arange(offset, offset + part.size))
        seen.append(part)
    assert np.array_equal(np.concatenate(seen) if seen else np.zeros(0), data.reshape(-1))


def test_annotate_streams_a_file_and_matches_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ct = (rng.normal(40, 300, (20, 30, 40))).astype(np.int16)
    MLArray(ct, chunk_size=(4, 8, 8), block_size=(2, 4, 4)).save(tmp_path / "ct.mla")
    with MLArray.open(tmp_path / "ct.mla", "r+") as image:
        meta = annotate(image)
    expected = reference_stats(ct)
    assert meta.stats is not None and expected is not None and meta.is_seg is False
    for name in ORDER_FIELDS + ("mean", "percentile_mean"):
        assert getattr(meta.stats, name) == expected[name], name
