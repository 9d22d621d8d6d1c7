"""Byte sources for URLs, on fsspec: HTTP(S) and S3 with checked ranged reads, any other fsspec URL.

Every read returns exactly the bytes asked for or raises a typed error; a server's
answer is never taken on trust:

* ``http(s)://``: ranged ``GET`` requests on the session of fsspec's HTTP filesystem
  (so ``storage_options`` such as ``headers`` or ``client_kwargs`` work as in fsspec).
  Each answer must be ``206 Partial Content`` with the exact ``Content-Range`` asked
  for (and the size seen at open), a body of exactly that length, and the ``ETag`` seen
  at open; requests carry ``If-Match`` (or ``If-Unmodified-Since``) so a server refuses
  to serve a file that changed since it was opened.
* ``s3://``: ``GetObject`` with ``Range`` and ``IfMatch`` on s3fs's client, checked the
  same way (``ContentRange``, length, ``ETag``).
* any other fsspec URL (``memory://``, ``gs://``, ``file://``, chained URLs ...):
  ``cat_ranges`` with exact-length checks; the file's ``info()`` is compared after
  each batch of reads to notice a change.

fsspec (and aiohttp/s3fs) are imported only here, and only when a URL is opened.
fsspec's own HTTP and S3 read paths are not used for data because they do not expose
the response headers these checks need.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

from mlarray.errors import (
    MissingDependencyError,
    MLArrayFileNotFoundError,
    ReadOnlyError,
    RemoteChangedError,
    RemoteError,
)
from mlarray.remote import is_chained

HEAD_WINDOW = 64 << 10
"""Bytes read from the start of a remote file when it is opened (prefix, frame header, first chunk's header)."""
TAIL_WINDOW = 64 << 10
"""Bytes read from the end when it is opened (trailer with the mlarray header, chunk index)."""


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(
            'reading URLs needs fsspec: pip install "mlarray[remote]"', module="fsspec"
        ) from None
    return fsspec


class _Counted:
    """Request and byte counters shared by the sources (what a patch read cost)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes_read = 0
        self._count_lock = threading.Lock()

    def _count(self, data: bytes) -> None:
        with self._count_lock:
            self.requests += 1
            self.bytes_read += len(data)


class _Windows:
    """Byte windows read at open; reads inside one are answered from memory until :meth:`end_open`."""

    def __init__(self) -> None:
        self._windows: list[tuple[int, bytes]] = []

    def _from_window(self, offset: int, length: int) -> bytes | None:
        for start, data in self._windows:
            if start <= offset and offset + length <= start + len(data):
                return data[offset - start : offset - start + length]
        return None

    def end_open(self) -> None:
        """Forget the open windows: every later read goes to the server."""
        self._windows = []


def _status_error(status: int, url: str, what: str) -> Exception:
    if status in (404, 410):
        return MLArrayFileNotFoundError(f"the server says the file does not exist (HTTP {status})", path=url)
    if status in (401, 403):
        return ReadOnlyError(f"the server refuses access (HTTP {status}); check the credentials", path=url)
    if status == 412:
        return RemoteChangedError("the file changed on the server since it was opened (HTTP 412)", path=url)
    if status == 416:
        return RemoteChangedError("the file is now shorter than when it was opened (HTTP 416)", path=url)
    return RemoteError(f"the server answered {what} with HTTP {status}", path=url)


class _RangedSource(_Counted, _Windows):
    """Shared logic of the HTTP and S3 sources: open with two windows, then checked ranged reads."""

    name: str
    _size: int
    _etag: str | None

    def __init__(self) -> None:
        _Counted.__init__(self)
        _Windows.__init__(self)
        self._fs: Any = None
        self._protocol = ""
        self._options: dict[str, Any] = {}
        self._pid = os.getpid()

    @property
    def size(self) -> int:
        return self._size

    @property
    def version(self) -> tuple[Any, ...]:
        """What names the object as it was opened: its size and ETag (``None`` when the server sends none)."""
        return (self._size, self._etag)

    async def _get(self, spec: str, offset: int | None, length: int | None) -> tuple[bytes, int, int, str | None]:
        """One ranged request: body, start, total size and ETag from the answer (checked by the caller)."""
        raise NotImplementedError

    def _connect(self, protocol: str, options: dict[str, Any]) -> None:
        self._protocol, self._options = protocol, options
        self._fs = _fsspec().filesystem(protocol, **options)
        self._pid = os.getpid()

    def _run(self, coro: Any) -> Any:
        from fsspec.asyn import sync

        if os.getpid() != self._pid:  # a forked process (a data-loader worker): the parent's I/O thread is gone
            self._connect(self._protocol, self._options)
        return sync(self._fs.loop, lambda: coro)

    def _open(self) -> None:
        """The two windows (start and end of the file), concurrently; they fix the size and ETag."""

        async def both() -> list[Any]:
            return await asyncio.gather(  # type: ignore[return-value]
                self._get(f"bytes=0-{HEAD_WINDOW - 1}", None, None),
                self._get(f"bytes=-{TAIL_WINDOW}", None, None),
                return_exceptions=True,
            )

        results = self._run(both())
        for result in results:
            if isinstance(result, BaseException):
                raise result
        (head, head_start, head_total, head_etag), (tail, tail_start, tail_total, tail_etag) = results
        if head_start != 0 or head_total != tail_total or head_etag != tail_etag:
            raise RemoteChangedError("the file changed between the first two requests (size or ETag)", path=self.name)
        if tail_start + len(tail) != tail_total:
            raise RemoteError("the server's answer to a suffix range does not end at the file's end", path=self.name)
        self._size, self._etag = head_total, head_etag
        self._windows = [(0, head), (tail_start, tail)]

    def _checked(self, answer: tuple[bytes, int, int, str | None], offset: int, length: int) -> bytes:
        data, start, total, etag = answer
        if total != self._size or (self._etag is not None and etag != self._etag):
            raise RemoteChangedError(
                f"the file changed on the server since it was opened (size {total}, was {self._size})"
                if total != self._size
                else "the file changed on the server since it was opened (its ETag differs)",
                path=self.name,
            )
        if start != offset or len(data) != length:
            raise RemoteError(
                f"the server answered bytes {start}..{start + len(data)} to a request for {offset}..{offset + length}",
                path=self.name,
            )
        return data

    def read(self, offset: int, length: int) -> bytes:
        return self.read_many([(offset, length)])[0]

    def read_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out: list[bytes | None] = [self._from_window(o, n) for o, n in ranges]
        todo = [i for i, data in enumerate(out) if data is None]
        for i in todo:
            offset, length = ranges[i]
            if offset < 0 or length <= 0 or offset + length > self._size:
                if length == 0 and 0 <= offset <= self._size:
                    out[i] = b""
                    continue
                from mlarray.errors import TruncatedFileError

                raise TruncatedFileError("the file ends inside the frame", path=self.name)
        todo = [i for i in todo if out[i] is None]

        async def fetch() -> list[Any]:
            return await asyncio.gather(
                *(self._get(f"bytes={ranges[i][0]}-{sum(ranges[i]) - 1}", *ranges[i]) for i in todo),
                return_exceptions=True,
            )

        if todo:
            for i, answer in zip(todo, self._run(fetch()), strict=True):
                if isinstance(answer, BaseException):
                    raise answer
                out[i] = self._checked(answer, *ranges[i])
        return [data if data is not None else b"" for data in out]

    def close(self) -> None:
        self.end_open()


def _content_range(value: str | None, body: bytes, url: str) -> tuple[int, int]:
    """``(start, total)`` of a ``bytes start-end/total`` header that ``body`` matches; else :class:`RemoteError`."""
    try:
        if not value or not value.startswith("bytes "):
            raise ValueError
        span, total = value[6:].split("/")
        start, end = (int(x) for x in span.split("-"))
        size = int(total)
    except ValueError:
        raise RemoteError(f"the server's partial answer has no valid Content-Range ({value!r})", path=url) from None
    if len(body) != end + 1 - start or not 0 <= start <= end < size:
        raise RemoteError(
            f"the server sent {len(body)} bytes for the range {start}-{end} it declares (Content-Range {value!r})",
            path=url,
        )
    return start, size


async def _read_body(stream: Any, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a response body (one more than asked for shows an over-long answer)."""
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        piece = await stream.read(limit + 1 - got)
        if not piece:
            break
        parts.append(bytes(piece))
        got += len(piece)
    return b"".join(parts)


class HTTPSource(_RangedSource):
    """An ``http://`` or ``https://`` URL read with checked range requests."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        super().__init__()
        self.name = url
        self._connect("https" if url.startswith("https") else "http", storage_options)
        self._etag = None
        self._modified: str | None = None
        self._size = 0
        self._open()

    async def _get(self, spec: str, offset: int | None, length: int | None) -> tuple[bytes, int, int, str | None]:
        import aiohttp

        kwargs = dict(self._fs.kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Range"] = spec
        headers["Accept-Encoding"] = "identity"  # byte offsets are offsets in the file, not in a compressed body
        if offset is not None and self._etag is not None and not self._etag.startswith("W/"):
            headers["If-Match"] = self._etag  # a weak ETag never matches If-Match (RFC 9110): compared below instead
        elif offset is not None and self._modified is not None:
            headers["If-Unmodified-Since"] = self._modified
        try:
            session = await self._fs.set_session()
            async with session.get(self._fs.encode_url(self.name), headers=headers, **kwargs) as response:
                if response.status != 206:
                    if response.status == 200:
                        raise RemoteError("the server ignores range requests (HTTP 200 to a Range)", path=self.name)
                    if response.status == 416 and offset is None:
                        return b"", 0, 0, None  # an empty file
                    raise _status_error(response.status, self.name, f"a request for {spec}")
                etag = response.headers.get("ETag")
                if offset is None and self._modified is None:
                    self._modified = response.headers.get("Last-Modified")
                limit = length if length is not None else max(HEAD_WINDOW, TAIL_WINDOW)
                body = await _read_body(response.content, limit)
                content_range = response.headers.get("Content-Range")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RemoteError(f"the request for {spec} failed ({type(exc).__name__}: {exc})", path=self.name) from None
        self._count(body)
        start, total = _content_range(content_range, body, self.name)
        return body, start, total, etag


class S3Source(_RangedSource):
    """An ``s3://`` URL read with checked ``GetObject`` range requests."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        super().__init__()
        self.name = url
        try:
            self._connect("s3", storage_options)
        except ImportError:
            raise MissingDependencyError(
                'reading s3:// URLs needs s3fs: pip install "mlarray[remote]"', module="s3fs"
            ) from None
        self._bucket, self._key, self._version = self._fs.split_path(url)
        self._etag = None
        self._size = 0
        self._open()

    async def _get(self, spec: str, offset: int | None, length: int | None) -> tuple[bytes, int, int, str | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key, "Range": spec}
        if self._version:
            kwargs["VersionId"] = self._version
        if offset is not None and self._etag is not None:
            kwargs["IfMatch"] = self._etag
        try:
            await self._fs.set_session()
            client = await self._fs.get_s3(self._bucket)  # the bucket's region client when regions are cached
            # s3fs's request-wide options (requester_pays, s3_additional_kwargs such as SSE-C keys), as it sends them
            response = await client.get_object(**self._fs._get_s3_method_kwargs(client.get_object, **kwargs))
            async with response["Body"] as stream:
                limit = length if length is not None else max(HEAD_WINDOW, TAIL_WINDOW)
                body = await _read_body(stream, limit)
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "NoSuchBucket"):
                status = 404
            elif code == "PreconditionFailed":
                status = 412
            elif code == "InvalidRange" and offset is None:
                return b"", 0, 0, None
            raise _status_error(status, self.name, f"a request for {spec} ({code})") from None
        except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            raise RemoteError(f"the request for {spec} failed ({type(exc).__name__}: {exc})", path=self.name) from None
        self._count(body)
        if offset is None and not body and response.get("ContentRange") is None and response.get("ContentLength") == 0:
            return b"", 0, 0, None  # an empty object, served whole (it has no range): as a 416 answer says
        start, total = _content_range(response.get("ContentRange"), body, self.name)
        return body, start, total, response.get("ETag")


_VERSION_KEYS = ("size", "ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "last_modified", "created")


class FsspecSource(_Counted, _Windows):
    """Any other fsspec URL: ``cat_ranges`` with exact-length checks and an ``info()`` check after each batch."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        _Counted.__init__(self)
        _Windows.__init__(self)
        self.name = url
        self._options = storage_options
        self._connect()
        self._version = self._info()
        self._size = int(self._version[0])
        head, tail = min(HEAD_WINDOW, self._size), min(TAIL_WINDOW, self._size)
        windows = [(0, head), (self._size - tail, tail)]
        self._windows = list(zip([w[0] for w in windows], self.read_many(windows), strict=True))

    def _connect(self) -> None:
        """The filesystem of the URL, for this process (fsspec's async filesystems do not survive a fork)."""
        options = self._options if not hasattr(self, "_pid") else {**self._options, "skip_instance_cache": True}
        try:
            self._fs, self._path = _fsspec().core.url_to_fs(self.name, **options)
        except ImportError as exc:
            raise MissingDependencyError(
                f"this URL needs a package fsspec could not import ({exc})", module=str(exc.name)
            ) from None
        self._pid = os.getpid()

    def _forked(self) -> None:
        if os.getpid() != self._pid:  # a forked process (a data-loader worker): a filesystem of its own
            self._connect()

    def _info(self) -> tuple[Any, ...]:
        self._forked()
        try:
            info = self._fs.info(self._path)
        except FileNotFoundError:
            raise MLArrayFileNotFoundError("no such file", path=self.name) from None
        except PermissionError as exc:
            raise ReadOnlyError(f"cannot read the file ({exc})", path=self.name) from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise RemoteError(f"cannot stat the file ({type(exc).__name__}: {exc})", path=self.name) from None
        if info.get("type") == "directory":
            from mlarray.errors import InvalidArgumentError

            raise InvalidArgumentError("is a directory, not an .mla file", path=self.name)
        return tuple(str(info.get(k)) if k != "size" else int(info.get("size") or 0) for k in _VERSION_KEYS)

    @property
    def size(self) -> int:
        return self._size

    @property
    def version(self) -> tuple[Any, ...]:
        """What names the object as it was opened: what fsspec's ``info()`` said of it (size, ETag, mtime, ...)."""
        return self._version

    def read(self, offset: int, length: int) -> bytes:
        return self.read_many([(offset, length)])[0]

    def read_many(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        from mlarray.errors import TruncatedFileError

        for offset, length in ranges:
            if offset < 0 or length < 0 or offset + length > self._size:
                raise TruncatedFileError("the file ends inside the frame", path=self.name)
        known = [self._from_window(o, n) for o, n in ranges]
        if all(data is not None for data in known):
            return [data for data in known if data is not None]
        self._forked()
        try:
            answers = self._fs.cat_ranges(
                [self._path] * len(ranges), [o for o, _ in ranges], [o + n for o, n in ranges], on_error="return"
            )
        except FileNotFoundError:
            raise MLArrayFileNotFoundError("the file disappeared", path=self.name) from None
        except (OSError, RuntimeError, ValueError) as exc:  # the filesystem failed, not the file
            raise RemoteError(f"reading failed ({type(exc).__name__}: {exc})", path=self.name) from None
        out = []
        for (offset, length), answer in zip(ranges, answers, strict=True):
            if isinstance(answer, FileNotFoundError):
                raise MLArrayFileNotFoundError("the file disappeared", path=self.name)
            if isinstance(answer, BaseException):
                raise RemoteError(f"reading {length} bytes at {offset} failed ({answer})", path=self.name)
            if not isinstance(answer, bytes) or len(answer) != length:
                raise RemoteError(f"asked for {length} bytes at {offset}, got a different amount", path=self.name)
            self._count(answer)
            out.append(answer)
        if self._info() != self._version:
            raise RemoteChangedError("the file changed since it was opened", path=self.name)
        return out

    def close(self) -> None:
        """fsspec keeps its filesystem instances; nothing to release."""
        self.end_open()


def open_source(url: str, storage_options: dict[str, Any] | None = None) -> HTTPSource | S3Source | FsspecSource:
    """The checked byte source of ``url`` (the open windows already read for HTTP and S3)."""
    options = dict(storage_options or {})
    scheme = url.split("://", 1)[0].lower() if not is_chained(url) else ""
    if scheme in ("http", "https"):
        return HTTPSource(url, options)
    if scheme in ("s3", "s3a"):
        return S3Source(url, options)
    return FsspecSource(url, options)
