"""Dask integration: lazy Dask arrays over ``.mla`` files (the ``mlarray[dask]`` extra).

* :func:`from_mla` — one file, or many files of one shape and dtype stacked along a
  new axis; Dask blocks are the files' chunks.
* :meth:`mlarray.MLArray.to_dask` — the same for an image at hand.
* :func:`read_meta` — the headers, in the order :func:`from_mla` stacks the files.

Every task reads through its own read-only handle (:class:`MLAFile`), never one
shared between threads, and a task graph carries paths, not handles or data, so it
pickles and runs on a ``dask.distributed`` cluster whose workers see the files.
``import mlarray`` does not import this package or Dask.
"""

try:
    import dask.array  # noqa: F401 - the extra this package needs
except ImportError as exc:
    from mlarray.errors import MissingDependencyError

    raise MissingDependencyError('mlarray.dask needs Dask: pip install "mlarray[dask]"', module="dask") from exc

from mlarray.dask._array import StackMismatchError, array_of, expand, from_mla, read_meta
from mlarray.dask._source import CACHE_SIZE, MLAFile, close_handles, open_handles, process_budget

__all__ = [
    "CACHE_SIZE",
    "MLAFile",
    "StackMismatchError",
    "array_of",
    "close_handles",
    "expand",
    "from_mla",
    "open_handles",
    "process_budget",
    "read_meta",
]
