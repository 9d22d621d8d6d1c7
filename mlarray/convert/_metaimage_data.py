"""The compressed data block of a MetaImage file, inflated and checked without ITK.

ITK's MetaImage reader does not fail on a damaged zlib stream: it prints ``Uncompress
failed`` on stderr and returns an image whose buffer is partly uninitialised memory.
So for ``CompressedData = True`` mlarray reads the header itself, inflates the data
block with :mod:`zlib` and requires the stream to end cleanly at exactly
``prod(DimSize) * ElementNumberOfChannels * element size`` bytes. Those bytes are then
the voxels (SimpleITK only supplies the geometry), which also keeps ITK's messages off
stderr.

Handled: the data ``LOCAL`` to an ``.mha`` (right after the ``ElementDataFile`` line,
``CompressedDataSize`` bytes or the rest of the file), or one separate data file of an
``.mhd`` (``HeaderSize`` bytes skipped). ``HeaderSize = -1``, lists of files, file
name patterns and element types outside
:data:`ELEMENT_TYPES` are left to ITK (:func:`inflate_metaimage` returns ``None``).
"""

from __future__ import annotations

import math
import os
import zlib
from typing import Any

import numpy as np

from mlarray.errors import SourceFormatError

ELEMENT_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4", "MET_UINT": "u4",
    "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}  # fmt: skip
"""MetaIO element types and their NumPy type without byte order (``MET_LONG`` is 4 bytes in MetaIO, as ITK reads it)."""

HEADER_LIMIT = 1 << 20
"""A MetaImage header longer than this is not looked for (ITK's own headers are a few hundred bytes)."""


def parse_header(path: str) -> tuple[dict[str, str], int] | None:
    """The ``key = value`` fields of a MetaImage header up to ``ElementDataFile``, and where its line ends.

    ``None`` when no ``ElementDataFile`` line is found in the first :data:`HEADER_LIMIT` bytes.
    """
    with open(path, "rb") as f:
        head = f.read(HEADER_LIMIT)
    fields: dict[str, str] = {}
    position = 0
    while position < len(head):
        end = head.find(b"\n", position)
        if end < 0:
            return None
        line = head[position:end].decode("latin-1").strip()
        position = end + 1
        key, sep, value = line.partition("=")
        if not sep:
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, position
    return None


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1")


def is_compressed(path: str) -> bool:
    """The header says ``CompressedData = True``."""
    parsed = parse_header(path)
    return parsed is not None and _true(parsed[0].get("CompressedData"))


def _ints(text: str | None, what: str, path: str) -> list[int]:
    try:
        return [int(v) for v in (text or "").split()]
    except ValueError:
        raise SourceFormatError(f"MetaImage field {what} is not a list of integers: {text!r}", path=path) from None


def _block(path: str, fields: dict[str, str], data_start: int) -> bytes | None:
    """The compressed bytes of the data, or ``None`` for a layout left to ITK."""
    name = fields.get("ElementDataFile", "")
    declared = _ints(fields.get("CompressedDataSize"), "CompressedDataSize", path)
    size = declared[0] if len(declared) == 1 and declared[0] > 0 else None
    skip = _ints(fields.get("HeaderSize"), "HeaderSize", path)
    header_size = skip[0] if len(skip) == 1 else 0
    if name.upper() == "LOCAL":
        if header_size != 0:
            return None
        data_path, start = path, data_start
    else:
        if name.upper().startswith("LIST") or "%" in name or not name:
            return None
        data_path = name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name)
        if not os.path.isfile(data_path):
            raise SourceFormatError(f"the MetaImage data file {name!r} does not exist", path=path)
        if header_size < 0:
            return None  # "data at the end of the file": ITK reads no compressed data so (and reports it)
        start = header_size
    with open(data_path, "rb") as f:
        f.seek(start)
        block = f.read() if size is None else f.read(size)
    if size is not None and len(block) < size:
        raise SourceFormatError(
            f"the MetaImage data are truncated: {len(block)} of the {size} compressed bytes declared",
            path=path,
        )
    return block


def inflate_metaimage(path: str) -> np.ndarray[Any, Any] | None:
    """The voxels of a compressed MetaImage, C order ``(..., j, i[, channels])`` in native byte order (maybe read-only).

    ``None`` when the file is not compressed or uses a layout left to ITK (see the
    module docstring).

    Raises
    ------
    SourceFormatError
        The data block is not a zlib (or gzip) stream that ends cleanly at exactly the
        number of bytes the header's ``DimSize``, ``ElementNumberOfChannels`` and
        ``ElementType`` call for, or the data file is missing or truncated.
    """
    parsed = parse_header(path)
    if parsed is None or not _true(parsed[0].get("CompressedData")):
        return None
    fields, data_start = parsed
    kind = ELEMENT_TYPES.get(fields.get("ElementType", ""))
    if kind is None:
        return None
    sizes = _ints(fields.get("DimSize"), "DimSize", path)
    channels = _ints(fields.get("ElementNumberOfChannels", "1"), "ElementNumberOfChannels", path)
    if not sizes or any(n < 1 for n in sizes) or len(channels) != 1 or channels[0] < 1:
        raise SourceFormatError(f"MetaImage DimSize {sizes} / channels {channels} describe no image", path=path)
    msb = _true(fields.get("BinaryDataByteOrderMSB")) or _true(fields.get("ElementByteOrderMSB"))
    dtype = np.dtype((">" if msb else "<") + kind)
    expected = math.prod(sizes) * channels[0] * dtype.itemsize
    block = _block(path, fields, data_start)
    if block is None:
        return None
    inflater = zlib.decompressobj(wbits=47)  # zlib or gzip header, as MetaIO accepts
    try:
        raw = inflater.decompress(block, expected + 1)
    except zlib.error as exc:
        raise SourceFormatError(f"the compressed MetaImage data are damaged: {exc}", path=path) from None
    if len(raw) > expected or inflater.unconsumed_tail:
        raise SourceFormatError(
            f"the compressed MetaImage data inflate to more than the {expected} bytes the header calls for", path=path
        )
    if not inflater.eof or len(raw) != expected:
        raise SourceFormatError(
            f"the compressed MetaImage data end early: {len(raw)} of the {expected} bytes the header calls for",
            path=path,
        )
    shape = tuple(reversed(sizes)) + ((channels[0],) if channels[0] > 1 else ())
    voxels = np.frombuffer(raw, dtype=dtype).reshape(shape)  # read-only, over ``raw``: no copy yet
    return voxels.astype(dtype.newbyteorder("=")) if not dtype.isnative else voxels
