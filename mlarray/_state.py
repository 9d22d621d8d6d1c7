"""The instance state of an :class:`~mlarray.api.MLArray`, declared once for its mixins.

``MLArray`` is assembled from mixins: :mod:`mlarray._access` (indexing, ``read``,
``to_numpy``, in-place writes), :mod:`mlarray._opening` (``load``, ``open``,
``create``), :mod:`mlarray._saving` (``save``, ``close``), :mod:`mlarray._compression`
(in-memory compression, the storage plan), :mod:`mlarray._geometry` and
:mod:`mlarray._constructors`. :class:`ImageState` is their common base: it declares
the attributes they share (for the type checker; it sets nothing) and the members
``MLArray`` itself provides. It comes last in ``MLArray``'s method resolution order,
so its placeholders never hide a real definition.

This module does no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlarray.models import Meta
    from mlarray.storage.chunks import DataSection
    from mlarray.storage.locking import FileLock


class ImageState:
    """The attributes of an ``MLArray`` (set by ``MLArray.__init__`` and ``_init_empty``)."""

    _np: np.ndarray[Any, Any] | None
    """The data held in memory as a NumPy array, else ``None``."""
    _nd: Any
    """The data as a Blosc2 NDArray (file-backed or compressed in memory), else ``None``."""
    _path: str | None
    """The file or URL the image is open on, else ``None``."""
    _mode: str | None
    """The access granted on the file: ``'r'``, ``'r+'``, ``'w+'`` or ``'c'`` (``None`` in memory)."""
    _closed: bool
    """``close`` was called: the data are gone."""
    _dparams: Any
    """Blosc2 decompression parameters given by the caller."""
    _persisted: dict[str, Any] | None
    """The header as the file holds it (to tell whether ``close`` must rewrite it)."""
    _dirty: bool
    """Data were written since the file was opened."""
    _lock: FileLock | None
    """The write lock held on the file (``'r+'``/``'w+'``)."""
    _requested: tuple[str, str | None] | None
    """``(mode, mmap_mode)`` as given to ``open``/``create``."""
    _chunks: DataSection | None
    """The chunk index of the file, checked before Blosc2 reads a chunk (spec 4.4.6)."""
    _remote: tuple[str | None, dict[str, Any]] | None
    """``(URL or None for a file object, storage options)`` of a remote image."""
    _layout_args: dict[str, Any] | None
    """Layout arguments still to apply (constructor or ``compress``); ``None``: keep ``meta.layout``."""
    _meta: Meta
    _dropped: tuple[str, ...]
    """Members of the file's newer-minor header that ``_meta`` does not hold (warned of when it is written)."""

    @property
    def shape(self) -> tuple[int, ...] | None:
        raise NotImplementedError  # provided by MLArray

    @property
    def dtype(self) -> np.dtype[Any] | None:
        raise NotImplementedError  # provided by MLArray

    @property
    def _data(self) -> Any:
        raise NotImplementedError  # provided by MLArray

    def _has_array(self) -> bool:
        raise NotImplementedError  # provided by MLArray

    def to_numpy(self) -> np.ndarray[Any, Any]:
        raise NotImplementedError  # provided by mlarray._access.ArrayAccess

    def _write_to(self, tmp: str, source: Any, target: str | None = None) -> Any:
        raise NotImplementedError  # provided by MLArray

    def _persisted_header(self) -> Meta:
        raise NotImplementedError  # provided by mlarray._saving.FilePersistence
