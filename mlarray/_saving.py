"""Persisting an :class:`~mlarray.api.MLArray`: ``save`` and ``close``.

``save`` validates the complete header before the first byte is written and writes
the image to a temporary file beside the target that then replaces it atomically;
``close`` writes the metadata edits of a file opened read/write to a copy of the file
that replaces it the same way. The frame itself is written by ``MLArray._write_to``.

Kept apart from :mod:`mlarray.api` so the ``MLArray`` class stays readable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from mlarray._state import ImageState
from mlarray._version import __version__
from mlarray.errors import (
    DroppedMembersWarning,
    FileChangedError,
    HeaderValidationError,
    InvalidArgumentError,
    ReadOnlyError,
    ResourceLimitError,
    WriteFailedError,
    caller_stacklevel,
)
from mlarray.models import Meta, Writer, parse_header
from mlarray.remote import is_remote as _is_remote
from mlarray.storage import atomic_target, check_path, header_bytes, open_frame, write_header
from mlarray.storage.locking import refuse_writers, replacing
from mlarray.versions import SCHEMA_VERSION

if TYPE_CHECKING:
    from mlarray.api import MLArray

WRITER = "mlarray"


class FilePersistence(ImageState):
    """``save`` and ``close``; mixed into :class:`~mlarray.api.MLArray`."""

    def save(self, path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> None:
        """Write the image to ``path`` atomically.

        The complete header is validated before anything is written; the data go to a
        temporary file beside ``path`` that is fsynced and renamed over it, so a failed
        or killed save leaves any previous file intact. Saving over the file this
        image was opened from works. A URL (``s3://...``, with ``storage_options``) is
        written to a local temporary file first and then uploaded once.
        """
        if _is_remote(path) and not isinstance(path, str):
            raise InvalidArgumentError(
                f"save writes to a path or a URL, not to a file object ({type(path).__name__}); "
                "save to a file and read its bytes"
            )
        if _is_remote(path):
            from mlarray.remote.open import save_remote

            save_remote(cast("MLArray", self), str(path), storage_options)
            return
        p = check_path(path, must_exist=False)
        data = self._data if self._has_array() else None
        header_bytes(self._header_for_save(layout=self._meta.layout))
        local = self._path is not None and self._remote is None
        reopen = local and os.path.exists(p) and os.path.samefile(p, str(self._path))
        own = self._lock is not None and self._lock.holds(p)  # saving over the file this handle writes
        with contextlib.nullcontext() if own else replacing(p), atomic_target(p) as tmp:
            self._write_to(tmp, source=data, target=p)
        if reopen:
            from mlarray.api import MLArray

            mode = "r+" if self._mode == "w+" else self._mode
            fresh = MLArray.open(p, mode or "r", dparams=self._dparams)
            if self._lock is not None:
                self._lock.release()
            self._nd, self._meta, self._persisted = fresh._nd, fresh._meta, fresh._persisted
            self._chunks = fresh._chunks
            self._lock, fresh._lock = fresh._lock, None
            self._dirty = False

    def _warn_dropped(self) -> None:
        """Warn once that writing this header drops members of the file's newer minor version (spec 2.3)."""
        if self._dropped:
            where = f"{self._path}: " if self._path else ""
            warnings.warn(
                f"{where}the header was written by a newer minor schema version; writing it as {SCHEMA_VERSION} drops "
                f"the members this version does not know: {', '.join(self._dropped)} (upgrade mlarray to keep them)",
                DroppedMembersWarning,
                stacklevel=caller_stacklevel(),
            )
            self._dropped = ()

    def _header_for_save(self, layout: Any) -> Meta:
        self._warn_dropped()
        meta = self._meta.model_copy(deep=True)
        meta.schema_version = SCHEMA_VERSION  # the writer writes the version whose rules it checked
        meta.writer = Writer(name=WRITER, version=__version__)
        meta.layout = layout
        meta.integrity = self._meta.integrity if self._nd is not None and not self._dirty else None
        return meta

    def _persisted_header(self) -> Meta:
        """The header the file had when it was opened, ready to be written again (digest left to refresh)."""
        self._warn_dropped()
        meta = parse_header(self._persisted, path=self._path)
        meta.writer = Writer(name=WRITER, version=__version__)
        meta.integrity = None
        return meta

    def close(self) -> None:
        """Persist metadata edits (``'r+'``/``'w+'``) and release the file. Idempotent.

        The new header (and, after data writes, the refreshed integrity digest) is
        written to a copy of the file that atomically replaces it, so a crash during
        ``close`` leaves the previous, complete file. This costs one copy of the file.
        When the file at the path is no longer the one this handle opened (replaced by
        ``MLArray.create`` in this process), nothing is written over the new file. A forked
        child closing a writer it inherited writes nothing either: the file is its parent's.

        Raises
        ------
        HeaderValidationError
            The metadata edits make an invalid header (an edit inside a list of ``meta``,
            which is checked only here). They are not written; data written through this
            handle stay, under the header the file had, with its digest refreshed.
        """
        if self._closed:
            return
        try:
            replaced = self._lock is not None and not self._lock.holds(self._path or "")
            writer = self._nd is not None and self._mode in ("r+", "w+") and self._path is not None
            if self._lock is not None and self._lock.inherited():
                writer = False  # a forked child's copy of its parent's writer: the parent persists
            if (
                writer
                and replaced
                and self._lock is not None
                and not self._lock.replaced_here()
                and (self._dirty or self._meta.model_dump(mode="json") != self._persisted)
            ):
                raise WriteFailedError(
                    "the file was replaced by another program while this handle had it open; "
                    "the edits made through this handle are not in it",
                    path=self._path,
                )
            if writer and not replaced and self._path is not None:
                current = self._meta.model_dump(mode="json")
                if current != self._persisted or self._dirty:
                    try:
                        meta = self._header_for_save(layout=self._meta.layout)  # an in-place list edit may fail here
                        header_bytes(meta)  # validate before touching anything
                    except HeaderValidationError:
                        if self._dirty:  # the data are in the file: keep its digest true, under the old header
                            self._nd = None
                            _rewrite_header(self._path, self._persisted_header(), refresh_digest=True)
                        raise
                    self._nd = None  # release the mapping: every write is in the file now
                    try:
                        _rewrite_header(self._path, meta, refresh_digest=self._dirty)
                    except (WriteFailedError, ReadOnlyError, ResourceLimitError) as exc:
                        if not self._dirty:
                            raise
                        reason = exc.message.removeprefix(f"{exc.path}: ").split("; the previous file")[0]
                        raise type(exc)(
                            f"{reason}: the data written through this handle are in the file, but its header "
                            "could not be rewritten, so its digest no longer matches (DIGEST_MISMATCH); "
                            "make room and write it again with MLArray.load(path).save(path)",
                            path=self._path,
                        ) from None
        finally:
            self._nd = None
            self._np = None
            if self._chunks is not None:
                self._chunks.close()
                self._chunks = None
            self._closed = True
            if self._lock is not None:
                self._lock.release()
                self._lock = None


def _rewrite_header(
    path: str, meta: Meta, *, refresh_digest: bool, unchanged: Callable[[], None] | None = None
) -> None:
    """Replace the header of ``path`` by writing a copy and renaming it over the original.

    ``unchanged`` runs before and after the copy and raises when the file is no longer the
    one the caller read (nothing is renamed then).
    """
    with atomic_target(path) as tmp:
        if unchanged is not None:
            unchanged()
        shutil.copyfile(path, tmp)
        if unchanged is not None:
            unchanged()  # nothing wrote the file during the copy
        nd = open_frame(tmp, "r+")
        write_header(nd, meta, digest_of=tmp if refresh_digest else None)
        del nd


def rewrite_header_of(image: MLArray) -> None:
    """Write the metadata of ``image``, open read-only (``'r'``), into its file: one atomic header rewrite.

    For commands that only annotate a file (``mlarray stats``): no writer's lock is taken,
    so readers of the file never see a writer (:class:`~mlarray.errors.ConcurrentWriterWarning`);
    the copy that replaces the file is checked instead. The data are not touched (the digest
    stays). Raises ``LOCK_HELD`` when a writer has the file open, ``FILE_CHANGED`` when the
    path names another file by now, or the file was written in place since it was opened
    (also while it was copied): the annotations would describe other data.
    """
    path, section = image._path, image._chunks
    if path is None or section is None or image._mode != "r":
        raise InvalidArgumentError("only an image opened read-only from a local file can have its header rewritten")
    refuse_writers(path)
    meta = image._header_for_save(layout=image.meta.layout)
    header_bytes(meta)

    def unchanged() -> None:
        if not section.names_checked_file(path):
            raise FileChangedError(
                "the path names another file than this image read (replaced since it was opened); open it again",
                path=path,
            )
        section.ensure_unshortened()  # FILE_CHANGED when written in place since it was opened

    _rewrite_header(path, meta, refresh_digest=False, unchanged=unchanged)
    image._persisted = image.meta.model_dump(mode="json")
