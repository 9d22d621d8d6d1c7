"""The python-blosc2 this package needs, checked when :mod:`mlarray.storage` is first imported."""

from __future__ import annotations

import re

import blosc2

MIN_BLOSC2 = (4, 3)
"""Oldest python-blosc2 this package works with: before 3.8 a chunk whose blocks split an axis other than the
last decoded as if in C order (silently wrong arrays); before 4.1 an empty axis got chunks of 0; before 4.2 the
C-Blosc2 library our read path calls was not shipped beside the package; 4.2 warns on every writable open."""

_found = re.match(r"(\d+)\.(\d+)", blosc2.__version__)
if _found is None or (int(_found[1]), int(_found[2])) < MIN_BLOSC2:
    raise ImportError(
        f"mlarray needs python-blosc2 {MIN_BLOSC2[0]}.{MIN_BLOSC2[1]} or newer, found {blosc2.__version__} "
        f"(earlier ones read some valid files wrong or lack what mlarray needs): "
        f"pip install --upgrade 'blosc2>={MIN_BLOSC2[0]}.{MIN_BLOSC2[1]}'"
    )
