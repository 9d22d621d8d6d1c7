"""Compress a data chunk with mlarray's own loop, which skips LZ4HC's search on streams that cannot shrink.

C-Blosc2 compresses every stream of every block with the codec it is given and stores a
stream as it is when the codec cannot shrink it. With LZ4HC (the default codec) the
search for matches in such a stream is spent in vain; on noisy intensities and floats a
third to a half of the streams are stored raw, and their search is a third to a half of a
save's compression time. ``mla_compress_chunk`` (``csrc/compress.c``) takes the same steps
as C-Blosc2 with one thread, but first runs a fast LZ4 pass over each stream and stores the
stream raw at once when that pass finds no match in it (its output as long as all
literals) and its bytes are spread like noise (LZ4HC finds matches the fast pass skips in
streams of few byte values). The chunks are C-Blosc2's byte for byte (checked here on a sample for each set
of parameters before the loop is used, and by the tests) unless LZ4HC would find matches
in a stream where the fast pass found none: not one stream of the benchmark's four
volumes (see ``docs/performance.md``).

Used by :func:`mlarray.storage.compress.compress_chunks` for LZ4 and LZ4HC chunks with a
byte shuffle or no filter, when the compiled helper and C-Blosc2's LZ4 functions are
there; everything else, and a chunk that would not shrink as a whole, goes to
``blosc2.compress2`` as before.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import threading
from typing import Any

import blosc2
import numpy as np

from mlarray.storage import blockcopy, libblosc2
from mlarray.storage.blockcopy import HELPER
from mlarray.storage.fastread import on_cache_line

PROBE_ACCELERATION = 4
"""Acceleration of the fast LZ4 pass (LZ4's own scale: higher skips more positions)."""
KEEP = 64 << 20
"""A thread keeps its output buffer between chunks up to this size."""
SHUFFLE = 1
HC = 2
PROBE = 4
"""Mode bits of ``mla_compress_chunk``."""

_local = threading.local()


def _status() -> str:
    if HELPER is None:
        return f"python-blosc2 (no compiled loop: {blockcopy.STATUS})"
    if libblosc2.LIB is None or libblosc2.LIB.lz4 is None:
        return "python-blosc2 (C-Blosc2's LZ4 functions were not found)"
    return "compiled chunk compressor for LZ4 and LZ4HC chunks with a byte shuffle or none; others python-blosc2"


STATUS = _status()
"""Which compressor saves use, in a sentence (``mlarray --version`` prints it)."""


@dataclasses.dataclass(frozen=True)
class ChunkCompressor:
    """Compresses chunks of one set of parameters (one item size and block size)."""

    header: bytes
    """The 32-byte header C-Blosc2 wrote for these parameters (nbytes, blocksize, cbytes rewritten)."""
    typesize: int
    blocksize: int
    mode: int
    level: int

    def __call__(self, chunk: np.ndarray[Any, Any], probe: bool = True) -> bytes | None:
        """The compressed chunk of ``chunk`` (C-contiguous, whole blocks), or ``None`` for C-Blosc2 to do."""
        assert HELPER is not None and libblosc2.LIB is not None and libblosc2.LIB.lz4 is not None
        table = libblosc2.LIB.lz4
        nbytes = int(chunk.nbytes)
        if nbytes % self.blocksize or not chunk.flags.c_contiguous:
            return None
        work, out = _buffers(int(HELPER.compress_workspace(table.ctypes.data, self.blocksize)), nbytes + 32)
        mode = self.mode if probe else self.mode & ~PROBE
        size = HELPER.compress_chunk(
            table.ctypes.data,
            self.header,
            chunk.ctypes.data,
            nbytes,
            self.typesize,
            self.blocksize,
            mode,
            self.level,
            PROBE_ACCELERATION,
            work.ctypes.data,
            work.nbytes,
            out.ctypes.data,
        )
        if size < 0:
            raise RuntimeError(f"mlarray's chunk compressor failed (code {size})")
        return out[:size].tobytes() if size > 0 else None


def _buffers(work_size: int, out_size: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """This thread's workspace (64-byte aligned) and output buffer, grown as needed."""
    work: np.ndarray[Any, Any] | None = getattr(_local, "work", None)
    if work is None or work.nbytes < work_size:
        work = _local.work = on_cache_line((work_size,), np.dtype(np.uint8), np.empty)
    out: np.ndarray[Any, Any] | None = getattr(_local, "out", None)
    if out is None or out.nbytes < out_size:
        out = np.empty(out_size, dtype=np.uint8)
        if out_size <= KEEP:  # a thread keeps no buffer for huge chunks after the save
            _local.out = out
    return work, out


def compressor(cparams: Any) -> ChunkCompressor | None:
    """The compressor for ``cparams`` (a ``blosc2.CParams`` with typesize and blocksize set), if it can do them."""
    if HELPER is None or libblosc2.LIB is None or libblosc2.LIB.lz4 is None:
        return None
    filters = tuple(_code(f) for f in cparams.filters)
    meta = tuple(int(m) for m in cparams.filters_meta)
    return _compressor(
        _code(cparams.codec), int(cparams.clevel), bool(cparams.use_dict), int(cparams.typesize),
        int(cparams.blocksize), _code(cparams.splitmode), filters, meta,
    )  # fmt: skip


def _code(value: Any) -> int:
    """The number of a python-blosc2 enum member (or of a plain number)."""
    return int(value.value if isinstance(value, enum.Enum) else value)


@functools.lru_cache(maxsize=64)
def _compressor(
    codec: int,
    clevel: int,
    use_dict: bool,
    typesize: int,
    blocksize: int,
    splitmode: int,
    filters: tuple[int, ...],
    meta: tuple[int, ...],
) -> ChunkCompressor | None:
    if codec not in (blosc2.Codec.LZ4.value, blosc2.Codec.LZ4HC.value) or clevel < 1 or use_dict:
        return None
    if not 1 <= typesize <= 255 or blocksize < 128 or blocksize % typesize:
        return None
    active = [(f, m) for f, m in zip(filters, meta, strict=True) if f != blosc2.Filter.NOFILTER.value]
    if active and (len(active) > 1 or active[0][0] != blosc2.Filter.SHUFFLE.value or active[0][1] not in (0, typesize)):
        return None
    params = blosc2.CParams(
        codec=blosc2.Codec(codec), clevel=clevel, typesize=typesize, blocksize=blocksize, nthreads=1,
        splitmode=blosc2.SplitMode(splitmode), filters=list(filters), filters_meta=list(meta),
    )  # fmt: skip
    # One block repeating 256 bytes that hold no run whatever the item size (every codec
    # shrinks it unless a stream is too short for a match).
    sample = np.resize(((np.arange(256) * 97 + 13) % 251).astype(np.uint8), blocksize)
    template: bytes = blosc2.compress2(sample, cparams=params)
    if len(template) < 32 or template[2] & 0x07 != 0x05 or template[3] != typesize or template[31] & 0x70:
        return None  # stored uncompressed, special, or not an extended header: nothing to learn from
    hc = codec == blosc2.Codec.LZ4HC.value
    made = ChunkCompressor(
        header=template[:32],
        typesize=typesize,
        blocksize=blocksize,
        mode=(SHUFFLE if active else 0) | (HC | PROBE if hc else 0),
        level=clevel if hc else 10 - clevel,  # C-Blosc2's acceleration for LZ4
    )
    # The loop must give C-Blosc2's bytes, or it is not used with this library.
    try:
        same = made(sample, probe=False) == template
    except RuntimeError:  # the loop refused the library's LZ4 states or shuffle
        return None
    return made if same else None
