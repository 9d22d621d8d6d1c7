"""What users install: the wheel and the source distribution built from this checkout.

The rest of the suite runs an editable install, which reads files from the repository;
these tests build the real artifacts and run the installed copy from outside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from mlarray.storage import blockcopy

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = sorted((ROOT / "schema").glob("mlarray-header-*.schema.json"))
C_FILES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "mlarray" / "storage" / "csrc").iterdir())


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source distribution, built as ``python -m build --sdist`` does (setuptools' PEP 517 hook)."""
    from setuptools import build_meta

    out = tmp_path_factory.mktemp("sdist")
    previous = os.getcwd()
    os.chdir(ROOT)
    try:
        name = build_meta.build_sdist(str(out))
    finally:
        os.chdir(previous)
    return out / name


@pytest.fixture(scope="module")
def wheel(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from the source distribution alone (no leftovers of the checkout's own builds)."""
    out = tmp_path_factory.mktemp("wheel")
    with tarfile.open(sdist) as archive:
        archive.extractall(out / "src", filter="data")
    (tree,) = (out / "src").iterdir()
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*command, str(tree)], check=True, capture_output=True, timeout=600)
    (found,) = out.glob("mlarray-*.whl")
    return found


def test_the_wheel_holds_the_package_and_the_schemas_of_every_version(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mlarray").rglob("*.py")}
    assert sources <= names, sorted(sources - names)[:5]
    assert {"mlarray/py.typed", "mlarray/napari/napari.yaml"} <= names
    with zipfile.ZipFile(wheel) as archive:
        for schema in SCHEMAS:  # the committed files, byte for byte
            assert archive.read(f"mlarray/schema_files/{schema.name}") == schema.read_bytes()
    assert not any(n.startswith(("tests/", "schema/", "conformance/")) or "__pycache__" in n for n in names)


@pytest.mark.skipif(blockcopy.HELPER is None, reason="no C compiler here: the checkout's own build has no loop either")
def test_the_wheel_built_from_the_source_distribution_holds_the_compiled_block_loop(wheel: Path) -> None:
    """The loop is optional at build time, so a source file missing from the sdist would only drop it silently."""
    assert any(name.startswith("mlarray/storage/_blockcopy") for name in zipfile.ZipFile(wheel).namelist())
    expected = {"checks.c", "rows.c", "loop.c", "box.c", "compress.c", "blockcopy.h"}
    assert expected == {Path(name).name for name in C_FILES}


def test_the_installed_wheel_prints_every_schema_version_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    """``mlarray schema --version 1.0`` failed from an installed copy: the schemas were read from the repository."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import mlarray; print(mlarray.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True, timeout=120,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(site))
    for schema in SCHEMAS:
        version = schema.name.removeprefix("mlarray-header-").removesuffix(".schema.json")
        printed = subprocess.run(
            [sys.executable, "-m", "mlarray", "schema", "--version", version],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == schema.read_text(encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "mlarray.schema", "--write"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "checkout" in refused.stderr
    assert not (site / "schema").exists()  # it wrote a stray folder into site-packages


def test_the_source_distribution_holds_what_the_build_needs_and_no_half_test_suite(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    wanted = {"setup.py", "pyproject.toml", "LICENSE", "README.md", *C_FILES}
    assert wanted | {f"schema/{s.name}" for s in SCHEMAS} <= members
    assert not any(m.startswith("tests/") for m in members)  # shipped half of it, without its helpers


def test_the_readme_example_type_checks_without_pydantics_mypy_plugin(tmp_path: Path) -> None:
    """``Meta(source={...})`` was an arg-type error for users of plain mypy (the field was typed ``JsonObject``)."""
    example = tmp_path / "example.py"
    example.write_text(
        "import numpy as np\n"
        "from mlarray import MLArray, Meta\n\n"
        'meta = Meta(source={"Modality": "MR"}, extra={"study": 3}, is_seg=False)\n'
        "image = MLArray(np.zeros((4, 4, 4), dtype=np.float32), spacing=(2.0, 0.7, 0.7), meta=meta)\n"
        'image.meta.source["SeriesDescription"] = "T1"\n'
        "text: str = image.meta.source['Modality']\n",
        encoding="utf-8",
    )
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--no-incremental",
        "--follow-imports=silent",
        "--config-file=",
        "example.py",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stdout
