"""Label maps converted to .mla (``convert_file(seg=True)``, ``mlarray convert --seg``).

A label map marked ``is_seg`` from the start is compressed as ``MLArray`` compresses label
maps (1-byte ones with LZ4HC level 8 and no filter), whether the conversion streams the
source or reads it whole, and byte for byte the same file either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mlarray import MLArray
from mlarray.cli import app
from mlarray.convert import convert_file
from mlarray.convert import files as convert_files
from mlarray.errors import InvalidArgumentError

LABELS = ("lz4hc", 8, [])
BYTES = ("lz4hc", 5, ["bitshuffle"])
WIDE = ("lz4hc", 5, ["shuffle"])


def labels(dtype: str = "|u1", shape: tuple[int, ...] = (40, 48, 36)) -> np.ndarray[Any, Any]:
    """Labelled boxes on a background of zeros."""
    rng = np.random.default_rng(5)
    out = np.zeros(shape, dtype=dtype)
    for label in (1, 2, 7):
        lo = [int(rng.integers(0, n - 10)) for n in shape]
        out[tuple(slice(a, a + 10) for a in lo)] = label
    return out


def nifti(path: Path, data: np.ndarray[Any, Any], slope: float | None = None) -> Path:
    image = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    nib.save(image, path)
    return path


def codec_of(path: Path) -> tuple[str, int, list[str]]:
    with MLArray.open(path) as image:
        layout = image.meta.layout
        assert layout is not None
        return layout.codec, layout.clevel, list(layout.filters)


@pytest.mark.parametrize("streamed", [True, False])
def test_a_label_map_is_marked_and_compressed_as_one(
    tmp_path: Path, streamed: bool, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    data = labels()
    src = nifti(tmp_path / "seg.nii.gz", data)
    if not streamed:  # no slab source for .nii.gz: the file is read whole
        monkeypatch.setitem(convert_files.SOURCES, ".nii.gz", lambda path: None)
    convert_file(src, tmp_path / "seg.mla", seg=True)
    convert_file(src, tmp_path / "plain.mla")
    assert codec_of(tmp_path / "seg.mla") == LABELS
    assert codec_of(tmp_path / "plain.mla") == BYTES
    for name, marked in (("seg.mla", True), ("plain.mla", None)):
        image = MLArray.load(tmp_path / name)
        assert image.meta.is_seg is marked
        assert image.to_numpy().tobytes() == data.tobytes()


def test_streamed_and_whole_conversions_write_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    src = nifti(tmp_path / "seg.nii.gz", labels())
    convert_file(src, tmp_path / "streamed.mla", seg=True)
    monkeypatch.setitem(convert_files.SOURCES, ".nii.gz", lambda path: None)
    convert_file(src, tmp_path / "whole.mla", seg=True)
    assert (tmp_path / "streamed.mla").read_bytes() == (tmp_path / "whole.mla").read_bytes()


@pytest.mark.parametrize(
    ("dtype", "slope", "expected"),
    [
        ("<u2", None, WIDE),  # a wider label map keeps the usual default, marked all the same
        ("|u1", 0.5, None),  # scaled: stored as physical values, wider than a byte
    ],
)
def test_the_stored_item_size_decides(
    tmp_path: Path, dtype: str, slope: float | None, expected: Any, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    src = nifti(tmp_path / "seg.nii.gz", labels(dtype), slope)
    convert_file(src, tmp_path / "streamed.mla", seg=True)
    monkeypatch.setitem(convert_files.SOURCES, ".nii.gz", lambda path: None)
    convert_file(src, tmp_path / "whole.mla", seg=True)
    assert (tmp_path / "streamed.mla").read_bytes() == (tmp_path / "whole.mla").read_bytes()
    image = MLArray.load(tmp_path / "streamed.mla")
    assert image.meta.is_seg is True
    assert image.dtype.itemsize > 1
    codec = codec_of(tmp_path / "streamed.mla")
    assert codec == expected if expected is not None else codec[2] == ["shuffle"]


def test_a_given_codec_or_level_is_kept(tmp_path: Path) -> None:
    src = nifti(tmp_path / "seg.nii.gz", labels())
    convert_file(src, tmp_path / "zstd.mla", seg=True, codec="zstd")
    convert_file(src, tmp_path / "level.mla", seg=True, clevel=3)
    assert codec_of(tmp_path / "zstd.mla") == ("zstd", 5, ["bitshuffle"])
    assert codec_of(tmp_path / "level.mla") == ("lz4hc", 3, ["bitshuffle"])
    assert MLArray.load(tmp_path / "zstd.mla").meta.is_seg is True


def test_seg_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    src = nifti(tmp_path / "seg.nii.gz", labels())
    convert_file(src, tmp_path / "a.mla")
    with pytest.raises(InvalidArgumentError, match="seg"):
        convert_file(tmp_path / "a.mla", tmp_path / "b.mla", seg=True)
    with pytest.raises(InvalidArgumentError, match="seg"):
        convert_file(src, tmp_path / "b.nii.gz", seg=True)
    assert not (tmp_path / "b.mla").exists() and not (tmp_path / "b.nii.gz").exists()


def test_the_cli_converts_label_maps_with_the_label_codec(tmp_path: Path) -> None:
    src = nifti(tmp_path / "seg.nii.gz", labels())
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "seg.mla"), "--seg"])
    assert result.exit_code == 0, result.output
    assert codec_of(tmp_path / "seg.mla") == LABELS
    meta = MLArray.load(tmp_path / "seg.mla").meta
    assert meta.is_seg is True and meta.class_locations is not None  # stats filled after the conversion
    result = runner.invoke(app, ["convert", str(tmp_path / "seg.mla"), str(tmp_path / "again.mla"), "--seg"])
    assert result.exit_code == 0, result.output  # an .mla source: marked afterwards, its layout kept
    assert codec_of(tmp_path / "again.mla") == LABELS


def test_a_batch_with_seg_and_another_target_format_makes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    nifti(tmp_path / "in" / "seg.nii.gz", labels())
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--to", "nii", "--seg"])
    assert result.exit_code != 0 and "--seg needs .mla outputs" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--seg"])
    assert result.exit_code == 0, result.output
    assert codec_of(tmp_path / "out" / "seg.mla") == LABELS


def test_a_dicom_series_with_seg_and_another_target_is_refused_before_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "series").mkdir()  # no DICOM files: reading the series would fail otherwise
    with pytest.raises(InvalidArgumentError, match="seg only apply when writing .mla"):
        convert_file(tmp_path / "series", tmp_path / "out.nii.gz", seg=True)
