"""The documented public API of mlarray 0.0.x, on this package's models (issue 10, point 4).

Every name the earlier implementation documents is exercised with the behaviour its
documentation states. Where a value is compared with what mlarray 0.0.54 returned for
the same call, the expected value is derived in the test from the stated computation.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

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
from mlarray._geometry import compose_from_parts
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


# ---------------------------------------------------------------- constructors

LAYOUT = {"patch_size": None, "chunk_size": (1, 4, 4), "block_size": (1, 2, 2)}


@pytest.mark.parametrize("compressed", [False, True])
def test_constructors_with_the_earlier_keywords(tmp_path: pytest.TempPathFactory, compressed: bool) -> None:
    shape = (2, 4, 4)
    empty = MLArray.empty(shape=shape, dtype=np.float32, compressed=compressed, **LAYOUT)
    empty[...] = np.arange(32, dtype=np.float32).reshape(shape)
    assert empty.to_numpy().tolist() == np.arange(32).reshape(shape).tolist()
    zeros = MLArray.zeros(shape=shape, dtype=np.float32, compressed=compressed, **LAYOUT)
    ones = MLArray.ones(shape=shape, dtype=np.float32, compressed=compressed, **LAYOUT)
    full = MLArray.full(shape=shape, fill_value=5, dtype=np.float32, compressed=compressed, **LAYOUT)
    assert float(zeros[...].sum()) == 0 and float(ones[...].sum()) == 32 and float(full[...].sum()) == 160
    for image in (empty, zeros, ones, full):
        assert image.shape == shape and image.dtype == np.float32
        assert image._backend == ("blosc2" if compressed else "numpy")
    like = {
        "empty": MLArray.empty_like(full, compressed=compressed, **LAYOUT),
        "zeros": MLArray.zeros_like(full, compressed=compressed, **LAYOUT),
        "ones": MLArray.ones_like(full, compressed=compressed, **LAYOUT),
        "full": MLArray.full_like(full, fill_value=9, compressed=compressed, **LAYOUT),
    }
    like["empty"][...] = 11
    assert np.unique(like["empty"][...]).tolist() == [11.0]
    assert float(like["zeros"][...].sum()) == 0 and float(like["ones"][...].sum()) == 32
    assert float(like["full"][...].sum()) == 9 * 32
    path = f"{tmp_path}/like.mla"
    like["full"].save(path)
    loaded = MLArray(path)
    assert loaded.shape == shape and loaded.dtype == np.float32
    layout = loaded.meta.blosc2
    assert layout is not None and layout.chunk_size == [1, 4, 4] and layout.block_size == [1, 2, 2]


def test_like_constructors_copy_metadata_and_accept_arrays() -> None:
    base = MLArray.zeros((3, 4), np.int16, spacing=(2, 3), meta={"case": "a"})
    like = MLArray.ones_like(base)
    assert like.dtype == np.int16 and like.spacing == [2, 3] and like.meta.source == {"case": "a"}
    assert MLArray.zeros_like(np.ones((2, 3), np.int16)).dtype == np.int16
    assert MLArray.full_like(base, 7, dtype=np.float32).to_numpy().tolist() == [[7.0] * 4] * 3
    with pytest.raises(mlarray.InvalidArgumentError):
        MLArray.zeros_like(MLArray(meta=Meta()))


# Values mlarray 0.0.54 returned for these calls; each equals start + i * step for
# i < ceil((stop - start) / step), NumPy's definition, which the test computes too.
ARANGE_CASES = [
    ((0, 16, 1), {"shape": (4, 4)}, np.int64),
    ((5,), {}, np.int64),
    ((1.0, 2.0, 0.25), {}, np.float64),
    ((10, 0, -2), {}, np.int64),
    ((0, 1, 0.1), {}, np.float64),
    ((0, 6, 2), {"dtype": np.float32}, np.float32),
]


@pytest.mark.parametrize(("args", "kwargs", "dtype"), ARANGE_CASES)
def test_arange(args: tuple[float, ...], kwargs: dict[str, object], dtype: type) -> None:
    image = MLArray.arange(*args, **kwargs)  # type: ignore[arg-type]
    start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
    count = max(0, int(np.ceil((stop - start) / step)))
    expected = [start + i * step for i in range(count)]
    assert image.dtype == dtype
    assert image.to_numpy().ravel().tolist() == pytest.approx(expected, abs=0, rel=1e-15)
    assert image.shape == kwargs.get("shape", (count,))
    assert image.meta.layout is None  # patch_size=None by default: Blosc2 chooses on save


def test_arange_examples_exactly() -> None:
    assert MLArray.arange(0, 16, 1, shape=(4, 4), patch_size=None).to_numpy().tolist() == [
        [4 * r + c for c in range(4)] for r in range(4)
    ]
    assert MLArray.arange(10, 0, -2).to_numpy().tolist() == [10, 8, 6, 4, 2]
    for bad in ({"shape": (3, 3)}, {"step": 0}, {"c_order": False}):
        with pytest.raises(ValueError):
            MLArray.arange(0, 16, **bad)  # type: ignore[arg-type]


def test_linspace() -> None:
    image = MLArray.linspace(0.0, 1.0, num=8, shape=(2, 4), endpoint=False, patch_size=None)
    assert image.to_numpy().tolist() == [[i / 8 for i in range(4)], [i / 8 for i in range(4, 8)]]
    assert MLArray.linspace(0, 1, num=5).to_numpy().tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    by_shape = MLArray.linspace(0, 10, shape=(2, 3))
    assert by_shape.to_numpy().tolist() == [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]
    complex_image = MLArray.linspace(0, 1j, num=3)
    assert complex_image.dtype == np.complex128 and complex_image.to_numpy().tolist() == [0j, 0.5j, 1j]
    assert MLArray.linspace(0, 1, num=4, dtype=np.float32).dtype == np.float32
    for kwargs in ({}, {"num": 5, "shape": (2, 2)}, {"num": -1}, {"num": 2, "c_order": False}):
        with pytest.raises(ValueError):
            MLArray.linspace(0, 1, **kwargs)  # type: ignore[arg-type]


def test_asarray_returns_the_same_image_without_arguments() -> None:
    image = MLArray.zeros((2, 2))
    assert MLArray.asarray(image) is image
    other = MLArray.asarray(image, compressed=True)
    assert other is not image and other._backend == "blosc2"
    assert np.array_equal(other.to_numpy(), image.to_numpy())
    assert mlarray.arange(3).shape == (3,) and mlarray.linspace(0, 1, num=3).shape == (3,)


# ---------------------------------------------------------------- in-memory compression


def test_compressed_and_plain_in_memory_images(tmp_path: pytest.TempPathFactory) -> None:
    array = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    packed = MLArray.asarray(array, compressed=True, **LAYOUT)
    plain = MLArray.asarray(array, compressed=False)
    assert packed._backend == "blosc2" and packed.compressed
    assert plain._backend == "numpy" and not plain.compressed
    assert plain._store is plain.to_numpy()
    assert packed._store.shape == (2, 4, 4) and packed._store.schunk.cbytes > 0
    assert packed._store.chunks == (1, 4, 4) and packed._store.blocks == (1, 2, 2)
    layout = packed.meta.blosc2
    assert layout is not None and layout.chunk_size == [1, 4, 4] and layout.strategy == "manual"
    assert plain.meta.blosc2 is None  # NumPy data have no layout until saved
    for image, name in ((packed, "p"), (plain, "u")):
        image.save(f"{tmp_path}/{name}.mla")
        assert np.array_equal(MLArray(f"{tmp_path}/{name}.mla").to_numpy(), array)
    assert packed._backend == "blosc2" and plain._backend == "numpy"  # saving keeps the representation
    saved = MLArray.open(f"{tmp_path}/p.mla").meta.blosc2
    assert saved is not None and saved.chunk_size == [1, 4, 4] and saved.block_size == [1, 2, 2]


def test_compressed_images_index_and_write_like_numpy() -> None:
    array = np.random.default_rng(3).random((6, 7, 8)).astype(np.float32)
    image = MLArray(array.copy(), compressed=True, patch_size=None, chunk_size=(2, 4, 4), block_size=(1, 2, 2))
    assert np.array_equal(image[1:5, ::2, 3], array[1:5, ::2, 3])
    image[2:4, 1:3] = 7
    array[2:4, 1:3] = 7
    assert np.array_equal(image.to_numpy(), array)
    assert np.array_equal(np.asarray(image), array)


def test_compress_and_decompress_in_place(tmp_path: pytest.TempPathFactory) -> None:
    array = np.random.default_rng(7).random((16, 32, 32), dtype=np.float32)
    image = MLArray(array, spacing=(1.0, 1.5, 2.0), meta=Meta(source={"patient_id": "p-001"}))
    image.decompress()  # already NumPy: nothing changes
    assert image._backend == "numpy" and image.meta.blosc2 is None
    image.compress(patch_size=None, chunk_size=(1, 16, 16), block_size=(1, 8, 8), dparams={"nthreads": 1})
    assert image._backend == "blosc2"
    layout = image.meta.blosc2
    assert layout is not None and layout.chunk_size == [1, 16, 16] and layout.block_size == [1, 8, 8]
    assert image.meta.source.to_plain() == {"patient_id": "p-001"} and image.spacing == [1.0, 1.5, 2.0]
    image.decompress()
    assert image._backend == "numpy" and image.meta.blosc2 == layout  # the layout the next save writes
    image.compress()  # no arguments: keeps the recorded layout
    assert image.meta.blosc2 == layout
    image.compress(patch_size=16)
    layout16 = image.meta.blosc2
    assert layout16 is not None and layout16.patch_size == [16, 16, 16] and layout16.strategy == "patch"
    path = f"{tmp_path}/c.mla"
    image.save(path)
    loaded = MLArray(path)
    assert np.array_equal(loaded.to_numpy(), array) and loaded.meta.blosc2 == layout16
    assert loaded.meta.source.to_plain() == {"patient_id": "p-001"}
    with pytest.raises(mlarray.InvalidArgumentError):
        MLArray(meta=Meta()).compress()
    with pytest.raises(mlarray.InvalidArgumentError):
        MLArray(meta=Meta()).decompress()


def test_compress_detaches_an_opened_image(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/d.mla"
    MLArray(np.ones((4, 4), np.uint8)).save(path)
    with MLArray.open(path, mmap_mode="r+") as image:
        image.compress(patch_size=None)
        image[0, 0] = 5
        image.meta.is_seg = True
        assert image._backend == "blosc2"
    untouched = MLArray(path)
    assert untouched.to_numpy().sum() == 16 and untouched.meta.is_seg is None
    reopened = MLArray.open(path, mmap_mode="r+")  # the lock was released by compress
    reopened.decompress()
    reopened.close()


def test_compressed_images_pickle_as_data() -> None:
    import pickle

    image = MLArray(np.arange(12.0).reshape(3, 4), compressed=True, spacing=(1, 2))
    copy_ = pickle.loads(pickle.dumps(image))
    assert copy_._backend == "blosc2" and copy_.meta.blosc2 == image.meta.blosc2
    assert np.array_equal(copy_.to_numpy(), image.to_numpy()) and copy_.spacing == [1, 2]


# ---------------------------------------------------------------- open / create


@pytest.fixture
def saved(tmp_path: pytest.TempPathFactory) -> str:
    path = f"{tmp_path}/o.mla"
    MLArray(np.zeros((4, 4), np.float32), spacing=(1, 2)).save(path)
    return path


# (mode, mmap_mode) -> whether writes reach the file; as mlarray 0.0.54 behaved:
# an mmap_mode decides, without one mode decides ('r' read-only, 'a' read/write).
ACCESS = [
    ("r", "r", "read-only"),
    ("a", "r", "read-only"),
    ("r", None, "read-only"),
    ("a", None, "writes"),
    ("r", "r+", "writes"),
    ("a", "r+", "writes"),
    ("r", "c", "private"),
]


@pytest.mark.parametrize(("mode", "mmap_mode", "access"), ACCESS)
def test_open_mode_and_mmap_mode(saved: str, mode: str, mmap_mode: str | None, access: str) -> None:
    image = MLArray.open(saved, mode=mode, mmap_mode=mmap_mode, dparams={"nthreads": 1})
    assert image.filepath == saved and image.mode == mode and image.mmap_mode == mmap_mode
    if access == "read-only":
        with pytest.raises(PermissionError):
            image[0, 0] = 3
        image.close()
        assert MLArray(saved)[0, 0] == 0
        return
    image[0, 0] = 3
    assert image[0, 0] == 3
    image.close()
    assert MLArray(saved)[0, 0] == (3 if access == "writes" else 0)


def test_open_refuses_bad_modes(saved: str) -> None:
    for kwargs in ({"mode": "w"}, {"mode": "r+"}, {"mmap_mode": "w+"}, {"mmap_mode": "a"}):
        with pytest.raises(mlarray.InvalidArgumentError) as info:
            MLArray.open(saved, **kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, RuntimeError)


def test_open_keeps_the_positional_mmap_mode(saved: str) -> None:
    image = MLArray.open(saved, "r+")
    assert image.mmap_mode == "r+" and image.mode == "r"
    image.close()


def test_in_memory_images_have_no_file_attributes(saved: str) -> None:
    for image in (MLArray(np.zeros(3)), MLArray(saved), MLArray.load(saved)):
        assert image.filepath is None and image.mode is None and image.mmap_mode is None


def test_create_with_the_earlier_signature(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/c.mla"
    array = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32)
    image = MLArray.create(
        path,
        array.shape,
        array.dtype,
        {"case": "c1"},
        "w",
        "w+",
        patch_size=None,
        chunk_size=(2, 16, 16),
        block_size=(1, 8, 8),
        cparams={"codec": blosc2_codec("ZSTD"), "clevel": 3},
        dparams={"nthreads": 1},
    )
    assert image.filepath == path and image.mode == "w" and image.mmap_mode == "w+"
    image[...] = array
    image.meta.copy_from(Meta(spatial=MetaSpatial(spacing=np.array((2, 2.5, 4))), bbox=MetaBbox([[[0, 1]] * 3])))
    image.meta.is_seg = True
    image.close()
    loaded = MLArray.open(path)
    assert np.array_equal(loaded.to_numpy(), array)
    assert loaded.meta.source == {"case": "c1"} and loaded.meta.is_seg is True
    assert loaded.spacing == [2, 2.5, 4] and loaded.meta.bbox == MetaBbox([[[0, 1]] * 3])
    layout = loaded.meta.blosc2
    assert layout is not None and layout.chunk_size == [2, 16, 16] and layout.block_size == [1, 8, 8]
    assert layout.codec == "zstd" and layout.clevel == 3
    none_mmap = MLArray.create(f"{tmp_path}/n.mla", (2, 2), np.float32, mmap_mode=None)
    assert none_mmap.mmap_mode is None and none_mmap.mode == "w"
    none_mmap[0, 0] = 1
    none_mmap.close()
    assert MLArray(f"{tmp_path}/n.mla").to_numpy().tolist() == [[1, 0], [0, 0]]
    for kwargs in ({"mode": "a"}, {"mmap_mode": "r+"}):
        with pytest.raises(RuntimeError):
            MLArray.create(f"{tmp_path}/bad.mla", (2, 2), np.float32, **kwargs)  # type: ignore[arg-type]


def blosc2_codec(name: str) -> object:
    import blosc2

    return blosc2.Codec[name]


def test_load_and_path_constructor_can_keep_data_compressed(saved: str) -> None:
    for image in (MLArray.load(saved, compressed=True), MLArray(saved, compressed=True)):
        assert image._backend == "blosc2" and image.filepath is None
        assert image.to_numpy().tolist() == [[0.0] * 4] * 4 and image.spacing == [1, 2]
        assert image.meta.blosc2 == MLArray.open(saved).meta.blosc2  # the file's layout is kept


# ---------------------------------------------------------------- geometry read-outs


def test_geometry_read_outs_without_shear_match_the_earlier_values() -> None:
    # 0.0.54 returned translation = last column, scale = column norms, rotation = the
    # columns divided by them, shear = identity for this image; so must we.
    direction = [[0, 1, 0], [1, 0, 0], [0, 0, -1]]
    image = MLArray(np.zeros((4, 5, 6)), spacing=(1, 2, 3), origin=(4, 5, 6), direction=direction)
    assert image.translation == [4, 5, 6]
    assert image.scale == [1, 2, 3]
    assert image.rotation == direction
    assert image.shear == np.eye(3).tolist()


def test_geometry_read_outs_of_a_sheared_affine() -> None:
    affine = [[1, 0.5, 0, 1], [0, 2, 0, 2], [0, 0, 3, 3], [0, 0, 0, 1]]
    image = MLArray(np.zeros((4, 5, 6)), affine=affine)
    # A = I @ diag(1, 2, 3) @ U with U[0][1] = 0.5 / 1: worked by hand.
    assert image.translation == [1, 2, 3]
    assert image.rotation == np.eye(3).tolist()
    assert image.scale == [1, 2, 3]
    assert image.shear == [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]


def test_geometry_read_outs_of_a_rotation_about_z() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    rot = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    image = MLArray(np.zeros((2, 2, 2)), spacing=(0.5, 0.5, 2), direction=rot)
    assert np.allclose(image.rotation, rot, atol=1e-12)
    assert np.allclose(image.scale, [0.5, 0.5, 2], atol=1e-12)
    assert np.allclose(image.shear, np.eye(3), atol=1e-12)
    assert image.translation == [0, 0, 0]


def test_geometry_read_outs_without_spatial_axes() -> None:
    image = MLArray(np.zeros((3, 4)), axis_labels=["channel", "temporal"])
    assert image.translation is None and image.scale is None and image.rotation is None and image.shear is None
    assert MLArray(meta=Meta()).scale is None
    two_d = MLArray(np.zeros((3, 4)))  # identity geometry
    assert two_d.translation == [0, 0] and two_d.scale == [1, 1] and two_d.rotation == np.eye(2).tolist()


finite = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False)


@st.composite
def non_singular(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(min_value=1, max_value=4))
    linear = np.array(draw(st.lists(st.lists(finite, min_size=n, max_size=n), min_size=n, max_size=n)))
    with np.errstate(all="ignore"):  # det/cond of extreme draws may overflow; those are rejected below
        det, cond = np.linalg.det(linear), np.linalg.cond(linear)
    assume(np.isfinite(det) and abs(det) > 1e-3 and np.isfinite(cond) and cond < 1e6)
    out = np.eye(n + 1)
    out[:n, :n] = linear
    out[:n, n] = draw(st.lists(finite, min_size=n, max_size=n))
    return out


@given(non_singular())
def test_geometry_decomposition_recomposes_the_affine(affine: np.ndarray) -> None:
    n = affine.shape[0] - 1
    image = MLArray(np.zeros((2,) * n), affine=affine.tolist())
    rotation, scale, shear = np.array(image.rotation), np.array(image.scale), np.array(image.shear)
    assert np.allclose(rotation.T @ rotation, np.eye(n), atol=1e-9)  # orthonormal
    assert np.all(scale > 0)
    assert np.allclose(np.tril(shear, -1), 0) and np.allclose(np.diag(shear), 1)  # unit upper triangular
    recomposed = compose_from_parts(image.translation, rotation, scale, shear)
    assert np.allclose(recomposed, affine, rtol=1e-9, atol=1e-9 * np.abs(affine).max())
    assert image.translation == affine[:n, n].tolist()


# ---------------------------------------------------------------- the example runner


def _runner() -> Any:
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parent.parent / "tools" / "run_legacy_examples.py"
    spec = importlib.util.spec_from_file_location("run_legacy_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_legacy_examples"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_example_runner_reports_pass_deliberate_and_unexplained(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = _runner()
    folder = f"{tmp_path}/examples"
    import os

    os.makedirs(folder)
    scripts = {
        "good.py": "from mlarray import MLArray, MetaBbox\nMLArray.arange(0, 4, 1, shape=(2, 2)).save('a.mla')\n",
        "singular.py": "from mlarray import MLArray\nimport numpy as np\n"
        "MLArray(np.zeros((2, 2, 2)), direction=[[1, 2, 3], [4, 5, 6], [7, 8, 9]])\n",
        "broken.py": "raise SystemExit('something else')\n",
    }
    for name, text in scripts.items():
        with open(f"{folder}/{name}", "w", encoding="utf-8") as f:
            f.write(text)
    assert runner.main(["--source", folder, "--substitute", "--only", "good.py", "singular.py"]) == 0
    out = capsys.readouterr().out
    assert "pass  good.py" in out and "FAIL  singular.py" in out and "deliberate: " in out
    assert "with the substitutions: pass" in out and "1 of 2 pass as-is" in out
    assert runner.main(["--source", folder]) == 1
    out = capsys.readouterr().out
    assert "FAIL  broken.py: something else" in out and "not a known deliberate difference" in out


def test_version_and_has_array_records(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/v.mla"
    MLArray(np.zeros((2, 3), np.uint8)).save(path)
    MLArray(meta=Meta(source={"only": "metadata"})).save(f"{tmp_path}/m.mla")
    meta = MLArray(path).meta
    assert isinstance(meta.writer, MetaVersion) and meta.writer.name == "mlarray"
    assert meta.writer.version == mlarray.__version__
    assert isinstance(meta.array, MetaHasArray) and meta.array.shape == [2, 3] and meta.array.dtype == "|u1"
    assert MLArray(f"{tmp_path}/m.mla").meta.array is None  # has_array False: no array record
