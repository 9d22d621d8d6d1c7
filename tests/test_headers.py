"""Chunk headers checked many at once (mlarray.storage.headers) against the per-chunk check.

The vectorized check may leave a chunk to the per-chunk check, never pass one that the
per-chunk check refuses. A fresh handle's first read of the map checks every header of a
small file at once at its second read (``ChunkChecks.look_ahead``): quietly, so a faulty chunk fails the
reads that touch it, with the error the per-chunk check gives, and no other read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.errors import CorruptFrameError, MLArrayError
from mlarray.storage import blockcopy, chunkchecks, headers
from mlarray.storage.chunkchecks import ChunkChecks
from mlarray.storage.chunks import DataSection
from mlarray.storage.frame import inspect_frame

SHAPE = (32, 32, 32)


def _data() -> np.ndarray[Any, Any]:
    return np.arange(16 * 32 * 32, dtype=np.int16).reshape(16, 32, 32) % 1000


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 chunks: 32 stored with blocks, 31 value runs (7) and one zeros index entry."""
    path = tmp_path_factory.mktemp("headers") / "mixed.mla"
    with MLArray.create(path, SHAPE, np.int16, chunk_size=(8, 8, 8), block_size=(4, 4, 4), fill_value=7) as image:
        image[:16] = _data()
        image[16:24, :8, :8] = 0
    return path


def _expected() -> np.ndarray[Any, Any]:
    out = np.full(SHAPE, 7, dtype=np.int16)
    out[:16] = _data()
    out[16:24, :8, :8] = 0
    return out


def _section(path: Path) -> DataSection:
    return DataSection(str(path), inspect_frame(str(path)))


def _kinds(path: Path) -> list[int]:
    section = _section(path)
    try:
        whole = np.fromfile(path, dtype=np.uint8)
        start = section.layout.start
        return [int(whole[start + e + 31] >> 4 & 7) if e >= 0 else -1 for e in section.entries.tolist()]
    finally:
        section.close()


def test_the_forms_writers_produce_pass_at_once(mixed: Path) -> None:
    assert sorted(set(_kinds(mixed))) == [-1, 0, 3]  # the file has each form
    section = _section(mixed)
    try:
        whole = np.fromfile(mixed, dtype=np.uint8)
        stored = section.entries[section.entries >= 0]
        ok, cbytes, runs = headers.quick_pass(headers.from_map(whole), len(whole), section.layout, stored)
        assert ok.all()
        at = section.layout.start + stored
        assert cbytes.tolist() == [int(whole[a + 12 : a + 16].view("<i4")[0]) for a in at.tolist()]
        assert runs.tolist() == [bool(whole[a + 31] & 0x70) for a in at.tolist()]
    finally:
        section.close()


def _slow_verdict(path: Path, number: int) -> bool:
    """Whether the per-chunk check (blocks left to the block loop) passes chunk ``number``."""
    section = _section(path)
    try:
        section._checks.check_chunk(number, blocks=False)
    except MLArrayError:
        return False
    finally:
        section.close()
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunk=st.integers(0, 63),
    changes=st.lists(st.tuples(st.integers(0, 31), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_a_header_passing_at_once_passes_the_per_chunk_check(
    mixed: Path, chunk: int, changes: list[tuple[int, int]]
) -> None:
    section = _section(mixed)
    entry = int(section.entries[chunk])
    layout = section.layout
    section.close()
    if entry < 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "changed.mla"
        shutil.copyfile(mixed, path)
        whole = np.fromfile(path, dtype=np.uint8)
        for at, value in changes:
            whole[layout.start + entry + at] = value
        whole.tofile(path)
        offsets = np.array([entry], dtype=np.int64)
        ok, cbytes, runs = headers.quick_pass(headers.from_map(whole), len(whole), layout, offsets)
        fd = os.open(path, os.O_RDONLY)
        try:  # read with pread instead of gathered from a map: the same verdict
            read = headers.quick_pass(headers.by_pread(fd), len(whole), layout, offsets)
        finally:
            os.close(fd)
        assert [r.tolist() for r in read] == [ok.tolist(), cbytes.tolist(), runs.tolist()]
        if blockcopy.HELPER is not None:  # the read loop's own checks of a chunk's header: the same verdict
            settled = _loop_settles(layout, chunk, entry, whole)
            event("the loop leaves it to Python" if settled is None else f"the loop settles it ({settled[0]})")
            head = layout.start + entry
            if not ok[0]:
                assert settled is None
            elif not runs[0]:
                assert settled == ("blocks", cbytes[0])
            elif whole[head + 31] >> 4 & 7 == 3:  # a run of one value: its item follows the header
                assert settled == ("value", whole[head + 32 : head + 32 + layout.typesize].tobytes())
            else:  # zeros (this file is of integers: no NaN chunks pass)
                assert settled == ("value", bytes(layout.typesize))
        if ok[0]:
            assert _slow_verdict(path, chunk)
            head = layout.start + entry
            assert cbytes[0] == int(whole[head + 12 : head + 16].view("<i4")[0])
            assert runs[0] == bool(whole[head + 31] & 0x70)


def _loop_settles(layout: Any, chunk: int, entry: int, whole: np.ndarray[Any, Any]) -> tuple[str, Any] | None:
    """What the compiled loop's check of chunk ``chunk`` (index entry ``entry``) in the map ``whole``
    records: ``("blocks", length)`` for a chunk to decode, ``("value", item bytes)`` for a zeros
    chunk or a value run, or ``None`` when it leaves the chunk to Python (and records nothing)."""
    helper = blockcopy.HELPER
    assert helper is not None
    entries = np.full(layout.nchunks, -1, dtype=np.int64)
    entries[chunk] = entry
    state = np.zeros(layout.nchunks, dtype=np.uint8)
    table = headers.settle_table(layout, entries, state, whole)
    assert table is not None
    n, size = layout.nchunks, layout.typesize
    tables = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.uint8), np.zeros(n, np.uint8))
    values = np.full(n * size, 0xAB, dtype=np.uint8)
    address, length, blocks, known = (a.ctypes.data for a in tables)
    ready = helper.settle_chunk(table.ctypes.data, chunk, address, length, blocks, size, known, values.ctypes.data)
    others = [i for i in range(n) if i != chunk]
    assert not any(t[others].any() for t in tables) and not state[others].any()
    assert (values.reshape(n, size)[others] == 0xAB).all()
    if not ready:
        assert not state.any() and not any(t.any() for t in tables)
        return None
    assert state[chunk] == chunkchecks.HEAD_CHECKED
    if tables[3][chunk]:
        assert not tables[0].any() and not tables[1].any()
        return "value", values.reshape(n, size)[chunk].tobytes()
    assert tables[0][chunk] == whole.ctypes.data + layout.start + entry and tables[2][chunk] == 1
    return "blocks", int(tables[1][chunk])


def test_headers_out_of_the_file_or_section_do_not_pass(mixed: Path) -> None:
    section = _section(mixed)
    try:
        whole = np.fromfile(mixed, dtype=np.uint8)
        layout = section.layout
        offsets = np.array([-1, layout.data_size - 8, len(whole), 2**40], dtype=np.int64)
        ok, _, _ = headers.quick_pass(headers.from_map(whole), len(whole), layout, offsets)
        assert not ok.any()
        if blockcopy.HELPER is not None:
            assert all(_loop_settles(layout, 0, int(entry), whole) is None for entry in offsets)
    finally:
        section.close()


@pytest.fixture
def checked_one_by_one(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The chunks the per-chunk check (``ChunkChecks.check_chunk``) is asked for, in order."""
    calls: list[int] = []
    check = ChunkChecks.check_chunk

    def spy(self: ChunkChecks, number: int, blocks: bool = True) -> bool:
        calls.append(number)
        return check(self, number, blocks)

    monkeypatch.setattr(ChunkChecks, "check_chunk", spy)
    return calls


def _read_random_boxes(image: MLArray, expected: np.ndarray[Any, Any]) -> None:
    """Twenty random 12³ boxes of ``image`` hold what ``expected`` holds there."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        lo = rng.integers(0, 20, size=3)
        box = tuple(slice(int(a), int(a) + 12) for a in lo)
        assert np.array_equal(image[box], expected[box])


@pytest.mark.skipif(blockcopy.HELPER is None, reason="the compiled block loop is not built")
def test_patch_reads_check_the_headers_they_touch_in_the_loop(mixed: Path, checked_one_by_one: list[int]) -> None:
    """The patch path checks the headers of the chunks with blocks it touches in C, as it reads:
    nothing else, and nothing in Python (the value runs, which it leaves to Python, aside)."""
    expected = _expected()
    with MLArray.open(mixed) as image:
        section = image._chunks
        assert isinstance(section, DataSection)
        settled: list[int] = []
        real = section._checks.settle

        def spy(numbers: Any, blocks: bool = True) -> None:
            settled.extend(np.asarray(numbers).ravel().tolist())
            real(numbers, blocks)

        section._checks.settle = spy  # type: ignore[method-assign]
        assert np.array_equal(image[0:5, 0:5, 0:5], expected[0:5, 0:5, 0:5])
        assert np.flatnonzero(section._checks.state != chunkchecks.UNCHECKED).tolist() == [0]
        assert section._checks.state[0] == chunkchecks.HEAD_CHECKED  # its blocks: checked as they are decoded
        assert np.array_equal(image[9:12, 2:10, 0:5], expected[9:12, 2:10, 0:5])
        assert np.flatnonzero(section._checks.state != chunkchecks.UNCHECKED).tolist() == [0, 16, 20]
        assert settled == []  # no check in Python
        _read_random_boxes(image, expected)
    assert checked_one_by_one == []  # no chunk was checked one by one


@pytest.mark.skipif(blockcopy.HELPER is None, reason="the compiled block loop is not built")
def test_the_patch_loop_reads_value_runs_itself(tmp_path: Path) -> None:
    """The chunks of a created file never written are runs of its fill value (spec 4.4.4); the
    loop checks them and fills their boxes itself, with the right values, asking Python nothing."""
    volume = np.full((32, 32, 32), -1024, dtype=np.int16)
    volume[16:] = np.arange(16 * 32 * 32, dtype=np.int16).reshape(16, 32, 32)
    volume[8:16, :16] = 0
    path = tmp_path / "runs.mla"
    with MLArray.create(
        path, volume.shape, np.int16, chunk_size=(8, 16, 16), block_size=(4, 8, 8), fill_value=-1024
    ) as image:
        image[16:] = volume[16:]
        image[8:16, :16] = 0
    assert {-1, 0, 3} <= set(_kinds(path))  # a zeros entry, chunks with blocks, value runs
    with MLArray.open(path) as image:
        section = image._chunks
        assert isinstance(section, DataSection)
        asked: list[Any] = []
        section._checks.settle = lambda numbers, blocks=True: asked.append(numbers)  # type: ignore[method-assign]
        for box in [(slice(2, 30), slice(3, 29), slice(0, 32)), (slice(0, 9),), (slice(7, 17), 5), (3, 0, 0)]:
            assert np.array_equal(image[box], volume[box])
        assert asked == []
        stored = section.entries >= 0
        assert (section._checks.state[stored] == chunkchecks.HEAD_CHECKED).all()


@pytest.mark.skipif(blockcopy.HELPER is None, reason="the compiled block loop is not built")
def test_a_handle_checks_every_header_at_its_second_general_read(mixed: Path, checked_one_by_one: list[int]) -> None:
    """Reads planned in Python (here: on two threads) check every header at the second read of a handle."""
    expected = _expected()
    with MLArray.open(mixed, dparams={"nthreads": 2}) as image:
        assert np.array_equal(image[0:5, 0:5, 0:5], expected[0:5, 0:5, 0:5])
        section = image._chunks
        assert isinstance(section, DataSection)
        assert np.flatnonzero(section._checks.state != chunkchecks.UNCHECKED).tolist() == [0]  # one read: its chunk
        assert np.array_equal(image[9:12, 0:5, 0:5], expected[9:12, 0:5, 0:5])
        assert not (section._checks.state == chunkchecks.UNCHECKED).any()  # the second: all 64
        _read_random_boxes(image, expected)
    assert checked_one_by_one == []  # no chunk was checked one by one


def _break_codec(source: Path, target: Path, number: int) -> None:
    """Copy ``source`` to ``target`` with chunk ``number`` naming a user-defined codec."""
    shutil.copyfile(source, target)
    section = _section(target)
    at = section.layout.start + int(section.entries[number])
    section.close()
    with open(target, "r+b") as f:
        f.seek(at + 2)
        flags = f.read(1)[0]
        f.seek(at + 2)
        f.write(bytes([flags & 0x1F | 6 << 5]))


@pytest.mark.parametrize("ahead", [chunkchecks.AHEAD, 0])  # every header at the first read; the touched ones only
@pytest.mark.parametrize("number", [5, 40])  # a chunk with blocks, a value run
def test_a_faulty_chunk_fails_only_the_reads_that_touch_it(
    mixed: Path, tmp_path: Path, number: int, ahead: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunkchecks, "AHEAD", ahead)
    broken = tmp_path / "broken.mla"
    _break_codec(mixed, broken, number)
    expected = _expected()
    grid = (4, 4, 4)
    corner = np.unravel_index(number, grid)
    inside = tuple(slice(8 * int(c), 8 * int(c) + 4) for c in corner)
    elsewhere = tuple(slice(0, 4) if c else slice(8, 12) for c in corner)
    with MLArray.open(broken) as image:
        assert np.array_equal(image[elsewhere], expected[elsewhere])
        assert np.array_equal(image[elsewhere], expected[elsewhere])  # the second read: every header looked at
        with pytest.raises(CorruptFrameError, match=rf"chunk {number}: a user-defined codec"):
            image[inside]
        assert np.array_equal(image[elsewhere], expected[elsewhere])
    with MLArray.open(broken) as image, pytest.raises(CorruptFrameError, match=rf"chunk {number}: "):
        image[...]
    assert os.path.getsize(broken) == os.path.getsize(mixed)


@pytest.mark.skipif(blockcopy.HELPER is None, reason="the compiled block loop is not built")
@pytest.mark.parametrize("nthreads", [1, 2])  # the patch loop checks them; reads planned in Python do
def test_larger_files_check_the_touched_headers_at_once(
    mixed: Path, checked_one_by_one: list[int], monkeypatch: pytest.MonkeyPatch, nthreads: int
) -> None:
    monkeypatch.setattr(chunkchecks, "AHEAD", 0)  # as for a file of more chunks than AHEAD
    expected = _expected()
    box = (slice(4, 20), slice(4, 12), slice(0, 8))  # chunks 0, 4, 16, 20 (blocks), 32 (zeros entry), 36 (value run)
    with MLArray.open(mixed, dparams={"nthreads": nthreads}) as image:
        assert np.array_equal(image[box], expected[box])
        section = image._chunks
        assert isinstance(section, DataSection)
        checked = np.flatnonzero(section._checks.state != chunkchecks.UNCHECKED).tolist()
        # the patch loop knows the zeros index entry from the (checked) index: it never asks the ledger
        assert checked == ([0, 4, 16, 20, 36] if nthreads == 1 else [0, 4, 16, 20, 32, 36])
    assert checked_one_by_one == []
