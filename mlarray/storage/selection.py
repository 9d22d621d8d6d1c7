"""Which blocks of which chunks a selection touches, and where each piece goes (spec 4.4.5).

A b2nd array is cut into chunks (``chunkshape``; edge chunks padded), each chunk into
blocks (``blockshape``; the chunk rounded up to whole blocks) stored one after another in
C order over the block grid, each block's items in C order over the block shape. A read
of ``array[key]`` therefore needs, per touched chunk, the touched blocks and the boxes in
which the decoded chunk and the result overlap.

A box here is a strided view on both sides: along each axis the selection covers, inside
one chunk, a run of blocks, which splits into at most three *runs* (a partial first block,
whole blocks, a partial last block). A run of ``n`` blocks, ``m`` items of each, is two
view axes ``(n, m)``: one steps from block to block in the decoded chunk (and by ``m``
items in the result), the other steps item by item. A chunk's boxes are the products of
its per-axis runs (at most ``3 ** ndim``, usually a few), so one NumPy copy moves many
blocks. Per-axis runs are worked out once per read; nothing here loops over blocks.

Only keys made of integers, step-1 slices and one ``...`` are planned; anything else (other
steps, index arrays, ``None``, booleans) gives ``None`` and the caller uses another path.
Integers out of range give ``None`` too, so the caller's fallback reports them as before.
Pure geometry: no I/O, no codec.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class AxisPart(NamedTuple):
    """What a key asks of one axis: the positions ``[start, stop)`` and whether the axis is dropped.

    A named tuple (made in a tenth of a frozen dataclass's time): the patch path makes one per axis per read."""

    start: int
    stop: int
    dropped: bool


Run = tuple[
    tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], int, int, int
]
"""Blocks ``[q0, q0 + n)`` of a chunk along one axis, items ``[s0, s0 + m)`` of each: the view axes
of the block step (``(n,)`` with its source and result strides; empty when ``n == 1``) and of
the item step (``(m,)``; empty on a dropped axis or when folded into the copy unit), the
source and result byte offsets, and the copy unit's width in bytes when this axis is folded
into it (else 0)."""

Box = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int, int, int]
"""One strided copy from the decoded chunk to the result: shape, source strides, result strides,
source offset, result offset (bytes) and the width in bytes of the unit copied (the innermost
axis, contiguous on both sides, is folded into the unit so NumPy copies whole rows)."""


@dataclass(frozen=True)
class ChunkPlan:
    """A touched chunk: its number, the blocks it must decode and the copies out of it."""

    number: int
    dst: tuple[slice, ...]
    """The result box the chunk covers (what a special chunk fills)."""
    blocks: tuple[range, ...]
    """Per axis, the block coordinates touched (a product of these is the touched set)."""
    boxes: tuple[Box, ...]

    def block_numbers(self, grid: Sequence[int]) -> list[int]:
        """The touched blocks' numbers (C order over the block ``grid``), ascending."""
        numbers = [0]
        for span, g in zip(self.blocks, grid, strict=True):
            numbers = [k * g + q for k in numbers for q in span]
        return numbers


@dataclass(frozen=True)
class Plan:
    """Everything a read of ``array[key]`` needs to know about the layout."""

    shape: tuple[int, ...]
    """Shape of the result."""
    blockgrid: tuple[int, ...]
    """Blocks per chunk along each axis."""
    chunks: tuple[ChunkPlan, ...]

    @property
    def nblocks(self) -> int:
        """Blocks per chunk."""
        return math.prod(self.blockgrid)


def normalize_key(key: Any, shape: tuple[int, ...]) -> list[AxisPart] | None:
    """``key`` as one :class:`AxisPart` per axis, or ``None`` when it is not a plannable key.

    Plannable: step-1 slices and integers, read as NumPy reads them (bounds clipped, negative
    positions from the end), with at most one ``...`` and missing trailing axes as whole axes.
    Every read of the patch path asks this: the usual key, a slice per axis, takes no detour.
    """
    parts = key if isinstance(key, tuple) else (key,)
    if len(parts) != len(shape):
        found = whole_axes(parts, len(shape))
        if found is None:
            return None
        parts = found
    out: list[AxisPart] = []
    ellipsis = False
    for part, n in zip(parts, shape, strict=True):
        if type(part) is slice:
            try:  # NumPy's reading of the bounds: clipped, negative from the end, anything with __index__
                start, stop, step = part.indices(n)
            except (TypeError, ValueError):  # bounds that are not integers, a step of 0
                return None
            if step != 1:
                return None
            out.append(AxisPart(start, max(start, stop), False))
        elif _is_int(part):
            i = int(part)
            i = i + n if i < 0 else i
            if not 0 <= i < n:
                return None
            out.append(AxisPart(i, i + 1, True))
        elif part is Ellipsis and not ellipsis:  # in a key of one part per axis, ``...`` is one whole axis
            ellipsis = True
            out.append(AxisPart(0, n, False))
        else:
            return None
    return out


def whole_axes(key: tuple[Any, ...], ndim: int) -> tuple[Any, ...] | None:
    """``key`` with its ``...`` (at most one) or its missing trailing axes as whole slices, one part
    per axis of ``ndim``; ``None`` if it has more parts than axes or several ``...``."""
    at = [i for i, part in enumerate(key) if part is Ellipsis]  # `is`: == on an array compares elementwise
    if len(at) > 1:
        return None
    if at:
        key = key[: at[0]] + (slice(None),) * (ndim - len(key) + 1) + key[at[0] + 1 :]
    elif len(key) < ndim:
        key = key + (slice(None),) * (ndim - len(key))
    return key if len(key) == ndim else None


def _is_int(v: Any) -> bool:
    if type(v) is int:  # the usual bound or index (a bool is not of type int): no isinstance walk
        return True
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class _Axis:
    """Strides of one axis: of a block in the decoded chunk, of an item in a block, of an item in the result."""

    chunk: int
    block: int
    block_stride: int
    item_stride: int
    out_stride: int


def _runs(part: AxisPart, ax: _Axis, fold: bool) -> dict[int, tuple[range, list[Run], slice]]:
    """Per chunk coordinate along the axis: the touched block coordinates, the runs, the result span."""
    lo, hi = part.start, part.stop
    found: dict[int, tuple[range, list[Run], slice]] = {}
    if hi <= lo:
        return found
    size = ax.block
    for c in range(lo // ax.chunk, (hi - 1) // ax.chunk + 1):
        base = c * ax.chunk
        p0, p1 = max(lo, base) - base, min(hi, base + ax.chunk) - base
        q_first, q_last = p0 // size, (p1 - 1) // size
        pieces: list[tuple[int, int, int, int]] = []  # (q0, n, s0, m)
        q = q_first
        while q <= q_last:
            s0 = max(p0 - q * size, 0)
            s1 = min(p1 - q * size, size)
            if s0 == 0 and s1 == size:  # whole blocks: extend the run as far as they go
                n = 1
                while q + n <= q_last and p1 - (q + n) * size >= size:
                    n += 1
                pieces.append((q, n, 0, size))
                q += n
            else:
                pieces.append((q, 1, s0, s1 - s0))
                q += 1
        runs: list[Run] = []
        for q0, n, s0, m in pieces:
            src_offset = q0 * ax.block_stride + s0 * ax.item_stride
            if part.dropped:
                runs.append(((), (), (), (), (), (), src_offset, 0, 0))
                continue
            d0 = (base + q0 * size + s0 - lo) * ax.out_stride
            outer = ((n,), (ax.block_stride,), (m * ax.out_stride,)) if n > 1 else ((), (), ())
            if fold:
                runs.append((*outer, (), (), (), src_offset, d0, m * ax.item_stride))
            else:
                runs.append((*outer, (m,), (ax.item_stride,), (ax.out_stride,), src_offset, d0, 0))
        found[c] = (range(q_first, q_last + 1), runs, slice(base + p0 - lo, base + p1 - lo))
    return found


def plan(
    shape: Sequence[int], chunkshape: Sequence[int], blockshape: Sequence[int], key: Any, itemsize: int = 1
) -> Plan | None:
    """The :class:`Plan` of ``array[key]``, or ``None`` for keys this module does not plan.

    Parameters
    ----------
    shape, chunkshape, blockshape : sequence of int
        The array's b2nd geometry (spec 4.3).
    key
        An index as NumPy takes it.
    itemsize : int
        Bytes per item: the strides and offsets of the boxes are in bytes, for a decoded
        chunk of C-ordered blocks and a C-contiguous result.
    """
    shape, chunkshape, blockshape = tuple(shape), tuple(chunkshape), tuple(blockshape)
    ndim = len(shape)
    if ndim == 0 or len(chunkshape) != ndim or len(blockshape) != ndim:
        return None
    if any(c < 1 for c in chunkshape) or any(b < 1 for b in blockshape):
        return None
    parts = normalize_key(key, shape)
    if parts is None:
        return None
    kept = [a for a, p in enumerate(parts) if not p.dropped]
    out_shape = tuple(parts[a].stop - parts[a].start for a in kept)
    grid = tuple(-(-c // b) for c, b in zip(chunkshape, blockshape, strict=True))
    blockbytes = math.prod(blockshape) * itemsize
    out_strides = [0] * ndim
    step = itemsize
    for a in reversed(kept):
        out_strides[a] = step
        step *= parts[a].stop - parts[a].start
    axes = [
        _Axis(
            chunkshape[a],
            blockshape[a],
            math.prod(grid[a + 1 :]) * blockbytes,
            math.prod(blockshape[a + 1 :]) * itemsize,
            out_strides[a],
        )
        for a in range(ndim)
    ]
    last = kept[-1] if kept else -1
    fold = [a == last and axes[a].item_stride == itemsize == axes[a].out_stride for a in range(ndim)]
    per_axis = [_runs(p, ax, f) for p, ax, f in zip(parts, axes, fold, strict=True)]
    nchunks = [-(-n // c) for n, c in zip(shape, chunkshape, strict=True)]
    cstrides = [math.prod(nchunks[a + 1 :]) for a in range(ndim)]
    plans: list[ChunkPlan] = []
    if math.prod(out_shape) > 0:
        for coords in itertools.product(*(sorted(d) for d in per_axis)):
            number = sum(c * s for c, s in zip(coords, cstrides, strict=True))
            found = [d[c] for d, c in zip(per_axis, coords, strict=True)]
            boxes = tuple(_box(combo, itemsize) for combo in itertools.product(*(f[1] for f in found)))
            dst = tuple(found[a][2] for a in kept)
            plans.append(ChunkPlan(number, dst, tuple(f[0] for f in found), boxes))
    return Plan(out_shape, grid, tuple(plans))


def _box(runs: Sequence[Run], itemsize: int) -> Box:
    """The copy of one product of runs: block steps outside, item steps inside.

    That order reads each decoded block front to back. (NumPy keeps the given order of two
    axes when source and result strides disagree on which is the inner one, as they do
    here between a block step and an item step.)
    """
    shape: tuple[int, ...] = ()
    src: tuple[int, ...] = ()
    dst: tuple[int, ...] = ()
    inner: tuple[int, ...] = ()
    inner_src: tuple[int, ...] = ()
    inner_dst: tuple[int, ...] = ()
    src_offset = dst_offset = 0
    width = itemsize
    for r in runs:
        shape += r[0]
        src += r[1]
        dst += r[2]
        inner += r[3]
        inner_src += r[4]
        inner_dst += r[5]
        src_offset += r[6]
        dst_offset += r[7]
        if r[8]:
            width = r[8]
    return shape + inner, src + inner_src, dst + inner_dst, src_offset, dst_offset, width


def chunk_numbers(
    starts: Sequence[int], stops: Sequence[int], chunks: Sequence[int], grid: Sequence[int]
) -> np.ndarray[Any, Any]:
    """Numbers of the chunks the box ``[starts, stops)`` touches, in C order over the chunk grid.

    An int64 array, built with NumPy (a frame may declare millions of chunks); empty when
    the box is.
    """
    numbers = np.zeros(1, dtype=np.int64)
    for a, b, c, g in zip(starts, stops, chunks, grid, strict=True):
        span = np.arange(a // c, (b - 1) // c + 1, dtype=np.int64) if b > a else np.zeros(0, dtype=np.int64)
        numbers = (numbers[:, None] * g + span).ravel()
    return numbers


def shared_groups(values: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]] | None:
    """Positions in ``values`` grouped by equal value, groups in order of their first position.

    ``None`` when every value differs (the usual case for chunk index entries: a stored chunk
    per entry), so callers keep a plain loop for it.
    """
    ordered = np.sort(values, axis=None)
    if not np.any(ordered[1:] == ordered[:-1]):  # a sort alone: the full grouping costs ten times more
        return None
    _, first, inverse, counts = np.unique(values, return_index=True, return_inverse=True, return_counts=True)
    if len(first) == len(values):
        return None
    groups = np.split(np.argsort(inverse.ravel(), kind="stable"), np.cumsum(counts)[:-1])
    return [groups[k] for k in np.argsort(first, kind="stable").tolist()]
