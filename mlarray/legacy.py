"""Read files written by the earlier mlarray implementation, safely, and migrate them.

The earlier implementation stored its metadata as a gzip-compressed *pickle* of a
plain dict in the Blosc2 vlmetalayer ``mlarray``. Unpickling runs code chosen by
whoever wrote the file, so this module never hands those bytes to python-blosc2's
vlmeta decoding or to :func:`pickle.loads`:

* the frame is inspected with our own code first (:func:`mlarray.storage.inspect_frame`),
  which also refuses metalayers that make blosc2 open other objects;
* the raw metalayer bytes are unwrapped by hand (a msgpack bin/str, or bare gzip);
* gunzip stops at :data:`MAX_LEGACY_BYTES`;
* the pickle is read by :class:`SafeUnpickler`, which refuses *every* global, so
  only plain containers, strings, bytes and numbers can come out of it.

The recognised keys are mapped onto :class:`~mlarray.models.Meta`; everything else
is kept as JSON under ``meta.extra["legacy"]``. Nothing here knows about the CLI.
"""

from __future__ import annotations

import base64
import gzip
import io
import math
import os
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from mlarray.api import MLArray
from mlarray.errors import (
    CorruptFrameError,
    HeaderEncodingError,
    HeaderTooLargeError,
    InvalidArgumentError,
    MLArrayError,
    MLArrayFileNotFoundError,
    UnsafeLegacyFileError,
)
from mlarray.layout import PatchSize
from mlarray.models import Meta, Stats
from mlarray.storage import inspect_frame, open_frame

MAX_LEGACY_BYTES = 64 * 1024 * 1024
"""Largest decompressed legacy header accepted (a gzip bomb stops here)."""

GZIP_MAGIC = b"\x1f\x8b"
SPATIAL_KEYS = ("spacing", "origin", "direction", "affine", "axis_labels", "axis_units", "coord_system", "shape")
SOURCE_KEYS = ("source", "meta", "header")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so no callable can be reached.

    Without globals a pickle can only build ``dict``, ``list``, ``tuple``, ``set``,
    ``frozenset``, ``str``, ``bytes``, ``bytearray``, numbers, booleans and ``None``:
    the opcodes that call something (``REDUCE``, ``BUILD``, ``NEWOBJ``, ``INST``,
    ``OBJ``, ``EXT*``) all need a global first.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeLegacyFileError(
            f"the legacy header references the Python global {module}.{name}; refusing to load it "
            "(only plain dicts, lists, strings and numbers are accepted)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeLegacyFileError("the legacy header uses a pickle persistent id; refusing to load it")


def safe_unpickle(data: bytes, *, path: str | None = None) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`.

    Raises
    ------
    UnsafeLegacyFileError
        The pickle references a global (a class or function) or a persistent id.
    HeaderEncodingError
        The bytes are not a well-formed pickle.
    """
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except UnsafeLegacyFileError as exc:
        raise UnsafeLegacyFileError(exc.message, path=path) from None
    except RecursionError:
        raise HeaderEncodingError("the legacy header pickle is nested too deeply", path=path) from None
    except Exception as exc:  # pickle raises many exception types on malformed input
        raise HeaderEncodingError(
            f"the legacy header is not a valid pickle ({type(exc).__name__}: {exc})", path=path
        ) from None


def gunzip_capped(data: bytes, *, limit: int = MAX_LEGACY_BYTES, path: str | None = None) -> bytes:
    """Decompress gzip ``data``, refusing output larger than ``limit`` bytes."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise HeaderEncodingError(f"the legacy header is not valid gzip ({exc})", path=path) from None
    if len(out) > limit:
        raise HeaderTooLargeError(f"the legacy header decompresses to more than {limit} bytes", path=path)
    return out


def _unwrap(raw: bytes, path: str) -> bytes:
    """The pickle bytes inside the raw vlmetalayer content.

    python-blosc2 stored the gzip bytes as a msgpack *bin* (``vlmeta[key] = data``);
    bare gzip or pickle bytes (written with ``set_vlmeta``) are accepted too.
    """
    payload = raw
    if raw[:2] != GZIP_MAGIC and raw[:1] != b"\x80":
        try:
            value = msgpack.unpackb(raw, raw=True)  # no ext_hook: extension types stay inert
        except Exception:
            value = raw  # not msgpack: maybe a bare protocol-0 pickle; the unpickler decides
        if not isinstance(value, bytes):
            raise HeaderEncodingError(f"the legacy header holds a msgpack {type(value).__name__}, not bytes", path=path)
        payload = value
    if payload.lstrip()[:1] == b"{":
        raise InvalidArgumentError(
            "the header is JSON text: this is already a current .mla file, not a legacy one "
            "(check it with `mlarray validate`)",
            path=path,
        )
    if payload[:2] == GZIP_MAGIC:
        payload = gunzip_capped(payload, path=path)
    return payload


def read_legacy_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the metadata dict of a legacy file without running any code from it.

    Raises
    ------
    UnsafeLegacyFileError
        The pickle references a Python global: it could run code, so it is refused.
    MLArrayError
        Any other problem (not a frame, forbidden metalayer, no header, bad gzip ...).
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise MLArrayFileNotFoundError("no such file", path=p)
    frame = inspect_frame(p)
    value = safe_unpickle(_unwrap(frame.header_bytes, p), path=p)
    if not isinstance(value, dict):
        raise HeaderEncodingError(f"the legacy header is a {type(value).__name__}, not a dict", path=p)
    return value


# --------------------------------------------------------------------------- mapping


@dataclass
class LegacyMapping:
    """The result of mapping a legacy metadata dict onto the current header."""

    meta: Meta
    mapped: list[str] = field(default_factory=list)
    """Legacy keys that became header fields."""
    kept: list[str] = field(default_factory=list)
    """Legacy keys stored under ``meta.extra["legacy"]``."""
    dropped: list[str] = field(default_factory=list)
    """Locations of values JSON cannot represent (NaN, Infinity); they are left out."""


_DROP: Any = object()
"""Marks a value :func:`to_json` left out."""


def to_json(value: Any, loc: str, dropped: list[str]) -> Any:
    """``value`` as plain JSON; values JSON cannot hold are left out and their location recorded.

    Tuples and sets become lists, non-string keys strings, UTF-8 bytes strings and
    other bytes ``{"base64": ...}``. The sentinel ``_DROP`` is returned for a value
    that was left out.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        dropped.append(loc)
        return _DROP
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            converted = to_json(item, f"{loc}.{name}", dropped)
            if converted is not _DROP:
                out[name] = converted
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if isinstance(value, (set, frozenset)):
            items = sorted(items, key=repr)
        converted_items = [to_json(v, f"{loc}[{i}]", dropped) for i, v in enumerate(items)]
        return [v for v in converted_items if v is not _DROP]
    dropped.append(loc)  # unreachable for SafeUnpickler output, kept for callers passing other dicts
    return _DROP


def _accepts(candidate: dict[str, Any], shape: tuple[int, ...] | None) -> bool:
    """Whether ``candidate`` is a valid header (for an array of ``shape``, when given)."""
    try:
        meta = Meta.model_validate(candidate)
        if shape is not None:
            # A zero-byte stand-in: the header rules depend on the shape only.
            MLArray(np.broadcast_to(np.zeros((), dtype=np.uint8), shape), meta=meta, patch_size=None)
    except (MLArrayError, ValueError):
        return False
    return True


def _normalise_direction(value: Any) -> Any:
    """A flat ``n*n`` direction (SimpleITK style, row-major) becomes an ``n x n`` matrix."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        n = math.isqrt(len(value))
        if n * n == len(value):
            return [list(value[i * n : (i + 1) * n]) for i in range(n)]
    return value


def _bbox_candidates(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        # Either a list of boxes, or a single box [[min, max], ...].
        return [{"bboxes": value}, {"bboxes": [value]}]
    return []


def map_legacy(raw: dict[str, Any], shape: tuple[int, ...] | None = None) -> LegacyMapping:
    """Map a legacy metadata dict onto a :class:`Meta` for an array of ``shape``.

    Each recognised key is taken only if the header stays valid with it; otherwise
    it is kept under ``extra["legacy"]`` like every unrecognised key.
    """
    dropped: list[str] = []
    data = {str(k): to_json(v, str(k), dropped) for k, v in raw.items()}
    data = {k: v for k, v in data.items() if v is not _DROP}
    result = LegacyMapping(meta=Meta())
    candidate: dict[str, Any] = {"spatial": {}, "source": {}, "extra": {}}
    legacy: dict[str, Any] = {}

    def attempt(key: str, update: Any) -> bool:
        trial = _deep_copy(candidate)
        update(trial)
        if _accepts(trial, shape):
            candidate.clear()
            candidate.update(trial)
            result.mapped.append(key)
            return True
        return False

    nested_spatial = data.pop("spatial", None)
    spatial_items: list[tuple[str, str, Any]] = []
    if isinstance(nested_spatial, dict):
        spatial_items += [(f"spatial.{k}", k, v) for k, v in nested_spatial.items()]
    elif nested_spatial is not None:
        legacy["spatial"] = nested_spatial
    spatial_items += [(k, k, data.pop(k)) for k in SPATIAL_KEYS if k in data]
    for label, name, value in spatial_items:
        if name == "direction":
            value = _normalise_direction(value)
        if name not in SPATIAL_KEYS or not attempt(label, lambda t, n=name, v=value: t["spatial"].__setitem__(n, v)):
            legacy[label] = value

    for key in SOURCE_KEYS:
        if key in data and isinstance(data[key], dict) and not candidate["source"]:
            value = data.pop(key)
            if not attempt(key, lambda t, v=value: t.__setitem__("source", v)):
                legacy[key] = value
    if isinstance(data.get("extra"), dict):
        value = data.pop("extra")
        if not attempt("extra", lambda t, v=value: t["extra"].update(v)):
            legacy["extra"] = value
    if isinstance(data.get("is_seg"), (bool, int)) and data["is_seg"] in (0, 1):
        value = bool(data.pop("is_seg"))
        if not attempt("is_seg", lambda t, v=value: t.__setitem__("is_seg", v)):
            legacy["is_seg"] = value
    if "stats" in data:
        value = data.pop("stats")
        known = {k: v for k, v in value.items() if k in Stats.model_fields} if isinstance(value, dict) else {}
        if known and attempt("stats", lambda t, v=known: t.__setitem__("stats", v)):
            rest = {k: v for k, v in value.items() if k not in known}
            if rest:
                legacy["stats"] = rest
        else:
            legacy["stats"] = value
    for key in ("bbox", "bboxes"):
        if key in data and "bbox" not in candidate:
            value = data.pop(key)
            if not any(attempt(key, lambda t, c=c: t.__setitem__("bbox", c)) for c in _bbox_candidates(value)):
                legacy[key] = value
    legacy.update(data)
    if legacy:
        candidate["extra"] = {**candidate["extra"], "legacy": legacy}
    result.kept = sorted(legacy)
    result.dropped = dropped
    result.meta = Meta.model_validate(candidate)
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------- migration


def load_legacy(path: str | os.PathLike[str]) -> tuple[MLArray, LegacyMapping]:
    """Load a legacy file into memory as an :class:`MLArray` with the mapped metadata."""
    p = os.fspath(path)
    raw = read_legacy_header(p)
    nd = open_frame(p, "r", {"nthreads": 1})
    try:
        array = np.asarray(nd[...])
    except Exception as exc:
        raise CorruptFrameError(f"the legacy array cannot be decompressed ({exc})", path=p) from None
    mapping = map_legacy(raw, array.shape)
    return MLArray(array, meta=mapping.meta), mapping


def migrate_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    patch_size: PatchSize = "default",
    cparams: Any = None,
) -> LegacyMapping:
    """Read the legacy file ``src`` safely and write it as a current ``.mla`` file ``dst``.

    The array is laid out anew (``patch_size``, ``cparams`` as in :class:`MLArray`);
    ``dst`` is written atomically.

    Raises
    ------
    UnsafeLegacyFileError
        The legacy header would have loaded a Python global; nothing is written.
    MLArrayError
        The file cannot be read or the result cannot be written.
    """
    image, mapping = load_legacy(src)
    out = MLArray(image.to_numpy(), meta=image.meta, patch_size=patch_size, cparams=cparams)
    out.save(dst)
    return mapping
