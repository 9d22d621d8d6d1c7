"""The package's public names: every one resolves (they load when first used), with the same object as its home."""

from __future__ import annotations

import importlib
import subprocess
import sys

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
