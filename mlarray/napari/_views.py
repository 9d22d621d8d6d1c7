"""Lazy views of an array for napari layers: one channel, or a boolean mask as ``uint8``.

napari's own ``channel_axis`` splitting indexes the array once per channel
(``data[:, c]``), which for a memory-mapped file decompresses each whole channel up
front. :class:`ChannelView` instead stands for ``base[..., c, ...]`` and only reads
when napari asks it for a slice, so every channel layer stays as lazy as the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlarray.errors import InvalidArgumentError


class ChannelView:
    """The array ``base`` with axis ``axis`` fixed at ``index``, read only when indexed.

    Parameters
    ----------
    base : array-like
        Anything with ``shape``, ``dtype`` and NumPy indexing (an open :class:`~mlarray.MLArray`).
    axis : int
        The channel axis of ``base``.
    index : int
        The channel this view shows.
    """

    def __init__(self, base: Any, axis: int, index: int) -> None:
        shape = tuple(int(s) for s in base.shape)
        if not 0 <= axis < len(shape):
            raise InvalidArgumentError(f"axis {axis} is out of range for an array of shape {shape}")
        if not 0 <= index < shape[axis]:
            raise InvalidArgumentError(f"channel {index} is out of range: axis {axis} has {shape[axis]} entries")
        self.base = base
        self.axis = axis
        self.index = index
        self._shape = shape[:axis] + shape[axis + 1 :]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the view (the base shape without the channel axis)."""
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type (that of the base)."""
        out: np.dtype[Any] = np.dtype(self.base.dtype)
        return out

    @property
    def ndim(self) -> int:
        """Number of dimensions of the view."""
        return len(self._shape)

    @property
    def size(self) -> int:
        """Number of elements of the view."""
        return int(np.prod(self._shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d view")
        return self._shape[0]

    def _base_key(self, key: Any) -> tuple[Any, ...]:
        parts = key if isinstance(key, tuple) else (key,)
        if any(part is None for part in parts):
            raise InvalidArgumentError("a channel view cannot be indexed with None (np.newaxis)")
        if sum(part is Ellipsis for part in parts) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in parts:
            at = next(i for i, part in enumerate(parts) if part is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(parts) + 1)
            parts = parts[:at] + fill + parts[at + 1 :]
        if len(parts) > self.ndim:
            raise IndexError(f"too many indices: the view is {self.ndim}-dimensional, {len(parts)} were given")
        parts = parts + (slice(None),) * (self.ndim - len(parts))
        return parts[: self.axis] + (self.index,) + parts[self.axis :]

    def __getitem__(self, key: Any) -> Any:
        return self.base[self._base_key(key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.base[self._base_key(key)] = value  # napari's label tools paint into the layer data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        out = np.asarray(self[...])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ChannelView({self.base!r}, axis={self.axis}, index={self.index})"


class ByteMask:
    """A boolean array shown as ``uint8`` (0 and 1), read only when indexed.

    napari's Labels layer turns boolean data into integers with ``data.view(np.uint8)``,
    which an open file does not have; this view does it slice by slice. Painting writes
    ``value != 0`` back.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self.shape: tuple[int, ...] = tuple(int(s) for s in base.shape)
        self.dtype = np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self.base[key]).view(np.uint8)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.base[key] = np.asarray(value) != 0

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        out = np.asarray(self[...])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ByteMask({self.base!r})"
