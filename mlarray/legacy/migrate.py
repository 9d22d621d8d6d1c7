"""Migrate files of the earlier implementation to the current format: one file, or a whole dataset.

Each file is read safely (:mod:`mlarray.legacy.decode`), laid out anew and written
atomically, slab by slab (one slab of the array in memory at a time, so files larger
than memory migrate), so an interrupted migration never leaves a half-written file, and
``in_place`` replaces each legacy file only once its migrated copy is complete.
Nothing here knows about the CLI; the CLI adds the progress bar and the report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from mlarray.api import MLArray
from mlarray.errors import CorruptFrameError, InvalidArgumentError, MLArrayError, ResourceLimitError
from mlarray.jobs import find_mla as _find_mla
from mlarray.jobs import is_within
from mlarray.layout import PatchSize
from mlarray.legacy.mapping import LegacyMapping
from mlarray.legacy.reader import LegacyFile, is_legacy_file, load_legacy_array, read_legacy
from mlarray.storage import atomic_target, check_path, open_frame, read_header
from mlarray.storage.cparams import named_cparams
from mlarray.storage.locking import replacing


def load_legacy(path: str | os.PathLike[str]) -> tuple[MLArray, LegacyMapping]:
    """Load a legacy file into memory as an :class:`MLArray` with the mapped metadata (no warning)."""
    p = os.fspath(path)
    legacy = read_legacy(p)
    return load_legacy_array(MLArray, p, None, legacy=legacy, warn=False), legacy.mapping


def migrate_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    patch_size: PatchSize | None = None,
    cparams: Any = None,
    codec: str | None = None,
    clevel: int | None = None,
) -> LegacyMapping:
    """Read the legacy file ``src`` safely and write it as a current ``.mla`` file ``dst``.

    The array is laid out anew: for ``patch_size=None`` from the patch size the legacy
    file recorded (else the default); ``cparams`` as in :class:`MLArray`, or only a
    ``codec`` and/or a ``clevel``, the others as a save without ``cparams`` chooses them
    (``lz4hc``, level 5). ``dst`` is written atomically and may be ``src`` itself (an
    in-place migration); when ``dst`` is a symbolic link, the file it leads to is replaced.

    Raises
    ------
    UnsafeLegacyFileError
        The legacy header would have loaded a Python global; nothing is written.
    InvalidArgumentError
        ``cparams`` is given together with ``codec`` or ``clevel``, or these are unknown.
    MLArrayError
        The file cannot be read or the result cannot be written.
    """
    p = os.fspath(src)
    check_path(dst, must_exist=False)
    legacy = read_legacy(p)
    if legacy.meta.array is not None:
        cparams = _compression(cparams, codec, clevel, np.dtype(legacy.meta.array.dtype).itemsize)
    shape = legacy.meta.array.shape if legacy.has_array and legacy.meta.array is not None else None
    if shape is not None and 0 not in shape:
        _migrate_streaming(legacy, dst, patch_size, cparams)
        return legacy.mapping
    image = load_legacy_array(MLArray, p, None, legacy=legacy, warn=False)
    if patch_size is None:
        patch_size = _usable_patch(legacy.patch_size, image.spatial_ndim) or "default"
    meta = image.meta.model_copy(deep=True)
    meta.layout = None
    if image.shape is None:
        out = MLArray(None, meta=meta)
    else:
        out = MLArray(image.to_numpy(), meta=meta, patch_size=patch_size, cparams=cparams)
    out.save(dst)
    return legacy.mapping


def _migrate_streaming(
    legacy: LegacyFile, dst: str | os.PathLike[str], patch_size: PatchSize | None, cparams: Any
) -> None:
    """Write the migrated file slab by slab: one slab of the legacy array in memory at a time.

    The result is the file an in-memory migration writes (``MLArray(array, meta=...).save``),
    byte for byte (with one Blosc2 thread; see :func:`mlarray.convert._stream.save_slabs`).
    """
    from mlarray.convert._stream import save_slabs, template

    meta = legacy.meta.model_copy(deep=True)
    assert meta.array is not None
    meta.layout = None
    if patch_size is None:
        patch_size = _usable_patch(legacy.patch_size, len(meta.spatial_axes() or [])) or "default"
    nd = open_frame(legacy.path, "r", {"nthreads": blosc2.nthreads})
    image = template(meta.array.shape, meta.array.dtype, meta, {"patch_size": patch_size, "cparams": cparams})

    def read(region: tuple[slice, ...]) -> Any:
        try:
            return nd[region]
        except MemoryError as exc:
            raise ResourceLimitError(f"not enough memory for a slab ({exc})", path=legacy.path) from None
        except Exception as exc:
            raise CorruptFrameError(f"the legacy array cannot be decompressed ({exc})", path=legacy.path) from None

    save_slabs(dst, image, read)


def _compression(cparams: Any, codec: str | None, clevel: int | None, itemsize: int) -> Any:
    """``cparams``, or the compression of a save with ``codec``/``clevel`` changed (``None``: the default)."""
    if codec is None and clevel is None:
        return cparams
    if cparams is not None:
        raise InvalidArgumentError("give cparams, or codec and clevel, not both")
    return named_cparams(codec, clevel, itemsize)


def _usable_patch(patch: list[int] | None, spatial_ndim: int) -> list[int] | None:
    """The legacy patch size, if it has one entry per spatial axis of the image."""
    if patch is None:
        return None
    return patch if len(patch) == spatial_ndim else None


@dataclass
class MigrationResult:
    """What happened to one file of a dataset migration."""

    src: Path
    dst: Path | None
    status: str
    """``"migrated"``, ``"current"`` (already the current format: left in place, or copied), or ``"failed"``."""
    mapping: LegacyMapping | None = None
    error: MLArrayError | None = None


@dataclass
class MigrationReport:
    """Per-file results of :func:`migrate_tree`."""

    results: list[MigrationResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0


def keep_current(source: Path, target: Path) -> MigrationResult:
    """A file that is not legacy: checked, and copied (atomically) when ``target`` is another file.

    A failure (the file is not a valid ``.mla`` file either) is a ``"failed"`` result, not an exception.
    """
    try:
        read_header(source)
        if not _same_file(source, target):
            check_path(target, must_exist=False)
            with replacing(str(target)), atomic_target(str(target)) as tmp:
                shutil.copyfile(source, tmp)
        return MigrationResult(source, target, "current")
    except MLArrayError as exc:
        return MigrationResult(source, target, "failed", error=exc)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (the same path, or links to one file)."""
    return a == b or (b.exists() and os.path.samefile(a, b))


def find_mla(root: Path) -> list[Path]:
    """Every ``*.mla`` file under ``root``, sorted; unfinished saves (``.mla-tmp-*``) are left out."""
    return _find_mla(root)


def plan_tree(src: Path, dst: Path | None) -> Iterator[tuple[Path, Path]]:
    """``(source, target)`` pairs for a directory migration (target = source when in place)."""
    for path in find_mla(src):
        if is_within(path, dst):
            continue  # an output folder inside the input: its files are the outputs of an earlier run
        yield path, (path if dst is None else dst / path.relative_to(src))


def tree_pairs(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None) -> list[tuple[Path, Path]]:
    """The ``(source, target)`` pairs :func:`migrate_tree` works through (target = source in place)."""
    root = Path(src)
    if not root.is_dir():
        raise InvalidArgumentError("not a directory", path=str(root))
    out_root = None if dst is None else Path(dst)
    if out_root is not None and out_root.resolve() == root.resolve():
        out_root = None
    return list(plan_tree(root, out_root))


def migrate_one(
    pair: tuple[Path, Path],
    *,
    patch_size: PatchSize | None = None,
    cparams: Any = None,
    codec: str | None = None,
    clevel: int | None = None,
) -> MigrationResult:
    """Migrate (or check and copy) one file of a directory migration; a failure is a result, not an exception."""
    source, target = pair
    target.parent.mkdir(parents=True, exist_ok=True)
    if not is_legacy_file(source):
        return keep_current(source, target)
    try:
        mapping = migrate_file(source, target, patch_size=patch_size, cparams=cparams, codec=codec, clevel=clevel)
        return MigrationResult(source, target, "migrated", mapping=mapping)
    except MLArrayError as exc:
        return MigrationResult(source, target, "failed", error=exc)


def migrate_tree(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    patch_size: PatchSize | None = None,
    cparams: Any = None,
    codec: str | None = None,
    clevel: int | None = None,
    on_file: Callable[[MigrationResult], None] | None = None,
) -> MigrationReport:
    """Migrate every ``.mla`` file under ``src`` into ``dst`` (same relative paths), or in place when ``dst`` is None.

    Files already in the current format are checked and left as they are, or copied to
    ``dst`` (``status="current"``). A file that fails is reported and the
    others still migrate; each target is written atomically. Unfinished saves
    (``.mla-tmp-*``) are not taken for files. ``codec`` and ``clevel`` as for :func:`migrate_file`.
    """
    report = MigrationReport()
    for pair in tree_pairs(src, dst):
        result = migrate_one(pair, patch_size=patch_size, cparams=cparams, codec=codec, clevel=clevel)
        report.results.append(result)
        if on_file is not None:
            on_file(result)
    return report
