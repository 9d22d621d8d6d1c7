"""The complete header of schema 1.x: :class:`Meta`.

``Meta`` is both the object users build (``Meta(source=..., is_seg=True)``) and the
header written to disk. Fields the writer owns (``writer``, ``array``, ``layout``)
are filled in on save.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mlarray.models.base import JsonObject, StrictModel
from mlarray.models.v1.annotations import BBoxes, Integrity, Layout, Stats
from mlarray.models.v1.spatial import Spatial, is_spatial_label
from mlarray.versions import SCHEMA_VERSION

DTYPES = ("|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16")
"""Element types a file may hold, as NumPy type strings with explicit (little-endian) byte order."""

MAX_NDIM = 8
"""Blosc2's limit on array dimensions."""

Dtype = Literal["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16"]


class Writer(StrictModel):
    """Who wrote the file."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    version: Annotated[str, Field(min_length=1, max_length=64)]


class ArrayInfo(StrictModel):
    """Shape and element type of the stored array; must agree with the Blosc2 frame."""

    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=MAX_NDIM)
    dtype: Dtype


class Meta(StrictModel):
    """The mlarray header (schema 1.x).

    Namespaces: ``spatial`` (geometry and axes), ``stats``, ``bbox``, ``is_seg``,
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
    is_seg: bool | None = Field(default=None, description="True when the array is a segmentation (label map).")
    source: JsonObject = Field(
        default_factory=JsonObject, description="Header of the original file format, free-form JSON."
    )
    extra: JsonObject = Field(default_factory=JsonObject, description="Application data, free-form JSON.")

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
                raise ValueError(f"spatial.axis_labels has {len(labels)} entries for a {ndim}-d array")
            units = self.spatial.axis_units
            if units is not None and len(units) != ndim:
                raise ValueError(f"spatial.axis_units has {len(units)} entries for a {ndim}-d array")
            if labels is None and n_spatial is not None and n_spatial != ndim:
                raise ValueError(
                    f"spatial fields describe {n_spatial} axes but the array has {ndim}; "
                    "set axis_labels to mark which axes are spatial"
                )
            axes = self.spatial_axes() or []
            n_spatial = len(axes)
            if self.spatial.shape is not None and self.spatial.shape != [shape[i] for i in axes]:
                raise ValueError(f"spatial.shape {self.spatial.shape} disagrees with the spatial axes of shape {shape}")
            if self.layout is not None and len(self.layout.chunk_size) != ndim:
                raise ValueError(f"layout.chunk_size has {len(self.layout.chunk_size)} entries for a {ndim}-d array")
        elif self.layout is not None:
            raise ValueError("layout is only allowed together with an array")
        if self.bbox is not None and n_spatial is not None:
            box_ndim = self.bbox.ndim()
            if box_ndim is not None and box_ndim != n_spatial:
                raise ValueError(f"bbox boxes have {box_ndim} axes but the image has {n_spatial} spatial axes")
        return self
