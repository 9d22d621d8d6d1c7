"""Existing datasets keep working while people migrate: reading legacy files, and migrating whole directories."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from legacy_files import RunsShell, write_legacy
from typer.testing import CliRunner

from mlarray import LegacyFormatWarning, MLArray
from mlarray.cli import app
from mlarray.legacy import is_legacy_file, migrate_tree
from mlarray.validate import validate_file


def write_msgpack_era(path: Path, array: np.ndarray, header: dict[str, Any]) -> Path:
    """A file as 0.0.23-0.0.48 wrote it: the metadata dict itself in the vlmetalayer (python-blosc2 packs it)."""
    nd = blosc2.asarray(np.ascontiguousarray(array), urlpath=str(path), mode="w")
    nd.schunk.vlmeta["mlarray"] = header
    del nd
    return path


def header_0023(spacing: tuple[float, ...], channel_axis: int | None = None) -> dict[str, Any]:
    return {
        "image": {"patient": "p1"},
        "stats": None,
        "bbox": None,
        "is_seg": True,
        "spatial": {"spacing": spacing, "origin": (0, 0, 0), "direction": None, "shape": None,
                    "channel_axis": channel_axis},
        "_has_array": True,
        "_image_meta_format": None,
        "_blosc2": {"chunk_size": None, "block_size": None, "patch_size": (4, 4, 4)},
        "_mlarray_version": "v0",
        "extra": {},
    }  # fmt: skip


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    arrays = {
        "a.mla": rng.integers(0, 4, size=(5, 6, 7), dtype=np.uint8),
        "sub/b.mla": rng.normal(size=(2, 5, 6, 7)).astype(np.float32),
        "c.mla": rng.integers(-100, 100, size=(5, 6, 7), dtype=np.int16),
    }
    write_msgpack_era(root / "a.mla", arrays["a.mla"], header_0023((1.0, 2.0, 3.0)))
    write_msgpack_era(root / "sub/b.mla", arrays["sub/b.mla"], header_0023((1.0, 2.0, 3.0), channel_axis=0))
    write_legacy(root / "c.mla", arrays["c.mla"], {"spacing": [0.5, 0.5, 1.0], "meta": {"id": 3}})
    MLArray(np.ones((3, 3, 3), np.float32), spacing=(1, 1, 1)).save(root / "current.mla")
    evil = write_legacy(root / "evil.mla", np.zeros((2, 2, 2)), {"x": RunsShell(f"touch {tmp_path / 'pwned'}")})
    return {"root": root, "arrays": arrays, "evil": evil, "evil_bytes": evil.read_bytes()}


def test_msgpack_era_file_reads_with_its_channel_axis(dataset: dict[str, Any]) -> None:
    path = dataset["root"] / "sub/b.mla"
    with pytest.warns(LegacyFormatWarning):
        image = MLArray(path)
    np.testing.assert_array_equal(image.to_numpy(), dataset["arrays"]["sub/b.mla"])
    assert image.meta.spatial.axis_labels == ["channel", "spatial", "spatial", "spatial"]
    assert image.spacing == [1.0, 2.0, 3.0] and image.meta.is_seg is True
    assert image.meta.source == {"patient": "p1"}
    assert image.meta.extra["legacy"]["blosc2"] == {"patch_size": [4, 4, 4]}


def test_the_warning_is_given_once_per_file(dataset: dict[str, Any]) -> None:
    path = dataset["root"] / "a.mla"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLArray(path)
        MLArray.load(path)
        MLArray.open(path, mmap_mode="r").close()
    legacy = [w for w in caught if issubclass(w.category, LegacyFormatWarning)]
    assert len(legacy) <= 1  # once per process and file (0 if an earlier test read this very file)
    assert all(w.filename == __file__ for w in legacy)  # points at the caller's line, not at mlarray


def test_mmap_reads_and_copy_on_write_of_a_legacy_file(dataset: dict[str, Any]) -> None:
    path = dataset["root"] / "c.mla"
    before = path.read_bytes()
    expected = dataset["arrays"]["c.mla"]
    with pytest.warns(LegacyFormatWarning), MLArray.open(path, mmap_mode="r") as mapped:
        np.testing.assert_array_equal(mapped[1:3, 2:5, ::2], expected[1:3, 2:5, ::2])
        assert mapped.spacing == [0.5, 0.5, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyFormatWarning)
        with MLArray.open(path, mmap_mode="c") as private:
            private[0] = 7
            assert (private[0] == 7).all()
    assert path.read_bytes() == before


def test_validate_reports_legacy_files_as_legacy(dataset: dict[str, Any]) -> None:
    report = validate_file(dataset["root"] / "a.mla")
    assert report.code == "LEGACY_FORMAT" and "msgpack" in report.problems[0].message
    assert validate_file(dataset["root"] / "c.mla").code == "LEGACY_FORMAT"
    assert validate_file(dataset["evil"]).code == "UNSAFE_LEGACY"


def test_migrate_a_directory_into_another(dataset: dict[str, Any], tmp_path: Path) -> None:
    root, out = dataset["root"], tmp_path / "out"
    result = run("migrate", root, out)
    assert result.exit_code == 1  # the unsafe file fails; the others are done
    lines = result.stdout.splitlines()
    assert lines[-1] == "5 files: 3 migrated, 1 already current, 1 failed"
    assert any(line.startswith(f"FAILED  {root / 'evil.mla'}") and "UNSAFE_LEGACY" in line for line in lines)
    assert f"current {root / 'current.mla'} -> {out / 'current.mla'} (copied)" in lines
    for name, array in dataset["arrays"].items():
        assert validate_file(out / name, deep=True).valid
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(MLArray(out / name).to_numpy(), array)
    assert MLArray(out / "sub/b.mla").meta.spatial.axis_labels == ["channel", "spatial", "spatial", "spatial"]
    assert (out / "current.mla").read_bytes() == (root / "current.mla").read_bytes()
    assert not (out / "evil.mla").exists() and not (tmp_path / "pwned").exists()
    assert is_legacy_file(root / "a.mla")  # the sources are untouched


def test_migrate_in_place_is_atomic_per_file(dataset: dict[str, Any], tmp_path: Path) -> None:
    root = dataset["root"]
    current = (root / "current.mla").read_bytes()
    result = run("migrate", root, "--in-place", "--json")
    assert result.exit_code == 1
    report = {Path(r["src"]).name: r for r in json.loads(result.stdout)}
    assert {name: r["status"] for name, r in report.items()} == {
        "a.mla": "migrated", "b.mla": "migrated", "c.mla": "migrated", "current.mla": "current", "evil.mla": "failed",
    }  # fmt: skip
    assert report["evil.mla"]["code"] == "UNSAFE_LEGACY"
    assert report["c.mla"]["mapped"] == ["spacing", "meta"]
    for name, array in dataset["arrays"].items():
        assert not is_legacy_file(root / name) and validate_file(root / name, deep=True).valid
        np.testing.assert_array_equal(MLArray(root / name).to_numpy(), array)
    assert (root / "current.mla").read_bytes() == current
    assert dataset["evil"].read_bytes() == dataset["evil_bytes"]  # a failed file is left exactly as it was
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(
        ["a.mla", "b.mla", "c.mla", "current.mla", "evil.mla"]
    )  # no temporary files left behind
    again = migrate_tree(root)
    assert again.count("migrated") == 0 and again.count("current") == 4


def test_migrate_one_file_in_place(dataset: dict[str, Any]) -> None:
    path = dataset["root"] / "a.mla"
    result = run("migrate", path, "--in-place")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"ok      {path} -> {path}"
    np.testing.assert_array_equal(MLArray(path).to_numpy(), dataset["arrays"]["a.mla"])
    assert MLArray(path).meta.layout.patch_size == [4, 4, 4]  # type: ignore[union-attr]


@pytest.mark.parametrize("args", [(), ("--in-place", "x.mla")])
def test_migrate_argument_errors(dataset: dict[str, Any], args: tuple[str, ...]) -> None:
    result = run("migrate", dataset["root"] / "a.mla", *args)
    assert result.exit_code == 2 and "--in-place" in result.output
