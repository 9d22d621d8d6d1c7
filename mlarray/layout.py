"""Choose Blosc2 chunk and block shapes, and the default codec, for fast random patch reads.

A random patch read decompresses every *block* it touches, inside every *chunk* it
touches, and copies the patch out of the decoded blocks (mlarray's reader one block at a
time through a block-sized buffer; python-blosc2's slicing, the fallback, through a
chunk-sized one). Measured on the benchmark volumes (``docs/performance.md``), that gives
the rules here:

- **Blocks** are small (a fraction of L2; 16-64 KiB), so a patch that does not line up
  with the block grid decompresses little it does not need, and the decompression
  buffers stay in cache. Block edges never exceed the patch; a block spans at least 16
  voxels per spatial axis where it can (thinner blocks compress worse).
- **Chunks** are a few MiB (a few L2 sizes), whatever the patch: a patch touches few
  chunks, and python-blosc2's chunk buffer stays in cache. Bigger chunks (>= 8 MiB)
  measurably slowed patch reads down; smaller ones add per-chunk overhead.
- **Bounded edge padding**: an axis is cut so that the padding Blosc2 adds at the array
  edge stays under 1/8 of the axis (or one block, when that is unavoidable).
- **Non-spatial axes** (channels, time) of up to ``WHOLE_AXIS_LIMIT`` entries are kept
  whole inside every block and chunk: a patch over all channels touches each block once.
- **Codec**: LZ4HC level 5 with byte shuffle decompresses fastest of the codecs measured
  (the higher the LZ4HC level, the fewer and longer its matches) and compresses better
  than LZ4, at the price of slower writes (each byte of the items a stream of its own:
  :func:`mlarray.storage.cparams.splits_streams`). 1-byte data use bit shuffle, except
  label maps and masks (long runs of one value), which LZ4HC level 8 compresses as well or
  better with no filter, and which then decode about twice as fast:
  :func:`mlarray.storage.cparams.default_for` tells the two apart on a sample of the data.

Everything but :func:`detect_caches` is a pure function of shapes and sizes. The cache
sizes are read once from the operating system (Linux sysfs); the layout adapts only to
caches *smaller* than the reference machine's, so files come out the same on every
current CPU. No blosc2 here.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlarray.versions import MAX_CHUNK_BYTES

DEFAULT_PATCH = 192
"""Patch edge used for ``patch_size='default'`` on every spatial axis."""

WHOLE_AXIS_LIMIT = 16
"""A non-spatial axis up to this length is kept whole in chunks and blocks."""

BLOCK_BYTES = 64 * 1024
MIN_BLOCK_BYTES = 16 * 1024
"""Bounds of the uncompressed block size; within them a block is 1/16 of the L2 cache."""

CHUNK_BYTES = 4 * 1024 * 1024
MIN_CHUNK_BYTES = 1024 * 1024
"""Bounds of the uncompressed chunk size; within them a chunk is 4 times the L2 cache."""

MIN_BLOCK_EDGE = 16
"""Blocks span at least this many voxels per spatial axis (axis and patch permitting), even
past the cache-derived size (up to ``BLOCK_BYTES``): thinner blocks compress worse."""

PAD_FRACTION = 8
"""Edge padding on an axis is bounded by ``axis length / PAD_FRACTION`` (or one block)."""

DEFAULT_CODEC = "lz4hc"
DEFAULT_CLEVEL = 5
DEFAULT_FILTERS: tuple[str, ...] = ("shuffle",)
BYTE_FILTERS: tuple[str, ...] = ("bitshuffle",)
"""Filters for 1-byte data, where a byte shuffle does nothing and a bit shuffle pays off."""
LABEL_CLEVEL = 8
"""LZ4HC level for label maps and masks, compressed with no filter (:func:`label_compression`)."""

PatchSize = int | Sequence[int] | str | None


@dataclass(frozen=True)
class Caches:
    """Per-core data cache sizes in bytes (L3 is the shared last level)."""

    l1d: int
    l2: int
    l3: int


REFERENCE_CACHES = Caches(l1d=32 * 1024, l2=512 * 1024, l3=32 * 1024 * 1024)
"""The caches the defaults were measured on (AMD EPYC, ``docs/performance.md``).

They are also an upper bound: a file is written once and read on many machines, so
the layout only adapts *down* to a writer with smaller caches (see :func:`layout_caches`).
That keeps the default layout the same on every current desktop and server CPU.
"""


@dataclass(frozen=True)
class LayoutChoice:
    """Chunk and block shapes to request (``None`` lets Blosc2 choose)."""

    strategy: str
    chunks: tuple[int, ...] | None
    blocks: tuple[int, ...] | None
    patch_size: tuple[int, ...] | None


def _parse_size(text: str) -> int | None:
    """``'32K'``, ``'1024K'``, ``'32M'`` or plain bytes, as sysfs prints cache sizes."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    return int(digits) * scale if digits.isdigit() else None


def detect_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> Caches | None:
    """The data cache sizes of this machine's first CPU (Linux sysfs), or ``None`` if unknown.

    Reads ``index*/level``, ``type`` and ``size``; a level that cannot be read is taken
    from :data:`REFERENCE_CACHES`.
    """
    found: dict[str, int] = {}
    try:
        entries = sorted(Path(root).glob("index*"))
    except OSError:
        return None
    for entry in entries:
        try:
            level = (entry / "level").read_text().strip()
            kind = (entry / "type").read_text().strip()
            size = _parse_size((entry / "size").read_text())
        except (OSError, ValueError):
            continue
        key = {"1": "l1d", "2": "l2", "3": "l3"}.get(level)
        if size is not None and kind != "Instruction" and key is not None:
            found[key] = size
    if not found:
        return None
    ref = REFERENCE_CACHES
    return Caches(found.get("l1d", ref.l1d), found.get("l2", ref.l2), found.get("l3", ref.l3))


@functools.lru_cache(maxsize=1)
def layout_caches() -> Caches:
    """The caches the default layout is computed for: this machine's, capped at :data:`REFERENCE_CACHES`.

    Conservative both ways: unknown caches count as the reference ones, and a machine
    with bigger caches than the reference still gets blocks that fit smaller ones.
    """
    found = detect_caches() or REFERENCE_CACHES
    ref = REFERENCE_CACHES
    return Caches(min(found.l1d, ref.l1d), min(found.l2, ref.l2), min(found.l3, ref.l3))


def _clamp_pow2(value: int, low: int, high: int) -> int:
    """``value`` rounded down to a power of two, then clamped to ``[low, high]``."""
    p = 1 << max(int(value), 1).bit_length() - 1
    return max(low, min(high, p))


def block_bytes(caches: Caches) -> int:
    """Target uncompressed block size: 1/16 of L2 within 16-64 KiB."""
    return _clamp_pow2(caches.l2 // 16, MIN_BLOCK_BYTES, BLOCK_BYTES)


def chunk_bytes(caches: Caches) -> int:
    """Target uncompressed chunk size: 4 times L2 within 1-4 MiB."""
    return _clamp_pow2(caches.l2 * 4, MIN_CHUNK_BYTES, CHUNK_BYTES)


def resolve_patch(patch_size: PatchSize, n_spatial: int) -> tuple[int, ...] | None:
    """Expand ``'default'``, an int or a sequence into one patch edge per spatial axis."""
    if patch_size is None:
        return None
    if isinstance(patch_size, str):
        if patch_size != "default":
            raise ValueError(f"patch_size must be 'default', an int, a sequence or None, got {patch_size!r}")
        return (DEFAULT_PATCH,) * n_spatial
    given: Any = patch_size
    scalar = hasattr(given, "__index__")  # an int, or a NumPy integer
    try:
        sizes = (operator.index(given),) * n_spatial if scalar else tuple(map(operator.index, given))
    except TypeError:
        raise ValueError(
            f"patch_size must be 'default', an int, a sequence of ints or None, got {patch_size!r}"
        ) from None
    if not scalar and len(sizes) != n_spatial:
        raise ValueError(f"patch_size has {len(sizes)} entries but the array has {n_spatial} spatial axes")
    if any(p < 1 for p in sizes):
        raise ValueError(f"patch_size entries must be >= 1, got {sizes}")
    return sizes


def padding(length: int, edge: int) -> int:
    """Elements Blosc2 adds after an axis of ``length`` cut in pieces of ``edge``."""
    return -(-length // edge) * edge - length


def _pad_ok(length: int, edge: int, unit: int) -> bool:
    """Bounded edge padding: at most ``length / PAD_FRACTION``, or what pieces of ``unit`` cost anyway."""
    return padding(length, edge) <= max(length // PAD_FRACTION, padding(length, unit))


def _next_edge(edge: int, limit: int, length: int, unit: int) -> int | None:
    """The next edge for an axis: about double, a multiple of ``unit``, within the padding bound."""
    if edge >= limit:
        return None
    want = max(edge + unit, min(2 * edge, limit) // unit * unit)
    for candidate in range(want, limit + 1, unit):
        if _pad_ok(length, candidate, unit):
            return candidate
    return None


def _grow(edges: list[int], limits: list[int], lengths: list[int], unit: list[int], budget: int) -> list[int]:
    """Grow ``edges`` (multiples of ``unit``) while their product stays within ``budget``.

    The smallest edge grows first (ties: the later axis, so the innermost axis gets the
    longest contiguous runs). An axis stops when its next edge would pass the budget,
    its limit or the padding bound.
    """
    edges = list(edges)
    frozen: set[int] = set()
    while len(frozen) < len(edges):
        i = min((j for j in range(len(edges)) if j not in frozen), key=lambda j: (edges[j], -j))
        nxt = _next_edge(edges[i], limits[i], lengths[i], unit[i])
        if nxt is None or math.prod(edges) // edges[i] * nxt > budget:
            frozen.add(i)
            continue
        edges[i] = nxt
    return edges


def patch_layout(
    shape: Sequence[int],
    itemsize: int,
    spatial_axes: Sequence[int],
    patch: Sequence[int],
    caches: Caches | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk and block shapes for reading patches of size ``patch`` over ``spatial_axes``.

    Blocks hold about :func:`block_bytes`, chunks about :func:`chunk_bytes`; every chunk
    edge is a multiple of the block edge. See the module docstring for the rules.
    """
    caches = caches or layout_caches()
    ndim = len(shape)
    lengths = [max(int(n), 1) for n in shape]
    spatial = list(spatial_axes)
    target_block = block_bytes(caches)
    # Non-spatial axes: whole while short and while one voxel of them fits in a block.
    block = [1] * ndim
    per_voxel = itemsize
    for a in range(ndim):
        if a not in spatial and lengths[a] <= WHOLE_AXIS_LIMIT and per_voxel * lengths[a] <= target_block:
            block[a] = lengths[a]
            per_voxel *= lengths[a]
    if not spatial:
        return tuple(block), tuple(block)
    edge_of = dict(zip(spatial, patch, strict=True))
    lens = [lengths[a] for a in spatial]
    ones = [1] * len(spatial)
    block_limits = [min(n, max(1, edge_of[a])) for n, a in zip(lens, spatial, strict=True)]
    thick = math.prod(min(MIN_BLOCK_EDGE, lim) for lim in block_limits)
    block_budget = min(BLOCK_BYTES // per_voxel, max(target_block // per_voxel, thick))
    b_sp = _grow(ones, block_limits, lens, ones, max(1, block_budget))
    # Chunks: whole multiples of the block, up to the axis length rounded up to blocks.
    chunk_limits = [-(-n // b) * b for n, b in zip(lens, b_sp, strict=True)]
    c_sp = _grow(b_sp, chunk_limits, lens, b_sp, max(1, chunk_bytes(caches) // per_voxel))
    chunk = list(block)
    for a, b, c in zip(spatial, b_sp, c_sp, strict=True):
        block[a], chunk[a] = b, c
    return tuple(chunk), tuple(block)


def default_compression(itemsize: int) -> tuple[str, int, list[str]]:
    """Codec, level and filters used when the caller gives no ``cparams`` (and, for 1-byte
    data, the data are not a label map: :func:`label_compression`)."""
    filters = BYTE_FILTERS if itemsize == 1 else DEFAULT_FILTERS
    return DEFAULT_CODEC, DEFAULT_CLEVEL, list(filters)


def label_compression() -> tuple[str, int, list[str]]:
    """Codec, level and filters for 1-byte label maps and masks: LZ4HC level 8, no filter.

    Measured on label maps and masks (``docs/performance.md``): files as small as with the
    bit shuffle at level 5 or smaller, patch reads in about half the time (nothing to
    un-shuffle, longer matches), writes 1.4-2 times as long. On 1-byte intensity images
    the bit shuffle makes files 20-30% smaller, so it stays their default.
    """
    return DEFAULT_CODEC, LABEL_CLEVEL, []


# C-Blosc2's limits (blosc2.h): a chunk it writes is at most BLOSC2_MAX_BUFFERSIZE bytes (the largest chunk a
# reader takes, less the 32-byte chunk header), a block at most BLOSC2_MAXBLOCKSIZE bytes, every edge an int32.
_WRITABLE_CHUNK_BYTES = MAX_CHUNK_BYTES - 32
_MAX_BLOCK_BYTES = 536_866_816
_MAX_EDGE = 2**31 - 1


def _within_limits(name: str, sizes: tuple[int, ...], itemsize: int, limit: int) -> None:
    """``ValueError`` for chunk/block edges C-Blosc2 cannot store (the save would fail much later)."""
    if any(v > _MAX_EDGE for v in sizes):
        raise ValueError(f"{name} entries must be at most {_MAX_EDGE:,} (an int32), got {sizes}")
    nbytes = math.prod(sizes) * itemsize
    if nbytes > limit:
        raise ValueError(
            f"{name} {sizes} holds {nbytes:,} bytes of {itemsize}-byte items; Blosc2 allows at most {limit:,}: "
            f"choose a smaller {name}"
        )


def _manual_sizes(name: str, sizes: Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    """``chunk_size``/``block_size`` as given: one positive integer per axis (``ValueError`` otherwise)."""
    if sizes is None:
        return None
    wrong = f"{name} must be a sequence of {ndim} positive integers (one per axis), got {sizes!r}"
    if isinstance(sizes, (str, bytes)) or hasattr(sizes, "__index__"):
        raise ValueError(wrong)
    try:
        found = tuple(operator.index(v) for v in sizes)
    except TypeError:
        raise ValueError(wrong) from None
    if len(found) != ndim or any(v < 1 for v in found):
        raise ValueError(f"{name} must have {ndim} positive entries, got {found}")
    return found


def choose_layout(
    shape: Sequence[int],
    itemsize: int,
    spatial_axes: Sequence[int],
    patch_size: PatchSize = "default",
    chunk_size: Sequence[int] | None = None,
    block_size: Sequence[int] | None = None,
    caches: Caches | None = None,
) -> LayoutChoice:
    """Decide the layout: manual sizes win, then the patch size, else Blosc2's own choice."""
    ndim = len(shape)
    empty = math.prod(shape) == 0  # Blosc2 would choose chunks of 0 along a zero-length axis
    if chunk_size is not None or block_size is not None:
        chunks = _manual_sizes("chunk_size", chunk_size, ndim)
        blocks = _manual_sizes("block_size", block_size, ndim)
        if chunks is not None and blocks is not None and any(b > c for b, c in zip(blocks, chunks, strict=True)):
            raise ValueError(f"block_size {blocks} must not exceed chunk_size {chunks} on any axis")
        if chunks is not None:
            _within_limits("chunk_size", chunks, itemsize, _WRITABLE_CHUNK_BYTES)
        if blocks is not None:
            _within_limits("block_size", blocks, itemsize, _MAX_BLOCK_BYTES)
        if empty and chunks is None:
            chunks = tuple(max(1, n, b) for n, b in zip(shape, blocks or (1,) * ndim, strict=True))
        return LayoutChoice("manual", chunks, blocks, None)
    patch = resolve_patch(patch_size, len(spatial_axes))
    if (patch is None or ndim == 0) and empty and ndim > 0:
        whole = tuple(max(1, n) for n in shape)
        return LayoutChoice("blosc2", whole, whole, None)
    if patch is None or ndim == 0:
        return LayoutChoice("blosc2", None, None, None)
    chunks, blocks = patch_layout(shape, itemsize, spatial_axes, patch, caches)
    return LayoutChoice("patch", chunks, blocks, patch)
