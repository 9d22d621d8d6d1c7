"""``PatchDataset``: random training patches read memory-mapped from ``.mla`` files.

Every item is one patch of one case (an image, optionally paired with a label map
of the same geometry), read through ``MLArray.open`` so that only the compressed
blocks the patch touches are decompressed. A share of the patches is centred on a
foreground voxel, as nnU-Net does, using per-class voxel coordinates from the label
file's header (``class_locations``) or, when the header has none, from one pass over
the label map made when the dataset is built.

The dataset holds paths and small NumPy arrays only. File handles are opened lazily
in the process that reads, so it works with ``DataLoader(num_workers=N)`` under
both ``fork`` and ``spawn``: a forked worker notices the new process id and opens
its own handles; a spawned worker receives the pickled dataset without handles.
Each process keeps at most ``max_open_files`` files open (least recently used closed
first), so an epoch over any number of cases stays within the descriptor limit.

Argument problems, including a padding constant the returned dtype cannot hold, are
refused when the dataset is built, never mid-epoch in a worker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlarray import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.foreground import ClassSample, class_locations, from_record
from mlarray.torch import _checks
from mlarray.torch._handles import HandleCache
from mlarray.torch._patches import PadMode, centred_corner, complete_patch, patch_affine, random_corner, read_region

PathLike = str | os.PathLike[str]

_TORCH_DTYPES = {np.dtype(t) for t in ("bool", "uint8", "int8", "int16", "int32", "int64")}

DEFAULT_MAX_OPEN_FILES = 128
"""Files each process keeps open by default: 64 image/label pairs, a few hundred descriptors."""


def label_dtype(stored: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype of label patches: the stored integer type, widened to int64 where torch lacks it."""
    native = stored.newbyteorder("=")
    return native if native in _TORCH_DTYPES else np.dtype(np.int64)


class Foreground:
    """One foreground class of a case: its voxel count and the voxels to centre patches on.

    The voxels are kept as flat C-order indices into the case's spatial shape, 4 bytes each
    (8 beyond 2**32 voxels) instead of one 8-byte integer per axis: the dataset is copied
    into every DataLoader worker, and a label map's header may store 10,000 voxels per class.
    """

    __slots__ = ("label", "count", "shape", "flat")

    def __init__(self, label: int, count: int, shape: tuple[int, ...], flat: np.ndarray[Any, Any]) -> None:
        self.label, self.count, self.shape, self.flat = label, count, shape, flat

    @classmethod
    def of(cls, sample: ClassSample, shape: tuple[int, ...]) -> Foreground:
        dtype = np.uint32 if math.prod(shape) <= 2**32 else np.int64
        flat = np.ravel_multi_index(tuple(sample.coords.T), shape).astype(dtype)
        return cls(sample.label, sample.count, shape, flat)

    def __len__(self) -> int:
        return len(self.flat)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Foreground, (self.label, self.count, self.shape, self.flat))

    def voxel(self, i: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The index of stored voxel ``i`` (one entry per spatial axis)."""
        return np.asarray(np.unravel_index(int(self.flat[i]), self.shape), dtype=np.int64)

    @property
    def coords(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The stored voxels as ``(k, n)`` indices, as :class:`~mlarray.foreground.ClassSample` has them."""
        if not len(self.flat):
            return np.zeros((0, len(self.shape)), dtype=np.int64)
        return np.stack(np.unravel_index(self.flat, self.shape), axis=1).astype(np.int64)


@dataclass
class Case:
    """What the dataset knows about one image/label pair without opening it again."""

    image: str
    label: str | None
    image_axes: list[int]
    label_axes: list[int]
    shape: tuple[int, ...]
    affine: np.ndarray[Any, np.dtype[np.float64]]
    spacing: np.ndarray[Any, np.dtype[np.float64]]
    classes: list[Foreground]
    scaling: tuple[float, float] | None = None
    """``(slope, intercept)`` when the image stores raw values (``meta.scaling.stored == 'raw'``)."""
    label_dtype: np.dtype[Any] | None = None
    """The dtype of this case's label patches (see :func:`label_dtype`)."""


def read_class_samples(label: MLArray, path: str, axes: list[int], seed: int) -> list[ClassSample]:
    """The foreground classes of a label map with voxels to centre on: from its header, else one pass over it.

    Label 0 is background and never a foreground class, even where the header lists it
    (spec 5.11 allows a class entry for it). A header class that has voxels (``count``)
    but no stored ``indices`` (also allowed) cannot be located from the header, so the
    label map is then located by one pass, as one without ``class_locations`` is.
    Classes without coordinates are left out.
    """
    assert label.shape is not None
    shape = tuple(label.shape[a] for a in axes)
    recorded = label.meta.class_locations
    if recorded is not None:
        entries = [(c.label, c.count, c.indices) for c in recorded.classes if c.label != 0]
        if all(indices or not count for _, count, indices in entries):
            return [c for c in from_record(entries, shape) if len(c.coords)]
    data = label[...]
    others = [a for a in range(data.ndim) if a not in axes]
    if any(data.shape[a] != 1 for a in others):
        raise InvalidArgumentError("a label map may have non-spatial axes only of length 1", path=path)
    return [c for c in class_locations(data.reshape(shape), background=0, seed=seed) if len(c.coords)]


def _spatial_axes(image: MLArray, path: str) -> list[int]:
    if image.shape is None:
        raise InvalidArgumentError("a metadata-only file has no array to take patches from", path=path)
    axes = image.meta.spatial_axes()
    if not axes:
        raise InvalidArgumentError("the file has no spatial axes to take patches from", path=path)
    return axes


def _describe(image_path: str, label_path: str | None, seed: int) -> Case:
    with MLArray.open(image_path, "r") as image:
        axes = _spatial_axes(image, image_path)
        assert image.shape is not None
        shape = tuple(image.shape[a] for a in axes)
        affine = image.affine
        spacing = np.asarray(list(image.spacing or [1.0] * len(axes)), dtype=np.float64)
        scaling = image.meta.scaling
        linear = (scaling.slope, scaling.intercept) if scaling is not None and scaling.stored == "raw" else None
    classes: list[Foreground] = []
    label_axes: list[int] = []
    out_dtype: np.dtype[Any] | None = None
    if label_path is not None:
        with MLArray.open(label_path, "r") as label:
            label_axes = _spatial_axes(label, label_path)
            assert label.shape is not None
            label_shape = tuple(label.shape[a] for a in label_axes)
            if label_shape != shape:
                raise InvalidArgumentError(
                    f"the label map's spatial shape {label_shape} differs from the image's {shape} ({image_path})",
                    path=label_path,
                )
            if not np.allclose(label.affine, affine, rtol=1e-6, atol=1e-6):
                raise InvalidArgumentError(
                    f"the label map's geometry (affine) differs from the image's ({image_path})", path=label_path
                )
            if label.dtype is None or label.dtype.kind not in "biu":
                raise InvalidArgumentError(f"a label map holds integers, got dtype {label.dtype}", path=label_path)
            classes = [Foreground.of(c, shape) for c in read_class_samples(label, label_path, label_axes, seed)]
            out_dtype = label_dtype(label.dtype)
    return Case(image_path, label_path, axes, label_axes, shape, affine, spacing, classes, linear, out_dtype)


class PatchDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Random patches of ``.mla`` images (and label maps), for ``torch.utils.data.DataLoader``.

    Parameters
    ----------
    images : sequence of paths
        One ``.mla`` file per case. Non-spatial axes (channels) are read whole.
    labels : sequence of paths, optional
        One label map per image, with the same spatial shape and geometry (checked).
    patch_size : int or sequence of int
        Patch size over the spatial axes (one int means the same for every axis); Python
        or NumPy integers.
    samples_per_epoch : int
        Length of the dataset: how many patches one pass of a DataLoader yields.
    foreground_fraction : float
        Share of patches centred on a voxel of a randomly chosen foreground class
        (default 1/3, as nnU-Net). Needs ``labels``; cases without foreground get a
        random patch instead. Label 0 is background, never a foreground class.
    pad_mode : 'constant' or 'edge'
        How patches that leave the image are filled (images smaller than the
        patch, patches centred near the border).
    pad_value, label_pad_value : float, int
        The constant for ``pad_mode='constant'`` (labels are always padded with a
        constant), exactly this value in the returned patch: ``pad_value`` in
        ``image_dtype`` (a physical value for scaled images), ``label_pad_value`` in the
        label patches' type. A value that type cannot hold is refused.
    seed : int or None
        With a non-negative int, patch ``i`` of epoch ``e`` depends only on ``(seed, e,
        i)``: the same whatever the number of workers and the start method; call
        :meth:`set_epoch` to draw new patches. With ``None``, each process draws from
        its own generator seeded by ``torch.initial_seed()``, which PyTorch sets per
        worker (``base_seed + worker_id``, a new base seed every epoch), so
        ``torch.manual_seed`` makes runs reproducible.
    image_dtype : torch.dtype
        Element type of the image patches (``float32`` by default). Images that store raw
        values with a scaling (``meta.scaling.stored == 'raw'``) give physical values.
    max_open_files : int
        Most ``.mla`` files each process (the main one, each DataLoader worker) keeps
        open; beyond it the least recently read is closed and reopened when needed.
        Each open file holds a few file descriptors; the default, 128 (64 image/label
        pairs), stays well below the usual limit of 1024.

    Raises
    ------
    InvalidArgumentError
        A file pair does not match, or an argument is invalid (including a negative
        ``seed`` and a padding constant the returned type cannot hold).

    Each item is a dict: ``image`` (``C x *patch_size``), ``label`` (``1 x
    *patch_size``, when labels are given, in one integer type for the whole dataset: the
    label maps' common type, widened where torch lacks it), ``affine`` (index-to-world of the patch: the file's affine
    with its origin at the patch corner), ``spacing``, ``corner`` (the patch's first
    voxel in the image, negative where padded), ``case`` (index into ``images``) and
    ``foreground`` (whether the patch was centred on a foreground voxel).
    """

    def __init__(
        self,
        images: Sequence[PathLike],
        labels: Sequence[PathLike] | None = None,
        *,
        patch_size: int | Sequence[int],
        samples_per_epoch: int,
        foreground_fraction: float = 1 / 3,
        pad_mode: PadMode = "constant",
        pad_value: float = 0,
        label_pad_value: int = 0,
        seed: int | None = None,
        image_dtype: torch.dtype = torch.float32,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
    ) -> None:
        if not images:
            raise InvalidArgumentError("PatchDataset needs at least one image")
        if labels is not None and len(labels) != len(images):
            raise InvalidArgumentError(f"{len(images)} images but {len(labels)} label maps")
        if samples_per_epoch < 1:
            raise InvalidArgumentError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        if not 0 <= foreground_fraction <= 1:
            raise InvalidArgumentError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        if pad_mode not in ("constant", "edge"):
            raise InvalidArgumentError(f"pad_mode must be 'constant' or 'edge', got {pad_mode!r}")
        seed = _checks.seed(seed)
        max_open_files = _checks.integer(max_open_files, "max_open_files", minimum=1)
        if not isinstance(image_dtype, torch.dtype):
            raise InvalidArgumentError(f"image_dtype must be a torch.dtype, got {image_dtype!r}")
        if pad_mode == "constant":
            pad_value = _checks.fill_value(pad_value, image_dtype, "pad_value")
        label_paths: list[str | None] = [None] * len(images) if labels is None else [os.fspath(p) for p in labels]
        self.cases = [_describe(os.fspath(img), lab, seed or 0) for img, lab in zip(images, label_paths, strict=True)]
        n = len(self.cases[0].shape)
        sizes = _checks.patch_sizes(patch_size, n)
        stored = [case.label_dtype for case in self.cases if case.label_dtype is not None]
        common = label_dtype(np.result_type(*stored)) if stored else None  # one type: workers stack items as the first
        for case in self.cases:
            if len(case.shape) != n:
                raise InvalidArgumentError(f"every image needs {n} spatial axes", path=case.image)
            if pad_mode == "edge" and 0 in case.shape:
                raise InvalidArgumentError(
                    "pad_mode='edge' cannot pad an axis of length 0 (there is no edge value); use 'constant'",
                    path=case.image,
                )
            if case.label_dtype is not None and common is not None:
                case.label_dtype = common
                label_pad_value = _checks.fill_value(label_pad_value, common, "label_pad_value", case.label)
        self.patch_size = sizes
        self.samples_per_epoch = int(samples_per_epoch)
        self.foreground_fraction = float(foreground_fraction)
        self.pad_mode: PadMode = pad_mode
        self.pad_value = pad_value
        self.label_pad_value = label_pad_value
        self.seed = seed
        self.epoch = 0
        self.image_dtype = image_dtype
        self.max_open_files = max_open_files
        self._work_dtype = _numpy_dtype(image_dtype)
        self._handles = HandleCache(max_open_files)
        self._pid = os.getpid()
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of ``epoch`` (only matters with an integer ``seed``).

        Call it before iterating a DataLoader whose workers are not persistent; persistent
        workers keep the copy of the dataset they started with, so with
        ``persistent_workers=True`` every epoch repeats the same patches (use ``seed=None``
        there, or non-persistent workers).

        Raises
        ------
        InvalidArgumentError
            ``epoch`` is not a non-negative integer.
        """
        self.epoch = _checks.integer(epoch, "epoch", minimum=0)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = HandleCache(self.max_open_files)
        state["_rng"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def _in_this_process(self) -> None:
        if self._pid != os.getpid():  # a forked worker: the parent's handles and generator are not ours
            self._handles.forget()
            self._handles = HandleCache(self.max_open_files)
            self._rng, self._pid = None, os.getpid()

    def _open(self, path: str) -> MLArray:
        self._in_this_process()
        return self._handles.get(path)

    def _generator(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([self.seed, self.epoch, index])
        self._in_this_process()
        if self._rng is None:
            self._rng = np.random.default_rng(torch.initial_seed())
        return self._rng

    def sample(self, index: int) -> tuple[int, np.ndarray[Any, Any], bool]:
        """Which case and corner item ``index`` reads, and whether it is a foreground patch."""
        rng = self._generator(index)
        which = int(rng.integers(len(self.cases)))
        case = self.cases[which]
        wants_foreground = bool(rng.random() < self.foreground_fraction) and bool(case.classes)
        if wants_foreground:
            chosen = case.classes[int(rng.integers(len(case.classes)))]
            voxel = chosen.voxel(int(rng.integers(len(chosen))))
            return which, centred_corner(voxel, case.shape, self.patch_size), True
        return which, random_corner(rng, case.shape, self.patch_size), False

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"index {index} out of range for {self.samples_per_epoch} samples")
        which, corner, foreground = self.sample(index)
        case = self.cases[which]
        data, pads = read_region(self._open(case.image), case.image_axes, corner, self.patch_size)
        if case.scaling is not None:  # physical values, as to_numpy(scaled=True) gives them
            data = data * np.float64(case.scaling[0]) + np.float64(case.scaling[1])
        # pad in the returned type, after scaling: the constant is exactly pad_value there
        data = data.astype(self._work_dtype, copy=False)
        image = complete_patch(data, pads, case.image_axes, self.pad_mode, self.pad_value)
        item: dict[str, Any] = {
            "image": self._image_tensor(image),
            "affine": torch.from_numpy(patch_affine(case.affine, corner)),
            "spacing": torch.from_numpy(case.spacing.copy()),
            "corner": torch.from_numpy(corner.astype(np.int64)),
            "case": which,
            "foreground": foreground,
        }
        if case.label is not None:
            assert case.label_dtype is not None
            data, pads = read_region(self._open(case.label), case.label_axes, corner, self.patch_size)
            data = data.astype(case.label_dtype, copy=False)
            label = complete_patch(data, pads, case.label_axes, "constant", self.label_pad_value)
            item["label"] = torch.from_numpy(np.ascontiguousarray(label))
        return item

    def _image_tensor(self, image: np.ndarray[Any, Any]) -> torch.Tensor:
        """The patch (already of ``_work_dtype``) as a tensor of ``image_dtype``."""
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        return tensor if tensor.dtype == self.image_dtype else tensor.to(self.image_dtype)

    def close(self) -> None:
        """Release the file handles this process opened (they reopen on the next read)."""
        self._in_this_process()
        self._handles.close()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    """The NumPy dtype patches of ``dtype`` are made in (NumPy converts several times faster than ``Tensor.to``).

    Types NumPy lacks (bfloat16, float8) are made in float32 and converted by torch.
    """
    try:
        return np.dtype(torch.empty(0, dtype=dtype).numpy().dtype)
    except TypeError:
        return np.dtype(np.float32)
