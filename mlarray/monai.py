"""MONAI reads ``.mla``: :class:`MLArrayReader` for ``LoadImage(reader=...)`` and ``LoadImaged``.

MONAI's loaders accept any :class:`monai.data.ImageReader`; this one returns the
array in the file's axis order (nibabel's order for files converted from NIfTI) and
the meta dictionary MONAI's transforms read: ``affine`` and ``original_affine`` (RAS+,
as MONAI's own NIfTI reader gives them), ``spatial_shape``, ``original_channel_dim``
and ``space``. Files that store raw values with a ``scaling`` give physical values, as
MONAI's NIfTI reader does. A 2-d slice whose source file placed it in a 3-d world gets
that 4x4 affine (:func:`mlarray.convert.slice_world`), as MONAI's NIfTI reader gives it.
Needs the ``monai`` extra; ``import mlarray`` never imports this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from monai.data.image_reader import ImageReader
    from monai.utils.enums import MetaKeys, SpaceKeys
except ImportError as exc:  # pragma: no cover - exercised only without monai
    from mlarray.errors import MissingDependencyError

    raise MissingDependencyError('mlarray.monai needs MONAI: pip install "mlarray[monai]"', module="monai") from exc

from mlarray import MLArray
from mlarray.convert import slice_world
from mlarray.errors import InvalidArgumentError
from mlarray.frames import to_ras

PathLike = str | os.PathLike[str]


def _channel_axis(image: MLArray) -> int | None:
    axes = image.meta.spatial_axes() or []
    others = [a for a in range(image.ndim) if a not in axes]
    if len(others) > 1:
        raise InvalidArgumentError(
            f"MONAI images have at most one non-spatial (channel) axis; this file has {len(others)}"
        )
    return others[0] if others else None


def _drop_axis(affine: np.ndarray[Any, Any], column: int, tol: float = 1e-9) -> np.ndarray[Any, Any]:
    """``affine`` (``(n+1) x (n+1)``) without spatial axis ``column`` and the world axis it alone moves along.

    That axis becomes MONAI's channel axis: like MONAI's own readers, the affine then
    covers the remaining axes only. The axis must map to exactly one world axis that no
    other axis moves along (true of any spacing with a permuted or flipped direction).

    Raises
    ------
    InvalidArgumentError
        The axis is mixed with the others by a rotation or shear: no world axis belongs to it alone.
    """
    n = affine.shape[0] - 1
    linear = affine[:n, :n]
    small = tol * float(np.abs(linear).max())
    rows = np.flatnonzero(np.abs(linear[:, column]) > small)
    others = [c for c in range(n) if c != column]
    if len(rows) != 1 or np.any(np.abs(linear[rows[0], others]) > small):
        raise InvalidArgumentError(
            f"axis {column} cannot be the channel axis: the affine mixes it with the other axes "
            "(a rotation or shear); give the file axis labels with a 'channel' axis instead"
        )
    keep_rows = [r for r in range(n + 1) if r != rows[0]]
    keep_cols = [*others, n]
    out: np.ndarray[Any, Any] = affine[np.ix_(keep_rows, keep_cols)]
    return out


class MLArrayReader(ImageReader):
    """Load ``.mla`` files in MONAI: ``LoadImage(reader=MLArrayReader())``.

    Parameters
    ----------
    channel_dim : int, 'no_channel' or None
        Which array axis holds channels. ``None`` takes it from the file's axis labels
        (the one non-spatial axis, or no channel). An axis the file counts as spatial
        (a file without axis labels counts every axis so) is taken out of
        ``spatial_shape`` (as MONAI's own readers do) and of the affine (which they keep
        whole), so MONAI's spatial transforms act on the other axes only.
    to_ras : bool
        Give LPS+ files (``spatial.coord_system == 'LPS'``) a RAS+ affine, as MONAI's
        ITK reader does by default; ``space`` says which frame the affine is in. Files in
        other orientation codes (``'LAS'``, ...) always get a RAS+ affine
        (:func:`mlarray.frames.to_ras`), since MONAI's spaces are RAS and LPS only.
    nthreads : int, optional
        Decompression threads (all cores by default).
    """

    def __init__(self, channel_dim: int | str | None = None, to_ras: bool = True, nthreads: int | None = None) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.to_ras = to_ras
        self.nthreads = nthreads

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every file name ends in ``.mla``."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return bool(names) and all(os.fspath(n).lower().endswith(".mla") for n in names)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> MLArray | list[MLArray]:
        """Read each file whole into memory; a list of files gives a list of images."""
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        dparams = None if self.nthreads is None else {"nthreads": self.nthreads}
        images = [MLArray.load(p, dparams=dparams) for p in paths]
        for path, image in zip(paths, images, strict=True):
            if image.shape is None:
                raise InvalidArgumentError("a metadata-only file has no array to load", path=os.fspath(path))
        return images[0] if isinstance(data, (str, os.PathLike)) else images

    def _channel(self, image: MLArray) -> int | None:
        """The channel axis as MONAI's ``original_channel_dim`` (as given: it may be negative)."""
        if self.channel_dim is None:
            return _channel_axis(image)
        if isinstance(self.channel_dim, str) and self.channel_dim == "no_channel":
            return None
        channel = int(self.channel_dim)
        if not -image.ndim <= channel < image.ndim:
            raise InvalidArgumentError(f"channel_dim {channel} is out of range for a {image.ndim}-d image")
        return channel

    def _one(self, image: MLArray) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
        axes = image.meta.spatial_axes() or []
        if image.shape is None:  # read() refuses such files; an image handed in directly
            raise InvalidArgumentError("a metadata-only image has no array to load")
        channel = self._channel(image)
        frame = image.meta.spatial.coord_system
        affine = np.asarray(image.affine, dtype=np.float64)
        keep_lps = frame == "LPS" and not self.to_ras  # MONAI's spaces are RAS and LPS only
        if not keep_lps:
            affine = to_ras(affine, frame)  # the whole world: its orientation code names all of its axes
        if channel is not None and channel % image.ndim in axes:  # a spatial axis named as the channel
            affine = _drop_axis(affine, axes.index(channel % image.ndim))
            axes = [a for a in axes if a != channel % image.ndim]
        elif len(axes) < 3:  # a slice: its place in the 3-d world, as MONAI's NIfTI reader gives it
            world = slice_world(image, "LPS" if keep_lps else "RAS")
            affine = affine if world is None else world
        space = SpaceKeys.LPS if keep_lps else SpaceKeys.RAS
        meta: dict[str, Any] = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray([image.shape[a] for a in axes]),
            MetaKeys.SPACE: space,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if channel is None else channel,
        }
        return image.to_numpy(scaled=True), meta

    def get_data(self, img: MLArray | Sequence[MLArray]) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
        """The array and MONAI's meta dictionary; several images are joined along a channel axis.

        Images without a channel axis are stacked on a new first axis (``original_channel_dim``
        becomes 0); images with one are concatenated along it. All must share shape and affine.
        """
        images = [img] if isinstance(img, MLArray) else list(img)
        parts = [self._one(i) for i in images]
        if len(parts) == 1:
            return parts[0]
        data, meta = parts[0]
        for other, other_meta in parts[1:]:
            if other.shape != data.shape or not np.allclose(other_meta[MetaKeys.AFFINE], meta[MetaKeys.AFFINE]):
                raise InvalidArgumentError("images read together must have the same shape and affine")
        channel = meta[MetaKeys.ORIGINAL_CHANNEL_DIM]
        arrays = [d for d, _ in parts]
        if isinstance(channel, int):
            return np.concatenate(arrays, axis=channel), meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta
