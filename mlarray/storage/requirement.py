"""The python-blosc2 this package needs, checked when :mod:`mlarray.storage` is first imported."""

from __future__ import annotations

import re

import blosc2

MIN_BLOSC2 = (3, 8)
"""Oldest python-blosc2 that reads every valid file right: earlier releases decode a chunk whose blocks split
an axis other than the last as if it were in C order (silently wrong arrays) and mis-shape negative steps."""

_found = re.match(r"(\d+)\.(\d+)", blosc2.__version__)
if _found is None or (int(_found[1]), int(_found[2])) < MIN_BLOSC2:
    raise ImportError(
        f"mlarray needs python-blosc2 {MIN_BLOSC2[0]}.{MIN_BLOSC2[1]} or newer, found {blosc2.__version__} "
        "(earlier releases read some valid files wrong): pip install --upgrade 'blosc2>=3.8'"
    )
