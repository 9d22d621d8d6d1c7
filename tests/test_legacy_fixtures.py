"""Files written by the published earlier implementation (mlarray 0.0.23-0.0.54) read and migrate exactly.

The fixtures in ``tests/fixtures/legacy`` were written by each version itself
(``tools/legacy_fixtures.py``), which also recorded, per file, the raw header, the
array's digest and what that version's API reported after reopening the file
(``manifest.json``). Every file is compared field by field, read directly and after
``mlarray migrate``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mlarray import LegacyFormatWarning, MLArray
from mlarray.cli import app
from mlarray.legacy import migrate_file, read_legacy, read_legacy_header
from mlarray.validate import validate_file

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
ENTRIES = {entry["path"]: entry for entry in MANIFEST["files"]}


def as_recorded(value: Any) -> Any:
    """A decoded legacy header in the manifest's JSON form (tuples as lists, sets sorted, bytes as base64)."""
    if isinstance(value, dict):
        return {str(k): as_recorded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_recorded(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [as_recorded(v) for v in sorted(value, key=repr)]
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    return value


def read_quietly(path: Path) -> MLArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyFormatWarning)
        return MLArray(path)


def check_against_api(image: MLArray, entry: dict[str, Any], *, migrated: bool) -> None:
    """Every value the earlier version's API reported equals what ours reports."""
    api: dict[str, Any] = entry["api"]
    array = entry["array"]
    if array is None:
        assert image.shape is None
    else:
        assert image.shape == tuple(array["shape"])
        assert image.dtype == np.dtype(array["dtype"])
        data = np.ascontiguousarray(image.to_numpy())
        assert (
            hashlib.sha256(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()
            == array["sha256"]
        )
    spatial = image.meta.spatial
    for name in ("spacing", "origin", "direction", "axis_units", "coord_system"):
        if api.get(name) is not None:
            assert getattr(spatial, name) == api[name], name
    if api.get("axis_labels") is not None:
        assert spatial.axis_labels == [str(label) for label in api["axis_labels"]]
    if api.get("channel_axis") is not None:
        labels = spatial.axis_labels
        assert labels is not None and labels[api["channel_axis"]] == "channel"
        assert sorted(labels) == ["channel"] + ["spatial"] * (len(labels) - 1)
    if "has_array" in api:
        assert (image.shape is not None) == bool(api["has_array"])
    for name in ("image_meta_format", "mlarray_version"):
        if api.get(name) is not None:  # the writer's bookkeeping is kept, not dropped
            assert image.meta.extra["legacy"][name] == api[name]
    if api.get("affine") is not None and image.shape is not None and image.spatial_ndim:
        np.testing.assert_array_equal(image.affine, np.asarray(api["affine"], dtype=np.float64))
    if "is_seg" in api:
        assert image.meta.is_seg == api["is_seg"]
    if "source" in api:
        assert image.meta.source == (api["source"] or {})
    if "extra" in api:
        assert {k: v for k, v in image.meta.extra.items() if k != "legacy"} == (api["extra"] or {})
    if api.get("stats"):
        assert image.meta.stats is not None
        assert image.meta.stats.model_dump(exclude_none=True) == api["stats"]
    if api.get("bbox") and api["bbox"].get("bboxes") is not None:
        assert image.meta.bbox is not None
        assert image.meta.bbox.bboxes == api["bbox"]["bboxes"]
        for key in ("scores", "labels"):
            assert getattr(image.meta.bbox, key) == api["bbox"].get(key)
    if not migrated and image.meta.layout is not None:
        for key in ("chunk_size", "block_size"):
            if api.get(key) is not None:
                assert getattr(image.meta.layout, key) == api[key], key
    if api.get("patch_size") is not None and image.shape is not None and migrated:
        layout = image.meta.layout
        assert layout is not None
        if len(api["patch_size"]) == image.spatial_ndim:
            assert layout.patch_size == api["patch_size"]


def test_the_fixture_set_covers_every_listed_version() -> None:
    versions = {entry["version"] for entry in MANIFEST["files"]}
    for required in ("0.0.23", "0.0.30", "0.0.40", "0.0.45", "0.0.50", "0.0.54"):
        assert required in versions
    assert {entry["encoding"] for entry in MANIFEST["files"]} == {"msgpack", "gzip-pickle"}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_raw_header_decodes_as_recorded(name: str) -> None:
    entry = ENTRIES[name]
    assert as_recorded(read_legacy_header(FIXTURES / name)) == entry["header"]
    assert read_legacy(FIXTURES / name).encoding == entry["encoding"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_file_reads_as_that_version_reported(name: str) -> None:
    entry = ENTRIES[name]
    with pytest.warns(LegacyFormatWarning):
        image = MLArray.load(FIXTURES / name)
    check_against_api(image, entry, migrated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyFormatWarning)
        with MLArray.open(FIXTURES / name, mmap_mode="r") as mapped:
            check_against_api(mapped, entry, migrated=False)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_file_migrates_exactly(name: str, tmp_path: Path) -> None:
    entry = ENTRIES[name]
    out = tmp_path / "migrated.mla"
    migrate_file(FIXTURES / name, out)
    assert validate_file(out, deep=True).valid
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a migrated file is a current file
        image = MLArray(out)
    check_against_api(image, entry, migrated=True)


def test_migrating_the_whole_fixture_directory_converts_every_file(tmp_path: Path) -> None:
    src = tmp_path / "legacy"
    shutil.copytree(FIXTURES, src, ignore=shutil.ignore_patterns("*.json", "*.md"))
    result = CliRunner().invoke(app, ["migrate", str(src), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    n = len(ENTRIES)
    assert result.stdout.splitlines()[-1] == f"{n} files: {n} migrated, 0 already current, 0 failed"
    for name in ENTRIES:
        assert validate_file(tmp_path / "out" / name).valid
