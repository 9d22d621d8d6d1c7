"""The napari plugin, headless: real napari (ViewerModel), real npe2 discovery, reader and writer APIs.

No Qt here (the real render is tests/test_napari_render.py). Laziness is proven with a
read counter (a spy that records what the real ``MLArray`` methods return) and, in a
fresh interpreter, with the process' peak memory; never with timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# napari and npe2 are in the dev extra: when they are missing these imports fail, nothing is skipped
import napari.components as napari_components  # noqa: E402
import napari.layers as napari_layers  # noqa: E402
import npe2  # noqa: E402
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mlarray
from mlarray import MLArray
from mlarray.errors import MLArrayError
from mlarray.napari import ChannelView, get_reader, layer_data, read
from mlarray.napari._reader import SAMPLE_BUDGET


@pytest.fixture(scope="module", autouse=True)
def _discovered() -> None:
    """napari's ViewerModel does not load plugins itself (the GUI does): discover them as the GUI would."""
    npe2.PluginManager.instance().discover()


def viewer() -> Any:
    return napari_components.ViewerModel()


def ct_volume(shape: tuple[int, ...] = (24, 40, 48)) -> np.ndarray[Any, Any]:
    """A CT-like volume: air, a body ellipsoid, and a bright sphere (the structure the segmentation marks)."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    vol = np.full(shape, -1000, dtype=np.int16)
    vol[(y / 0.9) ** 2 + (x / 0.8) ** 2 < 1] = 40
    vol[(z - 0.1) ** 2 + (y + 0.2) ** 2 + (x - 0.3) ** 2 < 0.12] = 400
    return vol


def save_pair(tmp: Path, spacing: list[float], origin: list[float]) -> tuple[Path, Path, np.ndarray[Any, Any]]:
    vol = ct_volume()
    ct = MLArray(vol, spacing=spacing, origin=origin, meta={"modality": "CT", "patient": "phantom"})
    ct.meta.stats = mlarray.Stats(min=-1000, max=400, percentile_min=-900, percentile_max=380)
    ct.save(tmp / "ct.mla")
    seg = MLArray((vol == 400).astype(np.uint8), spacing=spacing, origin=origin)
    seg.meta.is_seg = True
    seg.save(tmp / "seg.mla")
    return tmp / "ct.mla", tmp / "seg.mla", vol


class ReadSpy:
    """Records every read of MLArray data: elements returned by ``__getitem__`` and whole-array reads."""

    def __init__(self) -> None:
        self.elements = 0
        self.calls = 0
        self.full_reads = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReadSpy]:
    record = ReadSpy()
    getitem, to_numpy = MLArray.__getitem__, MLArray.to_numpy

    def counted_getitem(self: MLArray, key: Any) -> Any:
        out = getitem(self, key)
        record.calls += 1
        record.elements += int(np.size(out))
        return out

    def counted_to_numpy(self: MLArray) -> Any:
        record.full_reads += 1
        return to_numpy(self)

    monkeypatch.setattr(MLArray, "__getitem__", counted_getitem)
    monkeypatch.setattr(MLArray, "to_numpy", counted_to_numpy)
    yield record


def world(layer: Any, index: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(layer.data_to_world(index), dtype=np.float64)


# --------------------------------------------------------------------------- packaging


def test_import_mlarray_never_imports_napari() -> None:
    code = textwrap.dedent(
        """
        import sys, json
        import mlarray, mlarray.api, mlarray.cli
        before = sorted(m for m in sys.modules if m.split('.')[0] in {'napari', 'npe2', 'qtpy', 'vispy', 'pint'})
        import mlarray.napari
        after = sorted(m for m in sys.modules if m.split('.')[0] in {'napari', 'npe2', 'qtpy', 'vispy', 'pint'})
        print(json.dumps([before, after]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout)
    assert before == [] and after == []


def test_manifest_is_valid_and_registered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "mlarray", "--imports"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
    manifest = npe2.PluginManager.instance().get_manifest("mlarray")
    readers = manifest.contributions.readers
    assert [r.filename_patterns for r in readers] == [["*.mla"]] and readers[0].accepts_directories
    writers = {tuple(w.layer_types): w.filename_extensions for w in manifest.contributions.writers}
    assert writers == {("image",): [".mla"], ("labels",): [".mla"]}


# --------------------------------------------------------------------------- reader


def test_ct_and_segmentation_open_lazily_and_in_place(tmp_path: Path, spy: ReadSpy) -> None:
    ct_path, seg_path, vol = save_pair(tmp_path, spacing=[2.5, 0.8, 0.7], origin=[-30.0, 12.0, 5.5])
    v = viewer()
    v.open([str(ct_path), str(seg_path)], plugin="mlarray", stack=False)
    ct, seg = v.layers
    assert type(ct).__name__ == "Image" and type(seg).__name__ == "Labels"
    for layer, path in ((ct, ct_path), (seg, seg_path)):
        assert isinstance(layer.data, MLArray) and "mmap_mode='c'" in repr(layer.data)  # copy-on-write: paintable
        assert layer.metadata["path"] == str(path)
        header = MLArray.open(path).affine
        for index in ([0, 0, 0], [3, 7, 11], [23, 39, 47]):
            assert np.allclose(world(layer, np.array(index)), (header @ [*index, 1])[:3])
    assert list(ct.contrast_limits) == [-900.0, 380.0]  # percentiles from the header: no data read for them
    assert ct.metadata["source"] == {"modality": "CT", "patient": "phantom"}
    assert spy.full_reads == 0
    plane = vol.shape[1] * vol.shape[2]
    assert 0 < spy.elements <= 2 * 3 * plane <= vol.size // 4, "napari read more than the slices it shows"
    # what napari shows at a world position is the file's voxel there
    z = 9
    v.dims.set_point(0, float(world(ct, np.array([z, 0.0, 0.0]))[0]))
    for y, x in ((0, 0), (20, 30), (10, 33)):
        point = world(ct, np.array([z, y, x], float))
        assert ct.get_value(point) == vol[z, y, x]
        assert seg.get_value(point) == (vol[z, y, x] == 400)


def test_npe2_reader_api_returns_the_open_array(tmp_path: Path) -> None:
    ct_path, seg_path, _ = save_pair(tmp_path, spacing=[1.0, 1.0, 1.0], origin=[0.0, 0.0, 0.0])
    layers = npe2.read([str(ct_path)], stack=False)
    ((data, kwargs, kind),) = layers
    assert kind == "image" and isinstance(data, MLArray) and data.shape == (24, 40, 48)
    assert kwargs["scale"] == [1.0, 1.0, 1.0] and kwargs["translate"] == [0.0, 0.0, 0.0]
    ((seg_data, _, seg_kind),) = npe2.read([str(seg_path)], stack=False, plugin_name="mlarray")
    assert seg_kind == "labels" and seg_data.meta.is_seg is True


def test_contrast_limits_without_statistics_come_from_a_bounded_sample(tmp_path: Path, spy: ReadSpy) -> None:
    rng = np.random.default_rng(3)
    vol = rng.integers(-50, 50, size=(64, 192, 192), dtype=np.int16)
    vol[32, 96, 96] = 3000  # in the middle cross-section: the sample sees it
    MLArray(vol).save(tmp_path / "plain.mla")
    ((data, kwargs, _),) = read(str(tmp_path / "plain.mla"))
    assert spy.full_reads == 0
    assert spy.elements <= SAMPLE_BUDGET < vol.size // 2
    low, high = kwargs["contrast_limits"]
    assert low >= -50 and high == 3000


def test_two_scans_with_different_spacing_and_orientation_overlay(tmp_path: Path) -> None:
    vol = ct_volume((20, 32, 36))
    MLArray(vol, spacing=[1.0, 1.0, 1.0], origin=[0.0, 0.0, 0.0]).save(tmp_path / "a.mla")
    # the same anatomy, flipped along axis 0 and sampled every other voxel along axis 2, stored LPS-like
    other = vol[::-1, :, ::2]
    direction = np.diag([-1.0, 1.0, 1.0])
    MLArray(other, spacing=[1.0, 1.0, 2.0], origin=[19.0, 0.0, 0.0], direction=direction.tolist()).save(
        tmp_path / "b.mla"
    )
    v = viewer()
    v.open([str(tmp_path / "a.mla"), str(tmp_path / "b.mla")], plugin="mlarray", stack=False)
    a, b = v.layers
    rng = np.random.default_rng(0)
    for _ in range(20):
        index = rng.integers(0, other.shape)
        point = world(b, index.astype(float))
        back = np.round(np.asarray(a.world_to_data(point))).astype(int)
        assert np.allclose(np.asarray(a.world_to_data(point)), back)
        assert vol[tuple(back)] == other[tuple(index)]


def test_sheared_affine_reaches_napari_exactly(tmp_path: Path) -> None:
    affine = np.array([[0.9, 0.2, 0.0, 4.0], [0.0, 1.1, 0.3, -2.0], [0.1, 0.0, 1.5, 7.0], [0, 0, 0, 1.0]])
    MLArray(ct_volume((8, 10, 12)), affine=affine).save(tmp_path / "sheared.mla")
    ((data, kwargs, _),) = read(str(tmp_path / "sheared.mla"))
    assert "affine" in kwargs
    with pytest.warns(UserWarning, match="Non-orthogonal slicing"):  # napari shows sheared data unsheared in 2D
        layer = napari_components.ViewerModel().add_image(data, **{k: kwargs[k] for k in ("scale", "affine")})
    for index in ([0, 0, 0], [1, 2, 3], [7, 9, 11]):
        assert np.allclose(world(layer, np.array(index, float)), (affine @ [*index, 1])[:3])


def test_axis_labels_and_units_reach_napari(tmp_path: Path) -> None:
    image = MLArray(ct_volume((6, 8, 10)), axis_labels=["spatial_z", "spatial_y", "spatial_x"])
    image.meta.spatial.axis_units = ["mm", "mm", "mm"]
    image.save(tmp_path / "u.mla")
    v = viewer()
    (layer,) = v.open(str(tmp_path / "u.mla"), plugin="mlarray")
    assert layer.axis_labels == ("spatial_z", "spatial_y", "spatial_x")
    assert [str(u) for u in layer.units] == ["millimeter"] * 3


def test_channels_become_lazy_layers(tmp_path: Path, spy: ReadSpy) -> None:
    data = np.stack([ct_volume((10, 16, 18)) + 100 * c for c in range(3)], axis=0)
    image = MLArray(data, axis_labels=["channel", "spatial", "spatial", "spatial"], spacing=[2.0, 1.0, 1.0])
    image.meta.stats = mlarray.Stats(min=-1000, max=600)
    image.save(tmp_path / "multi.mla")
    v = viewer()
    layers = v.open(str(tmp_path / "multi.mla"), plugin="mlarray")
    assert [layer.name for layer in layers] == ["multi [0]", "multi [1]", "multi [2]"]
    for c, layer in enumerate(layers):
        assert isinstance(layer.data, ChannelView) and layer.data.shape == (10, 16, 18)
        assert list(layer.scale) == [2.0, 1.0, 1.0]
        assert np.array_equal(layer.data[4], data[c, 4])
        assert np.array_equal(layer.data[..., 3], data[c, ..., 3])
    assert spy.full_reads == 0 and spy.elements < data.size // 2


def test_channel_view_indexing_matches_numpy() -> None:
    base = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    for axis in range(4):
        for index in range(base.shape[axis]):
            view = ChannelView(base, axis, index)
            expected = np.take(base, index, axis=axis)
            assert view.shape == expected.shape and view.ndim == 3 and view.size == expected.size
            for key in ((), 1, (slice(None), 2), (Ellipsis, 0), (0, Ellipsis, slice(1, 3)), (1, 2, 3)):
                assert np.array_equal(view[key], expected[key])
            assert np.array_equal(np.asarray(view), expected)
    with pytest.raises(IndexError):
        ChannelView(base, 0, 0)[0, 0, 0, 0]
    with pytest.raises(MLArrayError):
        ChannelView(base, 4, 0)


def test_bounding_boxes_become_shapes_and_box_outlines(tmp_path: Path) -> None:
    flat = MLArray(np.zeros((40, 50), np.float32), spacing=[0.5, 2.0])
    flat.meta.bbox = mlarray.BBoxes([[[4, 10], [5, 20]]], labels=["lesion"], scores=[0.9])
    flat.save(tmp_path / "flat.mla")
    v = viewer()
    image, shapes = v.open(str(tmp_path / "flat.mla"), plugin="mlarray")
    assert type(shapes).__name__ == "Shapes" and shapes.shape_type == ["rectangle"]
    corners = np.asarray(shapes.data[0])
    assert corners.min(axis=0).tolist() == [4, 5] and corners.max(axis=0).tolist() == [10, 20]
    assert list(shapes.scale) == list(image.scale) == [0.5, 2.0]
    assert list(shapes.features["label"]) == ["lesion"]

    volume = MLArray(np.zeros((8, 9, 10), np.float32))
    volume.meta.bbox = mlarray.BBoxes([[[1, 3], [2, 5], [3, 7]], [[0, 1], [0, 1], [0, 1]]])
    volume.save(tmp_path / "vol.mla")
    _, outlines = viewer().open(str(tmp_path / "vol.mla"), plugin="mlarray")
    assert type(outlines).__name__ == "Vectors" and outlines.data.shape == (24, 2, 3)
    first = outlines.data[:12]
    ends = np.concatenate([first[:, 0], first[:, 0] + first[:, 1]])
    assert {tuple(p) for p in ends.tolist()} == {(z, y, x) for z in (1, 3) for y in (2, 5) for x in (3, 7)}


def test_folder_gives_one_layer_per_file_and_foreign_paths_are_declined(tmp_path: Path) -> None:
    save_pair(tmp_path, spacing=[1.0, 1.0, 1.0], origin=[0.0, 0.0, 0.0])
    (tmp_path / "notes.txt").write_text("not an image")
    layers = viewer().open(str(tmp_path), plugin="mlarray")
    assert [layer.name for layer in layers] == ["ct", "seg"]
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing.mla")) is None
    assert get_reader(str(tmp_path / "empty-folder")) is None
    assert get_reader([str(tmp_path / "ct.mla"), str(tmp_path / "notes.txt")]) is None


def test_a_damaged_file_raises_its_typed_error(tmp_path: Path) -> None:
    (tmp_path / "bad.mla").write_bytes(b"this is not a Blosc2 frame at all" * 10)
    reader = get_reader(str(tmp_path / "bad.mla"))
    assert reader is not None
    with pytest.raises(MLArrayError):
        reader(str(tmp_path / "bad.mla"))


def test_layer_data_of_an_in_memory_array_without_geometry() -> None:
    ((data, kwargs, kind),) = layer_data(MLArray(np.arange(12.0).reshape(3, 4)), name="x")
    assert kind == "image" and kwargs["scale"] == [1.0, 1.0] and kwargs["contrast_limits"] == [0.0, 11.0]


# --------------------------------------------------------------------------- world frame

TO_RAS = {"RAS": np.diag([1.0, 1.0, 1.0]), "LPS": np.diag([-1.0, -1.0, 1.0]), "LAS": np.diag([-1.0, 1.0, 1.0])}


def twin_in(frame: str, ras: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The index-to-world matrix ``ras`` (RAS+) written in ``frame`` instead: the same physical geometry."""
    out = ras.copy()
    out[:3, :] = TO_RAS[frame].T @ ras[:3, :]
    return out


def flipped_ras() -> np.ndarray[Any, Any]:
    """A RAS+ geometry as NIfTI writes a DICOM-derived scan: x and y flipped, with an origin."""
    out = np.diag([-0.7, -0.8, 2.0, 1.0])
    out[:3, 3] = [-5.0, 3.0, 12.0]
    return out


OBLIQUE_RAS = np.array([[0.0, -0.8, 0.0, 40.0], [0.7, 0.0, 0.1, -12.0], [0.0, 0.0, 2.0, 7.5], [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize("ras", [flipped_ras(), OBLIQUE_RAS], ids=["flipped", "oblique"])
@pytest.mark.parametrize("frame", ["LPS", "LAS"])
def test_a_file_and_its_ras_twin_overlay_in_napari(tmp_path: Path, frame: str, ras: np.ndarray[Any, Any]) -> None:
    """The same voxel of the same volume stored in ``frame`` and in RAS lands on one world point (RAS+)."""
    vol = ct_volume((12, 14, 10))
    other = MLArray(vol, affine=twin_in(frame, ras))
    other.meta.spatial.coord_system = frame
    other.save(tmp_path / "other.mla")
    twin = MLArray((vol == 400).astype(np.uint8), affine=ras)
    twin.meta.spatial.coord_system = "RAS"
    twin.meta.is_seg = True
    twin.save(tmp_path / "ras.mla")
    assert not np.allclose(MLArray.open(tmp_path / "other.mla").affine, ras)  # the headers' numbers differ
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Non-orthogonal slicing", UserWarning)
        v = viewer()
        image, labels = v.open([str(tmp_path / "other.mla"), str(tmp_path / "ras.mla")], plugin="mlarray", stack=False)
    assert type(labels).__name__ == "Labels" and image.metadata["coord_system"] == frame
    for index in ([0, 0, 0], [3, 4, 5], [11, 13, 9], [6, 2, 8]):
        p = np.array(index, float)
        assert np.allclose(world(image, p), world(labels, p))
        assert np.allclose(world(image, p), (ras @ [*index, 1])[:3])  # RAS+, as MONAI and TorchIO place it
        assert np.allclose(np.asarray(labels.world_to_data(world(image, p))), p)


def test_napari_world_is_the_ras_world_of_monai_and_torchio(tmp_path: Path) -> None:
    """One convention across integrations: napari's placement of an LPS file is ``ras_affine`` (MONAI, TorchIO)."""
    from mlarray.torch._patches import ras_affine

    for n in (2, 3, 4):
        image = MLArray(np.zeros((3,) * n, np.float32), spacing=[0.5 + k for k in range(n)], origin=list(range(n)))
        image.meta.spatial.coord_system = "LPS"
        ((data, kwargs, _),) = layer_data(image)
        layer = napari_layers.Image(data, **{k: kwargs[k] for k in ("scale", "translate", "affine") if k in kwargs})
        index = np.arange(n, dtype=float)
        assert np.allclose(world(layer, index), (ras_affine(image)[0] @ [*index, 1.0])[:n])


def test_files_without_a_frame_or_with_a_custom_one_keep_their_numbers(tmp_path: Path) -> None:
    affine = np.diag([0.7, 0.8, 2.0, 1.0])
    affine[:3, 3] = [5.0, -3.0, 12.0]
    for frame in (None, "scanner-xyz"):
        image = MLArray(ct_volume((4, 5, 6)), affine=affine)
        image.meta.spatial.coord_system = frame
        ((data, kwargs, _),) = layer_data(image)
        layer = napari_layers.Image(data, **{k: kwargs[k] for k in ("scale", "translate")})
        assert np.allclose(world(layer, np.array([3.0, 4.0, 5.0])), (affine @ [3, 4, 5, 1])[:3])
        assert kwargs["metadata"]["coord_system"] == frame


@pytest.mark.parametrize("frame", ["LPS", "RAS", None, "scanner-xyz"])
def test_writer_keeps_the_frame_and_the_physical_geometry(tmp_path: Path, frame: str | None) -> None:
    affine = twin_in("LPS", OBLIQUE_RAS)
    vol = ct_volume((6, 7, 8))
    original = MLArray(vol, affine=affine, meta={"patient": "phantom"})
    original.meta.spatial.coord_system = frame
    original.save(tmp_path / "in.mla")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Non-orthogonal slicing", UserWarning)
        (layer,) = viewer().open(str(tmp_path / "in.mla"), plugin="mlarray")
        layer.save(str(tmp_path / "copy.mla"), plugin="mlarray")
        copy = MLArray.load(tmp_path / "copy.mla")
        assert copy.meta.spatial.coord_system == frame
        assert np.allclose(copy.affine, affine) and np.array_equal(copy.to_numpy(), vol)  # the header's own numbers
        assert copy.meta.source == {"patient": "phantom"}
        (again,) = viewer().open(str(tmp_path / "copy.mla"), plugin="mlarray")
    for index in ([0, 0, 0], [5, 6, 7], [1, 4, 2]):
        p = np.array(index, float)
        assert np.allclose(world(again, p), world(layer, p))


def test_writer_keeps_the_frame_of_a_time_series_and_its_axis_labels(tmp_path: Path) -> None:
    """Only spatial axes have geometry: a temporal axis keeps its label and the frame stays on x, y, z."""
    series = np.arange(3 * 4 * 5 * 6, dtype=np.int16).reshape(3, 4, 5, 6)
    labels = ["temporal", "spatial", "spatial", "spatial"]
    original = MLArray(series, spacing=[2.0, 0.5, 0.25], origin=[1.0, 2.0, 3.0], axis_labels=labels)
    original.meta.spatial.coord_system = "LPS"
    original.save(tmp_path / "series.mla")
    (layer,) = viewer().open(str(tmp_path / "series.mla"), plugin="mlarray")
    assert np.allclose(world(layer, np.array([1.0, 1, 1, 1])), [1.0, -3.0, -2.5, 3.25])  # t, then RAS x, y, z
    layer.save(str(tmp_path / "copy.mla"), plugin="mlarray")
    copy = MLArray.load(tmp_path / "copy.mla")
    assert copy.meta.spatial.axis_labels == labels and copy.meta.spatial.coord_system == "LPS"
    assert np.allclose(copy.affine, original.affine) and np.array_equal(copy.to_numpy(), series)


def test_writer_of_a_layer_made_in_napari_has_no_frame(tmp_path: Path) -> None:
    layer = viewer().add_image(ct_volume((4, 5, 6)), scale=[2.0, 1.0, 0.5], translate=[1.0, 2.0, 3.0])
    layer.save(str(tmp_path / "made.mla"), plugin="mlarray")
    made = MLArray.load(tmp_path / "made.mla")
    assert made.meta.spatial.coord_system is None and made.spacing == [2.0, 1.0, 0.5]


# --------------------------------------------------------------------------- writer


def test_writer_round_trip_keeps_data_and_placement(tmp_path: Path) -> None:
    v = viewer()
    vol = ct_volume((6, 9, 11))
    rotate = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]  # in the displayed plane
    image = v.add_image(vol, scale=[3.0, 0.5, 0.25], translate=[1.0, -2.0, 4.0], rotate=rotate, name="ct")
    labels = v.add_labels((vol == 400).astype(np.int32), scale=[3.0, 0.5, 0.25], name="seg")
    image.save(str(tmp_path / "out.mla"), plugin="mlarray")
    labels.save(str(tmp_path / "seg.mla"), plugin="mlarray")
    back = MLArray.load(tmp_path / "out.mla")
    assert np.array_equal(back.to_numpy(), vol) and back.dtype == vol.dtype and not back.meta.is_seg
    seg = MLArray.load(tmp_path / "seg.mla")
    assert seg.meta.is_seg is True and np.array_equal(seg.to_numpy(), (vol == 400).astype(np.int32))
    w = viewer()
    reopened, reseg = w.open([str(tmp_path / "out.mla"), str(tmp_path / "seg.mla")], plugin="mlarray", stack=False)
    assert type(reseg).__name__ == "Labels"
    for index in ([0, 0, 0], [5, 8, 10], [2, 3, 4]):
        p = np.array(index, float)
        assert np.allclose(world(reopened, p), world(image, p))
        assert np.allclose(world(reseg, p), world(labels, p))
        assert np.allclose((back.affine @ [*index, 1])[:3], world(image, p))


def test_writer_refuses_a_wrong_extension_and_leaves_nothing(tmp_path: Path) -> None:
    layer = viewer().add_image(np.zeros((4, 4), np.float32))
    from mlarray.napari import write_image

    with pytest.raises(MLArrayError):
        write_image(str(tmp_path / "x.nii"), layer.data, layer._get_state())
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- memory


def test_opening_a_large_file_costs_about_a_slice_of_memory(tmp_path: Path) -> None:
    """In a fresh interpreter: peak memory grows by far less than the array when napari opens and shows it."""
    shape = (160, 512, 512)  # 80 MiB of int16
    z = np.arange(shape[0], dtype=np.int16)[:, None, None]
    vol = np.broadcast_to(z, shape) + np.arange(shape[2], dtype=np.int16)[None, None, :]
    MLArray(np.ascontiguousarray(vol)).save(tmp_path / "big.mla")
    del vol
    code = textwrap.dedent(
        f"""
        import json, re
        import numpy as np
        import npe2
        from napari.components import ViewerModel

        def peak_kib():
            return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

        npe2.PluginManager.instance().discover()
        import mlarray.api  # the libraries mlarray loads on first use are not the file's memory
        v = ViewerModel()
        v.add_image(np.zeros((8, 8)))  # napari's own first-use allocations
        v.layers.clear()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak to the current resident size
        base = peak_kib()
        (layer,) = v.open({str(tmp_path / "big.mla")!r}, plugin="mlarray")
        v.dims.set_current_step(0, 100)
        grew = peak_kib() - base
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = peak_kib()
        half = layer.data[:80]  # control: a real read of half the array shows up in the measure
        print(json.dumps({{"grew_kib": grew, "control_kib": peak_kib() - base, "kind": type(layer.data).__name__}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    array_kib = 160 * 512 * 512 * 2 // 1024
    assert result["kind"] == "MLArray"
    assert result["grew_kib"] < array_kib // 4, result
    # the control's 40 MiB result may reuse a few pages freed before the peak was reset
    assert result["control_kib"] >= 0.9 * (array_kib // 2), result


# --------------------------------------------------------------------------- properties

finite_offsets = st.floats(min_value=-500, max_value=500, allow_nan=False)
spacings = st.floats(min_value=0.05, max_value=20, allow_nan=False)


@st.composite
def geometries(draw: st.DrawFn) -> tuple[list[float], list[float], np.ndarray[Any, Any]]:
    n = draw(st.integers(2, 4))
    spacing = [draw(spacings) for _ in range(n)]
    origin = [draw(finite_offsets) for _ in range(n)]
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["identity", "flip-permutation", "rotation"]))
    rng = np.random.default_rng(seed)
    if kind == "identity":
        direction = np.eye(n)
    elif kind == "flip-permutation":
        direction = np.eye(n)[rng.permutation(n)] * rng.choice([-1.0, 1.0], size=n)
    else:
        direction, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return spacing, origin, direction


@settings(deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_napari_places_every_voxel_where_the_header_says(
    geometry: tuple[list[float], list[float], np.ndarray[Any, Any]], seed: int
) -> None:
    """For any spacing, origin and orthonormal direction, napari's data-to-world map is the header's affine."""
    spacing, origin, direction = geometry
    n = len(spacing)
    image = MLArray(np.zeros((3,) * n, np.float32), spacing=spacing, origin=origin, direction=direction.tolist())
    ((data, kwargs, _),) = layer_data(image)
    transform = {k: kwargs[k] for k in ("scale", "translate", "affine") if k in kwargs}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Non-orthogonal slicing", UserWarning)  # oblique data, shown unrotated
        layer = napari_layers.Image(data, **transform)
    index = np.random.default_rng(seed).uniform(-2, 5, size=n)
    expected = (image.affine @ [*index, 1.0])[:n]
    assert np.allclose(world(layer, index), expected, rtol=1e-9, atol=1e-6 * (1 + np.abs(expected).max()))


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
        lambda shape: st.tuples(st.just(shape), st.integers(0, len(shape) - 1))
    ),
    st.data(),
)
def test_channel_view_is_numpy_take(shape_axis: tuple[list[int], int], data: st.DataObject) -> None:
    shape, axis = shape_axis
    base = np.arange(int(np.prod(shape))).reshape(shape)
    index = data.draw(st.integers(0, shape[axis] - 1))
    view = ChannelView(base, axis, index)
    expected = np.take(base, index, axis=axis)
    key = data.draw(hnp.basic_indices(shape=expected.shape, allow_newaxis=False, allow_ellipsis=True))
    assert np.array_equal(view[key], expected[key])
