"""Write a Blosc2 NDArray into a new frame, recompressing its chunks on a thread pool.

Saving an image whose data are a Blosc2 NDArray (a file opened memory-mapped, or an
image compressed in memory) used to go through python-blosc2's ``NDArray.copy``
(C-Blosc2's ``b2nd_copy``), which does one of three things:

1. Same chunk and block shapes and "equal" compression parameters (codec, level,
   filters and their meta, type size, block size, dictionary; not the split mode nor
   the thread count): the compressed chunks are copied unchanged. Nothing is
   compressed, so there is nothing to do in parallel; :func:`copies_verbatim` tells
   this case apart and the caller keeps python-blosc2's copy.
2. Same chunk and block shapes, other compression parameters: every chunk is
   decompressed whole (padding included, in block order) and compressed again.
   :func:`write_ndarray` takes the compressed chunks out of the source on the calling
   thread and decompresses and compresses them on the pool.
3. Other chunk or block shapes: the array is rebuilt chunk by chunk from slices of
   the source. :func:`write_ndarray` decodes the source one slab (a run of whole
   target chunks along the first axis, at most :data:`mlarray.storage.stream.SLAB_BYTES`)
   at a time on the calling thread and compresses the slab's chunks on the pool.

The frames are those ``NDArray.copy`` writes (tests/test_parallel_write.py compares
the bytes), and the data section's digest is folded into the write.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import blosc2
import numpy as np

from mlarray.storage.compress import chunk_grid, chunk_regions, compress_chunks, write_chunks
from mlarray.storage.stream import slab_regions

_BYTEDELTA = int(blosc2.Filter.BYTEDELTA.value)
_MAX_FILTERS = 6


_C_DEFAULTS: dict[str, Any] = {
    "codec": blosc2.Codec.BLOSCLZ,
    "clevel": 5,
    "typesize": 8,
    "nthreads": 1,
    "blocksize": 0,
    "splitmode": blosc2.SplitMode.FORWARD_COMPAT_SPLIT,
    "filters": [blosc2.Filter.NOFILTER] * 5 + [blosc2.Filter.SHUFFLE],
    "filters_meta": [0] * 6,
}
"""C-Blosc2's default compression parameters: ``blosc2_schunk_copy`` compresses the
variable-length metalayers it copies with them."""


def _frame_params(cparams: Any, blocks: Sequence[int], itemsize: int) -> dict[str, Any]:
    """The target frame's compression parameters (``b2nd_copy`` compresses copied metalayers with them)."""
    params = dataclasses.asdict(_as_cparams(cparams))
    params.update(typesize=itemsize, blocksize=math.prod(blocks) * itemsize)
    return params


@functools.cache
def _defaults_for_all_metalayers() -> bool:
    """Whether ``NDArray.copy`` compresses copied metalayers with C-Blosc2's defaults whatever the layout.

    C-Blosc2 3.6 (python-blosc2 4.15) does; 3.3 compressed them with the target frame's
    parameters when the chunk or block shape changed. Asked once, of a copy in memory:
    with the defaults its metalayer is too short to compress and lies in the frame as it
    is, after a 32-byte chunk header whose fourth byte is the type size, 8; with the
    target's parameters (blocks of 2 bytes, type size 1) it does not.
    """
    marker = b"mlarray: which parameters?"
    params = {"codec": blosc2.Codec.LZ4, "clevel": 1, "typesize": 1, "filters": [blosc2.Filter.NOFILTER]}
    src = blosc2.asarray(np.zeros(4, dtype=np.uint8), chunks=(2,), blocks=(1,), cparams=params)
    src.schunk.vlmeta.set_vlmeta("probe", marker, typesize=1)
    frame = bytes(src.copy(chunks=(4,), blocks=(2,), cparams=params).schunk.to_cframe())
    at = frame.find(marker)
    return at >= 32 and frame[at - 32 + 3] == _C_DEFAULTS["typesize"]


def _as_cparams(cparams: Any) -> Any:
    return blosc2.CParams(**cparams) if isinstance(cparams, dict) else cparams


def _filters(cparams: Any, typesize: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Filters and their meta as C-Blosc2 holds them (six slots; python-blosc2's conversions applied)."""
    filters = [int(getattr(f, "value", f)) for f in cparams.filters]
    metas = [int(m) for m in cparams.filters_meta]
    filters += [0] * (_MAX_FILTERS - len(filters))
    metas += [0] * (_MAX_FILTERS - len(metas))
    for i, f in enumerate(filters):
        if f == _BYTEDELTA and typesize == 1:
            filters[i] = 0
        if metas[i] == 0 and filters[i] == _BYTEDELTA:
            metas[i] = typesize
        metas[i] &= 0xFF
    return tuple(filters), tuple(metas)


def copies_verbatim(src: Any, chunks: Sequence[int], blocks: Sequence[int], cparams: Any) -> bool:
    """Whether ``src.copy(chunks=..., blocks=..., cparams=...)`` keeps ``src``'s compressed chunks.

    C-Blosc2's ``blosc2_schunk_copy`` copies chunks unchanged when the layout is the
    same and the codec, level, dictionary use, type size, block size, filters and
    filter meta agree (the split mode and thread count do not count).
    """
    if tuple(src.chunks) != tuple(chunks) or tuple(src.blocks) != tuple(blocks):
        return False
    theirs, mine = _as_cparams(src.schunk.cparams), _as_cparams(cparams)
    itemsize = int(np.dtype(src.dtype).itemsize)
    return (
        int(theirs.typesize) == itemsize
        and int(theirs.blocksize) == math.prod(blocks) * itemsize
        and int(theirs.clevel) == int(mine.clevel)
        and int(getattr(theirs.codec, "value", theirs.codec)) == int(getattr(mine.codec, "value", mine.codec))
        and bool(theirs.use_dict) == bool(mine.use_dict)
        and _filters(theirs, itemsize) == _filters(mine, itemsize)
    )


def _decoded_chunks(src: Any) -> tuple[Iterator[bytes], Any]:
    """The source's compressed chunks (read on the calling thread) and how a worker decodes one."""
    dtype = np.dtype(src.dtype)

    def chunks() -> Iterator[bytes]:
        for i in range(src.schunk.nchunks):
            yield src.schunk.get_chunk(i)

    def decode(chunk: bytes) -> np.ndarray[Any, Any]:
        return np.frombuffer(blosc2.decompress2(chunk), dtype=dtype)

    return chunks(), decode


def _sliced_chunks(src: Any, chunks: Sequence[int], itemsize: int) -> Iterator[np.ndarray[Any, Any]]:
    """The target chunks' regions of ``src``, decoded one slab of whole chunks at a time."""
    shape = tuple(src.shape)
    for slab in slab_regions(shape, chunks, itemsize):
        values = src[slab]
        for _, box in chunk_regions(shape, chunks, slab):
            yield values[tuple(slice(b.start - s.start, b.stop - s.start) for b, s in zip(box, slab, strict=True))]


def write_ndarray(
    path: str | None,
    src: Any,
    chunks: Sequence[int],
    blocks: Sequence[int],
    cparams: Any,
    nthreads: int | None = None,
    *,
    mmap: bool = False,
) -> tuple[Any, str | None]:
    """Write the Blosc2 NDArray ``src`` with the given layout, compressing on ``nthreads`` threads.

    The case where python-blosc2 copies compressed chunks unchanged
    (:func:`copies_verbatim`) is the caller's; here every chunk is compressed again.
    The source's variable-length metalayers are copied after the chunks, as
    ``NDArray.copy`` copies them.

    Returns
    -------
    (blosc2.NDArray, str or None)
        The open array and the data section's digest (see
        :func:`~mlarray.storage.compress.write_chunks`).
    """
    shape, dtype = tuple(src.shape), np.dtype(src.dtype)
    nchunks = math.prod(chunk_grid(shape, chunks))
    if tuple(src.chunks) == tuple(chunks) and tuple(src.blocks) == tuple(blocks):
        parts, decode = _decoded_chunks(src)
        compressed = compress_chunks(parts, chunks, blocks, cparams, nthreads, nchunks=nchunks, prepare=decode)
    else:
        sliced = _sliced_chunks(src, chunks, dtype.itemsize)
        compressed = compress_chunks(sliced, chunks, blocks, cparams, nthreads, nchunks=nchunks)
    try:
        nd, digest = write_chunks(path, shape, dtype, chunks, blocks, cparams, compressed, mmap=mmap)
    finally:
        close = getattr(compressed, "close", None)
        if close is not None:
            close()  # stops the pool when writing failed half-way
    same_layout = tuple(src.chunks) == tuple(chunks) and tuple(src.blocks) == tuple(blocks)
    defaults = same_layout or _defaults_for_all_metalayers()
    meta_params = _C_DEFAULTS if defaults else _frame_params(cparams, blocks, dtype.itemsize)
    source_meta, target_meta = src.schunk.vlmeta, nd.schunk.vlmeta
    for name in source_meta.get_names():
        target_meta.set_vlmeta(name, source_meta.get_vlmeta(name), **meta_params)
    return nd, digest
