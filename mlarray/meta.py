"""The metadata names of mlarray 0.0.x, on this package's header models.

Code written for the earlier implementation imports ``Meta``, ``MetaSpatial``,
``MetaBbox`` ... from ``mlarray`` or ``mlarray.meta``. Where a name means what one
of our models means it *is* that model (``MetaSpatial is Spatial``), so objects made
under either name are interchangeable and validated alike. The earlier
implementation wrapped several single values in classes of their own; our header
stores those values directly, and the table says where each went:

=================  =====================================================================
0.0.x name         here
=================  =====================================================================
Meta               :class:`~mlarray.models.Meta` (the whole header)
MetaSpatial        :class:`~mlarray.models.Spatial` (``MetaSpatial.AxisLabel`` included)
MetaStatistics     :class:`~mlarray.models.Stats`
MetaBbox           :class:`~mlarray.models.BBoxes` (``MetaBbox(boxes)`` works)
MetaBlosc2         :class:`~mlarray.models.Layout`; ``meta.blosc2`` is ``meta.layout``
MetaVersion        :class:`~mlarray.models.Writer` (``meta.writer``: who wrote the file)
MetaHasArray       :class:`~mlarray.models.ArrayInfo` (``meta.array``; ``None`` = no array)
MetaSource         :class:`~mlarray.models.JsonObject`, the type of ``meta.source``
MetaExtra          :class:`~mlarray.models.JsonObject`, the type of ``meta.extra``
MetaIsSeg          a one-field wrapper :class:`Meta` accepts for ``is_seg``
MetaImageFormat    a one-field wrapper; the converters keep it as ``meta.source["format"]``
AxisLabel          enum of axis labels (:class:`~mlarray.models.v1.spatial.AxisLabel`)
CoordSystem        enum of coordinate systems (:class:`~mlarray.models.v1.spatial.CoordSystem`)
=================  =====================================================================

Pure: this module imports models only, never storage or blosc2.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mlarray.models import ArrayInfo, BBoxes, JsonObject, Layout, Meta, Spatial, Stats, StrictModel, Writer
from mlarray.models.v1.spatial import AxisLabel, CoordSystem

MetaSpatial = Spatial
MetaStatistics = Stats
MetaBbox = BBoxes
MetaBlosc2 = Layout
MetaVersion = Writer
MetaHasArray = ArrayInfo
MetaSource = JsonObject
MetaExtra = JsonObject


class MetaIsSeg(StrictModel):
    """``is_seg`` in the one-field form of mlarray 0.0.x: ``Meta(is_seg=MetaIsSeg(is_seg=True))``.

    The header stores the plain value; :class:`Meta` unwraps this wrapper, so
    ``meta.is_seg`` is ``True``, ``False`` or ``None``.
    """

    is_seg: bool | None = None

    _positional: ClassVar[tuple[str, ...]] = ("is_seg",)


class MetaImageFormat(StrictModel):
    """Name of the format the source metadata came from (``"nifti"``, ``"nrrd"``, ``"dicom"``, ...).

    The header has no field of its own for it: the converters record it as
    ``meta.source["format"]``, and so should other code (``meta.source["format"] =
    MetaImageFormat(image_meta_format="dicom").image_meta_format``).
    """

    image_meta_format: str | None = Field(default=None, max_length=64)

    _positional: ClassVar[tuple[str, ...]] = ("image_meta_format",)


__all__ = [
    "AxisLabel",
    "CoordSystem",
    "Meta",
    "MetaBbox",
    "MetaBlosc2",
    "MetaExtra",
    "MetaHasArray",
    "MetaImageFormat",
    "MetaIsSeg",
    "MetaSource",
    "MetaSpatial",
    "MetaStatistics",
    "MetaVersion",
]
