"""Intensity scaling on conversion: raw values to physical values and back, exactly.

NIfTI (``scl_slope``/``scl_inter``) and DICOM (RescaleSlope/RescaleIntercept) store raw
numbers and a linear map to the values people train on. Conversion stores the
physical values (spec 5.10, ``scaling.stored = "physical"``) in the smallest type that
holds them exactly, and records the map in ``meta.scaling`` so that writing the source
format again restores the raw values bit for bit:

* integers when the raw values are integers, slope and intercept are integral and the
  range of the values fits (a CT ``uint16`` with intercept -1024 becomes ``int16``
  Hounsfield units); floating-point raw values stay floating-point, whatever the
  scaling (``0.25 * 2 + 1`` is ``1.5``, not an integer);
* otherwise ``float32`` when every value is exactly a ``float32``, else ``float64``.

When even ``float64`` physical values would not give the raw values back exactly (a
floating-point raw type, say), the raw values are kept (``stored = "raw"``) instead:
nothing is lost either way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlarray.models import Scaling
from mlarray.storage.io import normalize_dtype

Array = np.ndarray[Any, Any]

INTEGER_TYPES = tuple(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"))
"""Candidates for integral physical values, smallest first (unsigned first at equal size)."""

EXACT_INTEGERS = 2**53
"""Integers up to this magnitude are exact in binary64, where physical values are computed."""


def is_identity(slope: float, intercept: float) -> bool:
    """Whether ``raw * slope + intercept`` is ``raw`` (no scaling to record)."""
    return slope == 1.0 and intercept == 0.0


def physical_values(
    raw: Array, slope: float, intercept: float, *, keep_raw: bool = False
) -> tuple[Array, Scaling | None]:
    """The array to store and the ``scaling`` member that describes it.

    Parameters
    ----------
    raw : numpy.ndarray
        The values as the source file stores them.
    slope, intercept : float
        The source's scaling, ``physical = raw * slope + intercept`` (binary64).
    keep_raw : bool
        Store ``raw`` unchanged (``stored = "raw"``) instead of physical values.

    Returns
    -------
    (array, scaling)
        ``scaling`` is ``None`` when there is nothing to scale (slope 1, intercept 0)
        or the values are not numbers (booleans, complex); then ``array`` is ``raw``.
    """
    scan = PhysicalScan.of(raw.dtype, slope, intercept, keep_raw=keep_raw)
    if scan is None:
        return raw, None
    if keep_raw:
        return raw, scan.result()[1]
    physical = scan.add(raw)
    dtype, scaling = scan.result()
    if scaling.stored == "raw":
        return raw, scaling
    return physical.astype(dtype), scaling


class PhysicalScan:
    """Chooses how physical values are stored, seeing the raw values one slab at a time.

    Conversion of a file larger than memory reads it twice: a first pass feeds every
    slab to :meth:`add`, :meth:`result` then gives the stored type and ``scaling``
    (the rule of the module doc, exactly as for the whole array at once), and a
    second pass stores ``scaling.to_physical(slab).astype(dtype)`` (or the raw slab
    when ``scaling.stored == "raw"``).
    """

    def __init__(
        self, raw_dtype: str, slope: float, intercept: float, *, keep_raw: bool = False, restores: bool = True
    ) -> None:
        self.raw_dtype = raw_dtype
        self.scaling = Scaling(slope=slope, intercept=intercept, raw_dtype=raw_dtype, stored="physical")
        self.keep_raw = keep_raw
        self.integral = integral_scaling(raw_dtype, slope, intercept)
        """Physical values may be integers (:func:`integral_scaling`)."""
        self.size = 0
        self.low, self.high = math.inf, -math.inf
        self.nan = False
        self.single = True
        """Every physical value so far is exactly a float32."""
        self.restores = {"<i8": self.integral, "<f4": True, "<f8": True} if restores else {}
        """Per candidate type: whether every slab so far gives its raw values back from it
        (not checked with ``restores=False``, when only :meth:`dtype` is wanted)."""

    @classmethod
    def of(cls, dtype: Any, slope: float, intercept: float, *, keep_raw: bool = False) -> PhysicalScan | None:
        """A scan for raw values of ``dtype``, or ``None`` when there is nothing to scale."""
        if is_identity(slope, intercept) or np.dtype(dtype).kind not in "iuf" or slope == 0:
            return None
        return cls(normalize_dtype(dtype).str, slope, intercept, keep_raw=keep_raw)

    def add(self, raw: Array) -> Array:
        """Take the raw values of one slab into account; returns their binary64 physical values."""
        physical = self.scaling.to_physical(raw)
        self.size += physical.size
        if physical.size and self.integral:
            low, high = float(physical.min()), float(physical.max())
            self.nan = self.nan or math.isnan(low) or math.isnan(high)
            self.low, self.high = min(self.low, low), max(self.high, high)
        single = physical.astype(np.float32)
        self.single = self.single and bool(np.array_equal(single.astype(np.float64), physical, equal_nan=True))
        if not self.restores:
            return physical
        wanted = np.asarray(raw, dtype=self.raw_dtype).tobytes()
        exact = not self.nan and self.low >= -EXACT_INTEGERS and self.high <= EXACT_INTEGERS
        for candidate, ok in self.restores.items():
            if ok and (candidate != "<i8" or exact or not physical.size):
                stored = physical.astype(candidate)
                self.restores[candidate] = raw_values(stored, self.scaling).tobytes() == wanted
            elif candidate == "<i8":
                self.restores[candidate] = False
        return physical

    def dtype(self) -> np.dtype[Any]:
        """The smallest type that holds every physical value seen exactly (see :func:`physical_dtype`)."""
        if self.integral:
            if self.size == 0:
                return INTEGER_TYPES[0]
            if not self.nan and self.low >= -EXACT_INTEGERS and self.high <= EXACT_INTEGERS:
                for dtype in INTEGER_TYPES:
                    info = np.iinfo(dtype)
                    if info.min <= self.low and self.high <= info.max:
                        return dtype
        return np.dtype(np.float32) if self.single else np.dtype(np.float64)

    def result(self) -> tuple[np.dtype[Any], Scaling]:
        """The stored type and ``scaling``: physical values if they give the raw ones back, else the raw values."""
        slope, intercept = self.scaling.slope, self.scaling.intercept
        raw = Scaling(slope=slope, intercept=intercept, raw_dtype=self.raw_dtype, stored="raw")
        if self.keep_raw:
            return np.dtype(self.raw_dtype), raw
        dtype = self.dtype()
        if self.restores["<i8" if dtype.kind in "iu" else dtype.str]:
            return dtype, self.scaling
        return np.dtype(self.raw_dtype), raw


def integral_scaling(raw_dtype: Any, *values: float) -> bool:
    """Whether the physical values of raw values of ``raw_dtype`` scaled by ``values`` are all integers.

    True for integer raw types with whole-number slopes and intercepts (``values``) only:
    a whole-number scaling of floating-point raw values (``0.25 * 2 + 1``) gives fractions,
    which an integer type would round.
    """
    return np.dtype(raw_dtype).kind in "iu" and all(float(v).is_integer() for v in values)


def physical_dtype(physical: Array, *, integral: bool) -> np.dtype[Any]:
    """The smallest type that holds the binary64 ``physical`` values exactly (the rule of the module doc).

    ``integral``: the physical values are integers by construction (:func:`integral_scaling`),
    so an integer type may be chosen. An integer type is only chosen when the binary64
    values are whole numbers, whatever ``integral`` says: nothing is ever rounded.
    """
    if integral:
        if physical.size == 0:
            return INTEGER_TYPES[0]
        low, high = float(physical.min()), float(physical.max())
        whole = bool(np.all(np.isfinite(physical)) and np.all(np.floor(physical) == physical))
        if whole and low >= -EXACT_INTEGERS and high <= EXACT_INTEGERS:
            for dtype in INTEGER_TYPES:
                info = np.iinfo(dtype)
                if info.min <= low and high <= info.max:
                    return dtype
    single = physical.astype(np.float32)
    if np.array_equal(single.astype(np.float64), physical, equal_nan=True):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def raw_values(stored: Array, scaling: Scaling) -> Array:
    """The raw values of the source, in ``scaling.raw_dtype``, from what the array stores.

    Physical values are inverted in binary64, ``(physical - intercept) / slope``, and
    rounded to the nearest value of the raw type (the nearest integer for integer types).
    """
    dtype = np.dtype(scaling.raw_dtype)
    if scaling.stored == "raw":
        return np.asarray(stored, dtype=dtype)
    values = (np.asarray(stored, dtype=np.float64) - np.float64(scaling.intercept)) / np.float64(scaling.slope)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    out: Array = values.astype(dtype)
    return out


def physical_array(stored: Array, scaling: Scaling | None) -> Array:
    """Physical values of an image for a format without scaling (NRRD, MetaImage): stored ones if already physical."""
    if scaling is None or scaling.stored == "physical":
        return stored
    physical = scaling.to_physical(stored)
    integral = integral_scaling(scaling.raw_dtype, scaling.slope, scaling.intercept)
    return physical.astype(physical_dtype(physical, integral=integral))
