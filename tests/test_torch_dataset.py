"""``mlarray.torch.PatchDataset`` through real DataLoader workers (fork and spawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mlarray import InvalidArgumentError, MLArray
from mlarray.torch import PatchDataset
from mlarray.torch._patches import centred_corner, corner_range

SHAPE = (37, 45, 29)
PATCH = (16, 20, 12)
SPACING = [0.8, 1.5, 2.5]
ORIGIN = [-10.0, 5.0, 100.0]


def _volumes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(size=SHAPE).astype(np.float32)
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[18:21, 20:23, 13:15] = 1  # a small structure far from the borders
    label[12, 32, 8] = 2  # a single voxel
    return image, label


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("patches")
    image, label = _volumes()
    geometry = {"spacing": SPACING, "origin": ORIGIN}
    MLArray(image, patch_size=(16, 16, 16), **geometry).save(d / "img.mla")
    MLArray(label, patch_size=(16, 16, 16), **geometry).save(d / "lab.mla")
    return {"dir": d, "image": image, "label": label, "img": d / "img.mla", "lab": d / "lab.mla"}


def expected_crop(array: np.ndarray, corner: np.ndarray, patch: tuple[int, ...], mode: str = "constant") -> np.ndarray:
    """The patch computed independently: pad the whole array by the patch size, then slice."""
    pad = [(p, p) for p in patch]
    padded = np.pad(array, pad, mode=mode) if mode == "edge" else np.pad(array, pad)
    key = tuple(slice(c + p, c + p + q) for c, p, q in zip(corner.tolist(), patch, patch, strict=True))
    return padded[key]


def collect(ds: PatchDataset, workers: int = 0, context: str | None = None, batch: int = 4) -> list[dict[str, Any]]:
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, multiprocessing_context=context)
    return list(loader)


def _dataset(case: dict[str, Any], **kw: Any) -> PatchDataset:
    options: dict[str, Any] = {"patch_size": PATCH, "samples_per_epoch": 24, "seed": 11}
    options.update(kw)
    return PatchDataset([case["img"]], [case["lab"]], **options)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_two_workers_return_exact_crops_and_the_same_patches_as_no_workers(case: dict[str, Any], context: str) -> None:
    ds = _dataset(case)
    batches = collect(ds, workers=2, context=context)
    assert sum(len(b["case"]) for b in batches) == 24
    for batch in batches:
        for image, label, corner in zip(batch["image"], batch["label"], batch["corner"], strict=True):
            assert image.shape == (1, *PATCH) and image.dtype == torch.float32
            assert label.dtype == torch.uint8
            assert np.array_equal(image[0].numpy(), expected_crop(case["image"], corner.numpy(), PATCH))
            assert np.array_equal(label[0].numpy(), expected_crop(case["label"], corner.numpy(), PATCH))
    single = collect(_dataset(case), workers=0)
    for a, b in zip(batches, single, strict=True):
        assert torch.equal(a["corner"], b["corner"]) and torch.equal(a["image"], b["image"])


def test_the_same_seed_gives_the_same_patches_and_epochs_differ(case: dict[str, Any]) -> None:
    a = collect(_dataset(case, seed=5))
    b = collect(_dataset(case, seed=5))
    c = collect(_dataset(case, seed=6))
    corners = lambda batches: torch.cat([x["corner"] for x in batches])  # noqa: E731
    assert torch.equal(corners(a), corners(b))
    assert not torch.equal(corners(a), corners(c))
    ds = _dataset(case, seed=5)
    ds.set_epoch(1)
    assert not torch.equal(corners(collect(ds)), corners(a))
    ds.set_epoch(0)
    assert torch.equal(corners(collect(ds)), corners(a))


def test_without_a_seed_workers_follow_torch_seeding(case: dict[str, Any]) -> None:
    def run() -> list[dict[str, Any]]:
        torch.manual_seed(1234)
        return collect(_dataset(case, seed=None, samples_per_epoch=16), workers=2, context="fork", batch=8)

    first, second = run(), run()
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["corner"], b["corner"]) and torch.equal(a["image"], b["image"])
    # batch 0 comes from worker 0, batch 1 from worker 1: each worker has its own stream
    assert not torch.equal(first[0]["corner"], first[1]["corner"])
    torch.manual_seed(99)
    other = collect(_dataset(case, seed=None, samples_per_epoch=16), workers=2, context="fork", batch=8)
    assert not torch.equal(torch.cat([b["corner"] for b in other]), torch.cat([b["corner"] for b in first]))


def test_foreground_fraction_holds_and_foreground_patches_are_centred_on_a_class(case: dict[str, Any]) -> None:
    n = 900
    ds = _dataset(case, samples_per_epoch=n, seed=3)
    label = case["label"]
    forced, per_class = 0, {1: 0, 2: 0}
    for i in range(n):
        which, corner, foreground = ds.sample(i)
        if not foreground:
            continue
        forced += 1
        centre = tuple(c + p // 2 for c, p in zip(corner.tolist(), PATCH, strict=True))
        per_class[int(label[centre])] += 1  # KeyError if the centre is background
    # Binomial(900, 1/3): mean 300, sd ~14; 5 sd either side
    assert 230 < forced < 370
    assert 0.35 < per_class[2] / forced < 0.65  # classes are chosen uniformly, not by size
    none = _dataset(case, samples_per_epoch=200, foreground_fraction=0.0)
    assert not any(none.sample(i)[2] for i in range(200))
    every = _dataset(case, samples_per_epoch=50, foreground_fraction=1.0)
    for item in (every[i] for i in range(50)):
        assert item["foreground"] and bool((item["label"] > 0).any())


def test_patches_centred_near_the_border_still_contain_their_voxel() -> None:
    rng = np.random.default_rng(5)
    for _ in range(500):
        shape = rng.integers(1, 30, size=3)
        patch = rng.integers(1, 40, size=3)
        voxel = rng.integers(0, shape)
        corner = centred_corner(voxel, shape, patch)
        low, high = corner_range(shape, patch)
        assert np.all(low <= corner) and np.all(corner <= high)
        assert np.all(corner <= voxel) and np.all(voxel < corner + patch)


@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_images_smaller_than_the_patch_are_padded(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(2)
    small = rng.integers(1, 100, size=(6, 9, 5)).astype(np.int16)
    MLArray(small).save(tmp_path / "small.mla")
    patch = (8, 8, 8)
    ds = PatchDataset([tmp_path / "small.mla"], patch_size=8, samples_per_epoch=20, seed=0, pad_mode=mode)
    for i in range(20):
        item = ds[i]
        corner = item["corner"].numpy()
        assert np.all(corner <= np.maximum(0, np.array(small.shape) - 8))
        expected = expected_crop(small, corner, patch, mode)
        assert np.array_equal(item["image"][0].numpy(), expected.astype(np.float32))
        assert "label" not in item and item["foreground"] is False
    padded = PatchDataset([tmp_path / "small.mla"], patch_size=8, samples_per_epoch=1, seed=0, pad_value=-7)
    assert (padded[0]["image"] == -7).any()


def test_patch_geometry_is_the_patch_corner_in_world_coordinates(case: dict[str, Any]) -> None:
    ds = _dataset(case)
    full = MLArray.open(case["img"])
    try:
        for i in range(10):
            item = ds[i]
            corner = item["corner"].numpy()
            affine = item["affine"].numpy()
            world_of_corner = full.affine @ np.append(corner, 1.0)
            assert np.allclose(affine[:3, 3], world_of_corner[:3])
            assert np.allclose(affine[:3, :3], full.affine[:3, :3])
            assert item["spacing"].tolist() == SPACING
    finally:
        full.close()


def test_channel_axes_come_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.random((10, 12, 2, 9)).astype(np.float32)  # channels in the middle
    MLArray(data, axis_labels=["spatial_x", "spatial_y", "channel", "spatial_z"]).save(tmp_path / "c.mla")
    ds = PatchDataset([tmp_path / "c.mla"], patch_size=(4, 5, 3), samples_per_epoch=5, seed=1)
    for i in range(5):
        item = ds[i]
        x, y, z = item["corner"].tolist()
        assert item["image"].shape == (2, 4, 5, 3)
        expected = np.moveaxis(data[x : x + 4, y : y + 5, :, z : z + 3], 2, 0)
        assert np.array_equal(item["image"].numpy(), expected)


def test_uint16_labels_are_widened_and_labels_without_foreground_sample_randomly(tmp_path: Path) -> None:
    MLArray(np.zeros((8, 8, 8), np.float32)).save(tmp_path / "i.mla")
    MLArray(np.zeros((8, 8, 8), np.uint16)).save(tmp_path / "l.mla")
    ds = PatchDataset([tmp_path / "i.mla"], [tmp_path / "l.mla"], patch_size=4, samples_per_epoch=30, seed=0)
    items = [ds[i] for i in range(30)]
    assert all(it["label"].dtype == torch.int64 for it in items)
    assert not any(it["foreground"] for it in items)


def test_mismatched_pairs_and_bad_arguments_are_refused(case: dict[str, Any], tmp_path: Path) -> None:
    image, label = _volumes()
    MLArray(label[:-1], spacing=SPACING, origin=ORIGIN).save(tmp_path / "short.mla")
    MLArray(label, spacing=[1, 1, 1], origin=ORIGIN).save(tmp_path / "moved.mla")
    MLArray(image, spacing=SPACING, origin=ORIGIN).save(tmp_path / "float.mla")
    img = case["img"]
    for bad, match in [("short.mla", "spatial shape"), ("moved.mla", "geometry"), ("float.mla", "integers")]:
        with pytest.raises(InvalidArgumentError, match=match):
            PatchDataset([img], [tmp_path / bad], patch_size=8, samples_per_epoch=1)
    for kwargs, match in [
        ({"patch_size": (8, 8)}, "spatial axes"),
        ({"patch_size": 8, "samples_per_epoch": 0}, "samples_per_epoch"),
        ({"patch_size": 8, "foreground_fraction": 1.5}, "foreground_fraction"),
        ({"patch_size": 8, "pad_mode": "reflect"}, "pad_mode"),
    ]:
        options = {"samples_per_epoch": 1, **kwargs}
        with pytest.raises(InvalidArgumentError, match=match):
            PatchDataset([img], [case["lab"]], **options)
    with pytest.raises(InvalidArgumentError, match="label maps"):
        PatchDataset([img, img], [case["lab"]], patch_size=8, samples_per_epoch=1)
    ds = _dataset(case)
    with pytest.raises(IndexError):
        ds[24]
