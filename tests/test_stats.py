"""``mlarray.stats`` and ``mlarray stats``: statistics, per-class boxes and class locations written into headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mlarray import HeaderValidationError, MLArray
from mlarray.cli import app
from mlarray.models import parse_header
from mlarray.stats import annotate, looks_like_labels, update_stats
from mlarray.torch import PatchDataset
from mlarray.validate import validate_file

runner = CliRunner()


def _labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    labels = np.zeros((30, 40, 20), dtype=np.uint8)
    labels[5:15, 10:30, 2:9] = 1
    labels[(rng.random(labels.shape) < 0.01)] = 2
    labels[29, 39, 19] = 7
    return labels


def test_label_maps_get_exact_stats_boxes_and_class_locations(tmp_path: Path) -> None:
    labels = _labels()
    MLArray(labels, spacing=[1, 2, 3]).save(tmp_path / "seg.mla")
    meta = update_stats(tmp_path / "seg.mla", with_class_locations=True)
    assert meta.is_seg is True
    assert meta.stats is not None
    assert (meta.stats.min, meta.stats.max, meta.stats.mean) == (0.0, 7.0, pytest.approx(labels.mean()))
    assert meta.stats.percentile_max == np.percentile(labels, 99.5)
    assert meta.bbox is not None and meta.bbox.labels == [1, 2, 7]
    for box, label in zip(meta.bbox.bboxes, meta.bbox.labels, strict=True):
        where = np.argwhere(labels == label)
        assert box == [[float(lo), float(hi)] for lo, hi in zip(where.min(0), where.max(0), strict=True)]
    assert meta.class_locations is not None
    for entry in meta.class_locations.classes:
        assert entry.count == int((labels == entry.label).sum())
        assert len(entry.indices) == min(entry.count, 10_000)
        assert np.all(labels.reshape(-1)[entry.indices] == entry.label)
    reopened = MLArray.open(tmp_path / "seg.mla")
    try:
        assert reopened.meta == meta
        assert np.array_equal(reopened.to_numpy(), labels)
    finally:
        reopened.close()
    assert validate_file(tmp_path / "seg.mla").valid


def test_class_locations_survive_save_open_and_resave_but_not_copy(tmp_path: Path) -> None:
    image = MLArray(_labels())
    annotate(image, with_class_locations=True)
    recorded = image.meta.class_locations
    assert recorded is not None
    image.save(tmp_path / "a.mla")
    opened = MLArray.open(tmp_path / "a.mla")
    opened.save(tmp_path / "b.mla")
    opened.close()
    loaded = MLArray.load(tmp_path / "b.mla")
    assert loaded.meta.class_locations == recorded
    loaded.save(tmp_path / "c.mla")
    assert MLArray.load(tmp_path / "c.mla").meta.class_locations == recorded
    assert MLArray(np.zeros((30, 40, 20), np.uint8), copy=loaded).meta.class_locations is None


def test_label_detection_and_overrides() -> None:
    assert looks_like_labels(np.array([0, 1, 2, 2], np.uint8))
    assert looks_like_labels(np.array([True, False]))
    assert not looks_like_labels(np.array([-1024, 0, 3], np.int16))  # CT-like: negative values
    assert not looks_like_labels(np.array([0.0, 1.0], np.float32))
    assert not looks_like_labels(np.arange(1000, dtype=np.uint16))  # too many distinct values
    ct = MLArray(np.arange(-50, 50, dtype=np.int16).reshape(4, 5, 5))
    assert annotate(ct, with_class_locations=True).is_seg is False
    assert ct.meta.class_locations is None and ct.meta.bbox is None
    forced = MLArray(np.array([[0, 5], [5, 5]], np.uint16))
    assert annotate(forced, seg=False).is_seg is False and forced.meta.bbox is None
    assert annotate(forced, seg=True, with_class_locations=True).class_locations is not None


def test_the_patch_sampler_reads_class_locations_from_the_header(tmp_path: Path) -> None:
    labels = _labels()
    image = MLArray(labels)
    annotate(image, with_class_locations=True)
    meta = image.meta.model_dump(mode="json")
    chosen = int(np.ravel_multi_index((10, 20, 5), labels.shape))
    meta["class_locations"] = {"classes": [{"label": 1, "count": 1400, "indices": [chosen]}]}
    image.meta = parse_header(meta)
    image.save(tmp_path / "seg.mla")
    MLArray(labels.astype(np.float32)).save(tmp_path / "img.mla")
    ds = PatchDataset(
        [tmp_path / "img.mla"],
        [tmp_path / "seg.mla"],
        patch_size=8,
        samples_per_epoch=40,
        seed=0,
        foreground_fraction=1,
    )
    assert {tuple(ds.sample(i)[1].tolist()) for i in range(40)} == {(6, 16, 1)}  # only the recorded voxel


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"label": 1, "count": 3, "indices": [4, 2]}, "increasing"),
        ({"label": 1, "count": 1, "indices": [1, 2]}, "indices for"),
        ({"label": 1, "count": 3, "indices": [0, 60]}, "outside"),
        ({"label": 1, "count": 61, "indices": []}, "more voxels"),
        ({"label": 1, "count": 3, "indices": [-1]}, "indices"),
        ({"label": 1, "count": 0, "indices": []}, "count"),
    ],
)
def test_bad_class_locations_are_refused(entry: dict[str, Any], match: str) -> None:
    header = {"schema_version": "1.1", "array": {"shape": [3, 4, 5], "dtype": "|u1"}}
    with pytest.raises(HeaderValidationError, match=match):
        parse_header({**header, "class_locations": {"classes": [entry]}})
    twice = {"classes": [{"label": 1, "count": 1, "indices": [0]}, {"label": 1, "count": 1, "indices": [1]}]}
    with pytest.raises(HeaderValidationError, match="more than once"):
        parse_header({**header, "class_locations": twice})
    big = {"classes": [{"label": 1, "count": 20_000, "indices": list(range(10_001))}]}
    with pytest.raises(HeaderValidationError):
        parse_header({"schema_version": "1.1", "class_locations": big})


def test_cli_stats_walks_a_directory_and_reports_failures(tmp_path: Path) -> None:
    MLArray(_labels()).save(tmp_path / "seg.mla")
    (tmp_path / "sub").mkdir()
    MLArray(np.linspace(-1, 1, 60, dtype=np.float32).reshape(3, 4, 5)).save(tmp_path / "sub" / "img.mla")
    (tmp_path / "broken.mla").write_bytes(b"not a frame")
    result = runner.invoke(app, ["stats", str(tmp_path), "--class-locations"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any("seg.mla: label map, 3 classes" in line and "class locations" in line for line in lines)
    assert any("img.mla: image statistics" in line for line in lines)
    assert any(line.startswith("FAILED") and "broken.mla" in line for line in lines)
    assert MLArray.load(tmp_path / "sub" / "img.mla").meta.stats is not None
    again = runner.invoke(app, ["stats", str(tmp_path / "seg.mla"), "--no-seg", "--json"])
    assert again.exit_code == 0 and '"is_seg": false' in again.output
    assert runner.invoke(app, ["stats", str(tmp_path / "sub" / "nothing")]).exit_code == 1


def test_cli_convert_seg_fills_label_metadata(tmp_path: Path) -> None:
    labels = _labels()
    nib.save(nib.Nifti1Image(labels, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "seg.nii.gz")
    result = runner.invoke(app, ["convert", str(tmp_path / "seg.nii.gz"), str(tmp_path / "seg.mla"), "--seg"])
    assert result.exit_code == 0, result.output
    meta = MLArray.load(tmp_path / "seg.mla").meta
    assert meta.is_seg and meta.bbox is not None and meta.class_locations is not None
    assert [c.count for c in meta.class_locations.classes] == [int((labels == v).sum()) for v in (1, 2, 7)]
    bad = runner.invoke(app, ["convert", str(tmp_path / "seg.mla"), str(tmp_path / "x.nii.gz"), "--seg"])
    assert bad.exit_code == 1 and "--seg needs an .mla output" in bad.output
