"""Geometry accessors of :class:`~mlarray.api.MLArray`: the spatial fields and the affine read-outs.

``spacing``, ``origin``, ``direction``, ``axis_labels`` and ``affine`` read and
write ``meta.spatial`` (every edit validated as part of the whole header);
``translation``, ``scale``, ``rotation`` and ``shear`` decompose the affine (read-only).

The decomposition. With ``n`` spatial axes let ``A`` be the upper-left ``n x n``
block of the affine and ``t`` its last column (without the final 1). ``A`` is
non-singular (the header refuses singular geometry), so it has exactly one
factorisation::

    A = R @ diag(s) @ U

with ``R`` orthonormal, every ``s[k] > 0`` and ``U`` upper triangular with ones on
its diagonal (the QR decomposition of ``A`` with the signs chosen so the triangular
factor has a positive diagonal). Then ``translation = t``, ``rotation = R`` (it may
contain a reflection: ``det R`` is +1 or -1), ``scale = s`` and ``shear = U``; and
``affine == [[rotation @ diag(scale) @ shear, translation], [0, 1]]``.

Without shear (``direction`` orthonormal, the usual case) ``shear`` is the identity,
``rotation`` equals ``direction`` and ``scale`` equals ``spacing`` (the column norms
of ``A``): the values mlarray 0.0.x returned. For a sheared affine 0.0.x returned the
column norms and ``A`` with normalised columns (not orthonormal), which is no
factorisation of ``A``; these read-outs differ there on purpose.

This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlarray._inputs import decompose, tolist
from mlarray.bound import BoundList, bound_matrix
from mlarray.models import Spatial, compose_affine, parse_header

if TYPE_CHECKING:
    from mlarray.models import Meta

Matrix = np.ndarray[Any, np.dtype[np.float64]]


def decompose_affine(affine: Any) -> tuple[Matrix, Matrix, Matrix, Matrix]:
    """``(translation, rotation, scale, shear)`` of a homogeneous affine (see the module docstring).

    Raises
    ------
    ValueError
        The matrix is not square ``(n+1) x (n+1)`` with ``n >= 1``, or its linear part is singular.
    """
    m = np.asarray(affine, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"an affine is a square (n+1) x (n+1) matrix, got shape {m.shape}")
    n = m.shape[0] - 1
    linear = m[:n, :n]
    q, r = np.linalg.qr(linear)
    diagonal = np.diag(r)
    if not np.all(np.isfinite(r)) or np.any(diagonal == 0):
        raise ValueError("the linear part of the affine is singular")
    signs = np.sign(diagonal)
    q = q * signs  # flip columns of Q and rows of R together: Q @ R is unchanged
    r = r * signs[:, None]
    scale = np.diag(r).copy()
    shear = r / scale[:, None]
    np.fill_diagonal(shear, 1.0)
    shear = np.triu(shear)
    # + 0.0 turns the -0.0 entries of the factors into 0.0
    return m[:n, n] + 0.0, q + 0.0, scale + 0.0, shear + 0.0


def compose_from_parts(translation: Any, rotation: Any, scale: Any, shear: Any) -> Matrix:
    """The affine ``[[rotation @ diag(scale) @ shear, translation], [0, 1]]`` (inverse of :func:`decompose_affine`)."""
    t = np.asarray(translation, dtype=np.float64)
    n = len(t)
    out = np.eye(n + 1)
    out[:n, :n] = np.asarray(rotation, dtype=np.float64) @ np.diag(np.asarray(scale, dtype=np.float64)) @ shear
    out[:n, n] = t
    return out


class SpatialGeometry:
    """Geometry properties; mixed into :class:`~mlarray.api.MLArray`."""

    _meta: Meta

    @property
    def spatial_ndim(self) -> int:
        raise NotImplementedError  # provided by MLArray

    def _set_spatial(self, **changes: Any) -> None:
        data = self._meta.model_dump(mode="json")
        data["spatial"].update(changes)
        validated = parse_header(data)
        self._meta.spatial = validated.spatial

    def _bound(self, name: str) -> BoundList | None:
        value = getattr(self._meta.spatial, name)
        if value is None:
            return None
        return BoundList(value, lambda new: self._set_spatial(**{name: new}))

    @property
    def spacing(self) -> BoundList | None:
        """Voxel size per spatial axis (mutations are validated)."""
        if self._meta.spatial.spacing is None and self._meta.spatial.affine is not None:
            return BoundList(decompose(self.affine)[0], lambda new: self._set_from_affine(spacing=new))
        return self._bound("spacing")

    @spacing.setter
    def spacing(self, value: Sequence[float] | None) -> None:
        self._set_spatial(spacing=tolist(value))

    @property
    def origin(self) -> BoundList | None:
        """World coordinate of the centre of voxel 0 (mutations are validated)."""
        if self._meta.spatial.origin is None and self._meta.spatial.affine is not None:
            return BoundList(decompose(self.affine)[1], lambda new: self._set_from_affine(origin=new))
        return self._bound("origin")

    @origin.setter
    def origin(self, value: Sequence[float] | None) -> None:
        self._set_spatial(origin=tolist(value))

    @property
    def direction(self) -> BoundList | None:
        """Direction cosines: column k is the world direction of spatial axis k."""
        value = self._meta.spatial.direction
        if value is None:
            if self._meta.spatial.affine is None:
                return None
            value = decompose(self.affine)[2]
            return bound_matrix([list(r) for r in value], lambda new: self._set_from_affine(direction=new))
        return bound_matrix([list(r) for r in value], lambda new: self._set_spatial(direction=new))

    @direction.setter
    def direction(self, value: Sequence[Sequence[float]] | None) -> None:
        self._set_spatial(direction=tolist(value))

    @property
    def axis_labels(self) -> BoundList | None:
        """One label per array axis (``spatial``, ``channel``, ``temporal``, ... or custom)."""
        return self._bound("axis_labels")

    @axis_labels.setter
    def axis_labels(self, value: Sequence[str] | None) -> None:
        self._set_spatial(axis_labels=tolist(value))

    @property
    def affine(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The ``(n+1) x (n+1)`` index-to-world matrix of the spatial axes, a NumPy float64 array (a copy).

        mlarray 0.0.x returned nested lists; ``image.affine.tolist()`` gives that form.
        """
        s = self._meta.spatial
        n = self.spatial_ndim
        if s.affine is not None:
            return np.asarray(s.affine, dtype=np.float64)
        return compose_affine(s.spacing, s.origin, s.direction, n)

    @affine.setter
    def affine(self, value: Any) -> None:
        if value is None:  # clears the geometry, as the other setters do with None
            self._set_spatial(spacing=None, origin=None, direction=None, affine=None)
            return
        Spatial(affine=tolist(value))  # the affine's own rules (square, last row, non-singular) before any split
        matrix = np.asarray(value, dtype=np.float64)
        spacing, origin, direction = decompose(matrix)
        d = np.asarray(direction)
        if np.allclose(d.T @ d, np.eye(len(d)), atol=1e-6):
            self._set_spatial(spacing=spacing, origin=origin, direction=direction, affine=None)
        else:
            self._set_spatial(spacing=None, origin=None, direction=None, affine=matrix.tolist())

    def _set_from_affine(self, **changes: Any) -> None:
        spacing, origin, direction = decompose(self.affine)
        parts = {"spacing": spacing, "origin": origin, "direction": direction, **changes}
        n = len(parts["spacing"])
        self._set_spatial(affine=compose_affine(parts["spacing"], parts["origin"], parts["direction"], n).tolist())

    def _parts(self) -> tuple[Matrix, Matrix, Matrix, Matrix] | None:
        if self.spatial_ndim == 0:
            return None
        return decompose_affine(self.affine)

    @property
    def translation(self) -> list[float] | None:
        """World position of voxel 0: the last column of the affine (``None`` without spatial axes)."""
        parts = self._parts()
        return None if parts is None else parts[0].tolist()

    @property
    def rotation(self) -> list[list[float]] | None:
        """Orthonormal factor ``R`` of ``A = R @ diag(scale) @ shear`` (see :mod:`mlarray._geometry`)."""
        parts = self._parts()
        return None if parts is None else parts[1].tolist()

    @property
    def scale(self) -> list[float] | None:
        """Positive scale factors ``s`` of ``A = rotation @ diag(s) @ shear``; the spacing when there is no shear."""
        parts = self._parts()
        return None if parts is None else parts[2].tolist()

    @property
    def shear(self) -> list[list[float]] | None:
        """Unit upper-triangular factor ``U`` of ``A = rotation @ diag(scale) @ U``; the identity without shear."""
        parts = self._parts()
        return None if parts is None else parts[3].tolist()
