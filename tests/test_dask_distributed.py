"""mlarray.dask on a real dask.distributed LocalCluster on 127.0.0.1: threads and processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlarray import MLArray

distributed = pytest.importorskip("distributed", reason="the dask extra is part of dev")
from mlarray.dask import from_mla  # noqa: E402


def _files(root: Path, count: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    arrays = rng.normal(size=(count, 24, 40, 12)).astype(np.float32)
    for i, a in enumerate(arrays):
        MLArray(a, patch_size=None, chunk_size=(8, 16, 12), block_size=(4, 8, 6)).save(root / f"f{i}.mla")
    return arrays


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_from_mla_on_a_local_cluster(tmp_path: Path, processes: bool) -> None:
    arrays = _files(tmp_path, 4)
    stacked = from_mla(str(tmp_path / "f*.mla"))
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=processes,
            host="127.0.0.1",
            protocol="tcp://",
            dashboard_address=":0",
            worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = client.compute(stacked).result()
        np.testing.assert_array_equal(out, arrays)
        # a reduction runs where the blocks are read; exact against NumPy in the same dtype
        total = client.compute(stacked.sum(axis=(1, 2, 3), dtype=np.float64)).result()
        np.testing.assert_array_equal(total, arrays.sum(axis=(1, 2, 3), dtype=np.float64))
        # the workers read the files themselves: each worker process or thread opened handles
        opened = client.run(_open_handle_count) if processes else {}
        if processes:
            assert sum(opened.values()) >= 1
            # the task threads' handles are released by a call on the workers (client.run's thread)
            from mlarray.dask import close_handles

            closed = client.run(close_handles)
            assert sum(closed.values()) == sum(opened.values())
            assert set(client.run(_open_handle_count).values()) == {0}
        assert set(client.run(_dask_loaded).values()) == {True}


def _open_handle_count() -> int:
    """Open file handles in this worker process (its threads cache the ones they read through)."""
    import gc

    from mlarray.api import MLArray

    return sum(
        1 for obj in gc.get_objects() if isinstance(obj, MLArray) and obj.filepath is not None and not obj._closed
    )


def _dask_loaded() -> bool:
    import sys

    return "mlarray.dask._source" in sys.modules
