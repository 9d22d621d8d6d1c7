"""Whole-array passes in bounded memory: C-ordered slabs and exact order statistics.

``mlarray stats`` and ``mlarray validate`` must work on files larger than memory. This
module gives them two tools, both NumPy only (the array is anything indexable with
slices, e.g. an open :class:`~mlarray.MLArray`, whose ``image[key]`` reads decompress
only the chunks the key touches):

* :func:`slab_keys` cuts an array into *slabs*: keys whose results are runs of
  consecutive elements in C order, each at most :data:`SLAB_BYTES` (one element at least)
  and aligned to the file's blocks along the cut axis, so a pass over all slabs reads
  every block once and sees the elements in C order, with their flat offsets.
* :class:`OrderStatistics` finds the values of given ranks (``k``-th smallest) exactly
  without sorting the data: a radix selection on order-preserving 64-bit keys, 16 bits
  per pass, that collects a bucket's keys and sorts them once the bucket holds at most
  :data:`COLLECT` values. Memory: one 65,536-bin histogram per distinct bucket, or the
  collected keys; never the array.

:func:`percentile_of` and :func:`median_of` turn order statistics into the values
``numpy.percentile`` (method ``linear``) and ``numpy.median`` return for the whole array's
values as float64 (NumPy on a ``float32`` array interpolates in ``float32``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SLAB_BYTES = 8 << 20
"""Most bytes one slab holds (unless a single element is larger); callers size elements as 8 bytes."""

COLLECT = 1 << 20
"""A radix bucket of at most this many values is collected and sorted instead of refined."""

DIGIT = 16
_SIGN = np.uint64(1 << 63)

Array = np.ndarray[Any, Any]
Keys = np.ndarray[Any, np.dtype[np.uint64]]


def slab_keys(
    shape: Sequence[int], itemsize: int, blocks: Sequence[int] | None = None, budget: int = SLAB_BYTES
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """``(flat offset, key)`` of each slab of an array of ``shape``, in C order.

    The key fixes the leading axes ``< d`` and takes a range of axis ``d`` with every
    trailing axis whole, where ``d`` is the first axis whose trailing elements fit in
    ``budget``; so ``array[key]`` is a run of consecutive elements in C order. The range is
    a multiple of ``blocks[d]`` when that fits, so no block is read by two slabs.
    """
    shape = [int(s) for s in shape]
    if not shape:
        yield 0, ()
        return
    if math.prod(shape) == 0:
        return
    trailing = [math.prod(shape[k + 1 :]) for k in range(len(shape))]
    d = next(k for k in range(len(shape)) if trailing[k] * itemsize <= budget or k == len(shape) - 1)
    step = max(1, budget // max(1, trailing[d] * itemsize))
    if blocks is not None and len(blocks) == len(shape) and step >= blocks[d] > 0:
        step -= step % blocks[d]
    for prefix in np.ndindex(*shape[:d]):
        base = int(np.ravel_multi_index(prefix, shape[:d])) * shape[d] if d else 0
        for start in range(0, shape[d], step):
            stop = min(start + step, shape[d])
            yield (base + start) * trailing[d], (*prefix, slice(start, stop))


def sortable_keys(values: Array) -> Keys:
    """Unsigned 64-bit keys that sort like ``values`` (integers, or float64 without NaN)."""
    kind = values.dtype.kind
    if kind == "f":
        bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
        negative = (bits & _SIGN) != 0
        return np.asarray(np.where(negative, ~bits, bits | _SIGN), dtype=np.uint64)
    if kind == "u" or kind == "b":
        return values.astype(np.uint64)
    flipped: Keys = values.astype(np.int64).view(np.uint64) ^ _SIGN
    return flipped


def key_values(keys: Keys, kind: str) -> Array:
    """The values of ``keys`` made by :func:`sortable_keys` (float64 for ``kind`` 'f', else int64/uint64)."""
    keys = np.asarray(keys, dtype=np.uint64)
    if kind == "f":
        positive = (keys & _SIGN) != 0
        return np.asarray(np.where(positive, keys & ~_SIGN, ~keys), dtype=np.uint64).view(np.float64)
    if kind in "ub":
        return keys
    signed: Array = (keys ^ _SIGN).view(np.int64)
    return signed


@dataclass
class _Target:
    rank: int  # rank inside the current bucket
    prefix: int = 0  # the key bits fixed so far
    shift: int = 64  # keys of the bucket satisfy key >> shift == prefix
    count: int = 0  # values in the bucket


@dataclass
class OrderStatistics:
    """Exact ``k``-th smallest values (0-based ranks) of the keys a pass yields.

    ``passes`` is called once per pass and returns an iterable of key arrays covering
    the data once (the same data every time). The first pass's top-level histogram
    is kept, so later :meth:`select` calls start one level down.
    """

    passes: Callable[[], Iterable[Keys]]
    total: int = 0
    _top: Array | None = field(default=None, repr=False)
    passes_made: int = 0

    def top_histogram(self, keys: Keys) -> None:
        """Feed one array of the first pass (call it for every array, or let :meth:`select` make the pass)."""
        hist = np.bincount((keys >> np.uint64(64 - DIGIT)).astype(np.intp), minlength=1 << DIGIT)
        self._top = hist if self._top is None else self._top + hist
        self.total += int(keys.size)

    def select(self, ranks: Iterable[int]) -> dict[int, int]:
        """The key of each rank (``0 <= rank < total``)."""
        if self._top is None:
            self.passes_made += 1
            for keys in self.passes():
                self.top_histogram(keys)
        assert self._top is not None
        wanted = sorted(set(ranks))
        if any(not 0 <= r < self.total for r in wanted):
            raise ValueError(f"ranks {wanted} outside 0..{self.total - 1}")
        targets = {r: _Target(r, 0, 64, self.total) for r in wanted}
        for t in targets.values():
            self._descend(t, self._top)
        found: dict[int, int] = {}
        while True:
            for r, t in list(targets.items()):
                if t.shift == 0:
                    found[r] = t.prefix
                    del targets[r]
            if not targets:
                return found
            self._round(targets, found)

    @staticmethod
    def _descend(t: _Target, hist: Array) -> None:
        cum = np.cumsum(hist)
        digit = int(np.searchsorted(cum, t.rank, side="right"))
        before = int(cum[digit - 1]) if digit else 0
        t.rank -= before
        t.count = int(hist[digit])
        t.prefix = (t.prefix << DIGIT) | digit if t.shift < 64 else digit
        t.shift -= DIGIT

    def _round(self, targets: dict[int, _Target], found: dict[int, int]) -> None:
        """One pass: refine each bucket by 16 bits, or collect and sort it when small."""
        groups = {(t.prefix, t.shift, t.count) for t in targets.values()}
        hists: dict[tuple[int, int], Array] = {}
        collected: dict[tuple[int, int], list[Keys]] = {}
        for prefix, shift, count in groups:
            if count <= COLLECT:
                collected[(prefix, shift)] = []
            else:
                hists[(prefix, shift)] = np.zeros(1 << DIGIT, dtype=np.int64)
        self.passes_made += 1
        for keys in self.passes():
            for (prefix, shift), parts in collected.items():
                parts.append(keys[(keys >> np.uint64(shift)) == np.uint64(prefix)])
            for (prefix, shift), hist in hists.items():
                inside = keys[(keys >> np.uint64(shift)) == np.uint64(prefix)]
                digits = ((inside >> np.uint64(shift - DIGIT)) & np.uint64((1 << DIGIT) - 1)).astype(np.intp)
                hist += np.bincount(digits, minlength=1 << DIGIT)
        for r, t in list(targets.items()):
            group = (t.prefix, t.shift)
            if group in collected:
                ordered = np.sort(np.concatenate(collected[group]) if collected[group] else np.zeros(0, np.uint64))
                found[r] = int(ordered[t.rank])
                del targets[r]
            else:
                self._descend(t, hists[group])


def percentile_positions(n: int, q: float) -> tuple[int, int, float]:
    """Ranks ``(i, j)`` and weight ``g`` of ``numpy.percentile(x, q)`` (linear) for ``n`` values.

    NumPy's method 7 (Hyndman and Fan): the virtual index is ``(n - 1) * (q / 100)``,
    ``i`` its floor, ``j = i + 1`` (both the last rank at the top end), ``g`` the fraction.
    """
    virtual = (n - 1) * (np.float64(q) / np.float64(100.0))
    if virtual >= n - 1:
        return n - 1, n - 1, float(virtual - np.floor(virtual))
    i = int(np.floor(virtual))
    return i, i + 1, float(virtual - np.float64(i))


def percentile_of(n: int, q: float, order: Callable[[int], float]) -> float:
    """``numpy.percentile(x, q)`` of ``n`` values, from ``order(rank)`` (the value of each rank)."""
    i, j, g = percentile_positions(n, q)
    low, high = np.float64(order(i)), np.float64(order(j))
    diff = high - low
    weight = np.float64(g)
    if weight >= 0.5:  # NumPy interpolates from the nearer end, so both ends are exact
        return float(high - diff * (np.float64(1.0) - weight))
    return float(low + diff * weight)


def median_of(n: int, order: Callable[[int], float]) -> float:
    """``numpy.median(x)`` of ``n`` values: the middle value, or the mean of the middle two."""
    if n % 2:
        return float(order((n - 1) // 2))
    return float(np.mean(np.array([order(n // 2 - 1), order(n // 2)], dtype=np.float64)))
