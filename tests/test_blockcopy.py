"""The compiled helper's block-table checks (spec 4.4.6) against the Python rules they replace.

The read path's copies are compared with python-blosc2 and NumPy in test_fastread.py (both
engines); here the C check ``mla_blocks_problem`` must give exactly the verdict of
``structure._blocks_problem_py`` on valid chunks, on chunks whose blocks are stored out of
order, and on chunks with damaged block tables and stream sizes; and the per-block check
the block loop makes before it decodes a block (``mla_block_problem``) must follow the
rules for that block, and fail for some block exactly when the whole-chunk check fails.
"""

from __future__ import annotations

import array
import copy
import os
import struct
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.errors import CorruptFrameError
from mlarray.storage import blockcopy, chunkchecks, headers, patchread, structure

pytestmark = pytest.mark.skipif(blockcopy.HELPER is None, reason="checked in test_fastread: the helper must be built")


def make_chunk(seed: int, typesize: int, nblocks: int, blockitems: int, filters: list[Any]) -> bytes:
    """A real C-Blosc2 chunk of ``nblocks`` blocks (partly compressible, partly noise)."""
    rng = np.random.default_rng(seed)
    n = nblocks * blockitems
    raw = rng.integers(0, 256, size=n * typesize, dtype=np.uint8)
    raw[: n * typesize // 2] = rng.integers(0, 3, size=n * typesize // 2, dtype=np.uint8)
    cparams = blosc2.CParams(
        codec=blosc2.Codec.LZ4, clevel=5, typesize=typesize, blocksize=blockitems * typesize, filters=filters
    )
    return bytes(blosc2.compress2(raw.tobytes(), cparams=cparams))


def geometry(chunk: bytes) -> tuple[int, int, int]:
    """``head``, ``nblocks`` and ``first`` as structure_problem computes them (no dictionary here)."""
    nbytes, blocksize = struct.unpack_from("<ii", chunk, 4)
    nblocks = -(-nbytes // blocksize)
    return 32, nblocks, 32 + 4 * nblocks


def both(chunk: bytes) -> tuple[str | None, str | None]:
    head, nblocks, first = geometry(chunk)
    return structure._blocks_problem(chunk, head, nblocks, first), structure._blocks_problem_py(
        chunk, head, nblocks, first
    )


def stream_headers(chunk: bytes) -> list[int]:
    """Offsets of every stream's csize field (valid chunks only)."""
    head, nblocks, _ = geometry(chunk)
    split = not chunk[2] & 0x10
    found = []
    for j in range(nblocks):
        pos = struct.unpack_from("<i", chunk, head + 4 * j)[0]
        for _ in range(chunk[3] if split else 1):
            found.append(pos)
            csize = struct.unpack_from("<i", chunk, pos)[0]
            pos += 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
    return found


FILTERS = [[blosc2.Filter.SHUFFLE], [blosc2.Filter.NOFILTER], [blosc2.Filter.BITSHUFFLE]]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    typesize=st.sampled_from([1, 2, 4, 8]),
    nblocks=st.integers(1, 12),
    blockitems=st.sampled_from([64, 256, 1024]),
    filters=st.sampled_from(FILTERS),
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(-(2**31), 2**31 - 1), st.booleans()), max_size=3),
)
def test_c_check_agrees_with_python(
    seed: int, typesize: int, nblocks: int, blockitems: int, filters: list[Any], damage: list[tuple[int, int, bool]]
) -> None:
    chunk = make_chunk(seed, typesize, nblocks, blockitems, filters)
    if chunk[2] & 0x02:  # stored uncompressed: there is no block table to check
        return
    c_verdict, py_verdict = both(chunk)
    assert c_verdict is None and py_verdict is None
    nblocks = geometry(chunk)[1]
    targets = [32 + 4 * j for j in range(geometry(chunk)[1])] + stream_headers(chunk)
    raw = bytearray(chunk)
    for where, value, small in damage:
        at = targets[where % len(targets)]
        if small:  # near the real value: off by a few bytes, the likeliest damage to go unnoticed
            value = struct.unpack_from("<i", raw, at)[0] + value % 9 - 4
        struct.pack_into("<i", raw, at, max(-(2**31), min(2**31 - 1, value)))
    c_verdict, py_verdict = both(bytes(raw))
    assert c_verdict == py_verdict
    # the per-block check a partial reader makes: each block as the rules say, and a chunk
    # fails the whole check exactly when one of its blocks fails its own
    per_block = [block_verdict(bytes(raw), j) for j in range(nblocks)]
    assert per_block == [block_verdict_py(bytes(raw), j) for j in range(nblocks)]
    assert any(per_block) == (c_verdict is not None)


def block_verdict(chunk: bytes, j: int) -> int:
    assert blockcopy.HELPER is not None
    data = np.frombuffer(chunk, dtype=np.uint8)
    return int(blockcopy.HELPER.block_problem(int(data.__array_interface__["data"][0]), len(chunk), j))


def block_verdict_py(chunk: bytes, j: int) -> int:
    """Spec 4.4.6 rules 2-3 for block ``j`` alone, written from the spec: 0 or the kind of problem (6: a gap)."""
    head, nblocks, first = geometry(chunk)
    starts = struct.unpack_from(f"<{nblocks}i", chunk, head)
    nbytes, blocksize = struct.unpack_from("<ii", chunk, 4)
    streams = chunk[3] if not chunk[2] & 0x10 and (j < nblocks - 1 or nbytes % blocksize == 0) else 1
    pos = starts[j]
    if pos < first:
        return 1
    for _ in range(streams):
        if pos + 4 > len(chunk):
            return 1
        csize = struct.unpack_from("<i", chunk, pos)[0]
        pos += 4 + (csize if csize > 0 else 1 if csize < 0 else 0)
        if pos > len(chunk):
            return 2
    others = starts[:j] + starts[j + 1 :]
    if any(starts[j] <= s < pos for s in others):
        return 3
    following = min((s for s in others if pos <= s < len(chunk)), default=len(chunk))  # the next block, or the end
    opens = any(s < starts[j] for s in others) or starts[j] == first  # the first block starts after the table
    return 0 if pos == following and opens else 6


def test_block_check_finds_table_and_dictionary_outside_the_chunk() -> None:
    chunk = make_chunk(2, 2, 4, 256, [blosc2.Filter.SHUFFLE])
    assert [block_verdict(chunk, j) for j in range(4)] == [0, 0, 0, 0]
    assert block_verdict(chunk[:40], 0) == 4  # the table of 4 entries ends at byte 48
    with_dict = bytearray(chunk)
    with_dict[31] |= 0x01  # a dictionary after the table: its size field (byte 48) set past the chunk
    struct.pack_into("<i", with_dict, 48, len(chunk))
    assert block_verdict(bytes(with_dict), 0) == 5


def test_blocks_out_of_order_pass_and_overlaps_fail() -> None:
    """Blocks may be stored in any order (spec 4.4.6); a block table that makes two blocks share bytes may not."""
    chunk = make_chunk(1, 2, 4, 256, [blosc2.Filter.SHUFFLE])
    head, nblocks, first = geometry(chunk)
    starts = list(struct.unpack_from(f"<{nblocks}i", chunk, head))
    swapped = bytearray(chunk)
    # point the table at the blocks in reverse order: blocks 0..3 now read 3..0 (still disjoint)
    struct.pack_into(f"<{nblocks}i", swapped, head, *reversed(starts))
    assert both(bytes(swapped)) == (None, None)
    overlapping = bytearray(chunk)
    struct.pack_into("<i", overlapping, head + 4, starts[0])  # blocks 0 and 1 start at the same byte
    assert both(bytes(overlapping)) == ("two blocks overlap", "two blocks overlap")
    outside = bytearray(chunk)
    struct.pack_into("<i", outside, head, first - 1)  # inside the table
    assert both(bytes(outside)) == ("block offset outside the chunk", "block offset outside the chunk")


def test_helper_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(blockcopy.DISABLE_ENV, "1")
    helper, status = blockcopy._load()
    assert helper is None and blockcopy.DISABLE_ENV in status
    monkeypatch.delenv(blockcopy.DISABLE_ENV)
    helper, status = blockcopy._load()
    assert helper is not None and "_blockcopy" in status


@pytest.mark.parametrize("staged", [False, True], ids=["copied", "staged"])
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    damage=st.tuples(st.integers(0, 10**6), st.integers(-64, 64)),
    box=st.tuples(st.integers(0, 31), st.integers(1, 32), st.integers(0, 39), st.integers(1, 40)),
)
def test_a_patch_read_fails_exactly_when_a_block_it_decodes_is_bad(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    damage: tuple[int, int],
    box: tuple[int, int, int, int],
    staged: bool,
) -> None:
    """Spec 4.4.6 for partial readers: each decoded block is checked before C-Blosc2 sees it, and only those,
    whether the result is written block by block or a row of chunks at a time through the stage."""
    rng = np.random.default_rng(seed)
    data = (rng.integers(0, 4, size=(32, 40)) * rng.integers(1, 300, size=(32, 40))).astype("<i2")
    path = tmp_path_factory.mktemp("blocks") / "a.mla"
    MLArray(data, chunk_size=(32, 40), block_size=(8, 10)).save(path)  # one chunk of 4 x 4 blocks
    raw = bytearray(path.read_bytes())
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        at = section.layout.start + section.entries[0]
    cbytes = struct.unpack_from("<i", raw, at + 12)[0]
    chunk = bytes(raw[at : at + cbytes])
    if chunk[2] & 0x02 or chunk[31] & 0x70:
        return  # stored uncompressed or special: no block table
    targets = [(32 + 4 * j, j) for j in range(16)] + stream_owners(chunk)
    where, delta = damage
    offset, owner = targets[where % len(targets)]
    target = at + offset
    struct.pack_into("<i", raw, target, struct.unpack_from("<i", raw, target)[0] + delta)
    path.write_bytes(bytes(raw))
    damaged = bytes(raw[at : at + cbytes])
    r0, rows, c0, cols = box
    rows, cols = min(rows, 32 - r0), min(cols, 40 - c0)
    decoded = [
        q * 4 + p for q in range(r0 // 8, (r0 + rows - 1) // 8 + 1) for p in range(c0 // 10, (c0 + cols - 1) // 10 + 1)
    ]
    bad = any(block_verdict_py(damaged, j) for j in decoded)
    event(
        "a decoded block is bad"
        if bad
        else "damage outside the decoded blocks"
        if owner not in decoded
        else "damage inside a decoded block"
    )
    key = (slice(r0, r0 + rows), slice(c0, c0 + cols))
    with MLArray.open(path) as image, pytest.MonkeyPatch.context() as mp:
        if staged:
            assert blockcopy.HELPER is not None
            mp.setattr(patchread, "STAGE_MIN", 0)
            mp.setattr(blockcopy.HELPER, "streams", True)
        before = patchread.staged
        if bad:
            with pytest.raises(CorruptFrameError, match="chunk 0: (block|compressed stream|two blocks|bytes between)"):
                image[key]
        elif owner not in decoded:  # the damage is in a block the read does not decode
            assert np.array_equal(image[key], data[key])
        else:  # a decoded block's stream is wrong but inside the chunk: its codec may or may not notice
            try:
                assert image[key].shape == (rows, cols)
            except CorruptFrameError as exc:
                assert "C-Blosc2 cannot decode it" in str(exc)
        assert (patchread.staged > before) == staged


def stream_owners(chunk: bytes) -> list[tuple[int, int]]:
    """``(offset of a stream's csize field, its block)`` for every stream of a valid chunk."""
    streams = chunk[3] if not chunk[2] & 0x10 else 1  # stream_headers lists them block by block
    return [(pos, i // streams) for i, pos in enumerate(stream_headers(chunk))]


@pytest.mark.skipif(os.name != "posix", reason="whole loads read chunks with pread on POSIX only")
def test_whole_loads_read_chunks_from_the_file_not_the_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load`` and ``to_numpy`` hand the C loop the open file (pread into a thread's buffer); patches use the map."""
    assert blockcopy.HELPER is not None, blockcopy.STATUS
    a = np.random.default_rng(21).normal(size=(30, 20, 12)).astype("<f4")
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(8, 8, 12), block_size=(4, 4, 6)).save(path)
    seen: list[int] = []
    helper = copy.copy(blockcopy.HELPER)
    real = helper.read_region

    def recording(*args: Any) -> int:
        seen.append(args[14])  # the file descriptor (-1: chunks in memory)
        return int(real(*args))

    real_box = helper.read_box

    def recording_box(args: int) -> int:
        seen.append(-1)  # the patch path's call: chunks in the map, always
        return int(real_box(args))

    helper.read_region = recording
    helper.read_box = recording_box
    monkeypatch.setattr(blockcopy, "HELPER", helper)
    for nthreads in (1, 2):
        seen.clear()
        assert MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy().tobytes() == a.tobytes()
        assert seen and all(fd >= 0 for fd in seen)
        with MLArray.open(path, dparams={"nthreads": nthreads}) as image:
            seen.clear()
            assert image.to_numpy().tobytes() == a.tobytes()
            assert seen and all(fd >= 0 for fd in seen)
            seen.clear()
            assert np.array_equal(image[3:9, 2:7, 1:5], a[3:9, 2:7, 1:5])
            assert seen and all(fd == -1 for fd in seen)


@pytest.mark.skipif(os.name != "posix", reason="whole loads read chunks with pread on POSIX only")
def test_a_chunk_changed_after_its_header_was_checked_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C loop checks the copy it decodes: a chunk that differs from the header checked is not decoded.

    The load then reports what a one-thread check of the file finds (CORRUPT_FRAME for chunk 2).
    """
    path = small_file(tmp_path)
    with MLArray.open(path) as image:
        change_after_check(image, "chunk_offsets", chunk=2, nbytes=10**6, monkeypatch=monkeypatch)
        codes: list[int] = []
        helper = copy.copy(blockcopy.HELPER)
        real_read = helper.read_region  # type: ignore[union-attr]

        def recording(*args: Any) -> int:
            codes.append(int(real_read(*args)))
            return codes[-1]

        helper.read_region = recording  # type: ignore[union-attr]
        monkeypatch.setattr(blockcopy, "HELPER", helper)
        with pytest.raises(CorruptFrameError, match="chunk 2"):
            image.to_numpy()
        assert codes[0] == -1009  # "it differs from the header checked before", found in the copy
        assert blockcopy.ERRORS[-1009].startswith("it differs from the header checked before")


def test_chunks_of_very_many_blocks_are_checked_whole(tmp_path: Path) -> None:
    """Block-by-block checks cost the square of a chunk's block count: beyond BLOCKWISE_MAX it is checked whole."""
    data = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    for block, pending in (((16, 64), 1), ((2, 1), 0)):  # 4 blocks per chunk; 2048 blocks per chunk
        path = tmp_path / f"b{block[0]}.mla"
        MLArray(data, chunk_size=(64, 64), block_size=block).save(path)
        with MLArray.open(path) as image:
            section = image._chunks
            assert section is not None
            found = section.chunk_refs([0])
            assert found is not None
            assert found[2].tolist() == [pending]
            assert (section._checks.state[0] == chunkchecks.CHECKED) == (pending == 0)
            assert np.array_equal(image[5:60, 3:61], data[5:60, 3:61])
    assert 4 < structure.BLOCKWISE_MAX < 2048
    assert blockcopy.HELPER is not None and blockcopy.HELPER.blockwise_max() == structure.BLOCKWISE_MAX


def test_a_mapped_chunk_changed_after_its_header_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A patch read decodes from the shared map: a header that changes after its check is refused, not trusted.

    The headers are checked in Python here (the loop checks those of the usual forms itself,
    in the same call as it reads them, so no hook could change them in between).
    """
    monkeypatch.setattr(headers, "settle_table", lambda *args: None)
    path = small_file(tmp_path)
    with MLArray.open(path) as image:
        change_after_check(image, "chunk_refs", chunk=0, nbytes=0, monkeypatch=monkeypatch)
        with pytest.raises(CorruptFrameError, match="chunk 0: it differs from the header checked before"):
            image[0:8, 0:8, 0:8]


def small_file(tmp_path: Path) -> Path:
    """A 16x16x8 int16 file of 4 chunks of 2 blocks."""
    a = np.random.default_rng(22).integers(-300, 300, size=(16, 16, 8)).astype("<i2")
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(8, 8, 8), block_size=(4, 8, 8)).save(path)
    return path


def change_after_check(image: Any, method: str, *, chunk: int, nbytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``image``'s data section rewrite ``chunk``'s nbytes field in the file right after ``method`` checked it.

    That is another writer changing the file in place between the check and the read,
    within the file system's time resolution (the modification time stays as it was): the
    case a reader's size-and-time check cannot see, so the loop's own checks must catch it.
    """
    section = image._chunks
    assert section is not None
    real = getattr(section, method)
    at = section.layout.start + section.entries[chunk] + 4

    def then_changed(numbers: Any) -> Any:
        found = real(numbers)
        before = os.stat(image._path)
        with open(image._path, "r+b") as f:
            f.seek(at)
            f.write(nbytes.to_bytes(4, "little"))
        os.utime(image._path, ns=(before.st_atime_ns, before.st_mtime_ns))
        return found

    monkeypatch.setattr(section, method, then_changed)


def test_a_load_lets_go_of_a_large_chunk_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each thread keeps its buffer for chunks read from the file only up to COPY_KEEP bytes."""
    from mlarray.storage import libblosc2

    a = np.random.default_rng(24).integers(0, 1000, size=(64, 64, 64)).astype("<i4")  # one chunk of 1 MiB
    path = tmp_path / "a.mla"
    MLArray(a, chunk_size=(64, 64, 64), block_size=(16, 64, 64)).save(path)
    worker = libblosc2.worker(libblosc2.LIB)  # type: ignore[arg-type]
    for keep, kept in ((1 << 30, True), (1 << 10, False)):
        monkeypatch.setattr(libblosc2, "COPY_KEEP", keep)
        assert MLArray.load(path, dparams={"nthreads": 1}).to_numpy().tobytes() == a.tobytes()
        assert (worker._copy.nbytes > 0) == kept


def test_a_build_without_a_function_of_its_abi_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build that reports the current ABI version but lacks one of its functions is not used (no import error)."""

    def lacking(lib: Any, path: Path) -> Any:
        raise AttributeError("undefined symbol: mla_publish")

    monkeypatch.setattr(blockcopy, "Helper", lacking)
    helper, status = blockcopy._load()
    assert helper is None and "stale build" in status and "mla_publish" in status


def test_the_patch_call_refuses_inconsistent_arguments() -> None:
    """``mla_read_box`` (the patch path's one-argument call) checks the geometry it unpacks before reading anything."""
    helper = blockcopy.HELPER
    assert helper is not None, blockcopy.STATUS
    chunk_shape = np.array([4], dtype=np.int64)
    at = chunk_shape.__array_interface__["data"][0]
    for ndim, lo, hi in ((0, [], []), (17, [0] * 17, [1] * 17), (1, [3], [3]), (1, [-1], [2])):
        args = array.array("q", [0, ndim, 1, at, *[0] * 14, 123, 0, 0, 0, *lo, *hi, *[1] * len(lo)])
        assert helper.read_box(args.buffer_info()[0]) == -1001  # the geometry is inconsistent
        assert args[18] == -1  # no chunk failed
