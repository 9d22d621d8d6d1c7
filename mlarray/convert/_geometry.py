"""Index-to-world geometry shared by the NIfTI and NRRD converters.

Both formats describe where each voxel sits with a homogeneous matrix; they differ
in the world frame (NIfTI is always RAS+, NRRD names its ``space``) and in how many
world axes there are (NIfTI always has three, a 2-d image included). mlarray keeps
one ``(n+1) x (n+1)`` matrix over its ``n`` spatial axes, in the file's own frame.

This module holds the pure matrix work: turning a matrix into mlarray's
``spacing``/``origin``/``direction`` (or ``affine`` when sheared), dropping or
adding world axes that carry no information, and changing between orientation
frames such as LPS and RAS. It never reads files and never rounds: every number
that goes in comes back out unchanged, so round trips are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlarray.frames import GeometryError, change_frame, orientation_matrix
from mlarray.models import compose_affine
from mlarray.models.v1.spatial import ORTHONORMAL_TOL

__all__ = ["SAME_TOL", "GeometryError", "Matrix", "change_frame", "orientation_matrix"]

Matrix = np.ndarray[Any, np.dtype[np.float64]]

SAME_TOL = 1e-9
"""Relative and absolute tolerance for "this is still the same geometry" (far below float32 precision)."""


def is_orthonormal(direction: Matrix) -> bool:
    """Whether ``direction`` passes the core's orthonormality rule (``|D^T D - I| <= tol``)."""
    n = direction.shape[0]
    return bool(np.abs(direction.T @ direction - np.eye(n)).max() <= ORTHONORMAL_TOL)


def spatial_fields(affine: Matrix, *, with_origin: bool = True) -> dict[str, Any]:
    """``meta.spatial`` fields that encode ``affine`` exactly.

    An affine whose columns are orthogonal becomes ``spacing`` (column norms),
    ``origin`` and ``direction``; a sheared one is kept whole as ``affine``. The
    direction is never re-orthonormalised, so composing the fields gives back the
    input matrix.

    Raises
    ------
    GeometryError
        A column is zero (a singular matrix maps a whole axis onto one point).
    """
    n = affine.shape[0] - 1
    linear = affine[:n, :n]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing == 0) or not np.all(np.isfinite(affine)):
        raise GeometryError(f"the index-to-world matrix is singular or not finite: {affine.tolist()}")
    direction = linear / spacing
    if not is_orthonormal(direction):
        return {"affine": affine.tolist()}
    out: dict[str, Any] = {"spacing": spacing.tolist(), "direction": direction.tolist()}
    if with_origin:
        out["origin"] = affine[:n, n].tolist()
    return out


def affine_of(spatial: Any, n: int) -> Matrix | None:
    """The index-to-world matrix recorded by ``spatial`` (a ``Spatial`` or a dict of its fields), or ``None``."""

    def get(key: str) -> Any:
        return spatial.get(key) if isinstance(spatial, dict) else getattr(spatial, key)

    if get("affine") is not None:
        return np.asarray(get("affine"), dtype=np.float64)
    if get("spacing") is None and get("origin") is None and get("direction") is None:
        return None
    return compose_affine(get("spacing"), get("origin"), get("direction"), n)


def reduce_world(affine: Matrix, n: int) -> Matrix:
    """Drop world axes ``n..m-1`` of an ``(m+1) x (m+1)`` matrix over ``n`` index axes.

    ``affine`` maps ``n`` index axes (its first ``n`` columns matter; the others are
    ignored) into an ``m``-d world. This is exact only when no index axis moves along
    the dropped world axes; their origin offsets stay in ``meta.source``.
    """
    m = affine.shape[0] - 1
    if n == m:
        return np.array(affine, dtype=np.float64)
    if n > m:
        raise GeometryError(f"{n} spatial axes cannot live in a {m}-d world")
    columns = affine[:m, :n]
    scale = np.linalg.norm(columns, axis=0)
    leak = np.abs(columns[n:, :]) > 1e-9 * np.where(scale == 0, 1, scale)
    if np.any(leak):
        raise GeometryError(
            f"the {n} image axes are not aligned with the first {n} world axes (they move along world axis "
            f"{int(np.argwhere(leak)[0][0]) + n}); mlarray needs as many world axes as spatial axes"
        )
    out = np.eye(n + 1)
    out[:n, :n] = affine[:n, :n]
    out[:n, n] = affine[:n, m]
    return out


def embed_world(affine: Matrix, m: int, base: Matrix | None = None) -> Matrix:
    """Inverse of :func:`reduce_world`: grow an ``n``-d geometry into an ``m``-d world.

    The extra rows and columns come from ``base`` (the original ``m``-d matrix, when
    known), else from the identity with a zero origin.
    """
    n = affine.shape[0] - 1
    if n > m:
        raise GeometryError(f"a {n}-d geometry does not fit a {m}-d world")
    out = np.eye(m + 1) if base is None else base.copy()
    out[:n, :n] = affine[:n, :n]
    out[n:m, :n] = 0.0
    out[:n, m] = affine[:n, n]
    return out


def same_geometry(a: Matrix | None, a_frame: str | None, b: Matrix | None, b_frame: str | None) -> bool:
    """Whether two index-to-world maps (``None`` = no geometry) and their frames are the same."""
    if a_frame != b_frame:
        return False
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=SAME_TOL, atol=SAME_TOL))
