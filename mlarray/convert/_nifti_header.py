"""A NIfTI header and its extensions as ``meta.source`` JSON, and back.

* :func:`header_to_json` / :func:`set_field`: every header field by its NIfTI name
  (text fields that are not UTF-8 as ``{"base64": ...}``, NaN as ``null``).
* :func:`read_extensions` / :func:`extension_records`: the header extensions exactly
  as stored, one ``{"code", "esize", "content_base64"}`` per extension, where
  ``content_base64`` holds all ``esize - 8`` bytes after ``esize`` and ``ecode``
  (trailing NUL bytes included: nibabel strips them, AFNI needs them). Entries of
  ``.mla`` files written before ``esize`` was recorded hold nibabel's stripped content
  and are padded as nibabel pads them.
* :func:`as_loaded`: a header as nibabel sees it after loading, for decoding its geometry.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from mlarray.convert._common import b64decode, b64encode, from_json_number, json_number
from mlarray.errors import NotRepresentableError, SourceFormatError

EXTENSIONS_FOLLOW = b"\x01\x00\x00\x00"
"""The four bytes after the header when extensions follow (``extension[0] != 0``)."""
NO_EXTENSIONS = b"\x00\x00\x00\x00"

_SILENT = logging.getLogger(f"{__name__}.checks")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def header_to_json(header: Any) -> dict[str, Any]:
    """Every field of a nibabel NIfTI header as JSON (text fields decoded, NaN as ``null``)."""
    out: dict[str, Any] = {}
    for key in header:
        value = header[key]
        if value.dtype.kind == "S":
            out[key] = _text(bytes(value.item()))
        elif value.ndim:
            out[key] = [json_number(v) for v in value.tolist()]
        else:
            out[key] = json_number(value.item())
    return out


def _text(raw: bytes) -> Any:
    """A header text field: a string when it is UTF-8, else ``{"base64": ...}`` so no byte is lost."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": b64encode(raw)}


def _untext(value: Any) -> bytes:
    if isinstance(value, dict):
        return b64decode(str(value["base64"]))
    return str(value).encode("utf-8")


def set_field(header: Any, key: str, value: Any, path: str) -> None:
    """Set header field ``key`` from its :func:`header_to_json` form.

    Raises
    ------
    NotRepresentableError
        The value does not fit the field.
    """
    current = header[key]
    try:
        if current.dtype.kind == "S":
            header[key] = _untext(value)
        elif current.dtype.kind == "f":
            header[key] = [from_json_number(v) for v in value] if current.ndim else from_json_number(value)
        else:
            header[key] = value
    except Exception as exc:
        message = f"meta.source.header.{key} = {value!r} does not fit NIfTI: {exc}"
        raise NotRepresentableError(message, path=path) from None


def as_loaded(header: Any) -> Any:
    """A copy of ``header`` with the fixes nibabel makes when it loads a file.

    nibabel reads a file's geometry from its checked header: negative ``pixdim[1:4]``
    become their absolute values, zero ones 1, a ``qfac`` other than -1 or 1 becomes 1.
    A header copied from ``meta.source`` keeps the raw fields; this copy decodes its
    sform and qform as nibabel decoded the source's. The raw header comes back if
    the checks themselves fail.
    """
    fixed = header.copy()
    try:
        fixed.check_fix(logger=_SILENT, error_level=100)  # fix what can be fixed, raise for nothing
    except Exception:
        return header
    return fixed


def read_extensions(f: Any, raw_header: Any, end: int, path: str) -> list[dict[str, Any]]:
    """The extensions of a ``.nii`` file as stored, as :data:`meta.source` entries.

    ``raw_header`` is the header nibabel read from ``f`` and ``end`` the position where
    nibabel stopped reading its extensions; the bytes from the end of the header's
    four extension-flag bytes to ``end`` are read again and split into records.
    Leaves ``f`` at ``end``.
    """
    start = int(raw_header.single_vox_offset)  # sizeof_hdr + the 4 flag bytes
    if end <= start:
        return []
    f.seek(start)
    block = bytes(f.read(end - start))
    entries: list[dict[str, Any]] = []
    position = 0
    while position < len(block):
        record = block[position : position + 8]
        esize, ecode = struct.unpack(f"{raw_header.endianness}ii", record) if len(record) == 8 else (0, 0)
        if esize < 8 or position + esize > len(block):
            raise SourceFormatError(f"damaged NIfTI header extension at byte {start + position}", path=path)
        content = block[position + 8 : position + esize]
        entries.append({"code": int(ecode), "esize": int(esize), "content_base64": b64encode(content)})
        position += esize
    return entries


def extension_records(entries: list[dict[str, Any]], endianness: str, path: str) -> bytes:
    """The extension records to write after the header (without the four flag bytes).

    An entry whose ``esize`` is ``8 + len(content)`` is written as it was stored;
    any other (an older ``.mla`` file's stripped content, or content changed since)
    gets ``esize`` rounded up to a multiple of 16 and NUL padding, as nibabel writes it.

    Raises
    ------
    NotRepresentableError
        An entry's code or size does not fit NIfTI's 32-bit fields.
    """
    records = []
    for entry in entries:
        content = b64decode(str(entry["content_base64"]))
        esize = entry.get("esize")
        if not (isinstance(esize, int) and esize == 8 + len(content)):
            esize = (len(content) + 23) // 16 * 16
            content += bytes(esize - 8 - len(content))
        try:
            records.append(struct.pack(f"{endianness}ii", esize, int(entry["code"])) + content)
        except (struct.error, TypeError, ValueError) as exc:
            raise NotRepresentableError(f"a NIfTI header extension does not fit: {exc}", path=path) from None
    return b"".join(records)
