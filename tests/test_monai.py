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
    EnsureChannelFirstd,
    LoadImage,
    LoadImaged,
    Orientationd,
    RandSpatialCropd,
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
