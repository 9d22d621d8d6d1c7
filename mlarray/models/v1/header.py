"""The complete header of schema 1.x: :class:`Meta`.

``Meta`` is both the object users build (``Meta(source=..., is_seg=True)``) and the
header written to disk. Fields the writer owns (``writer``, ``array``, ``layout``)
are filled in on save.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from mlarray.errors import HeaderValidationError, Problem
from mlarray.models.base import StrictModel
from mlarray.models.jsonvalues import JsonDict, JsonObject
from mlarray.models.v1.annotations import BBoxes, ClassLocations, Integrity, Layout, Stats
from mlarray.models.v1.spatial import Spatial, is_spatial_label
from mlarray.versions import SCHEMA_VERSION

DTYPES = ("|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16")
"""Element types a file may hold, as NumPy type strings with explicit (little-endian) byte order."""

MAX_NDIM = 8
"""Blosc2's limit on array dimensions."""

Dtype = Literal["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16"]


def _no_words(value: Any) -> Any:
    """Refuse text for a flag: pydantic would read ``"off"`` or ``"no"`` as ``False`` in Python-built models."""
    if isinstance(value, (str, bytes)):
        raise PydanticCustomError("bool_type", "Input should be a valid boolean, got text {text!r}", {"text": value})
    return value


Flag = Annotated[bool, BeforeValidator(_no_words)]
"""A boolean; from Python also ``numpy.bool_`` and the integers 0 and 1, never text."""


class Writer(StrictModel):
    """Who wrote the file."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    version: Annotated[str, Field(min_length=1, max_length=64)]


class ArrayInfo(StrictModel):
    """Shape and element type of the stored array; must agree with the Blosc2 frame."""

    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=MAX_NDIM)
    dtype: Dtype


class Scaling(StrictModel):
    """How the stored values relate to the raw values of the source file (schema 1.1).

    ``physical = raw * slope + intercept``, evaluated in binary64 (NIfTI ``scl_slope`` /
    ``scl_inter``, DICOM RescaleSlope / RescaleIntercept). ``stored`` says which of the
    two the array holds: ``"physical"`` (what conversion writes by default; ``slope``,
    ``intercept`` and ``raw_dtype`` let a writer restore the source's raw values) or
    ``"raw"`` (the source's values unchanged; apply the formula to get physical values).
    The array elements are the stored values either way: a reader that ignores this
    member reads the same numbers.
    """

    slope: float = Field(
        description="Multiplier from raw to physical values; finite and not 0.",
        json_schema_extra={"not": {"const": 0}},
    )
    intercept: float = Field(description="Offset from raw to physical values.")
    raw_dtype: Dtype = Field(description="Element type of the raw values in the source file.")
    stored: Literal["physical", "raw"] = Field(
        description="'physical': the array holds raw * slope + intercept; 'raw': it holds the raw values."
    )

    @model_validator(mode="after")
    def _invertible(self) -> Scaling:
        """Spec: ``slope`` is not 0 (the map from raw to physical values must be invertible)."""
        if self.slope == 0:
            raise ValueError("slope must not be 0: raw values could not be recovered")
        return self

    def to_physical(self, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """``raw * slope + intercept`` in binary64 (the spec's definition of the physical values)."""
        out: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(raw, dtype=np.float64) * np.float64(self.slope)
        out += np.float64(self.intercept)
        return out


def _rule(loc: str, message: str) -> HeaderValidationError:
    """A cross-member rule broken at ``loc`` (pydantic would place the model validator's error at the root)."""
    return HeaderValidationError([Problem(loc, "rule_violation", message)])


class Meta(StrictModel):
    """The mlarray header (schema 1.x).

    Namespaces: ``spatial`` (geometry and axes), ``stats``, ``bbox``, ``is_seg``,
    ``scaling`` (raw-to-physical intensity scaling, schema 1.1),
    ``source`` (the original format's header, free-form JSON), ``extra``
    (application data, free-form JSON); and, owned by the writer, ``writer``,
    ``array`` (``null`` for a metadata-only file), ``layout`` and ``integrity``.
    """

    schema_version: Annotated[str, Field(pattern=r"^1\.(0|[1-9][0-9]*)$")] = Field(
        default=SCHEMA_VERSION, description="MAJOR.MINOR version of the header schema."
    )
    writer: Writer | None = None
    array: ArrayInfo | None = Field(default=None, description="null for a metadata-only file.")
    layout: Layout | None = None
    integrity: Integrity | None = Field(default=None, description="Digest of the frame's data section.")
    spatial: Spatial = Field(default_factory=Spatial)
    stats: Stats | None = None
    bbox: BBoxes | None = None
    is_seg: Flag | None = Field(default=None, description="True when the array is a segmentation (label map).")
    scaling: Scaling | None = Field(
        default=None,
        description="Intensity scaling of the source (schema 1.1): physical = raw * slope + intercept.",
    )
    class_locations: ClassLocations | None = Field(
        default=None,
        description="Label maps (schema 1.1): per class, the voxel count and a sample of at most 10,000 voxels.",
    )
    source: JsonDict = Field(
        default_factory=JsonObject, description="Header of the original file format, free-form JSON."
    )
    extra: JsonDict = Field(default_factory=JsonObject, description="Application data, free-form JSON.")

    _positional: ClassVar[tuple[str, ...]] = ("source", "extra", "spatial", "stats", "bbox", "is_seg")

    @property
    def blosc2(self) -> Layout | None:
        """The layout record under its mlarray 0.0.x name (``None`` until the data are compressed or saved)."""
        return self.layout

    def _copy_skips(self) -> frozenset[str]:
        """The writer-owned fields describe this header's own file; :meth:`copy_from` never copies them."""
        return frozenset({"schema_version", "writer", "array", "layout", "integrity"})

    def spatial_axes(self) -> list[int] | None:
        """Indices of the spatial array axes, or ``None`` if the header does not tell."""
        labels = self.spatial.axis_labels
        if labels is not None:
            return [i for i, label in enumerate(labels) if is_spatial_label(label)]
        if self.array is not None:
            return list(range(len(self.array.shape)))
        n = self.spatial.spatial_ndim()
        return None if n is None else list(range(n))

    @model_validator(mode="after")
    def _cross_check(self) -> Meta:
        """Spec: axis lists match the array's dimensions; spatial fields match the spatial axes."""
        n_spatial = self.spatial.spatial_ndim()
        if self.array is not None:
            shape = self.array.shape
            ndim = len(shape)
            labels = self.spatial.axis_labels
            if labels is not None and len(labels) != ndim:
                raise _rule(
                    "spatial.axis_labels", f"spatial.axis_labels has {len(labels)} entries for a {ndim}-d array"
                )
            units = self.spatial.axis_units
            if units is not None and len(units) != ndim:
                raise _rule("spatial.axis_units", f"spatial.axis_units has {len(units)} entries for a {ndim}-d array")
            if labels is None and n_spatial is not None and n_spatial != ndim:
                raise _rule(
                    "spatial",
                    f"spatial fields describe {n_spatial} axes but the array has {ndim}; "
                    "set axis_labels to mark which axes are spatial",
                )
            axes = self.spatial_axes() or []
            n_spatial = len(axes)
            stored = self.spatial._stored_shape()
            if stored is not None and stored != [shape[i] for i in axes]:
                raise _rule("spatial.shape", f"spatial.shape {stored} disagrees with the spatial axes of shape {shape}")
            if self.layout is not None and len(self.layout.chunk_size) != ndim:
                raise _rule(
                    "layout.chunk_size",
                    f"layout.chunk_size has {len(self.layout.chunk_size)} entries for a {ndim}-d array",
                )
            if self.scaling is not None and self.scaling.stored == "raw" and self.scaling.raw_dtype != self.array.dtype:
                raise _rule(
                    "scaling.raw_dtype",
                    f"scaling.stored is 'raw' but array.dtype {self.array.dtype} differs from "
                    f"scaling.raw_dtype {self.scaling.raw_dtype}",
                )
            if self.class_locations is not None:
                voxels = 1
                for axis in axes:
                    voxels *= shape[axis]
                for entry in self.class_locations.classes:
                    if entry.indices and entry.indices[-1] >= voxels:
                        raise _rule(
                            "class_locations",
                            f"class_locations: label {entry.label} has index {entry.indices[-1]} "
                            f"outside the {voxels} voxels of the spatial axes",
                        )
                    if entry.count > voxels:
                        raise _rule(
                            "class_locations", f"class_locations: label {entry.label} counts more voxels than there are"
                        )
        elif self.layout is not None:
            raise _rule("layout", "layout is only allowed together with an array")
        if self.bbox is not None and n_spatial is not None:
            box_ndim = self.bbox.ndim()
            if box_ndim is not None and box_ndim != n_spatial:
                raise _rule(
                    "bbox.bboxes", f"bbox boxes have {box_ndim} axes but the image has {n_spatial} spatial axes"
                )
        if self.array is not None:
            # What ``spatial.shape`` reads when the header leaves it out. Only set, never cleared:
            # a metadata-only Meta built around another image's ``spatial`` must not blank it.
            self.spatial._array_shape = list(self.array.shape)
        return self
