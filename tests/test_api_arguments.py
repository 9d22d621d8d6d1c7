"""Wrong arguments to the public API: typed errors before anything is written, images left as they were.

Found by the argument audit (each case failed on the code before its fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlarray
from mlarray import InvalidArgumentError, MLArray
from mlarray.stats import annotate


@pytest.mark.parametrize("dparams", ["abc", 4, [1], {"bogus": 1}, {"nthreads": 0}, {"nthreads": True}])
def test_bad_dparams_are_refused_before_a_file_is_touched(tmp_path: Path, dparams: Any) -> None:
    path = tmp_path / "v.mla"
    MLArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)).save(path)
    before = path.read_bytes()
    with pytest.raises(InvalidArgumentError, match="dparams"):
        MLArray.create(path, (2, 3, 4), np.int16, fill_value=7, dparams=dparams)  # replaced the file, then failed
    assert path.read_bytes() == before
    for call in (
        lambda: MLArray.open(path, "r+", dparams=dparams),  # was CORRUPT_FRAME for a valid file
        lambda: MLArray.load(path, dparams=dparams),
        lambda: MLArray(np.zeros((2, 2)), dparams=dparams),
        lambda: MLArray(np.zeros((2, 2))).compress(dparams=dparams),
    ):
        with pytest.raises(InvalidArgumentError, match="dparams"):
            call()
    assert MLArray.load(path, dparams={"nthreads": 2}).to_numpy().sum() == sum(range(24))


def test_a_failed_compress_leaves_the_image_as_it_was(tmp_path: Path) -> None:
    image = MLArray(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    for bad in ({"block_size": [0, 1, 1]}, {"patch_size": "abc"}, {"cparams": {"codec": "nope"}}):
        with pytest.raises(InvalidArgumentError):
            image.compress(**bad)
    image.save(tmp_path / "v.mla")  # failed forever after the first bad call
    image.compress()
    np.testing.assert_array_equal(MLArray.load(tmp_path / "v.mla").to_numpy(), image.to_numpy())


def test_affine_none_clears_the_geometry_as_the_other_setters_do() -> None:
    image = MLArray(np.zeros((2, 3, 4)), spacing=(1, 2, 3), origin=(4, 5, 6))
    image.affine = None  # was IndexError
    assert image.spacing is None and image.origin is None
    np.testing.assert_array_equal(image.affine, np.eye(4))


@pytest.mark.parametrize("shape", [{4, 3, 2}, True, {1: 2}, (2, True), "23"])
def test_shapes_numpy_refuses_are_refused(tmp_path: Path, shape: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="shape"):
        mlarray.zeros(shape)
    with pytest.raises(InvalidArgumentError, match="shape"):
        MLArray.create(tmp_path / "v.mla", shape)
    assert not list(tmp_path.iterdir())


def test_a_path_with_a_nul_character_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="NUL"):
        MLArray(np.zeros((2, 2))).save(str(tmp_path / "a\0b.mla"))
    with pytest.raises(InvalidArgumentError, match="NUL"):
        MLArray.create(str(tmp_path / "a\0b.mla"), (2, 2))
    assert not list(tmp_path.iterdir())  # a temporary file named 'a' stayed


def test_annotate_refuses_a_seg_that_is_not_a_bool() -> None:
    labels = MLArray(np.array([[0, 1], [2, 2]], dtype=np.uint8))
    with pytest.raises(InvalidArgumentError, match="seg"):
        annotate(labels, seg="no")  # computed label boxes, then recorded is_seg=False
    assert annotate(labels, seg=np.bool_(True)).is_seg is True


def test_full_refuses_fill_values_the_dtype_cannot_hold() -> None:
    """As ``MLArray.create`` does: NumPy wraps np.int64(300) to 44 in uint8 and makes 1e300 infinite in float32."""
    for value, dtype in ((np.int64(300), np.uint8), (1e300, np.float32), (-1, np.uint16)):
        with pytest.raises(InvalidArgumentError, match="fill_value"):
            mlarray.full(3, value, dtype=dtype)
        with pytest.raises(InvalidArgumentError, match="fill_value"):
            mlarray.full_like(np.zeros(3, dtype), value)
    np.testing.assert_array_equal(mlarray.full(3, np.int64(200), dtype=np.uint8).to_numpy(), [200] * 3)
    assert mlarray.full((2, 2), 2.5).dtype == np.float64 and mlarray.full(2, True).dtype == np.bool_


def test_a_typo_in_a_header_member_is_a_typed_error() -> None:
    from mlarray.errors import HeaderTypeError

    image = MLArray(np.zeros((2, 2)))
    with pytest.raises(HeaderTypeError, match="is_sg"):
        image.meta.is_sg = True  # type: ignore[attr-defined]
    with pytest.raises(HeaderTypeError, match="spacings"):
        image.meta.spatial.spacings = [1.0, 1.0]  # type: ignore[attr-defined]
    assert "is_sg" not in image.meta.to_plain()


@pytest.mark.parametrize("geometry", [{"spacing": 2.0}, {"origin": 0}, {"direction": 1.0}, {"affine": 1.0}])
def test_a_scalar_geometry_in_the_constructor_is_the_setters_typed_error(geometry: dict[str, Any]) -> None:
    from mlarray import HeaderValidationError

    with pytest.raises(HeaderValidationError, match=next(iter(geometry))):
        MLArray(np.zeros((2, 3, 4)), **geometry)
