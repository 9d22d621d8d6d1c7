"""Handles that write in place, through sequences the stateful audit found broken.

``MLArray.create`` hands out a ``'w+'`` handle: it must read back what it wrote as an
``'r+'`` handle does; ``compress``/``decompress`` after in-place writes must leave a valid
file; an ``'r+'`` handle whose path ``create`` replaced keeps its own file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlarray import MLArray
from mlarray.validate import validate_file


@pytest.mark.parametrize("how", ["create", "open"])
def test_a_writing_handle_reads_back_what_it_wrote(tmp_path: Path, how: str) -> None:
    path = tmp_path / "a.mla"
    layout = {"chunk_size": (2, 4), "block_size": (1, 4)}
    if how == "create":
        out = MLArray.create(path, (4, 8), np.int16, fill_value=7, **layout)
    else:
        MLArray(np.full((4, 8), 7, np.int16), **layout).save(path)
        out = MLArray.open(path, mmap_mode="r+")
    expected = np.full((4, 8), 7, np.int16)
    with out:
        for key, value in [((slice(0, 2), slice(0, 4)), 101), ((slice(1, 4), slice(2, 8)), -3), ((...,), 0)]:
            out[key] = value
            expected[key] = value
            np.testing.assert_array_equal(out[:, :], expected)
            np.testing.assert_array_equal(out[2, ::-2], expected[2, ::-2])
    np.testing.assert_array_equal(MLArray.load(path).to_numpy(), expected)
    assert validate_file(path).valid


def test_sliding_windows_accumulate_into_a_created_file(tmp_path: Path) -> None:
    """The documented way to fill a large result; the third overlapping window failed with CORRUPT_FRAME."""
    path = tmp_path / "seg.mla"
    expected = np.full((64, 96, 96), 0.5, np.float32)
    with MLArray.create(path, shape=(64, 96, 96), dtype=np.float32, patch_size=(48, 64, 64), fill_value=0.5) as out:
        for z in range(0, 33, 8):
            for y in range(0, 65, 32):
                out[z : z + 32, y : y + 32] += 1.0
                expected[z : z + 32, y : y + 32] += 1.0
    np.testing.assert_array_equal(MLArray.load(path).to_numpy(), expected)
    assert validate_file(path).valid


@pytest.mark.parametrize("action", ["compress", "decompress"])
def test_compress_after_in_place_writes_leaves_a_valid_file(tmp_path: Path, action: str) -> None:
    path = tmp_path / "a.mla"
    data = np.arange(24, dtype=np.int16).reshape(4, 6)
    MLArray(data, spacing=(1.0, 2.0)).save(path)
    image = MLArray.open(path, mmap_mode="r+")
    image[0, 0] = 99
    image.spacing = [3.0, 3.0]  # detached: not written back (documented)
    getattr(image, action)()
    assert validate_file(path).valid  # was DIGEST_MISMATCH for good
    saved = MLArray.load(path)
    assert saved[0, 0] == 99 and saved.spacing == [1.0, 2.0]
    assert image[0, 0] == 99 and image.spacing == [3.0, 3.0]


def test_an_r_plus_handle_keeps_its_own_file_when_create_replaces_the_path(tmp_path: Path) -> None:
    path = tmp_path / "a.mla"
    MLArray(np.full(4, 5235, np.int16)).save(path)
    old = MLArray.open(path, mmap_mode="r+")
    new = MLArray.create(path, (5, 9, 3, 8), np.bool_, fill_value=False)
    new[...] = np.random.default_rng(0).random((5, 9, 3, 8)) < 0.5  # the new file grows
    old[-1] = 7  # into its own (replaced) file
    new[...] = True  # the new file shrinks
    assert old[:].tolist() == [5235, 5235, 5235, 7]
    old[0] = 1
    assert old[:].tolist() == [1, 5235, 5235, 7]
    old.close()
    new.close()
    assert bool(MLArray.load(path).to_numpy().all())
    assert validate_file(path).valid


def test_decompress_of_a_closed_image_is_refused_as_compress_is(tmp_path: Path) -> None:
    from mlarray.errors import InvalidArgumentError

    MLArray(np.zeros(3, np.int8)).save(tmp_path / "a.mla")
    image = MLArray.open(tmp_path / "a.mla")
    image.close()
    for action in (image.compress, image.decompress):
        with pytest.raises(InvalidArgumentError, match="closed"):
            action()


def test_an_invalid_list_edit_at_close_keeps_the_data_under_a_true_digest(tmp_path: Path) -> None:
    """A list grown in place fails already when the header is prepared, before the fallback ran."""
    from mlarray.errors import HeaderValidationError

    path = tmp_path / "a.mla"
    MLArray(np.arange(12, dtype=np.int16).reshape(3, 4), spacing=[1.0, 1.0]).save(path)
    image = MLArray.open(path, mmap_mode="r+")
    image[0, 0] = 42
    image.meta.spatial.spacing.append(1.0)  # three spacings for two axes: checked when the header is written
    with pytest.raises(HeaderValidationError):
        image.close()
    assert validate_file(path).valid  # was DIGEST_MISMATCH
    saved = MLArray.load(path)
    assert saved[0, 0] == 42 and saved.spacing == [1.0, 1.0]


def test_a_pickled_handle_reopens_the_file_it_was_opened_on_after_a_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    MLArray(np.zeros(4, np.float32)).save(tmp_path / "a" / "scan.mla")
    MLArray(np.ones(4, np.float32)).save(tmp_path / "b" / "scan.mla")
    monkeypatch.chdir(tmp_path / "a")
    with MLArray.open("scan.mla") as image:
        data = pickle.dumps(image)
    monkeypatch.chdir(tmp_path / "b")
    copy = pickle.loads(data)
    assert copy[:].tolist() == [0.0, 0.0, 0.0, 0.0]  # not b/scan.mla
    copy.close()
