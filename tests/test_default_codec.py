"""The default compression of 1-byte data: label maps and masks without a filter, other bytes bit-shuffled.

``mlarray.storage.cparams.default_for`` compresses a sample of the data both ways and keeps
the label codec (LZ4HC level 8, no filter) where it is at least as small; ``is_seg``
chooses it outright. Every test saves real files and compares their sizes and contents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest

from mlarray import Meta, MLArray
from mlarray.layout import default_compression, label_compression
from mlarray.storage.cparams import LABEL_MARGIN, default_for

LABELS = ("lz4hc", 8, [])
BYTES = ("lz4hc", 5, ["bitshuffle"])


def label_map(shape: tuple[int, ...] = (48, 64, 56), seed: int = 0) -> np.ndarray[Any, Any]:
    """A few labelled boxes on a background of zeros, as a segmentation looks."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.uint8)
    for label in range(1, 9):
        lo = [int(rng.integers(0, n - 8)) for n in shape]
        hi = [int(rng.integers(x + 4, min(n, x + 30))) for x, n in zip(lo, shape, strict=True)]
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = label
    return out


def intensity(shape: tuple[int, ...] = (48, 64, 56), seed: int = 1) -> np.ndarray[Any, Any]:
    """An 8-bit image: a smooth field with noise everywhere."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    smooth = 100 + 60 * np.sin(sum(grid))
    return np.clip(smooth + rng.normal(0, 6, shape), 0, 255).astype(np.uint8)


def saved(tmp_path: Path, name: str, data: np.ndarray[Any, Any], **kwargs: Any) -> tuple[Any, int]:
    """Save ``data``, check it reads back, and return the recorded layout and the file's size."""
    path = tmp_path / f"{name}.mla"
    MLArray(data, **kwargs).save(path)
    with MLArray.open(path) as image:
        assert image.to_numpy().tobytes() == data.tobytes()
        layout = image.meta.layout
    return layout, path.stat().st_size


def test_label_maps_get_the_label_codec_and_no_larger_files(tmp_path: Path) -> None:
    """A label map and a mask: LZ4HC 8 without a filter, in files about as small as bit-shuffled ones.

    The label map's file is smaller; a small binary mask's may be larger by up to the
    margin the choice allows (the bit shuffle packs its 0/1 voxels eight to a byte).
    """
    z, y, x = np.ogrid[:40, :50, :60]
    mask = (((z - 20) ** 2 + (y - 25) ** 2 + (x - 30) ** 2) < 15**2).astype(np.uint8)
    for name, data in (("labels", label_map()), ("mask", mask)):
        layout, size = saved(tmp_path, name, data)
        assert (layout.codec, layout.clevel, layout.filters) == LABELS
        _, shuffled = saved(
            tmp_path, f"{name}-bits", data, cparams={"codec": "lz4hc", "clevel": 5, "filters": ["bitshuffle"]}
        )
        assert size <= (shuffled if name == "labels" else LABEL_MARGIN * shuffled), (name, size, shuffled)


def test_intensity_bytes_keep_the_bit_shuffle(tmp_path: Path) -> None:
    """An 8-bit image keeps the bit-shuffle default, which makes its file smaller than the label codec would."""
    data = intensity()
    layout, size = saved(tmp_path, "image", data)
    assert (layout.codec, layout.clevel, layout.filters) == BYTES
    _, plain = saved(tmp_path, "image-plain", data, cparams={"codec": "lz4hc", "clevel": 8, "filters": []})
    assert size < plain


def test_is_seg_chooses_the_label_codec(tmp_path: Path) -> None:
    """``is_seg=True`` takes the label codec without looking at the data; other item sizes are unchanged."""
    layout, _ = saved(tmp_path, "seg", intensity(), meta=Meta(is_seg=True))
    assert (layout.codec, layout.clevel, layout.filters) == LABELS
    wide, _ = saved(tmp_path, "wide", label_map().astype(np.int16), meta=Meta(is_seg=True))
    assert (wide.codec, wide.clevel, wide.filters) == ("lz4hc", 5, ["shuffle"])
    assert default_compression(1)[2] == ["bitshuffle"] and label_compression() == ("lz4hc", 8, [])


@pytest.mark.parametrize("shape", [(5,), (70000,), (3, 40000), (40, 1), (1, 1, 1), (2, 3, 4, 5, 6)])
def test_any_shape_is_sampled(shape: tuple[int, ...]) -> None:
    """Every shape gets a choice, the same for the array and for a Blosc2 NDArray of it."""
    rng = np.random.default_rng(len(shape))
    data = (rng.random(shape) < 0.05).astype(np.uint8)
    choice = default_for(data)
    assert choice in (LABELS, BYTES)
    assert default_for(blosc2.asarray(data)) == choice
    assert default_for(data) == choice  # a function of the data alone


def test_a_given_codec_is_kept(tmp_path: Path) -> None:
    """``cparams`` given (in part) are completed from the usual default, not from the sample."""
    layout, _ = saved(tmp_path, "given", label_map(), cparams={"clevel": 9})
    assert (layout.codec, layout.clevel, layout.filters) == ("lz4hc", 9, ["bitshuffle"])


def test_a_leading_axis_of_one_is_sampled_like_the_rest(tmp_path: Path) -> None:
    """``labels[None]`` (NumPy gives its length-1 axis a stride of 0) is sampled, not taken for a broadcast."""
    labels = label_map()
    channel_first = labels[None]
    assert 0 in channel_first.strides
    assert default_for(channel_first) == default_for(labels.reshape((1, *labels.shape))) == LABELS
    assert default_for(np.broadcast_to(labels, (2, *labels.shape))) == BYTES  # a real broadcast: a stand-in
