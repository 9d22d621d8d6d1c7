"""NumPy-style class-method constructors of :class:`~mlarray.api.MLArray`.

Each builds the data with NumPy and hands it to ``MLArray(...)``, so every keyword
of the constructor (``meta``, ``spacing``, ``patch_size``, ``chunk_size``,
``block_size``, ``cparams``, ``dparams``, ``compressed``, ...) is accepted and
validated in one place. The signatures follow mlarray 0.0.x (``shape=``,
``fill_value=``, ``arange(start, stop, step, shape=...)``,
``linspace(start, stop, num=..., shape=...)``).

Kept apart from :mod:`mlarray.api` so the ``MLArray`` class stays readable; this
module does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from mlarray._inputs import as_shape, held_value
from mlarray.errors import InvalidArgumentError

if TYPE_CHECKING:
    from mlarray.api import MLArray

Shape = Sequence[int] | int


def _fitted(values: np.ndarray[Any, Any], shape: Any, what: str) -> np.ndarray[Any, Any]:
    """``values`` reshaped to ``shape`` (when given), which must hold exactly as many elements."""
    if shape is None:
        return values
    target = as_shape(shape)
    if math.prod(target) != values.size:
        raise InvalidArgumentError(f"shape {target} holds {math.prod(target)} elements but {what} gives {values.size}")
    return values.reshape(target)


def _c_order(c_order: bool) -> None:
    if not c_order:
        raise InvalidArgumentError(
            "c_order=False (values in Blosc2 chunk order, which depends on the layout) is not supported; "
            "the values are always in C order"
        )


class ArrayConstructors:
    """The class methods ``empty``, ``zeros``, ``ones``, ``full``, ``arange``, ``linspace``,
    ``asarray`` and the ``*_like`` family. ``kwargs`` go to ``MLArray(...)``."""

    @classmethod
    def _build(cls, data: Any, kwargs: dict[str, Any]) -> MLArray:
        made: MLArray = cast(Any, cls)(data, **kwargs)
        return made

    @classmethod
    def empty(cls, shape: Shape, dtype: npt.DTypeLike = np.float64, **kwargs: Any) -> MLArray:
        """An image with uninitialized values."""
        dt = np.dtype(dtype)
        return cls._build(np.empty(as_shape(shape, dt), dtype=dt), kwargs)

    @classmethod
    def zeros(cls, shape: Shape, dtype: npt.DTypeLike = np.float64, **kwargs: Any) -> MLArray:
        """An image of zeros."""
        dt = np.dtype(dtype)
        return cls._build(np.zeros(as_shape(shape, dt), dtype=dt), kwargs)

    @classmethod
    def ones(cls, shape: Shape, dtype: npt.DTypeLike = np.float64, **kwargs: Any) -> MLArray:
        """An image of ones."""
        dt = np.dtype(dtype)
        return cls._build(np.ones(as_shape(shape, dt), dtype=dt), kwargs)

    @classmethod
    def full(cls, shape: Shape, fill_value: Any, dtype: npt.DTypeLike | None = None, **kwargs: Any) -> MLArray:
        """An image filled with ``fill_value`` (``dtype`` defaults to NumPy's choice for it).

        A value ``dtype`` cannot hold (NumPy would wrap ``np.int64(300)`` to 44 in ``uint8``,
        or make a finite float infinite) is an ``INVALID_ARGUMENT``, as for :meth:`MLArray.create`.
        """
        dt = np.dtype(dtype) if dtype is not None else np.asarray(fill_value).dtype
        return cls._build(np.full(as_shape(shape, dt), held_value(fill_value, dt), dtype=dt), kwargs)

    @classmethod
    def arange(
        cls,
        start: float,
        stop: float | None = None,
        step: float | None = 1,
        dtype: npt.DTypeLike | None = None,
        shape: Shape | None = None,
        c_order: bool = True,
        patch_size: Any = None,
        **kwargs: Any,
    ) -> MLArray:
        """Evenly spaced values ``start, start + step, ...`` below ``stop``, as :func:`numpy.arange`.

        With one number it is ``stop`` (``arange(5)`` is ``0 .. 4``). ``shape``
        reshapes the values in C order and must hold exactly their number.
        ``dtype`` defaults to int64, or float64 when any argument is a float.
        ``patch_size`` defaults to ``None`` (Blosc2 chooses the layout).

        Raises
        ------
        InvalidArgumentError
            ``step`` is 0, ``shape`` does not fit, or ``c_order`` is false.
        """
        _c_order(c_order)
        if stop is None:
            start, stop = 0, start
        step = 1 if step is None else step
        if step == 0:
            raise InvalidArgumentError("step must not be 0")
        if dtype is None:
            floats = any(isinstance(v, (float, np.floating)) for v in (start, stop, step))
            dtype = np.float64 if floats else np.int64
        values = np.arange(start, stop, step, dtype=dtype)
        return cls._build(_fitted(values, shape, "arange"), {"patch_size": patch_size, **kwargs})

    @classmethod
    def linspace(
        cls,
        start: complex,
        stop: complex,
        num: int | None = None,
        dtype: npt.DTypeLike | None = None,
        endpoint: bool = True,
        shape: Shape | None = None,
        c_order: bool = True,
        patch_size: Any = None,
        **kwargs: Any,
    ) -> MLArray:
        """``num`` evenly spaced samples from ``start`` to ``stop``, as :func:`numpy.linspace`.

        ``num`` defaults to the number of elements of ``shape``; one of them is
        required. ``stop`` is included unless ``endpoint`` is false. ``dtype``
        defaults to float64, or complex128 when ``start`` or ``stop`` is complex.
        ``patch_size`` defaults to ``None`` (Blosc2 chooses the layout).

        Raises
        ------
        InvalidArgumentError
            Neither ``num`` nor ``shape`` is given, ``num`` is negative, ``shape``
            does not hold ``num`` elements, or ``c_order`` is false.
        """
        _c_order(c_order)
        if num is None:
            if shape is None:
                raise InvalidArgumentError("linspace needs num or shape")
            num = math.prod(as_shape(shape))
        if isinstance(num, bool) or not hasattr(type(num), "__index__"):
            raise InvalidArgumentError(f"num must be an integer, got {num!r}")
        if num < 0:
            raise InvalidArgumentError(f"num must be non-negative, got {num}")
        if dtype is None:
            dtype = np.complex128 if any(isinstance(v, complex) for v in (start, stop)) else np.float64
        as_shape(num, np.dtype(dtype))  # more elements or bytes than an array can hold
        values = np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype)
        return cls._build(_fitted(values, shape, f"num={num}"), {"patch_size": patch_size, **kwargs})

    @classmethod
    def asarray(cls, array: Any, **kwargs: Any) -> MLArray:
        """``array`` as an MLArray (returned unchanged if it already is one and nothing else is given)."""
        if isinstance(array, cls) and not kwargs:
            return cast("MLArray", array)
        return cls._build(array, kwargs)

    @classmethod
    def empty_like(cls, x: Any, dtype: npt.DTypeLike | None = None, **kwargs: Any) -> MLArray:
        """Like ``x`` (shape and, for an MLArray, metadata and layout), uninitialized."""
        return cls._like(np.empty_like, x, dtype, kwargs)

    @classmethod
    def zeros_like(cls, x: Any, dtype: npt.DTypeLike | None = None, **kwargs: Any) -> MLArray:
        """Like ``x`` (shape and, for an MLArray, metadata and layout), filled with zeros."""
        return cls._like(np.zeros_like, x, dtype, kwargs)

    @classmethod
    def ones_like(cls, x: Any, dtype: npt.DTypeLike | None = None, **kwargs: Any) -> MLArray:
        """Like ``x`` (shape and, for an MLArray, metadata and layout), filled with ones."""
        return cls._like(np.ones_like, x, dtype, kwargs)

    @classmethod
    def full_like(cls, x: Any, fill_value: Any, dtype: npt.DTypeLike | None = None, **kwargs: Any) -> MLArray:
        """Like ``x`` (shape and, for an MLArray, metadata and layout), filled with ``fill_value``."""

        def make(a: Any, dtype: Any = None) -> Any:
            return np.full_like(
                a, held_value(fill_value, np.dtype(dtype) if dtype is not None else a.dtype), dtype=dtype
            )

        return cls._like(make, x, dtype, kwargs)

    @classmethod
    def _like(cls, make: Any, x: Any, dtype: Any, kwargs: dict[str, Any]) -> MLArray:
        if isinstance(x, cls):
            other = cast("MLArray", x)
            if other.shape is None:
                raise InvalidArgumentError("a metadata-only image has no shape to copy")
            template = np.empty(other.shape, dtype=other.dtype if dtype is None else dtype)
            kwargs.setdefault("copy", other)
            return cls._build(make(template, dtype=dtype), kwargs)
        return cls._build(make(np.asarray(x), dtype=dtype), kwargs)
