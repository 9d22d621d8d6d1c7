"""Turn checked chunk bytes into NumPy data: the selection a key asks for, assembled from chunks.

Remote arrays cannot hand a file to python-blosc2 (it maps local paths only), so they
decode chunk by chunk: each chunk is fetched, checked with the storage checks
(:meth:`mlarray.storage.chunks.DataSection.checked_chunk`) and only then given to
``blosc2.decompress``. A Blosc2 NDArray chunk holds its blocks one after another in C
order, each block's items in C order, padded to whole blocks; :func:`chunk_array`
undoes that. This module never reads bytes itself: ``get_chunk(number)`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import CorruptFrameError

Box = tuple[tuple[int, int], ...]
"""Per axis ``(start, stop)``: the smallest box of the array a key reads."""


def _box_part(part: Any) -> bool:
    """Whether ``part`` is one of the key parts :func:`plan` reads a bounding box for."""
    if part is Ellipsis or isinstance(part, slice):
        return True
    return isinstance(part, (int, np.integer)) and not isinstance(part, bool)


def plan(shape: tuple[int, ...], key: Any) -> tuple[Box, Any]:
    """The box ``array[key]`` reads and the key to apply to that box (NumPy's semantics).

    Keys of integers, slices and one ``...`` read only their bounding box; any other key
    (index arrays, masks, ``None``) reads the whole array and is applied by NumPy.
    """
    parts = list(key) if isinstance(key, tuple) else [key]
    whole: Box = tuple((0, n) for n in shape)
    if sum(p is Ellipsis for p in parts) > 1 or not all(map(_box_part, parts)):
        return whole, key  # ``None``, arrays, masks: counting axes needs NumPy's rules
    if any(p is Ellipsis for p in parts):
        at = next(i for i, p in enumerate(parts) if p is Ellipsis)
        parts[at : at + 1] = [slice(None)] * (len(shape) - len(parts) + 1)
    if len(parts) > len(shape):
        return whole, key
    parts += [slice(None)] * (len(shape) - len(parts))
    box: list[tuple[int, int]] = []
    rel: list[Any] = []
    for axis, (part, n) in enumerate(zip(parts, shape, strict=True)):
        if isinstance(part, slice):
            try:
                picked = range(*part.indices(n))
            except (TypeError, ValueError):
                return whole, key
            if not picked:
                box.append((0, 0))
                rel.append(slice(0, 0))
                continue
            lo, hi = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
            stop: int | None = picked[-1] - lo + (1 if picked.step > 0 else -1)
            rel.append(slice(picked[0] - lo, None if stop is not None and stop < 0 else stop, picked.step))
            box.append((lo, hi))
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            index = int(part) + n if part < 0 else int(part)
            if not 0 <= index < n:
                raise IndexError(f"index {int(part)} is out of bounds for axis {axis} with size {n}")
            box.append((index, index + 1))
            rel.append(0)
        else:
            return whole, key
    return tuple(box), tuple(rel)


def chunks_in(box: Box, chunks: tuple[int, ...], grid: tuple[int, ...]) -> list[int]:
    """Numbers (C order over the chunk grid) of the chunks that intersect ``box``."""
    if any(lo >= hi for lo, hi in box):
        return []
    numbers = [0]
    for (lo, hi), c, g in zip(box, chunks, grid, strict=True):
        numbers = [k * g + i for k in numbers for i in range(lo // c, (hi - 1) // c + 1)]
    return numbers


def chunk_array(
    data: bytes | None, fill: Any, chunks: tuple[int, ...], blocks: tuple[int, ...], dtype: np.dtype[Any], where: str
) -> np.ndarray[Any, Any]:
    """Chunk ``data`` (checked compressed bytes) as an array of the chunk shape.

    ``data`` is ``None`` for an index entry that stands for a whole chunk of ``fill``
    (zeros or NaN, spec 4.4.2).
    """
    if data is None:
        return np.full(chunks, fill, dtype=dtype)
    grid = tuple(-(-c // b) for c, b in zip(chunks, blocks, strict=True))
    expected = math.prod(grid) * math.prod(blocks) * dtype.itemsize
    try:
        raw = blosc2.decompress(data)
    except Exception as exc:
        raise CorruptFrameError(f"a chunk cannot be decompressed ({exc})", path=where) from None
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != expected:
        raise CorruptFrameError("a chunk decompressed to the wrong size", path=where)
    flat = np.frombuffer(raw, dtype=dtype).reshape(*grid, *blocks)
    n = len(chunks)
    order = [axis for pair in zip(range(n), range(n, 2 * n), strict=True) for axis in pair]
    padded = flat.transpose(order).reshape(tuple(g * b for g, b in zip(grid, blocks, strict=True)))
    cropped: np.ndarray[Any, Any] = padded[tuple(slice(0, c) for c in chunks)]
    return cropped


def assemble(
    out: np.ndarray[Any, Any],
    box: Box,
    numbers: Iterable[int],
    get_chunk: Callable[[int], np.ndarray[Any, Any]],
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
) -> None:
    """Copy the parts of chunks ``numbers`` (decoded by ``get_chunk(number)``) inside ``box`` into ``out``."""
    for number in numbers:
        position = np.unravel_index(number, grid)
        src: list[slice] = []
        dst: list[slice] = []
        for p, c, n, (lo, hi) in zip(position, chunks, shape, box, strict=True):
            c0 = int(p) * c
            a, b = max(lo, c0), min(hi, c0 + c, n)
            src.append(slice(a - c0, b - c0))
            dst.append(slice(a - lo, b - lo))
        out[tuple(dst)] = get_chunk(number)[tuple(src)]
