"""Read and write ``.mla`` files: Blosc2 NDArray frames with a JSON header.

Every public function here validates before it touches a file and never leaves a
half-written target: saves go to a temporary file in the target's directory that is
fsynced and then atomically renamed over the target. Opening a file first inspects
the frame with our own code (:mod:`mlarray.storage.frame`); python-blosc2 only sees
files that passed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import stat
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from mlarray.errors import (
    CorruptFrameError,
    DigestMismatchError,
    FrameMismatchError,
    InvalidArgumentError,
    MLArrayError,
    MLArrayFileNotFoundError,
    ReadOnlyError,
    ResourceLimitError,
    WriteFailedError,
    WrongExtensionError,
)

# The default codec, level and filters are chosen with the layout (measured: docs/performance.md).
from mlarray.layout import DEFAULT_CLEVEL as DEFAULT_CLEVEL
from mlarray.layout import DEFAULT_CODEC as DEFAULT_CODEC
from mlarray.layout import DEFAULT_FILTERS as DEFAULT_FILTERS
from mlarray.models import Integrity, Layout, Meta, newer_members, parse_header
from mlarray.storage.chunks import DataSection, may_map
from mlarray.storage.codec import decode_header, encode_header
from mlarray.storage.compress import chunk_grid, write_array
from mlarray.storage.cparams import describe_cparams
from mlarray.storage.filenames import blosc2_can_name, check_blosc2_name, utf8_name
from mlarray.storage.frame import FrameInfo, data_digest, inspect_frame
from mlarray.storage.lazyframe import LazyFrame, opened
from mlarray.versions import HEADER_KEY

EXTENSION = ".mla"
TMP_PREFIX = ".mla-tmp-"
"""Temporary files of an unfinished save are named ``.mla-tmp-<pid>.<random>-<target name>``
(``<pid>`` the writing process; earlier versions wrote no ``<pid>.``)."""


_NAME_ROOM = 220
"""Most bytes of a target's name a temporary name holds whole: with ``.mla-tmp-<pid>.<random>-`` (at most
35 bytes) it stays within NAME_MAX (255 bytes), the longest file name Linux and macOS file systems take."""


def temporary_suffix(target_name: str) -> str:
    """The end of a temporary file's name that tells which file it is to replace.

    The target's name (spelled as UTF-8, :func:`~mlarray.storage.filenames.utf8_name`), or
    for a name too long to fit beside the prefix within NAME_MAX, its first 180 bytes and a
    hash of the whole name, so any name the file system takes can be saved.
    """
    name = utf8_name(target_name)
    raw = name.encode("utf-8")
    if len(raw) <= _NAME_ROOM:
        return name
    return raw[:180].decode("utf-8", "ignore") + "~" + hashlib.sha256(raw).hexdigest()[:16]


def temporary_name(target_name: str = "") -> str:
    """A fresh name for a temporary file (``target_name`` given) or folder of this process."""
    stem = f"{TMP_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
    return f"{stem}-{temporary_suffix(target_name)}" if target_name else stem


def writer_pid(temporary: str) -> int | None:
    """The process id in the name of a temporary file or folder (:func:`temporary_name`), if it has one."""
    head = temporary[len(TMP_PREFIX) :].split("-", 1)[0]
    pid_text, dot, _ = head.partition(".")
    return int(pid_text) if dot and pid_text.isdigit() else None


def writer_alive(temporary: str) -> bool:
    """Whether the process that named the temporary file or folder ``temporary`` still runs.

    ``False`` for names without a process id and where that cannot be told (not POSIX).
    """
    pid = writer_pid(temporary)
    if pid is None or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, as another user's
    return True


def check_path(path: str | os.PathLike[str], *, must_exist: bool) -> str:
    """Return ``path`` as a string after checking it names an (existing) ``.mla`` file.

    A directory is refused as a directory and a path in a directory that does not exist
    (or a missing path without any extension, a mistyped directory) is
    ``FILE_NOT_FOUND``, before the extension is checked.
    """
    if not isinstance(path, (str, bytes, os.PathLike)):
        in_memory = isinstance(path, (bytearray, memoryview))
        hint = "; for a file's bytes in memory pass io.BytesIO(data)" if in_memory else ""
        raise InvalidArgumentError(f"expected a path, a URL or a binary file object, got {type(path).__name__}{hint}")
    p = os.fsdecode(path)
    if "\0" in p:  # no file system takes it; C-Blosc2 would write under the name cut at the NUL
        raise InvalidArgumentError("the path holds a NUL character", path=p.replace("\0", "\\0"))
    if os.path.isdir(p):
        raise InvalidArgumentError("is a directory, not an .mla file", path=p)
    parent = os.path.dirname(p) or "."
    if not os.path.isdir(parent):
        raise MLArrayFileNotFoundError(f"the directory {parent!r} does not exist", path=p)
    missing = must_exist and not os.path.exists(p)
    if missing and (p.endswith(os.sep) or "." not in os.path.basename(p)):
        raise MLArrayFileNotFoundError("no such file or directory", path=p)
    if not p.endswith(EXTENSION):
        raise WrongExtensionError(f"mlarray files must end in '{EXTENSION}'", path=p)
    if missing and os.path.islink(p):
        raise MLArrayFileNotFoundError("a symbolic link that leads to no file (it dangles, or is a loop)", path=p)
    if missing:
        raise MLArrayFileNotFoundError("no such file", path=p)
    if must_exist and not os.path.isfile(p):
        raise InvalidArgumentError("not a regular file", path=p)
    return p


def is_read_only(path: str) -> bool:
    """Whether ``path`` must not be modified: not writable, or with no write permission bit set.

    The permission bits are honoured even for root, so a file a user marked read-only
    is never replaced or edited in place.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not os.access(path, os.W_OK) or not mode & 0o222


def normalize_dtype(dtype: Any) -> np.dtype[Any]:
    """The little-endian storage dtype for ``dtype``; refuse what the format cannot hold."""
    dt = np.dtype(dtype)
    if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
        raise InvalidArgumentError(f"dtype {dt} cannot be stored: use bool, integer, float or complex")
    stored: np.dtype[Any] = dt.newbyteorder("<") if dt.itemsize > 1 else dt
    if stored.str not in {
        "|b1",
        "|i1",
        "|u1",
        "<i2",
        "<u2",
        "<i4",
        "<u4",
        "<i8",
        "<u8",
        "<f2",
        "<f4",
        "<f8",
        "<c8",
        "<c16",
    }:
        raise InvalidArgumentError(f"dtype {dt} cannot be stored (unsupported size)")
    return stored


# --------------------------------------------------------------------------- reading


@dataclass
class HeaderRead:
    """A validated header together with what the frame says."""

    meta: Meta
    frame: FrameInfo
    data: DataSection | None = None
    """The checked chunk index, once the data are opened (:func:`open_checked`)."""
    dropped: tuple[str, ...] = ()
    """Members of a newer minor version's header that ``meta`` does not hold (spec 2.2)."""


def check_against_frame(meta: Meta, frame: FrameInfo, path: str) -> None:
    """Spec: the header's shape, dtype and chunking agree with the b2nd metalayer."""
    nd = frame.nd
    if meta.array is None:
        if nd.shape != (0,):
            raise FrameMismatchError(f"the header says metadata-only but the frame holds shape {nd.shape}", path=path)
        return
    if tuple(meta.array.shape) != nd.shape:
        raise FrameMismatchError(f"header shape {tuple(meta.array.shape)} != frame shape {nd.shape}", path=path)
    # spec 5.9.9: byte for byte, except that a 1-byte type's byte-order character is not significant
    header_dtype = meta.array.dtype
    one_byte = header_dtype[0] == "|" and nd.dtype[:1] in ("<", ">", "|", "=") and nd.dtype[1:] == header_dtype[1:]
    if nd.dtype != header_dtype and not one_byte:
        raise FrameMismatchError(f"header dtype {header_dtype} != frame dtype {nd.dtype}", path=path)
    layout = meta.layout
    if layout is not None and (tuple(layout.chunk_size) != nd.chunks or tuple(layout.block_size) != nd.blocks):
        raise FrameMismatchError(
            f"header layout chunks {layout.chunk_size}/blocks {layout.block_size} != "
            f"frame {list(nd.chunks)}/{list(nd.blocks)}",
            path=path,
        )


def read_header(path: str | os.PathLike[str]) -> HeaderRead:
    """Read and validate the header of ``path`` without touching the array data."""
    p = check_path(path, must_exist=True)
    try:
        frame = inspect_frame(p)
    except PermissionError as exc:
        raise ReadOnlyError(f"cannot read the file ({exc.strerror})", path=p) from None
    data = decode_header(frame.header_bytes, path=p)
    meta = parse_header(data, path=p)
    check_against_frame(meta, frame, p)
    return HeaderRead(meta, frame, dropped=tuple(newer_members(data, meta)))


_LIVE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
"""The python-blosc2 arrays of files and in-memory images this process holds."""
_INHERITED: list[Any] = []
"""In a forked child: the arrays its parent held at the fork, kept alive for good. Freeing one
frees its C-Blosc2 contexts, whose thread pools (the parent's threads) do not exist in the child:
that waits forever (or crashes). Their memory is the parent's, shared until written anyway."""


def tracked(nd: Any) -> Any:
    """Register a python-blosc2 array (see :data:`_INHERITED`) and return it."""
    _LIVE[id(nd)] = nd
    return nd


def _keep_inherited() -> None:
    _INHERITED.extend(_LIVE.values())


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_keep_inherited)


def open_frame(path: str, mmap_mode: str | None, dparams: Any = None) -> Any:
    """Open an already inspected file with blosc2 (memory-mapped; ``mmap_mode=None`` reads through the file).

    Under an address-space limit (``RLIMIT_AS``) the file is read and written through
    file I/O instead (``'r'`` -> ``mode='r'``, ``'r+'`` -> ``mode='a'``): a map counts at
    its full size against the limit, and C-Blosc2 reserves a map far larger than the file
    for writing, so a small file could not be opened for writing under a cap of 1 GiB.

    A file whose name is not UTF-8 (which C-Blosc2 cannot take) is opened through a
    descriptor of it (``/proc/self/fd/N``, kept open as long as the NDArray lives); where
    the system has no ``/proc`` it is refused (:func:`~mlarray.storage.filenames.check_blosc2_name`).
    """
    if not blosc2_can_name(path):
        return _open_by_descriptor(path, mmap_mode, dparams)
    kwargs: dict[str, Any]
    if mmap_mode is not None and not may_map():
        kwargs = {"mode": "r" if mmap_mode == "r" else "a"}
    else:
        kwargs = {"mmap_mode": mmap_mode}
    if dparams is not None:
        kwargs["dparams"] = dparams
    try:
        nd = blosc2.open(path, **kwargs)
    except PermissionError as exc:
        raise ReadOnlyError(f"cannot open the file in mode {mmap_mode!r} ({exc.strerror})", path=path) from None
    except MLArrayError:
        raise
    except Exception as exc:
        raise CorruptFrameError(f"blosc2 cannot open the frame ({exc})", path=path) from None
    if not isinstance(nd, blosc2.NDArray):
        raise CorruptFrameError(f"the frame opened as {type(nd).__name__}, not an NDArray", path=path)
    return tracked(nd)


def _open_by_descriptor(path: str, mmap_mode: str | None, dparams: Any) -> Any:
    try:
        fd = os.open(path, os.O_RDONLY if mmap_mode in (None, "r") else os.O_RDWR)
    except FileNotFoundError:
        raise MLArrayFileNotFoundError("no such file", path=path) from None
    except PermissionError as exc:
        raise ReadOnlyError(f"cannot open the file ({exc.strerror})", path=path) from None
    via = f"/proc/self/fd/{fd}"
    if not os.path.exists(via):  # no /proc: nothing but the name could reach C-Blosc2
        os.close(fd)
        check_blosc2_name(path)
    try:
        nd = open_frame(via, mmap_mode, dparams)
    except BaseException:
        os.close(fd)
        raise
    weakref.finalize(nd, os.close, fd)
    return nd


def _identity(path: str) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def open_checked(
    path: str, mmap_mode: str, dparams: Any = None, attempts: int = 8, *, lazy: bool = False
) -> tuple[HeaderRead, Any]:
    """Read the header and open the frame *of the same file*.

    An atomic save by another process may replace ``path`` between reading the header
    and mapping the data; the file's identity is compared before and after, and the
    open is retried, so header and data always come from one file. With ``lazy`` (read
    access only) the frame of an array is a :class:`~mlarray.storage.lazyframe.LazyFrame`:
    python-blosc2 opens it, the same file, only when something needs it.
    """
    for _ in range(attempts):
        before = _identity(path)
        head = read_header(path)
        try:
            # spec 8, step 10: the chunk index is checked before any chunk is read
            head.data = DataSection(path, head.frame)
            if lazy and head.frame.nd.shape != (0,):
                nd: Any = LazyFrame(path, mmap_mode, dparams, head.data, open_frame)
            else:  # python-blosc2 checks more of a metadata-only frame than the spec: open it now, as validate does
                nd = open_frame(path, mmap_mode, dparams)
        except CorruptFrameError:
            if _identity(path) != before:
                continue  # replaced while blosc2 was opening it (blosc2 opens the path more than once)
            raise
        try:
            if _identity(path) == before:
                return head, nd
        except FileNotFoundError:
            pass
        del nd
    raise CorruptFrameError(f"the file kept being replaced while opening it ({attempts} attempts)", path=path)


# --------------------------------------------------------------------------- writing


def header_bytes(meta: Meta) -> bytes:
    """Validate ``meta`` completely (as a reader would) and return its on-disk bytes."""
    data = meta.model_dump(mode="json")
    parse_header(data)
    return encode_header(data)


def write_header(nd: Any, meta: Meta, *, digest_of: str | None = None, digest: str | None = None) -> None:
    """Replace the header of an open, writable frame.

    With ``digest_of`` (the frame's file path), ``meta.integrity`` is first set to the
    digest of that file's data section, so the header describes the data it sits beside:
    ``digest`` when the writer already knows it (:class:`Written`), else read from the file.
    """
    if digest_of is not None:
        meta.integrity = Integrity(digest=digest if digest is not None else data_digest(digest_of))
    nd.schunk.vlmeta.set_vlmeta(HEADER_KEY, header_bytes(meta), typesize=1)


def verify_digest(path: str, meta: Meta) -> None:
    """Raise :class:`DigestMismatchError` if the data section disagrees with ``meta.integrity``."""
    if meta.integrity is None:
        return
    actual = data_digest(path)
    if actual != meta.integrity.digest:
        raise DigestMismatchError(
            f"the data section's SHA-256 is {actual[:16]}..., the header records "
            f"{meta.integrity.digest[:16]}...: the data were corrupted or changed without updating the header",
            path=path,
        )


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_destination(path: str) -> str:
    """The file a save of ``path`` replaces: ``path`` itself, or the file a symbolic link leads to.

    Saving through a link updates the file it leads to and keeps the link, as ``open(path, "w")``
    does; a dangling link's target is created. A link that never leads to a file (a loop) is refused.
    """
    if not os.path.islink(path):
        return path
    real = os.path.realpath(path)
    if os.path.islink(real):
        raise InvalidArgumentError("the symbolic link never leads to a file (a loop); refusing to write", path=path)
    return real


@contextlib.contextmanager
def atomic_target(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success fsync and rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left untouched. When
    ``path`` is a symbolic link, the file it leads to is replaced instead (the temporary
    file is made beside that file), so the link stays a link and its target is updated
    atomically; a dangling link's target is created.
    """
    dest = write_destination(path)
    target = Path(dest)
    directory = str(target.parent.resolve()) if str(target.parent) else "."
    if not os.path.isdir(directory):
        raise MLArrayFileNotFoundError("the target directory does not exist", path=path)
    if os.path.exists(dest) and is_read_only(dest):
        raise ReadOnlyError("the file is read-only; refusing to replace it", path=path)
    if not os.access(directory, os.W_OK):
        raise ReadOnlyError("the target directory is not writable", path=path)
    tmp = os.path.join(directory, temporary_name(target.name))
    try:
        yield tmp
        if os.path.exists(dest):
            _keep_access(dest, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        _fsync_dir(directory)
    except MLArrayError:
        _discard(tmp)
        raise
    except MemoryError as exc:
        _discard(tmp)
        message = f"not enough memory to write ({exc}); the previous file is untouched"
        raise ResourceLimitError(message, path=path) from None
    except Exception as exc:
        _discard(tmp)
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        raise WriteFailedError(f"writing failed ({reason}); the previous file is untouched", path=path) from exc
    except BaseException:
        _discard(tmp)
        raise


def _keep_access(dest: str, tmp: str) -> None:
    """Give ``tmp`` the permission bits of ``dest``, which it replaces, and its owner where allowed.

    A private file (``0600``) stays private when it is rewritten; only a privileged process
    may give a file to another user, so otherwise the group is kept where this user may set
    it, and the owner becomes this user.
    """
    st = os.stat(dest)
    if hasattr(os, "chown"):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            with contextlib.suppress(OSError):
                os.chown(tmp, -1, st.st_gid)
    with contextlib.suppress(OSError):  # file systems without POSIX permissions: the save goes on
        os.chmod(tmp, stat.S_IMODE(st.st_mode))


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@dataclass
class Written:
    """A frame just written: the open NDArray and, when known without reading the file, its digest."""

    nd: Any
    digest: str | None = None
    """SHA-256 of the data section (spec 4.9) folded into the write, or ``None``."""


def _parallel_ok(data: Any, chunks: Sequence[int] | None, blocks: Sequence[int] | None) -> bool:
    """Whether the parallel writers can write ``data`` (else python-blosc2 does).

    NumPy arrays of either byte order (python-blosc2 stores a big-endian array's bytes
    and dtype as they are, and so does :func:`~mlarray.storage.compress.write_array`)
    and Blosc2 NDArrays, once the layout is known.
    """
    if chunks is None or blocks is None or not isinstance(data, (np.ndarray, blosc2.NDArray)):
        return False
    if data.size == 0 or not (len(chunks) == len(blocks) == data.ndim):
        return False
    if isinstance(data, blosc2.NDArray):
        return type(data) is blosc2.NDArray and data.schunk.nchunks == math.prod(chunk_grid(data.shape, data.chunks))
    return True


def write_data(
    tmp: str,
    data: Any,
    *,
    chunks: Sequence[int] | None,
    blocks: Sequence[int] | None,
    cparams: Any,
    mmap: bool = False,
    parallel: bool = True,
    nthreads: int | None = None,
) -> Written:
    """Write ``data`` (NumPy array, blosc2 NDArray or ``None`` for metadata-only) to ``tmp``.

    With a given chunk and block shape, the chunks are compressed on ``nthreads``
    threads (default: one per core) and the digest is folded into the write
    (:mod:`mlarray.storage.compress`, :mod:`mlarray.storage.recode` for an NDArray);
    the bytes are those python-blosc2 writes with ``parallel=False``. An NDArray whose
    compressed chunks python-blosc2 copies unchanged (same layout and codec) is still
    copied by python-blosc2: there is nothing to compress.
    """
    data = opened(data)
    if parallel and _parallel_ok(data, chunks, blocks):
        assert chunks is not None and blocks is not None
        if isinstance(data, np.ndarray):
            nd, digest = write_array(tmp, data, chunks, blocks, cparams, nthreads, mmap=mmap)
            return Written(nd, digest)
        # imported here: mlarray.storage.stream (used by recode) imports this module
        from mlarray.storage.recode import copies_verbatim, write_ndarray

        if not copies_verbatim(data, chunks, blocks, cparams):
            nd, digest = write_ndarray(tmp, data, chunks, blocks, cparams, nthreads, mmap=mmap)
            return Written(nd, digest)
    kwargs: dict[str, Any] = {"urlpath": tmp, "mode": "w", "cparams": cparams}
    if mmap:
        kwargs["mmap_mode"] = "w+"
    if data is None:
        return Written(blosc2.empty((0,), dtype=np.uint8, **kwargs))
    if chunks is not None:
        kwargs["chunks"] = tuple(chunks)
    if blocks is not None:
        kwargs["blocks"] = tuple(blocks)
    if isinstance(data, blosc2.NDArray):
        return Written(data.copy(**kwargs))
    return Written(blosc2.asarray(np.ascontiguousarray(data), **kwargs))


def compress_array(
    data: np.ndarray[Any, Any],
    *,
    chunks: Sequence[int] | None,
    blocks: Sequence[int] | None,
    cparams: Any,
    dparams: Any = None,
    nthreads: int | None = None,
) -> Any:
    """An in-memory Blosc2 NDArray holding ``data`` (what ``blosc2.asarray`` builds without a path).

    With a given chunk and block shape the chunks are compressed on ``nthreads``
    threads (:func:`~mlarray.storage.compress.write_array` without a file): the array
    holds the chunks, index and frame ``blosc2.asarray`` builds.
    """
    if _parallel_ok(data, chunks, blocks) and isinstance(data, np.ndarray):
        assert chunks is not None and blocks is not None
        nd, _ = write_array(None, data, chunks, blocks, cparams, nthreads, dparams=dparams)
        return tracked(nd)
    kwargs: dict[str, Any] = {"cparams": cparams}
    if chunks is not None:
        kwargs["chunks"] = tuple(chunks)
    if blocks is not None:
        kwargs["blocks"] = tuple(blocks)
    if dparams is not None:
        kwargs["dparams"] = dparams
    return tracked(blosc2.asarray(np.ascontiguousarray(data), **kwargs))


def write_frame(
    tmp: str,
    data: Any,
    *,
    chunks: Sequence[int] | None,
    blocks: Sequence[int] | None,
    cparams: Any,
    mmap: bool = False,
) -> Any:
    """Write ``data`` to ``tmp`` (see :func:`write_data`) and return the open blosc2 NDArray."""
    return write_data(tmp, data, chunks=chunks, blocks=blocks, cparams=cparams, mmap=mmap).nd


def layout_of(nd: Any, strategy: str, patch_size: Sequence[int] | None) -> Layout:
    """The layout record of a written NDArray (what blosc2 actually used)."""
    codec, clevel, filters = describe_cparams(nd.schunk.cparams)
    return Layout(
        strategy=strategy,
        chunk_size=list(nd.chunks),
        block_size=list(nd.blocks),
        patch_size=None if patch_size is None else list(patch_size),
        codec=codec,
        clevel=clevel,
        filters=filters,
    )
