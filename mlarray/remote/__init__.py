"""Read ``.mla`` files from URLs (``s3://``, ``https://``, ``memory://``, any fsspec URL) and file objects.

``MLArray.open(url, storage_options=...)`` and ``MLArray.open(fileobj)`` come here: the
frame, header and chunk index are read with a few ranged reads and checked exactly as
for a local file; a patch read then fetches only the chunks it touches
(:mod:`mlarray.remote.array`). fsspec and its HTTP/S3 packages (the ``remote`` extra)
are imported only when a URL is opened (:mod:`mlarray.remote.sources`), never by
``import mlarray``.
"""

from __future__ import annotations

import os
from typing import Any


def is_remote(target: Any) -> bool:
    """Whether ``target`` is read through this package: a URL (``scheme://...``, ``a::b``) or an open file object."""
    if isinstance(target, str):
        return "://" in target or "::" in target
    return not isinstance(target, os.PathLike) and callable(getattr(target, "read", None))
