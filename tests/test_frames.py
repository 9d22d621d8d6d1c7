"""Orientation-code frames (mlarray.frames): the changes every integration and converter uses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlarray.frames import GeometryError, change_frame, from_ras, orientation_matrix, ras_change, to_ras

CODES = ["".join(p) for letters in itertools.product("RL", "AP", "SI") for p in itertools.permutations(letters)]


def test_orientation_matrices() -> None:
    assert len(CODES) == 48 and all(orientation_matrix(c) is not None for c in CODES)
    np.testing.assert_array_equal(orientation_matrix("RAS"), np.eye(3))
    np.testing.assert_array_equal(orientation_matrix("lps"), np.diag([-1.0, -1.0, 1.0]))
    for bad in (None, "", "RA", "RASX", "LRS", "RAA", "scanner-xyz", "XYZ"):
        assert orientation_matrix(bad) is None


@given(code=st.sampled_from(CODES), n=st.integers(1, 5), data=st.data())
def test_to_ras_matches_change_frame_and_from_ras_inverts_it(code: str, n: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    affine = np.eye(n + 1)
    affine[:n, :] = rng.integers(-9, 10, size=(n, n + 1))
    ras = to_ras(affine, code)
    np.testing.assert_array_equal(from_ras(ras, code), affine)  # signed permutations: exact
    np.testing.assert_array_equal(ras[3:, :], affine[3:, :])  # world axes past the third (time) stay
    if ras_change(code, n) is None:
        np.testing.assert_array_equal(ras, affine)
        with pytest.raises(GeometryError):
            change_frame(affine, code, "RAS")
    elif n <= 3:
        np.testing.assert_array_equal(ras, change_frame(affine, code, "RAS"))


def test_the_common_cases() -> None:
    affine = np.array([[2.0, 0, 0, 10], [0, 3, 0, 20], [0, 0, 4, 30], [0, 0, 0, 1]])
    np.testing.assert_array_equal(to_ras(affine, "LPS")[:3, 3], [-10, -20, 30])
    np.testing.assert_array_equal(to_ras(affine, "LAS")[:3, 3], [-10, 20, 30])
    np.testing.assert_array_equal(to_ras(affine, "PIR")[:3, 3], [30, -10, -20])
    for unchanged in (None, "RAS", "scanner-xyz"):
        np.testing.assert_array_equal(to_ras(affine, unchanged), affine)
    plane = np.array([[2.0, 0, 10], [0, 3, 20], [0, 0, 1]])
    np.testing.assert_array_equal(to_ras(plane, "LPS")[:2, 2], [-10, -20])
    np.testing.assert_array_equal(to_ras(plane, "SAR"), plane)  # needs the missing third axis: left alone
    with pytest.raises(GeometryError, match="mixes"):
        change_frame(plane, "SAR", "RAS")
    with pytest.raises(GeometryError, match="4-d world"):
        change_frame(np.eye(5), "LPS", "RAS")
