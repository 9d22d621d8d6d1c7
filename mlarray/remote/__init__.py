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
import re
from typing import Any

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_CHAIN = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)::")


def is_chained(text: str) -> bool:
    """Whether ``text`` is a chained fsspec URL (``simplecache::s3://...``, ``zip::file://...``).

    Its first part must name a protocol: ``scan::v2.mla`` and ``/data/a::b.mla`` are local
    paths, and ``http://[::1]:8000/x.mla`` or a query holding ``::`` is a plain URL.
    """
    found = _CHAIN.match(text)
    if found is None:
        return False
    if _URL.search(text, found.end()) is not None:
        return True
    try:
        import fsspec
    except ImportError:
        return False
    return found.group(1).lower() in fsspec.available_protocols()


def is_url(target: Any) -> bool:
    """Whether ``target`` is a string naming a URL for fsspec (``scheme://...`` or chained), not a local path."""
    return isinstance(target, str) and (_URL.match(target) is not None or is_chained(target))


def is_remote(target: Any) -> bool:
    """Whether ``target`` is read through this package: a URL (``scheme://...``, ``a::b``) or an open file object.

    Only strings can be URLs: a :class:`pathlib.Path` is always a local path.
    """
    if isinstance(target, str):
        return is_url(target)
    return not isinstance(target, os.PathLike) and callable(getattr(target, "read", None))
