"""Write a frame slab by slab, so arrays larger than memory can be written.

A save from memory hands the whole array to Blosc2. Conversion of a file that does not
fit in memory cannot: its data arrive one *slab* at a time (a box of whole chunks: a run of them along
one axis and the full extent of every other axis, or cut further along axis 0 when one
chunk row is over the budget). :class:`SlabWriter` creates the frame
empty in the temporary file of an atomic save, compresses each chunk of a slab as it
arrives, on a thread pool (:mod:`mlarray.storage.compress`; each chunk is written
exactly once, so the frame holds no stale bytes), and finally writes the header with
the digest of the finished data section. Peak memory is the slab being written plus
about two chunks per compressing thread.

Chunks are written in C order within each slab, as a save from memory writes a whole
array; slabs along axis 0 therefore give the same file, byte for byte, as a save from
memory. Slabs along another axis (the file order of a Fortran-ordered source such as
NIfTI) give the same compressed chunks in another order in the data section. Nothing
here knows about formats or the CLI.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import InvalidArgumentError
from mlarray.models import Meta
from mlarray.storage import compress
from mlarray.storage.compress import (
    ChunkDigest,
    Region,
    check_chunk_count,
    chunk_grid,
    chunk_regions,
    compress_chunks,
)
from mlarray.storage.frame import folded_digest
from mlarray.storage.io import write_header

SLAB_BYTES = 64 << 20
"""Default size budget of one slab: slabs are as many whole chunks thick as fit, at least one."""

__all__ = ["SLAB_BYTES", "Region", "SlabWriter", "chunk_regions", "slab_regions"]


def slab_regions(
    shape: Sequence[int], chunks: Sequence[int], itemsize: int, *, axis: int = 0, max_bytes: int | None = None
) -> list[Region]:
    """Slabs covering an array in order along ``axis``: each a box of whole chunks.

    A slab is as many whole chunks thick along ``axis`` as fit in ``max_bytes`` (default
    :data:`SLAB_BYTES`, read when called; at least one chunk) and spans the full extent of
    every other axis. Along axis 0, where a single chunk row does not fit, slabs are cut
    further the same way (:func:`c_order_regions`): a slab is then one chunk thick along
    the leading axes and a run of chunks along the next, so it holds at most the budget
    or a single chunk, and its chunks are still consecutive in the frame.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or math.prod(shape) == 0:
        return []
    if not -len(shape) <= axis < len(shape):
        raise InvalidArgumentError(f"axis {axis} is out of range for {len(shape)} dimensions")
    axis %= len(shape)
    budget = SLAB_BYTES if max_bytes is None else max_bytes
    if axis == 0:
        return c_order_regions(shape, chunks, itemsize, budget)
    per_chunk_row = math.prod(shape) // shape[axis] * chunks[axis] * itemsize
    step = chunks[axis] * max(1, budget // max(per_chunk_row, 1))
    full = [slice(0, n) for n in shape]
    out = []
    for start in range(0, shape[axis], step):
        region = list(full)
        region[axis] = slice(start, min(start + step, shape[axis]))
        out.append(tuple(region))
    return out


def c_order_regions(shape: Sequence[int], chunks: Sequence[int], itemsize: int, budget: int) -> list[Region]:
    """Boxes of whole chunks covering an array in chunk-number (C) order, each within ``budget`` bytes.

    The box is cut along the first axis ``d`` where a run one chunk thick along ``d`` (one
    chunk along every axis before it, the full extent of every axis after it) fits in
    ``budget`` (the last axis when none does): one chunk along the axes before ``d``, as
    many chunks along ``d`` as fit (at least one), everything after ``d``. The chunks of
    each box, and the boxes one after the other, are numbered consecutively.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    lead = 1  # elements of one chunk along each axis before d
    d = 0
    for d in range(ndim):
        run = lead * chunks[d] * math.prod(shape[d + 1 :]) * itemsize
        if run <= budget or d == ndim - 1:
            break
        lead *= min(chunks[d], shape[d])
    run = lead * chunks[d] * math.prod(shape[d + 1 :]) * itemsize
    step = chunks[d] * max(1, budget // max(run, 1))
    grid = [range(0, n, c) for n, c in zip(shape[:d], chunks[:d], strict=True)]
    out: list[Region] = []
    for origin in itertools.product(*grid):
        prefix = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, chunks, shape, strict=False))
        for start in range(0, shape[d], step):
            rest = tuple(slice(0, n) for n in shape[d + 1 :])
            out.append((*prefix, slice(start, min(start + step, shape[d])), *rest))
    return out


class SlabWriter:
    """An uninitialized frame in ``tmp`` that is filled slab by slab, then given its header.

    The chunks of each slab are compressed on a thread pool by
    :func:`~mlarray.storage.compress.compress_chunks` (a few chunks in flight), exactly
    as a save from memory compresses them. A frame of many chunks
    (:data:`~mlarray.storage.compress.HELD_MIN_CHUNKS`) is filled in memory until its
    chunks hold a slab's budget, then written to ``tmp`` (the same bytes; C-Blosc2 rewrites
    a file frame's chunk index after every chunk).

    Parameters
    ----------
    tmp : str
        The file to create (the temporary file of :func:`~mlarray.storage.io.atomic_target`).
    shape, dtype : array shape and storage dtype
    chunks, blocks : sequence of int or None
        The layout; ``None`` lets Blosc2 choose (as a save from memory does).
    cparams : blosc2.CParams
        Compression parameters.
    nthreads : int, optional
        Threads compressing at once (default: one per core).
    """

    def __init__(
        self,
        tmp: str,
        shape: Sequence[int],
        dtype: Any,
        *,
        chunks: Sequence[int] | None,
        blocks: Sequence[int] | None,
        cparams: Any,
        nthreads: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"cparams": cparams}
        if chunks is not None:
            kwargs["chunks"] = tuple(chunks)
        if blocks is not None:
            kwargs["blocks"] = tuple(blocks)
        self.path, self.cparams, self.nthreads = tmp, cparams, nthreads
        if chunks is not None:
            check_chunk_count(shape, chunks)
        # many chunks: filled in memory first (compress.held_to_file), as a save from memory is,
        # until the compressed chunks held there reach a slab's budget
        total = math.prod(chunk_grid(shape, chunks)) if chunks is not None and all(shape) else 0
        self._held: int | None = 0 if total >= compress.HELD_MIN_CHUNKS else None
        if self._held is None:
            kwargs.update(urlpath=tmp, mode="w")
        self.nd: Any = blosc2.uninit(tuple(shape), dtype=np.dtype(dtype), **kwargs)
        if chunks is None:
            check_chunk_count(self.nd.shape, self.nd.chunks)
        self.shape: tuple[int, ...] = tuple(self.nd.shape)
        self.chunks: tuple[int, ...] = tuple(self.nd.chunks)
        self.blocks: tuple[int, ...] = tuple(self.nd.blocks)
        self.dtype = np.dtype(self.nd.dtype)
        self.nchunks = math.prod(chunk_grid(self.shape, self.chunks))
        self._written: set[int] = set()
        self._digest: ChunkDigest | None = ChunkDigest()
        """The data section's digest folded into the write while chunks come in number order."""

    def slabs(self, *, axis: int = 0, max_bytes: int | None = None) -> list[Region]:
        """The slabs to write, in order (see :func:`slab_regions`)."""
        return slab_regions(self.shape, self.chunks, self.dtype.itemsize, axis=axis, max_bytes=max_bytes)

    def write(self, region: Region, values: Any) -> None:
        """Compress and write the chunks of ``region`` (chunk-aligned) from ``values`` (its contents).

        Raises
        ------
        InvalidArgumentError
            ``region`` is not aligned to the chunk grid, ``values`` has another shape, or a
            chunk was already written.
        """
        region = tuple(slice(r.start, r.stop) for r in region)
        expected = tuple(r.stop - r.start for r in region)
        values = np.asarray(values)
        if values.shape != expected:
            raise InvalidArgumentError(f"a slab of shape {expected} got values of shape {values.shape}")
        for r, c, n in zip(region, self.chunks, self.shape, strict=True):
            if r.start % c or (r.stop % c and r.stop != n):
                raise InvalidArgumentError(f"the region {region} is not aligned to the chunks {self.chunks}")
        boxes = list(chunk_regions(self.shape, self.chunks, region))
        if any(number in self._written for number, _ in boxes):
            raise InvalidArgumentError("a chunk of this region was already written")

        def local(box: Region) -> Region:
            return tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region, strict=True))

        parts = (np.asarray(values[local(box)], self.dtype) for _, box in boxes)
        compressed = compress_chunks(parts, self.chunks, self.blocks, self.cparams, self.nthreads, nchunks=len(boxes))
        try:
            for (number, _), chunk in zip(boxes, compressed, strict=True):
                if self._digest is not None:
                    if number == len(self._written):
                        self._digest.add(chunk)
                    else:
                        self._digest = None  # out of number order: the file is hashed at the end
                self.nd.schunk.update_chunk(number, chunk)
                self._written.add(number)
                if self._held is not None:
                    self._held += len(chunk)
                    if self._held > min(compress.HELD_BYTES, SLAB_BYTES):  # at most a slab's worth more memory
                        self._to_file()
        finally:
            close = getattr(compressed, "close", None)
            if close is not None:
                close()  # stops the pool if writing failed half-way

    def _to_file(self) -> None:
        """Write the frame held in memory to the file; the chunks still to come go there directly."""
        self.nd, self._held = compress.held_to_file(self.nd, self.path, cparams=self.cparams), None

    def finish(self, meta: Meta) -> Any:
        """Write the header (its ``integrity`` set to the digest of the data section); return the NDArray.

        Raises
        ------
        InvalidArgumentError
            Some chunk was never written.
        """
        if len(self._written) != self.nchunks:
            raise InvalidArgumentError(f"{self.nchunks - len(self._written)} chunks were never written")
        if self._held is not None:
            self._to_file()
        digest = None
        if self._digest is not None:
            digest = folded_digest(self.path, self._digest.sha, self._digest.sizes)
        write_header(self.nd, meta, digest_of=self.path, digest=digest)
        return self.nd
