"""Damage saved files in controlled ways, for tests of the errors readers must raise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlarray import MLArray


def break_block_offsets(path: Path, candidates: Sequence[int]) -> list[int]:
    """Point the first block start of each compressed chunk in ``candidates`` inside the block-start table.

    Chunks stored uncompressed (no block table) are left alone. Returns the chunk numbers
    damaged, in order; readers must report ``block offset outside the chunk`` for them.
    """
    raw = bytearray(path.read_bytes())
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        bad = [n for n in candidates if not section.chunk_bytes(n)[2] & 0x02]
        for n in bad:
            at = section.layout.start + section.entries[n] + 32
            raw[at : at + 4] = (33).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    return bad
