"""The formats the benchmark compares: mlarray and the usual ways to store a volume.

Each format is a small adapter with the same verbs (write, open, read a region,
close, load everything) so the runner can time them identically. Reads always
return a NumPy array holding the data, so lazy formats (memory maps, proxies) are
charged for actually reading the bytes. Patch reads use one decompression thread
everywhere: that is the data-loader worker case the format is built for.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from benchmarks.datasets import Dataset

Key = tuple[Any, ...]


class Format:
    """Adapter interface; subclasses implement the verbs for one storage format."""

    name = "?"
    suffix = ""
    compressed = True
    threaded_load = False
    """Whether :meth:`load` can use more than one thread."""
    slow_random_access = False
    """Patch reads decompress the whole stream (gzip): the runner takes fewer samples."""

    def write(self, ds: Dataset, path: str) -> None:
        raise NotImplementedError

    def open(self, path: str) -> Any:
        raise NotImplementedError

    def read(self, handle: Any, key: Key) -> np.ndarray[Any, Any]:
        return np.asarray(handle[key])

    def close(self, handle: Any) -> None:
        """Release a handle returned by :meth:`open`."""

    def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
        handle = self.open(path)
        try:
            return self.read(handle, (Ellipsis,))
        finally:
            self.close(handle)

    def size(self, path: str) -> int:
        """Bytes on disk (a directory store counts every file)."""
        if os.path.isdir(path):
            return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
        return os.path.getsize(path)

    def remove(self, path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


class MLArrayFormat(Format):
    """mlarray with default settings (the layout optimizer and default codec)."""

    name = "mlarray"
    suffix = ".mla"
    threaded_load = True

    def write(self, ds: Dataset, path: str) -> None:
        from mlarray import MLArray

        MLArray(ds.array, spacing=ds.spacing, axis_labels=ds.axis_labels).save(path)

    def open(self, path: str) -> Any:
        from mlarray import MLArray

        return MLArray.open(path)

    def read(self, handle: Any, key: Key) -> np.ndarray[Any, Any]:
        return np.asarray(handle[key])

    def close(self, handle: Any) -> None:
        handle.close()

    def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
        from mlarray import MLArray

        return MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy()


class NpyMmap(Format):
    """Uncompressed ``.npy`` read through ``np.load(mmap_mode='r')``: the practical ceiling."""

    name = "npy-mmap"
    suffix = ".npy"
    compressed = False

    def write(self, ds: Dataset, path: str) -> None:
        np.save(path, ds.array)

    def open(self, path: str) -> Any:
        return np.load(path, mmap_mode="r")

    def read(self, handle: Any, key: Key) -> np.ndarray[Any, Any]:
        return np.array(handle[key])

    def close(self, handle: Any) -> None:
        mm = getattr(handle, "_mmap", None)
        if mm is not None:
            mm.close()

    def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
        return np.load(path)


class Blosc2Default(Format):
    """python-blosc2 with its own default chunking and compression parameters."""

    name = "blosc2"
    suffix = ".b2nd"
    threaded_load = True

    def write(self, ds: Dataset, path: str) -> None:
        import blosc2

        blosc2.asarray(ds.array, urlpath=path, mode="w")

    def open(self, path: str) -> Any:
        import blosc2

        return blosc2.open(path, mmap_mode="r", dparams=blosc2.DParams(nthreads=1))

    def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
        import blosc2

        return np.asarray(blosc2.open(path, mmap_mode="r", dparams=blosc2.DParams(nthreads=nthreads))[...])


def _chunks64(shape: tuple[int, ...], spatial: list[int]) -> tuple[int, ...]:
    """64 per spatial axis; non-spatial axes (channels) whole, so a patch reads each chunk once."""
    return tuple(min(64, n) if axis in spatial else n for axis, n in enumerate(shape))


class ZarrV3(Format):
    """zarr v3, Blosc LZ4 (clevel 5, byte shuffle), 64^3 chunks."""

    name = "zarr-v3"
    suffix = ".zarr"
    threaded_load = True

    def __init__(self) -> None:
        self._threads = 0

    def _use_threads(self, n: int) -> None:
        """Give zarr's event loop a pool of ``n`` decode threads (zarr decodes chunks in that pool)."""
        if n == self._threads:
            return
        from concurrent.futures import ThreadPoolExecutor

        from zarr.core import sync

        sync._get_loop().set_default_executor(ThreadPoolExecutor(max_workers=n, thread_name_prefix="bench-zarr"))
        self._threads = n

    def write(self, ds: Dataset, path: str) -> None:
        import zarr
        from zarr.codecs import BloscCodec

        self._use_threads(os.cpu_count() or 1)
        arr = zarr.create_array(
            store=path,
            shape=ds.array.shape,
            dtype=ds.array.dtype,
            chunks=_chunks64(ds.array.shape, ds.spatial_axes),
            compressors=BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
            zarr_format=3,
            overwrite=True,
        )
        arr[...] = ds.array

    def open(self, path: str) -> Any:
        import zarr

        self._use_threads(1)
        return zarr.open_array(path, mode="r")

    def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
        import zarr

        self._use_threads(nthreads)
        return np.asarray(zarr.open_array(path, mode="r")[...])


class H5py(Format):
    """HDF5 through h5py with 64^3 chunks and a built-in filter (``lzf`` or ``gzip``)."""

    suffix = ".h5"

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.name = f"h5py-{compression}"

    def write(self, ds: Dataset, path: str) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset(
                "data", data=ds.array, chunks=_chunks64(ds.array.shape, ds.spatial_axes), compression=self.compression
            )

    def open(self, path: str) -> Any:
        import h5py

        f = h5py.File(path, "r")
        return f, f["data"]

    def read(self, handle: Any, key: Key) -> np.ndarray[Any, Any]:
        return np.asarray(handle[1][key])

    def close(self, handle: Any) -> None:
        handle[0].close()


class NiftiGz(Format):
    """NIfTI-1 ``.nii.gz`` via nibabel: whole-file gzip, so a patch read inflates up to the patch."""

    name = "nifti-gz"
    suffix = ".nii.gz"
    slow_random_access = True

    def write(self, ds: Dataset, path: str) -> None:
        import nibabel as nib

        img = nib.Nifti1Image(ds.array, np.eye(4))
        img.set_data_dtype(ds.array.dtype)
        nib.save(img, path)

    def open(self, path: str) -> Any:
        import nibabel as nib

        return nib.load(path)

    def read(self, handle: Any, key: Key) -> np.ndarray[Any, Any]:
        return np.asarray(handle.dataobj[key])

    def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
        import nibabel as nib

        return np.asarray(nib.load(path).dataobj)


def all_formats() -> list[Format]:
    """Every format in table order: mlarray first, then the ceiling, then the compressed peers."""
    return [MLArrayFormat(), NpyMmap(), Blosc2Default(), ZarrV3(), H5py("lzf"), H5py("gzip"), NiftiGz()]
