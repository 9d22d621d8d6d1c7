"""MONAI's LoadImage/LoadImaged read ``.mla`` through ``mlarray.monai.MLArrayReader`` like the NIfTI they came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    EnsureChannelFirstd,
    LoadImage,
    LoadImaged,
    Orientationd,
    RandSpatialCropd,
    Spacing,
    Spacingd,
)

from mlarray import InvalidArgumentError, Meta, MLArray, Spatial
from mlarray.convert import convert_file
from mlarray.monai import MLArrayReader

OBLIQUE = np.array([[0.0, -1.5, 0.0, 10.0], [0.9, 0.0, 0.0, -20.0], [0.0, 0.0, 2.5, 30.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("monai")
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1000, (20, 24, 16)).astype(np.int16)
    seg = (rng.random((20, 24, 16)) < 0.1).astype(np.uint8)
    nib.save(nib.Nifti1Image(ct, OBLIQUE), d / "ct.nii.gz")
    nib.save(nib.Nifti1Image(seg, OBLIQUE), d / "seg.nii.gz")
    convert_file(d / "ct.nii.gz", d / "ct.mla")
    convert_file(d / "seg.nii.gz", d / "seg.mla")
    return {"dir": d, "ct_nii": d / "ct.nii.gz", "ct": d / "ct.mla", "seg_nii": d / "seg.nii.gz", "seg": d / "seg.mla"}


def test_load_image_gives_nibabels_affine_and_data(pair: dict[str, Path]) -> None:
    image = LoadImage(reader=MLArrayReader(), image_only=True)(pair["ct"])
    assert isinstance(image, MetaTensor)
    nifti = nib.load(pair["ct_nii"])
    assert np.allclose(image.affine.numpy(), nifti.affine)
    assert np.array_equal(image.numpy(), np.asarray(nifti.dataobj))
    assert image.meta["space"] == "RAS"
    assert list(image.meta["spatial_shape"]) == [20, 24, 16]
    assert np.isnan(image.meta["original_channel_dim"])
    assert np.allclose(image.meta["original_affine"], nifti.affine)


def test_a_monai_pipeline_gives_the_same_result_as_on_the_nifti(pair: dict[str, Path]) -> None:
    def pipeline(reader: Any) -> Compose:
        keys = ["img", "seg"]
        return Compose(
            [
                LoadImaged(keys, reader=reader),
                EnsureChannelFirstd(keys),
                Orientationd(keys, axcodes="LPS", labels=None),
                Spacingd(keys, pixdim=(2.0, 2.0, 2.0), mode=("bilinear", "nearest")),
            ]
        )

    ours = pipeline(MLArrayReader())({"img": pair["ct"], "seg": pair["seg"]})
    theirs = pipeline("NibabelReader")({"img": pair["ct_nii"], "seg": pair["seg_nii"]})
    for key in ("img", "seg"):
        assert ours[key].shape == theirs[key].shape
        assert np.allclose(ours[key].affine.numpy(), theirs[key].affine.numpy())
        assert np.allclose(ours[key].numpy(), theirs[key].numpy())


def test_load_imaged_in_two_dataloader_workers(pair: dict[str, Path]) -> None:
    transform = Compose(
        [
            LoadImaged(["img", "seg"], reader=MLArrayReader()),
            EnsureChannelFirstd(["img", "seg"]),
            RandSpatialCropd(["img", "seg"], roi_size=(8, 8, 8), random_size=False),
        ]
    )
    data = [{"img": pair["ct"], "seg": pair["seg"]}] * 6
    loader = DataLoader(Dataset(data, transform), batch_size=2, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert len(batches) == 3
    assert all(b["img"].shape == (2, 1, 8, 8, 8) and b["seg"].shape == (2, 1, 8, 8, 8) for b in batches)


def test_lps_files_get_a_ras_affine_and_channels_are_found(tmp_path: Path) -> None:
    data = np.arange(2 * 5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7, 2)
    image = MLArray(
        data,
        spacing=[1, 2, 3],
        origin=[4, 5, 6],
        axis_labels=["spatial", "spatial", "spatial", "channel"],
        meta=Meta(spatial=Spatial(coord_system="LPS")),
    )
    image.save(tmp_path / "lps.mla")
    lps = image.affine
    out = LoadImage(reader=MLArrayReader(), image_only=True)(tmp_path / "lps.mla")
    assert np.allclose(out.affine.numpy(), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps)
    assert out.meta["original_channel_dim"] == 3
    first = LoadImage(reader=MLArrayReader(), image_only=True, ensure_channel_first=True)(tmp_path / "lps.mla")
    assert first.shape == (2, 5, 6, 7)
    assert np.array_equal(first.numpy(), np.moveaxis(data, 3, 0))
    kept = LoadImage(reader=MLArrayReader(to_ras=False), image_only=True)(tmp_path / "lps.mla")
    assert np.allclose(kept.affine.numpy(), lps) and kept.meta["space"] == "LPS"


def test_every_orientation_code_gets_the_ras_affine_of_its_twin(tmp_path: Path) -> None:
    """An LAS (or PIR) file and the same grid described in RAS load with one affine, with or without to_ras."""
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    ras = np.array([[-2.0, 0, 0, -4], [0, 3, 0, 5], [0, 0, 1, 6], [0, 0, 0, 1]])  # RAS twin of the LAS file below
    MLArray(data, affine=ras, meta=Meta(spatial=Spatial(coord_system="RAS"))).save(tmp_path / "ras.mla")
    las = np.diag([-1.0, 1, 1, 1]) @ ras
    MLArray(data, affine=las, meta=Meta(spatial=Spatial(coord_system="LAS"))).save(tmp_path / "las.mla")
    pir = ras.copy()  # world (posterior, inferior, right) = (-y, -z, x) of RAS
    pir[:3, :] = np.array([[0, -1.0, 0], [0, 0, -1.0], [1.0, 0, 0]]) @ ras[:3, :]
    MLArray(data, affine=pir, meta=Meta(spatial=Spatial(coord_system="PIR"))).save(tmp_path / "pir.mla")
    for to_ras in (True, False):
        for name in ("ras", "las", "pir"):
            out = LoadImage(reader=MLArrayReader(to_ras=to_ras), image_only=True)(tmp_path / f"{name}.mla")
            np.testing.assert_array_equal(out.affine.numpy(), ras)
            assert out.meta["space"] == "RAS"


def test_several_files_stack_into_channels_and_suffixes_are_checked(pair: dict[str, Path], tmp_path: Path) -> None:
    both = LoadImage(reader=MLArrayReader(), image_only=True)([pair["ct"], pair["ct"]])
    assert both.shape == (2, 20, 24, 16) and both.meta["original_channel_dim"] == 0
    assert torch.equal(both[0], both[1])
    reader = MLArrayReader()
    assert reader.verify_suffix("a.mla") and reader.verify_suffix(["a.MLA", Path("b.mla")])
    assert not reader.verify_suffix("a.nii.gz") and not reader.verify_suffix(["a.mla", "b.nii"])
    MLArray(np.zeros((4, 4, 4), np.float32)).save(tmp_path / "other.mla")
    with pytest.raises(InvalidArgumentError, match="same shape"):
        reader.get_data(reader.read([pair["ct"], tmp_path / "other.mla"]))
    MLArray(np.zeros((2, 3, 4, 4), np.float32), axis_labels=["channel", "temporal", "spatial", "spatial"]).save(
        tmp_path / "two.mla"
    )
    with pytest.raises(InvalidArgumentError, match="channel"):
        reader.get_data(reader.read(tmp_path / "two.mla"))


@pytest.mark.parametrize("channel_dim", [0, -1])
def test_an_explicit_channel_dim_leaves_the_spatial_shape_and_affine_like_monais_nifti_reader(
    tmp_path: Path, channel_dim: int
) -> None:
    """A file without axis labels counts every axis as spatial; ``channel_dim`` takes one out, as NibabelReader does."""
    channels_last = np.random.default_rng(2).random((8, 9, 7, 2)).astype(np.float32)
    world = np.diag([2.0, 3.0, 1.0, 1.0])
    world[:3, 3] = [4.0, -5.0, 6.0]
    nib.save(nib.Nifti1Image(channels_last, world), tmp_path / "c.nii.gz")  # NIfTI: channels last
    data = np.moveaxis(channels_last, 3, 0) if channel_dim == 0 else channels_last
    spacing = [1.0, 2.0, 3.0, 1.0] if channel_dim == 0 else [2.0, 3.0, 1.0, 1.0]
    origin = [0.0, 4.0, -5.0, 6.0] if channel_dim == 0 else [4.0, -5.0, 6.0, 0.0]
    MLArray(data, spacing=spacing, origin=origin).save(tmp_path / "c.mla")  # no axis labels
    ours = LoadImage(reader=MLArrayReader(channel_dim=channel_dim), image_only=True)(tmp_path / "c.mla")
    theirs = LoadImage(reader="NibabelReader", image_only=True)(tmp_path / "c.nii.gz")  # channel -1 by default
    assert ours.meta["original_channel_dim"] == channel_dim
    assert list(ours.meta["spatial_shape"]) == list(theirs.meta["spatial_shape"]) == [8, 9, 7]
    assert ours.affine.shape == (4, 4) and np.allclose(ours.affine.numpy(), theirs.affine.numpy())
    resample = Spacing(pixdim=(1.0, 1.0, 1.0))
    got, expected = resample(EnsureChannelFirst()(ours)), resample(EnsureChannelFirst()(theirs))
    assert tuple(got.shape) == tuple(expected.shape) == (2, 15, 25, 7)
    assert np.allclose(got.affine.numpy(), expected.affine.numpy())
    assert np.allclose(got.numpy(), expected.numpy(), atol=1e-5)


def test_an_explicit_channel_dim_of_an_lps_file_and_of_a_rotated_one(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5, 6), np.float32)
    MLArray(data, spacing=[1.0, 2.0, 3.0, 4.0], meta=Meta(spatial=Spatial(coord_system="LPS"))).save(tmp_path / "l.mla")
    ras = LoadImage(reader=MLArrayReader(channel_dim=0), image_only=True)(tmp_path / "l.mla")
    # LPS -> RAS on the whole world (L and P negated), then axis 0 and world L taken out: P, S and the 4th remain
    assert np.allclose(ras.affine.numpy(), np.diag([-2.0, 3.0, 4.0, 1.0]))
    kept = LoadImage(reader=MLArrayReader(channel_dim=0, to_ras=False), image_only=True)(tmp_path / "l.mla")
    assert np.allclose(kept.affine.numpy(), np.diag([2.0, 3.0, 4.0, 1.0])) and kept.meta["space"] == "LPS"
    turn = np.eye(4)
    turn[:2, :2] = [[0.6, -0.8], [0.8, 0.6]]  # axes 0 and 1 share two world axes: neither is a channel
    MLArray(data, direction=turn.tolist()).save(tmp_path / "r.mla")
    with pytest.raises(InvalidArgumentError, match="cannot be the channel axis"):
        LoadImage(reader=MLArrayReader(channel_dim=0), image_only=True)(tmp_path / "r.mla")
    third = LoadImage(reader=MLArrayReader(channel_dim=3), image_only=True)(tmp_path / "r.mla")  # axis 3 is apart
    assert list(third.meta["spatial_shape"]) == [3, 4, 5] and np.allclose(third.affine.numpy()[:2, :2], turn[:2, :2])
    with pytest.raises(InvalidArgumentError, match="out of range"):
        LoadImage(reader=MLArrayReader(channel_dim=4), image_only=True)(tmp_path / "r.mla")


@pytest.mark.parametrize("channel_dim", [0, 1, 2])
def test_a_spatial_channel_dim_of_an_lps_file_keeps_each_world_axis_sign(tmp_path: Path, channel_dim: int) -> None:
    """The orientation code names the whole world: converting after dropping an axis flipped S (audit)."""
    MLArray(np.zeros((3, 30, 20), np.float32), spacing=(1.0, 0.5, 2.0), origin=(10.0, 20.0, 30.0)).save(
        tmp_path / "a.mla"
    )
    with MLArray.open(tmp_path / "a.mla", mmap_mode="r+") as image:
        image.meta.spatial.coord_system = "LPS"
    with MLArray.open(tmp_path / "a.mla") as image:
        full_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine  # LPS -> RAS: world x and y negated
    keep = [k for k in range(4) if k != channel_dim]
    expected = full_ras[np.ix_(keep, keep)]  # array axis `channel_dim` and the world axis it alone moves along
    _, meta = LoadImage(reader=MLArrayReader(channel_dim=channel_dim), image_only=False)(tmp_path / "a.mla")
    assert np.allclose(np.asarray(meta["affine"]), expected) and meta["space"] == "RAS"


def test_forked_workers_load_after_the_main_process_loaded_with_threads(tmp_path: Path) -> None:
    """Forked DataLoader workers hung: the parent's read threads were counted but do not run in a child."""
    volume = np.arange(48**3, dtype=np.int32).reshape(48, 48, 48)
    MLArray(volume, chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(tmp_path / "a.mla")  # 27 chunks
    transform = Compose([LoadImaged(["img"], reader=MLArrayReader(nthreads=2)), EnsureChannelFirstd(["img"])])
    dataset = Dataset([{"img": tmp_path / "a.mla"}] * 4, transform)
    first = dataset[0]["img"]  # the main process reads with two threads first
    loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="fork", timeout=120)
    batches = list(loader)
    assert len(batches) == 2 and all(torch.equal(b["img"][0], first.as_tensor()) for b in batches)


def test_raw_values_kept_at_conversion_come_out_scaled_like_nibabels(tmp_path: Path) -> None:
    raw = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    nifti = nib.Nifti1Image(raw, OBLIQUE)
    nifti.header.set_slope_inter(0.5, -10.0)
    nib.save(nifti, tmp_path / "scaled.nii.gz")
    convert_file(tmp_path / "scaled.nii.gz", tmp_path / "raw.mla", keep_raw=True)
    stored = MLArray.load(tmp_path / "raw.mla")
    assert stored.meta.scaling is not None and stored.meta.scaling.stored == "raw"
    assert np.array_equal(stored.to_numpy(), raw)
    physical = nib.load(tmp_path / "scaled.nii.gz").get_fdata()
    image = LoadImage(reader=MLArrayReader(), image_only=True, dtype=None)(tmp_path / "raw.mla")
    assert np.array_equal(image.numpy(), physical)
    from mlarray.torch import PatchDataset
    from mlarray.torchio import read

    assert np.array_equal(read(tmp_path / "raw.mla")[0][0], physical)
    ds = PatchDataset([tmp_path / "raw.mla"], patch_size=4, samples_per_epoch=5, seed=0, image_dtype=torch.float64)
    for i in range(5):
        item = ds[i]
        x, y, z = item["corner"].tolist()
        assert np.array_equal(item["image"][0].numpy(), physical[x : x + 4, y : y + 4, z : z + 4])


def test_a_metadata_only_file_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    MLArray(None, spacing=(1.0, 1.0, 1.0)).save(tmp_path / "header.mla")
    reader = MLArrayReader()
    with pytest.raises(InvalidArgumentError, match="metadata-only") as caught:
        reader.get_data(reader.read(tmp_path / "header.mla"))
    assert caught.value.path is not None and caught.value.path.endswith("header.mla")


@pytest.mark.parametrize("to_ras", [True, False])
def test_a_slice_gets_its_place_in_the_3d_world_like_monais_nifti_reader(tmp_path: Path, to_ras: bool) -> None:
    """A 2-d NIfTI at z = 30 keeps z = 30 in MONAI's affine (4x4, as NibabelReader's); a slice of no place: 3x3."""
    world = np.array([[0.8, 0, 0, -10.0], [0, -0.8, 0, 20.0], [0, 0, 3.0, 30.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.arange(20, dtype=np.int16).reshape(4, 5), world), tmp_path / "slice.nii.gz")
    convert_file(tmp_path / "slice.nii.gz", tmp_path / "slice.mla")
    theirs = LoadImage(reader="NibabelReader", image_only=True)(tmp_path / "slice.nii.gz")
    ours = LoadImage(reader=MLArrayReader(), image_only=True)(tmp_path / "slice.mla")
    assert ours.affine.shape == (4, 4) and np.allclose(ours.affine.numpy(), theirs.affine.numpy())
    assert list(ours.meta["spatial_shape"]) == list(theirs.meta["spatial_shape"]) == [4, 5]
    assert np.array_equal(ours.numpy(), theirs.numpy())

    lps = MLArray(np.zeros((4, 5), np.int16), spacing=(0.8, 0.8), origin=(10.0, -20.0))
    lps.meta.spatial.coord_system = "LPS"
    lps.meta.source = MLArray.load(tmp_path / "slice.mla").meta.source  # the same slice, kept in LPS
    lps.save(tmp_path / "lps.mla")
    got = LoadImage(reader=MLArrayReader(to_ras=to_ras), image_only=True)(tmp_path / "lps.mla")
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ theirs.affine.numpy() if not to_ras else theirs.affine.numpy()
    expected[:2, :2] = np.diag([0.8, 0.8]) * ([-1, -1] if to_ras else [1, 1])
    assert got.meta["space"] == ("RAS" if to_ras else "LPS")
    assert np.allclose(got.affine.numpy(), expected)

    MLArray(np.zeros((4, 5), np.int16), spacing=(0.8, 0.8)).save(tmp_path / "plain.mla")  # no 3-d world recorded
    plain = LoadImage(reader=MLArrayReader(), image_only=True)(tmp_path / "plain.mla")
    assert plain.affine.shape == (3, 3) and np.allclose(plain.affine.numpy(), np.diag([0.8, 0.8, 1.0]))
