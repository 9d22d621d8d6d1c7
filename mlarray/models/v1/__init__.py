"""Header models of schema major version 1."""

from mlarray.models.v1.annotations import (
    MAX_CLASS_INDICES,
    BBoxes,
    ClassLocation,
    ClassLocations,
    Integrity,
    Layout,
    Stats,
)
from mlarray.models.v1.header import DTYPES, ArrayInfo, Meta, Scaling, Writer
from mlarray.models.v1.spatial import AXIS_VOCABULARY, SPATIAL_LABELS, Spatial, compose_affine, is_spatial_label

__all__ = [
    "AXIS_VOCABULARY",
    "DTYPES",
    "SPATIAL_LABELS",
    "ArrayInfo",
    "MAX_CLASS_INDICES",
    "BBoxes",
    "ClassLocation",
    "ClassLocations",
    "Integrity",
    "Layout",
    "Meta",
    "Scaling",
    "Spatial",
    "Stats",
    "Writer",
    "compose_affine",
    "is_spatial_label",
]
