"""Package version. The header schema version lives in :mod:`mlarray.versions`."""

__version__ = "0.1.0"
