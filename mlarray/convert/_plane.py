"""Where a 2-d (or 1-d) image sits in a 3-d world, across NIfTI, NRRD and MetaImage.

mlarray describes an image with ``n`` spatial axes in an ``n``-d world (spec 6.5), so a
2-d slice's position along the third world axis is not in ``meta.spatial``. It stays
in ``meta.source``: a NIfTI header's sform or qform, an NRRD header's 3-vector
``space origin`` (a slice in a 3-d ``space``), or the two custom fields this module
writes, or the 4x4 LPS map ``meta.source["world"]`` of a slice read from a 3-d
MetaImage of one slice. :func:`source_world` gives that full world map, in any frame,
to the NIfTI, NRRD and MetaImage writers, whichever format the source was.

ITK refuses an NRRD whose domain axes are fewer than its space has dimensions (a
2-d image in ``right-anterior-superior``). So a slice is written as ITK itself writes
one: a plain ``space dimension: 2`` holding the in-plane map in ITK's LPS frame, with
the named space and the full 3-d ``space origin`` in the custom fields
:data:`SPACE_FIELD` and :data:`ORIGIN_FIELD`. Reading such a file gives back the
frame and, through ``meta.source``, the slice position; a file whose custom fields no
longer agree with its standard ones (edited by another tool) is read from the
standard fields alone.

This module does no I/O and never rounds: frames change by sign flips and
permutations only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlarray.convert._geometry import (
    SAME_TOL,
    GeometryError,
    Matrix,
    change_frame,
    embed_world,
    orientation_matrix,
)

SPACE_TO_FRAME = {
    "right-anterior-superior": "RAS",
    "left-anterior-superior": "LAS",
    "left-posterior-superior": "LPS",
    "RAS": "RAS",
    "LAS": "LAS",
    "LPS": "LPS",
}
FRAME_TO_SPACE = {"RAS": "right-anterior-superior", "LAS": "left-anterior-superior", "LPS": "left-posterior-superior"}
OTHER_SPACES = {
    "right-anterior-superior-time": 4,
    "left-anterior-superior-time": 4,
    "left-posterior-superior-time": 4,
    "RAST": 4,
    "LAST": 4,
    "LPST": 4,
    "scanner-xyz": 3,
    "scanner-xyz-time": 4,
    "3D-right-handed": 3,
    "3D-left-handed": 3,
    "3D-right-handed-time": 4,
    "3D-left-handed-time": 4,
}
"""NRRD spaces kept verbatim as ``coord_system``, with their world dimension."""

SPACE_FIELD = "mlarray_space"
"""Custom NRRD field: the space (e.g. ``right-anterior-superior``) of an image written with a plain
``space dimension`` because it has fewer spatial axes than that space has dimensions."""
ORIGIN_FIELD = "mlarray_space_origin"
"""Custom NRRD field: the full ``space origin`` in :data:`SPACE_FIELD`, e.g. ``(10.0,-20.0,30.0)``."""
PLANE_FIELDS = (SPACE_FIELD, ORIGIN_FIELD)

ITK_FRAME = "LPS"
"""The world frame ITK assumes for an NRRD file without a named space."""


def space_dimension(frame: str | None) -> int | None:
    """World dimension of ``coord_system`` ``frame`` as an NRRD space (3 for orientation codes), or ``None``."""
    if frame is None:
        return None
    if frame in FRAME_TO_SPACE or orientation_matrix(frame) is not None:
        return 3
    return OTHER_SPACES.get(frame)


def space_name(frame: str) -> str:
    """The NRRD ``space`` value of ``frame`` (``'RAS'`` -> ``'right-anterior-superior'``, others verbatim)."""
    return FRAME_TO_SPACE.get(frame, frame)


def format_vector(values: Any) -> str:
    """An NRRD vector ``(a,b,c)`` whose numbers read back exactly (``repr`` of binary64)."""
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def parse_vector(text: Any) -> Matrix | None:
    """Inverse of :func:`format_vector`; ``None`` for anything else."""
    value = str(text).strip()
    if not (value.startswith("(") and value.endswith(")")):
        return None
    try:
        out = np.asarray([float(v) for v in value[1:-1].split(",")], dtype=np.float64)
    except ValueError:
        return None
    return out if np.all(np.isfinite(out)) else None


def in_itk_frame(affine: Matrix, frame: str | None) -> Matrix:
    """``affine`` (world in ``frame``) as ITK reads a plain ``space dimension``: in LPS when ``frame`` is one."""
    if frame is None or orientation_matrix(frame) is None:
        return np.array(affine, dtype=np.float64)
    return change_frame(affine, frame, ITK_FRAME)


def plane_from_custom(affine: Matrix, custom: dict[str, Any]) -> tuple[Matrix, str, Matrix] | None:
    """Undo :func:`plane_fields`: the in-plane map in its frame, the frame, and the full world map.

    ``affine`` is the ``(n+1) x (n+1)`` map the standard fields of a plain ``space
    dimension: n`` header give; ``custom`` the header's custom fields. ``None`` when
    the custom fields are missing, malformed or disagree with ``affine`` (the file was
    edited by a tool that kept them): then ``affine`` is all there is.
    """
    space, origin = custom.get(SPACE_FIELD), parse_vector(custom.get(ORIGIN_FIELD, ""))
    if not isinstance(space, str) or origin is None:
        return None
    frame = SPACE_TO_FRAME.get(space, space)
    n, m = affine.shape[0] - 1, space_dimension(frame)
    if m is None or origin.shape != (m,) or n >= m:
        return None
    try:
        own = affine if orientation_matrix(frame) is None else change_frame(affine, ITK_FRAME, frame)
    except GeometryError:
        return None
    if not np.allclose(own[:n, n], origin[:n], rtol=SAME_TOL, atol=SAME_TOL):
        return None
    world = np.eye(m + 1)
    world[:n, :n] = own[:n, :n]
    world[:m, m] = origin
    return own, frame, world


def plane_fields(world: Matrix, n: int, frame: str) -> tuple[Matrix, dict[str, str]]:
    """The ``(n+1) x (n+1)`` map for the standard fields and the custom fields of an image in a larger world.

    ``world`` is the ``(m+1) x (m+1)`` map in ``frame`` (its first ``n`` columns are the
    image axes, which :func:`~mlarray.convert._geometry.reduce_world` has checked lie in
    the first ``n`` world axes).
    """
    m = world.shape[0] - 1
    plane = np.eye(n + 1)
    plane[:n, :n] = world[:n, :n]
    plane[:n, n] = world[:n, m]
    custom = {SPACE_FIELD: space_name(frame), ORIGIN_FIELD: format_vector(world[:m, m])}
    return in_itk_frame(plane, frame), custom


def source_world(source: dict[str, Any], frame: str | None) -> Matrix | None:
    """The full world map a ``meta.source`` of NIfTI, NRRD or MetaImage records, re-expressed in ``frame``.

    NIfTI: the sform (``sform_code > 0``), else the qform, in RAS. NRRD: the ``space
    directions`` and ``space origin`` of a named space, or the custom fields of
    :func:`plane_fields`. MetaImage: ``world`` (LPS), set for a slice read from a 3-d
    file. ``None`` when the source records no world larger than the image, or its
    frame cannot be changed to ``frame``.
    """
    if source.get("format") == "nifti":
        found = _nifti_world(source)
    elif source.get("format") == "metaimage":
        found = _metaimage_world(source)
    else:
        found = _nrrd_world(source)
    if found is None or frame is None:
        return None
    world, own = found
    if own == frame:
        return world
    if world.shape != (4, 4) or orientation_matrix(own) is None or orientation_matrix(frame) is None:
        return None
    return change_frame(world, own, frame)


def slice_world(meta: Any, affine: Matrix, frame: str | None) -> Matrix | None:
    """The 4x4 map of a 1-d or 2-d image into the 3-d world its source file placed it in, in ``frame``.

    ``affine`` is the image's own ``(n+1) x (n+1)`` map, already in ``frame``; its
    in-plane part is kept and the source (:func:`source_world`) gives what lies
    across the plane (the slice position), as the format writers do. ``None`` for
    images with 3 or more spatial axes and when the source records no 3-d world.
    """
    n = affine.shape[0] - 1
    source = meta.source
    if n >= 3 or not isinstance(source, dict):
        return None
    base = source_world(dict(source), frame)
    if base is None or base.shape != (4, 4):
        return None
    return embed_world(affine, 3, base)


def _metaimage_world(source: dict[str, Any]) -> tuple[Matrix, str] | None:
    """The 4x4 LPS map of a slice read from a 3-d MetaImage of one slice (``source["world"]``)."""
    try:
        world = np.asarray(source.get("world"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return (world, "LPS") if world.shape == (4, 4) and np.all(np.isfinite(world)) else None


def _nifti_world(source: dict[str, Any]) -> tuple[Matrix, str] | None:
    header = source.get("header")
    if not isinstance(header, dict):
        return None
    try:
        if int(header.get("sform_code") or 0) > 0:
            rows = [header[f"srow_{axis}"] for axis in "xyz"]
            matrix: Any = [*rows, [0.0, 0.0, 0.0, 1.0]]
        elif int(header.get("qform_code") or 0) > 0 and source.get("qform") is not None:
            matrix = source["qform"]
        else:
            return None
        world = np.asarray(matrix, dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    return (world, "RAS") if world.shape == (4, 4) and np.all(np.isfinite(world)) else None


def _nrrd_world(source: dict[str, Any]) -> tuple[Matrix, str] | None:
    header, custom = source.get("header"), source.get("custom")
    if not isinstance(header, dict):
        return None
    rows = [row for row in header.get("space directions") or [] if row is not None]
    if not rows:
        return None
    try:
        linear = np.asarray(rows, dtype=np.float64).T
        origin = np.asarray([np.nan if v is None else v for v in header.get("space origin") or []], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    m, n = linear.shape
    if n > m or origin.shape != (m,) or not np.all(np.isfinite(origin)) or not np.all(np.isfinite(linear)):
        return None
    space = header.get("space")
    if isinstance(space, str):
        world = np.eye(m + 1)
        world[:m, :n] = linear
        world[:m, m] = origin
        return world, SPACE_TO_FRAME.get(space, space)
    affine = np.eye(n + 1)
    affine[:n, :n] = linear
    affine[:n, n] = origin
    plane = plane_from_custom(affine, custom if isinstance(custom, dict) else {})
    return None if plane is None else (plane[2], plane[1])
