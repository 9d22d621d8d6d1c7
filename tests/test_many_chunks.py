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
from mlarray.storage import blockcopy, compress
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
