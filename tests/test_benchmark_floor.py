"""The decode floor of the benchmark (``benchmarks/floor.py``): what it decodes and what it reports.

Timings are never asserted on; these tests check that the floor decodes exactly the
blocks a patch overlaps (and nothing else), that its overlap count is right, and that
the report shows it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import floor, issue15, report
from mlarray import MLArray
from mlarray.storage import fastread

needs_clib = pytest.mark.skipif(not fastread.available(), reason=f"no C-Blosc2: {fastread.STATUS}")


class _Layout:
    def __init__(self, shape: tuple[int, ...], chunks: tuple[int, ...], blocks: tuple[int, ...]) -> None:
        self.shape, self.chunks, self.blocks = shape, chunks, blocks


def _brute_overlap(lay: _Layout, key: tuple[slice, ...]) -> float:
    """Voxels of the touched blocks per selected voxel, by labelling every voxel with its block."""
    grids = []
    for n, c, b in zip(lay.shape, lay.chunks, lay.blocks, strict=True):
        index = np.arange(n)
        grids.append((index // c) * (-(-c // b)) + (index % c) // b)  # block number along the axis
    labels = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1)[key].reshape(-1, len(lay.shape))
    touched = {tuple(row) for row in labels.tolist()}
    selected = math.prod(s.stop - s.start for s in key)
    return len(touched) * math.prod(lay.blocks) / selected


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_overlap_counts_the_blocks_of_every_touched_chunk(data: Any) -> None:
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.integers(1, 12)) for _ in range(ndim))
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    blocks = tuple(data.draw(st.integers(1, c)) for c in chunks)
    key = []
    for n in shape:
        start = data.draw(st.integers(0, n - 1))
        key.append(slice(start, data.draw(st.integers(start + 1, n))))
    lay = _Layout(shape, chunks, blocks)
    assert floor.overlap(lay, tuple(key)) == pytest.approx(_brute_overlap(lay, tuple(key)))


@needs_clib
def test_the_floor_decodes_exactly_the_blocks_a_patch_overlaps(tmp_path: Path) -> None:
    a = np.random.default_rng(3).integers(0, 3000, size=(16, 16, 16)).astype("<i2")
    path = str(tmp_path / "one-chunk.mla")
    MLArray(a, chunk_size=(16, 16, 16), block_size=(8, 8, 8)).save(path)
    keys = [(slice(1, 7), slice(9, 12), slice(0, 16)), (slice(8, 16), slice(0, 8), slice(8, 9))]
    with floor.DecodeFloor(path, keys) as measured:
        buffer = measured._worker._buffer
        assert measured.overlaps == [pytest.approx(2 * 512 / (6 * 3 * 16)), pytest.approx(512 / (8 * 8 * 1))]
        for i, expected in enumerate([{(0, 1, 0), (0, 1, 1)}, {(1, 0, 1)}]):
            buffer.fill(0xA5)
            measured.decode(i)
            blocks = buffer[: a.nbytes].view("<i2").reshape(8, 8, 8, 8)  # blocks in C order, each C order
            for n, (z, y, x) in enumerate(itertools.product(range(2), repeat=3)):
                source = a[8 * z : 8 * z + 8, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8]
                if (z, y, x) in expected:
                    assert np.array_equal(blocks[n], source), f"block {(z, y, x)} not decoded for key {i}"
                else:
                    assert (blocks[n].view(np.uint8) == 0xA5).all(), f"block {(z, y, x)} decoded for key {i}"


@needs_clib
def test_paired_times_every_reader_on_every_key(tmp_path: Path) -> None:
    a = np.arange(24 * 24 * 24, dtype="<f4").reshape(24, 24, 24)
    path = str(tmp_path / "a.mla")
    MLArray(a, chunk_size=(12, 12, 12), block_size=(6, 6, 6)).save(path)
    keys = [(slice(s, s + 10),) * 3 for s in (0, 3, 14)]
    seen: list[Any] = []
    with MLArray.open(path) as image:
        result = floor.paired(path, keys, {"read": lambda key: seen.append(key) or image[key]})
        layout = image._chunks.layout  # type: ignore[union-attr]
    assert seen == keys + keys  # one untimed pass, one timed
    assert set(result) == {"floor_ms", "overlap", "read_ms", "read_over_floor"}
    assert result["floor_ms"] > 0 and result["read_ms"] > 0 and result["read_over_floor"] > 0
    assert result["overlap"] == pytest.approx(statistics.median(floor.overlap(layout, key) for key in keys))


def test_the_report_shows_the_floor_when_measured() -> None:
    entry: dict[str, Any] = {
        "formats": {
            "mlarray": {"floor128_ms": 0.8, "overlap128": 1.76, "read_over_floor128": 1.3, "patch128_ms": 1.05},
            "npy-mmap": {"patch128_ms": 0.4},
        }
    }
    (line, blank) = report.floor_lines(entry)
    assert "128³ 0.800 ms" in line and "1.76x" in line and "1.30x" in line and "2.00x npy-mmap" in line
    assert blank == ""
    assert report.floor_lines({"formats": {"mlarray": {"patch128_ms": 1.0}}}) == []
    results = {
        "config": {"repetitions": 5, "formats": ["mlarray", "npy-mmap"]},
        "datasets": {"ct": {"shape": [1, 1, 1], **entry}},
    }
    (npy_target,) = [t for t in issue15.targets(results) if t["id"] == "i15-ct-patch128-npy"]
    assert npy_target["measured"] == pytest.approx(1.05 / 0.4)
    assert npy_target["detail"] == "decoding alone (the decode floor) 2.00x NumPy memmap"


def test_the_targets_show_the_floor_against_the_earlier_read() -> None:
    """A patch target notes what decoding alone costs against 0.0.54's read: the lowest ratio a read could reach."""
    ours = {"floor128_ms": 0.8, "read_over_floor128": 1.3, "patch128_ms": 1.05}
    results = {
        "config": {"repetitions": 5, "formats": ["mlarray", "mlarray-0.0.54"]},
        "datasets": {"ct": {"shape": [1, 1, 1], "formats": {"mlarray": ours, "mlarray-0.0.54": {"patch128_ms": 1.0}}}},
    }
    (target,) = [t for t in issue15.targets(results) if t["id"] == "i15-ct-patch128"]
    assert target["detail"] == "mlarray's read 1.30x its decode floor; the decode floor alone 0.80x 0.0.54's read"
