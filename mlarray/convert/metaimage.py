"""MetaImage (``.mha``, ``.mhd`` + data file) to and from :class:`~mlarray.MLArray`, through SimpleITK.

SimpleITK reads and writes the format (it is ITK's own). As for NIfTI and NRRD, the
array keeps the file's axis order, ``(i, j, k)`` with ``i`` the fastest axis of the file,
and a vector pixel becomes a trailing ``components`` axis. ITK's index-to-world map,
``world = origin + D @ diag(spacing) @ index`` in LPS, is exactly ``meta.spatial``'s, so
spacing, origin and direction are copied as they are (``coord_system='LPS'``). Every
header field SimpleITK reports is kept in ``meta.source``.

Converting to ``.mla`` streams an uncompressed scalar MetaImage (:class:`MetaImageSource`):
SimpleITK reads the header alone, then one slab of planes at a time (its reader extracts
a region, and ITK's MetaImage reader reads just that region of an uncompressed file).
Compressed data (``CompressedData = True``) and vector pixels are read whole; compressed
data are inflated and checked by :mod:`mlarray.convert._metaimage_data` (ITK does not
report a damaged stream).

A 1-d or 2-d image whose source records a 3-d world is written as a 3-d MetaImage of
one slice (as ITK writes a positioned slice) with the custom field :data:`AXES_FIELD`;
reading such a file gives the image back with its own axes and the file's 3-d map in
``meta.source["world"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.convert._common import atomic_output, check_source, check_target, require
from mlarray.convert._geometry import (
    GeometryError,
    Matrix,
    affine_of,
    change_frame,
    embed_world,
    reduce_world,
    spatial_fields,
)
from mlarray.convert._metaimage_data import inflate_metaimage, is_compressed
from mlarray.convert._plane import source_world
from mlarray.convert._scaling import physical_array
from mlarray.errors import InvalidArgumentError, MLArrayError, NotRepresentableError, SourceFormatError
from mlarray.models import Meta, Spatial, is_spatial_label
from mlarray.storage.io import normalize_dtype

FORMAT = "metaimage"
"""Value of ``meta.source["format"]`` for images read from MetaImage."""

METAIMAGE_EXTENSIONS = (".mha", ".mhd")

AXES_FIELD = "MLArraySpatialAxes"
"""Header field of a 1-d or 2-d image written as a 3-d MetaImage (to keep its 3-d position): its own number of
spatial axes. Reading such a file gives the image back with that many axes."""


def _spatial(info: Any, n: int, vector: bool) -> Spatial:
    """``meta.spatial`` of a SimpleITK image or of a reader that has read the image information."""
    return Spatial(
        spacing=list(info.GetSpacing()),
        origin=list(info.GetOrigin()),
        direction=np.asarray(info.GetDirection(), dtype=np.float64).reshape(n, n).tolist(),
        axis_labels=["spatial"] * n + (["components"] if vector else []),
        coord_system="LPS",
    )


def _file_order(data: np.ndarray[Any, Any], n: int, path: str) -> np.ndarray[Any, Any]:
    """ITK's C-order buffer ``(k, j, i[, components])`` as the file's axis order ``(i, j, k[, components])``."""
    data = np.ascontiguousarray(np.transpose(data, [*range(n)][::-1] + list(range(n, data.ndim))))
    try:
        normalize_dtype(data.dtype)
    except InvalidArgumentError:
        raise NotRepresentableError(f"the pixel type {data.dtype} has no .mla equivalent", path=path) from None
    return data


def itk_to_parts(image: Any, path: str) -> tuple[np.ndarray[Any, Any], Spatial]:
    """The array in file axis order ``(i, j, k[, components])`` and the geometry of a SimpleITK image."""
    sitk = require("SimpleITK", path)
    n = image.GetDimension()
    data = _file_order(sitk.GetArrayFromImage(image), n, path)
    return data, _spatial(image, n, image.GetNumberOfComponentsPerPixel() > 1)


def read_metaimage_parts(path: str | os.PathLike[str], *, keep_raw: bool = False) -> tuple[np.ndarray[Any, Any], Meta]:
    """The array and header of a MetaImage file (no intensity scaling in the format: ``keep_raw`` is moot).

    Compressed data are inflated and checked by :func:`~mlarray.convert._metaimage_data.inflate_metaimage`
    (SimpleITK then reads only the header); anything else is read by SimpleITK.
    """
    p = check_source(path, METAIMAGE_EXTENSIONS, "MetaImage")
    sitk = require("SimpleITK", p)
    try:
        voxels = inflate_metaimage(p)
        reader = sitk.ImageFileReader()
        reader.SetFileName(p)
        reader.SetImageIO("MetaImageIO")
        reader.ReadImageInformation()
        n, components = reader.GetDimension(), reader.GetNumberOfComponents()
        expected = tuple(int(v) for v in reversed(reader.GetSize())) + ((components,) if components > 1 else ())
        image = None
        if voxels is None or voxels.shape != expected:
            voxels, image = None, reader.Execute()
        header = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    except MLArrayError:
        raise
    except Exception as exc:
        raise SourceFormatError(f"SimpleITK cannot read this MetaImage file: {exc}", path=p) from None
    source = {"format": FORMAT, "file": Path(p).name, "header": header}
    try:
        if voxels is None:
            data, spatial = itk_to_parts(image, p)
        else:
            data, spatial = _file_order(voxels, n, p), _spatial(reader, n, components > 1)
            if not data.flags.writeable:  # the transposition was a view of zlib's bytes
                data = data.copy()
        data, spatial = _unembed(data, spatial, header, source)
        return data, Meta(spatial=spatial, source=source)
    except GeometryError as exc:
        raise NotRepresentableError(f"the MetaImage geometry cannot be stored: {exc}", path=p) from None


def _unembed(
    data: np.ndarray[Any, Any], spatial: Spatial, header: dict[str, str], source: dict[str, Any]
) -> tuple[np.ndarray[Any, Any], Spatial]:
    """Undo :func:`_embed`: a file whose :data:`AXES_FIELD` says ``k`` axes, the others of size 1, gives ``k`` axes.

    The file's full LPS map goes to ``source["world"]``. A file whose trailing axes are
    not of size 1, or whose first ``k`` axes leave the first ``k`` world axes (edited by
    another tool), is read as it is.
    """
    labels = list(spatial.axis_labels or [])
    n = sum(is_spatial_label(label) for label in labels)
    try:
        k = int(header.get(AXES_FIELD, ""))
    except ValueError:
        return data, spatial
    full = affine_of(spatial, n)
    if not 1 <= k < n or any(size != 1 for size in data.shape[k:n]) or full is None:
        return data, spatial
    try:
        fields = spatial_fields(reduce_world(full, k))
    except GeometryError:
        return data, spatial
    source["world"] = full.tolist()
    reduced = Spatial(**fields, axis_labels=labels[:k] + labels[n:], coord_system=spatial.coord_system)
    return data.reshape(data.shape[:k] + data.shape[n:]), reduced


def _embed(world: Matrix, n: int, source: dict[str, Any], path: str) -> Matrix:
    """The 4x4 LPS map of an ``n``-d image (``n < 3``) placed in the 3-d world its ``meta.source`` records.

    The in-plane columns and origin are the image's (``world``, LPS); the position along
    the other world axes and the spacing of the added axes come from the source. An
    added axis that is not orthogonal to the image's axes (its source was sheared or
    the image was re-oriented) is made orthogonal, keeping its length: only the
    position of index 0 along it matters for the voxels.
    """
    base = source_world(source, "LPS")
    if base is None or base.shape != (4, 4):
        return world
    full = embed_world(world, 3, base)
    if "affine" in spatial_fields(full):
        for column in range(n, 3):
            vector = full[:3, column].copy()
            length = float(np.linalg.norm(vector)) or 1.0
            for previous in range(column):
                unit = full[:3, previous] / np.linalg.norm(full[:3, previous])
                vector -= (vector @ unit) * unit
            if np.linalg.norm(vector) <= 1e-9 * length:
                raise NotRepresentableError("the 3-d world of this slice has no axis across its plane", path=path)
            full[:3, column] = vector * (length / np.linalg.norm(vector))
    return full


class MetaImageSource:
    """An uncompressed scalar MetaImage file opened for conversion slab by slab (see the module docstring).

    Implements :class:`~mlarray.convert._stream.SlabSource`: ``shape`` in file axis order
    ``(i, j, k)``, the stored ``dtype``, no intensity scaling, :meth:`read` of a region,
    :meth:`meta`. The array and header equal :func:`read_metaimage_parts`'s.
    """

    slope, inter, rgb = 1.0, 0.0, False

    def __init__(self, path: str, reader: Any, dtype: np.dtype[Any], header: dict[str, str], spatial: Spatial) -> None:
        self.path, self._reader, self.dtype, self._header, self._spatial = path, reader, dtype, header, spatial
        self.shape: tuple[int, ...] = tuple(int(n) for n in reader.GetSize())
        self._region: Any = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> MetaImageSource | None:
        """The source, or ``None`` when the file is read whole (compressed, vector pixels, unreadable)."""
        p = check_source(path, METAIMAGE_EXTENSIONS, "MetaImage")
        sitk = require("SimpleITK", p)
        try:
            if is_compressed(p):
                return None
            reader = sitk.ImageFileReader()
            reader.SetFileName(p)
            reader.SetImageIO("MetaImageIO")
            reader.ReadImageInformation()
            n = reader.GetDimension()
            if reader.GetNumberOfComponents() != 1 or not 1 <= n <= 3 or reader.HasMetaDataKey(AXES_FIELD):
                return None  # a slice written with its 3-d position (AXES_FIELD) is read whole
            reader.SetExtractIndex([0] * n)
            reader.SetExtractSize([1] * n)
            dtype = normalize_dtype(sitk.GetArrayViewFromImage(reader.Execute()).dtype)
            header = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
            spatial = _spatial(reader, n, False)
        except (OSError, RuntimeError, InvalidArgumentError, GeometryError, ValueError):
            return None  # the whole-file reader reports what is wrong
        return cls(p, reader, dtype, header, spatial)

    def read(self, region: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        """The values of ``region`` (slices in file axis order), read by SimpleITK's region extraction."""
        sitk = require("SimpleITK", self.path)
        self._reader.SetExtractIndex([int(r.start) for r in region])
        self._reader.SetExtractSize([int(r.stop - r.start) for r in region])
        try:
            self._region = self._reader.Execute()  # kept until the next read: the view below is of its buffer
        except RuntimeError as exc:
            raise SourceFormatError(f"SimpleITK cannot read this MetaImage file: {exc}", path=self.path) from None
        block = sitk.GetArrayViewFromImage(self._region)  # (k, j, i): ITK's buffer in C order, not copied
        return np.transpose(block)  # (i, j, k), the file's own (Fortran) order

    def meta(self, scaling: Any) -> Meta:
        source = {"format": FORMAT, "file": Path(self.path).name, "header": dict(self._header)}
        return Meta(spatial=self._spatial.model_copy(deep=True), source=source)

    def check_end(self) -> None:
        """Nothing to check here: a data file too short for the header fails the read of a slab."""

    def close(self) -> None:
        self._reader = self._region = None

    def __enter__(self) -> MetaImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metaimage(path: str | os.PathLike[str]) -> MLArray:
    """Read a MetaImage file into an in-memory :class:`~mlarray.MLArray` (see :func:`read_metaimage_parts`)."""
    data, meta = read_metaimage_parts(path)
    return MLArray(data, meta=meta)


def write_metaimage(image: MLArray, path: str | os.PathLike[str]) -> None:
    """Write ``image`` as MetaImage, atomically: ``.mha`` (one file) or ``.mhd`` with a compressed ``.zraw``.

    The spatial axes must come first (at most 3, as ITK images have), optionally followed
    by one ``channel``/``components`` axis, which becomes the vector pixel. Physical values
    are written (MetaImage has no intensity scaling).

    Raises
    ------
    NotRepresentableError
        A 0-size or metadata-only image, another axis order, bool/float16/complex data,
        or a world frame that cannot be turned into LPS.
    """
    p = check_target(path, METAIMAGE_EXTENSIONS, "MetaImage")
    sitk = require("SimpleITK", p)
    if image.shape is None or 0 in image.shape:
        raise NotRepresentableError(f"an image of shape {image.shape} has no MetaImage form", path=p)
    data = physical_array(image.to_numpy(), image.meta.scaling)
    if data.dtype.kind not in "iuf" or data.dtype == np.float16:
        raise NotRepresentableError(f"MetaImage (through ITK) has no pixel type for {data.dtype}", path=p)
    labels = list(image.meta.spatial.axis_labels or ["spatial"] * data.ndim)
    n = sum(is_spatial_label(label) for label in labels)
    vector = data.ndim == n + 1 and labels[-1] in ("channel", "components")
    if not (1 <= n <= 3 and all(is_spatial_label(x) for x in labels[:n]) and (data.ndim == n or vector)):
        raise NotRepresentableError(
            f"MetaImage holds 1 to 3 spatial axes first, then at most one channel axis; this image has {labels}",
            path=p,
        )
    world = affine_of(image.meta.spatial, n)
    m = n
    if world is not None:
        frame = image.meta.spatial.coord_system
        if frame is not None and frame != "LPS":
            try:
                world = change_frame(world, frame, "LPS")
            except GeometryError as exc:
                raise NotRepresentableError(f"coord_system {frame!r} cannot become ITK's LPS: {exc}", path=p) from None
        if frame is not None and n < 3:
            world = _embed(world, n, image.meta.source or {}, p)
            m = world.shape[0] - 1
    if m > n:  # a slice with its position in a 3-d world: a 3-d image of one slice, as ITK writes one
        data = data.reshape(data.shape[:n] + (1,) * (m - n) + data.shape[n:])
    buffer = np.transpose(data, [*range(m)][::-1] + ([m] if vector else []))
    out = sitk.GetImageFromArray(np.ascontiguousarray(buffer), isVector=vector)
    if m > n:
        out.SetMetaData(AXES_FIELD, str(n))
    if world is not None:
        fields = spatial_fields(world)
        if "affine" in fields:
            raise NotRepresentableError("MetaImage cannot hold a sheared (non-orthonormal) geometry", path=p)
        out.SetSpacing([float(v) for v in fields["spacing"]])
        out.SetOrigin([float(v) for v in fields["origin"]])
        out.SetDirection([float(v) for row in fields["direction"] for v in row])
    with atomic_output(p) as tmp:
        sitk.WriteImage(out, tmp, useCompression=True)
