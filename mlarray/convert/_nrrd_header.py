"""Consistency checks of an NRRD header that pynrrd has parsed, before anything uses it.

pynrrd parses each field on its own: a ``kinds`` line with two entries in a 3-d file,
or ``sizes: 4 -5 6``, reads without complaint. The NRRD format requires one entry per
axis in every per-axis field and positive sizes; :func:`check_nrrd_header` checks that
once, when the header is read, so that such a file is reported as a damaged source
naming the field instead of failing later with an index error deep in the converter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlarray.convert._plane import SPACE_TO_FRAME, space_dimension
from mlarray.errors import SourceFormatError

PER_AXIS_FIELDS = (
    "sizes", "spacings", "thicknesses", "axis mins", "axismins", "axis maxs", "axismaxs",
    "centers", "centerings", "kinds", "labels", "units", "space directions",
)  # fmt: skip
"""NRRD fields with exactly one entry per axis (``dimension`` of them)."""


def _entries(value: Any) -> list[Any]:
    """The entries of a per-axis field as pynrrd returns it (list, array, or a space-separated string)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, np.ndarray):
        return list(value) if value.ndim else [value.item()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _space_dimension(header: dict[str, Any]) -> int | None:
    """The world dimension the header declares (``space dimension`` or the named ``space``), if any."""
    if header.get("space dimension") is not None:
        try:
            return int(header["space dimension"])
        except (TypeError, ValueError):
            return None
    space = header.get("space")
    if space is None:
        return None
    return space_dimension(SPACE_TO_FRAME.get(str(space), str(space)))


def check_nrrd_header(header: dict[str, Any], path: str) -> None:
    """Raise :class:`~mlarray.errors.SourceFormatError` unless the header's per-axis fields fit its ``dimension``.

    Checked: ``dimension`` is a positive integer; every per-axis field present
    (:data:`PER_AXIS_FIELDS`) has ``dimension`` entries; ``sizes`` are positive
    integers; each ``space directions`` vector and the ``space origin`` have as many
    entries as the space has dimensions.
    """
    try:
        ndim = int(header.get("dimension"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SourceFormatError(
            f"NRRD field 'dimension' is not an integer: {header.get('dimension')!r}", path=path
        ) from None
    if ndim < 1:
        raise SourceFormatError(f"NRRD field 'dimension' must be at least 1, not {ndim}", path=path)
    if header.get("sizes") is None:
        raise SourceFormatError("the NRRD header has no 'sizes' field", path=path)
    for key in PER_AXIS_FIELDS:
        if header.get(key) is None:
            continue
        count = len(_entries(header[key]))
        if count != ndim:
            raise SourceFormatError(
                f"NRRD field {key!r} has {count} entries for dimension {ndim} (one per axis is required)", path=path
            )
    sizes = _entries(header["sizes"])
    try:
        integral = all(float(s) == int(s) for s in sizes)
    except (TypeError, ValueError, OverflowError):
        integral = False
    if not integral or any(int(s) < 1 for s in sizes):
        shown = " ".join(str(s) for s in sizes)
        raise SourceFormatError(f"NRRD field 'sizes' must hold positive integers, not {shown}", path=path)
    m = _space_dimension(header)
    if m is None:
        return
    for row in _entries(header.get("space directions", [])):
        width = None if row is None else np.asarray(row).size
        if width is not None and width != m and not np.all(np.isnan(np.asarray(row, dtype=np.float64))):
            raise SourceFormatError(
                f"NRRD field 'space directions' has a vector of {width} entries in a {m}-d space", path=path
            )
    origin = header.get("space origin")
    if origin is not None and np.asarray(origin).size != m:
        raise SourceFormatError(
            f"NRRD field 'space origin' has {np.asarray(origin).size} entries in a {m}-d space", path=path
        )
