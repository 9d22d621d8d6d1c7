"""Regressions of ``mlarray.torch.PatchDataset`` found by the training-loader audit.

Open files bounded per process, background never foreground, class entries without
indices, padding constants exact in the returned dtype (and physical for scaled images),
and argument checks made when the dataset is built.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mlarray import InvalidArgumentError, Meta, MLArray
from mlarray.stats import update_stats
from mlarray.torch import PatchDataset

SHAPE = (6, 7, 5)
PATCH = (8, 8, 8)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _pairs(folder: Path, n: int) -> tuple[list[Path], list[Path]]:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for k in range(n):
        image = rng.normal(size=(8, 8, 8)).astype(np.float32)
        MLArray(image, patch_size=8).save(folder / f"i{k}.mla")
        MLArray((image > 1).astype(np.uint8), patch_size=8).save(folder / f"s{k}.mla")
        images.append(folder / f"i{k}.mla")
        labels.append(folder / f"s{k}.mla")
    return images, labels


# The limit leaves room for Python, torch and the loader's pipes, but not for 120 open
# files (each open .mla file holds about 3 descriptors): without a bound on the open
# handles the epoch fails with "Too many open files" after some 40 cases.
_LOW_FD_LIMIT = textwrap.dedent(
    """
    import resource, sys
    import torch
    from torch.utils.data import DataLoader
    from mlarray.torch import PatchDataset

    folder, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_NOFILE, (160, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    ds = PatchDataset(
        [f"{folder}/i{k}.mla" for k in range(n)],
        [f"{folder}/s{k}.mla" for k in range(n)],
        patch_size=8, samples_per_epoch=4 * n, seed=0, max_open_files=16,
    )
    seen = set()
    loader = DataLoader(ds, batch_size=8, num_workers=workers, **({"timeout": 60} if workers else {}))
    for batch in loader:
        seen.update(batch["case"].tolist())
    print("cases", len(seen), "handles", len(ds._handles))
    """
)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_over_more_files_than_the_descriptor_limit_allows_open_finishes(tmp_path: Path, workers: int) -> None:
    n = 60
    _pairs(tmp_path, n)
    result = subprocess.run(
        [sys.executable, "-c", _LOW_FD_LIMIT, str(tmp_path), str(n), str(workers)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cases, handles = result.stdout.split()[1::2]
    assert int(cases) > 50  # most of the 60 cases (120 files) were read in one process or two
    assert int(handles) <= 16


def test_open_handles_stay_within_max_open_files_and_close_releases_them(tmp_path: Path) -> None:
    images, labels = _pairs(tmp_path, 12)
    ds = PatchDataset(images, labels, patch_size=8, samples_per_epoch=200, seed=1, max_open_files=4)
    before = _open_fds()
    most = 0
    for i in range(200):
        item = ds[i]
        assert item["image"].shape == (1, 8, 8, 8)
        most = max(most, len(ds._handles))
    assert most == 4
    assert _open_fds() - before <= 4 * 4  # a few descriptors per open file, 4 files
    ds.close()
    assert len(ds._handles) == 0 and _open_fds() == before
    assert PatchDataset(images, patch_size=8, samples_per_epoch=1).max_open_files == 128
    with pytest.raises(InvalidArgumentError, match="max_open_files"):
        PatchDataset(images, patch_size=8, samples_per_epoch=1, max_open_files=0)


@pytest.fixture
def lesion(tmp_path: Path) -> dict[str, Path]:
    shape = (20, 17, 13)
    MLArray(np.zeros(shape, np.float32)).save(tmp_path / "img.mla")
    seg = np.zeros(shape, np.uint8)
    seg[2:5, 3:6, 1:4] = 1
    MLArray(seg).save(tmp_path / "seg.mla")
    update_stats(tmp_path / "seg.mla", with_class_locations=True, seg=True)
    return {"img": tmp_path / "img.mla", "seg": tmp_path / "seg.mla", "flat_background": tmp_path}


def _set_classes(path: Path, classes: list[dict[str, object]]) -> None:
    with MLArray.open(path, mmap_mode="r+") as m:
        m.meta.class_locations = {"classes": classes}


def test_background_listed_in_the_header_is_never_a_foreground_class(lesion: dict[str, Path]) -> None:
    with MLArray.open(lesion["seg"]) as m:
        seg = np.asarray(m[...])
        recorded = [c.model_dump() for c in m.meta.class_locations.classes]
    background = np.flatnonzero(seg.reshape(-1) == 0)
    _set_classes(
        lesion["seg"], [{"label": 0, "count": int(background.size), "indices": background.tolist()}, *recorded]
    )
    ds = PatchDataset(
        [lesion["img"]], [lesion["seg"]], patch_size=8, samples_per_epoch=200, seed=0, foreground_fraction=1.0
    )
    assert [c.label for c in ds.cases[0].classes] == [1]
    assert all(bool((ds[i]["label"] == 1).any()) for i in range(200))


def test_a_class_with_a_count_but_no_indices_is_located_by_a_pass_over_the_label_map(lesion: dict[str, Path]) -> None:
    _set_classes(lesion["seg"], [{"label": 0, "count": 5, "indices": []}, {"label": 1, "count": 27, "indices": []}])
    ds = PatchDataset(
        [lesion["img"]], [lesion["seg"]], patch_size=8, samples_per_epoch=60, seed=0, foreground_fraction=1.0
    )
    assert [(c.label, c.count, len(c.coords)) for c in ds.cases[0].classes] == [(1, 27, 27)]
    for i in range(60):
        item = ds[i]
        assert item["foreground"] and bool((item["label"] == 1).any())


def _padding(corner: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The mask of padded voxels of a patch at ``corner`` over an image of ``SHAPE``, and the inside."""
    inside = tuple(slice(-c, -c + s) for c, s in zip(corner.tolist(), SHAPE, strict=True))
    mask = np.ones(PATCH, bool)
    mask[inside] = False
    return mask, inside


@pytest.fixture
def small(tmp_path: Path) -> dict[str, object]:
    rng = np.random.default_rng(0)
    i16 = rng.integers(-100, 100, SHAPE).astype(np.int16)
    MLArray(i16).save(tmp_path / "i16.mla")
    MLArray(rng.integers(1, 200, SHAPE).astype(np.uint8)).save(tmp_path / "u8.mla")
    seg = np.zeros(SHAPE, np.uint8)
    seg[1:3, 1:3, 1:3] = 1
    for dtype in ("uint8", "uint16", "bool"):
        MLArray(seg.astype(dtype)).save(tmp_path / f"seg_{dtype}.mla")
    scaling = {"slope": 2.0, "intercept": -1024.0, "raw_dtype": "<i2", "stored": "raw"}
    MLArray(i16, meta=Meta(scaling=scaling)).save(tmp_path / "raw.mla")
    return {"dir": tmp_path, "i16": i16}


def _first(small: dict[str, object], image: str, label: str | None = None, **kw: object) -> dict[str, torch.Tensor]:
    d = small["dir"]
    assert isinstance(d, Path)
    labels = None if label is None else [d / label]
    ds = PatchDataset([d / image], labels, patch_size=PATCH, samples_per_epoch=2, seed=0, **kw)  # type: ignore[arg-type]
    return ds[0]


def test_the_padding_is_exactly_the_constant_in_the_returned_dtype(small: dict[str, object]) -> None:
    item = _first(small, "i16.mla", pad_value=-0.5)
    mask, inside = _padding(item["corner"].numpy())
    image = item["image"][0].numpy()
    assert image.dtype == np.float32 and np.unique(image[mask]).tolist() == [-0.5]
    assert np.array_equal(image[inside], small["i16"])
    for value in (-1, 300):  # the stored type (uint8) cannot hold them, the returned float32 can
        assert np.unique(_first(small, "u8.mla", pad_value=value)["image"][0].numpy()[mask]).tolist() == [value]
    wide = _first(small, "i16.mla", "seg_uint16.mla", label_pad_value=-1)["label"]
    assert wide.dtype == torch.int64 and np.unique(wide[0].numpy()[mask]).tolist() == [-1]
    assert np.unique(
        _first(small, "i16.mla", "seg_uint8.mla", label_pad_value=255)["label"][0].numpy()[mask]
    ).tolist() == [255]
    flags = _first(small, "i16.mla", "seg_bool.mla", label_pad_value=1)["label"]
    assert flags.dtype == torch.bool and bool(flags[0].numpy()[mask].all())


@pytest.mark.parametrize(
    ("image", "label", "kw", "match"),
    [
        ("i16.mla", "seg_uint8.mla", {"label_pad_value": -1}, "label_pad_value"),
        ("i16.mla", "seg_uint8.mla", {"label_pad_value": 256}, "label_pad_value"),
        ("i16.mla", "seg_uint8.mla", {"label_pad_value": 0.5}, "label_pad_value"),
        ("i16.mla", "seg_bool.mla", {"label_pad_value": 2}, "label_pad_value"),
        ("u8.mla", None, {"pad_value": -1, "image_dtype": torch.uint8}, "pad_value"),
        ("u8.mla", None, {"pad_value": 0.5, "image_dtype": torch.int16}, "pad_value"),
        ("u8.mla", None, {"pad_value": 1e6, "image_dtype": torch.float16}, "pad_value"),
        ("u8.mla", None, {"pad_value": "zero"}, "pad_value"),
    ],
)
def test_a_constant_the_returned_dtype_cannot_hold_is_refused_when_the_dataset_is_built(
    small: dict[str, object], image: str, label: str | None, kw: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        _first(small, image, label, **kw)


def test_the_padding_of_a_scaled_image_is_a_physical_value(small: dict[str, object]) -> None:
    for pad_value in (-1024, 0):
        item = _first(small, "raw.mla", pad_value=pad_value)
        mask, inside = _padding(item["corner"].numpy())
        image = item["image"][0].numpy()
        assert np.array_equal(image[inside], small["i16"] * 2.0 - 1024)  # type: ignore[operator]
        assert np.unique(image[mask]).tolist() == [pad_value]
    edge = _first(small, "raw.mla", pad_mode="edge")["image"][0].numpy()
    assert edge.min() >= -1024 - 200 and edge.max() <= -1024 + 200


def test_negative_seeds_and_epochs_are_refused_and_numpy_integers_accepted(lesion: dict[str, Path]) -> None:
    images, labels = [lesion["img"]], [lesion["seg"]]
    with pytest.raises(InvalidArgumentError, match="seed"):
        PatchDataset(images, labels, patch_size=8, samples_per_epoch=1, seed=-1)
    ds = PatchDataset(images, labels, patch_size=np.int64(8), samples_per_epoch=np.int64(3), seed=np.int64(4))
    assert ds.patch_size == [8, 8, 8] and ds[2]["image"].shape == (1, 8, 8, 8)
    with pytest.raises(InvalidArgumentError, match="epoch"):
        ds.set_epoch(-1)
    ds.set_epoch(np.int64(2))
    assert ds.epoch == 2
    mixed = PatchDataset(images, patch_size=(np.int32(4), np.int64(6), 8), samples_per_epoch=1, seed=0)
    assert mixed.patch_size == [4, 6, 8] and mixed[0]["image"].shape == (1, 4, 6, 8)
    for bad in (8.5, "8", (4, 4.5, 4)):
        with pytest.raises(InvalidArgumentError, match="patch_size"):
            PatchDataset(images, patch_size=bad, samples_per_epoch=1)  # type: ignore[arg-type]


def test_label_maps_of_different_integer_types_give_one_label_type_through_workers(tmp_path: Path) -> None:
    """Workers stack a batch in its first item's type: uint8 next to uint16 turned label 300 into 44."""
    images, labels = [], []
    for i, (dtype, value) in enumerate([(np.uint8, 1), (np.uint16, 300)]):
        MLArray(np.zeros((8, 8, 8), np.float32)).save(tmp_path / f"img{i}.mla")
        label = MLArray(np.full((8, 8, 8), value, dtype))
        label.meta.is_seg = True
        label.save(tmp_path / f"lab{i}.mla")
        images.append(tmp_path / f"img{i}.mla")
        labels.append(tmp_path / f"lab{i}.mla")
    dataset = PatchDataset(images, labels, patch_size=4, samples_per_epoch=16, seed=0)
    assert {case.label_dtype for case in dataset.cases} == {np.dtype(np.int64)}
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="fork")
    seen = set()
    for batch in loader:
        assert batch["label"].dtype == torch.int64
        for case, label in zip(batch["case"].tolist(), batch["label"], strict=True):
            assert bool((label == (1 if case == 0 else 300)).all())
            seen.add(case)
    assert seen == {0, 1}
    small = PatchDataset(images[:1], labels[:1], patch_size=4, samples_per_epoch=1, seed=0)
    assert small[0]["label"].dtype == torch.uint8  # one type only: kept


def test_metadata_only_files_and_edge_padding_of_an_empty_axis_are_refused_when_built(tmp_path: Path) -> None:
    MLArray(None, spacing=(1.0, 1.0, 1.0)).save(tmp_path / "header.mla")
    with pytest.raises(InvalidArgumentError, match="metadata-only"):
        PatchDataset([tmp_path / "header.mla"], patch_size=4, samples_per_epoch=1)
    MLArray(np.zeros((0, 5, 6), np.float32)).save(tmp_path / "empty.mla")
    with pytest.raises(InvalidArgumentError, match="length 0"):
        PatchDataset([tmp_path / "empty.mla"], patch_size=4, samples_per_epoch=1, pad_mode="edge")
    constant = PatchDataset([tmp_path / "empty.mla"], patch_size=4, samples_per_epoch=1, pad_value=3.0)
    assert bool((constant[0]["image"] == 3.0).all())


def test_the_dataset_keeps_class_voxels_compactly_for_its_workers(tmp_path: Path) -> None:
    """Each case held its header's class-location sample as int64 (k, 3): ~420 KB for 18,000 voxels,
    pickled into every DataLoader worker (audit scale). Flat 4-byte indices hold the same voxels."""
    import pickle

    from mlarray.stats import update_stats
    from mlarray.torch.dataset import read_class_samples

    seg = np.zeros((64, 64, 64), np.uint8)
    seg[10:40, 10:40, 10:40] = 1
    seg[40:60, 40:60, 40:60] = 2
    MLArray(seg, spacing=(1, 1, 1)).save(tmp_path / "seg.mla")
    MLArray(np.zeros((64, 64, 64), np.int16), spacing=(1, 1, 1)).save(tmp_path / "img.mla")
    update_stats(tmp_path / "seg.mla", with_class_locations=True)
    ds = PatchDataset(
        [tmp_path / "img.mla"] * 4, [tmp_path / "seg.mla"] * 4, patch_size=16, samples_per_epoch=50, seed=0
    )
    with MLArray.open(tmp_path / "seg.mla") as label:
        recorded = read_class_samples(label, str(tmp_path / "seg.mla"), [0, 1, 2], 0)
    classes = ds.cases[0].classes
    assert [(c.label, c.count) for c in classes] == [(s.label, s.count) for s in recorded]
    for kept, sample in zip(classes, recorded, strict=True):
        np.testing.assert_array_equal(kept.coords, sample.coords)  # the same voxels, in the same order
        assert kept.flat.dtype == np.uint32
    stored = sum(len(c) for c in classes)
    assert len(pickle.dumps(ds)) < 4 * (4 * stored + 4096)  # 4 bytes a voxel (was 24), little else per case
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.cases[0].classes[1].coords, classes[1].coords)
    for i in range(50):
        assert tuple(clone[i]["label"].shape) == (1, 16, 16, 16)  # channel first, as the guide says
