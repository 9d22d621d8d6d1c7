"""Spec section 4.4 (the data section) is enough to read the pixels of real files.

``spec_decoder`` reads frames from the spec's text alone (chunk index position, index
entries, special chunks, chunk header fields, block layout). Here it must reproduce
NumPy on files our writer and python-blosc2 make, the golden hashes of every valid
conformance case, and the numbers of the spec's worked example; and it must refuse what
the spec refuses.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
import spec_decoder
from hypothesis import given
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.errors import CorruptFrameError
from mlarray.storage.chunks import touched_chunks
from mlarray.validate import validate_file

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "conformance"
MANIFEST = json.loads((SUITE / "manifest.json").read_text(encoding="utf-8"))
VALID = [case for case in MANIFEST["cases"] if case["kind"] == "valid"]


def _bytes_sha(array: np.ndarray[Any, Any]) -> str:
    a = np.ascontiguousarray(array)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(a.tobytes()).hexdigest()


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_the_spec_alone_reproduces_every_golden_array(case: dict[str, Any]) -> None:
    array = spec_decoder.decode((SUITE / case["path"]).read_bytes())
    expected = case["expected"]
    if expected["shape"] is None:
        assert array is None
        return
    assert array is not None and list(array.shape) == expected["shape"]
    assert _bytes_sha(array) == expected["sha256"]
    for probe in expected["probes"]:
        assert _bytes_sha(array[tuple(slice(a, b) for a, b in probe["slices"])]) == probe["sha256"]


def test_plain_c_order_would_be_wrong() -> None:
    """The block layout matters: reading chunks as plain C order gets most golden arrays wrong."""
    wrong = 0
    for case in VALID:
        raw = (SUITE / case["path"]).read_bytes()
        geo, start, end = spec_decoder.geometry(raw)
        if geo.shape == (0,) or geo.ext_chunks == geo.blocks:
            continue
        first = spec_decoder.read_chunk(raw, geo, start, spec_decoder.chunk_index(raw, geo, start, end)[0])
        c_order = np.frombuffer(first, dtype=np.dtype(geo.dtype)).reshape(geo.ext_chunks)
        wrong += not np.array_equal(c_order, spec_decoder.chunk_to_array(first, geo), equal_nan=True)
    assert wrong >= 30


@given(
    shape=st.lists(st.integers(1, 13), min_size=1, max_size=4),
    data=st.data(),
    dtype=st.sampled_from(["|u1", "<i2", "<f4", "<c16", "|b1"]),
)
def test_the_spec_decodes_what_our_writer_writes(
    shape: list[int], data: Any, dtype: str, tmp_path_factory: Any
) -> None:
    chunks = [data.draw(st.integers(1, s)) for s in shape]
    blocks = [data.draw(st.integers(1, c)) for c in chunks]
    values = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    array = (values % 7 == 0) if dtype == "|b1" else (values * 37 % 251).astype(dtype)
    path = tmp_path_factory.mktemp("w") / "a.mla"
    MLArray(array, chunk_size=chunks, block_size=blocks).save(path)
    decoded = spec_decoder.decode(path.read_bytes())
    assert decoded is not None and decoded.dtype == array.dtype
    assert np.array_equal(decoded, array)


def _value_run(path: Path) -> np.ndarray[Any, Any]:
    """MLArray.create with a fill value: C-Blosc2 stores value-run chunks (kind 3)."""
    with MLArray.create(path, (9, 10), np.int32, fill_value=-7, chunk_size=(4, 8), block_size=(2, 4)) as image:
        image[0:4, 0:8] = np.arange(32, dtype=np.int32).reshape(4, 8)
    out = np.full((9, 10), -7, dtype=np.int32)
    out[0:4, 0:8] = np.arange(32).reshape(4, 8)
    return out


def _reverse_order(path: Path) -> np.ndarray[Any, Any]:
    """Chunks written last-first: the chunks area is not in chunk order (offsets decide)."""
    out = (np.arange(12 * 10, dtype=np.uint16) * 3).reshape(12, 10)
    with MLArray.create(path, out.shape, np.uint16, chunk_size=(4, 5), block_size=(2, 5)) as image:
        for i in reversed(range(0, 12, 4)):
            for j in reversed(range(0, 10, 5)):
                image[i : i + 4, j : j + 5] = out[i : i + 4, j : j + 5]
    return out


def _zeros_partly_written(path: Path) -> np.ndarray[Any, Any]:
    """Zero chunks stored as special entries 0x81 beside data chunks."""
    out = np.zeros((6, 7, 8), dtype=np.float64)
    out[3:, :, 4:] = 2.5
    with MLArray.create(path, out.shape, np.float64, chunk_size=(3, 4, 4), block_size=(3, 2, 2)) as image:
        image[3:, :, 4:] = out[3:, :, 4:]
    return out


def _nan_entries(path: Path) -> np.ndarray[Any, Any]:
    """An all-zero float32 frame whose value-run index is patched to the NaN entry 0x82."""
    _patch_special_index(path, np.float32, 0x82)
    return np.full((10, 6), np.nan, dtype=np.float32)


def _patch_special_index(path: Path, dtype: Any, byte7: int) -> None:
    nd = blosc2.zeros((10, 6), dtype=dtype, chunks=(4, 6), blocks=(2, 3), urlpath=str(path), mode="w")
    del nd
    raw = bytearray(path.read_bytes())
    geo, start, end = spec_decoder.geometry(bytes(raw))
    index = start + geo.data_size
    assert raw[index + 31] >> 4 & 7 == 3 and struct.unpack_from("<q", raw, index + 32)[0] == -(1 << 63) + (1 << 56)
    raw[index + 32 : index + 40] = bytes(7) + bytes([byte7])
    path.write_bytes(bytes(raw))


BUILDERS: list[Callable[[Path], np.ndarray[Any, Any]]] = [
    _value_run,
    _reverse_order,
    _zeros_partly_written,
    _nan_entries,
]


@pytest.mark.parametrize("build", BUILDERS, ids=[b.__name__.strip("_") for b in BUILDERS])
def test_the_spec_decodes_special_and_reordered_chunks(
    build: Callable[[Path], np.ndarray[Any, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "a.mla"
    expected = build(path)
    decoded = spec_decoder.decode(path.read_bytes())
    assert decoded is not None
    assert decoded.tobytes() == expected.tobytes()  # bytewise: NaN bit patterns too


def test_the_value_run_and_reordered_files_hold_what_the_tests_claim(tmp_path: Path) -> None:
    """The builders above really produce the structures they are named after."""
    raw = _raw_of(_value_run, tmp_path / "v.mla")
    geo, start, end = spec_decoder.geometry(raw)
    entries = spec_decoder.chunk_index(raw, geo, start, end)
    kinds = {raw[start + e + 31] >> 4 & 7 for e in entries if e >= 0}
    assert 3 in kinds and 0 in kinds
    raw = _raw_of(_reverse_order, tmp_path / "r.mla")
    geo, start, end = spec_decoder.geometry(raw)
    entries = spec_decoder.chunk_index(raw, geo, start, end)
    assert entries == sorted(entries, reverse=True) and len(set(entries)) == len(entries)


def _raw_of(build: Callable[[Path], Any], path: Path) -> bytes:
    build(path)
    return path.read_bytes()


@pytest.mark.parametrize(("dtype", "byte7"), [(np.float32, 0x84), (np.int16, 0x82), (np.float32, 0x83)])
def test_the_spec_refuses_uninitialised_unknown_and_integer_nan_entries(dtype: Any, byte7: int, tmp_path: Path) -> None:
    path = tmp_path / "a.mla"
    _patch_special_index(path, dtype, byte7)
    with pytest.raises(spec_decoder.SpecError):
        spec_decoder.decode(path.read_bytes())


def test_the_worked_example_of_section_4_4_9_is_exact() -> None:
    raw = (SUITE / "cases" / "valid" / "header-minimal.mla").read_bytes()
    geo, start, end = spec_decoder.geometry(raw)
    assert (start, end, len(raw), len(raw) - end) == (165, 629, 778, 149)
    assert (geo.nbytes, geo.data_size, geo.typesize, geo.blocksize, geo.chunksize) == (192, 384, 2, 8, 32)
    index = raw[start + geo.data_size :]
    assert index[:16].hex(" ") == "05 01 17 08 30 00 00 00 30 00 00 00 50 00 00 00" and index[31] == 0
    assert spec_decoder.chunk_index(raw, geo, start, end) == [0, 64, 128, 192, 256, 320]
    assert raw[start : start + 16].hex(" ") == "05 01 97 02 20 00 00 00 08 00 00 00 40 00 00 00"
    array = spec_decoder.decode(raw)
    assert array is not None
    items = np.frombuffer(raw[start + 32 : start + 64], dtype="<i2")
    block_order = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    assert list(items[:8]) == [array[i, j] for i, j in block_order]
    text = (ROOT / "spec" / "mlarray.md").read_text(encoding="utf-8")
    for fact in ("header_size = 165", "`192, 384, 2, 8, 32`", "`0, 64, 128, 192, 256, 320`", "`frame_size = 778`"):
        assert fact in text


def test_the_spec_leaves_nothing_a_reader_needs_to_blosc2() -> None:
    text = (ROOT / "spec" / "mlarray.md").read_text(encoding="utf-8")
    assert "business" not in text
    assert "not restated" not in text
    for heading in ("4.4.1 Where the chunk index is", "4.4.2 Index entries", "4.4.4 The chunk header",
                    "4.4.5 Which bytes are which element", "4.4.6 Block starts and streams"):  # fmt: skip
        assert f"#### {heading}" in text


# --- our reader (mlarray.storage.chunks) follows section 4.4


DATA_CASES = [
    c
    for c in MANIFEST["cases"]
    if c["kind"] == "invalid" and c["section"].startswith("4.4") and c["expected"]["error"] == "CORRUPT_FRAME"
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c["id"] for c in DATA_CASES])
def test_the_api_refuses_a_broken_data_section_before_blosc2_reads_it(case: dict[str, Any]) -> None:
    """MLArray.open + a read, and MLArray.load, refuse each broken chunk as the spec says.

    Some of these files python-blosc2 reads without an error (overlapping blocks,
    uninitialised and unknown special entries): only our own checks catch them.
    """
    path = SUITE / case["path"]
    with pytest.raises(CorruptFrameError), MLArray.open(path) as image:
        image[...]
    with pytest.raises(CorruptFrameError):
        MLArray.load(path)


def test_a_patch_read_checks_only_the_blocks_it_decodes(tmp_path: Path) -> None:
    """A broken block does not stop reads elsewhere in the array (its own chunk included), and is refused when read.

    Spec 4.4.6 lets a reader that decodes single blocks check just those; a whole read,
    a load and validation check every block.
    """
    path = tmp_path / "a.mla"
    data = ((np.arange(1280, dtype=np.int16) // 40) * 3).reshape(32, 40)
    MLArray(data, chunk_size=(16, 40), block_size=(8, 20), cparams={"codec": blosc2.Codec.ZSTD}).save(path)
    raw = bytearray(path.read_bytes())
    geo, start, end = spec_decoder.geometry(bytes(raw))
    entry = spec_decoder.chunk_index(bytes(raw), geo, start, end)[1]
    assert entry >= 0 and not raw[start + entry + 2] & 0x02, "chunk 1 must be a compressed chunk"
    raw[start + entry + 32 + 4 : start + entry + 32 + 8] = struct.pack("<i", -64)  # block 1 starts at -64
    path.write_bytes(bytes(raw))
    with MLArray.open(path) as image:
        assert np.array_equal(image[0:16, :], data[0:16])
        assert np.array_equal(image[24:26, 0:3], data[24:26, 0:3])  # block 2 of chunk 1 (and chunk 0) are sound
        with pytest.raises(CorruptFrameError, match="chunk 1: block offset outside the chunk"):
            image[16:18, 20:23]  # block 1 of chunk 1
        with pytest.raises(CorruptFrameError, match="chunk 1: bytes between or after its blocks"):
            image[16:18, 0:3]  # block 0 of chunk 1: the bytes after it are block 1's, which no block holds now
    with MLArray.open(path) as image, pytest.raises(CorruptFrameError, match="chunk 1"):
        image[...]
    with pytest.raises(CorruptFrameError):
        MLArray.load(path)
    assert validate_file(path).code == "CORRUPT_FRAME"


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    data=st.data(),
)
def test_touched_chunks_are_exactly_the_chunks_of_the_elements_read(shape: list[int], data: Any) -> None:
    chunks = tuple(data.draw(st.integers(1, s)) for s in shape)
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    key = tuple(
        data.draw(
            st.one_of(
                st.integers(-s, s - 1),
                st.builds(
                    slice,
                    st.none() | st.integers(-s, s),
                    st.none() | st.integers(-s, s),
                    st.sampled_from([None, 1, 2, -1]),
                ),
            )
        )
        for s in shape
    )
    owner = np.ravel_multi_index(np.indices(shape) // np.reshape(chunks, (-1,) + (1,) * len(shape)), grid)
    expected = set(np.asarray(owner[key]).ravel().tolist())
    got = touched_chunks(grid, chunks, tuple(shape), key)
    assert got is not None and expected <= set(got)
    steps = [k.step for k in key if isinstance(k, slice)]
    if all(step in (None, 1, -1) for step in steps):
        assert set(got) == expected
