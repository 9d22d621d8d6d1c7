"""Spatial geometry of an array (schema 1.x).

Geometry is defined per *spatial* array axis, in array order. With ``n`` spatial
axes, ``i`` the index vector of a voxel along those axes (voxel centres at integer
indices), ``s`` the spacing, ``o`` the origin and ``D`` the direction matrix whose
column ``k`` is the world direction of array axis ``k``::

    world = o + D @ diag(s) @ i

``affine`` is the same map as one homogeneous ``(n+1) x (n+1)`` matrix,
``affine = [[D @ diag(s), o], [0, 1]]``. It may stand alone to describe sheared
geometry that no orthonormal ``D`` can express.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from mlarray.models.base import StrictModel

SPATIAL_LABELS = frozenset({"spatial", "spatial_x", "spatial_y", "spatial_z"})
"""Axis labels that mark a spatial axis (geometry applies to these)."""

AXIS_VOCABULARY = (
    "spatial",
    "spatial_x",
    "spatial_y",
    "spatial_z",
    "channel",
    "temporal",
    "components",
    "non_spatial",
)
"""Standard axis labels. Any other non-empty string is a custom (non-spatial) label."""

STANDARD_COORD_SYSTEMS = ("RAS", "LPS")
"""RAS: +x right, +y anterior, +z superior (NIfTI). LPS: +x left, +y posterior, +z superior (DICOM/ITK)."""

ORTHONORMAL_TOL = 1e-4
"""Largest allowed ``|D^T D - I|`` entry for ``direction``; anything less orthonormal goes in ``affine``."""

AFFINE_TOL = 1e-6
"""Relative tolerance when ``affine`` and ``spacing``/``origin``/``direction`` are both given."""
SINGULAR_TOL = 1e-9
"""Spec 6.5: the affine's n x n block is singular when a column is 0 or |det| of its unit columns is <= this."""


def _singular(block: np.ndarray[Any, Any]) -> bool:
    """Spec 6.5 "non-singular": scale each column (axis vector) to length 1; singular when |det| <= 1e-9.

    Spacing does not matter (columns are normalised), an underflowing determinant does
    not make an affine singular, and two implementations computing in binary64 agree
    unless |det| is within rounding of the threshold.
    """
    if block.size == 0:  # no spatial axes: the empty block has determinant 1
        return False
    peaks = np.abs(block).max(axis=0)
    if not bool(np.all(peaks > 0)):
        return True
    scaled = block / peaks  # first by the largest entry: no underflow or overflow in the length
    with np.errstate(all="ignore"):  # an exactly singular block gives det 0, not a warning
        det = float(np.linalg.det(scaled / np.sqrt((scaled * scaled).sum(axis=0))))
    return abs(det) <= SINGULAR_TOL


Label = Annotated[str, Field(min_length=1, max_length=64)]
Unit = Annotated[str, Field(max_length=64)]


class AxisLabel(str, Enum):
    """Axis labels as enum members (the names of mlarray 0.0.x); each is the plain string it names.

    Every member but ``continuous`` is a standard label of :data:`AXIS_VOCABULARY`;
    ``continuous`` is kept for code written for mlarray 0.0.x and is stored as a
    custom (non-spatial) label.
    """

    spatial = "spatial"
    spatial_x = "spatial_x"
    spatial_y = "spatial_y"
    spatial_z = "spatial_z"
    channel = "channel"
    temporal = "temporal"
    components = "components"
    non_spatial = "non_spatial"
    continuous = "continuous"

    def __str__(self) -> str:
        return str(self.value)


class CoordSystem(str, Enum):
    """World coordinate conventions as enum members; each is the plain string it names.

    ``RAS`` and ``LPS`` are the standard values (:data:`STANDARD_COORD_SYSTEMS`);
    ``unknown`` and ``other`` are kept for code written for mlarray 0.0.x and are
    stored as custom names.
    """

    RAS = "RAS"
    LPS = "LPS"
    unknown = "unknown"
    other = "other"

    def __str__(self) -> str:
        return str(self.value)


def is_spatial_label(label: str) -> bool:
    """Whether ``label`` marks a spatial axis."""
    return label in SPATIAL_LABELS


class Spatial(StrictModel):
    """World geometry and axis semantics.

    Every field is optional. ``spacing``, ``origin`` and ``shape`` have one entry per
    spatial axis; ``direction`` is ``n x n`` and ``affine`` ``(n+1) x (n+1)`` with
    ``n`` spatial axes; ``axis_labels`` and ``axis_units`` have one entry per array
    axis. Without ``axis_labels`` every array axis is spatial.
    """

    spacing: list[Annotated[float, Field(gt=0)]] | None = Field(
        default=None, description="Voxel size along each spatial axis, in array order; > 0."
    )
    origin: list[float] | None = Field(
        default=None, description="World position of the centre of voxel index 0 (spatial axes)."
    )
    direction: list[list[float]] | None = Field(
        default=None,
        description="n x n orthonormal matrix; column k is the world direction of spatial axis k.",
    )
    affine: list[list[float]] | None = Field(
        default=None,
        description="(n+1) x (n+1) homogeneous index-to-world matrix; last row is [0, ..., 0, 1].",
    )
    shape: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="Size of each spatial axis; must match the array."
    )
    axis_labels: list[Label] | None = Field(
        default=None,
        description="One label per array axis: a standard label (spatial, spatial_x, spatial_y, "
        "spatial_z, channel, temporal, components, non_spatial) or a custom string.",
    )
    axis_units: list[Unit] | None = Field(
        default=None, description="One unit per array axis (e.g. 'mm', 's', ''); free text."
    )
    coord_system: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="World coordinate convention: 'RAS', 'LPS' or a custom name."
    )

    AxisLabel: ClassVar[type[AxisLabel]] = AxisLabel
    CoordSystem: ClassVar[type[CoordSystem]] = CoordSystem
    _positional: ClassVar[tuple[str, ...]] = (
        "spacing",
        "origin",
        "direction",
        "affine",
        "shape",
        "axis_labels",
        "coord_system",
        "axis_units",
    )
    _array_shape: list[int] | None = PrivateAttr(default=None)
    """Shape of the array the enclosing :class:`~mlarray.models.Meta` describes (set when it is validated)."""

    def __eq__(self, other: object) -> bool:
        """Equal fields (the array shape a header records for :attr:`shape`'s read-out does not count)."""
        if not isinstance(other, Spatial):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, like every model

    def _stored_shape(self) -> list[int] | None:
        """``shape`` as stored in the header (``None`` when the header leaves it out)."""
        stored: list[int] | None = self.__dict__.get("shape")
        return stored

    def array_spatial_shape(self) -> list[int] | None:
        """The spatial part of the array's shape (spec 5.9.4), or ``None`` without an array."""
        full = self._array_shape
        if full is None:
            return None
        labels = self.axis_labels
        if labels is None or len(labels) != len(full):
            return list(full)
        return [n for n, label in zip(full, labels, strict=True) if is_spatial_label(label)]

    def _copy_skips(self) -> frozenset[str]:
        """``shape`` belongs to the array this header describes; it is never copied."""
        return frozenset({"shape"})

    @field_validator("direction", "affine")
    @classmethod
    def _square(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        """Spec: ``direction`` and ``affine`` are square matrices."""
        if value is not None:
            n = len(value)
            if n == 0 or any(len(row) != n for row in value):
                raise ValueError(f"must be a non-empty square matrix, got rows of lengths {[len(r) for r in value]}")
        return value

    def spatial_ndim(self) -> int | None:
        """Number of spatial axes these fields describe, or ``None`` if nothing tells."""
        if self.axis_labels is not None:
            return sum(is_spatial_label(label) for label in self.axis_labels)
        for field in (self.spacing, self.origin, self.direction, self._stored_shape()):
            if field is not None:
                return len(field)
        if self.affine is not None:
            return len(self.affine) - 1
        return None

    @model_validator(mode="after")
    def _consistent(self) -> Spatial:
        """Spec: lengths agree with the spatial axes; direction orthonormal; affine consistent.

        Every broken rule is reported at once, each as an error at the member it concerns;
        a rule that needs a value of the right size is not checked when that size is wrong.
        """
        n = self.spatial_ndim()
        if n is None:
            return self
        problems = self._problems(n)
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
                        loc=(name,),
                        input=self.__dict__.get(name),
                    )
                    for name, reason in problems
                ],
            )
        return self

    def _axes_phrase(self, n: int) -> str:
        """Where the number of spatial axes ``n`` came from, for messages."""
        if self.axis_labels is not None:
            return f"there are {n} spatial axes"
        named = (("spacing", self.spacing), ("origin", self.origin), ("direction", self.direction))
        first = next((name for name, value in named if value is not None), None)
        if first is None:
            first = "shape" if self._stored_shape() is not None else "affine"
        return f"{first} describes {n} spatial axes"

    def _problems(self, n: int) -> list[tuple[str, str]]:
        """``(member, message)`` of each broken rule."""
        problems: list[tuple[str, str]] = []
        axes = self._axes_phrase(n)
        sized = True  # spacing and origin (whose lengths the implied affine needs) have n entries
        for name in ("spacing", "origin", "shape"):
            value = self.__dict__.get(name)
            if value is not None and len(value) != n:
                problems.append((name, f"{name} has {len(value)} entries but {axes}"))
                sized = sized and name == "shape"
        if (
            self.axis_labels is not None
            and self.axis_units is not None
            and len(self.axis_units) != len(self.axis_labels)
        ):
            problems.append(
                (
                    "axis_units",
                    f"axis_units has {len(self.axis_units)} entries but axis_labels has {len(self.axis_labels)}",
                )
            )
        if self.direction is not None:
            if len(self.direction) != n:
                sized = False
                problems.append(
                    (
                        "direction",
                        f"direction is {len(self.direction)}x{len(self.direction)} but {axes}",
                    )
                )
            else:
                d = np.asarray(self.direction, dtype=np.float64)
                error = float(np.abs(d.T @ d - np.eye(n)).max())
                if error > ORTHONORMAL_TOL:
                    problems.append(
                        (
                            "direction",
                            f"direction is not orthonormal (max |D^T D - I| = {error:.3g} > {ORTHONORMAL_TOL}); "
                            "store sheared or scaled geometry in 'affine'",
                        )
                    )
        if self.affine is not None:
            if len(self.affine) != n + 1:
                problems.append(
                    (
                        "affine",
                        f"affine must be {n + 1}x{n + 1} as {axes}, got {len(self.affine)}x{len(self.affine)}",
                    )
                )
                return problems
            a = np.asarray(self.affine, dtype=np.float64)
            expected_last = np.zeros(n + 1)
            expected_last[n] = 1.0
            last_row = bool(np.array_equal(a[n], expected_last))
            if not last_row:
                problems.append(("affine", f"the last row of affine must be {expected_last.tolist()}"))
            if _singular(a[:n, :n]):
                problems.append(("affine", "affine is singular (its axis vectors are linearly dependent or nearly so)"))
            implied = self._implied_affine(n) if sized and last_row else None
            if implied is not None and not np.allclose(a, implied, rtol=AFFINE_TOL, atol=AFFINE_TOL):
                problems.append(("affine", "affine disagrees with spacing/origin/direction"))
        return problems

    def _implied_affine(self, n: int) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        if self.spacing is None and self.origin is None and self.direction is None:
            return None
        return compose_affine(self.spacing, self.origin, self.direction, n)


class _ShapeView:
    """``Spatial.shape`` as users read it: the stored value, else the spatial part of the array's shape.

    The header stores ``spatial.shape`` only when it is set (it must then equal the spatial
    part of ``array.shape``); mlarray 0.0.x always reported the shape. Reading goes through
    this descriptor, serialising and validating use the stored value, so headers and the
    schema are unchanged.
    """

    def __get__(self, obj: Spatial | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        stored = obj._stored_shape()
        return stored if stored is not None else obj.array_spatial_shape()

    def __set__(self, obj: Spatial, value: Any) -> None:
        type(obj).__setattr__(obj, "shape", value)  # validated, like every field


Spatial.shape = _ShapeView()  # type: ignore[assignment]


def compose_affine(
    spacing: list[float] | None, origin: list[float] | None, direction: list[list[float]] | None, n: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Build ``[[D @ diag(s), o], [0, 1]]``; missing parts default to unit spacing, zero origin, identity."""
    s = np.ones(n) if spacing is None else np.asarray(spacing, dtype=np.float64)
    o = np.zeros(n) if origin is None else np.asarray(origin, dtype=np.float64)
    d = np.eye(n) if direction is None else np.asarray(direction, dtype=np.float64)
    out = np.eye(n + 1)
    out[:n, :n] = d @ np.diag(s)
    out[:n, n] = o
    return out
