"""The conformance protocol implemented with the mlarray package (the reference reader).

Usage: ``python python_reader.py FILE PROBES_JSON``. Prints one JSON object on stdout and
exits 0 (see ``conformance/README.md``). Every check of the spec's reader algorithm is done
by :func:`mlarray.storage.read_header`; this script adds the deep steps (digest, data)
and the hashes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np

from mlarray import MLArray
from mlarray.errors import CorruptFrameError, MLArrayError
from mlarray.storage import decode_header, read_header, verify_digest
from mlarray.storage.chunks import DataSection


def array_bytes(array: Any) -> bytes:
    """C-order little-endian bytes of ``array`` (bool one byte 0/1, complex real then imaginary)."""
    a = np.asarray(array)
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(a).tobytes()


def sha256(array: Any) -> str:
    return hashlib.sha256(array_bytes(array)).hexdigest()


def read(path: str, probes: list[list[list[int]]]) -> dict[str, Any]:
    """The protocol's answer for one file."""
    try:
        head = read_header(path)
        header = decode_header(head.frame.header_bytes, path=path)
        DataSection(path, head.frame).check_all()  # spec 8, step 10, before any codec sees a chunk
        if head.meta.array is None:
            verify_digest(path, head.meta)  # step 12
            return {
                "valid": True,
                "error": None,
                "header": header,
                "shape": None,
                "dtype": None,
                "sha256": None,
                "probes": [],
            }
        with MLArray.open(path, mmap_mode="r") as image:
            try:
                whole = np.asarray(image[...])
                parts = [np.asarray(image[tuple(slice(a, b) for a, b in probe)]) for probe in probes]
            except MLArrayError:
                raise
            except Exception as exc:  # blosc2 reports broken chunks with its own exception types
                raise CorruptFrameError(f"the array data cannot be decompressed ({exc})", path=path) from None
            verify_digest(path, head.meta)  # step 12: after the data were checked and decompressed
            return {
                "valid": True,
                "error": None,
                "header": header,
                "shape": list(whole.shape),
                "dtype": head.meta.array.dtype,
                "sha256": sha256(whole),
                "probes": [sha256(part) for part in parts],
            }
    except MLArrayError as exc:
        return {"valid": False, "error": exc.code}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python_reader.py FILE PROBES_JSON", file=sys.stderr)
        return 2
    result = read(argv[0], json.loads(argv[1]))
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
