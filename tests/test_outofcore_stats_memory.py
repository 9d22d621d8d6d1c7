"""``stats`` and ``validate`` of files several times larger than the memory they may use.

Each file is written slab by slab into ``MLArray.create`` (cheaply compressible content, so
the files are small on disk), then the library call runs in a subprocess whose address
space is capped at its baseline plus a budget a quarter of the array's size
(:mod:`memlimit`). Loading the array, or one float64 copy of it, would not fit.

``update_stats`` opens the file ``'r+'`` (it holds the writer's lock and rewrites the
header), and C-Blosc2 reserves about 1 GiB of address space for a writable memory map
whatever the file's size. So the computation runs under the address-space cap on a
read-only handle (``annotate``), and ``update_stats`` itself is measured by its peak
resident memory (``VmHWM``) without a cap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from memlimit import run_limited

from mlarray import MLArray

MiB = 1 << 20
SETUP = "import numpy, blosc2, mlarray, mlarray.stats, mlarray.validate"


def _plane(k: int) -> np.ndarray[Any, Any]:
    return (np.arange(512)[:, None] % 97 + np.arange(512)[None, :] % 13 + k % 50 - 1000).astype(np.int16)


def _write(path: Path, shape: tuple[int, ...], dtype: Any, fill: Any, **kwargs: Any) -> Path:
    image = MLArray.create(path, shape, dtype=dtype, chunk_size=(64, 128, 128), block_size=(16, 64, 64), **kwargs)
    for z in range(0, shape[0], 64):
        image[z : z + 64] = np.stack([fill(k) for k in range(z, min(z + 64, shape[0]))])
    image.close()
    return path


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """512 MiB of int16 (1024 x 512 x 512), a few MB on disk."""
    return _write(tmp_path_factory.mktemp("big") / "ct.mla", (1024, 512, 512), np.int16, _plane)


def _expected_ct() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Values and counts of the whole ct volume (a histogram: plane pattern plus z % 50)."""
    hist = np.zeros(200, dtype=np.int64)
    base = np.bincount(_plane(0).reshape(-1) + 1000, minlength=150)
    for k in range(1024):
        hist[k % 50 : k % 50 + 150] += base
    present = np.flatnonzero(hist)
    return present - 1000, hist[present]


def test_stats_of_a_file_four_times_the_memory_limit(ct: Path) -> None:
    budget = 128 * MiB
    capped = run_limited(
        "from mlarray.stats import annotate\n"
        "with mlarray.MLArray.open(path, 'r') as image:\n"
        "    result = annotate(image).model_dump(mode='json')",
        budget=budget,
        setup=SETUP,
        variables={"path": str(ct)},
    )
    run = run_limited(
        "from mlarray.stats import update_stats\nresult = update_stats(path).model_dump(mode='json')",
        budget=None,
        setup=SETUP,
        variables={"path": str(ct)},
    )
    assert capped.peak_over_baseline < budget and run.peak_over_baseline < budget
    assert capped.result["stats"] == run.result["stats"]
    stats = run.result["stats"]
    values, counts = _expected_ct()
    n = int(counts.sum())
    assert n == 1024 * 512 * 512 and run.result["is_seg"] is False
    assert (stats["min"], stats["max"]) == (float(values[0]), float(values[-1]))
    assert stats["mean"] == sum(int(v) * int(c) for v, c in zip(values, counts, strict=True)) / n
    cumulative = np.cumsum(counts)
    middle = [float(values[np.searchsorted(cumulative, r, side="right")]) for r in (n // 2 - 1, n // 2)]
    assert stats["median"] == (middle[0] + middle[1]) / 2
    reopened = MLArray.open(ct)
    assert reopened.meta.stats is not None and reopened.meta.stats.model_dump(mode="json") == stats
    reopened.close()


def test_writers_open_under_an_address_space_cap(ct: Path, tmp_path: Path) -> None:
    """'r+' and ``create`` under a cap far below the 1 GiB map C-Blosc2 reserves for writing (file I/O instead).

    Was: CORRUPT_FRAME for a valid file, and ``create`` failed after it had replaced the old file.
    """
    small = tmp_path / "small.mla"
    MLArray(np.arange(1000, dtype=np.int16).reshape(10, 10, 10)).save(small)
    code = (
        "with mlarray.MLArray.open(small, 'r+') as image:\n"
        "    image[0, 0, :3] = [7, 8, 9]\n"
        "    image.meta.source['edited'] = True\n"
        "made = mlarray.MLArray.create(created, (20, 30), numpy.uint8, fill_value=4)\n"
        "made[1] = 5\n"
        "made.close()\n"
        "from mlarray.stats import update_stats\n"
        "result = update_stats(big).model_dump(mode='json')['stats']['max']"
    )
    created = tmp_path / "created.mla"
    budget = 128 * MiB
    run = run_limited(
        code, budget=budget, setup=SETUP, variables={"small": str(small), "created": str(created), "big": str(ct)}
    )
    assert run.peak_over_baseline < budget
    values, _ = _expected_ct()
    assert run.result == float(values[-1])
    edited = MLArray.load(small)
    assert edited[0, 0, :4].tolist() == [7, 8, 9, 3] and edited.meta.source["edited"] is True
    made = MLArray.load(created)
    assert made.shape == (20, 30) and int(made[1].min()) == 5 and int(made[0].max()) == 4


def test_validate_of_a_file_four_times_the_memory_limit(ct: Path) -> None:
    budget = 128 * MiB
    code = "from mlarray.validate import validate_file\nr = validate_file(path)\nresult = [r.valid, r.code]"
    run = run_limited(code, budget=budget, setup=SETUP, variables={"path": str(ct)})
    assert run.result == [True, None] and run.peak_over_baseline < budget


def _labels(k: int) -> np.ndarray[Any, Any]:
    plane = np.zeros((512, 512), np.uint8)
    if 100 <= k < 300:
        plane[50:150, 200:260] = 1  # a box of label 1
    if k % 256 == 7:
        plane[k % 512, ::9] = 3  # sparse label 3 on some planes
    return plane


def test_label_map_boxes_and_class_locations_four_times_the_limit(tmp_path: Path) -> None:
    path = _write(tmp_path / "seg.mla", (1024, 512, 512), np.uint8, _labels)  # 256 MiB
    budget = 64 * MiB
    run = run_limited(
        "from mlarray.stats import annotate\n"
        "with mlarray.MLArray.open(path, 'r') as image:\n"
        "    result = annotate(image, with_class_locations=True).model_dump(mode='json')",
        budget=budget,
        setup=SETUP,
        variables={"path": str(path)},
    )
    assert run.peak_over_baseline < budget
    meta = run.result
    assert meta["is_seg"] is True and meta["bbox"]["labels"] == [1, 3]
    planes = [k for k in range(1024) if k % 256 == 7]
    assert meta["bbox"]["bboxes"] == [
        [[100.0, 299.0], [50.0, 149.0], [200.0, 259.0]],
        [[float(min(planes)), float(max(planes))], [7.0, float(max(k % 512 for k in planes))], [0.0, 504.0]],
    ]
    classes = {c["label"]: c for c in meta["class_locations"]["classes"]}
    assert classes[1]["count"] == 200 * 100 * 60 and classes[3]["count"] == len(planes) * 57
    shape = (1024, 512, 512)
    for label, entry in classes.items():
        assert len(entry["indices"]) == min(entry["count"], 10_000)
        coords = np.stack(np.unravel_index(np.asarray(entry["indices"]), shape), axis=1)
        got = [_labels(int(z))[y, x] for z, y, x in coords]
        assert set(got) == {label}


def _float_plane(k: int) -> np.ndarray[Any, Any]:
    return (np.arange(512)[:, None] * 0.25 + np.arange(512)[None, :] % 7 - k * 0.5).astype(np.float32)


def test_float_statistics_radix_selection_four_times_the_limit(tmp_path: Path) -> None:
    """Floats take the multi-pass radix selection; 384 MiB of float32 under a 96 MiB cap."""
    path = _write(tmp_path / "f32.mla", (384, 512, 512), np.float32, _float_plane)
    budget = 96 * MiB
    run = run_limited(
        "from mlarray.stats import annotate\n"
        "with mlarray.MLArray.open(path, 'r') as image:\n"
        "    result = annotate(image).model_dump(mode='json')",
        budget=budget,
        setup=SETUP,
        variables={"path": str(path)},
    )
    assert run.peak_over_baseline < budget
    stats = run.result["stats"]
    assert run.result["is_seg"] is False
    assert (stats["min"], stats["max"]) == (-383 * 0.5, 511 * 0.25 + 6)
    assert stats["percentile_min"] <= stats["percentile_median"] <= stats["percentile_max"]
