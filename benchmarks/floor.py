"""The decode floor of a patch read: C-Blosc2 decoding just the blocks a patch overlaps.

A patch read of an ``.mla`` file cannot cost less than decoding the compressed blocks
the patch overlaps, since a block is the smallest unit a Blosc2 stream can be decoded
in. :class:`DecodeFloor` measures that floor at given patch positions: every chunk a
patch touches is handed to ``blosc2_decompress_ctx`` with a block mask that leaves only
the touched blocks, which are decoded into one reused chunk-sized buffer. Nothing is
copied to a result, no result is allocated, and the only Python is two ctypes calls per
chunk. A read's time over the floor's is what its read path adds around the decoder;
the floor's time over NumPy memmap's is what the layout and codec cost before any read
path. Machines as noisy as a shared virtual machine need the two measured in turn, key
by key (:func:`paired`), not one after the other.

It also gives the overlap: how many voxels the touched blocks hold per voxel of the
patch (a block at the array's edge counts whole, as it is decoded whole).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlarray import MLArray
from mlarray.storage import libblosc2
from mlarray.storage.selection import plan

Key = tuple[Any, ...]


class DecodeFloor:
    """The blocks of ``path`` that each of ``keys`` overlaps, ready to be decoded again and again.

    Use as a context manager (the file stays open and mapped meanwhile). Raises
    ``RuntimeError`` when C-Blosc2 cannot be loaded from the python-blosc2 wheel or the
    file is not memory-mapped.
    """

    def __init__(self, path: str, keys: list[Key]) -> None:
        lib = libblosc2.LIB
        if lib is None:
            raise RuntimeError(f"no C-Blosc2 to measure with: {libblosc2.STATUS}")
        self._lib = lib
        self._worker = libblosc2.Worker(lib)  # a context of its own: the read path's are left alone
        self._image = MLArray.open(path)
        section = self._image._chunks
        assert section is not None, "an .mla file on disk has a data section"
        self._layout = lay = section.layout
        section.check_all()  # every chunk checked whole (spec 4.4.4-4.4.6) before C-Blosc2 sees it
        self._target = libblosc2.address(self._worker.buffer(lay.chunksize))
        self._keep: list[Any] = []  # the masks and the map the addresses point into
        self.jobs = [self._jobs(section, key) for key in keys]
        self.overlaps = [overlap(lay, key) for key in keys]

    def __enter__(self) -> DecodeFloor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._keep.clear()
        self._image.close()

    def decode(self, i: int) -> None:
        """Decode the blocks that key ``i`` overlaps."""
        lib, ctx, target, nbytes = self._lib, self._worker.ctx, self._target, self._layout.chunksize
        for address, size, mask, nblocks in self.jobs[i]:
            if lib.set_maskout(ctx, mask, nblocks) < 0:
                raise MemoryError("C-Blosc2 refused the block mask")
            done = lib.decompress(ctx, address, size, target, nbytes)
            if done != nbytes:
                raise RuntimeError(f"C-Blosc2 could not decode a chunk (code {done})")

    def _jobs(self, section: Any, key: Key) -> list[tuple[int, int, int, int]]:
        """``(address, size, mask address, nblocks)`` of each chunk ``key`` touches that C-Blosc2 decodes."""
        lay = section.layout
        selection = plan(lay.shape, lay.chunks, lay.blocks, key, lay.typesize)
        if selection is None:
            raise ValueError(f"not a patch key: {key!r}")
        found = section.chunk_refs([c.number for c in selection.chunks])
        if found is None:
            raise RuntimeError("the file is not memory-mapped")
        addresses, sizes, _pending, whole = found
        self._keep.append(whole)
        jobs = []
        for chunk, address, size in zip(selection.chunks, addresses.tolist(), sizes.tolist(), strict=True):
            if address == 0:
                continue  # zeros, NaN or one value: filled, never decoded
            mask = np.ones(selection.nblocks, dtype=np.bool_)
            mask[chunk.block_numbers(selection.blockgrid)] = False
            self._keep.append(mask)
            jobs.append((address, size, libblosc2.address(mask), selection.nblocks))
        return jobs


def _read_key(fn: Callable[[Key], Any], keys: list[Key], i: int) -> Any:
    return fn(keys[i])


def overlap(lay: Any, key: Key) -> float:
    """Voxels in the blocks ``key`` overlaps per voxel it selects (the read planner's own count of blocks)."""
    selection = plan(lay.shape, lay.chunks, lay.blocks, key)
    if selection is None:
        raise ValueError(f"not a patch key: {key!r}")
    blocks = sum(math.prod(len(span) for span in chunk.blocks) for chunk in selection.chunks)
    selected = math.prod(selection.shape)
    return blocks * math.prod(lay.blocks) / selected if selected else math.nan


def paired(path: str, keys: list[Key], others: dict[str, Callable[[Key], Any]]) -> dict[str, Any]:
    """The floor and each of ``others`` (name: read function) timed in turn on every key.

    Returns the floor's median milliseconds, the median overlap, and for each other
    reader its median milliseconds and the median of its per-key ratio to the floor.
    One untimed pass comes first (pages mapped, caches warm); the order of the readers
    alternates from key to key.
    """
    with DecodeFloor(path, keys) as floor:
        readers: dict[str, Callable[[int], Any]] = {"floor": floor.decode}
        for name, fn in others.items():
            readers[name] = functools.partial(_read_key, fn, keys)
        times: dict[str, list[float]] = {name: [] for name in readers}
        for timed in (False, True):
            for i in range(len(keys)):
                order = list(readers.items())
                if i % 2:
                    order.reverse()
                for name, read in order:
                    t0 = time.perf_counter()
                    read(i)
                    if timed:
                        times[name].append(time.perf_counter() - t0)
        result: dict[str, Any] = {
            "floor_ms": 1e3 * statistics.median(times["floor"]),
            "overlap": statistics.median(floor.overlaps),
        }
    for name in others:
        result[f"{name}_ms"] = 1e3 * statistics.median(times[name])
        result[f"{name}_over_floor"] = statistics.median(
            t / f for t, f in zip(times[name], times["floor"], strict=True)
        )
    return result
