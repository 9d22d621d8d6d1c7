"""Files of the earlier mlarray implementation (0.0.23 to 0.0.54): read them safely, and migrate them.

* :mod:`~mlarray.legacy.decode`: the raw header bytes to a plain dict, without running code;
* :mod:`~mlarray.legacy.mapping`: that dict onto the current :class:`~mlarray.models.Meta`;
* :mod:`~mlarray.legacy.reader`: read-only :class:`~mlarray.MLArray` access (``MLArray(path)``, ``open``);
* :mod:`~mlarray.legacy.migrate`: one file or a whole dataset to the current format.
"""

from mlarray.legacy.decode import (
    ALLOWED_GLOBALS,
    MAX_LEGACY_BYTES,
    SafeUnpickler,
    decode_legacy_bytes,
    gunzip_capped,
    read_legacy_header,
    safe_unpickle,
)
from mlarray.legacy.mapping import LegacyMapping, map_legacy, to_json
from mlarray.legacy.migrate import MigrationReport, MigrationResult, load_legacy, migrate_file, migrate_tree
from mlarray.legacy.reader import LegacyFile, is_legacy_file, read_legacy

__all__ = [
    "ALLOWED_GLOBALS",
    "MAX_LEGACY_BYTES",
    "LegacyFile",
    "LegacyMapping",
    "MigrationReport",
    "MigrationResult",
    "SafeUnpickler",
    "decode_legacy_bytes",
    "gunzip_capped",
    "is_legacy_file",
    "load_legacy",
    "map_legacy",
    "migrate_file",
    "migrate_tree",
    "read_legacy",
    "read_legacy_header",
    "safe_unpickle",
    "to_json",
]
