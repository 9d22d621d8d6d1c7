"""The compiled per-block loops of the read path (``csrc/``, built as ``_blockcopy``), loaded with :mod:`ctypes`.

The helper is an optional part of the build: a plain C shared library with no Python in
it, built next to this file when a C compiler is at hand at install time. It calls
C-Blosc2's ``blosc2_getitem_ctx`` through a function pointer it is handed, so it links to
nothing. When it is missing (or ``MLARRAY_NO_BLOCKCOPY=1``), :data:`HELPER` is ``None``
and :mod:`mlarray.storage.fastread` copies with NumPy instead, :mod:`mlarray.storage.chunks`
checks block tables in Python: same results, slower. The helper reads little-endian fields
natively, so it is used on little-endian machines only.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
import sys
from pathlib import Path

DISABLE_ENV = "MLARRAY_NO_BLOCKCOPY"
ABI_VERSION = 18
ZEROED = 1
"""Mode bit of ``mla_read_region``: the result holds zeros over the selection already (zeros are not written)."""
STREAM = 2
"""Mode bit of ``mla_read_region``: rows of whole cache lines are written with streaming stores."""
ERRORS = {
    -1001: "the geometry handed to the block loop is inconsistent",
    -1002: "its blocks are not a whole number of its items",
    -1003: "C-Blosc2 decoded fewer bytes than a block",
    -1004: "block offset outside the chunk",
    -1005: "compressed stream outside the chunk",
    -1006: "two blocks overlap",
    -1007: "block-start table or dictionary outside the chunk",
    -1008: "it could not be read from the file (was the file truncated while open? open it again)",
    -1009: "it differs from the header checked before (was the file changed while it was read? open it again)",
    -1010: "it was not checked before the read (was the file changed while it was read? open it again)",
    -1011: "bytes between or after its blocks that no block holds",
}
"""The helper's own error codes (others are C-Blosc2's)."""
BLOCK_PROBLEMS = {
    1: "block offset outside the chunk",
    2: "compressed stream outside the chunk",
    3: "two blocks overlap",
    4: "block-start table outside the chunk",
    5: "dictionary outside the chunk",
    6: "bytes between or after its blocks that no block holds",
}
"""What ``mla_blocks_problem`` (1-3, 6) and ``mla_block_problem`` (1-6) found, in the words of
:func:`mlarray.storage.structure.structure_problem`."""

_P = ctypes.c_void_p
_I32 = ctypes.c_int32
_I64 = ctypes.c_int64


class Helper:
    """The functions of the loaded library, with their signatures declared."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.path = path
        self.read_region = lib.mla_read_region
        self.read_region.argtypes = [
            *(_P, _P, _I32, _I32, _P, _P, _P, _P),  # getitem, ctx, ndim, itemsize, chunk/block shape, selection
            *(_P, _P, _P),  # chunk grid (or NULL), which chunks stand for one value and those values
            *(_P, _P, _P),  # chunk addresses (or file offsets), sizes, block checks
            *(_I32, _I64, _P, _I64),  # file descriptor, chunk nbytes, copy buffer and its size
            *(_I64, _I64, _P, _P),  # first, count, the lanes threads share (or NULL), out
            *(_P, _P, _I32, _P),  # out strides, scratch block, block bytes, failed chunk
            *(_P, _I64, _P),  # blocks checked before (a bitmap per chunk, or NULL), its row bytes, chunk numbers
            _P,  # with a chunk grid: what settles a chunk not ready (or NULL; see settle_chunk)
            _I32,  # the read's mode: ZEROED | STREAM
        ]
        self.read_region.restype = _I64
        self.read_box = lib.mla_read_box  # the same in grid mode, its arguments in one int64 array
        self.read_box.argtypes = [_P]
        self.read_box.restype = _I64
        self.blocks_problem = lib.mla_blocks_problem
        self.blocks_problem.argtypes = [_P, _I64, _I64, _I64, _I64]
        self.blocks_problem.restype = ctypes.c_int
        self.blockwise_max = lib.mla_blockwise_max
        self.blockwise_max.argtypes = []
        self.blockwise_max.restype = _I64
        self.publish = lib.mla_publish
        self.publish.argtypes = []
        self.publish.restype = None
        self.settle_chunk = lib.mla_settle_chunk  # the loop's header checks of one chunk, for the tests
        self.settle_chunk.argtypes = [_P, _I64, _P, _P, _P, _I32, _P, _P]
        self.settle_chunk.restype = ctypes.c_int
        self.block_problem = lib.mla_block_problem
        self.block_problem.argtypes = [_P, _I64, _I64]
        self.block_problem.restype = ctypes.c_int
        self.compress_chunk = lib.mla_compress_chunk  # the write path: see mlarray.storage.chunkcompress
        self.compress_chunk.argtypes = [
            *(_P, _P, _P, _I64),  # LZ4 function table, header template, chunk in block order, its bytes
            *(_I32, _I32, _I32, _I32, _I32),  # typesize, blocksize, mode, level, probe acceleration
            *(_P, _I64, _P),  # workspace and its size, output (at least nbytes + 32 bytes)
        ]
        self.compress_chunk.restype = _I64
        self.compress_workspace = lib.mla_compress_workspace
        self.compress_workspace.argtypes = [_P, _I32]
        self.compress_workspace.restype = _I64
        streams = lib.mla_streams
        streams.argtypes = []
        streams.restype = ctypes.c_int
        self.streams = bool(streams())
        """Whether staged box reads write the result with streaming stores (x86-64 builds)."""


def _candidates() -> list[Path]:
    here = Path(__file__).parent
    return [here / f"_blockcopy{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]


def _load() -> tuple[Helper | None, str]:
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None, f"turned off by {DISABLE_ENV}"
    if sys.byteorder != "little":
        return None, "the compiled block loop reads little-endian fields natively: not used on this machine"
    for candidate in _candidates():
        if not candidate.is_file():
            continue
        try:
            lib = ctypes.CDLL(str(candidate))
            lib.mla_abi_version.restype = ctypes.c_int
            version = lib.mla_abi_version()
        except (OSError, AttributeError) as exc:
            return None, f"cannot load {candidate.name}: {exc}"
        if version != ABI_VERSION:
            return None, f"{candidate.name} is of ABI version {version}, not {ABI_VERSION} (a stale build)"
        try:
            return Helper(lib, candidate), f"compiled block loop {candidate.name}"
        except AttributeError as exc:  # a build of this ABI number that lacks a function: stale too
            return None, f"{candidate.name} lacks a function of ABI version {ABI_VERSION} (a stale build): {exc}"
    return None, "the compiled block loop was not built (no C compiler at install time?): copies use NumPy"


HELPER, STATUS = _load()
"""The loaded helper (or ``None``) and a sentence saying which file or why none."""
