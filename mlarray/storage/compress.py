"""Compress the chunks of an array on several threads and write them into a frame.

python-blosc2 writes a NumPy array one chunk at a time from one Python thread
(``NDArray.__setitem__`` per chunk); the threads it starts inside C-Blosc2 only
share the blocks of that one chunk, and the Python work between chunks runs alone.
Here each chunk is laid out in Blosc2's block order and compressed by
``blosc2.compress2`` (told to release the GIL: :func:`gil_released`) on a pool of
threads, several chunks at once; the calling thread appends the finished chunks to the
frame in order and feeds them to the SHA-256 of the data section as they pass, so the
digest needs no second read of the file (:func:`mlarray.storage.frame.folded_digest`).

LZ4 and LZ4HC chunks with a byte shuffle or no filter are compressed by mlarray's own
loop instead when it is built (:mod:`mlarray.storage.chunkcompress`: C-Blosc2's steps, but
LZ4HC's search skipped on noise-like streams a fast pass finds no match in).

The chunks are the bytes python-blosc2 would have written for the same array,
chunk and block shapes and compression parameters (same block order, same zero
padding of edge chunks): a file written here is byte for byte the file the serial
path writes (tests/test_parallel_write.py checks this). The one allowed difference is
a stream our loop stores raw where LZ4HC would have found matches the fast pass did
not (tests/test_chunkcompress.py checks that nothing else differs; none was found in
its trials or in the benchmark's volumes).

Reusable pieces: :func:`block_order` (one chunk's bytes in block order),
:func:`compress_chunks` (chunk arrays in, compressed chunk bytes out, in order, on a
thread pool) and :func:`write_chunks` (an uninitialized frame filled chunk by chunk
from any iterable of compressed chunks, with the folded digest). This module knows
nothing of the header or of the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import ResourceLimitError
from mlarray.storage import chunkcompress
from mlarray.storage.frame import folded_digest
from mlarray.versions import MAX_CHUNKS

MEMCPYED = 0x02
"""Bit 1 of byte 2 (flags) of a chunk header: the chunk is stored uncompressed."""
SPECIAL_MASK = 0x70
"""Bits 4-6 of byte 31 of an extended chunk header: a special-value chunk (stored in the index only)."""
HELD_MIN_CHUNKS = 1024
"""Frames of at least this many chunks are filled in memory first (:func:`write_chunks`)."""
HELD_BYTES = 256 * 1024 * 1024
"""At most this many compressed bytes are held in memory before they go to the file."""


def chunk_grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """Chunks per axis."""
    return tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))


Region = tuple[slice, ...]


def check_chunk_count(shape: Sequence[int], chunks: Sequence[int], path: str | None = None) -> None:
    """``RESOURCE_LIMIT`` for a layout of more chunks than a file may hold (spec 4.10: readers refuse it).

    Checked before a frame is created: such a write would run for hours to make a file no
    reader opens.
    """
    count = math.prod(chunk_grid(shape, chunks))
    if count > MAX_CHUNKS:
        raise ResourceLimitError(
            f"the layout makes {count:,} chunks, more than a file may hold ({MAX_CHUNKS:,}): "
            "choose larger chunk_size (or patch_size)",
            path=path,
        )


def chunk_regions(
    shape: Sequence[int], chunks: Sequence[int], region: Region | None = None
) -> Iterator[tuple[int, Region]]:
    """``(chunk number, chunk region)`` of every chunk inside ``region``, in C order over the chunk grid.

    ``region`` (default: the whole array) must be aligned to the chunk grid; the chunks
    of the whole array come in chunk-number order.
    """
    grid = chunk_grid(shape, chunks)
    if region is None:
        spans = [range(g) for g in grid]
    else:
        spans = [range(r.start // c, -(-r.stop // c)) for r, c in zip(region, chunks, strict=True)]
    for coords in itertools.product(*spans):
        number = 0
        for k, g in zip(coords, grid, strict=True):
            number = number * g + k
        box = tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(coords, chunks, shape, strict=True))
        yield number, box


def block_order(
    part: np.ndarray[Any, Any], chunks: Sequence[int], blocks: Sequence[int], scratch: dict[str, Any] | None = None
) -> np.ndarray[Any, Any]:
    """The bytes of one chunk as Blosc2 stores them before compression.

    ``part`` is the chunk's region of the array (an edge chunk may be smaller than
    ``chunks``). The chunk is padded with zeros to whole blocks (the "extended" chunk
    shape) and its blocks follow each other in C order, each block in C order.
    ``scratch`` (a dict owned by one thread) keeps the buffers of a full chunk for the
    next call: the result is then only valid until that call.

    Returns
    -------
    numpy.ndarray
        A C-contiguous array of the extended chunk's size, whose bytes are the chunk.
    """
    ext = [-(-c // b) * b for c, b in zip(chunks, blocks, strict=True)]
    nblocks = [e // b for e, b in zip(ext, blocks, strict=True)]
    if list(part.shape) == ext and all(n == 1 for n in nblocks[1:]) and part.flags.c_contiguous:
        return part  # blocks are runs of whole rows: C order is already block order, nothing to copy
    nd = len(ext)
    split = [n for pair in zip(nblocks, blocks, strict=True) for n in pair]
    order = [2 * i for i in range(nd)] + [2 * i + 1 for i in range(nd)]
    if list(part.shape) != ext:
        padded = np.zeros(ext, dtype=part.dtype)
        padded[tuple(slice(0, n) for n in part.shape)] = part
        part = padded
    elif scratch is not None:
        # A full chunk: first a plain copy out of the array (long runs), then the reordering
        # within the chunk, both into buffers reused from chunk to chunk (no fresh pages).
        key = (part.dtype.str, *ext)
        if scratch.get("key") != key:
            scratch.update(key=key, stage=np.empty(ext, part.dtype), out=np.empty([*nblocks, *blocks], part.dtype))
        np.copyto(scratch["stage"], part)
        np.copyto(scratch["out"], scratch["stage"].reshape(split).transpose(order))
        out: np.ndarray[Any, Any] = scratch["out"]
        return out
    out = np.empty([*nblocks, *blocks], dtype=part.dtype)
    np.copyto(out, part.reshape(split).transpose(order))
    return out


def chunk_cparams(cparams: Any, blocks: Sequence[int], itemsize: int, nthreads: int = 1) -> Any:
    """The parameters ``blosc2.compress2`` needs to compress one chunk as a frame with ``blocks`` holds it."""
    if isinstance(cparams, dict):
        cparams = blosc2.CParams(**cparams)
    return dataclasses.replace(
        cparams, typesize=itemsize, blocksize=math.prod(blocks) * itemsize, nthreads=max(1, nthreads)
    )


def default_threads() -> int:
    """Threads used for compressing: one per core (``blosc2.nthreads`` follows the core count)."""
    return max(1, int(blosc2.nthreads or os.cpu_count() or 1))


_gil_lock = threading.Lock()
_gil_users = 0
_gil_before = False


@contextlib.contextmanager
def gil_released() -> Iterator[None]:
    """Let ``blosc2.compress2``/``decompress2`` run without the GIL while the block runs.

    python-blosc2 holds the GIL while it compresses unless ``blosc2.set_releasegil(True)``
    was called (its default is ``False``), which serializes compressing threads. The flag
    is process-wide: it is set while at least one pool runs and then restored. Only
    functions that work on caller-owned buffers (``compress``, ``compress2``,
    ``decompress2``) and the super-chunk write methods consult it; NDArray reads never
    release the GIL either way.
    """
    global _gil_users, _gil_before
    with _gil_lock:
        if _gil_users == 0:
            _gil_before = bool(blosc2.set_releasegil(True))
        _gil_users += 1
    try:
        yield
    finally:
        with _gil_lock:
            _gil_users -= 1
            if _gil_users == 0:
                blosc2.set_releasegil(_gil_before)


def compress_chunks(
    parts: Iterable[Any],
    chunks: Sequence[int],
    blocks: Sequence[int],
    cparams: Any,
    nthreads: int | None = None,
    *,
    nchunks: int | None = None,
    prepare: Callable[[Any], np.ndarray[Any, Any]] | None = None,
) -> Iterator[bytes]:
    """Compress chunk regions on ``nthreads`` threads; yield the compressed chunks in input order.

    Parameters
    ----------
    parts : iterable
        Each chunk's region of the array (NumPy arrays), in chunk-number order (edge
        chunks may be smaller than ``chunks``; they are padded as Blosc2 pads them), or
        whatever ``prepare`` takes. Consumed lazily:
        at most about two chunks per thread are in flight, so a streaming source
        (a file read chunk by chunk) keeps its memory bounded.
    chunks, blocks : sequence of int
        The frame's chunk and block shapes.
    cparams : blosc2.CParams or dict
        Codec, level and filters (``typesize``, ``blocksize`` and ``nthreads`` are set here).
    nthreads : int, optional
        Threads compressing at once (default: one per core). With fewer chunks than
        threads, each chunk is compressed with several C-Blosc2 threads instead.
    nchunks : int, optional
        How many parts there are, when known (lets a single chunk use every thread).
    prepare : callable, optional
        Turns a part into the chunk's bytes in block order (an array of the storage
        dtype), on the compressing thread. Default: :func:`block_order` of the part; a
        source that already holds whole chunks in block order (a Blosc2 chunk of the
        same layout, decompressed) passes its own.

    Yields
    ------
    bytes
        One compressed Blosc2 chunk per part. An exception in a worker is raised here,
        and the chunks not yet started are cancelled.
    """
    threads = default_threads() if nthreads is None else max(1, nthreads)
    workers = threads if nchunks is None else max(1, min(threads, nchunks))
    inner = max(1, threads // workers)
    plans: dict[int, tuple[Any, chunkcompress.ChunkCompressor | None]] = {}
    local = threading.local()

    def compress(part: np.ndarray[Any, Any]) -> bytes:
        if prepare is not None:
            buf = prepare(part)
        else:
            if not hasattr(local, "scratch"):
                local.scratch = {}
            buf = block_order(part, chunks, blocks, local.scratch)
        size = buf.dtype.itemsize
        if size not in plans:  # both made before either is seen by another thread
            chosen = chunk_cparams(cparams, blocks, size, nthreads=inner)
            plans[size] = chosen, chunkcompress.compressor(chosen) if inner == 1 else None
        chosen, mine = plans[size]
        if mine is not None:
            done = mine(buf)
            if done is not None:
                return done
        out: bytes = blosc2.compress2(buf, cparams=chosen)
        if out[2] & MEMCPYED and inner == 1:
            # One C-Blosc2 thread gives up on a chunk as soon as a block does not shrink and
            # stores it uncompressed; several threads keep the blocks that did shrink.
            threaded: bytes = blosc2.compress2(buf, cparams=dataclasses.replace(chosen, nthreads=2))
            if len(threaded) < len(out):
                return threaded
        return out

    if workers == 1:
        for part in parts:
            yield compress(part)
        return
    pending: deque[Future[bytes]] = deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlarray-compress")
    with gil_released():
        try:
            source = iter(parts)
            for part in source:
                pending.append(executor.submit(compress, part))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class ChunkDigest:
    """SHA-256 of the data chunks a frame stores, fed in the order they are written.

    Special-value chunks (zeros, NaN, ...) live in the chunk index only, so they are
    not part of the chunks area and are not hashed; their positions are remembered
    so the index can be checked against what was written.
    """

    sha: Any = dataclasses.field(default_factory=hashlib.sha256)
    sizes: list[int] = dataclasses.field(default_factory=list)
    """Bytes each chunk occupies in the chunks area (0 for a special chunk)."""

    def add(self, chunk: bytes) -> None:
        """Account for the next chunk written."""
        special = len(chunk) >= 32 and chunk[2] & 0x05 == 0x05 and bool(chunk[31] & SPECIAL_MASK)
        if special:
            self.sizes.append(0)
        else:
            self.sha.update(chunk)
            self.sizes.append(len(chunk))


def write_chunks(
    path: str | None,
    shape: Sequence[int],
    dtype: np.dtype[Any],
    chunks: Sequence[int],
    blocks: Sequence[int],
    cparams: Any,
    compressed: Iterable[bytes],
    *,
    mmap: bool = False,
    on_chunk: Callable[[int], None] | None = None,
    dparams: Any = None,
) -> tuple[Any, str | None]:
    """Create the frame ``path`` and fill it with ``compressed`` (one chunk per number, in order).

    With ``path=None`` the NDArray is built in memory (sparse, as python-blosc2 builds
    in-memory arrays) and no digest is computed. A frame of :data:`HELD_MIN_CHUNKS` chunks
    or more is filled in memory too, and written to ``path`` when it is full or holds
    :data:`HELD_BYTES` (:func:`held_to_file`): the same bytes, in time linear in the chunks.

    Returns
    -------
    (blosc2.NDArray, str or None)
        The open array and the SHA-256 of its data section (spec 4.9) computed from the
        chunks as they were written; ``None`` when the frame on disk does not hold
        exactly those chunks in that order (the caller then hashes the file), or in memory.

    Raises
    ------
    ValueError
        ``compressed`` yields more or fewer chunks than the frame has.
    """
    kwargs: dict[str, Any] = {"chunks": tuple(chunks), "blocks": tuple(blocks), "cparams": cparams}
    if dparams is not None:
        kwargs["dparams"] = dparams
    total = math.prod(chunk_grid(shape, chunks)) if all(shape) else 0
    held = path is not None and total >= HELD_MIN_CHUNKS
    if path is not None and not held:
        kwargs.update(urlpath=path, mode="w")
        if mmap:
            kwargs["mmap_mode"] = "w+"
    nd = blosc2.uninit(tuple(shape), dtype=dtype, **kwargs)
    total = nd.schunk.nchunks
    digest = ChunkDigest()
    written = held_bytes = 0
    for chunk in compressed:
        if written >= total:
            raise ValueError(f"more chunks than the frame holds ({total})")
        digest.add(chunk)
        nd.schunk.update_chunk(written, chunk)
        if on_chunk is not None:
            on_chunk(written)
        written += 1
        if held:
            held_bytes += len(chunk)
            if held_bytes > HELD_BYTES:
                nd, held = held_to_file(nd, path, mmap, cparams, dparams), False
    if written != total:
        raise ValueError(f"{written} chunks written, the frame holds {total}")
    if held:
        nd = held_to_file(nd, path, mmap, cparams, dparams)
    return nd, None if path is None else folded_digest(path, digest.sha, digest.sizes)


def held_to_file(nd: Any, path: str | None, mmap: bool = False, cparams: Any = None, dparams: Any = None) -> Any:
    """Write an in-memory frame to ``path`` and reopen it there for writing.

    C-Blosc2 rewrites a file frame's whole chunk index after every chunk it stores, so
    filling a frame of ``n`` chunks on disk costs time in ``n**2``; a frame in memory
    (sparse) stores a chunk without that, and saving it writes the same bytes the chunk by
    chunk writes to the file would have (tests/test_parallel_write.py). Chunks still to
    come are then stored in the file as before.
    """
    assert path is not None
    blosc2.remove_urlpath(path)  # as mode="w" replaces a file
    nd.save(path, contiguous=True)
    kwargs: dict[str, Any] = {"mode": "a", "cparams": nd.schunk.cparams if cparams is None else cparams}
    if mmap:
        kwargs["mmap_mode"] = "r+"
    if dparams is not None:
        kwargs["dparams"] = dparams
    return blosc2.open(path, **kwargs)


def write_array(
    path: str | None,
    data: np.ndarray[Any, Any],
    chunks: Sequence[int],
    blocks: Sequence[int],
    cparams: Any,
    nthreads: int | None = None,
    *,
    mmap: bool = False,
    dparams: Any = None,
) -> tuple[Any, str | None]:
    """Write a NumPy array as a Blosc2 NDArray frame, compressing its chunks in parallel.

    ``path=None`` builds the NDArray in memory (with ``dparams``, if given).
    Returns the open NDArray and the data section's digest (see :func:`write_chunks`).
    """
    parts = (data[region] for _, region in chunk_regions(data.shape, chunks))
    nchunks = math.prod(chunk_grid(data.shape, chunks))
    compressed = compress_chunks(parts, chunks, blocks, cparams, nthreads, nchunks=nchunks)
    try:
        return write_chunks(
            path, data.shape, data.dtype, chunks, blocks, cparams, compressed, mmap=mmap, dparams=dparams
        )
    finally:
        close = getattr(compressed, "close", None)
        if close is not None:
            close()  # stops the pool when writing failed half-way
