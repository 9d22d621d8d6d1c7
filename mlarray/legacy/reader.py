"""Read files of the earlier implementation as :class:`~mlarray.MLArray` objects, read-only.

Existing datasets keep working while people migrate: ``MLArray(path)``,
``MLArray.load`` and ``MLArray.open(path, mmap_mode="r"|"c")`` fall back to this module
when a file's header is in a legacy encoding. The header is decoded safely
(:mod:`mlarray.legacy.decode`), mapped onto the current models
(:mod:`mlarray.legacy.mapping`), and a :class:`~mlarray.errors.LegacyFormatWarning`
says once per file that ``mlarray migrate`` converts it. Writing in place is refused.

The image gets exactly the header ``mlarray migrate`` would write: values without a
place in it (the old ``blosc2`` record, ``mlarray_version``, unknown keys) are under
``meta.extra["legacy"]``, and saving the image keeps them there.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlarray._inputs import default_labels
from mlarray.errors import (
    CorruptFrameError,
    InvalidArgumentError,
    LegacyFormatError,
    LegacyFormatWarning,
    MLArrayError,
    ResourceLimitError,
    caller_stacklevel,
)
from mlarray.legacy.decode import Encoding, looks_legacy, read_legacy_frame
from mlarray.legacy.mapping import LegacyMapping, map_legacy
from mlarray.models import DTYPES, Layout, Meta, parse_header
from mlarray.storage import FrameInfo, inspect_frame, open_frame
from mlarray.storage.io import layout_of

if TYPE_CHECKING:
    from mlarray.api import MLArray

_warned: set[tuple[str, int, int]] = set()


@dataclass
class LegacyFile:
    """A decoded legacy file: the current header it maps to, and how it was found."""

    path: str
    meta: Meta
    mapping: LegacyMapping
    encoding: Encoding
    frame: FrameInfo
    has_array: bool
    patch_size: list[int] | None


def is_legacy_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a frame whose header is in one of the earlier implementation's encodings.

    Never raises for a bad file: anything that is not a readable legacy frame is ``False``.
    """
    try:
        return looks_legacy(inspect_frame(os.fspath(path)).header_bytes)
    except (MLArrayError, OSError):
        return False


def _has_array(raw: dict[Any, Any]) -> bool:
    value = raw.get("_has_array", True)
    if isinstance(value, dict):
        value = value.get("has_array", True)
    return value is not False


def _legacy_patch_size(raw: dict[Any, Any]) -> list[int] | None:
    for key in ("blosc2", "_blosc2"):
        section = raw.get(key)
        if isinstance(section, dict):
            patch = section.get("patch_size")
            if isinstance(patch, (list, tuple)) and patch and all(type(v) is int and v > 0 for v in patch):
                return [int(v) for v in patch]
    return None


def read_legacy(path: str | os.PathLike[str]) -> LegacyFile:
    """Decode ``path`` and map its header; the result describes the array the frame holds.

    Raises
    ------
    UnsafeLegacyFileError
        The header pickle names a global outside the allow-list.
    MLArrayError
        The frame or header is damaged.
    """
    p = os.fspath(path)
    raw, encoding, frame = read_legacy_frame(p)
    has_array = _has_array(raw)
    shape = tuple(frame.nd.shape) if has_array else None
    mapping = map_legacy(raw, shape)
    data = mapping.meta.model_dump(mode="json")
    if shape is not None:
        if data["spatial"].get("axis_labels") is None:
            data["spatial"]["axis_labels"] = default_labels(len(shape), data["spatial"])
        data["array"] = {"shape": list(shape), "dtype": _dtype_str(frame.nd.dtype, p)}
    return LegacyFile(p, parse_header(data, path=p), mapping, encoding, frame, has_array, _legacy_patch_size(raw))


def _dtype_str(dtype: str, path: str) -> str:
    dt = np.dtype(dtype)
    if dt.byteorder == ">":
        dt = dt.newbyteorder("<")
    if dt.str not in DTYPES:
        raise InvalidArgumentError(f"the legacy array has dtype {dt}, which .mla files cannot hold", path=path)
    return str(dt.str)


def _layout(nd: Any, patch: list[int] | None) -> Layout | None:
    """The layout record of the legacy frame, when our models can describe its compression."""
    for candidate in (patch, None):
        try:
            return layout_of(nd, "patch" if candidate is not None else "blosc2", candidate)
        except (MLArrayError, ValueError):
            continue
    return None


def _warn(path: str) -> None:
    """Warn once per file (identified by path, inode and modification time)."""
    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_ino, st.st_mtime_ns)
    except OSError:
        key = (os.path.abspath(path), 0, 0)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(
        f"{path} is a file of the earlier mlarray implementation (legacy header); it is read safely. "
        f"`mlarray migrate {path} NEW.mla` (or `mlarray migrate DIR --in-place`) converts it to the current format",
        LegacyFormatWarning,
        stacklevel=caller_stacklevel(),
    )


def refuse_writing(path: str) -> LegacyFormatError:
    """The error for a write request (``r+``) on a legacy file."""
    return LegacyFormatError(
        "the file has a legacy header of the earlier mlarray implementation and cannot be opened for "
        f"writing; migrate it first (`mlarray migrate {path} NEW.mla`, or `--in-place`), or open it with mmap_mode='r'",
        path=path,
    )


def open_legacy(cls: type[MLArray], path: str, mmap_mode: str, dparams: Any) -> MLArray:
    """A memory-mapped, read-only (``'r'``) or copy-on-write (``'c'``) MLArray of a legacy file."""
    if mmap_mode not in ("r", "c"):
        raise refuse_writing(path)
    legacy = read_legacy(path)
    nd = open_frame(path, "r", dparams if dparams is not None else {"nthreads": 1})
    meta = legacy.meta
    if legacy.has_array:
        meta.layout = _layout(nd, legacy.patch_size)
    obj = cls.__new__(cls)
    obj._init_empty(meta)
    obj._nd = nd if legacy.has_array else None
    obj._path, obj._mode, obj._dparams = path, mmap_mode, dparams
    obj._persisted = meta.model_dump(mode="json")
    _warn(path)
    return obj


def load_legacy_array(
    cls: type[MLArray], path: str, dparams: Any, *, legacy: LegacyFile | None = None, warn: bool = True
) -> MLArray:
    """A legacy file read completely into memory (the layout of the file is kept for a later save).

    ``legacy`` is the file's already decoded header, if the caller has it (it is decoded once).
    """
    if legacy is None:
        legacy = read_legacy(path)
    obj = cls.__new__(cls)
    meta = legacy.meta
    data = None
    if legacy.has_array:
        nd = open_frame(path, "r", dparams if dparams is not None else {"nthreads": os.cpu_count() or 1})
        meta.layout = _layout(nd, legacy.patch_size)
        try:
            data = np.ascontiguousarray(nd[...])
        except MemoryError as exc:
            raise ResourceLimitError(f"not enough memory to load the legacy array ({exc})", path=path) from None
        except Exception as exc:
            raise CorruptFrameError(f"the legacy array cannot be decompressed ({exc})", path=path) from None
    obj._init_empty(meta)
    obj._np = data
    if warn:
        _warn(path)
    return obj
