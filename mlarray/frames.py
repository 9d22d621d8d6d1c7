"""World frames named by orientation codes (``'RAS'``, ``'LPS'``, ...) and changes between them.

A header's geometry is in the world frame ``spatial.coord_system`` names. NIfTI,
nibabel, MONAI, TorchIO and napari's placement use RAS+ (x to the right, y anterior, z
superior); DICOM, ITK and NRRD files are usually LPS+. An orientation code has one
letter of each pair R/L, A/P, S/I; its matrix is a signed permutation, so changing frames
only flips signs and swaps axes and never rounds a number.

A world with fewer than three axes takes the code's first letters, when the change does
not need the missing axes (LPS -> RAS in 2-d is fine, LPS -> SAR is not). World axes past
the third (time) are not part of an orientation and stay as they are in :func:`to_ras`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlarray.errors import InvalidArgumentError

Matrix = np.ndarray[Any, np.dtype[np.float64]]

_PAIRS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


class GeometryError(InvalidArgumentError):
    """A geometry that mlarray (or a target format) cannot represent; callers add the file name.

    An ``INVALID_ARGUMENT`` (and a ``ValueError``) when it reaches the caller of :func:`change_frame`.
    """


def orientation_matrix(code: str | None) -> Matrix | None:
    """Signed permutation ``M`` with ``ras = M @ xyz`` for an orientation code such as ``'LPS'``.

    Returns ``None`` when ``code`` is not a three-letter code made of one letter from
    each of the pairs R/L, A/P, S/I (no frame, or a custom name such as ``'scanner-xyz'``).
    """
    if not isinstance(code, str) or len(code) != 3 or any(c not in _PAIRS for c in code.upper()):
        return None
    m = np.zeros((3, 3))
    for column, letter in enumerate(code.upper()):
        axis, sign = _PAIRS[letter]
        m[axis, column] = sign
    if not np.array_equal(np.abs(m).sum(axis=1), np.ones(3)):  # a pair used twice ('LRS')
        return None
    return m


def _change(source: Matrix, target: Matrix, n: int) -> Matrix | None:
    """The ``k x k`` change (``k = min(n, 3)``) of the first world axes, or ``None`` when it needs missing axes."""
    full = target.T @ source  # source coordinates -> RAS -> target coordinates
    k = min(n, 3)
    if np.any(full[:k, k:]) or np.any(full[k:, :k]):
        return None
    out: Matrix = full[:k, :k]
    return out


def change_frame(affine: Any, source: str, target: str) -> Matrix:
    """Re-express ``affine`` (``(n+1) x (n+1)``, world in frame ``source``, ``n <= 3``) in frame ``target``.

    Raises
    ------
    GeometryError
        A frame is not an orientation code, the world has more than three axes, or the
        change mixes the world's axes with missing ones.
    """
    a, b = orientation_matrix(source), orientation_matrix(target)
    if a is None or b is None:
        unknown = source if a is None else target
        raise GeometryError(f"{unknown!r} is not an orientation code like 'RAS' or 'LPS'")
    out: Matrix = np.array(affine, dtype=np.float64)
    n = out.shape[0] - 1
    if n > 3:
        raise GeometryError(f"cannot change the frame of a {n}-d world")
    m = _change(a, b, n)
    if m is None:
        raise GeometryError(f"changing {source} to {target} mixes the {n} world axes with missing ones")
    out[:n, :] = m @ out[:n, :]
    return out


def ras_change(frame: str | None, n: int) -> Matrix | None:
    """The change of the first ``min(n, 3)`` world axes of ``frame`` to RAS+, or ``None``.

    ``None`` when ``frame`` is not an orientation code, or when it cannot be applied to a
    world of ``n`` axes without the missing ones.
    """
    m = orientation_matrix(frame)
    return None if m is None or n < 1 else _change(m, np.eye(3), n)


def to_ras(affine: Any, frame: str | None) -> Matrix:
    """``affine`` (world in ``frame``) in RAS+; unchanged when ``frame`` names no orientation it can change.

    World axes past the third (time) stay as they are.
    """
    out: Matrix = np.array(affine, dtype=np.float64)
    change = ras_change(frame, out.shape[0] - 1)
    if change is not None:
        k = change.shape[0]
        out[:k, :] = change @ out[:k, :]
    return out


def from_ras(affine: Any, frame: str | None) -> Matrix:
    """The inverse of :func:`to_ras`: an affine in RAS+ back in ``frame``."""
    out: Matrix = np.array(affine, dtype=np.float64)
    change = ras_change(frame, out.shape[0] - 1)
    if change is not None:
        k = change.shape[0]
        out[:k, :] = change.T @ out[:k, :]  # a signed permutation: its inverse is its transpose
    return out
