"""Plumbing shared by the format converters: optional imports, file names, JSON, atomic output.

The readers (nibabel, pynrrd) are the optional extra ``mlarray[convert]``: they are
imported here, inside functions, and a missing one becomes a
:class:`~mlarray.errors.MissingDependencyError` that names the extra. Foreign
files are written the way ``.mla`` files are: into a temporary directory beside
the target, then renamed into place, so a failed conversion leaves no half file.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlarray.errors import (
    MissingDependencyError,
    MLArrayError,
    MLArrayFileNotFoundError,
    ReadOnlyError,
    WriteFailedError,
    WrongExtensionError,
)
from mlarray.storage.io import is_read_only, temporary_name, write_destination

INSTALL_HINT = 'install the conversion extra: pip install "mlarray[convert]"'
PACKAGES = {"nrrd": "pynrrd", "nibabel": "nibabel", "SimpleITK": "SimpleITK", "pydicom": "pydicom"}
"""Distribution name of each optional module, for the error message."""
EXTRAS = {"nrrd": "convert", "nibabel": "convert", "SimpleITK": "itk", "pydicom": "dicom"}
"""The extra of ``pip install "mlarray[...]"`` that installs each optional module."""

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
NRRD_EXTENSIONS = (".nrrd", ".nhdr")
METAIMAGE_EXTENSIONS = (".mha", ".mhd")
MLA_EXTENSION = ".mla"


def require(module: str, path: str | None = None) -> ModuleType:
    """Import an optional dependency or raise :class:`MissingDependencyError` naming the extra."""
    package = PACKAGES.get(module, module)
    extra = EXTRAS.get(module, "convert")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f'install the extra: pip install "mlarray[{extra}]"'
        raise MissingDependencyError(
            f"{package} is needed to convert this file ({exc}); {hint}", module=module, path=path
        ) from None
    except Exception as exc:  # installed but broken: a release too old for this NumPy, say
        raise MissingDependencyError(
            f"{package} is installed but cannot be imported ({type(exc).__name__}: {exc}); "
            f'install a supported version: pip install --upgrade "mlarray[{extra}]"',
            module=module,
            path=path,
        ) from None


def suffix_of(path: str | os.PathLike[str]) -> str | None:
    """The format ending of ``path`` (``'.nii.gz'``, ``'.nrrd'``, ``'.mla'`` ...), case-insensitive, or ``None``."""
    name = os.fspath(path).lower()
    for ext in (*NIFTI_EXTENSIONS, *NRRD_EXTENSIONS, *METAIMAGE_EXTENSIONS, MLA_EXTENSION):
        if name.endswith(ext):
            return ext
    return None


def check_source(path: str | os.PathLike[str], allowed: tuple[str, ...], what: str) -> str:
    """``path`` as a string after checking its ending and that it is an existing file."""
    p = os.fspath(path)
    if suffix_of(p) not in allowed:
        raise WrongExtensionError(f"a {what} file must end in {' or '.join(allowed)}", path=p)
    if not os.path.isfile(p):
        raise MLArrayFileNotFoundError("no such file", path=p)
    return p


def check_target(path: str | os.PathLike[str], allowed: tuple[str, ...], what: str) -> str:
    """``path`` as a string after checking its ending."""
    p = os.fspath(path)
    if suffix_of(p) not in allowed:
        raise WrongExtensionError(f"a {what} file must end in {' or '.join(allowed)}", path=p)
    return p


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a fresh temporary directory beside ``path``; on success move its files next to ``path``.

    The writer creates its files inside the directory under their final names (a
    detached NRRD header writes two). They are moved in name order with the file
    named like ``path`` last, so the header of a detached pair appears only once its
    data is in place. On failure nothing outside the temporary directory changes; an
    operating-system error (a full disk, say) becomes :class:`~mlarray.errors.WriteFailedError`
    naming ``path``. A ``path`` that is a symbolic link stays one: the file it leads to is replaced.
    """
    target = Path(write_destination(path))
    directory = target.parent.resolve() if str(target.parent) else Path(".").resolve()
    if not directory.is_dir():
        raise MLArrayFileNotFoundError("the target directory does not exist", path=path)
    if target.exists() and is_read_only(str(target)):
        raise ReadOnlyError("the file is read-only; refusing to replace it", path=path)
    if not os.access(directory, os.W_OK):
        raise ReadOnlyError("the target directory is not writable", path=path)
    tmp = directory / temporary_name()
    tmp.mkdir()
    try:
        yield str(tmp / target.name)
        names = sorted(os.listdir(tmp), key=lambda n: (n == target.name, n))
        for name in names:
            fd = os.open(tmp / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for name in names:
            os.replace(tmp / name, directory / name)
    except MLArrayError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WriteFailedError(f"writing failed ({reason}); the previous file is untouched", path=path) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- JSON


def json_number(value: Any) -> Any:
    """A header number as JSON: ints stay ints, NaN becomes ``None``, infinities become strings."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    number = float(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def from_json_number(value: Any) -> float:
    """Inverse of :func:`json_number` for float fields: ``None`` -> NaN, ``'Infinity'`` -> inf."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return math.inf if value == "Infinity" else -math.inf
    return float(value)


def json_value(value: Any) -> Any:
    """Any header value (numpy scalars and arrays, nested lists) as finite JSON, NaN as ``None``."""
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()] if value.ndim else json_value(value.item())
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("latin-1")
    return json_number(value)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
