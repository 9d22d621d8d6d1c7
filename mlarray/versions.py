"""Schema version constants, kept apart from the package version.

The package version (:data:`mlarray.__version__`) changes with every release of
the Python code. The schema version changes only when the on-disk header
format changes, following the MAJOR.MINOR policy of ``spec/mlarray.md``.
"""

from __future__ import annotations

SCHEMA_VERSION = "1.1"
"""The header schema version this implementation writes."""

SUPPORTED_MAJOR = 1
"""Readers refuse a header whose major version differs from this one."""

HEADER_KEY = "mlarray"
"""Name of the Blosc2 variable-length metalayer that holds the header."""

ALLOWED_METALAYERS = frozenset({"b2nd"})
"""Fixed-length metalayers a valid file may carry (nothing that makes blosc2 open other objects)."""

MAX_CHUNKS = 1 << 24
"""Most chunks a frame may declare (a 1 TB array with 64 KiB chunks); bounds the chunk index a reader loads."""

MAX_CHUNK_BYTES = (1 << 31) - 1
"""Blosc2's own limit on the uncompressed size of one chunk."""

MAX_NESTING = 64
"""Deepest nesting of arrays/objects in a header (the header object is level 1)."""

MAX_HEADER_BYTES = 16 * 1024 * 1024
"""Largest header (encoded) a reader accepts: hostile files cannot exhaust memory through it."""


def parse_version(version: str) -> tuple[int, int]:
    """Split ``"MAJOR.MINOR"`` into integers; raise ``ValueError`` if malformed."""
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"schema_version must look like 'MAJOR.MINOR', got {version!r}")
    return int(parts[0]), int(parts[1])
