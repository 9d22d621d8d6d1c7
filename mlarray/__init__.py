"""mlarray: N-dimensional arrays for machine learning, with a validated JSON header, in one Blosc2 file."""

from mlarray._version import __version__
from mlarray.api import MLArray
from mlarray.errors import (
    CorruptFrameError,
    DigestMismatchError,
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
from mlarray.versions import SCHEMA_VERSION

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
    "create",
    "empty",
    "empty_like",
    "full",
    "full_like",
    "linspace",
    "load",
    "ones",
    "ones_like",
    "open",
    "zeros",
    "zeros_like",
]
