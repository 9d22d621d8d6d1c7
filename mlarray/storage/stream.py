"""Write a frame slab by slab, so arrays larger than memory can be written.

A save from memory hands the whole array to Blosc2. Conversion of a file that does not
fit in memory cannot: its data arrive one *slab* at a time (a run of whole chunks along
one axis, the full extent of every other axis). :class:`SlabWriter` creates the frame
empty in the temporary file of an atomic save, compresses each chunk of a slab as it
arrives (each chunk is written exactly once, so the frame holds no stale bytes), and
finally writes the header with the digest of the finished data section. Peak memory is
the slab being written plus about one chunk per Blosc2 thread.

Chunks are written in C order within each slab, exactly as
:func:`blosc2.asarray` writes a whole array; slabs along axis 0 therefore give the same
file, byte for byte, as a save from memory. Slabs along another axis (the file order of
a Fortran-ordered source such as NIfTI) give the same compressed chunks in another order
in the data section. Nothing here knows about formats or the CLI.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import InvalidArgumentError
from mlarray.models import Meta
from mlarray.storage.io import write_header

SLAB_BYTES = 64 << 20
"""Default size budget of one slab: slabs are as many whole chunks thick as fit, at least one."""

Region = tuple[slice, ...]


def slab_regions(
    shape: Sequence[int], chunks: Sequence[int], itemsize: int, *, axis: int = 0, max_bytes: int | None = None
) -> list[Region]:
    """Slabs covering an array in order along ``axis``: each a run of whole chunks along ``axis``.

    A slab spans the full extent of every other axis and is as thick as fits in
    ``max_bytes`` (default :data:`SLAB_BYTES`, read when called; at least one chunk).
    """
    shape = tuple(int(s) for s in shape)
    if not shape or math.prod(shape) == 0:
        return []
    if not -len(shape) <= axis < len(shape):
        raise InvalidArgumentError(f"axis {axis} is out of range for {len(shape)} dimensions")
    axis %= len(shape)
    per_chunk_row = math.prod(shape) // shape[axis] * chunks[axis] * itemsize
    budget = SLAB_BYTES if max_bytes is None else max_bytes
    step = chunks[axis] * max(1, budget // max(per_chunk_row, 1))
    full = [slice(0, n) for n in shape]
    out = []
    for start in range(0, shape[axis], step):
        region = list(full)
        region[axis] = slice(start, min(start + step, shape[axis]))
        out.append(tuple(region))
    return out


def chunk_regions(shape: Sequence[int], chunks: Sequence[int], region: Region) -> Iterator[tuple[int, Region]]:
    """``(chunk number, chunk region)`` of every chunk inside ``region`` (chunk-aligned), in C order."""
    grid = [-(-n // c) for n, c in zip(shape, chunks, strict=True)]
    spans = [range(r.start // c, -(-r.stop // c)) for r, c in zip(region, chunks, strict=True)]
    for coords in itertools.product(*spans):
        number = 0
        for k, g in zip(coords, grid, strict=True):
            number = number * g + k
        box = tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(coords, chunks, shape, strict=True))
        yield number, box


class SlabWriter:
    """An empty frame in ``tmp`` that is filled slab by slab, then given its header.

    Parameters
    ----------
    tmp : str
        The file to create (the temporary file of :func:`~mlarray.storage.io.atomic_target`).
    shape, dtype : array shape and storage dtype
    chunks, blocks : sequence of int or None
        The layout; ``None`` lets Blosc2 choose (as a save from memory does).
    cparams : blosc2.CParams
        Compression parameters.
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
    ) -> None:
        kwargs: dict[str, Any] = {"urlpath": tmp, "mode": "w", "cparams": cparams}
        if chunks is not None:
            kwargs["chunks"] = tuple(chunks)
        if blocks is not None:
            kwargs["blocks"] = tuple(blocks)
        self.path = tmp
        self.nd: Any = blosc2.empty(tuple(shape), dtype=np.dtype(dtype), **kwargs)
        self.shape: tuple[int, ...] = tuple(self.nd.shape)
        self.chunks: tuple[int, ...] = tuple(self.nd.chunks)
        self.dtype = np.dtype(self.nd.dtype)
        self._behaved = bool(blosc2.are_partitions_behaved(self.shape, self.chunks, tuple(self.nd.blocks)))
        self._written: set[int] = set()
        self.nchunks = math.prod(-(-n // c) for n, c in zip(self.shape, self.chunks, strict=True))

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
        for number, box in chunk_regions(self.shape, self.chunks, region):
            if number in self._written:
                raise InvalidArgumentError(f"chunk {number} was already written")
            local = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region, strict=True))
            part = np.require(values[local], dtype=self.dtype, requirements="C")
            if self._behaved:  # the whole chunk is this run of bytes (the path blosc2.asarray takes)
                self.nd.schunk.update_data(number, part, copy=False)
            else:
                self.nd[box] = part
            self._written.add(number)

    def finish(self, meta: Meta) -> Any:
        """Write the header (its ``integrity`` set to the digest of the data section); return the NDArray.

        Raises
        ------
        InvalidArgumentError
            Some chunk was never written.
        """
        if len(self._written) != self.nchunks:
            raise InvalidArgumentError(f"{self.nchunks - len(self._written)} chunks were never written")
        write_header(self.nd, meta, digest_of=self.path)
        return self.nd
