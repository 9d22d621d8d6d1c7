"""The xarray backend is lazy: a patch of a 256 MiB file is read under a 96 MiB cap; loading it all is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from memlimit import WARMUP, LimitExceeded, run_limited

from mlarray import MLArray

MiB = 1 << 20
SETUP = "import numpy, blosc2, mlarray, xarray, mlarray.xarray"
WARM = WARMUP + (
    "import xarray as _xr\n"
    "with _xr.open_dataarray(small, engine='mlarray') as _da:\n"
    "    _da.isel(dim_0=slice(0, 2)).values.sum()\n"
)
"""xarray imports optional duck-array modules (pint, ...) on first use: that happens before the baseline."""


def _plane(k: int) -> np.ndarray[Any, Any]:
    return (np.arange(512)[:, None] * 3 + np.arange(512)[None, :] + k).astype(np.int16)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xbig") / "big.mla"
    image = MLArray.create(
        path,
        (512, 512, 512),
        dtype=np.int16,
        spacing=[2.0, 1.0, 0.5],
        chunk_size=(64, 128, 128),
        block_size=(16, 64, 64),
    )
    for z in range(0, 512, 64):
        image[z : z + 64] = np.stack([_plane(k) for k in range(z, z + 64)])
    image.close()
    MLArray(np.zeros((4, 4, 4), np.int16)).save(path.parent / "small.mla")
    return path


def _variables(big: Path) -> dict[str, str]:
    return {"path": str(big), "small": str(big.parent / "small.mla")}


READ_PATCH = """
import xarray as xr
da = xr.open_dataarray(path, engine="mlarray")
patch = da.isel(dim_0=slice(100, 132), dim_1=slice(7, 71), dim_2=slice(300, 364)).values
coords = [da["dim_0"].values[[0, -1]].tolist(), da["dim_2"].values[:2].tolist()]
result = {"patch": [int(patch.sum()), list(patch.shape), int(patch[5, 6, 7])], "coords": coords}
"""


def test_opening_and_reading_a_patch_stay_within_a_small_budget(big: Path) -> None:
    budget = 96 * MiB
    run = run_limited(READ_PATCH, budget=budget, setup=SETUP, warmup=WARM, variables=_variables(big))
    expected = np.stack([_plane(k) for k in range(100, 132)])[:, 7:71, 300:364]
    assert run.result["patch"] == [int(expected.sum()), [32, 64, 64], int(expected[5, 6, 7])]
    assert run.result["coords"] == [[0.0, 1022.0], [0.0, 0.5]]
    assert run.peak_over_baseline < budget


def test_the_budget_is_real_loading_the_whole_file_exceeds_it(big: Path) -> None:
    """The same cap refuses ``.values`` of the whole array: the patch run above did not load it."""
    code = "import xarray as xr\nresult = int(xr.open_dataarray(path, engine='mlarray').values[-1, -1, -1])"
    with pytest.raises(LimitExceeded):
        run_limited(code, budget=96 * MiB, setup=SETUP, warmup=WARM, variables=_variables(big))
    full = run_limited(code, budget=None, setup=SETUP, warmup=WARM, variables=_variables(big))
    assert full.result == int(_plane(511)[-1, -1])
