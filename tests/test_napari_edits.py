"""The napari plugin with the files and layers people edit and save: label maps, masks, pyramids, RGB.

Real napari models (ViewerModel, layers) and real npe2 discovery; no Qt.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import napari.components as napari_components
import napari.layers as napari_layers
import npe2
import numpy as np
import pytest

from mlarray import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.napari import read


@pytest.fixture(scope="module", autouse=True)
def _discovered() -> None:
    npe2.PluginManager.instance().discover()


def _open(path: Path) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # napari's own
        return list(napari_components.ViewerModel().open(str(path), plugin="mlarray"))


def _seg(path: Path, data: np.ndarray[Any, Any]) -> None:
    image = MLArray(data, spacing=[1.0, 2.0, 3.0])
    image.meta.is_seg = True
    image.save(path)


def test_a_segmentation_opens_as_labels_that_can_be_painted_and_the_file_stays(tmp_path: Path) -> None:
    seg = np.zeros((6, 7, 8), np.uint8)
    seg[2:4, 2:4, 2:4] = 1
    _seg(tmp_path / "seg.mla", seg)
    before = (tmp_path / "seg.mla").read_bytes()
    [layer] = _open(tmp_path / "seg.mla")
    assert isinstance(layer, napari_layers.Labels)
    reference = napari_layers.Labels(seg.copy(), scale=layer.scale)  # napari's own layer over NumPy
    for target in (layer, reference):
        target.fill((5, 6, 7), 3)
        target.paint((0, 0, 0), 2)
    np.testing.assert_array_equal(np.asarray(layer.data[...]), np.asarray(reference.data))
    assert (tmp_path / "seg.mla").read_bytes() == before  # edits live in memory until the layer is saved
    layer.save(str(tmp_path / "edited.mla"), plugin="mlarray")
    np.testing.assert_array_equal(MLArray.load(tmp_path / "edited.mla").to_numpy(), np.asarray(reference.data))


def test_a_boolean_mask_opens_as_labels_of_zeros_and_ones_and_paints(tmp_path: Path) -> None:
    mask = np.zeros((6, 7, 8), bool)
    mask[2:4, 2:5, 3:6] = True
    _seg(tmp_path / "mask.mla", mask)
    [layer] = _open(tmp_path / "mask.mla")
    assert isinstance(layer, napari_layers.Labels) and layer.data.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(layer.data[...]), mask.view(np.uint8))
    np.testing.assert_array_equal(layer.data[3], mask[3].view(np.uint8))
    reference = napari_layers.Labels(mask.copy(), scale=layer.scale)
    for target in (layer, reference):
        target.fill((3, 0, 0), 1)
        target.paint((3, 3, 4), 0)
    np.testing.assert_array_equal(np.asarray(layer.data[...]), np.asarray(reference.data).view(np.uint8))
    assert layer.data[3, 0, 0] == 1


def test_a_metadata_only_file_is_a_typed_error(tmp_path: Path) -> None:
    MLArray(None, spacing=(1.0, 1.0, 1.0)).save(tmp_path / "header.mla")
    with pytest.raises(InvalidArgumentError, match="metadata-only"):
        read(str(tmp_path / "header.mla"))


def test_a_multiscale_layer_saves_its_full_resolution_level(tmp_path: Path) -> None:
    full = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    layer = napari_layers.Image([full, full[::2, ::2]], multiscale=True, scale=(2.0, 3.0))
    layer.save(str(tmp_path / "pyramid.mla"), plugin="mlarray")
    saved = MLArray.load(tmp_path / "pyramid.mla")
    np.testing.assert_array_equal(saved.to_numpy(), full)
    assert saved.spacing == [2.0, 3.0]


def test_axis_units_survive_a_round_trip_through_napari(tmp_path: Path) -> None:
    for units in (["mm", "mm", "mm"], ["µm", "um", "mm"]):
        image = MLArray(np.ones((4, 5, 6), np.float32), spacing=[1.0, 2.0, 3.0])
        image.meta.spatial.axis_units = units
        image.save(tmp_path / "u.mla")
        [layer] = _open(tmp_path / "u.mla")
        layer.save(str(tmp_path / "copy.mla"), plugin="mlarray")
        assert MLArray.load(tmp_path / "copy.mla").meta.spatial.axis_units == units
    made = napari_layers.Image(np.ones((3, 4), np.float32), units=("millimeter", "second"))
    made.save(str(tmp_path / "made.mla"), plugin="mlarray")
    assert MLArray.load(tmp_path / "made.mla").meta.spatial.axis_units == ["mm", "s"]


def test_an_rgb_layer_saves_with_a_colour_axis_and_opens_as_rgb_again(tmp_path: Path) -> None:
    photo = np.random.default_rng(3).integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    layer = napari_layers.Image(photo, rgb=True, scale=(0.5, 0.25), translate=(4.0, -2.0))
    layer.save(str(tmp_path / "photo.mla"), plugin="mlarray")
    saved = MLArray.load(tmp_path / "photo.mla")
    np.testing.assert_array_equal(saved.to_numpy(), photo)
    assert saved.meta.spatial.axis_labels == ["spatial", "spatial", "components"]
    assert saved.spacing == [0.5, 0.25] and saved.origin == [4.0, -2.0]
    [again] = _open(tmp_path / "photo.mla")
    assert again.rgb
    np.testing.assert_array_equal(np.asarray(again.data[...]), photo)
    for index in [(0, 0), (9, 11), (3, 7)]:
        np.testing.assert_allclose(again.data_to_world(index), layer.data_to_world(index))


def test_a_folder_with_an_unfinished_save_opens_without_it(tmp_path: Path) -> None:
    MLArray(np.ones((4, 5), np.float32)).save(tmp_path / "a.mla")
    (tmp_path / ".mla-tmp-123.abc-b.mla").write_bytes(b"half a frame")  # what a killed save leaves
    layers = read(str(tmp_path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["a"]
