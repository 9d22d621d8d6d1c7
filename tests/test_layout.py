"""Properties of the chunk/block optimizer (:mod:`mlarray.layout`): correctness only, never timing."""

from __future__ import annotations

import math
from pathlib import Path

import blosc2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.layout import (
    BLOCK_BYTES,
    CHUNK_BYTES,
    DEFAULT_PATCH,
    MIN_BLOCK_BYTES,
    MIN_BLOCK_EDGE,
    PAD_FRACTION,
    REFERENCE_CACHES,
    WHOLE_AXIS_LIMIT,
    Caches,
    block_bytes,
    choose_layout,
    chunk_bytes,
    default_compression,
    detect_caches,
    layout_caches,
    padding,
    patch_layout,
    resolve_patch,
)
from mlarray.storage.cparams import default_for, make_cparams, splits_streams

ITEMSIZES = [1, 2, 4, 8, 16]
SMALL = Caches(l1d=16 * 1024, l2=128 * 1024, l3=2 * 1024 * 1024)
BIG = Caches(l1d=48 * 1024, l2=2 * 1024 * 1024, l3=64 * 1024 * 1024)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[tuple[int, ...], int, list[int], tuple[int, ...], Caches]:
    """A shape of 1-6 axes, an itemsize, the spatial axes, a patch and caches."""
    ndim = draw(st.integers(1, 6))
    shape = tuple(draw(st.lists(st.integers(1, 600), min_size=ndim, max_size=ndim)))
    spatial = sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1, max_size=min(ndim, 3))))
    patch = tuple(draw(st.lists(st.integers(1, 256), min_size=len(spatial), max_size=len(spatial))))
    caches = draw(st.sampled_from([REFERENCE_CACHES, SMALL, BIG]))
    return shape, draw(st.sampled_from(ITEMSIZES)), spatial, patch, caches


@given(layouts())
def test_blocks_tile_chunks_and_sizes_stay_under_the_caps(case: tuple) -> None:
    shape, itemsize, spatial, patch, caches = case
    chunks, blocks = patch_layout(shape, itemsize, spatial, patch, caches)
    assert len(chunks) == len(blocks) == len(shape)
    for n, c, b in zip(shape, chunks, blocks, strict=True):
        assert 1 <= b <= c
        assert c % b == 0, "a chunk edge is a whole number of blocks"
        assert c <= -(-n // b) * b, "a chunk never extends a whole block past the array"
    assert math.prod(blocks) * itemsize <= BLOCK_BYTES
    assert math.prod(chunks) * itemsize <= CHUNK_BYTES


@given(layouts())
def test_edge_padding_is_bounded(case: tuple) -> None:
    shape, itemsize, spatial, patch, caches = case
    chunks, blocks = patch_layout(shape, itemsize, spatial, patch, caches)
    for axis in spatial:
        n, c, b = shape[axis], chunks[axis], blocks[axis]
        assert padding(n, b) <= n // PAD_FRACTION
        assert padding(n, c) <= max(n // PAD_FRACTION, padding(n, b))


@given(layouts())
def test_blocks_never_exceed_the_patch(case: tuple) -> None:
    shape, itemsize, spatial, patch, caches = case
    _, blocks = patch_layout(shape, itemsize, spatial, patch, caches)
    for axis, p in zip(spatial, patch, strict=True):
        assert blocks[axis] <= max(p, 1)


@given(layouts())
def test_the_choice_is_deterministic(case: tuple) -> None:
    shape, itemsize, spatial, patch, caches = case
    first = choose_layout(shape, itemsize, spatial, patch, caches=caches)
    again = choose_layout(list(shape), itemsize, list(spatial), list(patch), caches=caches)
    assert first == again
    assert first.strategy == "patch" and first.patch_size == patch


@given(layouts())
def test_non_spatial_axes_are_whole_or_single(case: tuple) -> None:
    shape, itemsize, spatial, patch, caches = case
    chunks, blocks = patch_layout(shape, itemsize, spatial, patch, caches)
    for axis, n in enumerate(shape):
        if axis not in spatial:
            assert blocks[axis] == chunks[axis]
            assert blocks[axis] in (1, n)
            if n > WHOLE_AXIS_LIMIT:
                assert blocks[axis] == 1


@pytest.mark.parametrize("itemsize", ITEMSIZES)
def test_a_patch_over_all_channels_touches_each_block_once(itemsize: int) -> None:
    shape = (4, 160, 192, 160)
    chunks, blocks = patch_layout(shape, itemsize, [1, 2, 3], (128, 128, 128), REFERENCE_CACHES)
    assert chunks[0] == blocks[0] == 4


def test_a_long_non_spatial_axis_is_cut_into_single_entries() -> None:
    chunks, blocks = patch_layout((100, 64, 64, 64), 4, [1, 2, 3], (64, 64, 64), REFERENCE_CACHES)
    assert chunks[0] == blocks[0] == 1


def test_many_channels_of_a_wide_type_still_fit_a_block() -> None:
    shape = (16, 16, 16, 300)
    chunks, blocks = patch_layout(shape, 16, [3], (192,), REFERENCE_CACHES)
    assert math.prod(blocks) * 16 <= BLOCK_BYTES
    assert math.prod(chunks) * 16 <= CHUNK_BYTES


def test_blocks_keep_a_minimum_spatial_thickness_when_voxels_are_wide() -> None:
    """4 float32 channels per voxel: the block grows past the cache size to 16 voxels per axis."""
    _, blocks = patch_layout((4, 160, 192, 160), 4, [1, 2, 3], (192, 192, 192), REFERENCE_CACHES)
    assert blocks == (4, MIN_BLOCK_EDGE, MIN_BLOCK_EDGE, MIN_BLOCK_EDGE)
    _, small = patch_layout((4, 160, 192, 160), 4, [1, 2, 3], (8, 8, 8), REFERENCE_CACHES)
    assert small == (4, 8, 8, 8), "the patch still bounds the block"


def test_reference_layout_of_the_benchmark_ct() -> None:
    """The documented CT layout: 32 KiB blocks, chunks of whole blocks without padding."""
    chunks, blocks = patch_layout((512, 512, 320), 2, [0, 1, 2], (192, 192, 192), REFERENCE_CACHES)
    assert math.prod(blocks) * 2 == 32 * 1024
    assert all(n % c == 0 for n, c in zip((512, 512, 320), chunks, strict=True))
    assert blocks[-1] >= blocks[0], "the innermost axis gets the longer edge"


def test_sizes_follow_the_cache_within_bounds() -> None:
    assert block_bytes(REFERENCE_CACHES) == 32 * 1024
    assert chunk_bytes(REFERENCE_CACHES) == 2 * 1024 * 1024
    assert block_bytes(SMALL) == MIN_BLOCK_BYTES
    assert block_bytes(BIG) == BLOCK_BYTES
    assert chunk_bytes(BIG) == CHUNK_BYTES
    assert chunk_bytes(Caches(1, 1, 1)) == 1024 * 1024


def test_smaller_caches_give_smaller_blocks() -> None:
    shape = (512, 512, 320)
    _, small = patch_layout(shape, 2, [0, 1, 2], (192,) * 3, SMALL)
    _, ref = patch_layout(shape, 2, [0, 1, 2], (192,) * 3, REFERENCE_CACHES)
    assert math.prod(small) < math.prod(ref)


def _fake_sysfs(root: Path, entries: list[tuple[str, str, str]]) -> Path:
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    return root


def test_cache_sizes_are_read_from_sysfs(tmp_path: Path) -> None:
    root = _fake_sysfs(
        tmp_path,
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K"), ("3", "Unified", "96M")],
    )
    assert detect_caches(str(root)) == Caches(48 * 1024, 2048 * 1024, 96 * 1024 * 1024)


def test_unreadable_cache_levels_fall_back_to_the_reference(tmp_path: Path) -> None:
    root = _fake_sysfs(tmp_path, [("2", "Unified", "1M"), ("3", "Unified", "garbage")])
    assert detect_caches(str(root)) == Caches(REFERENCE_CACHES.l1d, 1024 * 1024, REFERENCE_CACHES.l3)
    assert detect_caches(str(tmp_path / "missing")) is None


def test_the_layout_never_assumes_caches_bigger_than_the_reference() -> None:
    caches = layout_caches()
    assert caches.l1d <= REFERENCE_CACHES.l1d
    assert caches.l2 <= REFERENCE_CACHES.l2
    assert caches.l3 <= REFERENCE_CACHES.l3


def test_default_compression_per_dtype() -> None:
    assert default_compression(1)[2] == ["bitshuffle"]
    for itemsize in (2, 4, 8, 16):
        assert default_compression(itemsize)[2] == ["shuffle"]
    codec, clevel, _ = default_compression(2)
    assert codec in {"blosclz", "lz4", "lz4hc", "zlib", "zstd"} and 0 <= clevel <= 9


def test_resolve_patch_forms() -> None:
    assert resolve_patch("default", 3) == (DEFAULT_PATCH,) * 3
    assert resolve_patch(64, 2) == (64, 64)
    assert resolve_patch([8, 16], 2) == (8, 16)
    assert resolve_patch(None, 3) is None
    for bad, n in (("big", 3), ([1, 2], 3), (0, 2)):
        with pytest.raises(ValueError):
            resolve_patch(bad, n)


def test_manual_and_blosc2_strategies() -> None:
    manual = choose_layout((10, 20), 2, [0, 1], chunk_size=(5, 20), block_size=(5, 10))
    assert (manual.strategy, manual.chunks, manual.blocks, manual.patch_size) == ("manual", (5, 20), (5, 10), None)
    assert choose_layout((10, 20), 2, [0, 1], patch_size=None).strategy == "blosc2"
    with pytest.raises(ValueError):
        choose_layout((10, 20), 2, [0, 1], chunk_size=(5, 5), block_size=(6, 5))
    with pytest.raises(ValueError):
        choose_layout((10, 20), 2, [0, 1], chunk_size=(5,))


@pytest.mark.parametrize(
    ("shape", "dtype", "labels"),
    [
        ((70, 90, 33), np.int16, None),
        ((3, 40, 50, 20), np.float32, ["channel", "spatial", "spatial", "spatial"]),
        ((1000,), np.uint8, None),
        ((2, 3, 5, 7, 11, 13), np.float64, None),
        ((20, 30), np.bool_, None),
        ((9, 17), np.complex64, None),
    ],
)
def test_files_written_with_the_chosen_layout_read_back_exactly(
    tmp_path: Path, shape: tuple[int, ...], dtype: type, labels: list[str] | None
) -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(size=shape) * 50).astype(dtype)
    path = tmp_path / "layout.mla"
    MLArray(data, axis_labels=labels, patch_size=16).save(path)
    with MLArray.open(path) as image:
        layout = image.meta.layout
        assert layout is not None and layout.strategy == "patch"
        spatial = [i for i in range(len(shape)) if labels is None or labels[i] == "spatial"]
        expected = choose_layout(shape, np.dtype(dtype).itemsize, spatial, 16)
        assert (tuple(layout.chunk_size), tuple(layout.block_size)) == (expected.chunks, expected.blocks)
        assert layout.filters == default_for(data)[2]  # the dtype's default (1-byte data: for these data)
        np.testing.assert_array_equal(image[...], data)


@pytest.mark.parametrize(
    ("dtype", "codec", "filters", "split"),
    [
        (np.int16, "lz4hc", ["shuffle"], True),
        (np.float32, "lz4hc", ["shuffle"], True),
        (np.float64, "lz4", ["shuffle"], True),
        (np.int16, "lz4hc", ["bitshuffle"], False),
        (np.float32, "zstd", ["shuffle"], False),
    ],
)
def test_byte_shuffled_lz4_chunks_keep_each_byte_in_a_stream_of_its_own(
    tmp_path: Path, dtype: type, codec: str, filters: list[str], split: bool
) -> None:
    """Spec 4.4.4 flag 0x10 clear: each byte of the items compressed as a stream of its own (and read back exactly)."""
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(48, 40, 36)) * 200).astype(dtype)
    path = tmp_path / "split.mla"
    itemsize = np.dtype(dtype).itemsize
    assert splits_streams(codec, filters, itemsize) is split
    MLArray(data, patch_size=16, cparams=make_cparams(codec, 5, filters, itemsize)).save(path)
    nd = blosc2.open(str(path), mode="r")
    flags = {nd.schunk.get_chunk(i)[2] & 0x10 for i in range(nd.schunk.nchunks)}
    if split:
        assert flags == {0}
    elif codec == "lz4hc":  # C-Blosc2 left alone does not split LZ4HC streams
        assert flags == {0x10}
    with MLArray.open(path) as image:
        np.testing.assert_array_equal(image[...], data)
        np.testing.assert_array_equal(image[3:40, 5:33, 7:30], data[3:40, 5:33, 7:30])
    assert not splits_streams("lz4hc", ["shuffle"], 1)  # one byte per item: nothing to split
