"""Regressions of ``mlarray.stats`` / ``mlarray stats`` found by an audit.

* big-endian arrays: values converted, not their bytes reinterpreted;
* floats near the float64 limit: no overflow in sums, squares or interpolations;
* a 4-D label map: ``mlarray stats`` with default options works (boxes, no class locations);
* bad input: ``InvalidArgumentError`` (code ``INVALID_ARGUMENT``), never a plain ``ValueError``.

References are computed here, independently: NumPy on the values in native order, and
exact ``Fraction`` arithmetic where NumPy's float64 arithmetic overflows.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

from mlarray import MLArray, MLArrayError, Stats
from mlarray.cli import app
from mlarray.errors import InvalidArgumentError
from mlarray.foreground import class_locations, locate_classes
from mlarray.slabs import percentile_positions
from mlarray.stats import (
    PERCENTILES,
    _Inside,
    _Source,
    _stats,
    _summarise,
    annotate,
    intensity_stats,
    looks_like_labels,
    update_stats,
)
from mlarray.validate import validate_file

runner = CliRunner()

Array = np.ndarray[Any, Any]
HUGE = float(np.finfo(np.float64).max)
NUMERIC = ["bool", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]
FIELDS = tuple(name for name in Stats.model_fields if not name.endswith("_key"))
"""The statistics (not the percentile keys)."""


def _streamed(data: Array, budget: int) -> tuple[Any, bool]:
    """``intensity_stats`` and ``looks_like_labels`` over slabs of at most ``budget`` bytes (many slabs)."""
    return _summarise(_Source(data.__getitem__, data.shape, data.dtype, None, budget))


def _exact_sqrt(value: Fraction) -> float:
    """``sqrt(value)`` of a non-negative fraction, to float64 (no overflow or underflow on the way)."""
    bits = 1200  # below 2**-1074 squared, above the largest float64 squared
    root = math.isqrt(value.numerator * (1 << (2 * bits)) // value.denominator)
    return float(Fraction(root, 1 << bits))


def _exact_moments(values: list[Fraction]) -> tuple[float, float]:
    """Mean and standard deviation of ``values``, exact and then rounded."""
    n = len(values)
    mean = sum(values, Fraction(0)) / n
    variance = sum(((v - mean) ** 2 for v in values), Fraction(0)) / n
    return float(mean), _exact_sqrt(variance)


def _interpolation(ordered: list[Fraction], q: float) -> float:
    """``numpy.percentile(x, q)`` (linear) computed exactly from the sorted values."""
    i, j, g = percentile_positions(len(ordered), q)
    return float(ordered[i] + (ordered[j] - ordered[i]) * Fraction(g))


def _reference(values: Array) -> dict[str, float | None]:
    """Every statistic, exactly, of the finite values (as Python numbers: no byte order, no overflow)."""
    finite = [Fraction(v) for v in values.reshape(-1).tolist() if math.isfinite(v)]
    ordered = sorted(finite)
    mean, std = _exact_moments(ordered)
    low, high = (_interpolation(ordered, q) for q in PERCENTILES)
    inside = [v for v in ordered if low <= v <= high]
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    out: dict[str, float | None] = {
        "min": float(ordered[0]),
        "max": float(ordered[-1]),
        "mean": mean,
        "median": float(median),
        "std": std,
        "percentile_min": low,
        "percentile_max": high,
        "percentile_mean": None,
        "percentile_median": None,
        "percentile_std": None,
    }
    if inside:
        inner = len(inside) // 2
        out["percentile_mean"], out["percentile_std"] = _exact_moments(inside)
        out["percentile_median"] = float(inside[inner] if len(inside) % 2 else (inside[inner - 1] + inside[inner]) / 2)
    return out


# --- bug 1: byte order ---------------------------------------------------------------------------


def _numpy_stats(native: Array) -> dict[str, float]:
    """NumPy's statistics of a native-order array (its float64 values; finite values only)."""
    values = native.astype(np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "median": float(np.median(values)),
        "percentile_min": float(np.percentile(values, PERCENTILES[0])),
        "percentile_max": float(np.percentile(values, PERCENTILES[1])),
    }


def _numpy_is_labels(native: Array) -> bool:
    if native.dtype.kind not in "biu":
        return False
    return bool(native.min() >= 0 or native.dtype.kind == "b") and len(np.unique(native)) <= 255


@given(
    st.sampled_from(NUMERIC).flatmap(
        lambda dt: hnp.arrays(
            np.dtype(dt),
            hnp.array_shapes(min_dims=1, max_dims=3, max_side=7),
            elements=st.floats(-6e4, 6e4, width=8 * np.dtype(dt).itemsize) if dt.startswith("f") else None,
        )
    ),
    st.sampled_from([">", "<"]),
    st.sampled_from([8, 24, 1 << 20]),
)
def test_statistics_of_either_byte_order_are_numpys(native: Array, order: str, budget: int) -> None:
    data = native.astype(native.dtype.newbyteorder(order))
    assert np.array_equal(data, native)  # the same values, other bytes
    stats, labels = _streamed(data, budget)
    assert labels == _numpy_is_labels(native) == looks_like_labels(data)
    assert stats is not None and stats == _streamed(native, budget)[0]
    assert intensity_stats(data) == intensity_stats(native)
    for name, expected in _numpy_stats(native).items():  # order statistics: exactly NumPy's
        assert getattr(stats, name) == expected, name
    reference = _reference(native.astype(np.float64))
    scale = max(abs(stats.min), abs(stats.max))
    assert stats.mean == pytest.approx(reference["mean"], rel=1e-12, abs=1e-15 * scale)
    tiny = float(np.finfo(np.float64).smallest_subnormal)  # [5e-324, 0]: std 2.5e-324 lies halfway, either neighbour
    assert stats.std == pytest.approx(reference["std"], rel=1e-9, abs=max(1e-12 * scale, tiny))


@pytest.mark.parametrize("dtype", ["i2", "u2", "i4", "u8", "f4", "f8", "i1"])
def test_the_audit_example_in_big_endian(dtype: str) -> None:
    values = np.array([3, 0, 5, 7]) if dtype.startswith("u") else np.array([-3, 0, 5, 7])
    stats = intensity_stats(values.astype(">" + dtype))
    assert stats is not None
    assert (stats.min, stats.max, stats.mean) == (values.min(), values.max(), values.mean())
    assert looks_like_labels(np.array([0, 1, 2, 3], ">" + dtype)) == (dtype[0] in "iu")
    assert not looks_like_labels(np.array([-3, 0, 5], ">i2"))  # 0xfffd read as native would be positive


@given(hnp.arrays(np.dtype(">i2"), hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=st.integers(0, 5)))
def test_class_locations_of_big_endian_labels_are_those_of_the_values(labels: Array) -> None:
    native = labels.astype("<i2")
    expected = class_locations(native, max_per_class=3)
    got = class_locations(labels, max_per_class=3)
    assert [(s.label, s.count, s.box) for s in got] == [(s.label, s.count, s.box) for s in expected]
    assert all(np.array_equal(a.coords, b.coords) for a, b in zip(got, expected, strict=True))
    assert [s.count for s in got] == [int((native == v).sum()) for v in np.unique(native[native != 0])]


def test_annotate_gives_the_same_header_for_either_byte_order() -> None:
    values = np.array([[0, 3, 3], [258, 0, 1]], dtype="<i2")
    little, big = MLArray(values), MLArray(values.astype(">i2"))
    assert annotate(little).stats == annotate(big).stats
    assert little.meta.is_seg and big.meta.is_seg
    assert little.meta.bbox == big.meta.bbox


# --- bug 2: huge floats --------------------------------------------------------------------------


def _check_against_exact(stats: Any, data: Array) -> None:
    """Every statistic recorded, finite, and equal to the exact one (NumPy's where it does not overflow)."""
    reference = _reference(data)
    values = data[np.isfinite(data)]
    with np.errstate(over="ignore", invalid="ignore"):
        numpy_order = {
            "median": float(np.median(values)),
            "percentile_min": float(np.percentile(values, PERCENTILES[0])),
            "percentile_max": float(np.percentile(values, PERCENTILES[1])),
        }
    scale = max(abs(float(values.min())), abs(float(values.max())))
    for name in FIELDS:
        got, expected = getattr(stats, name), reference[name]
        if expected is None:  # only two distinct values: none lies between the percentiles
            assert got is None, name
            continue
        assert got is not None and math.isfinite(got), name
        if name in ("min", "max"):
            assert got == expected, name
        elif name in numpy_order and math.isfinite(numpy_order[name]):
            assert got == numpy_order[name], name  # where NumPy does not overflow: its value, exactly
        elif name in ("mean", "percentile_mean"):
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15 * scale * values.size), name
        elif name in ("std", "percentile_std"):
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12 * scale), name
        else:  # an interpolation NumPy overflows in
            assert got == pytest.approx(expected, rel=1e-15), name


@pytest.mark.parametrize(
    "values",
    [
        [1e300, -1e300, 5e299, 0.0],
        [1.7e308, 1.7e308, -1.7e308],
        [HUGE, -HUGE, HUGE, -HUGE, 1e-300],
        [HUGE] * 5,
        [-HUGE, HUGE, 0.0, 1.0, -1.0, np.inf, np.nan],
        [1e-200, 0.0],  # squares underflow: NumPy says 0
        [0.0, 1e-310, 5e-324, 2e-310],
    ],
)
@pytest.mark.parametrize("budget", [8, 16, 1 << 20])
def test_huge_floats_do_not_overflow(values: list[float], budget: int) -> None:
    data = np.array(values, dtype=np.float64)
    stats, _ = _streamed(data, budget)
    _check_against_exact(stats, data)


def test_a_constant_huge_array_has_its_value_as_mean_and_no_spread() -> None:
    stats = intensity_stats(np.full(7, HUGE))
    assert stats is not None and (stats.mean, stats.std, stats.percentile_std) == (HUGE, 0.0, 0.0)


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=8),
        elements=st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from([HUGE, -HUGE, 1.7e308, -1.7e308, 0.0]),
    ),
    st.sampled_from([8, 32, 1 << 20]),
)
def test_any_finite_floats_give_finite_exact_statistics(data: Array, budget: int) -> None:
    stats, _ = _streamed(data, budget)
    _check_against_exact(stats, data)


def test_annotate_and_update_stats_record_huge_floats(tmp_path: Path) -> None:
    data = np.array([1e300, -1e300, 5e299, 0.0])
    image = MLArray(data)
    annotate(image)
    assert image.meta.stats is not None
    assert image.meta.stats.std == pytest.approx(np.std(data / 1e300) * 1e300, rel=1e-14)
    path = tmp_path / "huge.mla"
    MLArray(np.array([1.7e308, 1.7e308, -1.7e308])).save(path)
    meta = update_stats(path)
    assert meta.stats is not None and meta.stats.mean == pytest.approx(1.7e308 / 3, rel=1e-15)
    assert meta.stats.percentile_min == pytest.approx(-0.98 * 1.7e308, rel=1e-15)  # -1.7e308 + 0.01 * (2 * 1.7e308)
    assert validate_file(path).valid
    assert MLArray.load(path).meta.stats == meta.stats


def test_a_statistic_that_is_not_a_finite_float_is_left_unset() -> None:
    """The documented fallback: a value that does not round to a finite float64 is not written."""

    def order(rank: int) -> float:
        return [-HUGE, 0.0, HUGE][rank]

    def inside(low: float, high: float) -> _Inside:
        return _Inside(1, 1, math.inf, math.nan)

    stats = _stats(3, order, math.inf, math.nan, inside)
    assert (stats.mean, stats.std, stats.percentile_mean, stats.percentile_std) == (None, None, None, None)
    assert (stats.min, stats.median, stats.max, stats.percentile_median) == (-HUGE, 0.0, HUGE, 0.0)


# --- bug 3: a 4-D label map through `mlarray stats` ----------------------------------------------


def _spatial_boxes(labels: Array, spatial: list[int]) -> dict[int, list[list[float]]]:
    """Per foreground class, its box over the ``spatial`` axes (present at any position of the others)."""
    others = tuple(a for a in range(labels.ndim) if a not in spatial)
    boxes = {}
    for value in np.unique(labels[labels != 0]).tolist():
        where = np.argwhere((labels == value).any(axis=others))
        boxes[value] = [[float(lo), float(hi)] for lo, hi in zip(where.min(0), where.max(0), strict=True)]
    return boxes


@pytest.mark.parametrize(
    ("axis_labels", "spatial"),
    [
        (["spatial", "spatial", "spatial", "temporal"], [0, 1, 2]),
        (["channel", "spatial", "spatial", "spatial"], [1, 2, 3]),
    ],
)
def test_cli_stats_with_default_options_works_on_a_4d_label_map(
    tmp_path: Path, axis_labels: list[str], spatial: list[int]
) -> None:
    labels = np.random.default_rng(0).integers(0, 5, (4, 5, 6, 3)).astype(np.int16)
    labels[..., :1] = 0
    labels[0, 0, 0, 1] = 9  # class 9 at one voxel of one time point / channel
    path = tmp_path / "t4.mla"
    MLArray(labels, axis_labels=axis_labels).save(path)
    result = runner.invoke(app, ["stats", str(path)])
    assert result.exit_code == 0, result.output
    assert "label map, 5 classes, boxes" in result.output and "class locations" not in result.output
    meta = MLArray.load(path).meta
    assert meta.is_seg and meta.class_locations is None and meta.bbox is not None
    assert dict(zip(meta.bbox.labels or [], meta.bbox.bboxes, strict=True)) == _spatial_boxes(labels, spatial)
    assert meta.stats is not None and meta.stats.mean == labels.mean()
    assert validate_file(path).valid

    before = path.read_bytes()
    refused = runner.invoke(app, ["stats", str(path), "--class-locations", "--json"])
    assert refused.exit_code == 1
    assert '"code": "INVALID_ARGUMENT"' in refused.output and "non-spatial axes have length 1" in refused.output
    assert path.read_bytes() == before  # the failing file is left as it was


def test_a_4d_label_map_with_a_length_1_time_axis_gets_class_locations(tmp_path: Path) -> None:
    labels = np.zeros((4, 5, 6, 1), np.uint8)
    labels[1:3, 2, 2:5, 0] = 2
    path = tmp_path / "t1.mla"
    MLArray(labels, axis_labels=["spatial", "spatial", "spatial", "temporal"]).save(path)
    result = runner.invoke(app, ["stats", str(path), "--class-locations"])
    assert result.exit_code == 0, result.output
    meta = MLArray.load(path).meta
    assert meta.class_locations is not None and meta.bbox is not None
    assert meta.bbox.bboxes == [[[1.0, 2.0], [2.0, 2.0], [2.0, 4.0]]]
    assert meta.class_locations.classes[0].indices == np.flatnonzero(labels[..., 0] == 2).tolist()


# --- bug 4: error types --------------------------------------------------------------------------


def _refused(call: Any, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match) as caught:
        call()
    assert isinstance(caught.value, MLArrayError) and isinstance(caught.value, ValueError)
    assert caught.value.code == "INVALID_ARGUMENT"


def test_a_float_image_is_no_label_map() -> None:
    image = MLArray(np.array([[0.0, 1.0], [2.0, 0.0]]))
    _refused(lambda: annotate(image, seg=True), "integers or booleans, got dtype float64")
    assert image.meta.stats is None  # nothing was changed
    image.meta.is_seg = True
    _refused(lambda: annotate(image), "records is_seg")
    assert annotate(image, seg=False).is_seg is False


def test_update_stats_refuses_a_float_label_map_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.mla"
    MLArray(np.linspace(0, 1, 24).reshape(2, 3, 4)).save(path)
    before = path.read_bytes()
    _refused(lambda: update_stats(path, seg=True), "integers")
    assert path.read_bytes() == before


WIDE = [np.longdouble] if np.dtype(np.longdouble).itemsize > 8 else []  # float64 on some platforms: fine


@pytest.mark.parametrize("dtype", ["U3", "S2", "O", "M8[s]", "m8[s]", "V4", *WIDE])
def test_arrays_without_statistics_are_refused(dtype: Any) -> None:
    data = np.zeros(3, dtype=dtype)
    _refused(lambda: intensity_stats(data), "statistics need")
    _refused(lambda: looks_like_labels(data), "statistics need")


def test_bad_label_maps_and_bounds_are_refused() -> None:
    _refused(lambda: class_locations(np.zeros(3, np.float32)), "integers")
    _refused(lambda: class_locations(np.array(3, np.uint8)), "at least one axis")
    _refused(lambda: class_locations(np.zeros(3, np.uint8), max_total=0), "positive")
    _refused(lambda: locate_classes(lambda: iter(()), np.dtype("f8"), (3,)), "integers")
    _refused(lambda: annotate(MLArray(np.zeros((2, 2), np.uint8)), seg=True, max_per_class=0), "positive")
    _refused(lambda: annotate(MLArray()), "metadata-only")
