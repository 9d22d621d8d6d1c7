"""The documented public API of mlarray 0.0.x, on this package's models (issue 10, point 4).

Every name the earlier implementation documents is exercised with the behaviour its
documentation states. Where a value is compared with what mlarray 0.0.54 returned for
the same call, the expected value is derived in the test from the stated computation.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import mlarray
import mlarray.meta
from mlarray import (
    MLARRAY_DEFAULT_PATCH_SIZE,
    AxisLabel,
    CoordSystem,
    HeaderValidationError,
    Meta,
    MetaBbox,
    MetaBlosc2,
    MetaExtra,
    MetaHasArray,
    MetaImageFormat,
    MetaIsSeg,
    MetaSource,
    MetaSpatial,
    MetaStatistics,
    MetaVersion,
    MLArray,
)
from mlarray.models import ArrayInfo, BBoxes, JsonObject, Layout, Spatial, Stats, Writer

META_NAMES = (
    "Meta",
    "MetaBbox",
    "MetaBlosc2",
    "MetaExtra",
    "MetaHasArray",
    "MetaSource",
    "MetaImageFormat",
    "MetaIsSeg",
    "MetaSpatial",
    "MetaStatistics",
    "MetaVersion",
    "AxisLabel",
    "CoordSystem",
)

# ---------------------------------------------------------------- metadata names


@pytest.mark.parametrize("name", META_NAMES)
def test_metadata_names_are_importable_from_both_modules(name: str) -> None:
    assert getattr(mlarray, name) is getattr(mlarray.meta, name)
    assert name in mlarray.__all__ and name in mlarray.meta.__all__


def test_names_are_our_models_where_the_meaning_matches() -> None:
    assert MetaSpatial is Spatial
    assert MetaStatistics is Stats
    assert MetaBbox is BBoxes
    assert MetaBlosc2 is Layout
    assert MetaVersion is Writer
    assert MetaHasArray is ArrayInfo
    assert MetaSource is JsonObject and MetaExtra is JsonObject
    assert isinstance(Meta(source={"a": 1}).source, MetaSource)


def test_default_patch_size() -> None:
    # The earlier documentation: patch_size='default' means 192 per spatial axis.
    assert MLARRAY_DEFAULT_PATCH_SIZE == 192


def test_default_patch_size_is_what_the_default_layout_uses(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/p.mla"
    MLArray(np.zeros((300, 300), dtype=np.uint8)).save(path)
    layout = MLArray.open(path).meta.blosc2
    assert layout is not None and layout.patch_size == [MLARRAY_DEFAULT_PATCH_SIZE] * 2


def test_axis_labels_enum() -> None:
    assert MetaSpatial.AxisLabel is AxisLabel
    # Each member is the string it names (0.0.x compared equal to its string too).
    for label in ("spatial", "spatial_x", "spatial_y", "spatial_z", "channel", "temporal", "components"):
        assert AxisLabel[label] == label and str(AxisLabel[label]) == label
    assert AxisLabel.non_spatial == "non_spatial" and AxisLabel.continuous == "continuous"
    image = MLArray(
        np.zeros((2, 3, 4, 5)),
        axis_labels=[AxisLabel.temporal, AxisLabel.spatial_z, "spatial_y", MetaSpatial.AxisLabel.spatial_x],
        spacing=(1, 2, 3),
    )
    assert image.meta.spatial.axis_labels == ["temporal", "spatial_z", "spatial_y", "spatial_x"]
    assert all(type(label) is str for label in image.meta.spatial.axis_labels or [])
    assert image.spatial_ndim == 3


def test_coord_system_enum() -> None:
    assert MetaSpatial.CoordSystem is CoordSystem
    assert {m.value for m in CoordSystem} == {"RAS", "LPS", "unknown", "other"}
    image = MLArray(np.zeros((2, 2)), meta=Meta(spatial=MetaSpatial(coord_system=CoordSystem.LPS)))
    assert image.meta.spatial.coord_system == "LPS"
    assert type(image.meta.spatial.coord_system) is str


def test_meta_bbox_positional_and_fields() -> None:
    boxes = [[[12, 28], [40, 75], [55, 90]], [[48, 70], [18, 36], [10, 24]]]
    bbox = MetaBbox(boxes, scores=[0.9, 0.5], labels=["tumor", 3])
    assert bbox == MetaBbox(bboxes=boxes, scores=[0.9, 0.5], labels=["tumor", 3])
    assert bbox.bboxes == boxes and bbox.scores == [0.9, 0.5] and bbox.labels == ["tumor", 3]
    with pytest.raises(TypeError):
        MetaBbox(boxes, bboxes=boxes)
    with pytest.raises(HeaderValidationError):
        MetaBbox(boxes, scores=[1.0])  # one score for two boxes


def test_image_meta_bbox_attributes() -> None:
    boxes = [[[0, 1], [2, 3]]]
    image = MLArray(np.zeros((4, 4)), meta=Meta(bbox=MetaBbox(boxes, scores=[0.7], labels=["x"])))
    assert image.meta.bbox is not None
    assert image.meta.bbox.bboxes == boxes
    assert image.meta.bbox.scores == [0.7]
    assert image.meta.bbox.labels == ["x"]


def test_numpy_arrays_are_accepted_as_field_values() -> None:
    spatial = MetaSpatial(spacing=np.array((2, 2.5, 4)), origin=np.array([1, 1, 1]), direction=np.eye(3))
    assert spatial.spacing == [2.0, 2.5, 4.0]
    assert spatial.direction == np.eye(3).tolist()
    spatial.origin = np.array([0.5, 0, 0])
    assert spatial.origin == [0.5, 0.0, 0.0]


def test_to_plain_and_to_mapping() -> None:
    meta = Meta(source={"patient": "p1", "nested": {"a": [1, 2]}}, spatial=MetaSpatial(spacing=[1, 2]), is_seg=True)
    plain = meta.to_plain()
    assert plain["source"] == {"patient": "p1", "nested": {"a": [1, 2]}}
    assert plain["spatial"] == {"spacing": [1.0, 2.0]}  # unset fields are left out
    assert plain["is_seg"] is True and "bbox" not in plain
    full = meta.to_mapping()
    assert full["bbox"] is None and full["spatial"]["origin"] is None  # every field present
    assert meta.spatial.to_plain(include_none=True) == full["spatial"]
    assert type(meta.source.to_plain()) is dict
    assert type(meta.source.to_plain()["nested"]) is dict
    assert meta.source.to_plain() == {"patient": "p1", "nested": {"a": [1, 2]}}
    assert Meta.from_mapping(full) == meta
    assert MetaSpatial.from_mapping({"spacing": [3, 4]}) == MetaSpatial(spacing=[3, 4])
    assert MetaStatistics.from_mapping(None) == MetaStatistics()


def test_copy_from_fills_unset_fields_only() -> None:
    image = MLArray(np.zeros((4, 5, 6)))
    image.meta.is_seg = False
    image.meta.spatial.spacing = [9, 9, 9]
    donor = Meta(
        source={"case": "c1"},
        spatial=MetaSpatial(spacing=[1, 2, 3], origin=[4, 5, 6]),
        bbox=MetaBbox([[[0, 1], [0, 1], [0, 1]]]),
        is_seg=True,
    )
    before = copy.deepcopy(donor)
    image.meta.copy_from(donor)
    assert image.meta.source == {"case": "c1"}
    assert image.meta.spatial.spacing == [9, 9, 9]  # set already: kept
    assert image.meta.spatial.origin == [4, 5, 6]  # unset: filled
    assert image.meta.is_seg is False
    assert image.meta.bbox == donor.bbox
    assert image.meta.array is not None and image.meta.array.shape == [4, 5, 6]  # writer-owned: untouched
    assert donor == before
    image.meta.source["case"] = "changed"  # no aliasing between the two headers
    assert donor.source == {"case": "c1"}


def test_copy_from_overwrite_and_refusals() -> None:
    image = MLArray(np.zeros((4, 5, 6)), spacing=(9, 9, 9))
    image.meta.copy_from(Meta(spatial=MetaSpatial(spacing=[1, 2, 3]), is_seg=True), overwrite=True)
    assert image.spacing == [1, 2, 3] and image.meta.is_seg is True
    assert image.meta.array is not None and image.meta.array.shape == [4, 5, 6]
    before = image.meta.to_mapping()
    with pytest.raises(HeaderValidationError):  # two spacings for three spatial axes: nothing changes
        image.meta.copy_from(Meta(spatial=MetaSpatial(spacing=[1, 2])), overwrite=True)
    assert image.meta.to_mapping() == before
    with pytest.raises(TypeError):
        image.meta.copy_from(MetaSpatial())  # type: ignore[arg-type]


def test_meta_blosc2_is_the_layout(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/l.mla"
    MLArray(np.zeros((8, 16, 16), np.float32), patch_size=None, chunk_size=(1, 16, 16), block_size=(1, 8, 8)).save(path)
    meta = MLArray.open(path).meta
    assert meta.blosc2 is meta.layout
    assert meta.blosc2 is not None
    assert meta.blosc2.chunk_size == [1, 16, 16] and meta.blosc2.block_size == [1, 8, 8]
    assert meta.blosc2.to_plain(include_none=True)["patch_size"] is None
    assert Meta().blosc2 is None


def test_single_value_wrappers() -> None:
    assert Meta(is_seg=MetaIsSeg(is_seg=True)).is_seg is True
    assert Meta(is_seg=MetaIsSeg()).is_seg is None
    assert MetaImageFormat(image_meta_format="nifti").image_meta_format == "nifti"
    with pytest.raises(HeaderValidationError):
        MetaIsSeg(is_seg="maybe")


def test_image_meta_source_to_plain_round_trips(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/s.mla"
    MLArray(np.ones((2, 2)), meta={"patient_id": "p-001", "study": "demo"}).save(path)
    assert MLArray(path).meta.source.to_plain() == {"patient_id": "p-001", "study": "demo"}


# ---------------------------------------------------------------- errors


def test_earlier_runtime_errors_are_still_runtime_errors(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(RuntimeError):
        MLArray.open(f"{tmp_path}/x.npy")  # bad extension
    with pytest.raises(RuntimeError):
        MLArray.load(f"{tmp_path}/missing.mla")  # no such file
    with pytest.raises(RuntimeError):
        MLArray.zeros((2, 2)).save(f"{tmp_path}/x.nii")
    path = f"{tmp_path}/m.mla"
    MLArray.zeros((2, 2)).save(path)
    with pytest.raises(RuntimeError):
        MLArray.open(path, mmap_mode="w")  # bad mode
    with pytest.raises(RuntimeError):
        MLArray.create(path, (2, 2), np.float32, mmap_mode="r")  # bad mode
