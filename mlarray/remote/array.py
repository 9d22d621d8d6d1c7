"""The data of an ``.mla`` read through a byte source: fetch only the chunks a key touches.

:class:`RemoteArray` stands where a memory-mapped blosc2 NDArray stands for a local
file (``MLArray._nd``): ``array[key]`` works out the chunks the key touches, fetches the
ones not in a small LRU cache with one concurrent batch of ranged reads (chunks stored
one after another are fetched by one read), checks every chunk with the storage checks
(spec 4.4.2-4.4.6) and only then decodes it. Nothing here knows about HTTP or fsspec.
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlarray.remote.decode import assemble, chunk_array, chunks_in, plan
from mlarray.storage.chunks import DataSection
from mlarray.storage.frame import FrameInfo
from mlarray.storage.source import ByteSource
from mlarray.storage.structure import ENTRY_NAN

DEFAULT_CACHE_BYTES = 32 << 20
"""Compressed chunk bytes a remote array keeps (least recently used chunks are dropped first)."""
MAX_REQUEST_BYTES = 64 << 20
"""Adjacent chunks are fetched by one read up to this many bytes."""
BATCH_BYTES = 256 << 20
"""A read touching more compressed bytes than this (a whole large array) is fetched and decoded in batches."""


def _fastread() -> Any:
    """:mod:`mlarray.storage.fastread` when it is present and usable, else ``None`` (NumPy decoding is used)."""
    try:
        module = importlib.import_module("mlarray.storage.fastread")
    except ImportError:
        return None
    return module if module.available() else None


def coalesce(spans: Sequence[tuple[int, int]], limit: int = MAX_REQUEST_BYTES) -> list[tuple[int, int]]:
    """Merge ``(offset, length)`` spans that follow one another in the file (given in file order)."""
    merged: list[tuple[int, int]] = []
    for offset, length in spans:
        if merged and sum(merged[-1]) == offset and merged[-1][1] + length <= limit:
            merged[-1] = (merged[-1][0], merged[-1][1] + length)
        else:
            merged.append((offset, length))
    return merged


class RemoteArray:
    """Read-only array data of one frame, read chunk by chunk from ``source``.

    ``section`` holds the checked chunk index of the same source. Safe to share between
    threads (the cache is locked; reads do not depend on a file position).
    """

    def __init__(
        self,
        source: ByteSource,
        frame: FrameInfo,
        section: DataSection,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        nthreads: int = 1,
    ) -> None:
        lay = section.layout
        self.nthreads = nthreads
        """Threads that decode the fetched chunks of one read (``dparams={"nthreads": n}`` of the open)."""
        self.source = source
        self.section = section
        self.shape: tuple[int, ...] = lay.shape
        self.dtype: np.dtype[Any] = np.dtype(lay.dtype)
        self.chunks: tuple[int, ...] = lay.chunks
        self.blocks: tuple[int, ...] = frame.nd.blocks
        self.grid: tuple[int, ...] = lay.grid
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        return f"RemoteArray(shape={self.shape}, dtype={self.dtype}, source={self.source.name!r})"

    def __getitem__(self, key: Any) -> Any:
        box, rel = plan(self.shape, key)
        numbers = chunks_in(box, self.chunks, self.grid)
        batches = self._batches(numbers)
        fast = _fastread()
        fetched: dict[int, bytes | None] | None = None
        if fast is not None and len(batches) == 1:  # decode only the touched blocks, straight into the result
            fetched = self.fetch(numbers)
            region = fast.read_region(
                self.section.layout,
                self.section.entries,
                fetched.__getitem__,
                key,
                nthreads=self.nthreads,
                path=self.source.name,
            )
            if region is not None:
                return region
        out = np.empty(tuple(hi - lo for lo, hi in box), dtype=self.dtype)
        for batch in batches:
            raw = fetched if fetched is not None else self.fetch(batch)  # fetched: the one batch, already here
            assemble(out, box, batch, functools.partial(self._decode_from, raw), self.shape, self.chunks, self.grid)
        result = out[rel]
        return result if result.base is None or result.size == out.size else result.copy()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        out = np.asarray(self[...])
        return out if dtype is None else out.astype(dtype)

    def _batches(self, numbers: list[int]) -> list[list[int]]:
        per_chunk = max(1, self.section.layout.chunksize // 2)  # a guess of the compressed size, for batching only
        size = max(1, BATCH_BYTES // per_chunk)
        return [numbers[i : i + size] for i in range(0, len(numbers), size)]

    def _decode_from(self, raw: dict[int, bytes | None], number: int) -> np.ndarray[Any, Any]:
        data = raw[number]
        fill = np.nan if data is None and self.section.entries[number] == ENTRY_NAN else 0
        return chunk_array(data, fill, self.chunks, self.blocks, self.dtype, self.source.name)

    def fetch(self, numbers: Sequence[int]) -> dict[int, bytes | None]:
        """Checked compressed bytes of chunks ``numbers`` (``None``: an index entry for a zeros/NaN chunk)."""
        out: dict[int, bytes | None] = {}
        wanted: list[tuple[int, int, int]] = []  # (offset, length, number)
        with self._lock:
            for number in numbers:
                if number in self._cache:
                    self._cache.move_to_end(number)
                    out[number] = self._cache[number]
        for number in numbers:
            if number in out:
                continue
            span = self.section.chunk_span(number)
            if span is None:
                out[number] = None
            else:
                wanted.append((*span, number))
        if not wanted:
            return out
        wanted.sort()
        unique = list(dict.fromkeys((offset, length) for offset, length, _ in wanted))
        ranges = coalesce(unique)
        pieces = self.source.read_many(ranges)
        for offset, length, number in wanted:
            at = next(i for i, (start, size) in enumerate(ranges) if start <= offset < start + size)
            start = ranges[at][0]
            data = pieces[at][offset - start : offset - start + length]
            needed = self.section.chunk_length(number, data[:16])
            if needed > len(data):  # a chunk overlapping the next one's start: read it whole
                data = self.source.read(offset, needed)
            out[number] = chunk = self.section.checked_chunk(number, data)
            self._remember(number, chunk)
        return out

    def _remember(self, number: int, chunk: bytes) -> None:
        if len(chunk) > self.cache_bytes:
            return
        with self._lock:
            if number in self._cache:
                return
            self._cache[number] = chunk
            self._cached += len(chunk)
            while self._cached > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cached -= len(dropped)
