"""The MLArray API: modes, metadata edits, geometry, constructors, errors, atomic saves."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from strategies import DTYPES

import mlarray
from mlarray import (
    HeaderValidationError,
    InvalidArgumentError,
    Meta,
    MLArray,
    MLArrayError,
    MLArrayFileNotFoundError,
    ReadOnlyError,
    WrongExtensionError,
)


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(1).integers(-1024, 2000, size=(20, 33, 41), dtype=np.int16)


@pytest.fixture
def saved(tmp_path: Path, volume: np.ndarray) -> Path:
    path = tmp_path / "v.mla"
    MLArray(volume, spacing=(2, 1, 1), origin=(1, 2, 3), meta={"id": "x"}, patch_size=16).save(path)
    return path


def test_load_open_modes_read_the_same_data(saved: Path, volume: np.ndarray) -> None:
    np.testing.assert_array_equal(MLArray(saved).to_numpy(), volume)
    np.testing.assert_array_equal(MLArray.load(saved).to_numpy(), volume)
    for mode in ("r", "r+", "c"):
        with MLArray.open(saved, mmap_mode=mode) as image:
            assert image.shape == volume.shape and image.dtype == volume.dtype
            np.testing.assert_array_equal(image[3:17, 5:30, ::3], volume[3:17, 5:30, ::3])
            np.testing.assert_array_equal(image[4], volume[4])
            np.testing.assert_array_equal(np.asarray(image), volume)


def test_read_only_mode_refuses_writes(saved: Path) -> None:
    image = MLArray.open(saved, mmap_mode="r")
    with pytest.raises(ReadOnlyError) as info:
        image[0, 0, 0] = 1
    assert isinstance(info.value, PermissionError) and info.value.code == "READ_ONLY"


def test_r_plus_writes_data_and_persists_metadata_on_close(saved: Path, volume: np.ndarray) -> None:
    image = MLArray.open(saved, mmap_mode="r+")
    image[2:5, 10:20] *= 2
    image.meta.source["study_id"] = "new-study"
    image.spacing[1] = 5.3
    image.close()
    expected = volume.copy()
    expected[2:5, 10:20] *= 2
    again = MLArray(saved)
    np.testing.assert_array_equal(again.to_numpy(), expected)
    assert again.meta.source == {"id": "x", "study_id": "new-study"}
    assert again.spacing == [2, 5.3, 1]


def test_copy_on_write_mode_never_touches_the_file(saved: Path, volume: np.ndarray) -> None:
    before = saved.read_bytes()
    image = MLArray.open(saved, mmap_mode="c")
    image[0] = 7
    assert (image[0] == 7).all()
    image.close()
    np.testing.assert_array_equal(MLArray(saved).to_numpy(), volume)
    assert saved.read_bytes() == before


def test_copy_on_write_writes_that_grow_the_data(tmp_path: Path) -> None:
    """Writes needing more room than the file once crashed the process (SIGBUS) in blosc2's 'c' mapping."""
    path = tmp_path / "zeros.mla"
    MLArray(np.zeros((80, 120, 120), np.int16), patch_size=48).save(path)
    before = path.read_bytes()
    noise = np.random.default_rng(0).integers(0, 30000, (80, 120, 120), dtype=np.int16)
    with MLArray.open(path, mmap_mode="c") as image:
        image[...] = noise
        np.testing.assert_array_equal(image[...], noise)
    assert path.read_bytes() == before


def test_create_w_plus(tmp_path: Path, volume: np.ndarray) -> None:
    path = tmp_path / "new.mla"
    image = MLArray.create(path, shape=volume.shape, dtype=volume.dtype, mmap_mode="w+", spacing=(1, 2, 3))
    assert (image[...] == 0).all()
    image[...] = volume
    image.meta.is_seg = False
    image.close()
    again = MLArray(path)
    np.testing.assert_array_equal(again.to_numpy(), volume)
    assert again.spacing == [1, 2, 3] and again.meta.is_seg is False


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [("<f4", -0.0), ("<f8", -0.0), ("<f8", float("nan")), ("<c8", complex(-0.0, 0.0)), ("|b1", True), ("<i2", -7)],
)
def test_create_keeps_the_fill_value_bit_for_bit(tmp_path: Path, dtype: str, fill: object) -> None:
    """-0.0 is not stored as zeros (it compares equal to 0 but its sign bit is set)."""
    path = tmp_path / "filled.mla"
    expected = np.full((6, 10, 9), fill, dtype=dtype)
    with MLArray.create(path, expected.shape, dtype=dtype, fill_value=fill, chunk_size=(2, 5, 9)) as image:
        assert image[...].tobytes() == expected.tobytes()
        image[2:4] = 1
        expected[2:4] = 1
    for nthreads in (1, 2):
        assert MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy().tobytes() == expected.tobytes()
    with MLArray.open(path) as reopened:
        assert reopened[0:2, 1:7, 3].tobytes() == expected[0:2, 1:7, 3].tobytes()


@pytest.mark.parametrize(("dtype", "fill"), [("|u1", 300), ("<i2", "abc"), ("<u2", float("nan")), ("<f4", [1.0, 2.0])])
def test_create_refuses_a_fill_value_the_dtype_cannot_hold(tmp_path: Path, dtype: str, fill: object) -> None:
    path = tmp_path / "kept.mla"
    MLArray(np.arange(4, dtype=np.int8)).save(path)
    before = path.read_bytes()
    with pytest.raises(InvalidArgumentError, match="fill_value"):
        MLArray.create(path, (4, 4), dtype=dtype, fill_value=fill)
    assert path.read_bytes() == before  # nothing written


@pytest.mark.parametrize("shape", [(2, -2), -1, (2.5, 3), 3.0, "ab", None])
def test_shapes_numpy_refuses_are_invalid_arguments(tmp_path: Path, shape: object) -> None:
    path = tmp_path / "kept.mla"
    MLArray(np.arange(4, dtype=np.int8)).save(path)
    before = path.read_bytes()
    with pytest.raises(InvalidArgumentError, match="shape"):
        MLArray.create(path, shape, dtype=np.uint8)  # type: ignore[arg-type]
    assert path.read_bytes() == before
    for make in (MLArray.zeros, MLArray.empty, MLArray.ones, lambda s: MLArray.full(s, 1)):
        with pytest.raises(InvalidArgumentError, match="shape") as info:
            make(shape)
        assert info.value.code == "INVALID_ARGUMENT" and isinstance(info.value, ValueError)
    assert MLArray.zeros([np.uint8(2), 3]).shape == (2, 3) and MLArray.zeros(np.int64(4)).shape == (4,)


def test_bad_constructor_arguments_are_invalid_arguments(tmp_path: Path) -> None:
    volume = np.zeros((8, 8, 8), np.float32)
    for kwargs in ({"patch_size": 2.5}, {"patch_size": [4, 4.5, 4]}, {"cparams": {"nope": 1}}, {"cparams": 5}):
        path = tmp_path / "never.mla"
        with pytest.raises(InvalidArgumentError) as info:
            MLArray(volume, **kwargs).save(path)  # type: ignore[arg-type]
        assert info.value.code == "INVALID_ARGUMENT" and not path.exists()
    with pytest.raises(InvalidArgumentError, match="copy"):
        MLArray(volume, copy=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="array"):
        MLArray([[1, 2], [3]])
    assert MLArray(volume, patch_size=np.int64(4)).save(tmp_path / "np.mla") is None


@pytest.mark.parametrize(
    ("cparams", "expected"),
    [
        ({"clevel": 9}, ("lz4hc", 9, ["shuffle"])),
        ({"filters": []}, ("lz4hc", 5, [])),
        ({"codec": blosc2.Codec.ZSTD}, ("zstd", 5, ["shuffle"])),
    ],
)
def test_a_partial_cparams_dict_is_completed_from_the_package_defaults(
    tmp_path: Path, cparams: dict[str, Any], expected: tuple[str, int, list[str]]
) -> None:
    """``{"clevel": 9}`` changes the level only (python-blosc2's own defaults would switch to ZSTD)."""
    MLArray(np.zeros((8, 8, 8), np.float32), cparams=cparams).save(tmp_path / "a.mla")
    layout = MLArray.open(tmp_path / "a.mla").meta.layout
    assert layout is not None and (layout.codec, layout.clevel, layout.filters) == expected


def test_an_invalid_in_place_list_edit_fails_at_close_and_leaves_a_valid_file(tmp_path: Path) -> None:
    """``meta.spatial.spacing[0] = -1`` bypasses the models; close refuses it and keeps the file consistent."""
    from mlarray.validate import validate_file

    path = tmp_path / "n.mla"
    MLArray(np.zeros((4, 5, 6), np.float32), spacing=(1, 2, 3)).save(path)
    handle = MLArray.open(path, mmap_mode="r+")
    handle[0] = 1.0
    handle.meta.spatial.spacing[0] = -1.0
    with pytest.raises(HeaderValidationError):
        handle.close()
    assert handle._closed
    report = validate_file(path, deep=True)
    assert report.valid, report.code  # was DIGEST_MISMATCH: data written, digest stale
    again = MLArray.load(path)
    assert again.spacing == [1.0, 2.0, 3.0] and float(again[0].min()) == 1.0 and float(again[1].max()) == 0.0
    with MLArray.open(path, mmap_mode="r+") as clean:  # metadata-only edits of that kind: nothing written
        clean.meta.spatial.spacing.append(5.0)
        before = path.read_bytes()
        with pytest.raises(HeaderValidationError):
            clean.close()
    assert path.read_bytes() == before


def test_metadata_edits_are_validated_before_they_are_kept(volume: np.ndarray) -> None:
    image = MLArray(volume, spacing=(1, 1, 1.5))
    image.spacing[1] = 5.3
    assert image.spacing == [1, 5.3, 1.5]
    with pytest.raises(HeaderValidationError):
        image.spacing[1] = -1
    with pytest.raises(HeaderValidationError):
        image.spacing.append(2.0)
    with pytest.raises(HeaderValidationError):
        image.spacing = (1, 2)
    with pytest.raises(HeaderValidationError):
        image.origin = (0, float("nan"), 0)
    with pytest.raises(HeaderValidationError):
        image.direction = [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(HeaderValidationError):
        image.meta.source["k"] = float("inf")
    with pytest.raises(HeaderValidationError):
        image.meta = Meta(bbox={"bboxes": [[[0, 1], [0, 1]]]})
    assert image.spacing == [1, 5.3, 1.5] and image.origin is None


def test_an_invalid_header_can_never_be_saved(tmp_path: Path, volume: np.ndarray) -> None:
    path = tmp_path / "keep.mla"
    MLArray(volume, spacing=(1, 1, 1)).save(path)
    before = path.read_bytes()
    image = MLArray(volume, spacing=(1, 1, 1))
    # Bypass the validated views: mutate the model's plain list directly.
    image.meta.spatial.spacing.append(3.0)  # type: ignore[union-attr]
    with pytest.raises(HeaderValidationError):
        image.save(path)
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p != "keep.mla"], "temporary files left behind"


def test_geometry_and_affine(volume: np.ndarray) -> None:
    c, s = np.cos(0.4), np.sin(0.4)
    direction = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    image = MLArray(volume, spacing=(2, 3, 4), origin=(10, 20, 30), direction=direction)
    affine = image.affine
    index = np.array([3, 5, 7, 1.0])
    world = np.array(direction) @ np.diag([2, 3, 4]) @ index[:3] + np.array([10, 20, 30])
    np.testing.assert_allclose(affine @ index, [*world, 1])
    sheared = np.array([[1, 0.5, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1.0]])
    image.affine = sheared
    np.testing.assert_allclose(image.affine, sheared)
    assert image.meta.spatial.spacing is None
    assert image.spatial_ndim == 3
    before = image.meta.spatial.model_dump()
    transposed = np.array([[2.0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 4, 0], [-100, -80, 40, 1]])
    for bad in (transposed, transposed @ np.diag([1, 1, 1, 1.0]) + np.triu(np.ones((4, 4)), 1) * 0.1, np.eye(3)):
        with pytest.raises(HeaderValidationError):  # was: the last row dropped, origin silently 0
            image.affine = bad
        assert image.meta.spatial.model_dump() == before


def test_channel_first_geometry_labels_the_leading_axis() -> None:
    image = MLArray(np.zeros((4, 8, 9, 10), np.float32), spacing=(1, 1, 2))
    assert image.axis_labels == ["non_spatial", "spatial", "spatial", "spatial"]
    assert image.spatial_ndim == 3 and image.ndim == 4
    labelled = MLArray(np.zeros((4, 8, 9), np.float32), axis_labels=["channel", "spatial_y", "spatial_x"])
    assert labelled.spatial_ndim == 2


def test_metadata_only_image(tmp_path: Path) -> None:
    path = tmp_path / "boxes.mla"
    image = MLArray(meta=Meta(bbox={"bboxes": [[[0, 5], [1, 6]]], "labels": [3]}, is_seg=False))
    image.save(path)
    again = MLArray(path)
    assert again.shape is None and again.meta.bbox.labels == [3]  # type: ignore[union-attr]
    assert again.ndim == 0 and len(again) == 0 and again.size == 0  # len() 0 as in mlarray 0.0.x
    with pytest.raises(InvalidArgumentError):
        again.to_numpy()
    with MLArray.open(path, mmap_mode="r+") as opened:
        opened.meta.extra["note"] = "edited"
    assert MLArray(path).meta.extra == {"note": "edited"}


@pytest.mark.parametrize(
    "dtype",
    DTYPES,
)
def test_every_dtype_round_trips(tmp_path: Path, dtype: type) -> None:
    data = (np.random.default_rng(0).random((7, 9)) * 100).astype(dtype)
    path = tmp_path / "d.mla"
    MLArray(data).save(path)
    out = MLArray(path).to_numpy()
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, data)


def test_big_endian_input_is_stored_little_endian(tmp_path: Path) -> None:
    data = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    path = tmp_path / "be.mla"
    MLArray(data).save(path)
    out = MLArray(path).to_numpy()
    assert out.dtype.str == "<i4"
    np.testing.assert_array_equal(out, data)


def test_constructors(tmp_path: Path) -> None:
    base = MLArray(np.ones((3, 4, 5), np.float32), spacing=(1, 2, 3), meta={"a": 1})
    assert (mlarray.zeros((2, 3)).to_numpy() == 0).all()
    assert (MLArray.ones((2, 3), dtype=np.uint8).to_numpy() == 1).all()
    assert (mlarray.full((2, 3), 7, dtype=np.int16).to_numpy() == 7).all()
    assert mlarray.empty((2, 3)).shape == (2, 3)
    like = mlarray.zeros_like(base)
    assert like.shape == (3, 4, 5) and like.spacing == [1, 2, 3] and like.meta.source == {"a": 1}
    assert (mlarray.full_like(base, 2, dtype=np.int8).to_numpy() == 2).all()
    assert mlarray.ones_like(np.zeros((2, 2))).shape == (2, 2)
    assert mlarray.empty_like(base).dtype == np.float32
    assert mlarray.asarray(base) is base
    assert mlarray.asarray([[1, 2], [3, 4]]).shape == (2, 2)


def test_bad_arguments_and_paths_give_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(WrongExtensionError):
        MLArray(np.zeros(3)).save(tmp_path / "x.npy")
    with pytest.raises(MLArrayFileNotFoundError) as info:
        MLArray.open(tmp_path / "missing.mla")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(InvalidArgumentError):
        MLArray(np.zeros(()))
    with pytest.raises(InvalidArgumentError):
        MLArray(np.array(["a", "b"]))
    with pytest.raises(InvalidArgumentError):
        MLArray.open(tmp_path / "x.mla", mmap_mode="w+")
    with pytest.raises(InvalidArgumentError) as info:
        MLArray(np.zeros((4, 4)), patch_size=(1, 2, 3)).save(tmp_path / "p.mla")
    assert info.value.path == str(tmp_path / "p.mla")
    with pytest.raises(MLArrayFileNotFoundError):
        MLArray(np.zeros(3)).save(tmp_path / "no" / "dir.mla")


def test_read_only_file_is_refused_and_left_untouched(saved: Path) -> None:
    before = saved.read_bytes()
    os.chmod(saved, stat.S_IRUSR)
    try:
        with pytest.raises(ReadOnlyError):
            MLArray.open(saved, mmap_mode="r+")
        with pytest.raises(ReadOnlyError):
            MLArray(np.zeros(3)).save(saved)
        assert saved.read_bytes() == before
        assert MLArray.open(saved, mmap_mode="r").shape == (20, 33, 41)
    finally:
        os.chmod(saved, stat.S_IRUSR | stat.S_IWUSR)


def test_saving_over_the_open_file(saved: Path, volume: np.ndarray) -> None:
    image = MLArray.open(saved, mmap_mode="r+")
    image.meta.source["again"] = True
    image.save(saved)
    np.testing.assert_array_equal(image[...], volume)
    image[0, 0, 0] = 5
    image.close()
    again = MLArray(saved)
    assert again.meta.source["again"] is True and again[0, 0, 0] == 5


def test_save_keeps_layout_and_relayout_on_request(saved: Path, tmp_path: Path) -> None:
    original = MLArray(saved)
    original.save(tmp_path / "same.mla")
    assert MLArray(tmp_path / "same.mla").meta.layout == original.meta.layout
    relayout = MLArray(saved, patch_size=(8, 8, 8))
    relayout.save(tmp_path / "other.mla")
    assert MLArray(tmp_path / "other.mla").meta.layout.patch_size == [8, 8, 8]  # type: ignore[union-attr]
    codec = MLArray(saved, cparams={"codec": mlarray.storage.io.blosc2.Codec.ZSTD, "clevel": 3})
    codec.save(tmp_path / "zstd.mla")
    layout = MLArray(tmp_path / "zstd.mla").meta.layout
    assert layout is not None and (layout.codec, layout.clevel) == ("zstd", 3)


KILL_SCRIPT = """
import sys, numpy as np
from mlarray import MLArray
data = np.random.default_rng(0).random((200, 256, 256))
MLArray(data, meta={"generation": "new"}).save(sys.argv[1])
"""


def test_a_killed_save_leaves_the_old_file(tmp_path: Path) -> None:
    import signal
    import time

    path = tmp_path / "precious.mla"
    MLArray(np.arange(10), meta={"generation": "old"}).save(path)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n.startswith(".mla-tmp-") for n in os.listdir(tmp_path)):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    image = MLArray(path)
    generation = image.meta.source["generation"]
    if generation == "old":
        assert path.read_bytes() == before
    else:
        assert generation == "new" and image.shape == (200, 256, 256)


def test_errors_share_one_root_with_codes() -> None:
    from mlarray.errors import ALL_ERRORS, ERROR_CODES

    assert all(issubclass(cls, MLArrayError) for cls in ALL_ERRORS)
    assert len(ERROR_CODES) == len(ALL_ERRORS)


@pytest.mark.parametrize(
    ("shape", "chunks", "blocks"),
    [((4, 300, 260), (1, 300, 260), (1, 64, 64)), ((7, 9), (5, 5), (2, 3)), ((10,), (10,), (3,))],
)
def test_blocks_that_do_not_divide_chunks_round_trip(
    tmp_path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], blocks: tuple[int, ...]
) -> None:
    data = np.random.default_rng(5).integers(0, 99, shape, dtype=np.int16)
    path = tmp_path / "pad.mla"
    MLArray(data, chunk_size=chunks, block_size=blocks).save(path)
    with MLArray.open(path) as image:
        np.testing.assert_array_equal(image[...], data)
        assert image.meta.layout is not None and image.meta.layout.chunk_size == list(chunks)


def test_every_error_class_is_exported_from_the_package() -> None:
    from mlarray.errors import ALL_ERRORS

    for cls in ALL_ERRORS:
        assert getattr(mlarray, cls.__name__) is cls
        assert cls.__name__ in mlarray.__all__


def test_writing_non_contiguous_values_to_a_file(saved: Path, volume: np.ndarray) -> None:
    source = np.asfortranarray(np.arange(8 * 24 * 41, dtype=np.int16).reshape(8, 24, 41))
    with MLArray.open(saved, mmap_mode="r+") as image:
        image[12:, 9:, :] = source
        image[0, :, ::2] = volume[1, :, ::2][:, ::-1]
    expected = volume.copy()
    expected[12:, 9:, :] = source
    expected[0, :, ::2] = volume[1, :, ::2][:, ::-1]
    np.testing.assert_array_equal(MLArray(saved).to_numpy(), expected)


def test_corrupt_chunks_raise_corrupt_frame_on_read(saved: Path) -> None:
    from mlarray import CorruptFrameError
    from mlarray.storage import data_section

    start, _ = data_section(saved)
    raw = bytearray(saved.read_bytes())
    raw[start + 2] |= 0xE0  # the first chunk's codec bits now name no codec: undecodable with any codec
    saved.write_bytes(bytes(raw))
    image = MLArray.open(saved)
    with pytest.raises(CorruptFrameError):
        image[...]


@pytest.mark.parametrize("bad", ["DELTA", "TRUNC_PREC"])
def test_filters_that_break_partial_reads_or_lose_data_are_refused(tmp_path: Path, bad: str) -> None:
    import blosc2

    cparams = {"filters": [getattr(blosc2.Filter, bad)], "filters_meta": [0]}
    with pytest.raises(InvalidArgumentError):
        MLArray(np.arange(100, dtype=np.int16), cparams=cparams).save(tmp_path / "f.mla")
    assert not list(tmp_path.iterdir())
    with pytest.raises(HeaderValidationError):
        mlarray.Layout(strategy="manual", chunk_size=[4], block_size=[2], filters=[bad.lower()])


def test_resaving_an_older_minor_file_writes_the_current_schema_version(tmp_path: Path) -> None:
    """The writer checks the header against its own schema version, so it writes that version."""
    import shutil

    from mlarray.storage import read_header
    from mlarray.versions import SCHEMA_VERSION

    old = tmp_path / "old.mla"
    shutil.copyfile(Path(__file__).parent.parent / "conformance/cases/valid/dtype-int16-3d.mla", old)
    assert read_header(old).meta.schema_version == "1.0"
    image = MLArray.load(old)
    image.save(tmp_path / "new.mla")
    assert read_header(tmp_path / "new.mla").meta.schema_version == SCHEMA_VERSION
    np.testing.assert_array_equal(MLArray.load(tmp_path / "new.mla").to_numpy(), image.to_numpy())
