"""Builds the optional C part of mlarray and ships the header schemas; everything else is in pyproject.toml.

``mlarray/storage/csrc/`` holds the per-block loop of the read path, built into one
library, ``mlarray.storage._blockcopy``. It is optional: without a C compiler the install
goes on without it and reads copy with NumPy instead (``mlarray.storage.blockcopy.STATUS``
says which is in use).

The committed JSON Schemas live in the repository's ``schema/`` folder (one file per
schema version); a build copies them into the package as ``mlarray/schema_files/`` so an
installed copy can print every version (``mlarray schema --version 1.0``).
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SCHEMAS = Path(__file__).resolve().parent / "schema"
C_SOURCES = ["checks.c", "rows.c", "loop.c", "box.c", "compress.c"]
"""The files of ``mlarray/storage/csrc/`` compiled into the library (``blockcopy.h`` is their shared header)."""


class BuildWithSchemas(build_py):
    """``build_py`` that also copies ``schema/*.schema.json`` to ``mlarray/schema_files/`` in the build."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "mlarray" / "schema_files"
        self.mkpath(str(target))
        for source in sorted(SCHEMAS.glob("mlarray-header-*.schema.json")):
            self.copy_file(str(source), str(target / source.name))


setup(
    ext_modules=[
        Extension(
            "mlarray.storage._blockcopy",
            [f"mlarray/storage/csrc/{name}" for name in C_SOURCES],
            depends=["mlarray/storage/csrc/blockcopy.h"],
            optional=True,
        )
    ],
    cmdclass={"build_py": BuildWithSchemas},
)
