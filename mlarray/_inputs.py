"""Normalising what users pass to :class:`~mlarray.api.MLArray`: arrays and geometry."""

from __future__ import annotations

import itertools
import math
import operator
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import HeaderValidationError, InvalidArgumentError, Problem
from mlarray.models.v1.header import MAX_NDIM
from mlarray.storage import compress
from mlarray.storage.io import normalize_dtype


def as_shape(shape: Any, dtype: np.dtype[Any] | None = None) -> tuple[int, ...]:
    """``shape`` (an int or a sequence of ints) as a tuple of non-negative ints, as NumPy takes it.

    Raises
    ------
    InvalidArgumentError
        Not an int or a sequence of ints (floats included, as NumPy refuses them), a
        negative dimension, or more elements (more bytes of ``dtype``, when given) than an
        array can index.
    """
    refused = (bool, np.bool_, set, frozenset, dict, str, bytes)  # NumPy refuses them; a set has no order
    try:
        given = [shape] if isinstance(shape, (int, np.integer)) else list(shape)
        if isinstance(shape, refused) or any(isinstance(d, (bool, np.bool_)) for d in given):
            raise TypeError
        dims = tuple(map(operator.index, given))
    except TypeError:
        raise InvalidArgumentError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise InvalidArgumentError(f"shape {dims} has a negative dimension")
    if math.prod(dims) > np.iinfo(np.intp).max:
        raise InvalidArgumentError(f"shape {dims} has more elements than an array can index")
    if dtype is not None and math.prod(dims) * dtype.itemsize > np.iinfo(np.intp).max:
        raise InvalidArgumentError(f"shape {dims} of {dtype} holds more bytes than an array can index")
    return dims


def _check_held(given: Any, stored: Any, dtype: np.dtype[Any]) -> None:
    """``OverflowError`` when converting ``given`` to ``dtype`` wrapped it around or made a finite value infinite.

    NumPy converts NumPy integers out of a type's range by wrapping (``np.int64(300)`` to
    ``uint8`` is 44) and large floats to ``inf``, where a Python ``300`` is refused.
    """
    if isinstance(given, (bool, np.bool_)) or not isinstance(given, (int, float, np.integer, np.floating)):
        return
    if dtype.kind in "iu" and isinstance(given, (int, np.integer)) and int(stored) != int(given):
        raise OverflowError(f"{given} is outside the range of {dtype}")
    if dtype.kind in "fc" and np.isfinite(given) and not np.all(np.isfinite(stored)):
        raise OverflowError(f"{given} is outside the range of {dtype}")


def held_value(fill_value: Any, dtype: np.dtype[Any]) -> Any:
    """``fill_value`` converted to ``dtype``; ``INVALID_ARGUMENT`` when it cannot hold it (see :class:`ShapeOnly`)."""
    return ShapeOnly((), dtype, fill_value).fill_value[()]


class ShapeOnly:
    """Stands in for data not yet written (``MLArray.create``): shape, dtype and fill value.

    The fill value is converted to ``dtype`` here, as ``numpy.full`` converts it; one that
    the dtype cannot hold (300 for ``uint8``, a string for a number) is an
    ``INVALID_ARGUMENT``, raised before anything is written.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any], fill_value: Any = 0) -> None:
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)
        try:
            with np.errstate(invalid="raise", over="raise"):
                self.fill_value = np.asarray(fill_value, dtype=dtype)
            if self.fill_value.shape == ():
                _check_held(fill_value, self.fill_value[()], dtype)
        except (TypeError, ValueError, OverflowError, FloatingPointError) as exc:
            raise InvalidArgumentError(
                f"fill_value {fill_value!r} cannot be stored as {dtype} ({exc}); pass a value {dtype} can hold"
            ) from None
        if self.fill_value.shape != ():
            raise InvalidArgumentError(f"fill_value must be a single value, got shape {self.fill_value.shape}")

    def write(self, tmp: str, chunks: Any, blocks: Any, cparams: Any) -> Any:
        kwargs: dict[str, Any] = {"urlpath": tmp, "mode": "w", "cparams": cparams}
        if chunks is not None:
            kwargs["chunks"] = tuple(chunks)
        if blocks is not None:
            kwargs["blocks"] = tuple(blocks)
        if self.fill_value.tobytes() == bytes(self.dtype.itemsize):  # zero bytes: -0.0 is not zero here
            return blosc2.zeros(self.shape, dtype=self.dtype, **kwargs)
        if chunks is not None and blocks is not None and all(self.shape):
            count = math.prod(compress.chunk_grid(self.shape, chunks))
            if count >= compress.HELD_MIN_CHUNKS:  # chunk by chunk into the file would take time in count**2
                one = blosc2.full(tuple(chunks), self.fill_value[()], dtype=self.dtype, **{**kwargs, "urlpath": None})
                run = bytes(one.schunk.get_chunk(0))  # a value run: every chunk of the frame is these bytes
                nd, _ = compress.write_chunks(
                    tmp, self.shape, self.dtype, chunks, blocks, cparams, itertools.repeat(run, count)
                )
                return nd
        return blosc2.full(self.shape, self.fill_value[()], dtype=self.dtype, **kwargs)


def as_storable(array: Any) -> np.ndarray[Any, Any]:
    """``array`` as a NumPy array of a storable dtype (1 to MAX_NDIM dimensions)."""
    if isinstance(array, ShapeOnly):
        return np.broadcast_to(np.zeros((), dtype=array.dtype), array.shape)
    if isinstance(array, blosc2.NDArray):
        array = array[...]
    try:
        out = np.asarray(array)
    except (ValueError, TypeError, RuntimeError) as exc:  # ragged lists, unconvertible objects, tensors with grad
        raise InvalidArgumentError(f"the data cannot be made into an array ({exc})") from None
    if out.ndim == 0 or out.ndim > MAX_NDIM:
        raise InvalidArgumentError(f"arrays must have 1 to {MAX_NDIM} dimensions, got {out.ndim}")
    stored = normalize_dtype(out.dtype)
    if out.dtype != stored or out.dtype.str != stored.str:
        out = out.astype(stored)
    return out


def tolist(value: Any) -> Any:
    """NumPy arrays and scalars (also nested in lists) as plain Python values."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [tolist(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def default_labels(ndim: int, spatial: dict[str, Any], refuse_empty: bool = False) -> list[str] | None:
    """Without labels every axis is spatial; if the geometry covers fewer axes, the leading ones are not.

    ``refuse_empty``: an empty geometry (``spacing=[]``, perhaps an empty variable) is a
    ``HeaderValidationError`` rather than an array with no spatial axis. Files of mlarray
    0.0.x are read as they are.
    """
    n = None
    try:
        for key in ("spacing", "origin", "direction"):
            if spatial.get(key) is not None:
                n = len(spatial[key])
                break
        if n is None and spatial.get("affine") is not None:
            n = len(spatial["affine"]) - 1
    except TypeError:  # a scalar or a generator: the header's validation names the member and its type
        return None
    if n is None or n == ndim:
        return None
    if n == 0 and refuse_empty:
        raise HeaderValidationError(
            [Problem("spatial", "rule_violation", "the geometry is empty; give one entry per spatial axis")]
        )
    if n > ndim:
        raise HeaderValidationError(
            [Problem("spatial", "rule_violation", f"geometry describes {n} axes but the array has only {ndim}")]
        )
    return ["non_spatial"] * (ndim - n) + ["spatial"] * n


def decompose(affine: np.ndarray[Any, Any]) -> tuple[list[float], list[float], list[list[float]]]:
    """Split an affine into spacing (column norms), origin and (possibly non-orthonormal) direction."""
    n = affine.shape[0] - 1
    linear = affine[:n, :n]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / np.where(spacing == 0, 1, spacing)
    return spacing.tolist(), affine[:n, n].tolist(), direction.tolist()
