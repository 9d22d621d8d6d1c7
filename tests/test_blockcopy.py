"""The compiled helper's block-table check (spec 4.4.6) against the Python rules it replaces.

The read path's copies are compared with python-blosc2 and NumPy in test_fastread.py (both
engines); here the C check ``mla_blocks_problem`` must give exactly the verdict of
``chunks._blocks_problem_py`` on valid chunks, on chunks whose blocks are stored out of
order, and on chunks with damaged block tables and stream sizes.
"""

from __future__ import annotations

import struct
from typing import Any

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlarray.storage import blockcopy, chunks

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
    return chunks._blocks_problem(chunk, head, nblocks, first), chunks._blocks_problem_py(chunk, head, nblocks, first)


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
    targets = [32 + 4 * j for j in range(geometry(chunk)[1])] + stream_headers(chunk)
    raw = bytearray(chunk)
    for where, value, small in damage:
        at = targets[where % len(targets)]
        if small:  # near the real value: off by a few bytes, the likeliest damage to go unnoticed
            value = struct.unpack_from("<i", raw, at)[0] + value % 9 - 4
        struct.pack_into("<i", raw, at, max(-(2**31), min(2**31 - 1, value)))
    c_verdict, py_verdict = both(bytes(raw))
    assert c_verdict == py_verdict


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
