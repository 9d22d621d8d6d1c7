"""Hypothesis strategies for valid headers and arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DTYPES = [
    np.bool_,
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]

finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e12, max_value=1e12)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(text, json_values, max_size=5)


@st.composite
def orthonormal(draw: st.DrawFn, n: int) -> list[list[float]]:
    """A signed permutation matrix, optionally rotated in one plane (exactly orthonormal up to rounding)."""
    perm = draw(st.permutations(range(n)))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
    m = np.zeros((n, n))
    for row, col in enumerate(perm):
        m[row, col] = signs[row]
    if n >= 2 and draw(st.booleans()):
        angle = draw(st.floats(0, 2 * np.pi))
        rot = np.eye(n)
        rot[0, 0] = rot[1, 1] = np.cos(angle)
        rot[0, 1], rot[1, 0] = -np.sin(angle), np.sin(angle)
        m = rot @ m
    return m.tolist()


@st.composite
def image_case(draw: st.DrawFn) -> dict[str, Any]:
    """An array and constructor keyword arguments that make a valid header for it."""
    ndim = draw(st.integers(1, 6))
    shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=6 if ndim > 3 else 12))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    data = draw(hnp.arrays(dtype, shape))
    labels = draw(
        st.lists(
            st.sampled_from(["spatial", "spatial", "channel", "temporal", "custom-axis"]), min_size=ndim, max_size=ndim
        )
    )
    n = sum(label == "spatial" for label in labels)
    kwargs: dict[str, Any] = {"axis_labels": labels}
    if n and draw(st.booleans()):
        kwargs["spacing"] = draw(st.lists(positive, min_size=n, max_size=n))
        kwargs["origin"] = draw(st.lists(finite, min_size=n, max_size=n))
        kwargs["direction"] = draw(orthonormal(n))
    meta: dict[str, Any] = {"source": draw(json_objects), "extra": draw(json_objects)}
    meta["is_seg"] = draw(st.none() | st.booleans())
    if draw(st.booleans()):
        low, high = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
        meta["stats"] = {"min": low, "max": high, "mean": draw(finite), "std": abs(draw(finite))}
    if n and draw(st.booleans()):
        boxes = []
        for _ in range(draw(st.integers(0, 3))):
            box = []
            for _ in range(n):
                a, b = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
                box.append([a, b])
            boxes.append(box)
        meta["bbox"] = {"bboxes": boxes, "scores": [draw(finite) for _ in boxes]}
    meta["spatial"] = {"coord_system": draw(st.sampled_from([None, "RAS", "LPS", "scanner"]))}
    kwargs["meta"] = meta
    kwargs["patch_size"] = draw(st.sampled_from(["default", None, 4]))
    return {"data": data, "kwargs": kwargs}
