"""mlarray's own chunk compressor (``csrc/compress.c``) writes C-Blosc2's chunks.

Without the fast pass the chunks must be ``blosc2.compress2``'s byte for byte, on any
data, layout, codec, level and filter the compressor takes. With it (the default), a
chunk may differ only where a stream C-Blosc2 compressed is stored raw, and it always
decodes to the same bytes. Saves through :func:`mlarray.storage.compress.compress_chunks`
use it and write the files they wrote before.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlarray.storage.compress as compress_module
from mlarray import MLArray
from mlarray.storage import blockcopy, chunkcompress, libblosc2
from mlarray.storage.compress import chunk_cparams

pytestmark = pytest.mark.skipif(blockcopy.HELPER is None, reason="checked in test_fastread: the helper must be built")

KINDS = ["noise", "smooth", "runs", "zeros", "mixed", "noisy_low_bytes"]


def make_data(kind: str, nitems: int, dtype: np.dtype[Any], seed: int) -> np.ndarray[Any, Any]:
    """``nitems`` items of ``dtype`` of one kind of content."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, nitems * dtype.itemsize, dtype=np.uint8)
    if kind == "noise":
        return raw.view(dtype)
    if kind == "smooth":
        return (np.arange(nitems) // 7 % 100).astype(dtype)
    if kind == "runs":
        return np.repeat(rng.integers(0, 4, nitems // 64 + 1), 64)[:nitems].astype(dtype)
    if kind == "zeros":
        return np.zeros(nitems, dtype)
    if kind == "mixed":  # noise in some blocks' worth of items, constant elsewhere
        out = np.full(nitems, 3, dtype)
        cut = nitems // 3
        out[:cut] = raw.view(dtype)[:cut]
        return out
    # low bytes noise, high bytes small: a CT-like int
    values = rng.integers(-1024, 1024, nitems)
    return values.astype(dtype) if dtype.kind in "iu" else (values / 7).astype(dtype)


def streams_of(chunk: bytes, nblocks: int, nstreams: int) -> list[bytes]:
    """Every stream (csize field and bytes) of a compressed chunk, block by block (spec 4.4.6)."""
    out = []
    for b in range(nblocks):
        pos = int.from_bytes(chunk[32 + 4 * b : 36 + 4 * b], "little")
        for _ in range(nstreams):
            csize = int.from_bytes(chunk[pos : pos + 4], "little", signed=True)
            length = 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
            out.append(chunk[pos : pos + length])
            pos += length
    return out


params_strategy = st.fixed_dictionaries(
    {
        "itemsize": st.sampled_from([1, 2, 4, 8]),
        "block_items": st.sampled_from([64, 256, 1000, 4096]),
        "nblocks": st.integers(1, 6),
        "codec": st.sampled_from([blosc2.Codec.LZ4, blosc2.Codec.LZ4HC]),
        "clevel": st.integers(1, 9),
        "shuffle": st.booleans(),
        "splitmode": st.sampled_from(
            [blosc2.SplitMode.ALWAYS_SPLIT, blosc2.SplitMode.NEVER_SPLIT, blosc2.SplitMode.AUTO_SPLIT]
        ),
        "kind": st.sampled_from(KINDS),
        "seed": st.integers(0, 2**16),
    }
)


def compress_case(p: dict[str, Any]) -> tuple[Any, np.ndarray[Any, Any], chunkcompress.ChunkCompressor | None]:
    dtype = np.dtype({1: "u1", 2: "<i2", 4: "<f4", 8: "<i8"}[p["itemsize"]])
    filters = [blosc2.Filter.SHUFFLE] if p["shuffle"] else [blosc2.Filter.NOFILTER]
    base = blosc2.CParams(codec=p["codec"], clevel=p["clevel"], splitmode=p["splitmode"], filters=filters)
    cparams = chunk_cparams(base, [p["block_items"]], dtype.itemsize)
    data = make_data(p["kind"], p["block_items"] * p["nblocks"], dtype, p["seed"])
    return cparams, data, chunkcompress.compressor(cparams)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_strategy)
def test_without_the_fast_pass_the_chunk_is_blosc2s(p: dict[str, Any]) -> None:
    cparams, data, mine = compress_case(p)
    if mine is None:  # blocks under 128 bytes C-Blosc2 stores raw; too short streams do not shrink
        assert cparams.blocksize < 128 or cparams.blocksize // cparams.typesize <= 256
        return
    theirs = blosc2.compress2(data, cparams=cparams)
    ours = mine(data, probe=False)
    if theirs[2] & compress_module.MEMCPYED:
        assert ours is None  # a chunk that does not shrink is left to C-Blosc2
    else:
        assert ours == theirs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_strategy)
def test_with_the_fast_pass_only_raw_streams_differ(p: dict[str, Any]) -> None:
    cparams, data, mine = compress_case(p)
    if mine is None:
        assert cparams.blocksize < 128 or cparams.blocksize // cparams.typesize <= 256
        return
    theirs = blosc2.compress2(data, cparams=cparams)
    ours = mine(data)
    if ours is None:
        assert theirs[2] & compress_module.MEMCPYED
        return
    assert blosc2.decompress2(ours) == data.tobytes()
    if ours == theirs:
        return
    assert ours[:12] == theirs[:12] and ours[16:] != theirs[16:]
    nblocks = p["nblocks"]
    nstreams = 1 if ours[2] & 0x10 else p["itemsize"]
    neblock = p["block_items"] * p["itemsize"] // nstreams
    for a, b in zip(streams_of(ours, nblocks, nstreams), streams_of(theirs, nblocks, nstreams), strict=True):
        if a != b:
            assert int.from_bytes(a[:4], "little") == neblock  # ours stored raw what LZ4HC shrank
            assert 0 < int.from_bytes(b[:4], "little") < neblock


def test_noise_streams_are_stored_raw_without_the_search() -> None:
    """CT-like int16: the low bytes are noise, the high bytes compress; the chunk is C-Blosc2's."""
    p = dict(itemsize=2, block_items=16384, nblocks=4, codec=blosc2.Codec.LZ4HC, clevel=5, shuffle=True)
    p.update(splitmode=blosc2.SplitMode.ALWAYS_SPLIT, kind="noisy_low_bytes", seed=3)
    cparams, data, mine = compress_case(p)
    assert mine is not None and mine.mode & chunkcompress.PROBE
    ours = mine(data)
    assert ours == blosc2.compress2(data, cparams=cparams)
    sizes = [int.from_bytes(s[:4], "little") for s in streams_of(ours, 4, 2)]
    assert sizes[0::2] == [16384] * 4  # low bytes: raw
    assert all(0 < s < 16384 for s in sizes[1::2])  # high bytes: compressed


def test_streams_of_few_byte_values_get_the_lz4hc_search() -> None:
    """Random bytes of 16 values: the fast pass finds no match in most such 2 KiB streams, LZ4HC some."""
    rng = np.random.default_rng(11)
    cparams = chunk_cparams(blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5, filters=[]), [2048], 1)
    mine = chunkcompress.compressor(cparams)
    assert mine is not None
    data = np.concatenate([rng.integers(0, 16, 2048 * 8), np.arange(2048) % 7]).astype(np.uint8)
    theirs = blosc2.compress2(data, cparams=cparams)
    assert mine(data) == theirs
    sizes = [int.from_bytes(s[:4], "little") for s in streams_of(theirs, 9, 1)]
    assert all(0 < size < 2048 for size in sizes)  # LZ4HC shrank every one of them


def test_zero_chunk_is_special_and_runs_are_tokens() -> None:
    split = blosc2.SplitMode.ALWAYS_SPLIT
    base = blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5, filters=[blosc2.Filter.SHUFFLE], splitmode=split)
    cparams = chunk_cparams(base, [512], 4)
    mine = chunkcompress.compressor(cparams)
    assert mine is not None
    zeros = np.zeros(2048, "<f4")
    ours = mine(zeros)
    assert ours == blosc2.compress2(zeros, cparams=cparams)
    assert ours is not None and len(ours) == 32 and ours[31] & 0x70 == 0x10
    sevens = np.full(2048, 7, "<i4")  # shuffled: one stream of 7s and three of zeros per block
    ours = mine(sevens)
    assert ours == blosc2.compress2(sevens, cparams=cparams)
    assert streams_of(ours, 4, 4)[0] == (-7).to_bytes(4, "little", signed=True) + b"\x01"


def test_chunk_that_does_not_shrink_is_left_to_blosc2() -> None:
    cparams = chunk_cparams(blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5, filters=[]), [4096], 1)
    mine = chunkcompress.compressor(cparams)
    assert mine is not None
    noise = np.random.default_rng(0).integers(0, 256, 4096 * 3, dtype=np.uint8)
    assert mine(noise) is None
    assert mine(noise, probe=False) is None


@pytest.mark.parametrize(
    "cparams",
    [
        blosc2.CParams(codec=blosc2.Codec.ZSTD, clevel=3),
        blosc2.CParams(codec=blosc2.Codec.BLOSCLZ, clevel=5),
        blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5, filters=[blosc2.Filter.BITSHUFFLE]),
        blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5, filters=[blosc2.Filter.DELTA, blosc2.Filter.SHUFFLE]),
        blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=0),
        blosc2.CParams(codec=blosc2.Codec.LZ4, clevel=5, use_dict=True),
    ],
    ids=["zstd", "blosclz", "bitshuffle", "delta", "clevel0", "dict"],
)
def test_parameters_it_does_not_take_go_to_blosc2(cparams: Any) -> None:
    assert chunkcompress.compressor(chunk_cparams(cparams, [1024], 2)) is None


def test_bad_geometry_is_refused_by_the_c_code() -> None:
    assert libblosc2.LIB is not None and libblosc2.LIB.lz4 is not None
    mine = chunkcompress.compressor(chunk_cparams(blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5), [256], 2))
    assert mine is not None
    table = libblosc2.LIB.lz4
    work = np.zeros(1 << 20, np.uint8)
    data = np.zeros(1000, np.uint8)  # not a whole number of 512-byte blocks
    out = np.zeros(2000, np.uint8)
    args = (table.ctypes.data, mine.header, data.ctypes.data, 1000, 2, 512, mine.mode, 5, 4)
    code = blockcopy.HELPER.compress_chunk(*args, work.ctypes.data, work.nbytes, out.ctypes.data)
    assert code == -2001
    small = ctypes.c_int64(64)  # a workspace too small for the LZ4 states
    code = blockcopy.HELPER.compress_chunk(*args[:3], 1024, *args[4:], work.ctypes.data, small, out.ctypes.data)
    assert code == -2001


def test_saves_use_it_and_write_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    image = (rng.normal(0, 300, (96, 160, 192)) + np.linspace(-1000, 1000, 192)).astype(np.int16)  # 3 chunks
    calls = []
    real = chunkcompress.ChunkCompressor.__call__

    def counted(self: chunkcompress.ChunkCompressor, chunk: Any, probe: bool = True) -> bytes | None:
        calls.append(chunk.nbytes)
        return real(self, chunk, probe)

    monkeypatch.setattr(chunkcompress.ChunkCompressor, "__call__", counted)
    MLArray(image, patch_size=(32, 32, 32)).save(tmp_path / "own.mla")
    assert calls, "the save did not go through the compiled compressor"
    monkeypatch.setattr(compress_module.chunkcompress, "compressor", lambda cparams: None)
    MLArray(image, patch_size=(32, 32, 32)).save(tmp_path / "blosc2.mla")
    assert (tmp_path / "own.mla").read_bytes() == (tmp_path / "blosc2.mla").read_bytes()
    np.testing.assert_array_equal(MLArray.open(tmp_path / "own.mla")[...], image)


def test_a_thread_keeps_no_output_buffer_for_huge_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = chunkcompress.compressor(chunk_cparams(blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5), [4096], 2))
    assert mine is not None
    data = make_data("smooth", 4096 * 16, np.dtype("<i2"), 0)
    monkeypatch.setattr(chunkcompress._local, "out", None, raising=False)
    monkeypatch.setattr(chunkcompress, "KEEP", data.nbytes + 32)  # up to this chunk's output: kept
    assert mine(data) == blosc2.compress2(
        data, cparams=chunk_cparams(blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5), [4096], 2)
    )
    kept = chunkcompress._local.out
    assert kept.nbytes >= data.nbytes + 32
    bigger = np.concatenate([data, data])
    assert blosc2.decompress2(mine(bigger)) == bigger.tobytes()
    assert chunkcompress._local.out is kept  # the larger buffer was not kept


def test_a_loop_that_fails_its_check_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """If the compiled loop fails or differs on the sample, saves go to python-blosc2 and still work."""
    cparams = chunk_cparams(blosc2.CParams(codec=blosc2.Codec.LZ4HC, clevel=5), [1024], 2)

    def broken(self: chunkcompress.ChunkCompressor, chunk: Any, probe: bool = True) -> bytes | None:
        raise RuntimeError("mlarray's chunk compressor failed (code -2002)")

    chunkcompress._compressor.cache_clear()
    try:
        monkeypatch.setattr(chunkcompress.ChunkCompressor, "__call__", lambda self, chunk, probe=True: b"other")
        assert chunkcompress.compressor(cparams) is None
        chunkcompress._compressor.cache_clear()
        monkeypatch.setattr(chunkcompress.ChunkCompressor, "__call__", broken)
        assert chunkcompress.compressor(cparams) is None
        image = make_data("smooth", 96 * 160 * 192, np.dtype("<i2"), 0).reshape(96, 160, 192)
        MLArray(image, patch_size=(32, 32, 32)).save(tmp_path / "a.mla")
        np.testing.assert_array_equal(MLArray.open(tmp_path / "a.mla")[...], image)
    finally:
        chunkcompress._compressor.cache_clear()  # no plan made under the patches outlives the test
