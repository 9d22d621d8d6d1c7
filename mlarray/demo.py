"""The Quickstart demo: a synthetic CT volume written to ``.mla``, reopened memory-mapped.

Run with ``make demo`` (or ``python -m mlarray.demo [OUTDIR]``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from mlarray import Meta, MLArray
from mlarray.validate import validate_file


def synthetic_ct(shape: tuple[int, int, int] = (160, 256, 256), seed: int = 0) -> np.ndarray:
    """A CT-like int16 volume: air (-1024) outside a body ellipse, smooth tissue, bone, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1.0
    tissue = 40 + 30 * np.sin(3 * x) * np.cos(2 * y) + 20 * z
    bone = ((x - 0.3) ** 2 + (y + 0.1) ** 2 < 0.02) | ((x + 0.3) ** 2 + (y + 0.1) ** 2 < 0.02)
    volume = np.where(body, tissue, -1024.0)
    volume = np.where(body & bone, 900.0, volume)
    volume = volume + np.where(body, rng.normal(0, 12, shape), 0)
    return np.clip(volume, -1024, 3071).astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0] if args else "demo-output")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "ct.mla"

    volume = synthetic_ct()
    theta = np.deg2rad(10)
    direction = [[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]]
    image = MLArray(
        volume,
        spacing=(2.5, 0.8, 0.8),
        origin=(-120.0, -102.4, 35.0),
        direction=direction,
        meta=Meta(
            source={"Modality": "CT", "PatientID": "synthetic-0001", "ConvolutionKernel": "B30f"},
            extra={"split": "train"},
            is_seg=False,
        ),
        patch_size=(96, 96, 96),
    )
    image.meta.spatial.coord_system = "LPS"
    start = time.perf_counter()
    image.save(path)
    seconds = time.perf_counter() - start
    ratio = volume.nbytes / path.stat().st_size
    print(
        f"wrote {path}: shape {volume.shape} {volume.dtype}, {path.stat().st_size / 1e6:.1f} MB "
        f"(compression {ratio:.2f}x) in {seconds:.2f} s"
    )

    with MLArray.open(path, mmap_mode="r") as mapped:
        z, y, x = 32, 80, 100
        patch = mapped[z : z + 96, y : y + 96, x : x + 96]
        assert np.array_equal(patch, volume[z : z + 96, y : y + 96, x : x + 96])
        print(f"read a {patch.shape} patch memory-mapped: min {patch.min()}, max {patch.max()} (matches the source)")
        print("header:")
        print(json.dumps(mapped.meta.model_dump(mode="json"), indent=2))

    report = validate_file(path, deep=True)
    print(f"validation: {'valid' if report.valid else 'INVALID'}")
    for problem in report.problems:
        print(f"  {problem}")
    return 0 if report.valid else 1


if __name__ == "__main__":
    raise SystemExit(main())
