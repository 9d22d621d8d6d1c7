"""Voxel data one slab at a time: reading Fortran-ordered streams, writing them, and piecewise arithmetic.

NIfTI and NRRD store voxels with the first axis fastest (Fortran order), so a slab that
spans whole chunks along the *last* array axis is one contiguous run of bytes in the
file. Streaming conversion reads and writes such slabs (:mod:`mlarray.convert._stream`).
This module holds what the format modules share for that:

* :func:`export_slabs`: the slabs in which an image is read for export;
* :func:`fortran_axis`: which axis to cut slabs along when writing ``.mla``;
* :class:`FortranStream`: region reads from a byte stream that is raw (seeked), gzip or
  bzip2 (decompressed forward; a read behind the current position restarts it), used for
  NRRD, which pynrrd can only read whole;
* :func:`nrrd_stream`, :func:`write_fortran`, :class:`HeaderOnly`: NRRD data without
  pynrrd holding the whole array (it offers whole reads and writes only);
* :func:`map_pieces`: elementwise arithmetic on a slab a million voxels at a time, so
  binary64 intermediates (scaling) never cost eight bytes per voxel of a whole slab.
"""

from __future__ import annotations

import bz2
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlarray.convert._scaling import PhysicalScan
from mlarray.errors import SourceFormatError
from mlarray.storage import stream
from mlarray.storage.stream import Region, slab_regions

if TYPE_CHECKING:
    from mlarray.api import MLArray

Array = np.ndarray[Any, Any]

PIECE_VOXELS = 1 << 20
"""Voxels per piece of :func:`map_pieces` (8 MiB of binary64 intermediates)."""
READ_BYTES = 1 << 20
"""Compressed bytes read (and decompressed bytes skipped) at a time."""


def export_slabs(image: MLArray, axis: int = -1, max_bytes: int | None = None) -> list[Region]:
    """Regions of ``image`` to read one after the other along ``axis``, each whole chunks thick.

    An image in memory is one region (it is in memory already); a file-backed one is cut
    into slabs of whole chunks (:func:`~mlarray.storage.stream.slab_regions`), so each
    chunk is decompressed once and only one slab is in memory at a time.
    """
    shape, dtype = image.shape, image.dtype
    assert shape is not None and dtype is not None
    full = tuple(slice(0, n) for n in shape)
    layout = image.meta.layout
    if image.filepath is None or layout is None or 0 in shape:
        return [full]
    return slab_regions(shape, layout.chunk_size, dtype.itemsize, axis=axis, max_bytes=max_bytes)


def fortran_axis(shape: Sequence[int], chunks: Sequence[int], itemsize: int, max_bytes: int | None = None) -> int:
    """The slab axis for a Fortran-ordered source: the slowest axis cut into more than one chunk.

    Slabs along the last axis are contiguous in the source and read (or decompressed)
    once. When the last axis fits in one chunk (a few channels, or fewer slices than a
    chunk holds), a slab along it would be the whole array: unless the array fits in the
    slab budget (``max_bytes``, default :data:`~mlarray.storage.stream.SLAB_BYTES`), the
    next slower axis is used, and each slab is then several runs of the source (a
    compressed source is decompressed again for each slab).
    """
    budget = stream.SLAB_BYTES if max_bytes is None else max_bytes
    if math.prod(shape) * itemsize <= budget:
        return len(shape) - 1
    for axis in range(len(shape) - 1, -1, -1):
        if chunks[axis] < shape[axis]:
            return axis
    return len(shape) - 1


def pieces(shape: Sequence[int], fortran: bool, voxels: int = PIECE_VOXELS) -> Iterator[Region]:
    """Regions of about ``voxels`` voxels covering ``shape``, cut along its slowest axis in memory."""
    if not shape or math.prod(shape) == 0:
        return
    axis = len(shape) - 1 if fortran else 0
    per_plane = math.prod(shape) // shape[axis]
    step = max(1, voxels // max(per_plane, 1))
    for start in range(0, shape[axis], step):
        region = [slice(None)] * len(shape)
        region[axis] = slice(start, min(start + step, shape[axis]))
        yield tuple(region)


def map_pieces(func: Callable[[Array], Array], values: Array, dtype: Any) -> Array:
    """``func(values).astype(dtype)`` computed piece by piece into one array of ``values``' memory order."""
    fortran = values.flags.f_contiguous and not values.flags.c_contiguous
    out = np.empty(values.shape, dtype=dtype, order="F" if fortran else "C")
    for key in pieces(values.shape, fortran):
        out[key] = func(values[key])
    return out


def all_pieces(test: Callable[[Array], bool], values: Array) -> bool:
    """Whether ``test`` holds for every piece of ``values``."""
    fortran = values.flags.f_contiguous and not values.flags.c_contiguous
    return all(test(values[key]) for key in pieces(values.shape, fortran))


class FortranStream:
    """An array stored Fortran-ordered in a file from ``offset`` on: raw, gzip or bzip2.

    Parameters
    ----------
    path : str
        The file holding the data.
    offset : int
        Where the (raw or compressed) data start in the file.
    encoding : {'raw', 'gzip', 'bzip2'}
    shape, dtype : the array (Fortran order: ``shape[0]`` varies fastest)
    skip : int
        Bytes to skip after decompression (NRRD ``byte skip`` of compressed data).
    """

    def __init__(self, path: str, offset: int, encoding: str, shape: Sequence[int], dtype: Any, skip: int = 0) -> None:
        self.path, self.offset, self.encoding, self.skip = path, offset, encoding, skip
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._position = 0
        self._decompressor: Any = None
        self._pending = b""
        if encoding == "raw" and os.fstat(self._file.fileno()).st_size - offset < self.nbytes:
            self.close()
            raise SourceFormatError("the file holds fewer data bytes than its header says", path=path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FortranStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, region: Region) -> Array:
        """The voxels of ``region``: full extent on every axis but one, a run on that axis."""
        cut = [k for k, (r, n) in enumerate(zip(region, self.shape, strict=True)) if (r.start, r.stop) != (0, n)]
        axis = cut[0] if cut else len(self.shape) - 1
        if len(cut) > 1:
            raise ValueError(f"a slab region may cut one axis, not {len(cut)}")
        out = np.empty(tuple(r.stop - r.start for r in region), dtype=self.dtype, order="F")
        inner = math.prod(self.shape[:axis]) * self.dtype.itemsize
        run = inner * (region[axis].stop - region[axis].start)
        plane = inner * self.shape[axis]
        # the runs of the region, in file order, are the consecutive parts of ``out`` in Fortran order
        buffer = out.reshape(-1, order="F").view(np.uint8).data  # a view: out is Fortran-contiguous
        for number in range(math.prod(self.shape[axis + 1 :])):
            self._read_into(number * plane + region[axis].start * inner, buffer[number * run : (number + 1) * run])
        return out

    def check_end(self) -> None:
        """Raise :class:`SourceFormatError` when the data run past what the header says (as pynrrd does)."""
        if self.encoding == "raw":
            extra = os.fstat(self._file.fileno()).st_size - self.offset - self.nbytes
        else:
            self._seek(self.nbytes)
            extra = len(self._more(1))
        if extra > 0:
            raise SourceFormatError("the file holds more data bytes than its header says", path=self.path)

    # ------------------------------------------------------------------ byte access

    def _read_into(self, start: int, target: memoryview) -> None:
        """Fill ``target`` with the data bytes from ``start`` on."""
        size = len(target)
        if self.encoding == "raw":
            done = 0
            while done < size:
                n = os.preadv(self._file.fileno(), [target[done:]], self.offset + start + done)
                if n <= 0:
                    raise SourceFormatError("the file holds fewer data bytes than its header says", path=self.path)
                done += n
            return
        self._seek(start)
        done = 0
        while done < size:
            part = self._more(size - done)
            if not part:
                raise SourceFormatError("the compressed data end before the header says", path=self.path)
            target[done : done + len(part)] = part
            done += len(part)

    def _seek(self, start: int) -> None:
        """Move the decompressed position to ``start`` (forward, or from the beginning again)."""
        start += self.skip
        if self._decompressor is None or start < self._position:
            self._restart()
        while self._position < start:
            if not self._more(min(start - self._position, READ_BYTES)):
                raise SourceFormatError("the compressed data end before the header says", path=self.path)

    def _restart(self) -> None:
        self._file.seek(self.offset)
        if self.encoding == "gzip":
            self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
        else:
            self._decompressor = bz2.BZ2Decompressor()
        self._position, self._pending = 0, b""

    def _more(self, limit: int) -> bytes:
        """Up to ``limit`` decompressed bytes from the current position (``b""`` at the end).

        Output is produced at most :data:`READ_BYTES` at a time, however well the data compress.
        """
        decompressor = self._decompressor
        while not self._pending:
            if decompressor.eof:
                return b""
            try:
                if self.encoding == "gzip":
                    data = decompressor.unconsumed_tail or self._file.read(READ_BYTES)
                    if not data:
                        return b""
                    self._pending = decompressor.decompress(data, READ_BYTES)
                else:
                    data = self._file.read(READ_BYTES) if decompressor.needs_input else b""
                    if decompressor.needs_input and not data:
                        return b""
                    self._pending = decompressor.decompress(data, max_length=READ_BYTES)
            except (zlib.error, OSError, EOFError, ValueError) as exc:
                raise SourceFormatError(f"the compressed data are damaged ({exc})", path=self.path) from None
        out, self._pending = self._pending[:limit], self._pending[limit:]
        self._position += len(out)
        return out


# --------------------------------------------------------------------------- NRRD data


STREAMED_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}
"""NRRD encodings read and written slab by slab (ASCII is read and written whole, by pynrrd)."""


def nrrd_stream(path: str, header: dict[str, Any], data_start: int, dtype: Any) -> FortranStream | None:
    """The data of an NRRD file as a :class:`FortranStream`, found as pynrrd's ``read_data`` finds them.

    ``data_start`` is where the header of ``path`` ends. ``None`` when the file uses what
    only a whole read handles (ASCII, a byte skip of -1 on compressed data, a missing
    data file ...): the caller then reads it with pynrrd, which also reports any error.
    """
    encoding = STREAMED_ENCODINGS.get(str(header.get("encoding", "")))
    sizes = header.get("sizes")
    if encoding is None or sizes is None or len(sizes) != header.get("dimension"):
        return None
    line_skip = int(header.get("lineskip", header.get("line skip", 0)))
    byte_skip = int(header.get("byteskip", header.get("byte skip", 0)))
    data_file = header.get("datafile", header.get("data file"))
    if data_file is not None:
        path = data_file if os.path.isabs(data_file) else os.path.join(os.path.dirname(path), data_file)
        data_start = 0
    if line_skip < 0 or byte_skip < -1 or (byte_skip == -1 and encoding != "raw") or not os.path.isfile(path):
        return None
    shape = tuple(int(n) for n in sizes)
    with open(path, "rb") as f:
        f.seek(data_start)
        for _ in range(line_skip):
            f.readline()
        offset = f.tell()
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if encoding == "raw":
        offset = os.path.getsize(path) - nbytes if byte_skip == -1 else offset + byte_skip
        return FortranStream(path, max(offset, 0), "raw", shape, dtype)
    # pynrrd skips ``byte skip`` bytes of the file *and* of the decompressed data: so do we, to read what it reads
    return FortranStream(path, offset + byte_skip, encoding, shape, dtype, skip=byte_skip)


class HeaderOnly:
    """What pynrrd's writer reads of an array to format the header: shape and type, and no bytes."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)

    def tobytes(self, order: str = "C") -> bytes:
        return b""


def write_fortran(f: Any, slabs: Iterable[Array], encoding: str, dtype: Any, level: int = 9) -> None:
    """Write consecutive slabs along the last axis in Fortran order, raw, gzip or bzip2 (pynrrd's streams and level)."""
    compressor: Any = None
    if encoding == "gzip":
        compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    elif encoding == "bzip2":
        compressor = bz2.BZ2Compressor(level)
    for slab in slabs:
        for k in range(slab.shape[-1]):
            plane = np.asarray(slab[..., k], dtype=dtype).tobytes(order="F")
            f.write(plane if compressor is None else compressor.compress(plane))
        del slab  # before the next slab is read
    if compressor is not None:
        f.write(compressor.flush())


def physical_dtype_of(image: MLArray) -> np.dtype[Any]:
    """The type of the physical values of ``image`` (:func:`~mlarray.convert._scaling.physical_array`), slab by slab."""
    dtype, scaling = image.dtype, image.meta.scaling
    assert dtype is not None
    if scaling is None or scaling.stored == "physical":
        return dtype
    scan = PhysicalScan(scaling.raw_dtype, scaling.slope, scaling.intercept, restores=False)
    for region in export_slabs(image):
        values = image[region]
        for key in pieces(values.shape, fortran=not values.flags.c_contiguous):
            scan.add(values[key])
    return scan.dtype()


def write_nrrd_data(
    tmp: str, header: dict[str, Any], detached: bool, slabs: Iterable[Array], encoding: str, dtype: Any
) -> None:
    """Replace the empty data stream pynrrd wrote after the header (or into the data file) with the array."""
    if detached:
        target, keep = os.path.join(os.path.dirname(tmp), str(header["data file"])), 0
    else:
        with open(tmp, "rb") as f:
            head = f.read()
        target, keep = tmp, head.index(b"\n\n") + 2  # the header ends at its first empty line
    with open(target, "r+b") as f:
        f.truncate(keep)
        f.seek(keep)
        write_fortran(f, slabs, encoding, dtype)
