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
from typing import Any

import numpy as np

from mlarray._inputs import ShapeOnly
from mlarray.api import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.models import Meta
from mlarray.storage import atomic_target, check_path, header_bytes
from mlarray.storage.io import layout_of, normalize_dtype
from mlarray.storage.locking import ensure_unlocked
from mlarray.storage.stream import SLAB_BYTES, Region, SlabWriter

Reader = Callable[[Region], Any]
"""``read(region) -> array`` of the region's shape (any dtype castable to the stored one)."""


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
    axis: int = 0,
    max_bytes: int = SLAB_BYTES,
) -> None:
    """Save ``image`` (a :func:`template`) to ``path``, its data read slab by slab along ``axis``.

    ``read`` is called once per slab, in increasing order along ``axis``, with a region
    of whole chunks along ``axis`` and full extent elsewhere. The header is validated
    before anything is written and the target replaced atomically, as by
    :meth:`MLArray.save`. With ``axis=0`` the file is byte for byte what ``save`` writes.
    """
    p = check_path(path, must_exist=False)
    shape, dtype = image.shape, image.dtype
    assert shape is not None and dtype is not None
    header_bytes(image._header_for_save(layout=image.meta.layout))  # validate before writing
    ensure_unlocked(p)
    plan = image._storage_plan(p)
    with atomic_target(p) as tmp:
        writer = SlabWriter(tmp, shape, dtype, chunks=plan.chunks, blocks=plan.blocks, cparams=plan.cparams)
        for region in writer.slabs(axis=axis, max_bytes=max_bytes):
            writer.write(region, read(region))
        meta = image._header_for_save(layout=layout_of(writer.nd, plan.strategy, plan.patch))
        writer.finish(meta)
        del writer


def copy_image(
    source: MLArray, dst: str | os.PathLike[str], layout: dict[str, Any] | None, *, max_bytes: int = SLAB_BYTES
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
