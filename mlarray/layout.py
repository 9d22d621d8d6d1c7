"""Choose Blosc2 chunk and block shapes from the training patch size.

A random patch read decompresses every *block* it touches, inside every *chunk* it
touches. So blocks are sized to sit in the CPU cache and chunks to hold about one
patch, with bounded padding at the array edges. Axes that are not spatial (channels,
time) are kept whole inside a block when small, so a patch over all channels does not
touch one block per channel.

Pure functions of shapes and sizes: no I/O, no blosc2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PATCH = 192
"""Patch edge used for ``patch_size='default'`` on every spatial axis."""

BLOCK_BYTES = 128 * 1024
"""Target uncompressed block size: fits L2 on current CPUs with room for the output."""

CHUNK_BYTES = 32 * 1024 * 1024
"""Upper bound on an uncompressed chunk (Blosc2 caps chunks below 2 GiB)."""

WHOLE_AXIS_LIMIT = 16
"""A non-spatial axis up to this length is kept whole in chunks and blocks."""

PatchSize = int | Sequence[int] | str | None


@dataclass(frozen=True)
class LayoutChoice:
    """Chunk and block shapes to request (``None`` lets Blosc2 choose)."""

    strategy: str
    chunks: tuple[int, ...] | None
    blocks: tuple[int, ...] | None
    patch_size: tuple[int, ...] | None


def resolve_patch(patch_size: PatchSize, n_spatial: int) -> tuple[int, ...] | None:
    """Expand ``'default'``, an int or a sequence into one patch edge per spatial axis."""
    if patch_size is None:
        return None
    if isinstance(patch_size, str):
        if patch_size != "default":
            raise ValueError(f"patch_size must be 'default', an int, a sequence or None, got {patch_size!r}")
        return (DEFAULT_PATCH,) * n_spatial
    if isinstance(patch_size, int):
        sizes: tuple[int, ...] = (patch_size,) * n_spatial
    else:
        sizes = tuple(int(p) for p in patch_size)
        if len(sizes) != n_spatial:
            raise ValueError(f"patch_size has {len(sizes)} entries but the array has {n_spatial} spatial axes")
    if any(p < 1 for p in sizes):
        raise ValueError(f"patch_size entries must be >= 1, got {sizes}")
    return sizes


def _shrink(shape: list[int], axes: Sequence[int], itemsize: int, limit: int) -> list[int]:
    """Halve the largest of ``axes`` until the product fits in ``limit`` bytes."""
    out = list(shape)
    while math.prod(out) * itemsize > limit:
        axis = max(axes, key=lambda a: out[a]) if axes else max(range(len(out)), key=lambda a: out[a])
        if out[axis] == 1:
            break
        out[axis] = -(-out[axis] // 2)
    return out


def patch_layout(
    shape: Sequence[int], itemsize: int, spatial_axes: Sequence[int], patch: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk and block shapes for reading patches of size ``patch`` over ``spatial_axes``."""
    ndim = len(shape)
    spatial = list(spatial_axes)
    want = [1] * ndim
    for axis in range(ndim):
        if axis in spatial:
            want[axis] = max(1, min(patch[spatial.index(axis)], shape[axis]))
        else:
            want[axis] = shape[axis] if shape[axis] <= WHOLE_AXIS_LIMIT else 1
        want[axis] = max(want[axis], 1)
    shrinkable = spatial or list(range(ndim))
    blocks = _shrink(want, shrinkable, itemsize, BLOCK_BYTES)
    chunks = []
    for axis in range(ndim):
        edge = max(shape[axis], 1)
        # Round the wanted extent up to whole blocks, but never pad past the array edge by a block.
        c = -(-want[axis] // blocks[axis]) * blocks[axis]
        c = min(c, -(-edge // blocks[axis]) * blocks[axis])
        chunks.append(max(c, blocks[axis]))
    chunks = _shrink(chunks, shrinkable, itemsize, CHUNK_BYTES)
    blocks = [min(b, c) for b, c in zip(blocks, chunks)]
    return tuple(chunks), tuple(blocks)


def choose_layout(
    shape: Sequence[int],
    itemsize: int,
    spatial_axes: Sequence[int],
    patch_size: PatchSize = "default",
    chunk_size: Sequence[int] | None = None,
    block_size: Sequence[int] | None = None,
) -> LayoutChoice:
    """Decide the layout: manual sizes win, then the patch size, else Blosc2's own choice."""
    ndim = len(shape)
    if chunk_size is not None or block_size is not None:
        chunks = None if chunk_size is None else tuple(int(c) for c in chunk_size)
        blocks = None if block_size is None else tuple(int(b) for b in block_size)
        for name, value in (("chunk_size", chunks), ("block_size", blocks)):
            if value is not None and (len(value) != ndim or any(v < 1 for v in value)):
                raise ValueError(f"{name} must have {ndim} positive entries, got {value}")
        if chunks is not None and blocks is not None and any(b > c for b, c in zip(blocks, chunks)):
            raise ValueError(f"block_size {blocks} must not exceed chunk_size {chunks} on any axis")
        return LayoutChoice("manual", chunks, blocks, None)
    patch = resolve_patch(patch_size, len(spatial_axes))
    if patch is None or ndim == 0:
        return LayoutChoice("blosc2", None, None, None)
    chunks, blocks = patch_layout(shape, itemsize, spatial_axes, patch)
    return LayoutChoice("patch", chunks, blocks, patch)
