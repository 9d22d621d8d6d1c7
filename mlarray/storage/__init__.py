"""Blosc2 storage of ``.mla`` files. Knows nothing of the CLI or of conversion."""

from mlarray.storage.requirement import MIN_BLOSC2  # first: refuses a python-blosc2 that reads some files wrong

# isort: split
from mlarray.storage.codec import decode_header, encode_header
from mlarray.storage.frame import FrameInfo, NDInfo, data_digest, data_section, inspect_frame
from mlarray.storage.io import (
    EXTENSION,
    HeaderRead,
    atomic_target,
    check_path,
    header_bytes,
    open_frame,
    read_header,
    verify_digest,
    write_frame,
    write_header,
)

__all__ = [
    "EXTENSION",
    "MIN_BLOSC2",
    "FrameInfo",
    "HeaderRead",
    "NDInfo",
    "atomic_target",
    "check_path",
    "data_digest",
    "data_section",
    "decode_header",
    "encode_header",
    "header_bytes",
    "inspect_frame",
    "open_frame",
    "read_header",
    "verify_digest",
    "write_frame",
    "write_header",
]
