"""TorchIO reads ``.mla``: :func:`read` for TorchIO's ``reader=`` hook, and :func:`scalar_image` / :func:`label_map`.

TorchIO images take a ``reader`` callable that returns a ``(C, W, H, D)`` array and a
4 x 4 RAS+ affine. :func:`read` gives exactly that: non-spatial axes merged into the
first (channel) axis, 2-d images given a trailing axis of length 1, LPS+ files turned
into RAS+, raw values with a ``scaling`` turned into physical values. TorchIO 1.2 has no
lazy path for custom readers (it loads the image to know its shape), so the whole image
is decompressed, with all cores. Needs the ``torchio`` extra; ``import mlarray`` never
imports this module.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

try:
    import torchio as tio
except ImportError as exc:  # pragma: no cover - exercised only without torchio
    from mlarray.errors import MissingDependencyError

    raise MissingDependencyError(
        'mlarray.torchio needs TorchIO: pip install "mlarray[torchio]"', module="torchio"
    ) from exc

from mlarray import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.torch._patches import ras_affine

PathLike = str | os.PathLike[str]
Array = np.ndarray[Any, Any]


def read(path: PathLike) -> tuple[Array, Array]:
    """Read ``path`` as TorchIO expects: a ``(C, W, H, D)`` array and its 4 x 4 RAS+ affine.

    Raises
    ------
    InvalidArgumentError
        The image has more than three spatial axes.
    """
    image = MLArray.load(path)
    axes = image.meta.spatial_axes() or []
    if len(axes) > 3:
        raise InvalidArgumentError(
            f"TorchIO images have at most 3 spatial axes, this one has {len(axes)}", path=str(path)
        )
    data = image.to_numpy(scaled=True)
    others = [a for a in range(data.ndim) if a not in axes]
    data = np.moveaxis(data, [*others, *axes], list(range(data.ndim)))
    data = data.reshape((-1, *data.shape[len(others) :], *([1] * (3 - len(axes)))))
    affine, _ = ras_affine(image)
    n = len(axes)
    full = np.eye(4)
    full[:n, :n] = affine[:n, :n]
    full[:n, 3] = affine[:n, n]
    return data, full


def scalar_image(path: PathLike, **kwargs: Any) -> tio.ScalarImage:
    """``tio.ScalarImage(path, reader=read, **kwargs)``: an intensity image read from ``.mla``."""
    return tio.ScalarImage(path, reader=read, **kwargs)  # type: ignore[no-untyped-call]


def label_map(path: PathLike, **kwargs: Any) -> tio.LabelMap:
    """``tio.LabelMap(path, reader=read, **kwargs)``: a label map read from ``.mla``."""
    return tio.LabelMap(path, reader=read, **kwargs)  # type: ignore[no-untyped-call]
