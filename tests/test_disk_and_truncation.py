"""A full disk under an ``r+`` writer, a failed close after data writes, a file shortened under a reader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engines import select_engine

import mlarray._access
from mlarray import MLArray
from mlarray.errors import MLArrayFileNotFoundError, TruncatedFileError, WriteFailedError
from mlarray.storage.chunks import DataSection, room_needed
from mlarray.storage.frame import inspect_frame
from mlarray.validate import validate_file
from mlarray.writing import written_box


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2000, 2000, (40, 48, 56)).astype(np.int16)


@pytest.mark.parametrize(
    "key",
    [
        (slice(0, 40), slice(0, 48), slice(0, 56)),
        (slice(3, 9), slice(10, 30), slice(0, 5)),
        (0, 0, 0),
        (slice(None), 7, slice(None)),
        ([0, 39], slice(None), [1, 50]),
    ],
)
def test_a_write_never_grows_the_file_by_more_than_the_room_it_asks_for(tmp_path: Path, key: Any) -> None:
    path = tmp_path / "a.mla"
    MLArray(_volume(), chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(path)
    section = DataSection(str(path), inspect_frame(str(path)))
    try:
        box = written_box((40, 48, 56), key)
        assert box is not None
        needed = room_needed(section.layout, box, os.path.getsize(path))
    finally:
        section.close()
    before = os.path.getsize(path)
    with MLArray.open(path, mmap_mode="r+") as image:
        noise = np.random.default_rng(1).integers(-30000, 30000, np.shape(_volume()[key])).astype(np.int16)
        image[key] = noise  # incompressible: the worst case for the chunks it rewrites
        grown = os.path.getsize(path) - before
    assert 0 <= grown <= needed


def test_a_write_that_may_not_fit_on_the_disk_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C-Blosc2 writes through a map: a full disk there is SIGBUS mid-write, the chunk index lost."""
    path = tmp_path / "a.mla"
    volume = _volume()
    MLArray(volume, chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(path)
    free = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(mlarray._access.shutil, "disk_usage", lambda _: free._replace(free=100_000))
    with MLArray.open(path, mmap_mode="r+") as image:
        image[0, 0, 0] = 5  # one chunk of 8 KiB: fits
        with pytest.raises(WriteFailedError, match="not enough free disk space"):
            image[:] = 1  # every chunk: may need about 1 MiB
    volume[0, 0, 0] = 5
    assert validate_file(path, deep=True).valid
    assert np.array_equal(MLArray.load(path).to_numpy(), volume)


@pytest.mark.parametrize("engine", ["compiled", "numpy", "blosc2", "off"])
def test_a_file_shortened_under_a_reader_is_reported_not_read_past_its_end(
    tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine == "off":
        monkeypatch.setenv("MLARRAY_NO_FASTREAD", "1")
    else:
        select_engine(engine, monkeypatch)
    path = tmp_path / "a.mla"
    volume = _volume()
    MLArray(volume, chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(path)
    with MLArray.open(path) as image:
        assert np.array_equal(image[0:16, 0:16, 0:16], volume[0:16, 0:16, 0:16])  # maps the file
        os.truncate(path, os.path.getsize(path) // 2)  # another program shortens it in place
        with pytest.raises(TruncatedFileError, match="shortened while it was open"):
            image[24:40, 32:48, 40:56]  # once a SIGBUS: the pages past the new end
        with pytest.raises(TruncatedFileError):
            image.read((slice(24, 40), slice(32, 48), slice(40, 56)))
        with pytest.raises(TruncatedFileError):
            image.to_numpy()


CLOSE_AFTER_THE_FOLDER_LOCKS = """
import os, sys
from mlarray import MLArray
from mlarray.errors import MLArrayError
if os.geteuid() == 0:  # root writes anywhere: become the ordinary user who owns the folder
    os.setgid(65534)
    os.setuid(65534)
folder = sys.argv[1]
image = MLArray.open(os.path.join(folder, "a.mla"), mmap_mode="r+")
image[0, 0, 0] = 1234
os.chmod(folder, 0o555)  # the header can no longer be rewritten beside the file
try:
    image.close()
    print("closed")
except MLArrayError as exc:
    print(exc.code, exc)
finally:
    os.chmod(folder, 0o755)
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_close_that_cannot_rewrite_the_header_after_data_writes_says_what_the_file_holds() -> None:
    """It said "the previous file is untouched", but the data written through the handle are in it."""
    base = Path(tempfile.mkdtemp(prefix="mla-close-"))
    try:
        os.chmod(base, 0o755)
        folder = base / "data"
        folder.mkdir()
        MLArray(_volume()).save(folder / "a.mla")
        if os.geteuid() == 0:
            os.chown(folder, 65534, 65534)
            os.chown(folder / "a.mla", 65534, 65534)
        run = subprocess.run(
            [sys.executable, "-c", CLOSE_AFTER_THE_FOLDER_LOCKS, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        message = run.stdout
        assert run.returncode == 0, run.stderr
        assert message.startswith("READ_ONLY") and "the target directory is not writable" in message
        assert "data written through this handle are in the file" in message and "DIGEST_MISMATCH" in message
        assert MLArray.load(folder / "a.mla").to_numpy()[0, 0, 0] == 1234
        report = validate_file(folder / "a.mla", deep=True)
        assert not report.valid and "DIGEST_MISMATCH" in str(report.problems)
        MLArray.load(folder / "a.mla").save(folder / "a.mla")  # what the message advises
        assert validate_file(folder / "a.mla", deep=True).valid
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_link_loop_or_dangling_link_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "loop1.mla").symlink_to(tmp_path / "loop2.mla")
    (tmp_path / "loop2.mla").symlink_to(tmp_path / "loop1.mla")
    (tmp_path / "dangling.mla").symlink_to(tmp_path / "gone.mla")
    for name in ("loop1.mla", "dangling.mla"):
        with pytest.raises(MLArrayFileNotFoundError, match="symbolic link that leads to no file"):
            MLArray.open(tmp_path / name)
