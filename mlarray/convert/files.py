"""One entry point for file conversion, dispatching on the file name endings.

``convert_file`` is what ``mlarray convert`` calls. It pairs a reader with a
writer: NIfTI or NRRD into ``.mla`` (with the layout and compression asked for),
``.mla`` into NIfTI or NRRD, NIfTI and NRRD into each other (through an in-memory
image, so the same geometry rules apply), and ``.mla`` into ``.mla`` (a relayout
that keeps every header field).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import blosc2
import numpy as np

from mlarray.api import MLArray
from mlarray.convert._common import METAIMAGE_EXTENSIONS, MLA_EXTENSION, NIFTI_EXTENSIONS, NRRD_EXTENSIONS, suffix_of
from mlarray.convert._stream import convert_source, copy_image
from mlarray.convert.dicom import read_dicom_parts
from mlarray.convert.metaimage import MetaImageSource, read_metaimage_parts, write_metaimage
from mlarray.convert.nifti import NiftiSource, read_nifti_parts, write_nifti
from mlarray.convert.nrrd import NrrdSource, read_nrrd_parts, write_nrrd
from mlarray.errors import InvalidArgumentError, WrongExtensionError
from mlarray.layout import PatchSize
from mlarray.models import Meta
from mlarray.storage.cparams import named_cparams

Reader = Callable[..., tuple[np.ndarray[Any, Any], Meta]]
"""``reader(path, keep_raw=False) -> (array, meta)``."""
Writer = Callable[[MLArray, str | os.PathLike[str]], None]

READERS: dict[str, Reader] = {
    **dict.fromkeys(NIFTI_EXTENSIONS, read_nifti_parts),
    **dict.fromkeys(NRRD_EXTENSIONS, read_nrrd_parts),
    **dict.fromkeys(METAIMAGE_EXTENSIONS, read_metaimage_parts),
}
WRITERS: dict[str, Writer] = {
    **dict.fromkeys(NIFTI_EXTENSIONS, write_nifti),
    **dict.fromkeys(NRRD_EXTENSIONS, write_nrrd),
    **dict.fromkeys(METAIMAGE_EXTENSIONS, write_metaimage),
}
SOURCES: dict[str, Callable[[str | os.PathLike[str]], Any]] = {
    **dict.fromkeys(NIFTI_EXTENSIONS, NiftiSource),
    **dict.fromkeys(NRRD_EXTENSIONS, NrrdSource.open),
    **dict.fromkeys(METAIMAGE_EXTENSIONS, MetaImageSource.open),
}
"""Formats read slab by slab when converted to ``.mla`` (:func:`~mlarray.convert._stream.convert_source`);
``None`` from one means the file is read whole."""
STREAMED_WRITERS = frozenset((*NIFTI_EXTENSIONS, *NRRD_EXTENSIONS))
"""Formats whose writer reads a file-backed image slab by slab."""
ENDINGS = (*NIFTI_EXTENSIONS, *NRRD_EXTENSIONS, *METAIMAGE_EXTENSIONS, MLA_EXTENSION)


def convert_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    patch_size: PatchSize | None = None,
    codec: str | None = None,
    clevel: int | None = None,
    keep_raw: bool = False,
    series: str | None = None,
    seg: bool = False,
) -> None:
    """Convert ``src`` to ``dst``; the endings tell the formats (``.nii[.gz]``, ``.nrrd``, ``.nhdr``, ``.mha``,
    ``.mhd``, ``.mla``), and a directory ``src`` is a DICOM series.

    Parameters
    ----------
    src, dst : path
        Input and output files. ``dst`` is replaced atomically.
    patch_size : int, sequence of int or 'default', optional
        Layout of a written ``.mla`` (see :class:`~mlarray.MLArray`). ``None`` means
        the default layout for a new ``.mla`` and the recorded one for ``.mla`` -> ``.mla``.
    codec, clevel : optional
        Blosc2 codec name (``lz4``, ``zstd``, ...) and level 0-9 of a written ``.mla``;
        ``None`` keeps the recorded (or default) value.
    keep_raw : bool
        Store a scaled source's raw values in the ``.mla`` (``meta.scaling.stored = 'raw'``)
        instead of its physical values (the default; spec section 5.10).
    series : str, optional
        SeriesInstanceUID of the DICOM series to read when the directory holds several.
    seg : bool
        The source is a label map (or a mask), converted to ``.mla``: the header says so
        (``is_seg``) and, unless ``codec`` or ``clevel`` is given, the file is compressed
        as :class:`~mlarray.MLArray` compresses label maps (1-byte ones with LZ4HC level 8
        and no filter, which decodes about twice as fast as the bit shuffle of other 1-byte
        data; wider ones as usual). Stats and boxes are not computed here
        (:func:`mlarray.stats.update_stats`; ``mlarray convert --seg`` does both).

    Raises
    ------
    WrongExtensionError
        An ending is not one of the formats above.
    InvalidArgumentError
        Layout options or ``seg`` given for a NIfTI/NRRD target, ``keep_raw`` or ``seg`` for
        an ``.mla`` source, or an unknown codec or level.
    MissingDependencyError, SourceFormatError, NotRepresentableError
        See :func:`~mlarray.convert.read_nifti` and the other readers and writers.
    """
    s, d = suffix_of(src), suffix_of(dst)
    layout_given = patch_size is not None or codec is not None or clevel is not None
    mla_only = "patch_size, codec, clevel, keep_raw and seg only apply when writing .mla"
    if os.path.isdir(src):
        if d is None:
            raise WrongExtensionError(
                f"unknown format; convertible files end in {', '.join(ENDINGS)}", path=os.fspath(dst)
            )
        if d != MLA_EXTENSION and (layout_given or seg):  # before the series is read
            raise InvalidArgumentError(mla_only, path=os.fspath(dst))
        data, meta = read_dicom_parts(src, keep_raw=keep_raw, series=series)
        _write_read(data, meta, dst, d, patch_size, codec, clevel, seg)
        return
    for path, ending in ((src, s), (dst, d)):
        if ending is None:
            message = f"unknown format; convertible files end in {', '.join(ENDINGS)}"
            raise WrongExtensionError(message, path=os.fspath(path))
    if d == MLA_EXTENSION:
        if s == MLA_EXTENSION:
            if keep_raw or seg:
                raise InvalidArgumentError(
                    "keep_raw and seg apply when converting another format to .mla", path=os.fspath(src)
                )
            _relayout(src, dst, patch_size, codec, clevel)
            return
        assert s is not None
        source = SOURCES[s](src) if s in SOURCES else None
        if source is not None:
            with source:
                if 0 not in source.shape:
                    layout = {"patch_size": "default" if patch_size is None else patch_size}
                    compression = functools.partial(_compression, codec, clevel, seg=seg)  # by the stored item size
                    convert_source(source, dst, layout, keep_raw=keep_raw, seg=seg, cparams_for=compression)
                    return
        data, meta = READERS[s](src, keep_raw=keep_raw)
        if seg:
            meta.is_seg = True
        image = MLArray(
            data,
            meta=meta,
            patch_size="default" if patch_size is None else patch_size,
            cparams=_compression(codec, clevel, data.dtype.itemsize, seg),
        )
        image.save(dst)
        return
    if layout_given or keep_raw or seg:
        raise InvalidArgumentError(mla_only, path=os.fspath(dst))
    assert d is not None
    if s == MLA_EXTENSION and d in STREAMED_WRITERS:
        with MLArray.open(src, "r", dparams={"nthreads": blosc2.nthreads}) as opened:
            WRITERS[d](opened, dst)  # reads the array slab by slab
        return
    if s == MLA_EXTENSION:
        image = MLArray.load(src)
    else:
        assert s is not None
        data, meta = READERS[s](src)
        image = MLArray(data, meta=meta, patch_size=None)
    WRITERS[d](image, dst)


def _compression(codec: str | None, clevel: int | None, itemsize: int, seg: bool = False) -> Any:
    """The ``cparams`` of a conversion to ``.mla``: ``None`` for a label map given neither codec nor level.

    ``None`` leaves the choice to :class:`~mlarray.MLArray`, which compresses an image marked
    ``is_seg`` as a label map by its stored item size (a scaled source's values may be
    stored wider than the source's): the same choice whether the conversion streams or not.
    """
    if seg and codec is None and clevel is None:
        return None
    return named_cparams(codec, clevel, itemsize)


def _write_read(
    data: np.ndarray[Any, Any],
    meta: Meta,
    dst: str | os.PathLike[str],
    ending: str,
    patch_size: PatchSize | None,
    codec: str | None,
    clevel: int | None,
    seg: bool,
) -> None:
    """Write an image just read (a DICOM series) to ``dst``: ``.mla`` with the layout asked for, or another format."""
    if ending == MLA_EXTENSION:
        if seg:
            meta.is_seg = True
        cparams = _compression(codec, clevel, data.dtype.itemsize, seg)
        MLArray(data, meta=meta, patch_size="default" if patch_size is None else patch_size, cparams=cparams).save(dst)
        return
    WRITERS[ending](MLArray(data, meta=meta, patch_size=None), dst)  # convert_file refused layout options


def _relayout(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    patch_size: PatchSize | None,
    codec: str | None,
    clevel: int | None,
) -> None:
    """Rewrite an ``.mla`` with a new layout or compression; every header field but ``layout`` is kept.

    The array is copied slab by slab (:func:`~mlarray.convert._stream.copy_image`), so the
    file may be larger than memory; the result is the file an in-memory relayout writes.
    """
    with MLArray.open(src, "r", dparams={"nthreads": blosc2.nthreads}) as image:
        kwargs = (
            None
            if (patch_size is None and codec is None and clevel is None) or image.shape is None
            else _layout_args(image, patch_size, codec, clevel)  # a metadata-only file has no layout to change
        )
        if image.shape is not None and 0 not in image.shape:
            copy_image(image, dst, kwargs)
            return
    loaded = MLArray.load(src)
    if loaded.shape is None or kwargs is None:
        loaded.save(dst)
    else:
        MLArray(loaded.to_numpy(), meta=loaded.meta, **kwargs).save(dst)


def _layout_args(image: MLArray, patch_size: PatchSize | None, codec: str | None, clevel: int | None) -> dict[str, Any]:
    """The layout arguments of a relayout: the options given, the recorded layout for the others."""
    old = image.meta.layout
    kwargs: dict[str, Any] = {}
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    elif old is not None and old.strategy == "manual":
        kwargs.update(chunk_size=old.chunk_size, block_size=old.block_size)
    else:
        kwargs["patch_size"] = None if old is None or old.strategy == "blosc2" else old.patch_size
    dtype = image.dtype
    assert dtype is not None
    kwargs["cparams"] = named_cparams(
        codec or (old.codec if old else None),
        clevel if clevel is not None else (old.clevel if old else None),
        dtype.itemsize,
        list(old.filters) if old else None,
    )
    return kwargs
