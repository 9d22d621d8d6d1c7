"""Files as the earlier implementation wrote them (pickled headers), for the legacy and CLI tests."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Any

import blosc2
import numpy as np


def write_legacy(path: Path, array: np.ndarray, header: Any, *, raw: bytes | None = None, **kwargs: Any) -> Path:
    """A file as the earlier implementation wrote it: vlmeta 'mlarray' = gzip(pickle(dict))."""
    nd = blosc2.asarray(array, urlpath=str(path), mode="w", **kwargs)
    if raw is not None:
        nd.schunk.vlmeta.set_vlmeta("mlarray", raw, typesize=1)  # bytes exactly as given, no msgpack wrapper
    else:
        nd.schunk.vlmeta["mlarray"] = gzip.compress(pickle.dumps(header))  # python-blosc2 wraps it in msgpack bin
    del nd
    return path


class RunsShell:
    """Pickles to a call of os.system: unpickling it with pickle.loads runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> Any:
        return (os.system, (self.command,))
