"""Helpers shared by the conversion tests."""

from __future__ import annotations

from pathlib import Path

from mlarray import MLArray
from mlarray.convert import convert_file


def roundtrip(src: Path, tmp_path: Path, name: str = "back.nii") -> tuple[MLArray, Path]:
    """src -> .mla file -> ``name`` (its format by its ending); returns the reloaded .mla image and the file written."""
    mla = tmp_path / "image.mla"
    convert_file(src, mla)
    out = tmp_path / name
    convert_file(mla, out)
    return MLArray.load(mla), out
