"""A real napari render: a CT and its segmentation drawn by Qt + OpenGL, checked pixel by pixel.

The test starts its own X server (Xvfb, with Mesa's software OpenGL) and runs
``tools/napari_screenshot.py`` in a fresh interpreter with ``QT_QPA_PLATFORM=xcb``.
Qt's ``offscreen`` platform is not used: it creates no OpenGL context (PyQt5 and PyQt6
alike), so napari's canvas cannot draw there. When Xvfb is missing this test fails
and says how to install it (``make`` does, via tools/install-render-deps.sh); it is
never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "napari_screenshot.py"


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private X display (Xvfb on the first free number), stopped afterwards."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb is not installed: run tools/install-render-deps.sh as root (apt-get install xvfb ...)")
    log = tmp_path_factory.mktemp("xvfb") / "xvfb.log"
    read_end, write_end = os.pipe()
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()
        if not number:
            server.kill()
            server.wait(timeout=10)
            pytest.fail(f"Xvfb did not start: {log.read_text(errors='replace')}")
        yield f":{number}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_ct_with_segmentation_renders_and_the_overlay_lands_on_the_organs(display: str, tmp_path: Path) -> None:
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "XDG_RUNTIME_DIR": str(runtime),
        "NAPARI_CONFIG": str(tmp_path / "napari-settings.yaml"),  # no user settings, none written
    }
    shot, metrics_file = tmp_path / "shot.png", tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(shot), "--metrics", str(metrics_file), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    assert metrics["layer_types"] == ["Image", "Labels"]
    assert metrics["layer_data"] == ["MLArray", "MLArray"]  # the lazy file handles were drawn
    # not blank: air, fat, soft tissue, organs and bone show as distinct grays
    assert metrics["ct_gray_std"] > 30 and metrics["ct_distinct_grays"] >= 5
    # the overlay covers the organs and nothing else, though the segmentation has its own grid
    assert metrics["structure_pixels"] > 5000
    assert metrics["overlay_on_structure"] > 0.95 and metrics["iou"] > 0.9, metrics

    from imageio.v3 import imread

    picture = imread(shot)
    assert picture.shape[:2] == tuple(metrics["size"]) and picture.shape[2] == 3
    assert np.unique(picture.reshape(-1, 3), axis=0).shape[0] > 10
