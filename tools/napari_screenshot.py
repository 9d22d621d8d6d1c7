"""Render a CT and its segmentation in a real napari window and check where the overlay lands.

Writes two ``.mla`` files (a CT-like phantom and a segmentation of its organs stored at
half the in-plane resolution, with its own spacing and origin), opens both through
the mlarray napari plugin, and takes two canvas screenshots of one axial slice: the
CT alone and the CT with the segmentation. The pixels that the overlay changes must
be the organ pixels of the CT-only picture: that only holds if both layers are placed
by their own geometry. Prints (and writes with ``--metrics``) the pixel measures as JSON.

It needs a display with OpenGL: under Linux an X server such as Xvfb and
``QT_QPA_PLATFORM=xcb`` (Qt's ``offscreen`` platform creates no OpenGL context).
``tests/test_napari_render.py`` runs it so; ``docs/images/napari-ct-seg.png`` is its output::

    Xvfb :99 & DISPLAY=:99 QT_QPA_PLATFORM=xcb python tools/napari_screenshot.py --out docs/images/napari-ct-seg.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import mlarray
from mlarray import MLArray

SHAPE = (40, 256, 256)
SPACING = [4.0, 0.8, 0.8]
ORIGIN = [-80.0, -102.0, -102.0]
ORGAN_HU = 150
WINDOW = (-160.0, 240.0)


def phantom() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A CT-like volume (air, body, fat, spine, two organs) and the label map of its organs (1, 2)."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    ct = np.full(SHAPE, -1000, dtype=np.int16)
    body = (y / 0.75) ** 2 + (x / 0.9) ** 2 < 1
    ct[body] = -100  # fat
    ct[(y / 0.65) ** 2 + (x / 0.8) ** 2 < 1] = 40  # soft tissue
    ct[((y - 0.5) / 0.12) ** 2 + (x / 0.12) ** 2 < 1] = 700  # spine
    liver = ((y + 0.1) / 0.35) ** 2 + ((x + 0.35) / 0.3) ** 2 + (z / 0.8) ** 2 < 1
    kidney = ((y - 0.25) / 0.15) ** 2 + ((x - 0.35) / 0.1) ** 2 + (z / 0.6) ** 2 < 1
    ct[liver | kidney] = ORGAN_HU
    noise = np.random.default_rng(7).normal(0, 5, SHAPE).round().astype(np.int16)
    ct[body] += noise[body]  # a little texture; the organ band of the check is wider than the noise
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[liver] = 1
    labels[kidney] = 2
    return ct, labels


def write_files(folder: Path) -> tuple[Path, Path]:
    """The CT at full resolution, the segmentation at half the in-plane resolution (own spacing and origin)."""
    ct, labels = phantom()
    image = MLArray(ct, spacing=SPACING, origin=ORIGIN, meta={"modality": "CT", "description": "phantom"})
    image.meta.stats = mlarray.Stats(min=-1000, max=700, percentile_min=WINDOW[0], percentile_max=WINDOW[1])
    image.save(folder / "ct.mla")
    # voxel j of the coarse grid covers fine voxels 2j and 2j+1: its centre is half a fine voxel further on
    coarse = labels[:, ::2, ::2]
    origin = [ORIGIN[0], ORIGIN[1] + SPACING[1] / 2, ORIGIN[2] + SPACING[2] / 2]
    seg = MLArray(coarse, spacing=[SPACING[0], 2 * SPACING[1], 2 * SPACING[2]], origin=origin)
    seg.meta.is_seg = True
    seg.save(folder / "seg.mla")
    return folder / "ct.mla", folder / "seg.mla"


def render(ct_path: Path, seg_path: Path, out: Path | None) -> dict[str, Any]:
    """Screenshots of the CT alone and with the segmentation; the pixel measures of the comparison."""
    import napari

    viewer = napari.Viewer(show=True)
    try:
        ct_layer, seg_layer = viewer.open([str(ct_path), str(seg_path)], plugin="mlarray", stack=False)
        z = SHAPE[0] // 2
        viewer.dims.set_point(0, ORIGIN[0] + SPACING[0] * z)
        viewer.reset_view()
        seg_layer.opacity = 0.6
        seg_layer.visible = False
        alone = viewer.screenshot(canvas_only=True, flash=False)
        seg_layer.visible = True
        overlaid = viewer.screenshot(canvas_only=True, flash=False)
        kinds = [type(ct_layer).__name__, type(seg_layer).__name__]
        lazy = [type(ct_layer.data).__name__, type(seg_layer.data).__name__]
    finally:
        viewer.close()
    gray = alone[..., :3].astype(np.int32).mean(axis=2)
    organ_gray = 255 * (ORGAN_HU - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
    structure = np.abs(gray - organ_gray) < 15
    changed = np.abs(overlaid[..., :3].astype(np.int32) - alone[..., :3].astype(np.int32)).sum(axis=2) > 30
    inter = int(np.count_nonzero(structure & changed))
    union = int(np.count_nonzero(structure | changed))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        from imageio.v3 import imwrite  # napari's own dependency

        imwrite(out, overlaid[..., :3])
    return {
        "layer_types": kinds,
        "layer_data": lazy,
        "size": list(alone.shape[:2]),
        "ct_gray_std": float(gray.std()),
        "ct_distinct_grays": int(np.unique(gray.astype(np.uint8)).size),
        "structure_pixels": int(np.count_nonzero(structure)),
        "overlay_pixels": int(np.count_nonzero(changed)),
        "overlay_on_structure": inter / max(1, int(np.count_nonzero(changed))),
        "iou": inter / max(1, union),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="PNG of the CT with its segmentation overlaid")
    parser.add_argument("--metrics", type=Path, help="write the pixel measures here as JSON")
    parser.add_argument("--workdir", type=Path, help="folder for the .mla files (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        metrics = render(*write_files(folder), args.out)
    text = json.dumps(metrics, indent=2)
    if args.metrics is not None:
        args.metrics.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
