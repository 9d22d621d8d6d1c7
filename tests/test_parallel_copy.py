"""Blosc2 NDArray sources, in-memory compression and big-endian arrays take the parallel writers.

Compared with python-blosc2's own writers (``NDArray.copy``, ``blosc2.asarray``), with
one compression thread so that block order is repeatable: the bytes of the frames, the
recorded digests, atomic replacement of the file an image was opened from, and a save
that fails half-way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlarray.api
from mlarray import MLArray, WriteFailedError
from mlarray.storage import chunkcompress, compress, data_digest, read_header
from mlarray.storage.cparams import make_cparams
from mlarray.storage.io import TMP_PREFIX, compress_array, write_data
from mlarray.storage.recode import copies_verbatim
from mlarray.validate import validate_file

DTYPES = ["|b1", "|u1", "<i2", "<u2", "<i4", "<f4", "<f8", "<c8"]
CODECS = [blosc2.Codec.LZ4, blosc2.Codec.ZSTD, blosc2.Codec.BLOSCLZ, blosc2.Codec.LZ4HC]
FILTERS = [
    [],
    [blosc2.Filter.SHUFFLE],
    [blosc2.Filter.BITSHUFFLE],
    [blosc2.Filter.NOFILTER] * 5 + [blosc2.Filter.SHUFFLE],
]
SPLITS = [blosc2.SplitMode.AUTO_SPLIT, blosc2.SplitMode.NEVER_SPLIT, blosc2.SplitMode.ALWAYS_SPLIT]


@pytest.fixture(autouse=True)
def _one_blosc2_thread(one_thread: None) -> Iterator[None]:
    yield


@st.composite
def cparams_for(draw: st.DrawFn, itemsize: int) -> Any:
    """Compression parameters, including those ``NDArray.copy`` does not compare (split mode)."""
    filters = draw(st.sampled_from(FILTERS))
    return blosc2.CParams(
        codec=draw(st.sampled_from(CODECS)),
        clevel=draw(st.integers(1, 6)),
        filters=filters or [blosc2.Filter.NOFILTER],
        filters_meta=[0] * max(1, len(filters)),
        splitmode=draw(st.sampled_from(SPLITS)),
        typesize=itemsize,
        nthreads=1,
    )


@st.composite
def layout_for(draw: st.DrawFn, shape: list[int]) -> tuple[list[int], list[int]]:
    chunks = [draw(st.integers(1, s)) for s in shape]
    return chunks, [draw(st.integers(1, c)) for c in chunks]


@st.composite
def copies(draw: st.DrawFn) -> dict[str, Any]:
    """A source NDArray's data, layout and codec, and the layout and codec it is saved with."""
    ndim = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 20)) for _ in range(ndim)]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.integers(0, 4 if draw(st.booleans()) else 256, size=[*shape, dtype.itemsize], dtype=np.uint8)
    data = raw.view(dtype).reshape(shape) if dtype.kind != "b" else raw[..., 0].astype(bool)
    if dtype.kind in "fc":
        data[~np.isfinite(data)] = 0
    if draw(st.booleans()):  # whole-zero chunks: special chunks in the source
        data[tuple(slice(0, max(1, s // 2)) for s in shape)] = 0
    source_layout = draw(layout_for(shape))
    source_cparams = draw(cparams_for(dtype.itemsize))
    target = draw(st.sampled_from(["same", "codec", "layout", "both"]))
    layout = draw(layout_for(shape)) if target in ("layout", "both") else source_layout
    if target in ("codec", "both"):
        cparams = draw(cparams_for(dtype.itemsize))
    else:  # the same codec, maybe another split mode: python-blosc2 copies the chunks unchanged
        cparams = blosc2.CParams(**{**source_cparams.__dict__, "splitmode": draw(st.sampled_from(SPLITS))})
    return {
        "data": data,
        "source": (source_layout, source_cparams),
        "target": (layout, cparams),
        "in_file": draw(st.booleans()),
    }


def _source(case: dict[str, Any], path: Path) -> Any:
    (chunks, blocks), cparams = case["source"]
    kwargs: dict[str, Any] = {"chunks": tuple(chunks), "blocks": tuple(blocks), "cparams": cparams}
    if not case["in_file"]:
        return blosc2.asarray(case["data"], **kwargs)
    nd = blosc2.asarray(case["data"], urlpath=str(path), mode="w", **kwargs)
    nd.schunk.vlmeta.set_vlmeta("mlarray", b'{"a header": "copied with the data"}', typesize=1)
    del nd
    return blosc2.open(str(path), mmap_mode="r")


def _raw_vlmeta(nd: Any) -> dict[str, bytes]:
    meta = nd.schunk.vlmeta
    return {name: meta.get_vlmeta(name) for name in meta.get_names()}


def _comparable(nd: Any, nthreads: int) -> bool:
    """Whether a pool of ``nthreads`` writes the bytes one thread writes (tests/test_parallel_write.py).

    With fewer chunks than threads, a chunk is compressed by several C-Blosc2 threads,
    which store its blocks in the order they finish; and one thread stores a chunk whose
    block does not shrink uncompressed, where the pool keeps a smaller, compressed chunk.
    """
    chunks = nd.schunk.nchunks
    raw = any(nd.schunk.get_chunk(i)[2] & compress.MEMCPYED for i in range(chunks))
    return not raw and (nthreads == 1 or chunks >= nthreads)


@settings(max_examples=150)
@given(case=copies(), nthreads=st.integers(1, 3))
def test_copies_of_an_ndarray_are_byte_identical_to_python_blosc2(
    tmp_path_factory: Any, case: dict[str, Any], nthreads: int
) -> None:
    tmp = tmp_path_factory.mktemp("copies")
    src = _source(case, tmp / "source.b2nd")
    (chunks, blocks), cparams = case["target"]
    serial = write_data(str(tmp / "serial.b2nd"), src, chunks=chunks, blocks=blocks, cparams=cparams, parallel=False)
    written = write_data(
        str(tmp / "parallel.b2nd"), src, chunks=chunks, blocks=blocks, cparams=cparams, nthreads=nthreads
    )
    if copies_verbatim(src, chunks, blocks, cparams):
        assert written.digest is None  # python-blosc2 copied the chunks; nothing was compressed
        for i in range(src.schunk.nchunks):
            theirs, mine = src.schunk.get_chunk(i), serial.nd.schunk.get_chunk(i)
            if theirs[31] & compress.SPECIAL_MASK:  # a special chunk's header is rebuilt, its kind kept
                assert theirs[31] & compress.SPECIAL_MASK == mine[31] & compress.SPECIAL_MASK
            else:
                assert theirs == mine
    else:
        assert written.digest == data_digest(tmp / "parallel.b2nd")
    np.testing.assert_array_equal(written.nd[...], case["data"])
    assert _raw_vlmeta(written.nd) == _raw_vlmeta(serial.nd)
    comparable = _comparable(serial.nd, nthreads)
    del serial, written
    if comparable:
        assert (tmp / "parallel.b2nd").read_bytes() == (tmp / "serial.b2nd").read_bytes()


def test_copies_verbatim_follows_what_python_blosc2_compares() -> None:
    data = np.arange(4096, dtype=np.int32).reshape(64, 64)
    shuffle = make_cparams("lz4", 5, ["shuffle"], 4)
    src = blosc2.asarray(data, chunks=(32, 32), blocks=(16, 16), cparams=shuffle)
    assert copies_verbatim(src, (32, 32), (16, 16), shuffle)
    other_split = blosc2.CParams(**{**shuffle.__dict__, "splitmode": blosc2.SplitMode.NEVER_SPLIT, "nthreads": 3})
    assert copies_verbatim(src, (32, 32), (16, 16), other_split)  # neither is compared
    assert not copies_verbatim(src, (32, 32), (8, 16), shuffle)
    assert not copies_verbatim(src, (16, 32), (16, 16), shuffle)
    assert not copies_verbatim(src, (32, 32), (16, 16), make_cparams("lz4", 6, ["shuffle"], 4))
    assert not copies_verbatim(src, (32, 32), (16, 16), make_cparams("zstd", 5, ["shuffle"], 4))
    last_slot = blosc2.CParams(
        **{
            **shuffle.__dict__,
            "filters": [blosc2.Filter.NOFILTER] * 5 + [blosc2.Filter.SHUFFLE],
            "filters_meta": [0] * 6,
        }
    )
    assert not copies_verbatim(src, (32, 32), (16, 16), last_slot)  # filters are compared slot by slot


@settings(max_examples=60)
@given(
    dtype=st.sampled_from([">i2", ">u2", ">i4", ">f4", ">f8", ">c8", ">c16", ">i8"]),
    shape=st.lists(st.integers(1, 17), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    nthreads=st.integers(1, 3),
)
def test_big_endian_arrays_are_written_as_python_blosc2_writes_them(
    tmp_path_factory: Any, dtype: str, shape: list[int], seed: int, nthreads: int
) -> None:
    tmp = tmp_path_factory.mktemp("bigendian")
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 50, size=shape).astype(dtype)
    chunks = [max(1, s // 2) for s in shape]
    blocks = [max(1, c // 2) for c in chunks]
    cparams = make_cparams("zstd", 3, ["shuffle"], data.dtype.itemsize)
    serial = write_data(str(tmp / "s.b2nd"), data, chunks=chunks, blocks=blocks, cparams=cparams, parallel=False)
    written = write_data(str(tmp / "p.b2nd"), data, chunks=chunks, blocks=blocks, cparams=cparams, nthreads=nthreads)
    assert written.digest == data_digest(tmp / "p.b2nd")
    assert written.nd.dtype == data.dtype
    comparable = _comparable(serial.nd, nthreads)
    del serial, written
    if comparable:
        assert (tmp / "p.b2nd").read_bytes() == (tmp / "s.b2nd").read_bytes()


@pytest.mark.parametrize("dtype", ["|u1", "<i2", "<f4", "<c16", "|b1"])
def test_in_memory_compression_builds_the_array_blosc2_asarray_builds(dtype: str) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 9, size=(40, 33, 17)).astype(dtype)
    data[:16] = 0
    cparams = make_cparams("lz4hc", 4, ["shuffle"], data.dtype.itemsize)
    ref = blosc2.asarray(data, chunks=(16, 16, 16), blocks=(8, 8, 8), cparams=cparams, dparams={"nthreads": 1})
    for nthreads in (1, 3):
        nd = compress_array(
            data[:, ::-1],
            chunks=(16, 16, 16),
            blocks=(8, 8, 8),
            cparams=cparams,
            dparams={"nthreads": 1},
            nthreads=nthreads,
        )
        other = blosc2.asarray(
            np.ascontiguousarray(data[:, ::-1]), chunks=(16, 16, 16), blocks=(8, 8, 8), cparams=cparams
        )
        assert nd.schunk.to_cframe() == other.schunk.to_cframe()
        assert nd.schunk.dparams.nthreads == 1
        assert nd.schunk.urlpath is None
    nd = compress_array(data, chunks=(16, 16, 16), blocks=(8, 8, 8), cparams=cparams, dparams={"nthreads": 1})
    assert nd.schunk.to_cframe() == ref.schunk.to_cframe()
    chosen = compress_array(data, chunks=None, blocks=None, cparams=cparams)  # blosc2 chooses the layout
    np.testing.assert_array_equal(chosen[...], data)


# --------------------------------------------------------------------------- saves through MLArray


@pytest.fixture
def three_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool of three compressing threads while python-blosc2 uses one (repeatable block order)."""
    monkeypatch.setattr(compress, "default_threads", lambda: 3)


def _serially(action: Any) -> None:
    real = mlarray.api.write_data
    try:
        mlarray.api.write_data = lambda *a, **k: real(*a, **k, parallel=False)  # type: ignore[assignment]
        action()
    finally:
        mlarray.api.write_data = real  # type: ignore[assignment]


def _other_writer_file(path: Path, data: np.ndarray[Any, Any]) -> None:
    """An ``.mla`` file whose frame keeps its shuffle filter in the last slot (as python-blosc2's defaults do).

    Its header records the same codec, level and filters, so a save keeps that layout;
    python-blosc2 compares the filter slots, sees other parameters and recompresses.
    """
    MLArray(data, chunk_size=(16, 32, 32), block_size=(8, 16, 16), cparams=make_cparams("lz4", 5, ["shuffle"], 2)).save(
        path
    )
    nd = blosc2.open(str(path))
    cparams = blosc2.CParams(codec=blosc2.Codec.LZ4, clevel=5, typesize=2, nthreads=1)  # filters [0]*5 + [SHUFFLE]
    nd.copy(urlpath=str(path) + ".b2nd", mode="w", cparams=cparams)
    del nd
    Path(str(path) + ".b2nd").replace(path)


@pytest.mark.usefixtures("three_workers")
def test_saving_an_opened_file_recompressed_by_python_blosc2_is_byte_identical(tmp_path: Path) -> None:
    data = np.random.default_rng(5).integers(0, 30, size=(48, 64, 64), dtype=np.int16)
    source = tmp_path / "source.mla"
    _other_writer_file(source, data)
    with MLArray.open(source) as image:
        assert not copies_verbatim(image._nd, (16, 32, 32), (8, 16, 16), image._storage_plan(None).cparams)
        image.save(tmp_path / "parallel.mla")
        _serially(lambda: image.save(tmp_path / "serial.mla"))
    assert (tmp_path / "parallel.mla").read_bytes() == (tmp_path / "serial.mla").read_bytes()
    head = read_header(tmp_path / "parallel.mla")
    assert head.meta.integrity is not None and head.meta.integrity.digest == data_digest(tmp_path / "parallel.mla")
    assert validate_file(tmp_path / "parallel.mla", deep=True).valid


@pytest.mark.usefixtures("three_workers")
def test_saving_over_the_opened_file_replaces_it_atomically(tmp_path: Path) -> None:
    data = np.random.default_rng(6).integers(0, 30, size=(48, 64, 64), dtype=np.int16)
    path, twin = tmp_path / "image.mla", tmp_path / "twin.mla"
    _other_writer_file(path, data)
    twin.write_bytes(path.read_bytes())
    image = MLArray.open(path, "r+")
    image[0, 0, 0] = 7  # dirty: the header gets a fresh digest
    image.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.mla", "twin.mla"]
    np.testing.assert_array_equal(image[1:], data[1:])  # reopened on the new file
    image.close()
    with MLArray.open(twin, "r+") as other:
        other[0, 0, 0] = 7
        _serially(lambda: other.save(twin))
    assert path.read_bytes() == twin.read_bytes()
    assert validate_file(path, deep=True).valid
    with MLArray.open(path) as back:
        assert back[0, 0, 0] == 7


@pytest.mark.usefixtures("three_workers")
def test_a_failing_recompression_leaves_the_opened_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.random.default_rng(7).integers(0, 30, size=(48, 64, 64), dtype=np.int16)
    path = tmp_path / "image.mla"
    _other_writer_file(path, data)
    before = path.read_bytes()
    calls: list[int] = []
    real = blosc2.compress2

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("codec broke")
        return real(*args, **kwargs)

    real_own = chunkcompress.ChunkCompressor.__call__

    def failing_own(self: chunkcompress.ChunkCompressor, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)  # mlarray's own compressor takes these chunks where it is built
        if len(calls) == 4:
            raise RuntimeError("codec broke")
        return real_own(self, *args, **kwargs)

    monkeypatch.setattr(compress.blosc2, "compress2", failing)
    monkeypatch.setattr(chunkcompress.ChunkCompressor, "__call__", failing_own)
    with MLArray.open(path) as image, pytest.raises(WriteFailedError):
        image.save(path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))
    assert not [t for t in threading.enumerate() if t.name.startswith("mlarray-compress")]
    assert not blosc2.set_releasegil(False)  # the GIL flag was restored when the pool stopped


@pytest.mark.usefixtures("three_workers")
def test_compressed_images_save_as_numpy_images_do(tmp_path: Path) -> None:
    data = np.random.default_rng(8).integers(0, 20, size=(40, 50, 30)).astype(np.float32)
    layout = {"chunk_size": (16, 16, 16), "block_size": (8, 8, 8)}  # 24 chunks: one C-Blosc2 thread each
    MLArray(data, **layout).save(tmp_path / "numpy.mla")
    image = MLArray(data, compressed=True, **layout)
    ref = blosc2.asarray(data, chunks=image._nd.chunks, blocks=image._nd.blocks, cparams=image._nd.schunk.cparams)
    assert image._nd.schunk.to_cframe() == ref.schunk.to_cframe()
    image.save(tmp_path / "compressed.mla")
    assert (tmp_path / "compressed.mla").read_bytes() == (tmp_path / "numpy.mla").read_bytes()
    MLArray(data.astype(">f4"), **layout).save(tmp_path / "big.mla")
    assert (tmp_path / "big.mla").read_bytes() == (tmp_path / "numpy.mla").read_bytes()


@pytest.mark.parametrize("relayout", [False, True])
def test_saving_an_opened_file_checks_its_chunks_first(tmp_path: Path, relayout: bool) -> None:
    """A damaged block table in the opened file stops the save with CORRUPT_FRAME before any decoding.

    Whether the save copies the chunks as they are or decodes them for another layout, every
    chunk of the source is checked first (spec 4.4.6); the target is not created.
    """
    import struct

    from mlarray.errors import CorruptFrameError

    rng = np.random.default_rng(3)
    data = rng.integers(0, 40, size=(16, 16, 16), dtype=np.int16)
    source = tmp_path / "source.mla"
    MLArray(data, chunk_size=(8, 16, 16), block_size=(4, 8, 16)).save(source)
    with MLArray.open(source) as image:
        section = image._chunks
        assert section is not None
        number = next(n for n, e in enumerate(section.entries) if e >= 0 and not section.chunk_bytes(n)[2] & 0x02)
        at = section.layout.start + section.entries[number] + 32 + 4  # block 1's start in the table
    raw = bytearray(source.read_bytes())
    struct.pack_into("<i", raw, at, 10**6)  # far outside the chunk
    source.write_bytes(bytes(raw))
    target = tmp_path / "target.mla"
    with MLArray.open(source) as image:
        if relayout:
            # what the constructor records for a manual layout: the save then decodes and recompresses
            image._layout_args = {
                "patch_size": None,
                "chunk_size": (4, 16, 16),
                "block_size": (4, 4, 16),
                "cparams": None,
            }
        with pytest.raises(CorruptFrameError, match=f"chunk {number}"):
            image.save(target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
