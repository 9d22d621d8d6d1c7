"""File names C-Blosc2 can take: it passes them to the C library as UTF-8.

POSIX names are bytes; Python gives a name that is not UTF-8 as a ``str`` with lone
surrogates (``os.fsdecode``), which python-blosc2 cannot encode. Such a file is opened
through its descriptor (``/proc/self/fd/N``; refused with a typed error where the system
has none), and a save writes its temporary file under a UTF-8 spelling of the name
(:func:`utf8_name`) before renaming it to the real one.
"""

from __future__ import annotations

import os

from mlarray.errors import InvalidArgumentError


def blosc2_can_name(path: str) -> bool:
    """Whether C-Blosc2 can open ``path``: it takes file names as UTF-8 (a name of other bytes cannot be passed)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_blosc2_name(path: str) -> None:
    """Raise :class:`InvalidArgumentError` for a path C-Blosc2 cannot open or write (:func:`blosc2_can_name`)."""
    if blosc2_can_name(path):
        return
    text = os.fspath(path)
    char = next(ord(c) for c in text if 0xD800 <= ord(c) <= 0xDFFF)  # what UTF-8 cannot encode: a lone surrogate
    byte = f"byte 0x{char - 0xDC00:02X}" if 0xDC80 <= char <= 0xDCFF else f"character U+{char:04X}"
    raise InvalidArgumentError(
        f"the file name is not valid UTF-8 ({byte}), and C-Blosc2 takes names as UTF-8: rename the file", path=path
    )


def utf8_name(name: str) -> str:
    """``name`` with the bytes that are not UTF-8 spelled as ``\\xNN`` (``'caf\\xe9.mla'``); other names unchanged."""
    if blosc2_can_name(name):
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")
