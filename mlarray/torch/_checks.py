"""Argument checks of :class:`~mlarray.torch.PatchDataset`, made when the dataset is built.

A bad argument must fail at construction with :class:`~mlarray.errors.InvalidArgumentError`,
never mid-epoch inside a DataLoader worker, where the traceback names neither the
argument nor the fix.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlarray.errors import InvalidArgumentError


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an int (Python and NumPy integers, and integral floats), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, numbers.Integral) and not float(value).is_integer():
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    number = operator.index(value) if isinstance(value, numbers.Integral) else int(float(value))
    if minimum is not None and number < minimum:
        raise InvalidArgumentError(f"{name} must be at least {minimum}, got {number}")
    return number


def patch_sizes(patch_size: Any, n: int) -> list[int]:
    """``patch_size`` (one integer for every axis, or one per axis) as ``n`` positive ints."""
    if isinstance(patch_size, numbers.Real) or (isinstance(patch_size, np.ndarray) and patch_size.ndim == 0):
        sizes = [integer(patch_size, "patch_size")] * n
    elif isinstance(patch_size, Sequence | np.ndarray):
        sizes = [integer(p, "patch_size") for p in patch_size]
    else:
        raise InvalidArgumentError(f"patch_size must be an integer or a sequence of integers, got {patch_size!r}")
    if len(sizes) != n or any(p < 1 for p in sizes):
        raise InvalidArgumentError(f"patch_size {list(sizes)} does not fit {n} spatial axes (positive sizes)")
    return sizes


def seed(value: Any) -> int | None:
    """``None`` or a non-negative integer (NumPy's generators refuse negative seeds)."""
    return None if value is None else integer(value, "seed", minimum=0)


def torch_dtype(dtype: np.dtype[Any] | torch.dtype) -> torch.dtype:
    """The torch dtype of a NumPy dtype torch supports (or ``dtype`` itself)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.empty(0, dtype=dtype.newbyteorder("="))).dtype


def fill_value(value: Any, dtype: np.dtype[Any] | torch.dtype, name: str, path: str | None = None) -> Any:
    """``value`` as a Python scalar that ``dtype`` holds, for padding; refuse one it cannot hold.

    Integers (and booleans) must be integral and in range; floating types take any real
    value that does not overflow to infinity (it is rounded to the nearest representable one,
    as ``torch.full`` does).
    """
    if not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name} must be a real number, got {value!r}")
    target = torch_dtype(dtype)
    if target.is_floating_point:
        number = float(value)
        if math.isfinite(number) and abs(number) > torch.finfo(target).max:
            raise InvalidArgumentError(
                f"{name}={value!r} is out of the range of {target}; choose a smaller value", path=path
            )
        return number
    if target.is_complex:  # pragma: no cover - images are real
        return value
    if not isinstance(value, numbers.Integral) and not (math.isfinite(float(value)) and float(value).is_integer()):
        raise InvalidArgumentError(f"{name}={value!r} is not an integer, but the patches are {target}", path=path)
    number = operator.index(value) if isinstance(value, numbers.Integral) else int(float(value))
    low, high = (0, 1) if target == torch.bool else (torch.iinfo(target).min, torch.iinfo(target).max)
    if not low <= number <= high:
        raise InvalidArgumentError(
            f"{name}={value!r} does not fit the patches' type {target} (range {low} to {high}); "
            "choose a value in range (for labels, one the label map's type holds)",
            path=path,
        )
    return bool(number) if target == torch.bool else number
