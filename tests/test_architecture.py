"""The layering the package is built in, checked on its import statements (those inside functions too).

The header models know nothing of how a file is stored; storage knows nothing of the CLI,
conversion or the integrations; each integration (PyTorch, MONAI, TorchIO, napari, Dask,
xarray) reads through the public API, never the storage internals. Remote reading is a
storage backend itself and may use them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlarray"
INTEGRATIONS = ("mlarray.torch", "mlarray.monai", "mlarray.torchio", "mlarray.napari", "mlarray.dask", "mlarray.xarray")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from mlarray import storage`
    return found


def modules_in(prefix: str) -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if (module_name(p) + ".").startswith(prefix + ".")]


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module_name(path)} imports {name}"
        for path in modules_in(prefix)
        for name in sorted(imports_of(path))
        if within(name, forbidden)
    ]


def test_the_scan_sees_the_package_and_imports_inside_functions() -> None:
    """The rules below are only as good as the scan: an import inside a function counts."""
    assert "mlarray.errors" in imports_of(PACKAGE / "models" / "base.py")
    assert "resource" in imports_of(PACKAGE / "storage" / "chunks.py")  # imported in a method
    assert modules_in("mlarray.models") and all("models" in p.parts for p in modules_in("mlarray.models"))


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("mlarray.models", ("blosc2", "mlarray.storage", "mlarray.api", "mlarray.cli", "mlarray.convert")),
        ("mlarray.storage", ("mlarray.api", "mlarray.cli", "mlarray.convert", "mlarray.remote", *INTEGRATIONS)),
        *((name, ("mlarray.storage", "mlarray.cli")) for name in INTEGRATIONS),
    ],
)
def test_a_layer_imports_nothing_above_it(layer: str, forbidden: tuple[str, ...]) -> None:
    assert modules_in(layer), f"no modules found for {layer}"
    assert violations(layer, forbidden) == []


def test_a_forbidden_import_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberate breach (a model importing storage inside a function) is caught."""
    fake = tmp_path / "mlarray"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "__init__.py").write_text("", encoding="utf-8")
    (fake / "models" / "bad.py").write_text(
        "def f():\n    from ..storage import frame\n    return frame\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert violations("mlarray.models", ("mlarray.storage",)) == [
        "mlarray.models.bad imports mlarray.storage",
        "mlarray.models.bad imports mlarray.storage.frame",
    ]
