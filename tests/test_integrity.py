"""The data-section digest: written on save, kept correct by r+ writes, catches any flipped byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlarray import MLArray
from mlarray.storage import data_digest, data_section, read_header
from mlarray.validate import validate_file


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "d.mla"
    data = np.random.default_rng(3).integers(0, 50, size=(24, 40, 40), dtype=np.int16)
    MLArray(data, spacing=(1, 1, 1), chunk_size=(8, 20, 20), block_size=(4, 10, 10)).save(path)
    return path


def test_save_records_the_digest_of_the_data_section(saved: Path) -> None:
    meta = read_header(saved).meta
    assert meta.integrity is not None and meta.integrity.digest == data_digest(saved)
    assert validate_file(saved, deep=True).valid


def test_every_flipped_byte_in_the_data_section_is_detected(saved: Path) -> None:
    original = saved.read_bytes()
    start, end = data_section(saved)
    positions = sorted({start, end - 1, *range(start, end, max(1, (end - start) // 97))})
    codes = []
    for pos in positions:
        corrupted = bytearray(original)
        corrupted[pos] ^= 0x01
        saved.write_bytes(bytes(corrupted))
        report = validate_file(saved, deep=True)
        assert not report.valid, f"flip at byte {pos} went unnoticed"
        codes.append(report.code)
    # spec 8: a flip that breaks a chunk is CORRUPT_FRAME (checked first); any other is DIGEST_MISMATCH
    assert set(codes) <= {"DIGEST_MISMATCH", "CORRUPT_FRAME"} and "DIGEST_MISMATCH" in codes
    saved.write_bytes(original)
    assert validate_file(saved, deep=True).valid


def test_r_plus_data_writes_refresh_the_digest_on_close(saved: Path) -> None:
    before = read_header(saved).meta.integrity
    with MLArray.open(saved, mmap_mode="r+") as image:
        image[0:4, 0:10, 0:10] = 99
    after = read_header(saved).meta.integrity
    assert before is not None and after is not None and before.digest != after.digest
    assert validate_file(saved, deep=True).valid


def test_header_only_edits_keep_the_digest_valid(saved: Path) -> None:
    before = read_header(saved).meta.integrity
    with MLArray.open(saved, mmap_mode="r+") as image:
        image.meta.extra["reviewed"] = True
    assert read_header(saved).meta.integrity == before
    assert validate_file(saved, deep=True).valid


def test_write_without_close_leaves_a_detectably_stale_digest(saved: Path) -> None:
    image = MLArray.open(saved, mmap_mode="r+")
    image[1, 1, 1] = 12345
    del image  # never closed: the documented "stale" state
    report = validate_file(saved, deep=True)
    assert report.code == "DIGEST_MISMATCH"


def test_deep_validation_and_open_agree_on_metadata_only_frames(tmp_path: Path) -> None:
    import struct

    from mlarray import CorruptFrameError, Meta

    path = tmp_path / "meta.mla"
    MLArray(meta=Meta(extra={"a": 1})).save(path)
    raw = bytearray(path.read_bytes())
    raw[30:38] = struct.pack(">q", 4294967297)  # the frame header's uncompressed size
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFrameError):
        MLArray.open(path)
    report = validate_file(path, deep=True)
    assert not report.valid and report.code == "CORRUPT_FRAME"


def test_quick_validation_checks_the_chunk_index_locally_as_remotely(tmp_path: Path) -> None:
    import io

    from mlarray.remote.open import validate_remote

    path = tmp_path / "a.mla"
    MLArray(
        np.arange(8 * 20 * 24, dtype=np.int16).reshape(8, 20, 24), chunk_size=(4, 10, 12), block_size=(2, 5, 12)
    ).save(path)
    with MLArray.open(path) as image:
        index_at = image._chunks.layout.start + image._chunks.layout.data_size  # the chunk index follows the chunks
    raw = bytearray(path.read_bytes())
    raw[index_at + 5] ^= 0x01  # the index chunk's declared uncompressed size
    path.write_bytes(bytes(raw))
    local = validate_file(path, deep=False)
    remote = validate_remote(io.BytesIO(bytes(raw)), deep=False)
    assert [p.code for p in local.problems] == [p.code for p in remote.problems] == ["CORRUPT_FRAME"]
