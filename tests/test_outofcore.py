"""Streaming writes (mlarray.storage.stream) and the .mla -> .mla relayout built on them."""

from __future__ import annotations

import math
from pathlib import Path

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.convert import convert_file
from mlarray.convert._stream import save_slabs, template
from mlarray.errors import InvalidArgumentError
from mlarray.models import Meta
from mlarray.storage.stream import SlabWriter, chunk_regions, slab_regions
from mlarray.validate import validate_file


def _volume(shape: tuple[int, ...], dtype: str = "<i2") -> np.ndarray:
    return (np.arange(np.prod(shape)) % 1013).astype(dtype).reshape(shape)


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((40, 50, 60), {}),
        ((40, 50, 60), {"patch_size": 32, "codec": "zstd"}),
        ((70, 33, 21), {"codec": "lz4", "clevel": 3}),
        ((300, 130, 140), {"patch_size": "64,64,64"}),  # over blosc2's 16 MB fast path, edge chunks on every axis
        ((9, 5), {"patch_size": 4}),
    ],
)
def test_relayout_streams_the_same_file_as_a_relayout_in_memory(
    tmp_path: Path, one_thread: None, shape: tuple[int, ...], options: dict
) -> None:
    src, streamed, in_memory = tmp_path / "a.mla", tmp_path / "b.mla", tmp_path / "c.mla"
    MLArray(_volume(shape), spacing=[0.5] * len(shape), meta={"patient": "x"}).save(src)
    if isinstance(options.get("patch_size"), str):
        options = {**options, "patch_size": tuple(int(v) for v in options["patch_size"].split(","))}
    convert_file(src, streamed, **options)
    # what the in-memory relayout wrote before streaming: load, then save with the new layout
    from mlarray.convert.files import _layout_args

    loaded = MLArray.load(src)
    if options:
        with MLArray.open(src) as opened:
            kwargs = _layout_args(opened, options.get("patch_size"), options.get("codec"), options.get("clevel"))
        MLArray(loaded.to_numpy(), meta=loaded.meta, **kwargs).save(in_memory)
    else:
        loaded.save(in_memory)
    assert streamed.read_bytes() == in_memory.read_bytes()
    assert validate_file(streamed).valid
    assert np.array_equal(MLArray.load(streamed).to_numpy(), _volume(shape))


def test_slabs_tile_the_array_once_in_order() -> None:
    shape, chunks = (10, 7, 5), (3, 4, 5)
    for axis in range(3):
        regions = slab_regions(shape, chunks, 2, axis=axis, max_bytes=1)
        seen = np.zeros(shape, dtype=int)
        for region in regions:
            seen[region] += 1
            assert region[axis].start % chunks[axis] == 0
            assert region[axis].stop - region[axis].start <= chunks[axis]
        assert (seen == 1).all()
        starts = [r[axis].start for r in regions]
        assert starts == sorted(starts)
    # a budget of several chunk rows gives thicker slabs, still whole chunks
    thick = slab_regions(shape, chunks, 2, axis=0, max_bytes=2 * 3 * 7 * 5 * 2)
    assert [r[0] for r in thick] == [slice(0, 6), slice(6, 10)]
    numbers = [n for region in thick for n, _ in chunk_regions(shape, chunks, region)]
    assert sorted(numbers) == list(range(4 * 2 * 1))


@st.composite
def _grids(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], int, int]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)
    itemsize = draw(st.sampled_from([1, 2, 8]))
    budget = draw(st.integers(1, 2 * math.prod(shape) * itemsize))
    return shape, chunks, itemsize, budget


@settings(max_examples=300, deadline=None)
@given(_grids())
def test_slabs_along_axis_0_are_chunk_boxes_in_frame_order_within_the_budget(
    grid: tuple[tuple[int, ...], tuple[int, ...], int, int],
) -> None:
    shape, chunks, itemsize, budget = grid
    regions = slab_regions(shape, chunks, itemsize, axis=0, max_bytes=budget)
    seen = np.zeros(shape, dtype=int)
    numbers = []
    for region in regions:
        seen[region] += 1
        for r, c, n in zip(region, chunks, shape, strict=True):
            assert r.start % c == 0 and (r.stop % c == 0 or r.stop == n)
        inside = [n for n, _ in chunk_regions(shape, chunks, region)]
        assert inside == list(range(inside[0], inside[0] + len(inside)))  # consecutive in the frame
        numbers += inside
        size = math.prod(r.stop - r.start for r in region) * itemsize
        assert size <= budget or len(inside) == 1  # over the budget only when one chunk is
    assert (seen == 1).all()
    assert numbers == list(range(math.prod(-(-n // c) for n, c in zip(shape, chunks, strict=True))))


def test_a_chunk_row_over_the_budget_is_cut_along_the_next_axes() -> None:
    # one chunk row of 64 planes of 512 x 3072 int16 is 192 MiB; the slabs stay within 64 MiB
    shape, chunks = (256, 3072, 512), (64, 128, 512)
    regions = slab_regions(shape, chunks, 2, axis=0, max_bytes=64 << 20)
    assert max(math.prod(r.stop - r.start for r in region) * 2 for region in regions) <= 64 << 20
    assert regions[0] == (slice(0, 64), slice(0, 1024), slice(0, 512))
    assert len(regions) == 4 * 3


def test_relayout_with_slabs_smaller_than_a_chunk_row_writes_the_same_file(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlarray.storage.stream

    src, streamed, in_memory = tmp_path / "a.mla", tmp_path / "b.mla", tmp_path / "c.mla"
    volume = _volume((40, 90, 70))
    MLArray(volume, spacing=[0.5] * 3).save(src)
    kwargs = {"chunk_size": (8, 16, 16), "block_size": (8, 8, 8)}
    monkeypatch.setattr(mlarray.storage.stream, "SLAB_BYTES", 8 * 16 * 70 * 2)  # a chunk row is 8 x 90 x 70
    calls = []
    regions = mlarray.storage.stream.slab_regions

    def counting(*args: object, **options: object) -> list:
        calls.append(out := regions(*args, **options))  # type: ignore[arg-type]
        return out

    monkeypatch.setattr(mlarray.storage.stream, "slab_regions", counting)
    image = template(volume.shape, volume.dtype, Meta(), kwargs)
    with MLArray.open(src) as opened:
        save_slabs(streamed, image, lambda region: opened[region], fortran=False)
    assert calls and all(r[1] != slice(0, 90) for r in calls[0])  # cut along axis 1
    MLArray(volume, **kwargs).save(in_memory)
    a, b = blosc2.open(str(in_memory)), blosc2.open(str(streamed))
    assert a.schunk.nchunks == b.schunk.nchunks
    assert all(a.schunk.get_chunk(i) == b.schunk.get_chunk(i) for i in range(a.schunk.nchunks))
    assert validate_file(streamed).valid
    assert np.array_equal(MLArray.load(streamed).to_numpy(), volume)


def test_the_writer_refuses_unaligned_regions_repeats_and_gaps(tmp_path: Path) -> None:
    cparams = blosc2.CParams(typesize=2)
    writer = SlabWriter(str(tmp_path / "w.b2nd"), (8, 6), "<i2", chunks=(4, 6), blocks=(2, 6), cparams=cparams)
    with pytest.raises(InvalidArgumentError, match="not aligned"):
        writer.write((slice(2, 6), slice(0, 6)), np.zeros((4, 6), "<i2"))
    with pytest.raises(InvalidArgumentError, match="shape"):
        writer.write((slice(0, 4), slice(0, 6)), np.zeros((4, 5), "<i2"))
    writer.write((slice(0, 4), slice(0, 6)), np.ones((4, 6), "<i2"))
    with pytest.raises(InvalidArgumentError, match="already written"):
        writer.write((slice(0, 4), slice(0, 6)), np.ones((4, 6), "<i2"))
    with pytest.raises(InvalidArgumentError, match="never written"):
        writer.finish(Meta())


def test_slabs_along_another_axis_hold_the_same_chunks(tmp_path: Path, one_thread: None) -> None:
    """Fortran-ordered sources are read along their last axis: same chunks, another order in the frame."""
    data = _volume((50, 40, 30), "<f4")
    MLArray(data, chunk_size=(16, 16, 8), block_size=(8, 8, 8)).save(tmp_path / "memory.mla")
    image = template(data.shape, data.dtype, Meta(), {"chunk_size": (16, 16, 8), "block_size": (8, 8, 8)})
    save_slabs(tmp_path / "streamed.mla", image, lambda region: data[region], fortran=True, max_bytes=1)
    assert validate_file(tmp_path / "streamed.mla").valid
    a, b = blosc2.open(str(tmp_path / "memory.mla")), blosc2.open(str(tmp_path / "streamed.mla"))
    assert a.schunk.nchunks == b.schunk.nchunks > 1
    for i in range(a.schunk.nchunks):
        assert a.schunk.get_chunk(i) == b.schunk.get_chunk(i)
    assert np.array_equal(b[...], data)
    ha, hb = MLArray.open(tmp_path / "memory.mla").meta, MLArray.open(tmp_path / "streamed.mla").meta
    assert ha.model_dump(exclude={"integrity"}) == hb.model_dump(exclude={"integrity"})


@pytest.mark.parametrize("slab_bytes", [None, 1])
@pytest.mark.parametrize("dtype", ["<i2", ">f4"])
def test_migration_streams_the_file_an_in_memory_migration_writes(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch, slab_bytes: int | None, dtype: str
) -> None:
    """Slabs along axis 0: the same bytes however many slabs (here up to one per chunk row)."""
    import warnings

    from legacy_files import write_legacy

    import mlarray.storage.stream
    from mlarray.legacy.migrate import load_legacy, migrate_file

    if slab_bytes is not None:
        monkeypatch.setattr(mlarray.storage.stream, "SLAB_BYTES", slab_bytes)
    volume = _volume((300, 128, 128), dtype)
    header = {"spacing": (1.0, 0.5, 0.5), "meta": {"patient": "p"}, "blosc2": {"patch_size": [16, 16, 16]}}
    old = write_legacy(tmp_path / "old.mla", volume, header, chunks=(10, 128, 128))
    migrate_file(old, tmp_path / "streamed.mla", patch_size=(16, 16, 16))
    assert blosc2.open(str(tmp_path / "streamed.mla")).chunks[0] < 300  # several slabs along axis 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, _ = load_legacy(old)
    meta = image.meta.model_copy(deep=True)
    meta.layout = None
    MLArray(image.to_numpy(), meta=meta, patch_size=(16, 16, 16)).save(tmp_path / "memory.mla")
    assert (tmp_path / "streamed.mla").read_bytes() == (tmp_path / "memory.mla").read_bytes()
    assert validate_file(tmp_path / "streamed.mla").valid
    assert np.array_equal(MLArray.load(tmp_path / "streamed.mla").to_numpy(), volume)


@pytest.mark.parametrize("held_bytes", [None, 20_000])
@pytest.mark.parametrize("fortran", [False, True])
def test_a_streamed_save_of_many_chunks_is_the_file_a_save_writes(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch, held_bytes: int | None, fortran: bool
) -> None:
    """Frames of many chunks are filled in memory (then spilled to the file), slab by slab too."""
    from mlarray.storage import compress

    if held_bytes is not None:
        monkeypatch.setattr(compress, "HELD_BYTES", held_bytes)
    spills: list[int] = []
    real = compress.held_to_file

    def counted(nd: object, *args: object, **kwargs: object) -> object:
        spills.append(nd.schunk.nchunks)  # type: ignore[attr-defined]
        return real(nd, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compress, "held_to_file", counted)
    data = _volume((36, 40, 24))
    data[:10] = 0
    kwargs = {"chunk_size": (2, 4, 4), "block_size": (2, 2, 4)}  # 1080 chunks
    assert (
        math.prod(-(-n // c) for n, c in zip(data.shape, kwargs["chunk_size"], strict=True)) >= compress.HELD_MIN_CHUNKS
    )
    image = template(data.shape, data.dtype, Meta(), kwargs)
    save_slabs(tmp_path / "streamed.mla", image, lambda region: data[region], fortran=fortran, max_bytes=5000)
    assert len(spills) == 1  # the streamed frame was held in memory, then written
    MLArray(data, **kwargs).save(tmp_path / "memory.mla")
    assert len(spills) == 2
    a, b = blosc2.open(str(tmp_path / "memory.mla")), blosc2.open(str(tmp_path / "streamed.mla"))
    assert a.schunk.nchunks == b.schunk.nchunks
    assert all(a.schunk.get_chunk(i) == b.schunk.get_chunk(i) for i in range(a.schunk.nchunks))
    if not fortran:  # in frame order: the same file
        assert (tmp_path / "streamed.mla").read_bytes() == (tmp_path / "memory.mla").read_bytes()
    assert validate_file(tmp_path / "streamed.mla").valid
    assert np.array_equal(MLArray.load(tmp_path / "streamed.mla").to_numpy(), data)
