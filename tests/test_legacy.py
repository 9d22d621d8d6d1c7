"""Reading legacy (pickled-header) files safely, mapping their metadata, and migrating them."""

from __future__ import annotations

import gzip
import pickle
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import blosc2
import msgpack
import numpy as np
import pytest
from legacy_files import RunsShell, write_legacy

from mlarray import MLArray
from mlarray.errors import (
    ForbiddenMetalayerError,
    HeaderEncodingError,
    HeaderTooLargeError,
    InvalidArgumentError,
    MLArrayFileNotFoundError,
    UnsafeLegacyFileError,
)
from mlarray.legacy import gunzip_capped, map_legacy, migrate_file, read_legacy_header, safe_unpickle
from mlarray.validate import validate_file


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(3).integers(-1000, 1000, size=(6, 7, 9), dtype=np.int16)


LEGACY_HEADER: dict[Any, Any] = {
    "spacing": (0.8, 0.8, 2.5),
    "origin": [10, -20, 30.5],
    "direction": [0, 1, 0, 1, 0, 0, 0, 0, 1],  # flat, row-major (SimpleITK style), axis-permuted
    "meta": {"patient_id": "p01", "modality": "CT", 7: "int key"},
    "is_seg": False,
    "stats": {"min": -1000.0, "max": 999.0, "mean": 0.5, "legacy_histogram": [1, 2, 3]},
    "bbox": [[[1, 4], [2, 5], [0, 8]]],
    "tags": {"a", "b"},
    "shape_zyx": (6, 7, 9),
    "blob": b"\xff\x00binary",
    "note": b"utf-8 text",
    "broken": float("nan"),
}


def test_read_legacy_header_returns_the_plain_dict(tmp_path: Path, volume: np.ndarray) -> None:
    path = write_legacy(tmp_path / "old.mla", volume, LEGACY_HEADER)
    raw = read_legacy_header(path)
    assert raw.keys() == LEGACY_HEADER.keys()
    assert raw["spacing"] == (0.8, 0.8, 2.5) and raw["tags"] == {"a", "b"}


def test_migrate_keeps_the_array_and_maps_the_metadata(tmp_path: Path, volume: np.ndarray) -> None:
    old = write_legacy(tmp_path / "old.mla", volume, LEGACY_HEADER, chunks=(3, 7, 9))
    new = tmp_path / "new.mla"
    mapping = migrate_file(old, new, patch_size=4)

    assert validate_file(new, deep=True).valid
    image = MLArray(new)
    np.testing.assert_array_equal(image.to_numpy(), volume)
    assert image.dtype == volume.dtype
    assert image.spacing == [0.8, 0.8, 2.5]
    assert image.origin == [10.0, -20.0, 30.5]
    assert image.direction == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert image.meta.source == {"patient_id": "p01", "modality": "CT", "7": "int key"}
    assert image.meta.is_seg is False
    assert image.meta.stats is not None and (image.meta.stats.min, image.meta.stats.max) == (-1000.0, 999.0)
    assert image.meta.bbox is not None and image.meta.bbox.bboxes == [[[1, 4], [2, 5], [0, 8]]]
    assert image.meta.layout is not None and image.meta.layout.patch_size == [4, 4, 4]

    legacy = image.meta.extra["legacy"]
    assert legacy["tags"] == ["a", "b"]
    assert legacy["shape_zyx"] == [6, 7, 9]
    assert legacy["stats"] == {"legacy_histogram": [1, 2, 3]}  # the stats fields the header has no room for
    assert legacy["note"] == "utf-8 text"
    assert legacy["blob"] == {"base64": "/wBiaW5hcnk="}
    assert "broken" not in legacy

    assert {"spacing", "origin", "direction", "meta", "is_seg", "stats", "bbox"} <= set(mapping.mapped)
    assert mapping.kept == ["blob", "note", "shape_zyx", "stats", "tags"]
    assert mapping.dropped == ["broken"]


def test_invalid_legacy_values_are_kept_not_mapped() -> None:
    mapping = map_legacy({"spacing": [1.0, -2.0, 1.0], "direction": [[1, 0, 0], [0, 2, 0], [0, 0, 1]]}, (4, 4, 4))
    assert mapping.meta.spatial.spacing is None and mapping.meta.spatial.direction is None
    assert mapping.meta.extra["legacy"] == {"spacing": [1.0, -2.0, 1.0], "direction": [[1, 0, 0], [0, 2, 0], [0, 0, 1]]}
    assert mapping.mapped == []


def test_geometry_of_fewer_axes_labels_the_leading_axes_non_spatial(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    old = write_legacy(tmp_path / "old4d.mla", array, {"spacing": [1.0, 2.0, 3.0], "spatial": {"origin": [0, 0, 0]}})
    migrate_file(old, tmp_path / "new4d.mla")
    image = MLArray(tmp_path / "new4d.mla")
    assert image.meta.spatial.axis_labels == ["non_spatial", "spatial", "spatial", "spatial"]
    assert image.spacing == [1.0, 2.0, 3.0] and image.origin == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(image.to_numpy(), array)


def test_unwrapped_gzip_and_plain_pickle_headers_are_read(tmp_path: Path, volume: np.ndarray) -> None:
    header = {"spacing": [1.0, 1.0, 2.0]}
    bare = write_legacy(tmp_path / "bare.mla", volume, None, raw=gzip.compress(pickle.dumps(header)))
    assert read_legacy_header(bare) == header
    plain = write_legacy(tmp_path / "plain.mla", volume, None, raw=msgpack.packb(pickle.dumps(header)))
    assert read_legacy_header(plain) == header


# --------------------------------------------------------------------------- refusing code


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path, volume: np.ndarray, protocol: int) -> None:
    marker = tmp_path / "pwned"
    header = {"spacing": [1.0, 1.0, 1.0], "payload": RunsShell(f"touch {shlex.quote(str(marker))}")}
    nd = blosc2.asarray(volume, urlpath=str(tmp_path / "evil.mla"), mode="w")
    nd.schunk.vlmeta["mlarray"] = gzip.compress(pickle.dumps(header, protocol=protocol))
    del nd
    with pytest.raises(UnsafeLegacyFileError) as info:
        migrate_file(tmp_path / "evil.mla", tmp_path / "out.mla")
    assert info.value.code == "UNSAFE_LEGACY" and "system" in str(info.value)
    assert not marker.exists()
    assert not (tmp_path / "out.mla").exists()


def test_the_malicious_payload_is_live(tmp_path: Path) -> None:
    """Control: the same payload *does* run its command under plain pickle.loads (in a child process)."""
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps({"payload": RunsShell(f"touch {shlex.quote(str(marker))}")}))
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
    subprocess.run([sys.executable, "-c", code, str(payload)], check=True, timeout=60)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeLegacyFileError):
        safe_unpickle(payload.read_bytes())
    assert not marker.exists()


def test_python_blosc2_vlmeta_decoding_is_never_used(
    tmp_path: Path, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_legacy(tmp_path / "old.mla", volume, {"spacing": [1.0, 1.0, 1.0]})

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("python-blosc2's vlmeta decoding was used")

    monkeypatch.setattr(blosc2.schunk.vlmeta, "__getitem__", refuse)
    migrate_file(old, tmp_path / "new.mla")
    assert MLArray(tmp_path / "new.mla").spacing == [1.0, 1.0, 1.0]


def test_numpy_values_are_refused_because_they_need_globals() -> None:
    with pytest.raises(UnsafeLegacyFileError, match="numpy"):
        safe_unpickle(pickle.dumps({"spacing": np.array([1.0, 2.0])}))


def test_persistent_ids_are_refused() -> None:
    with pytest.raises(UnsafeLegacyFileError):
        safe_unpickle(b"\x80\x02X\x03\x00\x00\x00abcQ.")  # BINUNICODE 'abc', BINPERSID


def test_forbidden_metalayers_are_refused_before_blosc2_opens_the_file(tmp_path: Path, volume: np.ndarray) -> None:
    old = write_legacy(tmp_path / "old.mla", volume, {"spacing": [1.0, 1.0, 1.0]}, meta={"b2o": b"x"})
    with pytest.raises(ForbiddenMetalayerError):
        migrate_file(old, tmp_path / "new.mla")


# --------------------------------------------------------------------------- malformed headers


def test_gzip_output_is_capped() -> None:
    bomb = gzip.compress(b"\0" * 100_000)
    assert len(gunzip_capped(bomb, limit=100_000)) == 100_000
    with pytest.raises(HeaderTooLargeError):
        gunzip_capped(bomb, limit=99_999)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (msgpack.packb([1.0, 2.0]), HeaderEncodingError),  # a msgpack array: neither a map nor bytes
        (msgpack.packb(b"not gzip, not pickle"), HeaderEncodingError),
        (msgpack.packb(gzip.compress(b"not a pickle")), HeaderEncodingError),
        (msgpack.packb(gzip.compress(b"\x80\x04truncated")), HeaderEncodingError),
        (msgpack.packb(gzip.compress(pickle.dumps([1, 2, 3]))), HeaderEncodingError),  # not a dict
        (msgpack.packb(b"\x1f\x8b\x08broken gzip"), HeaderEncodingError),
    ],
    ids=["array", "junk", "gzip-not-pickle", "truncated-pickle", "list", "broken-gzip"],
)
def test_malformed_legacy_headers_are_refused(
    tmp_path: Path, volume: np.ndarray, raw: bytes, error: type[Exception]
) -> None:
    old = write_legacy(tmp_path / "old.mla", volume, None, raw=raw)
    with pytest.raises(error):
        read_legacy_header(old)


def test_a_current_file_is_not_migrated(tmp_path: Path, volume: np.ndarray) -> None:
    MLArray(volume).save(tmp_path / "current.mla")
    with pytest.raises(InvalidArgumentError, match="already a current"):
        migrate_file(tmp_path / "current.mla", tmp_path / "new.mla")


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MLArrayFileNotFoundError):
        read_legacy_header(tmp_path / "missing.mla")
