"""Statistics, bounding boxes and class locations computed from the array and written into the header.

Files converted from NIfTI/NRRD carry no ``stats``, ``bbox``, ``is_seg`` or
``class_locations``. :func:`annotate` computes them for an image; :func:`update_stats`
does it for a file and rewrites only its header (atomically: a copy with the new header
replaces the file); ``mlarray stats`` is the command-line front end.

Out of core. :func:`annotate` never holds the array: it makes passes over C-ordered
slabs (:mod:`mlarray.slabs`; ``image[slab]`` reads decompress only the chunks a slab
touches). Slabs hold at most ``SLAB_BYTES / 8`` elements (1 Mi), so peak memory is
about one chunk (the decompressor's buffer) plus a few times
:data:`~mlarray.slabs.SLAB_BYTES` (the slab, its float64 values and their sort keys),
plus at most :data:`~mlarray.slabs.COLLECT` 8-byte keys during a selection and the
class-location sample, whatever the size of the file (measured: 64 MiB above the
interpreter for 512 MiB of int16; loading it needed 8.5 GiB). The values are exact
where they were:

* ``min``, ``max``, ``median`` and the ``percentile_*`` bounds and median are exactly
  ``numpy``'s values for the whole array's values as float64 (order statistics found exactly: a histogram
  for integers of at most 16 bits, a radix selection for the other types, then
  ``numpy.percentile``'s linear interpolation).
* ``mean`` and ``percentile_mean`` of integer arrays are exact (the sum is kept as a
  Python integer), equal to ``numpy.mean`` whenever NumPy's float64 sum is exact (sums
  below 2**53; NumPy first rounds 64-bit values above 2**53 to float64). For float
  arrays the slab sums are added with ``math.fsum``; NumPy adds pairwise, so the two
  may differ in the last bits.
* ``std`` and ``percentile_std``: exact variance, correctly rounded, for integers of at
  most 16 bits; a float64 two-pass sum of squared deviations (NumPy's method, summed
  slab by slab, on deviations scaled by a power of two) for the other types, equal to
  NumPy's to the last bits where NumPy's squares neither overflow nor underflow.

Values are converted, never reinterpreted: big-endian arrays give the statistics of
their values. Float values that are NaN or infinite are left out. Floats of huge
magnitude do not overflow: where NumPy's float64 sums or interpolations overflow
(``[1.7e308, 1.7e308, -1.7e308]``), they are redone on the values scaled by a power of
two (exact), and squared deviations are always scaled (``[1e300, -1e300]`` has ``std``
``1e300``, NumPy's is infinite), so every statistic whose true value is a finite
float64 is recorded. One that still rounds to infinity is left unset (``None``) rather
than written, which the header would refuse.

When no element lies between the two percentiles (an array of exactly two different
elements, such as ``[0, 1]``), ``percentile_mean``/``median``/``std`` are left out (NumPy gives NaN for them, which the
header refuses: the in-memory code this replaced failed on such arrays).

Label maps are recognised by :func:`looks_like_labels` when ``is_seg`` is not set:
an integer or boolean array with no negative value and at most
:data:`MAX_DETECTED_LABELS` distinct values. Pass ``seg=True`` / ``seg=False`` to decide
yourself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.foreground import MAX_PER_CLASS, MAX_TOTAL, check_bounds, locate_classes, to_record
from mlarray.models import BBoxes, ClassLocations, Meta, Stats
from mlarray.slabs import SLAB_BYTES, OrderStatistics, key_values, median_of, percentile_of, slab_keys, sortable_keys

PERCENTILES = (0.5, 99.5)
"""The percentiles bounding the robust statistics (``percentile_*``), as nnU-Net uses for CT normalisation."""

MAX_DETECTED_LABELS = 255
"""Most distinct values an array may have to be taken for a label map when ``is_seg`` is unset."""

Array = np.ndarray[Any, Any]


def intensity_stats(data: Array) -> Stats | None:
    """``min``/``max``/``mean``/``median``/``std`` and the robust ``percentile_*`` values of ``data``.

    Parameters
    ----------
    data : array_like
        Booleans, integers or floats of at most 64 bits, in either byte order.

    Returns
    -------
    Stats or None
        ``None`` for complex, empty or all-NaN/inf arrays. A field whose value is not
        a finite float64 is ``None`` (see the module docstring).

    Raises
    ------
    InvalidArgumentError
        ``data`` has another dtype (strings, objects, dates, ``float128``, ...).
    """
    return _summarise(_Source.of_array(np.asarray(data)))[0]


def looks_like_labels(data: Array) -> bool:
    """Whether ``data`` is taken for a label map: integers or booleans, none negative, at most 255 distinct values.

    Raises
    ------
    InvalidArgumentError
        ``data`` has a dtype :func:`intensity_stats` refuses.
    """
    return _summarise(_Source.of_array(np.asarray(data)))[1]


def _check_dtype(dtype: np.dtype[Any]) -> None:
    """Refuse the dtypes without statistics: all but bool, integers, floats up to 64 bits and complex up to 128."""
    if dtype.kind not in "biufc" or (dtype.kind == "f" and dtype.itemsize > 8) or dtype.itemsize > 16:
        raise InvalidArgumentError(
            f"statistics need a bool, integer, float (at most 64-bit) or complex array, got dtype {dtype}"
        )


@dataclass
class _Source:
    """An array read slab by slab: ``read(key)`` for each key of :func:`~mlarray.slabs.slab_keys`."""

    read: Callable[[tuple[Any, ...]], Any]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    blocks: tuple[int, ...] | None = None
    budget: int = SLAB_BYTES

    def __post_init__(self) -> None:
        """Check the dtype and take its native byte order: :meth:`slabs` converts the values to it."""
        self.dtype = np.dtype(self.dtype)
        _check_dtype(self.dtype)
        self.dtype = self.dtype.newbyteorder("=")

    @classmethod
    def of_array(cls, data: Array) -> _Source:
        return cls(data.__getitem__, tuple(data.shape), data.dtype)

    @classmethod
    def of_image(cls, image: MLArray) -> _Source:
        shape, dtype = image.shape, image.dtype
        if shape is None or dtype is None:
            raise InvalidArgumentError("a metadata-only image has no values to compute statistics from")
        layout = image.meta.layout
        return cls(image.__getitem__, shape, dtype, tuple(layout.block_size) if layout is not None else None)

    def slabs(self) -> Iterator[tuple[int, Array]]:
        """``(flat offset, values)`` of every slab, in C order (``values`` flat, in native byte order)."""
        # sized as if every element took 8 bytes: the passes work on float64 values and 64-bit keys
        for offset, key in slab_keys(self.shape, max(8, self.dtype.itemsize), self.blocks, self.budget):
            # astype converts the values of a big-endian slab; a view would reinterpret its bytes
            yield offset, np.asarray(self.read(key)).reshape(-1).astype(self.dtype, copy=False)


def _summarise(source: _Source) -> tuple[Stats | None, bool]:
    """Intensity statistics and whether the array looks like a label map."""
    dtype = source.dtype
    if dtype.kind == "c" or math.prod(source.shape) == 0:
        return None, False
    if dtype.kind in "biu" and dtype.itemsize <= 2:
        return _histogram_stats(source)
    return _radix_stats(source)


def _stats(
    n: int, order: Callable[[int], float], mean: float, std: float, inside: Callable[[float, float], _Inside]
) -> Stats:
    low = _interpolated(lambda o: percentile_of(n, PERCENTILES[0], o), order)
    high = _interpolated(lambda o: percentile_of(n, PERCENTILES[1], o), order)
    kept = inside(low, high)
    empty = kept.count == 0  # no element between the percentiles (e.g. exactly two different ones)

    def kept_order(rank: int) -> float:
        return order(kept.first + rank)

    values = {
        "min": float(order(0)),
        "max": float(order(n - 1)),
        "mean": mean,
        "median": _interpolated(lambda o: median_of(n, o), order),
        "std": std,
        "percentile_min": low,
        "percentile_max": high,
        "percentile_mean": math.nan if empty else kept.mean,
        "percentile_median": math.nan if empty else _interpolated(lambda o: median_of(kept.count, o), kept_order),
        "percentile_std": math.nan if empty else kept.std,
    }
    finite = {name: value for name, value in values.items() if math.isfinite(value)}  # the rest is left unset
    return Stats(**finite, percentile_min_key=PERCENTILES[0], percentile_max_key=PERCENTILES[1])


def _ldexp(value: float, exponent: int) -> float:
    """``value * 2**exponent``, infinite instead of an ``OverflowError``."""
    try:
        return math.ldexp(value, exponent)
    except OverflowError:
        return math.copysign(math.inf, value)


def _interpolated(statistic: Callable[[Callable[[int], float]], float], order: Callable[[int], float]) -> float:
    """A median or percentile from ``order``, redone on halved values when NumPy's formula overflows.

    ``percentile_of`` interpolates with ``high - low``, which overflows for ends of opposite
    sign near the float64 limit, and ``median_of`` adds the middle two. Halving both ends is
    exact for such huge values, and the result lies between them, so it is doubled back.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(statistic(order))
        if math.isfinite(value):
            return value
        return _ldexp(float(statistic(lambda rank: order(rank) / 2)), 1)


_SUM_SHIFT = 64
"""Float slab sums that overflow are redone on values times ``2**-_SUM_SHIFT``; fewer than 2**63 such values cannot."""


def _spread(passes: Callable[[], Iterator[Array]], centre: float, n: int, low: float, high: float) -> float:
    """``sqrt(sum((v - centre)**2) / n)`` of the values of a pass, whose least and greatest are ``low``, ``high``.

    NumPy's two-pass method (slab sums added with ``math.fsum``) on the deviations scaled by
    the power of two that brings ``high - low`` into ``[0.5, 1)``. Scaling by a power of two
    is exact, so the result is NumPy's wherever NumPy's squares neither overflow nor
    underflow, and stays exact where they would (``[1e300, -1e300]``, ``[0, 1e-310]``).
    """
    if not math.isfinite(centre):
        return math.nan
    if high <= low:  # all values equal
        return 0.0
    width = high - low  # may overflow; the halves cannot
    exponent = math.frexp(width)[1] if math.isfinite(width) else math.frexp(high / 2 - low / 2)[1] + 1
    scaled_centre = math.ldexp(centre, -exponent)
    parts = []
    with np.errstate(under="ignore"):  # only deviations below 2**-511 of the width lose bits
        for v in passes():
            w = np.ldexp(v.astype(np.float64, copy=False), -exponent)
            w -= scaled_centre
            parts.append(float(np.sum(np.square(w, out=w))))
    return _ldexp(math.sqrt(math.fsum(parts) / n), exponent)


@dataclass
class _Inside:
    """The values in ``[low, high]``: ranks ``first .. first + count - 1`` of the sorted array."""

    first: int
    count: int
    mean: float
    std: float


def _exact_moments(total: int, squares: int, n: int) -> tuple[float, float]:
    """Mean and standard deviation, correctly rounded, from exact integer sums (NaN for no values)."""
    if n == 0:
        return math.nan, math.nan
    variance = Fraction(n * squares - total * total, n * n)
    return total / n, math.sqrt(variance)


def _histogram_stats(source: _Source) -> tuple[Stats | None, bool]:
    """Integers of at most 16 bits: one pass, one bin per possible value, everything exact."""
    dtype = source.dtype
    low = int(np.iinfo(dtype).min) if dtype.kind == "i" else 0
    size = 2 if dtype.kind == "b" else 1 << (8 * dtype.itemsize)
    hist = np.zeros(size, dtype=np.int64)
    flip = {1: np.uint8(0x80), 2: np.uint16(0x8000)}[dtype.itemsize] if dtype.kind == "i" else None
    for _, values in source.slabs():
        if flip is not None:  # two's complement with the sign bit flipped: the unsigned offset from the minimum
            values = values.view(np.dtype(f"u{dtype.itemsize}")) ^ flip
        hist += np.bincount(values.reshape(-1), minlength=size)
    present = np.flatnonzero(hist)
    values_of = (present + low).tolist()
    counts = hist[present].tolist()
    cumulative = np.cumsum(hist[present])
    n = int(cumulative[-1])

    def order(rank: int) -> float:
        return float(values_of[int(np.searchsorted(cumulative, rank, side="right"))])

    def moments(lo: int, hi: int) -> tuple[int, int, int]:
        pairs = [(v, c) for v, c in zip(values_of, counts, strict=True) if lo <= v <= hi]
        return sum(c for _, c in pairs), sum(v * c for v, c in pairs), sum(v * v * c for v, c in pairs)

    def inside(lo: float, hi: float) -> _Inside:
        first = sum(c for v, c in zip(values_of, counts, strict=True) if v < lo)
        count, total, squares = moments(math.ceil(lo), math.floor(hi))
        return _Inside(first, count, *_exact_moments(total, squares, count))

    count, total, squares = moments(values_of[0], values_of[-1])
    stats = _stats(n, order, *_exact_moments(total, squares, count), inside)
    labels = dtype.kind in "bu" or values_of[0] >= 0
    return stats, labels and len(values_of) <= MAX_DETECTED_LABELS


def _finite(values: Array) -> Array:
    """The values of a slab as the radix path sees them: float64 without NaN/inf for floats, else as stored."""
    if values.dtype.kind == "f":
        as_float = values.astype(np.float64, copy=False)
        return as_float[np.isfinite(as_float)]
    return values


def _exact_sum(values: Array) -> int:
    """The exact sum of an integer array (64-bit values added as two 32-bit halves)."""
    if values.dtype.itemsize < 8:
        return int(values.sum(dtype=np.int64))
    if values.dtype.kind == "u":
        high = (values >> np.uint64(32)).sum(dtype=np.uint64)
        return (int(high) << 32) + int((values & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    return (int((values >> 32).sum(dtype=np.int64)) << 32) + int((values & 0xFFFFFFFF).sum(dtype=np.int64))


class _Sum:
    """A running sum: exact for integers, ``math.fsum`` of pairwise slab sums for floats.

    A float slab whose sum overflows is summed again scaled by ``2**-_SUM_SHIFT``
    (``scaled``); if any did, or the total overflows, :meth:`mean` adds every part scaled.
    """

    def __init__(self, kind: str) -> None:
        self.exact = kind != "f"
        self.integer = 0
        self.parts: list[float] = []
        self.scaled: list[float] = []

    def add(self, values: Array) -> None:
        if self.exact:
            self.integer += _exact_sum(values)
            return
        with np.errstate(over="ignore", invalid="ignore"):
            part = float(values.sum(dtype=np.float64))
        if math.isfinite(part):
            self.parts.append(part)
        else:
            with np.errstate(under="ignore"):
                self.scaled.append(float(np.ldexp(values.astype(np.float64, copy=False), -_SUM_SHIFT).sum()))

    def mean(self, n: int) -> float:
        if self.exact:
            return self.integer / n
        if not self.scaled:
            try:
                return math.fsum(self.parts) / n
            except OverflowError:
                pass
        total = math.fsum([math.ldexp(p, -_SUM_SHIFT) for p in self.parts] + self.scaled)
        return _ldexp(total / n, _SUM_SHIFT)


def _between(mean: float, low: float, high: float) -> float:
    """A rounded float mean moved back into ``[low, high]``, where the true mean lies (``[x] * 5`` gives ``x``)."""
    return min(max(mean, low), high) if math.isfinite(mean) else mean


def _radix_stats(source: _Source) -> tuple[Stats | None, bool]:
    """Floats and integers wider than 16 bits: a few passes, order statistics by radix selection."""
    kind = source.dtype.kind

    def values() -> Iterator[Array]:
        for _, slab in source.slabs():
            yield _finite(slab)

    selector = OrderStatistics(lambda: (sortable_keys(v) for v in values()))
    total = _Sum(kind)
    distinct: set[int] | None = set() if kind in "iu" else None
    negative = False
    for v in values():  # pass 1: count, sum, the top histogram and the label test
        selector.top_histogram(sortable_keys(v))
        total.add(v)
        if distinct is not None and v.size:
            negative = negative or (kind == "i" and int(v.min()) < 0)
            distinct.update(np.unique(v).tolist())
            if len(distinct) > MAX_DETECTED_LABELS:
                distinct = None
    n = selector.total
    if n == 0:
        return None, False
    labels = distinct is not None and not negative
    found: dict[int, float] = {}

    def order(rank: int) -> float:
        if rank not in found:  # the ranks one statistic needs are found together below
            for r, key in selector.select([rank]).items():
                found[r] = float(key_values(np.array([key], np.uint64), kind)[0])
        return found[rank]

    def prefetch(ranks: list[int]) -> None:
        todo = [r for r in ranks if r not in found]
        for r, key in selector.select(todo).items() if todo else ():
            found[r] = float(key_values(np.array([key], np.uint64), kind)[0])

    prefetch(_ranks(n))
    mean = _between(total.mean(n), order(0), order(n - 1))
    std = _spread(values, mean, n, order(0), order(n - 1))  # pass 2: squared deviations

    def inside(lo: float, hi: float) -> _Inside:
        first, count, kept = 0, 0, _Sum(kind)
        for v in values():  # pass 3: the values in [lo, hi]
            as_float = v.astype(np.float64, copy=False)
            first += int(np.count_nonzero(as_float < lo))
            chosen = v[(as_float >= lo) & (as_float <= hi)]
            count += int(chosen.size)
            kept.add(chosen)
        if count == 0:
            return _Inside(first, 0, math.nan, math.nan)
        inner_mean = _between(kept.mean(count), lo, hi)

        def kept_values() -> Iterator[Array]:
            for u in values():
                w = u.astype(np.float64, copy=False)
                yield w[(w >= lo) & (w <= hi)]

        prefetch([first + r for r in _ranks(count, percentiles=False)])  # the least and greatest among them
        inner_std = _spread(kept_values, inner_mean, count, order(first), order(first + count - 1))  # pass 4
        return _Inside(first, count, inner_mean, inner_std)

    return _stats(n, order, mean, std, inside), labels


def _ranks(n: int, *, percentiles: bool = True) -> list[int]:
    """The ranks the median (and the percentile bounds) of ``n`` values need."""
    from mlarray.slabs import percentile_positions

    ranks = {0, n - 1, (n - 1) // 2, n // 2}
    if percentiles:
        for q in PERCENTILES:
            ranks.update(percentile_positions(n, q)[:2])
    return sorted(r for r in ranks if 0 <= r < n)


def _spatial_axes(image: MLArray) -> list[int]:
    """The indices of the spatial axes (every axis when the header names none)."""
    shape = image.shape or ()
    return image.meta.spatial_axes() or list(range(len(shape)))


def _check_label_shape(image: MLArray) -> tuple[int, ...]:
    """The spatial shape of a label map whose class locations are recorded (non-spatial axes of length 1)."""
    shape = image.shape or ()
    axes = _spatial_axes(image)
    if any(shape[a] != 1 for a in range(len(shape)) if a not in axes):
        raise InvalidArgumentError(
            f"class locations need a label map whose non-spatial axes have length 1, got shape {list(shape)} "
            f"with spatial axes {axes}: leave out class locations (boxes and statistics need no such shape)"
        )
    return tuple(shape[a] for a in axes)


def _check_label_dtype(dtype: np.dtype[Any], seg: bool | None) -> None:
    """Refuse to treat a non-integer image as a label map."""
    if dtype.kind not in "biu":
        given = "seg=True was given" if seg else "its header records is_seg"
        raise InvalidArgumentError(
            f"a label map holds integers or booleans, got dtype {dtype} ({given}): pass seg=False (--no-seg) "
            "or store the labels as integers"
        )


def annotate(
    image: MLArray,
    *,
    with_class_locations: bool = False,
    seg: bool | None = None,
    max_per_class: int = MAX_PER_CLASS,
    max_total: int = MAX_TOTAL,
    seed: int = 0,
) -> Meta:
    """Fill ``stats``, ``is_seg`` and, for a label map, ``bbox`` (one box per class) and optionally ``class_locations``.

    The array is read slab by slab, never whole (see the module docstring for the memory
    bound and for which values are exact; a statistic that is not a finite float64 is
    left unset). Boxes span the spatial axes; when a label map has a non-spatial axis
    longer than 1 (a time series of label maps, say), each box covers its class at every
    position of those axes.

    Parameters
    ----------
    image : MLArray
        An in-memory or ``'r+'`` image; its metadata is changed in place.
    with_class_locations : bool
        Also record per-class voxel counts and up to ``max_per_class`` voxels per class
        (``max_total`` over all classes), for patch samplers. Images that are not label
        maps get statistics only; label maps need non-spatial axes of length 1.
    seg : bool or None
        Whether the image is a label map; ``None`` keeps a recorded ``is_seg`` or
        detects it (:func:`looks_like_labels`).

    Returns
    -------
    Meta
        The image's updated header.

    Raises
    ------
    InvalidArgumentError
        ``with_class_locations`` for a label map with a non-spatial axis longer than 1;
        a label map (``seg=True`` or a recorded ``is_seg``) that is not an integer or
        boolean array; a bound below 1; an image without array (metadata only) or of a
        dtype without statistics.
    """
    if not isinstance(image, MLArray):
        raise InvalidArgumentError(f"annotate takes an MLArray (wrap a NumPy array: MLArray(array)), got {type(image)}")
    if seg is not None and not isinstance(seg, (bool, np.bool_)):
        raise InvalidArgumentError(f"seg must be True, False or None, got {seg!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    check_bounds(max_per_class, max_total)
    source = _Source.of_image(image)
    meta = image.meta.model_copy(deep=True)
    is_seg = seg if seg is not None else meta.is_seg
    if is_seg:  # before the passes: refuse bad requests without reading the array
        _check_label_dtype(source.dtype, seg)
        if with_class_locations:
            _check_label_shape(image)
    meta.stats, detected = _summarise(source)
    is_seg = is_seg if is_seg is not None else detected
    meta.is_seg = is_seg
    if is_seg:
        # class locations: in the spatial shape (the other axes have length 1); boxes only: in the whole shape
        shape = _check_label_shape(image) if with_class_locations else tuple(image.shape or ())
        samples = locate_classes(
            source.slabs,
            source.dtype,
            shape,
            with_coords=with_class_locations,
            max_per_class=max_per_class,
            max_total=max_total,
            seed=seed,
        )
        if not with_class_locations:  # project each box onto the spatial axes
            axes = _spatial_axes(image)
            samples = [replace(s, box=tuple(s.box[a] for a in axes) if s.box else None) for s in samples]
        boxes = [[list(pair) for pair in s.box or ()] for s in samples]
        meta.bbox = BBoxes(boxes, labels=[s.label for s in samples]) if samples else None
        if with_class_locations:
            meta.class_locations = ClassLocations.model_validate(to_record(samples, shape))
    else:
        meta.class_locations = None  # written for label maps only (spec 5.11)
    image.meta = meta
    return image.meta


def update_stats(
    path: str | os.PathLike[str],
    *,
    with_class_locations: bool = False,
    seg: bool | None = None,
    seed: int = 0,
) -> Meta:
    """:func:`annotate` the file at ``path`` and rewrite only its header, atomically.

    The array data are not rewritten; a crash leaves the previous file complete. Peak
    memory is bounded as :func:`annotate` says, plus the header rewrite's file copy
    (streamed). The file is read through a read-only handle and takes no writer's lock,
    so readers of it meanwhile see no writer; a file another process has open for writing
    is refused (``LOCK_HELD``), and one written in place meanwhile (``FILE_CHANGED``).

    Raises
    ------
    InvalidArgumentError
        As :func:`annotate`; the file is left unchanged.
    """
    from mlarray._saving import rewrite_header_of
    from mlarray.storage.io import check_path
    from mlarray.storage.locking import refuse_writers

    path = check_path(path, must_exist=True)
    refuse_writers(path)  # before reading: a writer's file may change under the computation
    with MLArray.open(path) as image:  # read-only while computing: readers see no writer
        meta = annotate(image, with_class_locations=with_class_locations, seg=seg, seed=seed)
        rewrite_header_of(image)
        return meta
