"""Save an ``.mla`` file from a source read slab by slab: conversion with bounded memory.

:func:`save_slabs` is the streaming counterpart of ``MLArray(data, meta=..., ...).save(path)``:
the same header validation, storage plan (layout and codec), header and atomic
replacement, but the data come from a ``read(region)`` callback, one slab at a time
(:mod:`mlarray.storage.stream`). Peak memory is one source slab (at most
:data:`~mlarray.storage.stream.SLAB_BYTES`, or one chunk-thick slab if that is larger)
plus a few chunks, whatever the size of the array.

:func:`copy_image` streams an ``.mla`` -> ``.mla`` relayout (or a legacy migration) through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from mlarray._inputs import ShapeOnly
from mlarray.api import MLArray
from mlarray.convert._scaling import PhysicalScan
from mlarray.convert._slabs import fortran_axis, map_pieces, pieces
from mlarray.errors import InvalidArgumentError
from mlarray.models import Meta, Scaling
from mlarray.storage import atomic_target, check_path, header_bytes
from mlarray.storage.io import layout_of, normalize_dtype
from mlarray.storage.locking import replacing
from mlarray.storage.stream import Region, SlabWriter, slab_regions

Reader = Callable[[Region], Any]
"""``read(region) -> array`` of the region's shape (any dtype castable to the stored one)."""


class SlabSource(Protocol):
    """A foreign file opened for streaming conversion (:class:`~mlarray.convert.nifti.NiftiSource`, ...)."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    """The raw (stored) values' type."""
    slope: float
    inter: float
    """The file's intensity scaling (1 and 0 when it has none)."""
    rgb: bool
    """Values are colour components: never scaled."""

    def read(self, region: Region) -> Any: ...

    def meta(self, scaling: Scaling | None) -> Meta: ...

    def check_end(self) -> None: ...


def template(shape: Sequence[int], dtype: Any, meta: Meta, layout: dict[str, Any] | None) -> MLArray:
    """An image without data that saves like ``MLArray(data, meta=meta, **layout)`` would.

    ``layout=None`` keeps the layout ``meta`` records (as ``MLArray.load(...).save`` does).
    """
    stand_in = ShapeOnly(tuple(int(s) for s in shape), normalize_dtype(dtype))
    if layout is not None:
        return MLArray(stand_in, meta=meta, **layout)
    image = MLArray.__new__(MLArray)
    image._init_empty(meta.model_copy(deep=True))
    image._np = np.broadcast_to(np.zeros((), dtype=stand_in.dtype), stand_in.shape)
    return image


def save_slabs(
    path: str | os.PathLike[str],
    image: MLArray,
    read: Reader,
    *,
    fortran: bool = False,
    max_bytes: int | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Save ``image`` (a :func:`template`) to ``path``, its data read slab by slab.

    ``read`` is called once per slab, in order, with a region of whole chunks along one
    axis and full extent elsewhere: axis 0 (C order), or for a ``fortran`` source the
    slowest axis cut into several chunks (:func:`~mlarray.convert._slabs.fortran_axis`).
    The header is validated before anything is written and the target replaced
    atomically, as by :meth:`MLArray.save`. When the array is one slab, or the slabs
    run along axis 0, the file is byte for byte what ``save`` writes (with one Blosc2
    thread: several threads store a chunk's blocks in the order they finish); otherwise
    it holds the same compressed chunks in another order. ``check`` runs after the last
    slab, before the header is written (a source's check that nothing follows its data).
    """
    p = check_path(path, must_exist=False)
    shape, dtype = image.shape, image.dtype
    assert shape is not None and dtype is not None
    header_bytes(image._header_for_save(layout=image.meta.layout))  # validate before writing
    plan = image._storage_plan(p)
    with replacing(p), atomic_target(p) as tmp:
        writer = SlabWriter(tmp, shape, dtype, chunks=plan.chunks, blocks=plan.blocks, cparams=plan.cparams)
        axis = fortran_axis(writer.shape, writer.chunks, writer.dtype.itemsize, max_bytes) if fortran else 0
        for region in writer.slabs(axis=axis, max_bytes=max_bytes):
            writer.write(region, read(region))
        if check is not None:
            check()
        meta = image._header_for_save(layout=layout_of(writer.nd, plan.strategy, plan.patch))
        writer.finish(meta)
        del writer


def copy_image(
    source: MLArray, dst: str | os.PathLike[str], layout: dict[str, Any] | None, *, max_bytes: int | None = None
) -> None:
    """Save the open (memory-mapped) ``source`` as ``dst`` with ``layout`` (``None``: the recorded one), slab by slab.

    The result is what ``MLArray(source.to_numpy(), meta=source.meta, **layout).save(dst)``
    (or ``MLArray.load(src).save(dst)``) writes, byte for byte; only one slab is in
    memory at a time. The source's chunks are checked before they are decompressed.
    """
    if source.shape is None or 0 in source.shape:
        raise InvalidArgumentError("an image without data has nothing to stream; save it from memory")
    image = template(source.shape, source.dtype, source.meta, layout)
    save_slabs(dst, image, lambda region: source[region], max_bytes=max_bytes)


def convert_source(
    source: SlabSource,
    dst: str | os.PathLike[str],
    layout: dict[str, Any],
    *,
    keep_raw: bool = False,
    seg: bool = False,
    cparams_for: Callable[[int], Any] | None = None,
    max_bytes: int | None = None,
) -> None:
    """Convert an open foreign file to the ``.mla`` ``dst`` slab by slab, with the values :func:`physical_values` gives.

    A scaled source is read twice: the first pass chooses the stored type
    (:class:`~mlarray.convert._scaling.PhysicalScan`), the second writes. The file is the
    one a conversion in memory writes (see :func:`save_slabs`). ``seg`` marks the image a
    label map (``is_seg``; with ``layout`` giving no ``cparams``, compressed as one).
    ``cparams_for(itemsize)`` gives the ``cparams`` for the item size of the values stored,
    known after the first pass (a scaled source's are wider than its own).
    """
    dtype, scaling = source.dtype, None
    scan = None if source.rgb else PhysicalScan.of(source.dtype, source.slope, source.inter, keep_raw=keep_raw)
    if scan is not None:
        if not keep_raw:
            planes = (*source.shape[:-1], 1)
            for region in slab_regions(source.shape, planes, source.dtype.itemsize, axis=-1, max_bytes=max_bytes):
                raw = source.read(region)
                for key in pieces(raw.shape, fortran=not raw.flags.c_contiguous):
                    scan.add(raw[key])
        dtype, scaling = scan.result()
    meta = source.meta(scaling)
    if seg:
        meta.is_seg = True
    if cparams_for is not None:
        layout = {**layout, "cparams": cparams_for(np.dtype(dtype).itemsize)}
    image = template(source.shape, dtype, meta, layout)
    convert = scaling.to_physical if scaling is not None and scaling.stored == "physical" else None

    def read(region: Region) -> Any:
        raw = source.read(region)
        return raw if convert is None else map_pieces(convert, raw, dtype)

    save_slabs(dst, image, read, fortran=True, max_bytes=max_bytes, check=source.check_end)
