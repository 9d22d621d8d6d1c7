"""Parallel chunk compression writes the same files as the serial path, and fails as safely.

``mlarray.storage.compress`` compresses chunks on a thread pool and folds the data
section's SHA-256 into the write. Compared with python-blosc2's own writer: the file
bytes (with one compression thread, whose block order is deterministic), the decoded
arrays, the headers and the recorded digests. The failure paths check that a save that
breaks half-way (a worker fails, the disk fills up, the caller interrupts) leaves the
previous file intact, no temporary file behind and no compression thread running.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import blosc2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlarray.api
from mlarray import MLArray, WriteFailedError
from mlarray.storage import (
    chunkcompress,
    compress,
    data_digest,
    data_section,
    decode_header,
    inspect_frame,
    read_header,
)
from mlarray.storage.cparams import make_cparams
from mlarray.storage.frame import folded_digest
from mlarray.storage.io import TMP_PREFIX, write_data
from mlarray.validate import validate_file

DTYPES = ["|b1", "|u1", "|i1", "<i2", "<u2", "<i4", "<f4", "<f8", "<c8", "<i8"]
CODECS = [("lz4", 1, []), ("lz4hc", 5, ["shuffle"]), ("zstd", 3, ["bitshuffle"]), ("blosclz", 5, ["shuffle"])]


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, Any]:
    """A random array with random chunk and block shapes (edge chunks, zero chunks, one chunk)."""
    ndim = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 24 if ndim < 4 else 9)) for _ in range(ndim)]
    chunks = [draw(st.integers(1, s)) for s in shape]
    blocks = [draw(st.integers(1, c)) for c in chunks]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.integers(0, 4 if draw(st.booleans()) else 256, size=[*shape, dtype.itemsize], dtype=np.uint8)
    data = raw.view(dtype).reshape(shape) if dtype.kind != "b" else raw[..., 0].astype(bool)
    if draw(st.booleans()):  # a zero region: whole-zero chunks become special chunks (index entries only)
        data[tuple(slice(0, max(1, s // 2)) for s in shape)] = 0
    if dtype.kind == "f":
        data[~np.isfinite(data)] = 0
    codec, clevel, filters = draw(st.sampled_from(CODECS))
    return {"data": data, "chunks": chunks, "blocks": blocks, "cparams": (codec, clevel, filters)}


def _write(path: Path, case: dict[str, Any], *, parallel: bool, nthreads: int = 1) -> str | None:
    data = case["data"]
    cparams = make_cparams(*case["cparams"], data.dtype.itemsize, nthreads=1)
    written = write_data(
        str(path),
        data,
        chunks=case["chunks"],
        blocks=case["blocks"],
        cparams=cparams,
        parallel=parallel,
        nthreads=nthreads,
    )
    digest = written.digest
    del written
    return digest


@given(case=layouts(), nthreads=st.integers(1, 4))
def test_parallel_frames_are_byte_identical_to_python_blosc2(tmp_path_factory: Any, case: dict, nthreads: int) -> None:
    tmp = tmp_path_factory.mktemp("frames")
    serial, parallel = tmp / "serial.b2nd", tmp / "parallel.b2nd"
    assert _write(serial, case, parallel=False) is None  # python-blosc2 writes; no digest folded
    digest = _write(parallel, case, parallel=True, nthreads=nthreads)
    assert digest == data_digest(parallel)  # the folded digest is the digest of the file
    back, ref = blosc2.open(str(parallel)), blosc2.open(str(serial))
    # Fewer chunks than threads: each chunk is compressed with several C-Blosc2 threads,
    # which store its blocks in the order they finish (valid, but not byte-comparable).
    one_thread_each = nthreads == 1 or ref.schunk.nchunks >= nthreads
    stored_raw = [i for i in range(ref.schunk.nchunks) if ref.schunk.get_chunk(i)[2] & compress.MEMCPYED]
    if one_thread_each and not stored_raw:
        assert parallel.read_bytes() == serial.read_bytes()
    for i in range(ref.schunk.nchunks):  # a chunk one thread stores raw is kept only if smaller
        mine, theirs = back.schunk.get_chunk(i), ref.schunk.get_chunk(i)
        if one_thread_each:
            assert mine == theirs or (i in stored_raw and len(mine) < len(theirs))
        else:
            assert blosc2.decompress(mine) == blosc2.decompress(theirs) and len(mine) <= len(theirs)
    got = back[...]  # bit for bit (NumPy 2.2 warns comparing complex NaNs with ==)
    assert got.shape == case["data"].shape and got.dtype == case["data"].dtype
    assert got.tobytes() == case["data"].tobytes()


@given(case=layouts())
def test_saves_through_both_paths_hold_the_same_image(tmp_path_factory: Any, case: dict) -> None:
    tmp = tmp_path_factory.mktemp("saves")
    data = case["data"]
    codec, clevel, filters = case["cparams"]
    cparams = make_cparams(codec, clevel, filters, data.dtype.itemsize)
    image = MLArray(data, chunk_size=case["chunks"], block_size=case["blocks"], cparams=cparams)
    image.meta.extra["case"] = "parallel"
    image.save(tmp / "parallel.mla")
    real = mlarray.api.write_data
    try:  # the same save with python-blosc2 compressing (nthreads from cparams, block order may vary)
        mlarray.api.write_data = lambda *a, **k: real(*a, **k, parallel=False)  # type: ignore[assignment]
        image.save(tmp / "serial.mla")
    finally:
        mlarray.api.write_data = real  # type: ignore[assignment]
    heads = {}
    for name in ("parallel", "serial"):
        path = tmp / f"{name}.mla"
        report = validate_file(path, deep=True)  # frame, chunks, header and the recorded digest
        assert report.valid, report
        head = read_header(path)
        assert head.meta.integrity is not None and head.meta.integrity.digest == data_digest(path)
        heads[name] = decode_header(inspect_frame(path).header_bytes)
        heads[name].pop("integrity")
        with MLArray.open(path) as back:
            got = back[...]  # bit for bit (NumPy 2.2 warns comparing complex NaNs with ==)
            assert got.shape == data.shape and got.dtype == data.dtype and got.tobytes() == data.tobytes()
    assert heads["parallel"] == heads["serial"]
    # the same chunks (blocks maybe in another order), never larger; the
    # compressed header differs by the digest it records, so the files may differ by a few bytes
    (start, end), (serial_start, serial_end) = (data_section(tmp / f"{n}.mla") for n in ("parallel", "serial"))
    assert end - start <= serial_end - serial_start


def test_block_order_pads_edge_chunks_and_orders_blocks() -> None:
    part = np.arange(3 * 5, dtype=np.int16).reshape(3, 5)
    out = compress.block_order(part, chunks=(4, 6), blocks=(2, 3))
    padded = np.zeros((4, 6), np.int16)
    padded[:3, :5] = part
    expected = [padded[i : i + 2, j : j + 3].ravel() for i in (0, 2) for j in (0, 3)]
    np.testing.assert_array_equal(out.ravel(), np.concatenate(expected))
    scratch: dict[str, Any] = {}  # full chunks go through buffers reused from call to call
    for start in (0, 4):
        full = np.arange(96, dtype=np.int16).reshape(8, 12)[start : start + 4, 3:9]
        fresh = compress.block_order(full, chunks=(4, 6), blocks=(2, 3))
        reused = compress.block_order(full, chunks=(4, 6), blocks=(2, 3), scratch=scratch)
        assert reused.tobytes() == fresh.tobytes()
        assert reused.tobytes() == b"".join(full[i : i + 2, j : j + 3].tobytes() for i in (0, 2) for j in (0, 3))


def test_compress_chunks_gives_bytes_in_input_order_for_a_streaming_source() -> None:
    parts = [np.full((8, 8), i, dtype=np.int32) for i in range(9)]
    consumed: list[int] = []

    def source() -> Any:
        for i, p in enumerate(parts):
            consumed.append(i)
            yield p

    cparams = make_cparams("lz4", 5, ["shuffle"], 4)
    out = compress.compress_chunks(source(), (8, 8), (4, 8), cparams, nthreads=2)
    first = next(out)
    assert len(consumed) <= 5  # lazy: about two chunks per thread in flight
    chunks = [first, *out]
    assert [np.frombuffer(blosc2.decompress(c), np.int32)[0] for c in chunks] == list(range(9))


def test_a_frame_that_does_not_hold_the_hashed_chunks_gets_no_folded_digest(tmp_path: Path) -> None:
    data = np.arange(64 * 64, dtype=np.int32).reshape(64, 64)
    data[:32, :32] = np.random.default_rng(0).integers(0, 2**31, size=(32, 32))  # chunk sizes differ
    path = tmp_path / "f.b2nd"
    cparams = make_cparams("lz4", 5, ["shuffle"], 4)
    chunks = list(
        compress.compress_chunks(
            (data[r] for _, r in compress.chunk_regions(data.shape, (32, 32))), (32, 32), (16, 16), cparams
        )
    )
    nd, digest = compress.write_chunks(str(path), data.shape, data.dtype, (32, 32), (16, 16), cparams, chunks)
    del nd
    assert digest == data_digest(path)
    sha = hashlib.sha256(b"".join(chunks))
    sizes = [len(c) for c in chunks]
    assert folded_digest(path, sha, sizes) == digest
    assert len(set(sizes)) > 1
    assert folded_digest(path, sha, sizes[::-1]) is None  # the index points elsewhere
    assert folded_digest(path, sha, [*sizes[:-1], sizes[-1] + 1]) is None  # another chunks area size
    assert folded_digest(path, sha, sizes[:-1]) is None


def test_write_chunks_refuses_a_wrong_number_of_chunks(tmp_path: Path) -> None:
    cparams = make_cparams("lz4", 5, [], 1)
    one = blosc2.compress2(np.zeros(16, np.uint8), cparams=compress.chunk_cparams(cparams, (16,), 1))
    with pytest.raises(ValueError, match="1 chunks written, the frame holds 2"):
        compress.write_chunks(str(tmp_path / "a.b2nd"), (32,), np.dtype("u1"), (16,), (16,), cparams, [one])
    with pytest.raises(ValueError, match="more chunks"):
        compress.write_chunks(str(tmp_path / "b.b2nd"), (16,), np.dtype("u1"), (16,), (16,), cparams, [one, one])


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    path = tmp_path / "old.mla"
    MLArray(np.arange(1000, dtype=np.int16).reshape(10, 100), spacing=(1, 2)).save(path)
    return path


def _compress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mlarray-compress")]


@pytest.mark.parametrize("error", [RuntimeError("codec broke"), KeyboardInterrupt()])
def test_a_failing_worker_leaves_the_previous_file(
    previous: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    before = previous.read_bytes()
    calls = []
    real = blosc2.compress2

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 5:
            raise error
        return real(*args, **kwargs)

    real_own = chunkcompress.ChunkCompressor.__call__

    def failing_own(self: chunkcompress.ChunkCompressor, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)  # mlarray's own compressor takes these chunks where it is built
        if len(calls) == 5:
            raise error
        return real_own(self, *args, **kwargs)

    monkeypatch.setattr(compress.blosc2, "compress2", failing)
    monkeypatch.setattr(chunkcompress.ChunkCompressor, "__call__", failing_own)
    data = np.random.default_rng(1).integers(0, 9, size=(64, 64, 64), dtype=np.int16)
    expected = WriteFailedError if isinstance(error, Exception) else KeyboardInterrupt
    with pytest.raises(expected):
        MLArray(data, chunk_size=(16, 32, 32), block_size=(8, 16, 16)).save(previous)
    assert previous.read_bytes() == before
    assert not list(previous.parent.glob(f"{TMP_PREFIX}*"))
    assert not _compress_threads()
    assert len(calls) < 32  # the chunks not yet started were cancelled


@pytest.mark.parametrize(
    ("chunk", "block"),
    [((16, 64, 64), (8, 32, 32)), ((1, 4, 64), (1, 4, 16))],  # the second: 1,536 chunks, held in memory
)
def test_a_full_disk_leaves_the_previous_file(previous: Path, chunk: tuple[int, ...], block: tuple[int, ...]) -> None:
    """RLIMIT_FSIZE makes writes fail with EFBIG half-way through the frame, like a full disk."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from mlarray import MLArray, WriteFailedError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        data = np.random.default_rng(0).integers(0, 255, size=(96, 64, 64), dtype=np.uint8)
        try:
            MLArray(data, chunk_size={chunk}, block_size={block}).save(sys.argv[1])
        except WriteFailedError as exc:
            print("refused:", exc.code)
        """
    )
    before = previous.read_bytes()
    run = subprocess.run([sys.executable, "-c", script, str(previous)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "refused: WRITE_FAILED"
    assert previous.read_bytes() == before
    assert sorted(os.listdir(previous.parent)) == ["old.mla"]


# --- frames of many chunks are filled in memory, then written (compress.HELD_MIN_CHUNKS)


@given(case=layouts(), held_bytes=st.sampled_from([0, 64, 4096, 2**40]))
def test_frames_filled_in_memory_are_the_bytes_python_blosc2_writes(
    tmp_path_factory: Any, case: dict, held_bytes: int
) -> None:
    """Every frame held in memory (all of it, or spilled to the file after a few chunks)."""
    tmp = tmp_path_factory.mktemp("held")
    serial, held = tmp / "serial.b2nd", tmp / "held.b2nd"
    _write(serial, case, parallel=False)
    with mock.patch.object(compress, "HELD_MIN_CHUNKS", 1), mock.patch.object(compress, "HELD_BYTES", held_bytes):
        digest = _write(held, case, parallel=True)
    assert digest == data_digest(held)
    ref = blosc2.open(str(serial))
    if not any(ref.schunk.get_chunk(i)[2] & compress.MEMCPYED for i in range(ref.schunk.nchunks)):
        assert held.read_bytes() == serial.read_bytes()
    assert blosc2.open(str(held))[...].tobytes() == case["data"].tobytes()


def _many_chunks() -> np.ndarray:
    data = np.random.default_rng(3).integers(0, 5, size=(1100, 8, 12), dtype=np.int16)
    data[:300] = 0  # special chunks among them
    return data


def test_a_save_of_many_chunks_is_the_same_file_either_way(tmp_path: Path) -> None:
    data = _many_chunks()
    assert math.prod(compress.chunk_grid(data.shape, (1, 8, 12))) >= compress.HELD_MIN_CHUNKS

    def save(path: Path) -> bytes:
        image = MLArray(data, chunk_size=(1, 8, 12), block_size=(1, 4, 12), spacing=(2.0, 1.0, 1.0))
        image.save(path)
        return path.read_bytes()

    held = save(tmp_path / "held.mla")
    with mock.patch.object(compress, "HELD_MIN_CHUNKS", 10**9):  # chunk by chunk into the file
        direct = save(tmp_path / "direct.mla")
    with mock.patch.object(compress, "HELD_BYTES", 10_000):  # spilled to the file part way
        spilled = save(tmp_path / "spilled.mla")
    assert held == direct == spilled
    assert validate_file(tmp_path / "held.mla", deep=True).valid
    assert np.array_equal(MLArray.load(tmp_path / "held.mla").to_numpy(), data)


@pytest.mark.parametrize("held_bytes", [2**40, 10_000])
def test_a_held_frame_comes_back_open_for_writing(tmp_path: Path, held_bytes: int) -> None:
    data = _many_chunks()
    cparams = make_cparams("lz4", 1, [], 2)
    parts = (data[r] for _, r in compress.chunk_regions(data.shape, (1, 8, 12)))
    chunks = compress.compress_chunks(parts, (1, 8, 12), (1, 4, 12), cparams)
    path = tmp_path / "f.b2nd"
    with mock.patch.object(compress, "HELD_BYTES", held_bytes):
        nd, digest = compress.write_chunks(
            str(path), data.shape, data.dtype, (1, 8, 12), (1, 4, 12), cparams, chunks, mmap=True
        )
    assert digest == data_digest(path)
    nd[5] = 7  # the array returned writes to the file
    nd.schunk.vlmeta["k"] = b"v"
    del nd
    back = blosc2.open(str(path))
    expected = data.copy()
    expected[5] = 7
    assert np.array_equal(back[...], expected)
    assert back.schunk.vlmeta["k"] == b"v"
