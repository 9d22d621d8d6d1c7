"""NIfTI-1 and NIfTI-2 (``.nii``, ``.nii.gz``) to and from :class:`~mlarray.MLArray`, exactly.

nibabel is the reader: it reads NIfTI-2 and sheared affines (which ITK refuses) and
gives the stored array in the file's own axis order ``(i, j, k, t, ...)``. Nothing
is reoriented or rescaled:

* the array holds the *physical* values ``raw * scl_slope + scl_inter`` (what
  nibabel's ``get_fdata`` gives) in the smallest type that holds them exactly, and
  ``meta.scaling`` records slope, intercept and the raw type, so writing NIfTI again
  restores the raw values bit for bit (``keep_raw=True`` stores the raw values
  instead; see :mod:`mlarray.convert._scaling`);
* the geometry is the header's own index-to-world map (sform if its code is set,
  else qform, else NIfTI "method 1": spacing only) in NIfTI's RAS+ world;
* every header field and extension is kept in ``meta.source`` and is the base of
  the header written back; only what the array and ``meta.spatial`` determine
  is recomputed.

What a NIfTI file cannot hold (``float16``, ``bool``, a channel-first axis order,
units NIfTI has no code for ...) raises :class:`~mlarray.errors.NotRepresentableError`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.convert._common import (
    NIFTI_EXTENSIONS,
    atomic_output,
    b64decode,
    b64encode,
    check_source,
    check_target,
    from_json_number,
    json_number,
    require,
)
from mlarray.convert._geometry import (
    GeometryError,
    Matrix,
    affine_of,
    change_frame,
    embed_world,
    is_orthonormal,
    reduce_world,
    same_geometry,
    spatial_fields,
)
from mlarray.convert._nifti_axes import array_dimensions, dimension_labels, keep_unused_dims, mark_vector, nifti_shape
from mlarray.convert._nifti_header import (
    EXTENSIONS_FOLLOW,
    NO_EXTENSIONS,
    as_loaded,
    extension_records,
    header_to_json,
    read_extensions,
    set_field,
)
from mlarray.convert._plane import source_world
from mlarray.convert._scaling import physical_values, raw_values
from mlarray.convert._slabs import all_pieces, export_slabs, map_pieces
from mlarray.errors import (
    InvalidArgumentError,
    MLArrayError,
    NotRepresentableError,
    ResourceLimitError,
    SourceFormatError,
)
from mlarray.models import Meta, Scaling, Spatial, is_spatial_label
from mlarray.storage.io import normalize_dtype

FORMAT = "nifti"
"""Value of ``meta.source["format"]`` for images read from NIfTI."""

STRUCTURAL = frozenset({"sizeof_hdr", "magic", "eol_check", "vox_offset", "dim", "datatype", "bitpix"})
"""Header fields computed from the array and the file layout, never copied from ``meta.source``."""

SCALING_FIELDS = ("scl_slope", "scl_inter")

SPACE_UNITS = {1: "m", 2: "mm", 3: "um"}
TIME_UNITS = {8: "s", 16: "ms", 24: "us", 32: "Hz", 40: "ppm", 48: "rad/s"}
RGB_CODES = {128: 3, 2304: 4}
"""NIfTI RGB24 / RGBA32 datatypes: stored in mlarray as uint8 with a trailing ``channel`` axis."""

NIFTI1_MAX_DIM = 32767


# --------------------------------------------------------------------------- reading


def read_nifti(path: str | os.PathLike[str], *, keep_raw: bool = False) -> MLArray:
    """Read a NIfTI-1 or NIfTI-2 file into an in-memory :class:`~mlarray.MLArray`.

    The array holds the physical values (``keep_raw=True``: the stored raw values)
    in the file's axis order, ``meta.scaling`` the file's scaling; ``meta.spatial`` gets
    the index-to-world map (``coord_system='RAS'``), axis labels and units;
    ``meta.source`` keeps the whole header (see ``docs/conversion.md``).

    Raises
    ------
    MissingDependencyError
        nibabel is not installed.
    SourceFormatError
        The file is not a NIfTI file nibabel can read.
    NotRepresentableError
        The file holds something mlarray cannot store exactly (e.g. ``float128``).
    """
    data, meta = read_nifti_parts(path, keep_raw=keep_raw)
    return MLArray(data, meta=meta)


def read_nifti_parts(path: str | os.PathLike[str], *, keep_raw: bool = False) -> tuple[np.ndarray[Any, Any], Meta]:
    """The array and header :class:`~mlarray.Meta` :func:`read_nifti` builds its image from."""
    with NiftiSource(path) as source:
        raw = source.read(tuple(slice(0, n) for n in source.shape))
        if source.rgb:
            return raw, source.meta(None)
        data, scaling = physical_values(raw, source.slope, source.inter, keep_raw=keep_raw)
        return data, source.meta(scaling)


class NiftiSource:
    """An open NIfTI file: its header, the ``meta`` it converts to, and its raw voxels region by region.

    The voxels are read with a nibabel ``ArrayProxy`` on the open file (no memory map;
    a ``.nii.gz`` is decompressed forward as regions are read in order), unscaled, in
    ``.mla`` axis order (an RGB file gets its trailing ``channel`` axis). Used for the
    whole array by :func:`read_nifti` and slab by slab by the streaming conversion.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = check_source(path, NIFTI_EXTENSIONS, "NIfTI")
        nib = require("nibabel", p)
        self.path = p
        self.version = _version(p)
        image_class = nib.Nifti2Image if self.version == 2 else nib.Nifti1Image
        try:
            from nibabel.arrayproxy import ArrayProxy
            from nibabel.openers import ImageOpener

            with ImageOpener(p, "rb") as f:
                self.raw_header = image_class.header_class.from_fileobj(f, check=False)
                end = f.tell()
                self.extensions = read_extensions(f, self.raw_header, end, p)  # nibabel strips NULs: read them again
                self.gap = _gap_before_data(f, self.raw_header)
            image = image_class.from_filename(p, mmap=False)
            proxy = image.dataobj
            self.slope, self.inter = float(proxy.slope), float(proxy.inter)
            self.file = ImageOpener(p, "rb")
            spec = (proxy.shape, proxy.dtype, proxy.offset, 1.0, 0.0)
            self.proxy = ArrayProxy(self.file.fobj, spec, mmap=False)  # type: ignore[no-untyped-call]
        except MLArrayError:
            raise
        except Exception as exc:
            raise SourceFormatError(f"nibabel cannot read this NIfTI-{self.version} file: {exc}", path=p) from None
        self.header = image.header
        self.code = int(self.raw_header["datatype"])
        self.rgb = self.code in RGB_CODES
        nifti_shape = tuple(int(n) for n in proxy.shape)
        self.nifti_ndim = len(nifti_shape)
        self.dimensions = array_dimensions(nifti_shape)
        """The NIfTI dimensions (1-based) the array axes are, in order (see :func:`array_dimensions`)."""
        shape = tuple(nifti_shape[d - 1] for d in self.dimensions)
        self.shape = shape + ((RGB_CODES[self.code],) if self.rgb else ())
        raw_dtype = np.dtype(np.uint8) if self.rgb else np.dtype(proxy.dtype)
        try:
            self.dtype = normalize_dtype(raw_dtype)
        except InvalidArgumentError:
            self.close()
            raise NotRepresentableError(
                f"NIfTI data type {raw_dtype} (datatype code {self.code}) has no .mla equivalent", path=p
            ) from None

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> NiftiSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, region: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        """The raw (unscaled) voxels of ``region`` (``.mla`` axes), in the file's byte order."""
        picks = iter(region)
        nifti_region = tuple(next(picks) if d in self.dimensions else 0 for d in range(1, self.nifti_ndim + 1))
        try:
            raw = np.asarray(self.proxy[nifti_region])
        except MemoryError as exc:
            raise ResourceLimitError(
                f"not enough memory to read the NIfTI data ({exc or type(exc).__name__})", path=self.path
            ) from None
        except Exception as exc:
            raise SourceFormatError(f"nibabel cannot read the NIfTI data: {exc}", path=self.path) from None
        if self.rgb:
            raw = np.ascontiguousarray(raw).view(np.uint8).reshape(raw.shape + (RGB_CODES[self.code],))
        return raw

    def check_end(self) -> None:
        """Nothing to check: nibabel ignores bytes after the data (and so does the conversion)."""

    def meta(self, scaling: Scaling | None) -> Meta:
        """The header of the converted image, given how its values are stored."""
        header, raw_header, p = self.header, self.raw_header, self.path
        labels = dimension_labels(self.dimensions)
        if self.rgb:
            labels.append("channel")
        try:
            geometry = nifti_geometry(header, self.nifti_ndim)
        except GeometryError as exc:
            raise NotRepresentableError(f"the NIfTI geometry cannot be stored: {exc}", path=p) from None
        spatial = Spatial(**geometry, axis_labels=labels, axis_units=nifti_units(header, labels))
        source = {
            "format": FORMAT,
            "nifti_version": self.version,
            "file": Path(p).name,
            "endianness": raw_header.endianness,
            "header": header_to_json(raw_header),
            "extensions": self.extensions,
            "gap_base64": b64encode(self.gap) if self.gap else None,
            "sform": _coded(header, "sform"),
            "qform": _coded(header, "qform"),
        }
        return Meta(spatial=spatial, source=source, scaling=scaling)


def _gap_before_data(f: Any, raw_header: Any) -> bytes:
    """The bytes between the end of the header extensions and ``vox_offset`` (e.g. a label table).

    ``f`` is positioned right after the extensions (nibabel just read them).
    """
    start = f.tell()
    offset = int(raw_header["vox_offset"])
    return bytes(f.read(offset - start)) if offset > start else b""


def _version(path: str) -> int:
    """1 or 2, from the ``sizeof_hdr`` field (348 or 540, in either byte order)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(path, "rb") as f:
            head = f.read(4)
    except Exception as exc:
        raise SourceFormatError(f"cannot read the file: {exc}", path=path) from None
    for order in ("little", "big"):
        size = int.from_bytes(head, order) if len(head) == 4 else -1
        if size in (348, 540):
            return 1 if size == 348 else 2
    raise SourceFormatError("not a NIfTI file (its header size field is neither 348 nor 540)", path=path)


def _coded(header: Any, which: str) -> list[list[float]] | None:
    """The sform or qform matrix as JSON when its code is set (informational copy)."""
    try:
        matrix, code = getattr(header, f"get_{which}")(coded=True)
    except Exception:
        return None
    return None if code == 0 else [[json_number(v) for v in row] for row in matrix]


def nifti_geometry(header: Any, n_dims: int) -> dict[str, Any]:
    """``meta.spatial`` geometry fields of a NIfTI header for an image of ``n_dims`` NIfTI dimensions.

    sform when ``sform_code > 0``, else qform when ``qform_code > 0`` (the choice
    nibabel makes), both in RAS+; with both codes 0 only the voxel size
    ``pixdim`` is known (NIfTI method 1) and ``coord_system`` stays unset.
    """
    n = min(n_dims, 3)
    if int(header["sform_code"]) > 0:
        world = header.get_sform()
    elif int(header["qform_code"]) > 0:
        try:
            world = header.get_qform()
        except Exception as exc:
            raise GeometryError(f"the qform cannot be decoded ({exc})") from None
    else:
        zooms = np.asarray(header["pixdim"][1 : n + 1], dtype=np.float64)
        if np.all(np.isfinite(zooms)) and np.all(zooms > 0):
            return {"spacing": zooms.tolist(), "coord_system": None}
        return {"coord_system": None}
    return {**spatial_fields(reduce_world(np.asarray(world, dtype=np.float64), n)), "coord_system": "RAS"}


def nifti_units(header: Any, labels: list[str]) -> list[str] | None:
    """One unit per array axis from ``xyzt_units`` (spatial unit, time unit on the temporal axis)."""
    code = int(header["xyzt_units"])
    space, time = SPACE_UNITS.get(code & 0x07, ""), TIME_UNITS.get(code & 0x38, "")
    units = [space if is_spatial_label(x) else time if x == "temporal" else "" for x in labels]
    return units if any(units) else None


# --------------------------------------------------------------------------- writing


def write_nifti(image: MLArray, path: str | os.PathLike[str]) -> None:
    """Write ``image`` as a NIfTI file (``.nii`` or ``.nii.gz``), atomically.

    If ``meta.source`` is a NIfTI header (the image was read from NIfTI) it is the
    base of the new header: every field, the extensions, the byte order and the
    NIfTI version are kept; the data type, shape, geometry and units are then set
    from the image wherever they differ. Otherwise the header is built from
    ``meta.spatial`` alone.

    Raises
    ------
    NotRepresentableError
        NIfTI cannot hold the data type, axis order, geometry frame or units.
    """
    p = check_target(path, NIFTI_EXTENSIONS, "NIfTI")
    nib = require("nibabel", p)
    if image.shape is None:
        raise NotRepresentableError("a metadata-only image has no array to write", path=p)
    if 0 in image.shape:
        raise NotRepresentableError(
            f"a 0-size array (shape {list(image.shape)}) has no NIfTI form that other readers (ITK) accept", path=p
        )
    meta = image.meta
    shape, dtype = image.shape, image.dtype
    assert dtype is not None
    scaling = meta.scaling
    if scaling is not None and scaling.stored != "raw" and not _all_restore(image, scaling):
        scaling = None  # values changed since conversion: raw integers would round them, so write them as they are
    if scaling is not None:
        dtype = np.dtype(scaling.raw_dtype)
    labels = list(meta.spatial.axis_labels or ["spatial"] * len(shape))
    is_nifti = meta.source.get("format") == FORMAT and isinstance(meta.source.get("header"), dict)
    source = meta.source if is_nifti else None
    fields: dict[str, Any] = dict(source["header"]) if source else {}
    code = fields.get("datatype")
    rgb = None
    if isinstance(code, int) and code in RGB_CODES and _is_rgb(dtype, shape, labels, RGB_CODES[code]):
        rgb = np.dtype([(c, "u1") for c in "RGBA"[: RGB_CODES[code]]])
        shape, labels = shape[:-1], labels[:-1]
    n, dims = nifti_shape(labels, shape, p)
    version = int(source.get("nifti_version", 1)) if source else 1
    if max(shape) > NIFTI1_MAX_DIM:
        version = 2
    header_class = nib.Nifti2Header if version == 2 else nib.Nifti1Header
    header = header_class(endianness=source.get("endianness", "<") if source else "<")
    try:
        header.set_data_dtype(rgb if rgb is not None else dtype)
    except Exception:
        raise NotRepresentableError(
            f"NIfTI has no data type for {dtype}; cast the array (e.g. bool -> uint8, float16 -> float32)",
            path=p,
        ) from None
    header.set_data_shape(dims)
    records = b""
    if source:
        # Scaling comes from meta.scaling; only a file of the 1.0 converter (raw values stored,
        # the scaling kept in source["scaling"]) still takes it from the copied header.
        legacy_raw = meta.scaling is None and bool(source.get("scaling"))
        same_type = fields.get("datatype") == int(header["datatype"])
        for key, value in fields.items():
            if key in STRUCTURAL or key not in header or (key in SCALING_FIELDS and not (legacy_raw and same_type)):
                continue
            set_field(header, key, value, p)
        keep_unused_dims(header, fields.get("dim"))
        records = extension_records(list(source.get("extensions", [])), header.endianness, p)
    mark_vector(header, fields)
    if scaling is not None:
        header["scl_slope"], header["scl_inter"] = scaling.slope, scaling.intercept
    elif source and not (legacy_raw and same_type):
        _copy_unscaled(header, fields)
    _write_geometry(header, meta.spatial, n, meta.source, p)
    _write_units(header, meta.spatial.axis_units, labels, p)

    def slabs() -> Iterator[np.ndarray[Any, Any]]:
        for region in export_slabs(image, axis=-2 if rgb is not None else -1):  # along NIfTI's last axis
            values = image[region]
            if scaling is not None:
                values = map_pieces(functools.partial(raw_values, scaling=scaling), values, dtype)
            yield np.ascontiguousarray(values).view(rgb)[..., 0] if rgb is not None else values
            del values  # one slab in memory at a time

    gap = b64decode(str(source["gap_base64"])) if source and source.get("gap_base64") else b""
    with atomic_output(p) as tmp:
        _write_file(header, slabs(), tmp, records, gap)


def _all_restore(image: MLArray, scaling: Any) -> bool:
    """Whether every stored value is given back by its raw value (:func:`_restores`), slab by slab."""

    def restores(values: np.ndarray[Any, Any]) -> bool:
        return _restores(raw_values(values, scaling), values, scaling)

    return all(all_pieces(restores, image[region]) for region in export_slabs(image))


def _restores(raw: np.ndarray[Any, Any], physical: np.ndarray[Any, Any], scaling: Any) -> bool:
    """Whether ``raw`` with ``scaling`` gives back exactly the ``physical`` values the image holds."""
    again = scaling.to_physical(raw).astype(physical.dtype)
    return bool(np.array_equal(again, physical, equal_nan=True))


def _copy_unscaled(header: Any, fields: dict[str, Any]) -> None:
    """Nothing to scale: keep the source's own way of saying so (slope 0 or NaN, or 1 and 0), else write 0."""
    slope, inter = (from_json_number(fields.get(key, 0.0)) for key in SCALING_FIELDS)
    if math.isnan(slope) or slope == 0 or (slope == 1 and inter == 0):
        header["scl_slope"], header["scl_inter"] = slope, inter
    else:  # a scaling the stored values no longer need
        header["scl_slope"], header["scl_inter"] = 0.0, 0.0


def _is_rgb(dtype: np.dtype[Any], shape: tuple[int, ...], labels: list[str], components: int) -> bool:
    return dtype == np.uint8 and len(shape) >= 2 and shape[-1] == components and labels[-1] == "channel"


def _source_world(header: Any) -> Matrix | None:
    """The source header's full 4x4 map (sform, else qform), used to fill world axes a 2-d image lacks."""
    try:
        if int(header["sform_code"]) > 0:
            return np.asarray(header.get_sform(), dtype=np.float64)
        if int(header["qform_code"]) > 0:
            return np.asarray(header.get_qform(), dtype=np.float64)
    except Exception:
        return None
    return None


def _write_geometry(header: Any, spatial: Spatial, n: int, source: dict[str, Any], path: str) -> None:
    """Set sform/qform/pixdim so that reading ``header`` back gives ``spatial``'s geometry.

    A header copied from the source that already says the same is left untouched, so
    its sform, qform and codes survive bit for bit. A 2-d image takes its position
    along the third world axis from the copied header, else from ``source`` (the
    image's ``meta.source``, an NRRD one included).
    """
    wanted = affine_of(spatial, n)
    loaded = as_loaded(header)  # decoded as nibabel decodes the file (a negative pixdim is read as its size)
    try:
        current = nifti_geometry(loaded, n)
        if same_geometry(affine_of(current, n), current["coord_system"], wanted, spatial.coord_system):
            return
    except GeometryError:
        pass
    base = _source_world(loaded)
    if wanted is None:
        header.set_sform(None, code=0)
        header.set_qform(None, code=0)
        return
    frame = spatial.coord_system
    linear, origin = wanted[:n, :n], wanted[:n, n]
    diagonal = np.all(linear == np.diag(np.diag(linear))) and np.all(np.diag(linear) > 0)
    if frame is None and diagonal and np.all(origin == 0):
        header.set_sform(None, code=0)
        header.set_qform(None, code=0)
        header["pixdim"][1 : n + 1] = np.diag(linear)
        return
    if frame is not None and frame != "RAS":
        try:
            wanted = change_frame(wanted, frame, "RAS")
        except GeometryError as exc:
            raise NotRepresentableError(
                f"coord_system {frame!r} cannot be converted to NIfTI's RAS+ world: {exc}", path=path
            ) from None
    if base is None and n < 3 and frame is not None:
        base = source_world(source, "RAS")
    world = embed_world(wanted, 3, base if base is not None and n < 3 else None)
    s_code = int(header["sform_code"]) or 1
    q_code = int(header["qform_code"]) or 1
    header.set_sform(world, code=s_code)
    zooms = np.linalg.norm(world[:3, :3], axis=0)
    if is_orthonormal(world[:3, :3] / zooms):
        header.set_qform(world, code=q_code)
    else:
        header.set_qform(None, code=0)
        header["pixdim"][1:4] = zooms


def _write_units(header: Any, units: list[str] | None, labels: list[str], path: str) -> None:
    """Set ``xyzt_units`` from ``axis_units`` unless the copied header already says the same."""
    if nifti_units(header, labels) == (list(units) if units is not None else None):
        return
    if units is None:
        header["xyzt_units"] = 0
        return
    pairs = [(u, label) for u, label in zip(units, labels, strict=True) if u]
    space = {u for u, label in pairs if is_spatial_label(label)}
    time = {u for u, label in pairs if label == "temporal"}
    other = [u for u, label in pairs if not is_spatial_label(label) and label != "temporal"]
    codes = {v: k for k, v in SPACE_UNITS.items()} | {"µm": 3, "micron": 3}
    time_codes = {v: k for k, v in TIME_UNITS.items()}
    if len(space) > 1 or len(time) > 1 or other or not space <= set(codes) or not time <= set(time_codes):
        raise NotRepresentableError(
            f"NIfTI cannot record the axis units {units}: it has one spatial unit ({', '.join(SPACE_UNITS.values())}) "
            f"and one time unit ({', '.join(TIME_UNITS.values())})",
            path=path,
        )
    header["xyzt_units"] = (codes[space.pop()] if space else 0) | (time_codes[time.pop()] if time else 0)


def _write_file(
    header: Any, slabs: Iterable[np.ndarray[Any, Any]], target: str, records: bytes = b"", gap: bytes = b""
) -> None:
    """Header, extension records, the source's bytes before the data, voxels (Fortran order, header byte order).

    ``records`` are the extensions as :func:`~mlarray.convert._nifti_header.extension_records`
    gives them; the data start right after them and ``gap``. ``slabs`` are
    consecutive runs along the last axis that together make the array.
    """
    from nibabel.openers import ImageOpener

    out_dtype = header.get_data_dtype()
    header["vox_offset"] = header.single_vox_offset + len(records) + len(gap)
    with ImageOpener(target, "wb") as f:
        f.write(header.binaryblock)
        f.write(EXTENSIONS_FOLLOW if records else NO_EXTENSIONS)
        f.write(records)
        f.write(gap)
        offset = int(header["vox_offset"])
        position = f.tell()
        if position < offset:
            f.write(b"\x00" * (offset - position))
        for data in slabs:
            if data.ndim == 0 or data.shape[-1] == 0:
                return
            # Fortran order = the last axis slowest: write one last-axis slice at a time.
            for k in range(data.shape[-1]):
                f.write(np.asarray(data[..., k], dtype=out_dtype).tobytes(order="F"))
            del data  # before the next slab is read
