"""Frames of very many chunks: reads and creation cost a few bytes per chunk, not Python objects.

A file may declare up to 2**24 chunks (spec 4.10). A 700-byte file of one-byte chunks
of zeros is such a file; reading it used to build several Python objects per chunk (about
200 bytes and 3 µs each: 3.5 GB and 50 s for 2**24 chunks), and ``MLArray.create`` with a
fill value other than zero stored its chunks one by one into the file, in time in the
square of their count. Memory is what is asserted here (under an address-space limit, in a
subprocess): tests never assert on time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from memlimit import run_limited

from mlarray import MLArray
from mlarray.storage import blockcopy, chunkvalues, compress
from mlarray.storage.chunks import DataSection
from mlarray.validate import validate_file

ROWS = 2048  # x 1024 one-byte chunks: 2**21 chunks
BUDGET = 256 << 20
"""Above the interpreter's baseline: reading 2**21 chunks peaks at about 110 MB here; the
code before needed over 400 MB (Python objects per chunk) and fails this budget."""

READ = """
import numpy as np
from mlarray import MLArray
with MLArray.open(path) as image:
    whole = image[...]
    box = image[3:1900, 10:1000]   # a box: the short patch path (its own tables)
    row = image[5]
loaded = MLArray.load(path, dparams={"nthreads": 2}).to_numpy()
result = [
    whole.shape == (2048, 1024) and bool((whole == value).all()),
    box.shape == (1897, 990) and bool((box == value).all()),
    bool((row == value).all()),
    bool((loaded == value).all()),
]
"""


@pytest.fixture(scope="module")
def zeros_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("many") / "zeros.mla"
    with MLArray.create(path, (ROWS, 1024), np.uint8, chunk_size=(1, 1), block_size=(1, 1)):
        pass  # nothing written: every chunk index entry is the zeros entry
    return path


def test_a_tiny_file_of_millions_of_chunks_reads_within_a_small_budget(zeros_file: Path) -> None:
    assert zeros_file.stat().st_size < 4096
    assert blockcopy.HELPER is not None, "the test environment builds the compiled loop"
    run = run_limited(READ, budget=BUDGET, setup="import mlarray", variables={"path": str(zeros_file), "value": 0})
    assert run.result == [True, True, True, True]


def test_chunks_stored_as_value_runs_read_and_validate(tmp_path: Path) -> None:
    """Every chunk a stored run of one value (a chunk of its own each): the values land where they belong."""
    path = tmp_path / "sevens.mla"
    with MLArray.create(path, (64, 40), np.int16, fill_value=-7, chunk_size=(1, 2), block_size=(1, 1)) as image:
        image[10:12, 4:8] = np.arange(8, dtype=np.int16).reshape(2, 4)
    expected = np.full((64, 40), -7, np.int16)
    expected[10:12, 4:8] = np.arange(8).reshape(2, 4)
    with MLArray.open(path) as image:
        assert np.array_equal(image[...], expected)
        assert np.array_equal(image[9:13, 3:9], expected[9:13, 3:9])
        assert np.array_equal(image.read((slice(0, 64), 5), out=np.empty(64, np.int16)), expected[:, 5])
    assert np.array_equal(MLArray.load(path, dparams={"nthreads": 2}).to_numpy(), expected)
    assert validate_file(path).code is None  # valid, every chunk checked


def test_the_values_of_stored_special_chunks_are_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Value runs, NaN and zero chunks among chunks with data: their values are read from the
    map all at once (``DataSection.special_values``), no chunk handed out one by one."""
    path = tmp_path / "runs.mla"
    expected = np.full((64, 64), 2.5, np.float32)
    expected[0:2, 0:3] = [[1, 2, 3], [4, 5, 6]]
    expected[5, 5] = np.nan
    expected[6, 6] = 0
    expected[7, 7:9] = -0.0
    with MLArray.create(path, (64, 64), np.float32, fill_value=2.5, chunk_size=(1, 1), block_size=(1, 1)) as image:
        image[0:2, 0:3] = expected[0:2, 0:3]
        image[5:8, 5:9] = expected[5:8, 5:9]
    assert blockcopy.HELPER is not None, "the test environment builds the compiled loop"
    handed: list[int] = []
    chunk_bytes = DataSection.chunk_bytes

    def spy(self: DataSection, number: int) -> Any:
        handed.append(number)
        return chunk_bytes(self, number)

    monkeypatch.setattr(DataSection, "chunk_bytes", spy)
    with MLArray.open(path) as image:
        np.testing.assert_array_equal(image[...], expected)  # NaN == NaN here; -0.0 == 0.0 checked below
        np.testing.assert_array_equal(image[1:40, 2:50], expected[1:40, 2:50])
        assert np.array_equal(np.signbit(image[7, 7:9]), [True, True])
    assert handed == []


@pytest.mark.parametrize(
    ("dtype", "value"), [(np.uint8, 9), (np.int16, -1024), (np.float32, np.nan), (np.float64, -0.0)]
)
def test_create_of_many_chunks_writes_the_bytes_python_blosc2_writes(
    tmp_path: Path, dtype: type, value: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From HELD_MIN_CHUNKS chunks on, ``create`` fills the frame in memory: the same frame, in linear time."""
    shape, chunks, blocks = (48, 50), (1, 2), (1, 1)
    assert np.prod(compress.chunk_grid(shape, chunks)) >= compress.HELD_MIN_CHUNKS
    held: list[int] = []
    real = compress.write_chunks

    def spy(*args: Any, **kwargs: Any) -> Any:
        held.append(args[1][0])
        return real(*args, **kwargs)

    monkeypatch.setattr(compress, "write_chunks", spy)
    path = tmp_path / "full.mla"
    with MLArray.create(path, shape, dtype, fill_value=value, chunk_size=chunks, block_size=blocks) as image:
        cparams = image._nd.schunk.cparams
    assert held == [48]  # the chunks went through the in-memory frame (compress.write_chunks)
    reference = tmp_path / "reference.b2nd"
    blosc2.full(shape, value, dtype=dtype, chunks=chunks, blocks=blocks, cparams=cparams, urlpath=str(reference))
    ours, theirs = blosc2.open(str(path)), blosc2.open(str(reference))
    assert ours.schunk.nchunks == theirs.schunk.nchunks == 1200
    assert all(ours.schunk.get_chunk(i) == theirs.schunk.get_chunk(i) for i in range(ours.schunk.nchunks)), (
        "the chunks differ from python-blosc2's"
    )
    back = MLArray.open(path).to_numpy()
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    assert back.tobytes() == np.full(shape, value, dtype=dtype).tobytes()


def test_chunk_values_settles_special_kinds_at_once_and_leaves_the_rest_to_the_loop() -> None:
    kinds = np.array([1, 2, 3, 0, 5], dtype=np.uint8)  # zeros, NaN, value run, blocks, a kind no spec lists
    rows = np.zeros((5, 4), np.uint8)
    rows[2] = np.frombuffer(np.float32(2.5).tobytes(), np.uint8)
    entries = np.array([0, 100, 200, 300, 400], dtype=np.int64)  # every chunk stored, each its own entry
    asked: list[int] = []

    def get_chunk(number: int) -> bytes:
        asked.append(number)
        head = bytearray(32)
        head[31] = int(kinds[number]) << 4
        return bytes(head)

    def fail(number: int, what: str) -> Exception:
        return ValueError(f"chunk {number}: {what}")

    def specials(numbers: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return kinds[numbers], rows[numbers]

    numbers = np.arange(5, dtype=np.int64)
    f4 = np.dtype("<f4")
    with pytest.raises(ValueError, match="chunk 4: a special chunk of kind 5"):
        chunkvalues.chunk_values(numbers, entries, get_chunk, f4, fail, specials)
    assert asked == [3, 4]  # only the chunk to decode and the refused one, in order
    known, values, regular = chunkvalues.chunk_values(numbers[:4], entries, get_chunk, f4, fail, specials)
    assert known.tolist() == [True, True, True, False]
    assert values[0].tolist() == [0, 0, 0, 0]
    assert np.isnan(values[1].view(f4)[0])
    assert values[2].view(f4)[0] == 2.5
    assert [members.tolist() for members, _ in regular] == [[3]]
    with pytest.raises(ValueError, match="chunk 1: a special chunk of kind 2"):  # NaN runs only for floats
        chunkvalues.chunk_values(numbers[:2], entries, get_chunk, np.dtype("<i4"), fail, specials)
