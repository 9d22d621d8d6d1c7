"""Dask arrays over .mla files served by a real HTTP range server on 127.0.0.1 (tests/remote_servers.py)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from remote_servers import RangeServer

from mlarray import InvalidArgumentError, MLArray

da = pytest.importorskip("dask.array", reason="the dask extra is part of dev")
pytest.importorskip("fsspec", reason="the remote extra is part of dev")
from mlarray.dask import MLAFile, close_handles, from_mla, read_meta  # noqa: E402

SHAPE, CHUNKS, BLOCKS = (24, 20, 18), (8, 10, 9), (4, 5, 9)


def volume(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RangeServer, list[np.ndarray]]]:
    folder = tmp_path_factory.mktemp("dask-remote")
    arrays, files = [], {}
    for i in range(3):
        arrays.append(volume(i))
        path = folder / f"v{i}.mla"
        MLArray(arrays[-1], chunk_size=CHUNKS, block_size=BLOCKS, spacing=(1.0, 0.5, 0.5)).save(path)
        files[f"/v{i}.mla"] = path.read_bytes()
    with RangeServer(files=files) as server:
        yield server, arrays


def test_one_url_is_one_lazy_array_with_the_file_chunks(served: tuple[RangeServer, list[np.ndarray]]) -> None:
    server, arrays = served
    url = f"{server.url}/v0.mla"
    lazy = from_mla(url)
    assert lazy.shape == SHAPE and lazy.dtype == np.float32
    assert lazy.chunks == tuple((c,) * (n // c) for n, c in zip(SHAPE, CHUNKS, strict=True))
    server.reset()
    patch = lazy[3:17, 5:15, 2:11].compute(scheduler="threads", num_workers=3)
    np.testing.assert_array_equal(patch, arrays[0][3:17, 5:15, 2:11])
    assert server.requests > 0  # read over HTTP when computed, not before
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), arrays[0])


def test_urls_stack_and_headers_read(served: tuple[RangeServer, list[np.ndarray]]) -> None:
    server, arrays = served
    urls = [f"{server.url}/v{i}.mla" for i in range(3)]
    stacked = from_mla(urls, axis=1)
    assert stacked.shape == (SHAPE[0], 3, *SHAPE[1:])
    np.testing.assert_array_equal(stacked.compute(scheduler="threads"), np.stack(arrays, axis=1))
    assert [m.spatial.spacing for m in read_meta(urls)] == [[1.0, 0.5, 0.5]] * 3


def test_a_url_file_pickles_with_its_options_and_reads_after(served: tuple[RangeServer, list[np.ndarray]]) -> None:
    """What a distributed worker gets: the URL, the shape, the options, no handle; it opens its own."""
    server, arrays = served
    source = MLAFile(f"{server.url}/v1.mla", storage_options={"block_size": 0})
    clone = pickle.loads(pickle.dumps(source))
    assert (clone.path, clone.shape, clone.dtype, clone.chunks) == (source.path, SHAPE, np.dtype("<f4"), CHUNKS)
    assert clone.storage_options == {"block_size": 0}
    np.testing.assert_array_equal(clone[2:9, :, 4], arrays[1][2:9, :, 4])


def test_an_image_opened_from_a_url_gives_per_task_handles(served: tuple[RangeServer, list[np.ndarray]]) -> None:
    """``to_dask`` of a remote image no longer funnels every block through one locked handle."""
    server, arrays = served
    with MLArray.open(f"{server.url}/v2.mla") as image:
        lazy = image.to_dask()
    sources = [v for v in lazy.dask.values() if isinstance(v, MLAFile)]  # the graph holds the picklable file
    assert sources and all(s.path == f"{server.url}/v2.mla" for s in sources)
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), arrays[2])


def test_an_object_replaced_by_another_shape_is_a_typed_error(tmp_path: Path) -> None:
    first = tmp_path / "a.mla"
    MLArray(np.zeros((8, 8), np.uint8)).save(first)
    second = tmp_path / "b.mla"
    MLArray(np.zeros((8, 9), np.uint8)).save(second)
    with RangeServer(files={"/x.mla": first.read_bytes()}) as server:
        lazy = from_mla(f"{server.url}/x.mla")
        server.files["/x.mla"] = second.read_bytes()
        with pytest.raises(InvalidArgumentError, match="changed since the array was made"):
            lazy.compute(scheduler="sync")


@pytest.mark.parametrize("make", ["from_mla", "to_dask", "pickled"])
def test_an_object_replaced_by_one_of_the_same_shape_is_not_read_into_the_array(tmp_path: Path, make: str) -> None:
    """Tasks opened their handles on the object as it was at task time: a result could mix two versions."""
    from mlarray import RemoteChangedError

    first, second = np.zeros((8, 8), np.uint8), np.full((8, 8), 7, np.uint8)
    blobs = []
    for array in (first, second):
        MLArray(array, chunk_size=(4, 8), block_size=(2, 8)).save(tmp_path / "v.mla")
        blobs.append((tmp_path / "v.mla").read_bytes())
    with RangeServer(files={"/x.mla": blobs[0]}) as server:
        url = f"{server.url}/x.mla"
        if make == "to_dask":
            with MLArray.open(url) as image:
                lazy = image.to_dask()
        elif make == "pickled":  # what a distributed worker gets
            lazy = da.from_array(pickle.loads(pickle.dumps(MLAFile(url))), chunks=(4, 8))
        else:
            lazy = from_mla(url)
        np.testing.assert_array_equal(lazy[:4].compute(scheduler="sync"), first[:4])
        server.files["/x.mla"] = blobs[1]
        close_handles()  # the next task opens a handle of its own, as another worker thread would
        with pytest.raises(RemoteChangedError, match="make the array again"):
            lazy.compute(scheduler="sync")
        np.testing.assert_array_equal(from_mla(url).compute(scheduler="sync"), second)  # a new array reads it
