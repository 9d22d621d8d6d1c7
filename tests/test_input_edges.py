"""Arrays and arguments at the edges: layouts derived for copies, empty arrays, bad sizes and fill values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.layout import default_compression


def _layout(path: Path) -> Any:
    with MLArray.open(path) as image:
        return image.meta.layout


def test_copy_of_a_three_axis_scan_for_a_four_axis_prediction(tmp_path: Path) -> None:
    MLArray(np.zeros((4, 5, 6), np.float32), spacing=(1, 2, 3)).save(tmp_path / "scan.mla")
    scan = MLArray.load(tmp_path / "scan.mla")
    labels = ["channel", "spatial", "spatial", "spatial"]
    probs = MLArray(np.arange(240, dtype=np.float32).reshape(2, 4, 5, 6), copy=scan, axis_labels=labels)
    probs.save(tmp_path / "probs.mla")
    back = MLArray.load(tmp_path / "probs.mla")
    assert back.shape == (2, 4, 5, 6) and back.spacing == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(back.to_numpy(), probs.to_numpy())
    with MLArray.create(
        tmp_path / "big.mla", shape=(2, 4, 5, 6), dtype=np.float32, copy=scan, axis_labels=labels
    ) as out:
        out[1] = 7
    assert float(MLArray.load(tmp_path / "big.mla").to_numpy()[1].min()) == 7.0


@pytest.mark.parametrize(
    ("shape", "dtype", "layout", "new_shape", "new_dtype"),
    [
        ((4, 5, 6), np.float32, {"patch_size": (2, 2, 2)}, (40, 50, 60), np.float32),
        ((40, 160, 160), np.int16, {}, (120, 480, 480), np.uint8),
        ((40, 160, 160), np.int16, {}, (40, 160, 160), np.float32),
    ],
)
def test_copy_derives_the_layout_again_for_another_shape_or_type(
    tmp_path: Path,
    shape: tuple[int, ...],
    dtype: Any,
    layout: dict[str, Any],
    new_shape: tuple[int, ...],
    new_dtype: Any,
) -> None:
    MLArray(np.zeros(shape, dtype), **layout).save(tmp_path / "src.mla")
    source = MLArray.load(tmp_path / "src.mla")
    MLArray(np.ones(new_shape, new_dtype), copy=source).save(tmp_path / "derived.mla")
    derived = _layout(tmp_path / "derived.mla")
    patch = tuple(_layout(tmp_path / "src.mla").patch_size)
    MLArray(np.ones(new_shape, new_dtype), patch_size=patch).save(tmp_path / "fresh.mla")
    fresh = _layout(tmp_path / "fresh.mla")
    assert derived.strategy == "patch" and tuple(derived.patch_size) == patch
    assert (derived.chunk_size, derived.block_size) == (fresh.chunk_size, fresh.block_size)
    assert derived.codec == fresh.codec
    # the new type's filters: the level-5 default's (a fresh save of 1-byte data may also look at the data)
    assert derived.filters == default_compression(np.dtype(new_dtype).itemsize)[2]


def test_copy_keeps_the_recorded_layout_for_the_same_shape_and_manual_sizes(tmp_path: Path) -> None:
    MLArray(np.zeros((8, 9, 10), np.int16), chunk_size=(4, 9, 5), block_size=(2, 3, 5)).save(tmp_path / "m.mla")
    source = MLArray.load(tmp_path / "m.mla")
    MLArray(np.ones((8, 9, 10), np.int16), copy=source).save(tmp_path / "same.mla")
    MLArray(np.ones((16, 9, 30), np.float32), copy=source).save(tmp_path / "other.mla")
    for name in ("same.mla", "other.mla"):
        layout = _layout(tmp_path / name)
        assert (layout.strategy, layout.chunk_size, layout.block_size) == ("manual", [4, 9, 5], [2, 3, 5])


def test_copy_of_an_unsaved_image_passes_on_its_layout_arguments(tmp_path: Path) -> None:
    source = MLArray(np.zeros((40, 50, 60), np.float32), patch_size=(8, 8, 8))
    MLArray(np.ones((40, 50, 60), np.float32), copy=source).save(tmp_path / "a.mla")
    MLArray(np.ones((40, 50, 60), np.float32), patch_size=(8, 8, 8)).save(tmp_path / "b.mla")
    assert _layout(tmp_path / "a.mla") == _layout(tmp_path / "b.mla")
    manual = MLArray(np.zeros((4, 5, 6), np.float32), chunk_size=(2, 5, 6))
    MLArray(np.ones((3, 4, 5, 6), np.float32), copy=manual).save(tmp_path / "c.mla")  # sizes of 3 axes do not fit 4
    assert _layout(tmp_path / "c.mla").strategy == "patch"


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0), (0,), (3, 4, 0, 2)])
@pytest.mark.parametrize("compressed", [False, True])
def test_arrays_with_a_zero_length_axis_save_with_any_layout_argument(
    tmp_path: Path, shape: tuple[int, ...], compressed: bool
) -> None:
    ndim = len(shape)
    for layout in ({"patch_size": None}, {"block_size": (1,) * ndim}, {"chunk_size": (2,) * ndim}):
        MLArray(np.zeros(shape, np.float32), compressed=compressed, **layout).save(tmp_path / "z.mla")
        back = MLArray.load(tmp_path / "z.mla")
        assert back.shape == shape and back.dtype == np.float32
        MLArray.create(tmp_path / "c.mla", shape=shape, dtype=np.float32, **layout).close()
        assert MLArray.load(tmp_path / "c.mla").shape == shape


@pytest.mark.parametrize(
    "layout",
    [
        {"chunk_size": 3},
        {"block_size": 2},
        {"chunk_size": (2.5, 4, 5)},
        {"block_size": (1.9, 2, 5)},
        {"chunk_size": ("2", 4, 5)},
    ],
)
def test_manual_sizes_must_be_integers_one_per_axis(tmp_path: Path, layout: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="positive integers"):
        MLArray(np.zeros((4, 5, 6), np.float32), **layout).save(tmp_path / "x.mla")
    assert not (tmp_path / "x.mla").exists()
    with pytest.raises(InvalidArgumentError):
        MLArray.create(tmp_path / "y.mla", shape=(4, 5, 6), dtype=np.float32, **layout)
    assert not (tmp_path / "y.mla").exists()


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (np.int64(300), np.uint8),
        (np.int64(-129), np.int8),
        (np.uint64(2**64 - 1), np.uint16),
        (70000.0, np.float16),
        (1e39, np.float32),
        (np.float64(1e300), np.float32),
    ],
)
def test_fill_values_the_type_cannot_hold_are_refused(tmp_path: Path, value: Any, dtype: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot be stored"):
        MLArray.create(tmp_path / "f.mla", shape=(2, 3), dtype=dtype, fill_value=value)
    assert not (tmp_path / "f.mla").exists()


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        (np.int64(255), np.uint8, 255),
        (-0.0, np.float32, -0.0),
        (2.7, np.int16, 2),
        (np.inf, np.float16, np.inf),
        (1e-50, np.float32, 0.0),
    ],
)
def test_fill_values_convert_as_numpy_full_does(tmp_path: Path, value: Any, dtype: Any, expected: float) -> None:
    with MLArray.create(tmp_path / "f.mla", shape=(2, 3), dtype=dtype, fill_value=value) as image:
        got = image.to_numpy()
    np.testing.assert_array_equal(got, np.full((2, 3), expected, dtype=dtype))
    assert np.signbit(got).all() == np.signbit(np.full((2, 3), value, dtype=dtype)).all()


@pytest.mark.parametrize("shape", [(2**40, 2**40), (2**62, 4), (2**31,) * 3])
def test_shapes_no_array_can_index_are_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidArgumentError, match="more elements"):
        MLArray.create(tmp_path / "h.mla", shape=shape, dtype=np.uint8)
    assert list(tmp_path.iterdir()) == []


def test_a_tensor_that_requires_grad_is_a_typed_error() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(InvalidArgumentError, match="requires grad"):
        MLArray(torch.ones(3, 4, requires_grad=True))
    assert MLArray(torch.ones(3, 4, requires_grad=True).detach()).shape == (3, 4)


def test_the_constructor_keeps_the_array_it_is_given_as_documented() -> None:
    buffer = np.zeros(3, np.float32)
    kept, own = MLArray(buffer), MLArray(buffer.copy())
    buffer[0] = 5
    assert kept[0] == 5 and own[0] == 0
    kept[1] = 2
    assert buffer[1] == 2


@pytest.mark.parametrize(
    "cparams", [{"clevel": 12}, {"clevel": -1}, {"clevel": 2.5}, {"codec": "brotli"}, {"filters": ["delta"]}]
)
def test_compression_parameters_the_format_does_not_allow_are_invalid_arguments(tmp_path: Path, cparams: Any) -> None:
    """A level outside 0-9 was WRITE_FAILED at save (a disk error) and a bare RuntimeError in compress()."""
    data = np.zeros((4, 5, 6), np.int16)
    with pytest.raises(InvalidArgumentError):
        MLArray(data, cparams=cparams).save(tmp_path / "x.mla")
    with pytest.raises(InvalidArgumentError):
        MLArray(data).compress(cparams=cparams)
    with pytest.raises(InvalidArgumentError):
        MLArray.create(tmp_path / "y.mla", shape=(4, 5, 6), dtype=np.int16, cparams=cparams)
    assert list(tmp_path.iterdir()) == []


def test_codec_and_filter_names_are_accepted_as_the_header_spells_them(tmp_path: Path) -> None:
    data = np.arange(120, dtype=np.int16).reshape(4, 5, 6)
    MLArray(data, cparams={"codec": "zstd", "clevel": 3, "filters": ["bitshuffle"]}).save(tmp_path / "z.mla")
    layout = _layout(tmp_path / "z.mla")
    assert (layout.codec, layout.clevel, layout.filters) == ("zstd", 3, ["bitshuffle"])
    again = MLArray(data, cparams={"codec": layout.codec, "clevel": layout.clevel, "filters": list(layout.filters)})
    again.save(tmp_path / "again.mla")
    assert _layout(tmp_path / "again.mla") == layout
    np.testing.assert_array_equal(MLArray.load(tmp_path / "again.mla").to_numpy(), data)
