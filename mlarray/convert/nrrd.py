"""NRRD (``.nrrd``, ``.nhdr`` + data file) to and from :class:`~mlarray.MLArray`, exactly.

pynrrd is the reader: it returns every header field, custom ``key:=value`` fields
included, reads detached headers and all standard encodings. We keep pynrrd's
default ``index_order='F'``: array axis ``k`` *is* NRRD axis ``k`` (the fastest
axis first), so ``sizes``, ``kinds``, ``space directions`` and every other
per-axis field line up with the array axes, the same ``(i, j, k)`` convention as
NIfTI through nibabel. The array comes back identical when written with the same
order.

Geometry: axes with a ``space directions`` vector are spatial; the matrix is kept
in the file's own ``space`` (``left-posterior-superior`` -> ``coord_system='LPS'``,
``right-anterior-superior`` -> ``'RAS'``, other spaces verbatim). Without
``space directions``, ``spacings`` give the voxel size of the ``domain`` axes.
Other axes are labelled from their ``kind``. The whole header is kept in
``meta.source`` and is the base of the header written back. A 2-d image in a 3-d
space is written as ITK writes one, a plain ``space dimension`` plus custom fields
that keep the space and the slice position (:mod:`mlarray.convert._plane`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlarray.api import MLArray
from mlarray.convert._common import (
    NRRD_EXTENSIONS,
    atomic_output,
    check_source,
    check_target,
    from_json_number,
    json_value,
    require,
    suffix_of,
)
from mlarray.convert._geometry import (
    GeometryError,
    affine_of,
    change_frame,
    embed_world,
    orientation_matrix,
    reduce_world,
    same_geometry,
    spatial_fields,
)
from mlarray.convert._nrrd_header import check_nrrd_header
from mlarray.convert._plane import (
    FRAME_TO_SPACE,
    OTHER_SPACES,
    PLANE_FIELDS,
    SPACE_TO_FRAME,
    plane_fields,
    plane_from_custom,
    source_world,
)
from mlarray.convert._slabs import (
    STREAMED_ENCODINGS,
    FortranStream,
    HeaderOnly,
    export_slabs,
    map_pieces,
    nrrd_stream,
    physical_dtype_of,
    write_nrrd_data,
)
from mlarray.errors import InvalidArgumentError, MLArrayError, NotRepresentableError, SourceFormatError
from mlarray.models import AXIS_VOCABULARY, Meta, Spatial, is_spatial_label
from mlarray.storage.io import normalize_dtype

FORMAT = "nrrd"
"""Value of ``meta.source["format"]`` for images read from NRRD."""

STANDARD_FIELDS = frozenset(
    {
        "type", "dimension", "space dimension", "space", "sizes", "space directions", "kinds", "endian",
        "encoding", "min", "max", "oldmin", "old min", "oldmax", "old max", "content", "sample units",
        "spacings", "thicknesses", "axis mins", "axismins", "axis maxs", "axismaxs", "centers", "centerings",
        "labels", "units", "space units", "space origin", "measurement frame", "data file", "datafile",
        "line skip", "lineskip", "byte skip", "byteskip", "number",
    }
)  # fmt: skip
"""Field names of the NRRD format; anything else pynrrd returns is a custom ``key:=value`` field."""

STRUCTURAL = frozenset(
    {"type", "dimension", "sizes", "endian", "data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip"}
)
"""Fields that describe the array or the file layout: recomputed on writing, never copied."""

PER_AXIS = frozenset(
    {
        "sizes", "space directions", "kinds", "spacings", "thicknesses", "axis mins", "axismins", "axis maxs",
        "axismaxs", "centers", "centerings", "labels", "units",
    }
)  # fmt: skip
"""Fields with one entry per axis: dropped from the copied header if the number of axes changed."""

GEOMETRY = ("space", "space dimension", "space directions", "space origin", "spacings")

DOUBLE_LISTS = frozenset({"spacings", "thicknesses", "axis mins", "axismins", "axis maxs", "axismaxs"})
DOUBLES = frozenset({"min", "max", "oldmin", "old min", "oldmax", "old max"})
INTS = frozenset({"dimension", "space dimension", "line skip", "lineskip", "byte skip", "byteskip"})

SPATIAL_KINDS = frozenset({"domain", "space"})
KIND_LABELS = {
    "time": "temporal",
    **dict.fromkeys(("RGB-color", "RGBA-color", "HSV-color", "XYZ-color", "3-color", "4-color", "list"), "channel"),
    **dict.fromkeys(
        (
            "vector", "covariant-vector", "normal", "point", "scalar", "complex", "stub", "2-vector", "3-vector",
            "4-vector", "3-gradient", "3-normal", "quaternion", "2D-symmetric-matrix", "2D-masked-symmetric-matrix",
            "2D-matrix", "2D-masked-matrix", "3D-symmetric-matrix", "3D-masked-symmetric-matrix", "3D-matrix",
            "3D-masked-matrix",
        ),
        "components",
    ),
}  # fmt: skip
"""NRRD ``kinds`` of non-spatial axes and the mlarray axis label each becomes (else ``non_spatial``)."""

LABEL_KINDS = {"spatial": "domain", "temporal": "time", "channel": "list", "components": "vector"}
"""The kind written for an axis label when there is no source header to copy."""

ENCODINGS = frozenset({"raw", "gzip", "gz", "bzip2", "bz2", "ascii", "text", "txt"})
"""Encodings pynrrd can write; any other source encoding is written as gzip."""

NRRD_TYPES = frozenset({"|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8"})


# --------------------------------------------------------------------------- reading


def read_nrrd(path: str | os.PathLike[str]) -> MLArray:
    """Read an NRRD file (attached ``.nrrd`` or detached ``.nhdr``) into an in-memory :class:`~mlarray.MLArray`.

    Raises
    ------
    MissingDependencyError
        pynrrd is not installed.
    SourceFormatError
        pynrrd cannot read the file.
    NotRepresentableError
        The file holds something mlarray cannot store exactly (``block`` data, a geometry
        whose axes leave the image's own world axes).
    """
    data, meta = read_nrrd_parts(path)
    return MLArray(data, meta=meta)


def read_nrrd_parts(path: str | os.PathLike[str], *, keep_raw: bool = False) -> tuple[np.ndarray[Any, Any], Meta]:
    """The array and header :class:`~mlarray.Meta` :func:`read_nrrd` builds its image from.

    NRRD has no intensity scaling: the stored values are the values (``keep_raw`` changes nothing).
    """
    p = check_source(path, NRRD_EXTENSIONS, "NRRD")
    nrrd = require("nrrd", p)
    try:
        with open(p, "rb") as f:
            header = nrrd.read_header(f)
            check_nrrd_header(header, p)
            data = nrrd.read_data(header, f, p, index_order="F")
    except MLArrayError:
        raise
    except Exception as exc:
        raise SourceFormatError(f"pynrrd cannot read this NRRD file: {exc}", path=p) from None
    return data, nrrd_meta(header, data.dtype, data.ndim, p)


def nrrd_meta(header: dict[str, Any], dtype: Any, ndim: int, path: str) -> Meta:
    """The header :class:`~mlarray.Meta` of an image read from an NRRD file with this header and data type."""
    p = path
    try:
        normalize_dtype(dtype)
    except InvalidArgumentError:
        raise NotRepresentableError(f"NRRD type {header.get('type')!r} has no .mla equivalent", path=p) from None
    try:
        geometry = nrrd_geometry(header, ndim)
    except GeometryError as exc:
        raise NotRepresentableError(f"the NRRD geometry cannot be stored: {exc}", path=p) from None
    labels = nrrd_labels(header, ndim)
    spatial = Spatial(**geometry, axis_labels=labels, axis_units=nrrd_units(header, labels))
    source = {
        "format": FORMAT,
        "file": Path(p).name,
        "header": {key: _field_to_json(key, value) for key, value in header.items() if key in STANDARD_FIELDS},
        "custom": {key: _custom_to_json(value) for key, value in header.items() if key not in STANDARD_FIELDS},
    }
    try:
        return Meta(spatial=spatial, source=source)
    except MLArrayError as exc:
        raise NotRepresentableError(f"the NRRD header cannot be stored: {exc}", path=p) from None


class NrrdSource:
    """An NRRD file opened for streaming conversion: pynrrd parses the header, the data are read slab by slab.

    :meth:`open` gives ``None`` for files only a whole read handles (ASCII data, ...).
    """

    slope, inter, rgb = 1.0, 0.0, False  # NRRD has no intensity scaling

    def __init__(self, path: str, header: dict[str, Any], stream: FortranStream) -> None:
        self.path, self.header, self.stream = path, header, stream
        self.shape, self.dtype = stream.shape, stream.dtype

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> NrrdSource | None:
        p = check_source(path, NRRD_EXTENSIONS, "NRRD")
        nrrd = require("nrrd", p)
        try:
            with open(p, "rb") as f:
                header = nrrd.read_header(f)
                start = f.tell()
            dtype = nrrd.reader._determine_datatype(header)  # the type pynrrd's read_data gives
        except Exception:
            return None  # read whole by pynrrd, which reports the error
        check_nrrd_header(header, p)
        stream = nrrd_stream(p, header, start, dtype)
        return None if stream is None else cls(p, header, stream)

    def read(self, region: tuple[slice, ...]) -> np.ndarray[Any, Any]:
        return self.stream.read(region)

    def check_end(self) -> None:
        self.stream.check_end()

    def meta(self, scaling: Any) -> Meta:
        return nrrd_meta(self.header, self.dtype, len(self.shape), self.path)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> NrrdSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows(directions: Any) -> list[list[float] | None]:
    """``space directions`` as one vector (or ``None`` for ``none``) per axis, whatever pynrrd's representation."""
    rows: list[list[float] | None] = []
    for row in directions:
        if row is None:
            rows.append(None)
            continue
        vector = np.asarray(row, dtype=np.float64)
        rows.append(None if np.all(np.isnan(vector)) else vector.tolist())
    return rows


def _spatial_axes(header: dict[str, Any], ndim: int) -> list[int]:
    """Axes with a space direction; without ``space directions``, the ``domain``/``space`` axes (all if no kinds)."""
    directions = header.get("space directions")
    if directions is not None:
        return [k for k, row in enumerate(_rows(directions)) if row is not None]
    kinds = header.get("kinds")
    if kinds is None:
        return list(range(ndim))
    return [k for k, kind in enumerate(kinds) if str(kind) in SPATIAL_KINDS]


def nrrd_geometry(header: dict[str, Any], ndim: int) -> dict[str, Any]:
    """``meta.spatial`` geometry fields (in the file's own space) of a pynrrd header."""
    space = header.get("space")
    frame = None if space is None else SPACE_TO_FRAME.get(str(space), str(space))
    directions = header.get("space directions")
    axes = _spatial_axes(header, ndim)
    if directions is None:
        spacings = header.get("spacings")
        if spacings is None or not axes:
            return {"coord_system": frame}
        values = np.asarray([spacings[k] for k in axes], dtype=np.float64)
        if np.all(np.isfinite(values)) and np.all(values > 0):
            return {"spacing": values.tolist(), "coord_system": frame}
        return {"coord_system": frame}
    rows = _rows(directions)
    if not axes:
        return {"coord_system": frame}
    linear = np.asarray([rows[k] for k in axes], dtype=np.float64).T
    m, n = linear.shape
    origin = header.get("space origin")
    origin_vec = None if origin is None else np.asarray(origin, dtype=np.float64)
    if origin_vec is not None and (origin_vec.shape != (m,) or np.any(np.isnan(origin_vec))):
        origin_vec = None
    if m < n:
        raise GeometryError(f"{n} axes have space directions in a {m}-d space")
    full = np.eye(m + 1)
    full[:m, :n] = linear
    if origin_vec is not None:
        full[:m, m] = origin_vec
        if frame is None and m == n:  # a slice of a larger space, written as ITK writes one
            plane = plane_from_custom(full, {k: v for k, v in header.items() if k not in STANDARD_FIELDS})
            if plane is not None:
                full, frame = plane[0], plane[1]
    fields = spatial_fields(reduce_world(full, n), with_origin=origin_vec is not None)
    return {**fields, "coord_system": frame}


def nrrd_labels(header: dict[str, Any], ndim: int) -> list[str]:
    """One mlarray axis label per axis: ``spatial`` for spatial axes, else from the axis kind."""
    axes = set(_spatial_axes(header, ndim))
    kinds = header.get("kinds") or [None] * ndim
    names = [str(x) for x in header.get("labels") or []]
    out = []
    for k in range(ndim):
        if k in axes:
            out.append("spatial")
        elif len(names) == ndim and names[k] in AXIS_VOCABULARY and not is_spatial_label(names[k]):
            out.append(names[k])  # written by mlarray for a time axis ITK can only read as a list axis
        else:
            out.append(KIND_LABELS.get(str(kinds[k]), "non_spatial"))
    return out


def nrrd_units(header: dict[str, Any], labels: list[str]) -> list[str] | None:
    """Per-axis units: ``space units`` (when one unit for the whole space) on spatial axes, ``units`` elsewhere."""
    per_axis = [str(u) for u in header.get("units") or []]
    space_units = {str(u) for u in header.get("space units") or []}
    space_unit = space_units.pop() if len(space_units) == 1 and header.get("space directions") is not None else None
    units = []
    for k, label in enumerate(labels):
        if is_spatial_label(label) and space_unit is not None:
            units.append(space_unit)
        else:
            units.append(per_axis[k] if k < len(per_axis) and per_axis[k] != "???" else "")
    return units if any(units) else None


def _field_to_json(key: str, value: Any) -> Any:
    if key == "space directions":
        return [None if row is None else json_value(row) for row in _rows(value)]
    return json_value(value)


def _custom_to_json(value: Any) -> Any:
    return value if isinstance(value, str) else json_value(value)


# --------------------------------------------------------------------------- writing


def write_nrrd(image: MLArray, path: str | os.PathLike[str]) -> None:
    """Write ``image`` as NRRD, atomically: ``.nrrd`` (attached) or ``.nhdr`` (detached header + data file).

    If ``meta.source`` is an NRRD header it is the base of the new one (custom fields,
    kinds, measurement frame, encoding, byte order ...); geometry, kinds and units
    are then set from ``meta.spatial`` wherever they differ. Otherwise the header is
    built from ``meta.spatial``: ``RAS``/``LPS``/``LAS`` become the matching NRRD
    ``space``, other orientation codes are converted to RAS, and an image without
    ``coord_system`` gets a plain ``space dimension``.

    Raises
    ------
    NotRepresentableError
        NRRD cannot hold the data type (bool, float16, complex) or the geometry frame.
    """
    p = check_target(path, NRRD_EXTENSIONS, "NRRD")
    nrrd = require("nrrd", p)
    if image.shape is None:
        raise NotRepresentableError("a metadata-only image has no array to write", path=p)
    if image.shape is not None and 0 in image.shape:
        raise NotRepresentableError(
            f"a 0-size array (shape {list(image.shape)}) has no NRRD form that other readers (ITK) accept", path=p
        )
    shape, dtype = image.shape, physical_dtype_of(image)  # NRRD has no scaling: physical values
    if dtype.str not in NRRD_TYPES:
        raise NotRepresentableError(
            f"NRRD has no type for {dtype}; cast the array (e.g. bool -> uint8, float16 -> float32)", path=p
        )
    spatial = image.meta.spatial
    labels = list(spatial.axis_labels or ["spatial"] * len(shape))
    source = image.meta.source if image.meta.source.get("format") == FORMAT else None
    header = _copied_header(source, len(shape)) if source else {}
    kinds_made = False  # kinds copied from an NRRD source are kept as they are
    if (source is None and "kinds" not in header) or nrrd_labels(header, len(shape)) != labels:
        header["kinds"] = [LABEL_KINDS.get(label, "???") for label in labels]
        kinds_made = True
    try:
        _write_geometry(header, spatial, labels, image.meta.source)
    except GeometryError as exc:
        raise NotRepresentableError(f"the geometry cannot be written as NRRD: {exc}", path=p) from None
    _write_units(header, spatial.axis_units, labels)
    if kinds_made:
        _itk_kinds(header, labels)
    out_dtype = dtype.newbyteorder(">") if source and header.get("endian") == "big" and dtype.itemsize > 1 else dtype
    header.pop("endian", None)
    if str(header.get("encoding", "gzip")).lower() not in ENCODINGS:
        header["encoding"] = "gzip"
    header.setdefault("encoding", "gzip")
    encoding = STREAMED_ENCODINGS.get(str(header["encoding"]))
    scaling = image.meta.scaling
    convert = scaling.to_physical if scaling is not None and scaling.stored == "raw" else None

    def slabs() -> Iterator[np.ndarray[Any, Any]]:
        for region in export_slabs(image):  # along the last axis, the slowest in the file
            values = image[region]
            yield values if convert is None else map_pieces(convert, values, dtype)
            del values

    detached = suffix_of(p) == ".nhdr"
    with atomic_output(p) as tmp, warnings.catch_warnings():
        # pynrrd stamps the header with datetime.utcnow(), deprecated since Python 3.12.
        warnings.filterwarnings("ignore", message=r".*utcnow", category=DeprecationWarning)
        # ASCII is written whole by pynrrd; otherwise pynrrd writes the header (from the shape and type alone)
        payload: Any = HeaderOnly(shape, out_dtype)
        if encoding is None:
            payload = np.concatenate(list(slabs()), axis=-1).astype(out_dtype)
        try:
            nrrd.write(
                tmp,
                payload,
                header,
                detached_header=detached,
                index_order="F",
            )
        except Exception as exc:
            raise NotRepresentableError(f"pynrrd cannot write this header: {exc}", path=p) from None
        if encoding is not None:  # pynrrd wrote the header (and an empty data stream): now the data
            write_nrrd_data(tmp, header, detached, slabs(), encoding, out_dtype)


def _copied_header(source: dict[str, Any], ndim: int) -> dict[str, Any]:
    """The source header as pynrrd values, without what the new array and file determine."""
    fields = source.get("header")
    fields = fields if isinstance(fields, dict) else {}
    same_axes = fields.get("dimension") == ndim
    header: dict[str, Any] = {}
    for key, value in fields.items():
        if key in STRUCTURAL and key != "endian":
            continue
        if key in PER_AXIS and not same_axes:
            continue
        header[key] = _field_from_json(key, value)
    custom = source.get("custom")
    custom = custom if isinstance(custom, dict) else {}
    for key, value in custom.items():
        header[key] = value if isinstance(value, str) else str(value)
    return header


def _field_from_json(key: str, value: Any) -> Any:
    """A JSON field value back in the form pynrrd's writer formats."""
    if value is None:
        return None
    if key == "space directions":
        width = max((len(row) for row in value if row is not None), default=0)
        return np.asarray([[np.nan] * width if row is None else row for row in value], dtype=np.float64)
    if key in ("space origin", "measurement frame"):
        return np.asarray(_nan(value), dtype=np.float64)
    if key in DOUBLE_LISTS:
        return np.asarray([from_json_number(v) for v in value], dtype=np.float64)
    if key in DOUBLES:
        return from_json_number(value)
    if key in INTS:
        return int(value)
    return value


def _nan(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return from_json_number(value)


def _write_geometry(header: dict[str, Any], spatial: Spatial, labels: list[str], source: dict[str, Any]) -> None:
    """Set the geometry fields so that reading ``header`` back gives ``spatial``'s geometry.

    A copied source header that already reads back the same keeps its fields verbatim.
    An image with fewer spatial axes than its space has dimensions (a 2-d slice in
    RAS) gets a plain ``space dimension`` and the custom fields of
    :func:`~mlarray.convert._plane.plane_fields`, which keep its position along the
    other world axes (from ``source``, the image's ``meta.source`` of any format).
    """
    ndim = len(labels)
    axes = [k for k, label in enumerate(labels) if is_spatial_label(label)]
    n = len(axes)
    wanted = affine_of(spatial, n)
    try:
        current = nrrd_geometry(header, ndim)
        if _spatial_axes(header, ndim) == axes and same_geometry(
            affine_of(current, n), current["coord_system"], wanted, spatial.coord_system
        ):
            return
    except GeometryError:
        pass
    for key in (*GEOMETRY, *PLANE_FIELDS):
        header.pop(key, None)
    frame = spatial.coord_system
    if wanted is None or n == 0:
        if frame is not None:
            raise GeometryError(f"coord_system {frame!r} without spacing/origin/direction has no NRRD form")
        return
    linear, origin = wanted[:n, :n], wanted[:n, n]
    diagonal = np.all(linear == np.diag(np.diag(linear))) and np.all(np.diag(linear) > 0)
    if frame is None and diagonal and np.all(origin == 0):
        spacings = np.full(ndim, np.nan)
        spacings[axes] = np.diag(linear)
        header["spacings"] = spacings
        return
    if frame is None:
        m = n
    elif frame in FRAME_TO_SPACE or frame in OTHER_SPACES:
        m = OTHER_SPACES.get(frame, 3)
    elif orientation_matrix(frame) is not None:
        wanted, frame, m = change_frame(wanted, frame, "RAS"), "RAS", 3
    else:
        raise GeometryError(f"coord_system {frame!r} is neither an orientation code like 'LPS' nor an NRRD space")
    if m < n:
        raise GeometryError(f"{n} spatial axes do not fit the {m}-d space {frame!r}")
    world = wanted
    if frame is None:
        header["space dimension"] = n
    elif n < m:  # ITK reads no slice in a larger space: write it as ITK does, keep the space aside
        base = source_world(source, frame)
        world = embed_world(wanted, m, base if base is not None and base.shape == (m + 1, m + 1) else None)
        world, custom = plane_fields(world, n, frame)
        header["space dimension"] = n
        header.update(custom)
    else:
        header["space"] = FRAME_TO_SPACE.get(frame, frame)
    directions = np.full((ndim, n), np.nan)
    for column, k in enumerate(axes):
        directions[k] = world[:n, column]
    header["space directions"] = directions
    header["space origin"] = world[:n, n].copy()


DOMAIN_KINDS = frozenset({"domain", "space", "time"})
"""NRRD kinds of domain axes; ITK wants exactly as many as the space has dimensions."""


def _itk_kinds(header: dict[str, Any], labels: list[str]) -> None:
    """Make a non-spatial domain axis (time) a ``list`` axis when the space leaves no room for it.

    ITK refuses a NRRD whose domain axes outnumber the dimensions of its ``space`` (a 4-D
    image with time in a 3-D space); as a range axis it reads the time points as components.
    The mlarray label goes into the standard per-axis ``labels`` field, so it reads back.
    """
    directions = header.get("space directions")
    kinds = header.get("kinds")
    if directions is None or kinds is None:
        return
    space_dim = np.asarray(directions, dtype=np.float64).shape[-1]
    domain = [k for k, kind in enumerate(kinds) if str(kind) in DOMAIN_KINDS]
    extra = [k for k in domain if not is_spatial_label(labels[k])]
    if len(domain) <= space_dim or not extra:
        return
    header["kinds"] = ["list" if k in extra else kind for k, kind in enumerate(kinds)]
    header["labels"] = [
        labels[k] if k in extra else str((header.get("labels") or [""] * len(labels))[k]) for k in range(len(labels))
    ]


def _write_units(header: dict[str, Any], units: list[str] | None, labels: list[str]) -> None:
    """Set ``space units`` / ``units`` from ``axis_units`` unless the copied header already reads back the same."""
    if nrrd_units(header, labels) == (list(units) if units is not None else None):
        return
    header.pop("units", None)
    header.pop("space units", None)
    if units is None:
        return
    spatial = {u for u, label in zip(units, labels, strict=True) if is_spatial_label(label)}
    if header.get("space directions") is not None and len(spatial) == 1 and "" not in spatial:
        width = np.asarray(header["space directions"]).shape[1]
        header["space units"] = [spatial.pop()] * width
        others = [u if not is_spatial_label(label) else "" for u, label in zip(units, labels, strict=True)]
    else:
        others = list(units)
    if any(others):
        header["units"] = others
