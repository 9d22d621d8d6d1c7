"""Reading and writing an :class:`~mlarray.api.MLArray`'s elements: indexing, ``read``, ``to_numpy``.

NumPy's semantics for every key (basic keys read the boxes they touch; arrays, lists and
masks are gathered from boxes read with basic keys), reads decoded straight into a caller's
``out``, in-place writes of ``'r+'`` and ``'w+'`` files (refused before they start when the
disk may not hold them) and private writes of ``'c'`` images. For a file, the chunks a read or write
touches are checked (spec 4.4.6) before any codec sees them.

Threads may share a handle. Those of a writable one (``'r+'``, ``'w+'``) take turns: while
C-Blosc2 writes, the file is rearranged in place (briefly even shorter), so a read at the
same time could fail or fault. Read-only handles read concurrently.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from mlarray import reading
from mlarray._state import ImageState
from mlarray.errors import CorruptFrameError, InvalidArgumentError, MLArrayError, ReadOnlyError, WriteFailedError
from mlarray.indexing import gather, gives_scalar, is_basic
from mlarray.reading import (
    any_result_shape,
    check_out,
    check_result_size,
    decompress_all,
    fast_read,
    memory_limit,
    selects_all,
    threads_of,
)
from mlarray.storage import fastread
from mlarray.storage.chunks import DataSection, room_needed
from mlarray.storage.frame import inspect_frame
from mlarray.writing import PrivateChunks, assign, written_box

F = TypeVar("F", bound=Callable[..., Any])
_LOCKS_MADE = threading.Lock()


def _one_at_a_time(method: F) -> F:
    """Serialise ``method`` among the threads sharing a writable handle (see the module's docstring)."""

    @functools.wraps(method)
    def serialised(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._mode not in ("r+", "w+"):
            return method(self, *args, **kwargs)
        lock = self.__dict__.get("_turns")
        if lock is None:
            with _LOCKS_MADE:
                lock = self.__dict__.setdefault("_turns", threading.RLock())
        with lock:
            return method(self, *args, **kwargs)

    return serialised  # type: ignore[return-value]


class ArrayAccess(ImageState):
    """Element access of an ``MLArray``: ``image[key]``, ``image[key] = value``, ``read``, ``to_numpy``."""

    def _require_array(self) -> Any:
        if not self._has_array():
            raise InvalidArgumentError("this is a metadata-only image: it has no array")
        return self._data

    def _patch_section(self) -> DataSection | None:
        """The data section the short patch path may read (a read-only handle decoding on one
        thread, with the compiled loop), else ``None``."""
        one_thread = threads_of(self._dparams, 1) == 1 and fastread.PATCH_THREADS_MIN <= 1
        return self._chunks if self._mode == "r" and one_thread else None

    @_one_at_a_time
    def __getitem__(self, key: Any) -> Any:
        section = self._patch_section()
        if section is not None:
            # a box of checked chunks: one call into C, no planning; larger results held against the memory first
            patch = section.read_patch(key, limit=reading.memory_limit)
            if patch is not None:
                scalar = patch.ndim == 0 and gives_scalar(key, len(section.layout.shape))  # not for (..., 0)
                return patch[()] if scalar else patch
        data = self._require_array()
        if self._nd is None:
            return data[key]
        shape = tuple(data.shape)
        check_result_size(shape, data.dtype, key, self._path)
        if not is_basic(key):  # arrays, lists, masks: NumPy's semantics over boxes read with basic keys
            return gather(shape, data.dtype, key, self._read_basic, memory_limit(), self._path)
        out = self._read_basic(key)
        scalar = gives_scalar(key, len(shape))
        if scalar and isinstance(out, np.ndarray) and out.ndim == 0:
            return out[()]
        return out if scalar or isinstance(out, np.ndarray) else np.asarray(out)

    def _read_basic(self, key: Any) -> Any:
        """``self[key]`` of a file-backed or compressed array for a key of integers, slices, ``...`` and ``None``."""
        data = self._data
        if self._chunks is not None:
            threads = threads_of(self._dparams, 1)
            if threads >= fastread.PATCH_THREADS_MIN and self._unwritten():
                out = fast_read(self._chunks, key, threads, self._path)  # checks each chunk before decoding it
                if out is not None:
                    return out
            self._chunks.check_key(key)  # spec 4.4.6: the chunks read are checked before blosc2 sees them
        try:
            return data[key]
        except MLArrayError:
            raise  # remote arrays: typed errors of the read itself
        except RuntimeError as exc:  # C-Blosc2 reports undecodable chunks this way
            raise CorruptFrameError(f"the array data cannot be decompressed ({exc})", path=self._path) from None

    @_one_at_a_time
    def read(self, key: Any = ..., *, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """``self[key]`` as a NumPy array, decoded straight into ``out`` when one is given.

        ``out`` must be a writable, C-contiguous NumPy array with the shape of the read and
        the image's dtype: for instance one slot of a preallocated batch, ``batch[i]``. A
        file-backed image then decodes every block the read touches straight into it, and
        a loop reading patches of one size reuses that memory instead of allocating a new
        result each time, whose pages the kernel must zero first (2-16% of a 128³ read's CPU
        time on the benchmark volumes, 7-24% of a whole load's). A read of the whole array
        (``read(out=...)``, or a key of full slices) takes the path of :meth:`to_numpy`
        (each chunk read from the file into a buffer of its thread's and checked there).
        Other images copy ``self[key]`` into ``out``.

        Returns ``out``, or a new array without it. If the read fails (a damaged chunk),
        what ``out`` holds is unspecified.

        Raises
        ------
        InvalidArgumentError
            ``out`` is not a writable C-contiguous array of the read's shape and the
            image's dtype.
        IndexError
            ``key`` does not index the array (as in NumPy).
        """
        if out is None:
            return np.asarray(self[key])
        data = self._require_array()
        check_out(out, any_result_shape(tuple(data.shape), key), data.dtype)
        if not isinstance(data, np.ndarray) and selects_all(tuple(data.shape), key):
            return self._decompress(data, out)
        section = self._patch_section()
        if section is not None and section.read_patch(key, out) is not None:  # a box, as in __getitem__
            return out
        threads = threads_of(self._dparams, 1)
        if (
            self._chunks is not None
            and self._nd is not None
            and threads >= fastread.PATCH_THREADS_MIN
            and self._unwritten()
            and fast_read(self._chunks, key, threads, self._path, out=out) is not None
        ):
            return out
        out[...] = self[key]
        return out

    def _unwritten(self) -> bool:
        """The file's chunks are what :attr:`_chunks` indexed: no data written since it was opened."""
        return not self._dirty and not isinstance(self._nd, PrivateChunks)

    @_one_at_a_time
    def __setitem__(self, key: Any, value: Any) -> None:
        data = self._require_array()
        if self._mode == "r":
            raise ReadOnlyError("the array was opened with mmap_mode='r'; open it with 'r+' to write", path=self._path)
        if isinstance(value, ArrayAccess):  # another MLArray
            value = value.to_numpy()
        check = self._chunks.check_key if self._chunks is not None else None
        if check is not None:
            check(key)  # spec 4.4.6: the chunks a write touches are checked before blosc2 sees them
        if self._mode == "c" and not isinstance(self._nd, PrivateChunks):
            data = self._nd = PrivateChunks(self._nd, self._path, check)  # written chunks stay in memory
        if self._nd is None:
            data[key] = value
            return
        writer = self._mode in ("r+", "w+") and self._chunks is not None and self._path is not None
        if writer:
            self._ensure_room(key)
        try:
            assign(data, key, value, path=self._path, check=check)  # NumPy's semantics and errors
        except MLArrayError:
            raise  # the key or the value, as NumPy reports them: nothing was written
        except RuntimeError as exc:  # C-Blosc2 could not write the chunks (a full disk, an I/O error)
            self._dirty = True
            raise WriteFailedError(
                f"writing into the file failed ({exc}); it may be damaged now: check it with mlarray validate",
                path=self._path,
            ) from None
        self._dirty = True
        if writer:
            # blosc2 appended the rewritten chunks and a new chunk index: check against this handle's file as it
            # is now (through its descriptor when the path names another file: MLArray.create replaced it here)
            old, path = self._chunks, self._path
            assert old is not None and path is not None
            source = path if old.names_checked_file(path) else (old.descriptor_path() or path)
            self._chunks = DataSection(source, inspect_frame(source))
            old.close()

    def _ensure_room(self, key: Any) -> None:
        """Refuse (``WRITE_FAILED``, nothing written) a write that might not fit on the disk.

        C-Blosc2 grows a file it writes through a memory map; running out of disk space
        then is a fault on the map that kills the process (``SIGBUS``) halfway through the
        write, without an exception and with the file's chunk index lost.
        """
        assert self._chunks is not None and self._path is not None
        shape = tuple(self._chunks.layout.shape)
        try:
            box = written_box(shape, key)
        except (IndexError, TypeError, ValueError):
            return  # assign reports the key as NumPy does
        if box is None:
            return  # selects nothing: nothing is written
        needed = room_needed(self._chunks.layout, box, os.path.getsize(self._path))
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(self._path))).free
        if free < needed:
            raise WriteFailedError(
                f"not enough free disk space for this write (it may need {needed} bytes; {free} are free); "
                "nothing was written",
                path=self._path,
            )

    @_one_at_a_time
    def to_numpy(self, *, scaled: bool = False) -> np.ndarray[Any, Any]:
        """The whole array as a NumPy array (decompressed for a file-backed array).

        With ``scaled=True`` the result holds physical values: when ``meta.scaling``
        says the array stores raw values (``stored='raw'``, e.g. ``convert --keep-raw``),
        ``raw * slope + intercept`` is applied in float64. Arrays that store physical
        values, or have no scaling, are returned as stored either way.
        """
        data = self._require_array()
        out = data if isinstance(data, np.ndarray) else self._decompress(data)
        scaling = self._meta.scaling
        if scaled and scaling is not None and scaling.stored == "raw":
            return scaling.to_physical(out)
        return out

    def _decompress(self, data: Any, out: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """The whole of a compressed (file-backed or in-memory) array, into ``out`` when given."""
        section = self._chunks if self._unwritten() else None
        threads = threads_of(self._dparams, 1)
        if self._chunks is not None and section is None:
            self._chunks.check_all(threads)  # spec 4.4.6: every chunk checked before blosc2 decompresses it
        return decompress_all(data, self._path, section, threads, out=out)  # with the section: checks as it reads

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        out = self.to_numpy()
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out.copy() if copy else out
