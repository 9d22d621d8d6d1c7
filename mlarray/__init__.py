"""mlarray: N-dimensional arrays for machine learning, with a validated JSON header, in one Blosc2 file.

The names below are imported when first used (PEP 562): ``import mlarray`` itself loads
only the error classes and version numbers, so the command line's entry point can catch
an interrupt while NumPy, Blosc2 and pydantic load. ``from mlarray import MLArray`` and
``mlarray.MLArray`` work as with eager imports, and so do the submodules an eager import
loaded (``mlarray.models``, ``mlarray.storage``, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlarray._version import __version__
from mlarray.errors import (
    ConcurrentWriterWarning,
    CorruptFrameError,
    DigestMismatchError,
    DroppedMembersWarning,
    FileChangedError,
    ForbiddenMetalayerError,
    FrameMismatchError,
    HeaderEncodingError,
    HeaderNotJSONError,
    HeaderTooLargeError,
    HeaderValidationError,
    InvalidArgumentError,
    LegacyFormatError,
    LegacyFormatWarning,
    LockError,
    MissingDependencyError,
    MissingHeaderError,
    MLArrayError,
    MLArrayFileNotFoundError,
    NotAFrameError,
    NotRepresentableError,
    Problem,
    ReadOnlyError,
    RemoteChangedError,
    RemoteError,
    ResourceLimitError,
    SourceFormatError,
    TruncatedFileError,
    UnsafeLegacyFileError,
    UnsupportedVersionError,
    WriteFailedError,
    WrongExtensionError,
)
from mlarray.versions import SCHEMA_VERSION

if TYPE_CHECKING:
    from mlarray.api import MLArray
    from mlarray.layout import DEFAULT_PATCH as MLARRAY_DEFAULT_PATCH_SIZE
    from mlarray.meta import (
        AxisLabel,
        CoordSystem,
        MetaBbox,
        MetaBlosc2,
        MetaExtra,
        MetaHasArray,
        MetaImageFormat,
        MetaIsSeg,
        MetaSource,
        MetaSpatial,
        MetaStatistics,
        MetaVersion,
    )
    from mlarray.models import BBoxes, Layout, Meta, Spatial, Stats
    from mlarray.models.jsonvalues import to_json_value as to_json_value

    empty = MLArray.empty
    zeros = MLArray.zeros
    ones = MLArray.ones
    full = MLArray.full
    arange = MLArray.arange
    linspace = MLArray.linspace
    asarray = MLArray.asarray
    empty_like = MLArray.empty_like
    zeros_like = MLArray.zeros_like
    ones_like = MLArray.ones_like
    full_like = MLArray.full_like
    load = MLArray.load
    open = MLArray.open  # noqa: A001 - mirrors MLArray.open
    create = MLArray.create

_CONSTRUCTORS = (
    "empty",
    "zeros",
    "ones",
    "full",
    "arange",
    "linspace",
    "asarray",
    "empty_like",
    "zeros_like",
    "ones_like",
    "full_like",
    "load",
    "open",
    "create",
)
_LAZY: dict[str, tuple[str, str]] = {
    "MLArray": ("mlarray.api", "MLArray"),
    "MLARRAY_DEFAULT_PATCH_SIZE": ("mlarray.layout", "DEFAULT_PATCH"),
    "to_json_value": ("mlarray.models.jsonvalues", "to_json_value"),
    **{
        name: ("mlarray.meta", name)
        for name in (
            "AxisLabel",
            "CoordSystem",
            "MetaBbox",
            "MetaBlosc2",
            "MetaExtra",
            "MetaHasArray",
            "MetaImageFormat",
            "MetaIsSeg",
            "MetaSource",
            "MetaSpatial",
            "MetaStatistics",
            "MetaVersion",
        )
    },
    **{name: ("mlarray.models", name) for name in ("BBoxes", "Layout", "Meta", "Spatial", "Stats")},
}
"""Where each lazily imported name lives (the constructors are ``MLArray``'s class methods)."""
_LOADED_WITH_API = ("api", "bound", "indexing", "layout", "meta", "models", "reading", "remote", "storage", "writing")
"""Submodules an eager ``import mlarray`` made attributes of the package; they still are, once used."""


def __getattr__(name: str) -> Any:
    """Import a public name on first use (and the submodules ``import mlarray`` always loaded)."""
    if name in _CONSTRUCTORS:
        value = getattr(__getattr__("MLArray"), name)
    elif name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
    elif name in _LOADED_WITH_API:
        importlib.import_module(f"{__name__}.api")
        return importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def is_serializable(d: object) -> bool:
    """Whether ``d`` can be stored in ``meta.source`` or ``meta.extra`` (mlarray 0.0.x's check).

    True when ``d`` is valid JSON as the header requires it: finite numbers, string keys,
    dicts, lists/tuples, strings, booleans and ``None`` (NumPy scalars and arrays count as
    their values). NaN, Infinity and non-string keys, which ``json.dumps`` accepts, are not.
    """
    from mlarray.models.jsonvalues import to_json_value as to_json_value

    try:
        to_json_value(d)
    except (ValueError, TypeError):
        return False
    return True


def _run_entry_point(run: object) -> None:
    """Run a command-line entry point as a function: return on success, re-raise a failing exit."""
    try:
        run()  # type: ignore[operator]
    except SystemExit as done:
        if done.code not in (0, None):
            raise


def cli_print_header() -> None:
    """mlarray 0.0.x's ``mlarray_header FILE`` entry point: prints the header of the file named in ``sys.argv``.

    The same as ``mlarray header FILE``. The command line is imported only when called.
    """
    from mlarray.cli import legacy_header

    _run_entry_point(legacy_header)


def cli_convert_to_mlarray() -> None:
    """mlarray 0.0.x's ``mlarray_convert IN OUT`` entry point: converts the files named in ``sys.argv``.

    The same as ``mlarray convert IN OUT``. The command line is imported only when called.
    """
    from mlarray.cli import legacy_convert

    _run_entry_point(legacy_convert)


__all__ = [
    "MLARRAY_DEFAULT_PATCH_SIZE",
    "AxisLabel",
    "BBoxes",
    "CoordSystem",
    "CorruptFrameError",
    "DigestMismatchError",
    "ForbiddenMetalayerError",
    "FrameMismatchError",
    "HeaderEncodingError",
    "HeaderNotJSONError",
    "HeaderTooLargeError",
    "HeaderValidationError",
    "InvalidArgumentError",
    "Layout",
    "LegacyFormatError",
    "ConcurrentWriterWarning",
    "DroppedMembersWarning",
    "LegacyFormatWarning",
    "LockError",
    "MLArray",
    "MLArrayError",
    "MLArrayFileNotFoundError",
    "Meta",
    "MetaBbox",
    "MetaBlosc2",
    "MetaExtra",
    "MetaHasArray",
    "MetaImageFormat",
    "MetaIsSeg",
    "MetaSource",
    "MetaSpatial",
    "MetaStatistics",
    "MetaVersion",
    "MissingDependencyError",
    "MissingHeaderError",
    "NotAFrameError",
    "NotRepresentableError",
    "Problem",
    "ReadOnlyError",
    "RemoteChangedError",
    "FileChangedError",
    "RemoteError",
    "ResourceLimitError",
    "SCHEMA_VERSION",
    "SourceFormatError",
    "Spatial",
    "Stats",
    "TruncatedFileError",
    "UnsafeLegacyFileError",
    "UnsupportedVersionError",
    "WriteFailedError",
    "WrongExtensionError",
    "__version__",
    "arange",
    "asarray",
    "cli_convert_to_mlarray",
    "cli_print_header",
    "create",
    "empty",
    "empty_like",
    "full",
    "full_like",
    "is_serializable",
    "linspace",
    "load",
    "ones",
    "ones_like",
    "open",
    "zeros",
    "zeros_like",
]
