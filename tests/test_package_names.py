"""The package's public names: every one resolves (they load when first used), with the same object as its home."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlarray
from mlarray import MLArray


@pytest.mark.parametrize("name", mlarray.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(mlarray, name) is not None
    assert name in dir(mlarray)


def test_names_are_the_objects_of_their_modules() -> None:
    assert mlarray.zeros == MLArray.zeros and mlarray.open == MLArray.open
    assert mlarray.Meta is importlib.import_module("mlarray.models").Meta
    assert mlarray.MetaSpatial is importlib.import_module("mlarray.meta").MetaSpatial
    assert mlarray.MLARRAY_DEFAULT_PATCH_SIZE == importlib.import_module("mlarray.layout").DEFAULT_PATCH
    assert mlarray.is_serializable({"a": [1, 2.5]}) and not mlarray.is_serializable({"a": float("nan")})


@pytest.mark.parametrize("name", ["api", "models", "storage", "layout", "meta", "remote", "errors", "versions"])
def test_submodules_an_eager_import_loaded_are_attributes(name: str) -> None:
    assert getattr(mlarray, name) is importlib.import_module(f"mlarray.{name}")


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        mlarray.nothing_here  # noqa: B018
    probe = (
        "import sys, mlarray; print(hasattr(mlarray, 'torch'), 'torch' in sys.modules, 'mlarray.torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.split() == ["False", "False", "False"]  # probing the package imports no integration
    from mlarray import errors as errors_module

    assert errors_module.MLArrayError is mlarray.MLArrayError


def test_a_python_blosc2_that_reads_some_layouts_wrong_is_refused_at_import(tmp_path: Path) -> None:
    """python-blosc2 before 3.8 decodes a one-chunk array whose blocks split a middle axis as if in C order
    (and releases up to 4.2 miss what mlarray.storage.MIN_BLOSC2 lists).

    The conformance cases ``layout-one-chunk-blocks-split-*`` catch such a reader; this checks the guard
    with a stand-in package that only reports an old version (installing the real 3.7 here would need the network).
    """
    fake = tmp_path / "blosc2"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "3.7.2"\n', encoding="utf-8")
    code = "import mlarray\nmlarray.MLArray"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "ImportError: mlarray needs python-blosc2 4.3 or newer, found 3.7.2" in result.stderr
    import blosc2

    assert tuple(int(v) for v in blosc2.__version__.split(".")[:2]) >= (4, 3)  # what the tests run with


@pytest.mark.parametrize(
    ("blocked", "code", "extra"),
    [
        ("dask", "import numpy, mlarray; mlarray.MLArray(numpy.zeros(3)).to_dask()", "dask"),
        ("dask", "import mlarray.dask", "dask"),
        ("xarray", "import mlarray.xarray", "xarray"),
        ("monai", "import mlarray.monai", "monai"),
        ("torch", "import mlarray.torch", "torch"),
    ],
)
def test_a_missing_extra_is_a_missing_dependency_error_naming_it(blocked: str, code: str, extra: str) -> None:
    """Without the dask extra, to_dask() raised a bare ModuleNotFoundError with no install hint."""
    script = (
        f"import sys\nsys.modules[{blocked!r}] = None  # as if not installed\n"
        "from mlarray.errors import MissingDependencyError\n"
        f"try:\n    {code}\nexcept MissingDependencyError as exc:\n    print(exc.code, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MISSING_DEPENDENCY ") and f'pip install "mlarray[{extra}]"' in result.stdout


def test_the_all_extra_installs_every_converter_as_in_mlarray_0_0_x() -> None:
    from importlib.metadata import metadata

    info = metadata("mlarray")
    assert "all" in info.get_all("Provides-Extra")
    wanted = [r for r in info.get_all("Requires-Dist") or [] if 'extra == "all"' in r]
    assert len(wanted) == 1 and all(name in wanted[0] for name in ("convert", "itk", "dicom")), wanted


def test_the_declared_python_blosc2_is_the_one_checked_at_import() -> None:
    from importlib.metadata import requires

    from mlarray.storage import MIN_BLOSC2

    declared = [r for r in requires("mlarray") or [] if r.startswith("blosc2") and "extra" not in r]
    assert declared == [f"blosc2>={MIN_BLOSC2[0]}.{MIN_BLOSC2[1]}"]
