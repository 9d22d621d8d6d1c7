"""The exception hierarchy of mlarray.

Every error raised for bad input derives from :class:`MLArrayError` and carries a
stable ``code``: the same codes appear in the specification (``spec/mlarray.md``),
in ``mlarray validate`` output and in the conformance suite. Each class also
inherits the builtin exception users would naturally catch (``FileNotFoundError``,
``ValueError``, ``PermissionError`` ...), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is, a closed code, and a readable message."""

    loc: str
    code: str
    message: str

    def __str__(self) -> str:
        where = self.loc or "<header>"
        return f"{where}: {self.message} [{self.code}]"


class MLArrayError(Exception):
    """Root of every mlarray error. ``code`` is stable and listed in the spec."""

    code = "MLARRAY_ERROR"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        full = f"{path}: {message}" if path else message
        super().__init__(full)
        self.message = full

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle every attribute without running ``__init__`` again (errors cross process boundaries)."""
        state = dict(vars(self))
        for attr in ("path", "name"):  # ImportError keeps these outside __dict__
            if hasattr(self, attr):
                state.setdefault(attr, getattr(self, attr))
        return (_unpickle_error, (type(self), self.args, state))


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python


def _unpickle_error(cls: type[MLArrayError], args: tuple[Any, ...], state: dict[str, Any]) -> MLArrayError:
    base: type = cls
    while base.__flags__ & _HEAPTYPE:  # the builtin whose __new__ Python allows here (as ``cls(...)`` uses)
        base = base.__base__ or Exception
    error: MLArrayError = base.__new__(cls)  # type: ignore[call-overload]
    error.args = args
    for key, value in state.items():
        setattr(error, key, value)
    return error


class WrongExtensionError(MLArrayError, ValueError, RuntimeError):
    """The path does not end in ``.mla``.

    Also a ``RuntimeError``, which mlarray 0.0.x raised here."""

    code = "WRONG_EXTENSION"


class MLArrayFileNotFoundError(MLArrayError, FileNotFoundError, RuntimeError):
    """The file does not exist.

    Also a ``RuntimeError``, which mlarray 0.0.x raised here."""

    code = "FILE_NOT_FOUND"


class NotAFrameError(MLArrayError, ValueError):
    """The file is not a Blosc2 contiguous frame."""

    code = "NOT_A_FRAME"


class TruncatedFileError(MLArrayError, ValueError):
    """The file ends before the frame it declares does (bytes after a complete frame are ``CorruptFrameError``)."""

    code = "TRUNCATED_FILE"


class CorruptFrameError(MLArrayError, ValueError):
    """The frame's structure, chunk index or chunk data cannot be decoded, or bytes follow the frame."""

    code = "CORRUPT_FRAME"


class ForbiddenMetalayerError(MLArrayError, ValueError):
    """The frame carries a metalayer outside the allowed set (e.g. blosc2's ``b2o``)."""

    code = "FORBIDDEN_METALAYER"


class MissingHeaderError(MLArrayError, ValueError):
    """The frame has no ``mlarray`` header."""

    code = "MISSING_HEADER"


class HeaderEncodingError(MLArrayError, ValueError):
    """The header is not a msgpack string holding UTF-8 text (e.g. pickle, msgpack extension)."""

    code = "HEADER_ENCODING"


class HeaderNotJSONError(MLArrayError, ValueError):
    """The header text is not a JSON object (or contains NaN/Infinity)."""

    code = "HEADER_NOT_JSON"


class HeaderTooLargeError(MLArrayError, ValueError):
    """The header exceeds :data:`mlarray.versions.MAX_HEADER_BYTES`."""

    code = "HEADER_TOO_LARGE"


class UnsupportedVersionError(MLArrayError, ValueError):
    """The header declares a schema major version this reader does not implement."""

    code = "UNSUPPORTED_VERSION"


class HeaderValidationError(MLArrayError, ValueError):
    """The header violates the schema or the semantic rules; ``problems`` lists all of them.

    Building or editing a model raises the subclass ``HeaderTypeError`` (also a ``TypeError``)
    when a value has the wrong type or a member is unknown or missing, and ``from_mapping``
    raises ``HeaderKeyError`` (also a ``KeyError``) for unknown keys, as mlarray 0.0.x did."""

    code = "HEADER_INVALID"

    def __init__(self, problems: list[Problem], *, path: str | None = None) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"invalid header ({n} problem{'s' if n != 1 else ''}):\n{lines}", path=path)


TYPE_PROBLEMS = frozenset({"wrong_type", "unknown_field", "missing_field"})
"""Problem kinds that Python (and mlarray 0.0.x) report as a ``TypeError`` when a model is built."""


class HeaderTypeError(HeaderValidationError, TypeError):
    """A model was built or edited with a value of the wrong type, or an unknown or missing member.

    Same code and ``problems`` as :class:`HeaderValidationError`; also a ``TypeError``, which
    mlarray 0.0.x raised here (``Meta(foo=1)``, ``stats.min = "x"``)."""


class HeaderKeyError(HeaderTypeError, KeyError):
    """``from_mapping`` was given keys the model does not define (also a ``KeyError``, as in mlarray 0.0.x)."""

    def __str__(self) -> str:
        return self.message  # KeyError would print the message quoted, on one line


def model_error(problems: list[Problem], *, unknown_is_key_error: bool = False) -> HeaderValidationError:
    """The error for ``problems`` found while building or editing a model in Python.

    :class:`HeaderTypeError` when any problem is one of :data:`TYPE_PROBLEMS` (with
    ``unknown_is_key_error``, :class:`HeaderKeyError` when one is an unknown member), else
    :class:`HeaderValidationError`. Headers read from files always raise the base class.
    """
    kinds = {p.code for p in problems}
    if unknown_is_key_error and "unknown_field" in kinds:
        return HeaderKeyError(problems)
    if kinds & TYPE_PROBLEMS:
        return HeaderTypeError(problems)
    return HeaderValidationError(problems)


class FrameMismatchError(MLArrayError, ValueError):
    """The header's shape, dtype or layout disagrees with the Blosc2 frame."""

    code = "FRAME_MISMATCH"


class DigestMismatchError(MLArrayError, ValueError):
    """The frame's data section does not match the digest recorded in the header."""

    code = "DIGEST_MISMATCH"


class ReadOnlyError(MLArrayError, PermissionError, ValueError):
    """A write was attempted on an array opened read-only (or a read-only file).

    Also a ``ValueError``, which mlarray 0.0.x (and NumPy, for read-only arrays) raised here."""

    code = "READ_ONLY"


class InvalidArgumentError(MLArrayError, ValueError, RuntimeError):
    """An argument to the API is invalid (wrong shape, dtype, mode, ...).

    Also a ``RuntimeError``, which mlarray 0.0.x raised for bad modes and conflicting arguments."""

    code = "INVALID_ARGUMENT"


class UnsafeLegacyFileError(MLArrayError, ValueError):
    """A legacy (pickle) header tried to load a Python global; it was refused."""

    code = "UNSAFE_LEGACY"


class LegacyFormatError(MLArrayError, ValueError):
    """The file was written by the earlier (pickle-header) implementation and the request needs a current file.

    Legacy files can be read (``MLArray(path)``, ``MLArray.load``, ``MLArray.open(path, "r")``);
    writing to them needs ``mlarray migrate`` first.
    """

    code = "LEGACY_FORMAT"


class LegacyFormatWarning(UserWarning):
    """A file of the earlier (pickle-header) implementation was read; ``mlarray migrate`` converts it."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised by the caller at the first frame outside mlarray."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "mlarray":
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


class DroppedMembersWarning(UserWarning):
    """A header of a newer minor schema version is written again: the members this version does not know are dropped.

    A reader ignores such members (spec 2.2); a writer cannot vouch for them, so it writes its
    own version without them (spec 2.3). Upgrade mlarray to keep them.
    """


class ConcurrentWriterWarning(UserWarning):
    """A file was opened for reading while another process holds it open for writing in place (``'r+'``).

    Reads while that process writes may return values that are neither the old nor the new ones.
    """


class WriteFailedError(MLArrayError, OSError):
    """Writing failed (disk full, I/O error); the previous file, if any, is untouched."""

    code = "WRITE_FAILED"


class ResourceLimitError(MLArrayError, MemoryError):
    """The request or the file declares more memory or chunks than the limits allow."""

    code = "RESOURCE_LIMIT"


class LockError(MLArrayError, BlockingIOError):
    """Another process holds the write lock of this file."""

    code = "LOCKED"


class MissingDependencyError(MLArrayError, ModuleNotFoundError):
    """An optional dependency is not installed (NIfTI/NRRD conversion needs the ``convert`` extra)."""

    code = "MISSING_DEPENDENCY"

    def __init__(self, message: str, *, module: str, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.path = path  # ImportError.__init__ resets it
        self.name = module


class SourceFormatError(MLArrayError, ValueError):
    """A file to convert (NIfTI, NRRD) cannot be read: damaged, or a variant the reader does not support."""

    code = "INVALID_SOURCE"


class NotRepresentableError(MLArrayError, ValueError):
    """A conversion would lose information: the target format cannot represent part of the image."""

    code = "NOT_REPRESENTABLE"


class RemoteError(MLArrayError, OSError):
    """Reading a remote file failed: the server erred, or answered with other bytes than asked for.

    Wrong lengths, a missing or wrong ``Content-Range``, a truncated body, HTTP 5xx and
    broken connections all raise this; no byte of such an answer is used."""

    code = "REMOTE_READ"


class RemoteChangedError(RemoteError):
    """A remote file changed (size, ETag) between two requests of one reader; open it again."""

    code = "REMOTE_CHANGED"


class FileChangedError(MLArrayError, OSError):
    """A local file was replaced or written since a reader took its view of it; open it again.

    Reads never mix two versions of a file: a task of a graph made from one version, or a
    handle that must reopen a file another program has replaced, raises this instead."""

    code = "FILE_CHANGED"


ALL_ERRORS: tuple[type[MLArrayError], ...] = (
    MLArrayError,
    WrongExtensionError,
    MLArrayFileNotFoundError,
    NotAFrameError,
    TruncatedFileError,
    CorruptFrameError,
    ForbiddenMetalayerError,
    MissingHeaderError,
    HeaderEncodingError,
    HeaderNotJSONError,
    HeaderTooLargeError,
    UnsupportedVersionError,
    HeaderValidationError,
    FrameMismatchError,
    DigestMismatchError,
    ReadOnlyError,
    InvalidArgumentError,
    UnsafeLegacyFileError,
    LegacyFormatError,
    ResourceLimitError,
    WriteFailedError,
    LockError,
    MissingDependencyError,
    SourceFormatError,
    NotRepresentableError,
    RemoteError,
    RemoteChangedError,
    FileChangedError,
)
"""Every error class; their ``code`` values are the closed list of the spec."""

ERROR_CODES: frozenset[str] = frozenset(cls.code for cls in ALL_ERRORS)
