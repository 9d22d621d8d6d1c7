"""Open, validate and save ``.mla`` files at a URL or in an open binary file object.

Opening reads the frame header, the trailer (with the mlarray header) and the chunk
index through a :class:`~mlarray.storage.source.ByteSource` and runs the same frame,
header and chunk-index checks as for a local file (:func:`mlarray.storage.inspect_frame`,
:class:`mlarray.storage.chunks.DataSection`); HTTP and S3 sources answer those reads
from two windows fetched concurrently at open (so opening costs two ranged requests for
a typical file, at most six). Data are read by :class:`mlarray.remote.array.RemoteArray`.
Remote arrays are read-only; saving to a URL writes a local temporary file and uploads it once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlarray.errors import MLArrayError, ReadOnlyError, RemoteError
from mlarray.models import newer_members, parse_header
from mlarray.reading import threads_of
from mlarray.remote import is_url
from mlarray.remote.array import DEFAULT_CACHE_BYTES, RemoteArray
from mlarray.remote.sources import _fsspec, open_source
from mlarray.storage.chunks import DataSection
from mlarray.storage.codec import decode_header
from mlarray.storage.frame import inspect_frame
from mlarray.storage.io import HeaderRead, check_against_frame
from mlarray.storage.source import ByteSource, FileObjectSource

if TYPE_CHECKING:
    from mlarray.api import MLArray
    from mlarray.validate import Report

READ_ONLY_HINT = (
    "remote files and file objects open read-only (mmap_mode='r'); to change one, load it "
    "(MLArray.load), edit it and save it (to a path or a URL)"
)


def _check_options(storage_options: Any, target: Any) -> None:
    """``INVALID_ARGUMENT`` unless ``storage_options`` is ``None`` or a mapping (fsspec's keyword options)."""
    if storage_options is not None and not isinstance(storage_options, Mapping):
        from mlarray.errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"storage_options must be a dict of fsspec options, got {type(storage_options).__name__}",
            path=str(target) if isinstance(target, str) else None,
        )


def source_of(target: Any, storage_options: dict[str, Any] | None = None) -> ByteSource:
    """A checked byte source for a URL or an open binary file object."""
    _check_options(storage_options, target)
    if is_url(target):
        try:
            return open_source(str(target), storage_options)
        except MLArrayError:
            raise
        except (ValueError, OSError) as exc:  # a malformed URL, an unknown protocol, a refused connection
            raise RemoteError(f"cannot open the URL ({type(exc).__name__}: {exc})", path=str(target)) from None
    if storage_options:
        from mlarray.errors import InvalidArgumentError

        raise InvalidArgumentError("storage_options apply to URLs only")
    return FileObjectSource(target)


def read_header_from(source: ByteSource) -> HeaderRead:
    """Frame checks, header validation and the chunk index check, for any byte source."""
    frame = inspect_frame(source)
    name = source.name
    data = decode_header(frame.header_bytes, path=name)
    meta = parse_header(data, path=name)
    check_against_frame(meta, frame, name)
    head = HeaderRead(meta, frame, dropped=tuple(newer_members(data, meta)))
    head.data = DataSection(source, frame)  # spec 8, step 10: the chunk index checked before any chunk is read
    end_open = getattr(source, "end_open", None)
    if callable(end_open):
        end_open()
    return head


def read_header_url(target: Any, storage_options: dict[str, Any] | None = None) -> HeaderRead:
    """:func:`mlarray.storage.read_header` for a URL or a file object (the array is not read)."""
    return read_header_from(source_of(target, storage_options))


def open_remote(
    cls: type[MLArray],
    target: Any,
    mmap_mode: str,
    dparams: Any = None,
    storage_options: dict[str, Any] | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> MLArray:
    """``MLArray.open`` for a URL or a file object (read-only)."""
    name = target if isinstance(target, str) else getattr(target, "name", None)
    if mmap_mode != "r":
        raise ReadOnlyError(f"cannot open with mmap_mode={mmap_mode!r}: {READ_ONLY_HINT}", path=name)
    source = source_of(target, storage_options)
    head = read_header_from(source)
    assert head.data is not None
    obj = cls.__new__(cls)
    obj._init_empty(head.meta, head.dropped)
    if head.meta.array is not None:
        obj._nd = RemoteArray(source, head.frame, head.data, cache_bytes, threads_of(dparams, 1))
    obj._path, obj._mode, obj._dparams = source.name, "r", dparams
    obj._requested = ("r", "r")
    obj._persisted = head.meta.model_dump(mode="json")
    obj._remote = (target if is_url(target) else None, dict(storage_options or {}))
    return obj


def load_remote(
    cls: type[MLArray], target: Any, dparams: Any = None, storage_options: dict[str, Any] | None = None
) -> MLArray:
    """``MLArray.load`` for a URL or a file object: every chunk fetched, checked and decoded."""
    opened = open_remote(cls, target, "r", dparams, storage_options)
    obj = cls.__new__(cls)
    obj._init_empty(opened.meta)
    if opened.meta.array is not None:
        obj._np = opened.to_numpy()
    return obj


def validate_remote(target: Any, *, deep: bool = True, storage_options: dict[str, Any] | None = None) -> Report:
    """:func:`mlarray.validate.validate_file` for a URL or a file object (the same checks and codes).

    ``deep`` fetches the data section once (8 MiB ranges, 8 at a time): every chunk is
    checked and decompressed and the digest computed from the same bytes
    (:mod:`mlarray.remote.validate`).
    """
    from mlarray.errors import Problem
    from mlarray.validate import Report, _problems_of

    name = target if isinstance(target, str) else str(getattr(target, "name", None) or f"<{type(target).__name__}>")
    report = Report(path=name)
    try:
        source = source_of(target, storage_options)
        head = read_header_from(source)
        report.header = head.meta.model_dump(mode="json")
        if deep:  # the data section fetched once: chunks checked and decoded, digest from the same bytes
            from mlarray.remote.validate import check_data

            assert head.data is not None
            digest = head.meta.integrity.digest if head.meta.integrity is not None else None
            check_data(source, head.frame, head.data, digest)
    except MLArrayError as exc:
        report.problems.extend(_problems_of(exc))
    except OSError as exc:
        report.problems.append(Problem("file", "REMOTE_READ", str(exc)))
    return report


_WHOLE_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "http", "https"})
"""Filesystems where one upload replaces the object whole (readers never see part of it)."""


def save_remote(image: MLArray, url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``image`` to a local temporary file, then upload it with one ``put``.

    On object stores the upload replaces the object whole; on other filesystems it goes
    to a temporary name beside the target that is then moved over it.
    """
    from mlarray.errors import WrongExtensionError
    from mlarray.storage.io import EXTENSION

    _check_options(storage_options, url)
    if url.endswith("/") or not url.split("?", 1)[0].endswith(EXTENSION):
        raise WrongExtensionError(f"mlarray files must end in '{EXTENSION}'", path=url)
    fs, path = _fsspec().core.url_to_fs(url, **dict(storage_options or {}))
    with tempfile.TemporaryDirectory(prefix="mlarray-upload-") as folder:
        local = os.path.join(folder, os.path.basename(path.rstrip("/")) or "upload.mla")
        image.save(local)
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        try:
            if protocols & _WHOLE_OBJECT_STORES:
                fs.put_file(local, path)
            else:
                staging = f"{path}.mla-upload-{os.urandom(4).hex()}"
                fs.put_file(local, staging)
                fs.mv(staging, path)
        except MLArrayError:
            raise
        except Exception as exc:
            from mlarray.errors import WriteFailedError

            raise WriteFailedError(f"uploading failed ({type(exc).__name__}: {exc})", path=url) from None


def reopen_url(url: str, dparams: Any, storage_options: dict[str, Any]) -> MLArray:
    """Open ``url`` again read-only (how a pickled remote array is restored in a worker)."""
    from mlarray.api import MLArray

    return MLArray.open(url, "r", dparams, storage_options=storage_options)
