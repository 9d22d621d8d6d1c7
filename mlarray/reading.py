"""The memory-mapped data of a file-backed array: read checks, full decompression, private copies.

Reads go through our own block decoder (:mod:`mlarray.storage.fastread`) when it can serve
them (:func:`fast_read`), and through python-blosc2 otherwise.

Every read of a memory-mapped ``.mla`` goes through :func:`check_result_size` first, so a
hostile declared shape (or a typo) raises ``RESOURCE_LIMIT`` instead of asking for more
memory than the machine has. It is on the patch-read path, so it stays cheap: keys made
of slices and integers are sized without NumPy. ``mmap_mode='c'`` arrays switch to a
private in-memory copy of the compressed frame on their first write (:func:`private_copy`).
"""

from __future__ import annotations

import functools
import math
import os
from typing import TYPE_CHECKING, Any

import blosc2
import numpy as np

from mlarray.errors import CorruptFrameError, InvalidArgumentError, MLArrayError, ResourceLimitError
from mlarray.indexing import probe
from mlarray.storage import fastread
from mlarray.storage.selection import normalize_key

if TYPE_CHECKING:
    from mlarray.storage.chunks import DataSection


def private_copy(nd: Any, path: str | None) -> Any:
    """An in-memory, writable copy of a mapped frame (its compressed bytes; nothing is decompressed).

    This is how ``mmap_mode='c'`` writes: C-Blosc2's own copy-on-write mapping cannot grow
    past the file's size and crashes the process when a write needs more room.
    """
    try:
        return blosc2.ndarray_from_cframe(nd.schunk.to_cframe(), copy=True)
    except Exception as exc:
        raise CorruptFrameError(f"cannot make a private copy of the frame ({exc})", path=path) from None


@functools.cache
def memory_limit() -> int:
    """Bytes of physical memory: no single read may need more."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 40


def result_shape(shape: tuple[int, ...], key: Any) -> tuple[int, ...] | None:
    """Shape of ``array[key]`` for keys made of slices and integers (the patch-read case)."""
    parts = key if isinstance(key, tuple) else (key,)
    if len(parts) > len(shape):
        return None
    out: list[int] = []
    for part, n in zip(parts, shape, strict=False):
        if isinstance(part, slice):
            try:
                out.append(len(range(*part.indices(n))))
            except (TypeError, ValueError):  # not integers, or a zero step: the array reports it
                return None
        elif not isinstance(part, (int, np.integer)) or isinstance(part, bool):
            return None
    return (*out, *shape[len(parts) :])


def selects_all(shape: tuple[int, ...], key: Any) -> bool:
    """Whether ``array[key]`` is the whole array in its own shape (``...``, ``()``, full step-1 slices)."""
    parts = normalize_key(key, shape)
    return parts is not None and all(
        not p.dropped and p.start == 0 and p.stop == n for p, n in zip(parts, shape, strict=True)
    )


def any_result_shape(shape: tuple[int, ...], key: Any) -> tuple[int, ...]:
    """Shape of ``array[key]`` for any NumPy key; NumPy's own error for a bad one."""
    result = result_shape(shape, key)
    if result is None:  # Ellipsis, arrays, None, ...: NumPy works the shape out on elements of no size
        result = np.shape(probe(shape, key))
    return result


def check_result_size(shape: tuple[int, ...], dtype: Any, key: Any, path: str | None) -> None:
    """Refuse a read whose result would not fit in memory (a hostile declared shape, or a typo)."""
    try:
        result = any_result_shape(shape, key)
    except (IndexError, TypeError, ValueError):
        probe(shape, key)  # NumPy's own error for this key, as NumPy reports it
        return  # NumPy takes the key: the array itself reports what it cannot read
    nbytes = math.prod(result) * np.dtype(dtype).itemsize
    if nbytes > memory_limit():
        raise ResourceLimitError(f"this read needs {nbytes} bytes, more than the machine's memory", path=path)


def check_out(out: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
    """``out`` if it can take a read of ``shape`` and ``dtype`` in place, else ``INVALID_ARGUMENT``."""
    if not isinstance(out, np.ndarray):
        raise InvalidArgumentError(f"out must be a NumPy array, got {type(out).__name__}")
    dtype = np.dtype(dtype)
    problems = []
    if out.shape != shape:
        problems.append(f"shape {out.shape} (the read has {shape})")
    if out.dtype != dtype:
        problems.append(f"dtype {out.dtype} (the image stores {dtype})")
    if not out.flags.c_contiguous:
        problems.append("is not C-contiguous")
    if not out.flags.writeable:
        problems.append("is read-only")
    if problems:
        raise InvalidArgumentError("out does not fit the read: " + ", ".join(problems))
    return out


def threads_of(dparams: Any, default: int) -> int:
    """The ``nthreads`` of decompression parameters (a dict or ``blosc2.DParams``), else ``default``."""
    value = dparams.get("nthreads") if isinstance(dparams, dict) else getattr(dparams, "nthreads", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def fast_read(
    section: DataSection,
    key: Any,
    nthreads: int,
    path: str | None,
    whole: bool = False,
    out: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any] | None:
    """``array[key]`` decoded by :mod:`mlarray.storage.fastread`, or ``None`` when it cannot serve it.

    Every chunk is checked (spec 4.4.4-4.4.6) before C-Blosc2 sees it:
    :meth:`DataSection.chunk_refs` checks the touched chunks' headers before the read
    starts and the block loop each block before it decodes it, and
    :meth:`DataSection.chunk_bytes` checks any chunk it hands out whole. With ``whole``
    (the whole array), the block loop reads each chunk from the file into a buffer of its
    own and checks it there (:meth:`DataSection.chunk_offsets`). With ``out`` (checked by
    :func:`check_out`), the blocks are decoded straight into it.
    """
    if not fastread.available():
        return None
    section.ensure_unshortened()  # every read path: SIGBUS past a shortened end, stale chunk index after a write
    return fastread.read_region(
        section.layout,
        section.entries,
        section.chunk_bytes,
        key,
        out=out,
        nthreads=nthreads,
        path=path,
        refs=section.chunk_refs,
        file_refs=section.chunk_offsets if whole else None,
        marks=section.block_marks(),
        specials=section.special_values,
    )


def decompress_all(
    nd: Any,
    path: str | None,
    section: DataSection | None = None,
    nthreads: int = 1,
    out: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """The whole array of ``nd`` as NumPy (C-Blosc2 failures become ``CORRUPT_FRAME``).

    With the checked data ``section`` of the file, our own decoder reads it with ``nthreads``
    threads; python-blosc2 reads what it cannot. With ``out`` (checked by :func:`check_out`)
    the array is decoded into it and ``out`` is returned.
    """
    if out is None:
        check_result_size(tuple(nd.shape), nd.dtype, ..., path)
    if section is not None:
        try:  # spec 8, step 10: each chunk is checked before it is decoded (in the block loop's own copy)
            done = fast_read(section, ..., nthreads, path, whole=True, out=out)
        except CorruptFrameError:
            # report what a one-thread reader reports: the first bad chunk in chunk order
            section.check_all()
            if nthreads > 1:
                fast_read(section, ..., 1, path, whole=True, out=out)
            raise
        if done is not None:
            return done
        section.check_all(nthreads)  # python-blosc2 reads it: every chunk checked first
    try:
        result = nd[...]
    except MLArrayError:
        raise  # already typed (e.g. a remote read that failed)
    except MemoryError:
        raise ResourceLimitError("not enough memory to decompress the array", path=path) from None
    except Exception as exc:
        raise CorruptFrameError(f"the array data cannot be decompressed ({exc})", path=path) from None
    if out is None:
        return np.asarray(result)
    out[...] = result
    return out
