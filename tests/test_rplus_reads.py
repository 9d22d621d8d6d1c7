"""Reads after writes in 'r+' mode: the chunk checks follow the rewritten frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlarray import MLArray


def test_reads_of_other_chunks_after_an_r_plus_write(tmp_path: Path) -> None:
    path = tmp_path / "a.mla"
    data = np.random.default_rng(0).integers(0, 1000, (192, 192, 160)).astype(np.int16)
    MLArray(data).save(path)  # default layout: several chunks
    expected = data.copy()
    with MLArray.open(path, "r+") as image:
        assert image.chunks is not None and image.chunks != data.shape
        for corner in ((0, 0, 0), (188, 188, 156), (0, 188, 0)):
            key = tuple(slice(c, c + 4) for c in corner)
            image[key] = 7
            expected[key] = 7
            np.testing.assert_array_equal(image[...], expected)  # every chunk read after each write
    np.testing.assert_array_equal(MLArray.open(path).to_numpy(), expected)
