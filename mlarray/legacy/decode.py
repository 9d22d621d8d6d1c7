"""Decode the header of a file written by the earlier mlarray implementation, without running code.

The earlier implementation (PyPI ``mlarray`` 0.0.23 to 0.0.54) kept its metadata in
the Blosc2 vlmetalayer ``mlarray`` in one of two encodings:

* **0.0.23 to 0.0.48**: the metadata dict itself, which python-blosc2 packs as a msgpack
  map (tuples become lists that start with the string ``"__tuple__"``);
* **0.0.49 to 0.0.54**: ``gzip(pickle(dict))`` packed as a msgpack *bin*. From 0.0.50 the
  pickle references the writer's own read-only containers ``mlarray.meta._FrozenList``
  and ``mlarray.meta._FrozenDict``.

Unpickling runs code chosen by whoever wrote the file, so these bytes never reach
python-blosc2's vlmeta decoding or :func:`pickle.loads`. The frame is checked by our
own code first (:func:`mlarray.storage.inspect_frame`), gunzip stops at
:data:`MAX_LEGACY_BYTES`, msgpack extension types stay inert bytes, and the pickle is
read by :class:`SafeUnpickler`, which resolves only the globals of
:data:`ALLOWED_GLOBALS`, each to an inert stand-in that builds a plain ``list`` or
``dict`` from exactly one argument of that type. Nothing here imports the API.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import pickle
import zlib
from collections.abc import Callable
from typing import Any, Literal

import msgpack

from mlarray.errors import (
    HeaderEncodingError,
    HeaderTooLargeError,
    InvalidArgumentError,
    MLArrayFileNotFoundError,
    UnsafeLegacyFileError,
)
from mlarray.storage import FrameInfo, inspect_frame

MAX_LEGACY_BYTES = 64 * 1024 * 1024
"""Largest decompressed legacy header accepted (a gzip bomb stops here)."""

MAX_NESTING = 64
"""Deepest container nesting accepted in a msgpack legacy header."""

GZIP_MAGIC = b"\x1f\x8b"
PICKLE_PROTO = b"\x80"
TUPLE_MARKER = "__tuple__"

MSGPACK_SIGNATURE = ("_has_array", "_mlarray_version")
"""Keys every header of 0.0.23-0.0.48 has; a msgpack map without them is not a legacy header."""

Encoding = Literal["msgpack", "gzip-pickle", "pickle"]


class _Inert:
    """Stand-in for an allow-listed global: called with one ``list``/``dict``, returns a plain copy.

    Instances hold no state that a pickle could change (``__slots__ = ()``, no
    ``__setattr__``), are not types (so ``NEWOBJ`` refuses them) and have no
    ``__setstate__`` (so ``BUILD`` on them fails).
    """

    __slots__ = ()
    builds: type[list[Any]] | type[dict[Any, Any]] = list
    qualname = ""

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafeLegacyFileError(f"the legacy header tried to set {name!r} on {self.qualname}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != 1 or type(args[0]) is not self.builds:
            raise UnsafeLegacyFileError(
                f"the legacy header calls {self.qualname} with arguments the earlier implementation never wrote "
                f"(expected one {self.builds.__name__})"
            )
        return self.builds(args[0])

    def __reduce__(self) -> Any:
        raise TypeError("an inert legacy stand-in cannot be pickled")


class _InertList(_Inert):
    __slots__ = ()
    builds = list
    qualname = "mlarray.meta._FrozenList"


class _InertDict(_Inert):
    __slots__ = ()
    builds = dict
    qualname = "mlarray.meta._FrozenDict"


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("mlarray.meta", "_FrozenList"): _InertList(),
    ("mlarray.meta", "_FrozenDict"): _InertDict(),
}
"""The only globals a legacy pickle may name: the read-only containers of mlarray 0.0.50 to 0.0.54.

Each pickles as ``(cls, (plain_list_or_dict,))`` and is rebuilt as the plain container.
"""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`, each to an inert stand-in.

    Every other global is refused, so no callable of the running program can be
    reached: besides the two stand-ins, a pickle can only build ``dict``, ``list``,
    ``tuple``, ``set``, ``frozenset``, ``str``, ``bytes``, ``bytearray``, numbers,
    booleans and ``None``.
    """

    def find_class(self, module: str, name: str) -> Any:
        stand_in = ALLOWED_GLOBALS.get((module, name))
        if stand_in is None:
            raise UnsafeLegacyFileError(
                f"the legacy header references the Python global {module}.{name}; refusing to load it "
                "(only plain containers, strings, numbers and the earlier mlarray's own list/dict types are accepted)"
            )
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeLegacyFileError("the legacy header uses a pickle persistent id; refusing to load it")


def safe_unpickle(data: bytes, *, path: str | None = None) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`.

    Raises
    ------
    UnsafeLegacyFileError
        The pickle references a global outside the allow-list, misuses an allowed one,
        or uses a persistent id.
    HeaderEncodingError
        The bytes are not a well-formed pickle.
    """
    try:
        value = SafeUnpickler(io.BytesIO(data)).load()
    except UnsafeLegacyFileError as exc:
        raise UnsafeLegacyFileError(exc.message, path=path) from None
    except RecursionError:
        raise HeaderEncodingError("the legacy header pickle is nested too deeply", path=path) from None
    except Exception as exc:  # pickle raises many exception types on malformed input
        raise HeaderEncodingError(
            f"the legacy header is not a valid pickle ({type(exc).__name__}: {exc})", path=path
        ) from None
    if _contains_stand_in(value):
        raise UnsafeLegacyFileError("the legacy header holds an allow-listed global itself, not its result", path=path)
    return value


def _contains_stand_in(value: Any) -> bool:
    """Whether a stand-in escaped into the result (as a value, key or item), at any depth (iterative)."""
    pending = [value]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if isinstance(item, _Inert):
            return True
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)
    return False


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


def _inert_ext(code: int, data: bytes) -> dict[str, Any]:
    """A msgpack extension value kept as inert data (python-blosc2 would rebuild objects from it)."""
    return {"msgpack_ext": code, "base64": base64.b64encode(data).decode("ascii")}


def _untuple(value: Any, depth: int, path: str | None) -> Any:
    """python-blosc2's ``["__tuple__", ...]`` lists back to tuples; refuses nesting beyond :data:`MAX_NESTING`."""
    if depth > MAX_NESTING:
        raise HeaderEncodingError(f"the legacy header nests deeper than {MAX_NESTING} levels", path=path)
    if isinstance(value, list):
        items = [_untuple(v, depth + 1, path) for v in value]
        if items and items[0] == TUPLE_MARKER:
            return tuple(items[1:])
        return items
    if isinstance(value, dict):
        return {_untuple(k, depth + 1, path): _untuple(v, depth + 1, path) for k, v in value.items()}
    return value


def _unpack_msgpack(raw: bytes, path: str | None) -> Any:
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            ext_hook=_inert_ext,
            max_bin_len=MAX_LEGACY_BYTES,
            max_str_len=MAX_LEGACY_BYTES,
            use_list=True,
        )
    except Exception:
        return None


def decode_legacy_bytes(raw: bytes, *, path: str | None = None) -> tuple[dict[Any, Any], Encoding]:
    """The metadata dict held by the raw ``mlarray`` vlmetalayer content, and how it was encoded.

    Accepts a msgpack map (0.0.23-0.0.48), msgpack bin holding gzip(pickle) (0.0.49-0.0.54),
    and for robustness bare gzip or pickle bytes.

    Raises
    ------
    InvalidArgumentError
        The content is JSON text: a current ``.mla`` header, not a legacy one.
    UnsafeLegacyFileError
        The pickle names a global outside :data:`ALLOWED_GLOBALS`.
    HeaderEncodingError, HeaderTooLargeError
        Anything else is malformed.
    """
    payload: Any = raw
    encoding: Encoding = "pickle"
    if raw[:2] != GZIP_MAGIC and raw[:1] != PICKLE_PROTO:
        value = _unpack_msgpack(raw, path)
        if isinstance(value, str):
            if value.lstrip()[:1] == "{":
                raise InvalidArgumentError(
                    "the header is JSON text: this is already a current .mla file, not a legacy one "
                    "(check it with `mlarray validate`)",
                    path=path,
                )
            raise HeaderEncodingError("the legacy header is a msgpack string, not a metadata map", path=path)
        if isinstance(value, dict):
            if not any(key in value for key in MSGPACK_SIGNATURE):
                raise HeaderEncodingError(
                    "the header is a msgpack map without the keys of an earlier mlarray header "
                    f"({', '.join(MSGPACK_SIGNATURE)}); it is neither a current nor a legacy .mla header",
                    path=path,
                )
            return _untuple(value, 0, path), "msgpack"
        if not isinstance(value, bytes):
            kind = "malformed msgpack" if value is None else f"a msgpack {type(value).__name__}"
            raise HeaderEncodingError(f"the legacy header is {kind}, not a map or bytes", path=path)
        payload = value
    if payload[:2] == GZIP_MAGIC:
        payload = gunzip_capped(payload, path=path)
        encoding = "gzip-pickle"
    if payload.lstrip()[:1] == b"{":
        raise InvalidArgumentError(
            "the header is JSON text: this is already a current .mla file, not a legacy one "
            "(check it with `mlarray validate`)",
            path=path,
        )
    value = safe_unpickle(payload, path=path)
    if not isinstance(value, dict):
        raise HeaderEncodingError(f"the legacy header is a {type(value).__name__}, not a dict", path=path)
    return value, encoding


def looks_legacy(raw: bytes) -> bool:
    """Whether raw header bytes are in one of the earlier implementation's encodings (cheap, no decoding)."""
    if raw[:2] == GZIP_MAGIC or raw[:1] == PICKLE_PROTO:
        return True
    first = raw[:1]
    if not first:
        return False
    b = first[0]
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):  # msgpack map
        return True
    if b in (0xC4, 0xC5, 0xC6):  # msgpack bin: gzip or pickle inside
        size = {0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        inner = raw[1 + size : 3 + size]
        return inner[:2] == GZIP_MAGIC or inner[:1] == PICKLE_PROTO
    return False


def read_legacy_frame(path: str | os.PathLike[str]) -> tuple[dict[Any, Any], Encoding, FrameInfo]:
    """Check the frame of ``path`` and decode its legacy metadata dict without running any code."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise MLArrayFileNotFoundError("no such file", path=p)
    frame = inspect_frame(p)
    value, encoding = decode_legacy_bytes(frame.header_bytes, path=p)
    return value, encoding, frame


def read_legacy_header(path: str | os.PathLike[str]) -> dict[Any, Any]:
    """Read the metadata dict of a legacy file without running any code from it.

    Raises
    ------
    UnsafeLegacyFileError
        The pickle references a Python global outside the allow-list: it could run code.
    MLArrayError
        Any other problem (not a frame, forbidden metalayer, no header, bad gzip ...).
    """
    return read_legacy_frame(path)[0]
