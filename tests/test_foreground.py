"""Class locations of label maps: exact counts, coordinates of the right class, bounded and seeded samples."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlarray.foreground import MAX_PER_CLASS, MAX_TOTAL, class_locations, per_class_bound


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.uint16]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=9),
        elements=st.integers(0, 5),
    ),
    st.integers(1, 20),
)
def test_counts_are_exact_and_coordinates_belong_to_their_class(labels: np.ndarray, bound: int) -> None:
    samples = class_locations(labels, max_per_class=bound)
    values, counts = np.unique(labels[labels != 0], return_counts=True)
    assert [s.label for s in samples] == values.tolist()
    assert [s.count for s in samples] == counts.tolist()
    for s in samples:
        assert s.coords.shape == (min(s.count, bound), labels.ndim)
        assert np.all(labels[tuple(s.coords.T)] == s.label)
        assert len({tuple(c) for c in s.coords.tolist()}) == len(s.coords)  # no voxel twice


def test_all_classes_with_background_none_and_booleans() -> None:
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 2] = True
    samples = class_locations(mask, background=None)
    assert [(s.label, s.count) for s in samples] == [(0, 19), (1, 1)]
    assert samples[1].coords.tolist() == [[1, 2]]


def test_sample_is_seeded_sorted_and_bounded() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random((40, 40, 40)) < 0.5).astype(np.uint8)
    a = class_locations(labels, max_per_class=500, seed=7)[0]
    b = class_locations(labels, max_per_class=500, seed=7)[0]
    c = class_locations(labels, max_per_class=500, seed=8)[0]
    assert a.coords.shape == (500, 3)
    assert np.array_equal(a.coords, b.coords)
    assert not np.array_equal(a.coords, c.coords)
    flat = np.ravel_multi_index(tuple(a.coords.T), labels.shape)
    assert np.all(np.diff(flat) > 0)


def test_the_total_bound_shares_out_between_classes() -> None:
    assert per_class_bound(1) == MAX_PER_CLASS
    assert per_class_bound(2) == min(MAX_PER_CLASS, MAX_TOTAL // 2)
    assert per_class_bound(10) == MAX_TOTAL // 10
    assert per_class_bound(40) == MAX_TOTAL // 40
    labels = np.arange(60, dtype=np.int32).reshape(3, 4, 5) % 6 + 1
    samples = class_locations(labels, max_per_class=100, max_total=12)
    assert all(len(s.coords) == 2 for s in samples)
    assert sum(s.count for s in samples) == labels.size


def test_floats_and_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="integers"):
        class_locations(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        class_locations(np.zeros(3, dtype=np.uint8), max_per_class=0)


def test_import_mlarray_imports_no_training_framework() -> None:
    code = (
        "import sys, mlarray, mlarray.foreground, mlarray.cli\n"
        "bad = sorted(m for m in ('torch', 'monai', 'torchio') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
