"""A file opened for reading opens python-blosc2's NDArray only when something needs it, of the same file."""

from __future__ import annotations

import os
from pathlib import Path

import blosc2
import numpy as np
import pytest

from mlarray import CorruptFrameError, FileChangedError, MLArray
from mlarray.storage.chunks import DataSection
from mlarray.storage.lazyframe import LazyFrame


@pytest.fixture()
def volume() -> np.ndarray:
    return np.random.default_rng(3).integers(-500, 500, size=(40, 36, 30)).astype(np.int16)


@pytest.fixture()
def saved(tmp_path: Path, volume: np.ndarray) -> Path:
    path = tmp_path / "v.mla"
    MLArray(volume, spacing=(1.0, 2.0, 3.0), chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(path)
    return path


def _frame(image: MLArray) -> LazyFrame:
    frame = image._nd
    assert isinstance(frame, LazyFrame)
    return frame


def test_open_for_reading_answers_shape_dtype_and_chunks_without_python_blosc2(saved: Path, volume: np.ndarray) -> None:
    with MLArray.open(saved) as image:
        frame = _frame(image)
        assert (image.shape, image.dtype, image.chunks) == (volume.shape, volume.dtype, (16, 16, 16))
        assert frame.blocks == (8, 8, 8) and frame.ndim == 3 and len(frame) == 40
        assert frame._nd is None
        assert "not opened yet" in repr(frame)


def test_what_needs_python_blosc2_opens_the_same_data(saved: Path, volume: np.ndarray) -> None:
    with MLArray.open(saved) as image:
        store = image._store  # code written for 0.0.x inspects the blosc2 array itself
        assert isinstance(store, blosc2.NDArray)
        assert _frame(image).opened() is store
        assert store.schunk.nchunks == 3 * 3 * 2
        np.testing.assert_array_equal(image[::2, 1::3, ::-5], volume[::2, 1::3, ::-5])  # steps: python-blosc2 reads
        np.testing.assert_array_equal(store[...], volume)


def test_copy_on_write_handles_are_lazy_too(saved: Path, volume: np.ndarray) -> None:
    with MLArray.open(saved, mmap_mode="c") as image:
        assert _frame(image)._nd is None
        image[0:2, 0:2, 0:2] = 7
        expected = volume.copy()
        expected[0:2, 0:2, 0:2] = 7
        np.testing.assert_array_equal(image[...], expected)
    np.testing.assert_array_equal(MLArray.load(saved).to_numpy(), volume)


def test_writers_open_python_blosc2_at_once(saved: Path) -> None:
    with MLArray.open(saved, mmap_mode="r+") as image:
        assert isinstance(image._nd, blosc2.NDArray)


def test_saving_an_opened_image_copies_the_checked_file(saved: Path, tmp_path: Path, volume: np.ndarray) -> None:
    copy = tmp_path / "copy.mla"
    with MLArray.open(saved) as image:
        image.save(copy)
    again = MLArray.load(copy)
    np.testing.assert_array_equal(again.to_numpy(), volume)
    assert again.meta.spatial.spacing == [1.0, 2.0, 3.0]


def test_a_file_replaced_after_open_is_never_read_under_the_old_header(
    saved: Path, tmp_path: Path, volume: np.ndarray
) -> None:
    image = MLArray.open(saved)
    MLArray(np.zeros((5, 5), dtype=np.float32)).save(saved)  # another writer's atomic save
    frame = _frame(image)
    assert not image._chunks.names_checked_file(str(saved))
    if image._chunks.descriptor_path() is None:  # no /proc: the read is refused, typed
        with pytest.raises(FileChangedError, match="since it was opened"):
            image[::2]
    else:  # the NDArray of the checked file, through the process's descriptor of it
        np.testing.assert_array_equal(image[::2], volume[::2])
        assert frame.opened().shape == volume.shape
    image.close()


def test_without_a_descriptor_path_a_replaced_file_is_refused(
    saved: Path, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = MLArray.open(saved)
    os.replace(saved, saved.with_suffix(".old.mla"))
    MLArray(volume + 1).save(saved)
    monkeypatch.setattr(DataSection, "descriptor_path", lambda self: None)  # as on systems without /proc
    with pytest.raises(FileChangedError, match="since it was opened"):
        image._store  # noqa: B018 - the access opens the frame
    image.close()


def test_a_file_still_in_place_is_opened_by_its_path(saved: Path) -> None:
    with MLArray.open(saved) as image:
        assert image._chunks.names_checked_file(str(saved))
        assert Path(image._store.urlpath) == saved


def test_a_load_decodes_without_python_blosc2_where_our_decoder_serves_it(
    saved: Path, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlarray.storage import fastread

    opened: list[str] = []
    real = LazyFrame.opened
    monkeypatch.setattr(LazyFrame, "opened", lambda self: opened.append(self._path) or real(self))
    np.testing.assert_array_equal(MLArray.load(saved).to_numpy(), volume)
    assert opened == ([] if fastread.available() else [str(saved)])


def test_many_threads_using_it_first_at_once_open_python_blosc2_once(saved: Path) -> None:
    import threading

    with MLArray.open(saved) as image:
        barrier = threading.Barrier(12)
        seen: list[int] = []

        def first_use() -> None:
            barrier.wait()
            seen.append(id(image._store))

        workers = [threading.Thread(target=first_use) for _ in range(12)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert len(set(seen)) == 1


def test_a_save_over_the_file_while_python_blosc2_opens_it_reads_the_checked_file(
    saved: Path, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlarray.storage import io

    image = MLArray.open(saved)
    real = io.open_frame

    def replaced_meanwhile(path: str, mmap_mode: str | None, dparams: object = None) -> object:
        if path == str(saved):  # another process saves over the file just as python-blosc2 opens it
            MLArray(np.ones((3, 3), dtype=np.uint8)).save(saved)
            raise CorruptFrameError("blosc2 cannot open the frame (it changed under it)", path=path)
        return real(path, mmap_mode, dparams)

    monkeypatch.setattr(_frame(image), "_opener", replaced_meanwhile)
    if image._chunks.descriptor_path() is None:
        with pytest.raises(FileChangedError):
            image[::2]
    else:
        np.testing.assert_array_equal(image[::2], volume[::2])
    image.close()


def test_bytes_paths_still_name_files(saved: Path) -> None:
    from mlarray.storage import data_digest, data_section, inspect_frame

    raw = os.fsencode(saved)
    assert inspect_frame(raw).nd.shape == inspect_frame(saved).nd.shape
    assert data_section(raw) == data_section(saved)
    assert data_digest(raw) == data_digest(saved)


@pytest.mark.parametrize("method", ["compress", "decompress"])
def test_a_copy_on_write_handle_keeps_its_edits_in_memory_after_compress_or_decompress(
    saved: Path, volume: np.ndarray, method: str
) -> None:
    image = MLArray.open(saved, mmap_mode="c")
    image[0:2] = 7
    getattr(image, method)()
    expected = volume.copy()
    expected[0:2] = 7
    np.testing.assert_array_equal(image[0:3, 0:3, 0:3], expected[0:3, 0:3, 0:3])
    np.testing.assert_array_equal(image.to_numpy(), expected)
    np.testing.assert_array_equal(MLArray.load(saved).to_numpy(), volume)  # the file never changed
