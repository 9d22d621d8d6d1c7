"""TorchIO's ScalarImage/LabelMap read ``.mla`` through ``mlarray.torchio.read`` like the NIfTI they came from."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from mlarray import InvalidArgumentError, Meta, MLArray, Spatial
from mlarray.convert import convert_file
from mlarray.torchio import label_map, read, scalar_image

OBLIQUE = np.array([[0.0, 0.0, 2.0, -5.0], [-1.2, 0.0, 0.0, 7.0], [0.0, 0.8, 0.0, 12.5], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("torchio")
    rng = np.random.default_rng(1)
    ct = rng.normal(size=(18, 22, 14)).astype(np.float32)
    seg = rng.integers(0, 3, (18, 22, 14)).astype(np.uint16)
    nib.save(nib.Nifti1Image(ct, OBLIQUE), d / "ct.nii.gz")
    nib.save(nib.Nifti1Image(seg, OBLIQUE), d / "seg.nii.gz")
    convert_file(d / "ct.nii.gz", d / "ct.mla")
    convert_file(d / "seg.nii.gz", d / "seg.mla")
    return {"ct_nii": d / "ct.nii.gz", "ct": d / "ct.mla", "seg_nii": d / "seg.nii.gz", "seg": d / "seg.mla"}


def test_images_match_nibabel_and_torchios_own_nifti_reader(pair: dict[str, Path]) -> None:
    nifti = nib.load(pair["ct_nii"])
    ours = scalar_image(pair["ct"])
    assert np.allclose(ours.affine, nifti.affine)
    assert ours.shape == (1, 18, 22, 14)
    assert np.array_equal(ours.data[0].numpy(), np.asarray(nifti.dataobj))
    theirs = tio.ScalarImage(pair["ct_nii"])
    assert np.allclose(ours.affine, theirs.affine)
    assert torch.equal(ours.data, theirs.data)
    assert ours.orientation == theirs.orientation and np.allclose(ours.spacing, theirs.spacing)
    seg = label_map(pair["seg"])
    assert seg.data.dtype == torch.int32  # TorchIO widens uint16 as it does for its own reader
    assert torch.equal(seg.data, tio.LabelMap(pair["seg_nii"]).data)


def test_transforms_and_a_queue_of_patches(pair: dict[str, Path]) -> None:
    subject = tio.Subject(ct=scalar_image(pair["ct"]), seg=label_map(pair["seg"]))
    reference = tio.Subject(ct=tio.ScalarImage(pair["ct_nii"]), seg=tio.LabelMap(pair["seg_nii"]))
    transform = tio.Compose([tio.ToCanonical(), tio.Resample(2.0)])
    a, b = transform(subject), transform(reference)
    assert np.allclose(a["ct"].affine, b["ct"].affine)
    assert torch.allclose(a["ct"].data, b["ct"].data) and torch.equal(a["seg"].data, b["seg"].data)
    queue = tio.Queue(
        tio.SubjectsDataset([subject] * 4),
        max_length=8,
        samples_per_volume=2,
        sampler=tio.LabelSampler(patch_size=8, label_name="seg"),
        num_workers=2,
    )
    loader = torch.utils.data.DataLoader(queue, batch_size=4, num_workers=0)
    batches = list(loader)
    assert sum(len(b["ct"][tio.DATA]) for b in batches) == 8
    assert all(b["ct"][tio.DATA].shape[1:] == (1, 8, 8, 8) for b in batches)


def test_channels_2d_images_and_lps_files(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(4, 3, 5)
    MLArray(data, axis_labels=["spatial", "channel", "spatial"], spacing=[2, 3], origin=[1, 1]).save(
        tmp_path / "two.mla"
    )
    array, affine = read(tmp_path / "two.mla")
    assert array.shape == (3, 4, 5, 1)
    assert np.array_equal(array[..., 0], np.moveaxis(data, 1, 0))
    assert np.allclose(affine, [[2, 0, 0, 1], [0, 3, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    lps = MLArray(np.zeros((3, 3, 3), np.float32), spacing=[1, 1, 1], origin=[10, 20, 30])
    lps.meta = Meta(spatial=Spatial(spacing=[1, 1, 1], origin=[10, 20, 30], coord_system="LPS"))
    lps.save(tmp_path / "lps.mla")
    assert np.allclose(read(tmp_path / "lps.mla")[1][:3, 3], [-10, -20, 30])
    MLArray(np.zeros((2, 2, 2, 2), np.float32)).save(tmp_path / "four.mla")
    with pytest.raises(InvalidArgumentError, match="3 spatial axes"):
        read(tmp_path / "four.mla")
