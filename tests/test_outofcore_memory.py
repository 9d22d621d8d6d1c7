"""Files several times larger than the memory limit convert, relayout and validate (RLIMIT_AS in a subprocess).

The inputs are generated slab by slab (a cheap pattern that also compresses well), so the
test process itself never holds one either. Each conversion runs under
:func:`memlimit.run_limited` with a budget of ``BUDGET`` bytes above the interpreter's
baseline, and the result is compared with the source slab by slab.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from memlimit import run_limited

from mlarray import MLArray
from mlarray.convert._stream import save_slabs, template
from mlarray.models import Meta
from mlarray.validate import validate_file

MiB = 1 << 20
BUDGET = 250 * MiB
SHAPE = (1024, 512, 600)  # int16: 600 MiB, 2.4 times the budget
SETUP = "import numpy, blosc2, nibabel, nrrd, mlarray, mlarray.convert"


def pattern(region: tuple[slice, ...]) -> np.ndarray:
    """The voxels of ``region`` of the test volume: ``7 i + 3 j + k`` as int16 (wrapping)."""
    i, j, k = np.ogrid[region[0], region[1], region[2]]
    return (7 * i + 3 * j + k).astype(np.int16)


@pytest.fixture(scope="module")
def big_mla(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.mla"
    image = template(
        SHAPE, "<i2", Meta(spatial={"spacing": [0.5, 0.5, 1.0]}, source={"id": 7}), {"patch_size": "default"}
    )
    save_slabs(path, image, pattern)
    return path


def same_as_pattern(path: Path, step: int = 64) -> bool:
    """Compare a file with the pattern, ``step`` planes at a time (never the whole array in memory)."""
    with MLArray.open(path) as image:
        assert image.shape == SHAPE
        return all(
            np.array_equal(
                image[i : i + step],
                pattern((slice(i, min(i + step, SHAPE[0])), slice(0, SHAPE[1]), slice(0, SHAPE[2]))),
            )
            for i in range(0, SHAPE[0], step)
        )


def test_relayout_of_a_file_larger_than_the_memory_limit(big_mla: Path, tmp_path: Path) -> None:
    out = tmp_path / "relayout.mla"
    run = run_limited(
        "from mlarray.convert import convert_file\nconvert_file(src, dst, patch_size=64, codec='zstd')\nresult = 'ok'",
        budget=BUDGET,
        setup=SETUP,
        variables={"src": str(big_mla), "dst": str(out)},
    )
    assert run.result == "ok"
    assert run.peak_over_baseline < BUDGET
    assert validate_file(out).valid
    with MLArray.open(out) as image:
        assert image.meta.layout is not None and image.meta.layout.codec == "zstd"
        assert image.meta.source == {"id": 7}
        assert image.spacing == [0.5, 0.5, 1.0]
    assert same_as_pattern(out)


def test_the_in_memory_relayout_would_not_fit(big_mla: Path, tmp_path: Path) -> None:
    """The limit is real: loading the whole array runs out of it."""
    with pytest.raises(MemoryError):
        run_limited(
            "from mlarray import MLArray\nresult = int(MLArray.load(src).to_numpy()[0, 0, 0])",
            budget=BUDGET,
            setup=SETUP,
            variables={"src": str(big_mla)},
        )
