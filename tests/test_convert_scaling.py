"""Intensity scaling on conversion (spec 5.10): physical values in the smallest exact type, raw values back exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlarray.convert._scaling import physical_array, physical_values, raw_values
from mlarray.models import Scaling

RAW_TYPES = ["|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<f4"]

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
slopes = st.one_of(float32s.filter(lambda v: v != 0 and 1e-6 < abs(v) < 1e6), st.integers(-5, 5).filter(bool))
intercepts = st.one_of(float32s.filter(lambda v: abs(v) < 1e7), st.integers(-5000, 5000))


@st.composite
def raw_arrays(draw: Any) -> np.ndarray[Any, Any]:
    dtype = np.dtype(draw(st.sampled_from(RAW_TYPES)))
    elements = float32s.filter(lambda v: abs(v) < 1e6) if dtype.kind == "f" else None
    return draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=elements))


@given(raw=raw_arrays(), slope=slopes, intercept=intercepts, keep_raw=st.booleans())
@example(raw=np.array([0.25, 1.3, 2.9], np.float32), slope=2, intercept=1, keep_raw=False)  # float raw, whole scaling
@example(raw=np.array([0.5, 7.0], np.float32), slope=1, intercept=-1024, keep_raw=False)
def test_raw_values_come_back_bit_for_bit(
    raw: np.ndarray[Any, Any], slope: float, intercept: float, keep_raw: bool
) -> None:
    slope, intercept = float(slope), float(intercept)
    stored, scaling = physical_values(raw, slope, intercept, keep_raw=keep_raw)
    if slope == 1 and intercept == 0:
        assert scaling is None and stored is raw
        return
    assert scaling is not None and (scaling.slope, scaling.intercept) == (slope, intercept)
    assert scaling.raw_dtype == raw.dtype.str
    assert raw_values(stored, scaling).tobytes() == raw.tobytes()
    physical = raw.astype(np.float64) * slope + intercept
    if scaling.stored == "raw":
        assert stored is raw
        assert keep_raw or raw.dtype.kind == "f"  # physical values are only refused when they cannot invert
        np.testing.assert_array_equal(scaling.to_physical(stored), physical)
        return
    # Stored physical values are the binary64 values, exactly, in the smallest type the rule allows.
    np.testing.assert_array_equal(stored.astype(np.float64), physical)
    integral = raw.dtype.kind in "iu" and float(slope).is_integer() and float(intercept).is_integer()
    if integral:
        assert stored.dtype.kind in "iu"
        if stored.size and stored.dtype.itemsize > 1:
            smaller = [t for t in ("u1", "i1", "u2", "i2", "u4", "i4") if np.dtype(t).itemsize < stored.dtype.itemsize]
            assert not any(np.iinfo(t).min <= physical.min() and physical.max() <= np.iinfo(t).max for t in smaller), (
                stored.dtype
            )
    else:
        assert stored.dtype in (np.float32, np.float64)
        exact32 = np.array_equal(physical.astype(np.float32).astype(np.float64), physical)
        assert (stored.dtype == np.float32) == exact32


def test_examples_of_the_dtype_rule() -> None:
    ct = np.array([0, 1000, 4095], np.uint16)
    hu, scaling = physical_values(ct, 1.0, -1024.0)
    assert hu.dtype == np.int16 and hu.tolist() == [-1024, -24, 3071]
    half, _ = physical_values(np.array([0, 3, -7], np.int16), 0.5, 0.0)
    assert half.dtype == np.float32 and half.tolist() == [0.0, 1.5, -3.5]
    fine, _ = physical_values(np.array([1, 3, 32767], np.int16), 0.1, 0.0)
    assert fine.dtype == np.float64
    big, _ = physical_values(np.array([0, 255], np.uint8), 1000, 0)
    assert big.dtype == np.uint32 and big.tolist() == [0, 255000]
    same, none = physical_values(ct, 1.0, 0.0)
    assert none is None and same is ct
    assert physical_values(np.array([True]), 2.0, 1.0)[1] is None


def test_physical_array_for_formats_without_scaling() -> None:
    raw = np.array([0, 2, 4], np.int16)
    kept = Scaling(slope=0.5, intercept=-1.0, raw_dtype="<i2", stored="raw")
    out = physical_array(raw, kept)
    assert out.dtype == np.float32 and out.tolist() == [-1.0, 0.0, 1.0]
    stored = Scaling(slope=0.5, intercept=-1.0, raw_dtype="<i2", stored="physical")
    assert physical_array(out, stored) is out
    assert physical_array(raw, None) is raw


def test_nrrd_gets_physical_values_of_a_raw_image(tmp_path: Any) -> None:
    import nrrd

    from mlarray import Meta, MLArray
    from mlarray.convert import write_nrrd

    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    image = MLArray(raw, meta=Meta(scaling=Scaling(slope=2.0, intercept=-3.0, raw_dtype="<i2", stored="raw")))
    write_nrrd(image, tmp_path / "x.nrrd")
    data, _ = nrrd.read(str(tmp_path / "x.nrrd"), index_order="F")
    assert data.dtype == np.int8  # integral scaling, values -3..43: the smallest exact type
    np.testing.assert_array_equal(data, raw * 2 - 3)
