"""Measure what opening a large ``.mla`` file in napari costs: wall time and memory, once.

Writes (if missing) a CT-like int16 volume of about 1 GiB, then in a fresh interpreter
opens it through the mlarray napari plugin in a headless ``ViewerModel`` and reports:
the time of the plugin's ``read`` (header only), the time until napari has the first
slice (layer added and sliced), the time to step to another slice, and how much the
process' peak memory grew. Numbers for the docs and reports; tests assert no timings.

    python tools/napari_open_cost.py [--path big.mla] [--no-stats]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from mlarray import MLArray, Stats

SHAPE = (512, 1024, 1024)  # 1 GiB of int16


def write(path: Path, with_stats: bool) -> None:
    z, y, x = (np.arange(s, dtype=np.float32) / s - 0.5 for s in SHAPE)
    volume = np.empty(SHAPE, dtype=np.int16)
    body = ((y[:, None] / 0.45) ** 2 + (x[None, :] / 0.48) ** 2 < 1).astype(np.int16)
    noise = np.random.default_rng(0).integers(-20, 20, size=SHAPE[1:], dtype=np.int16)
    for k in range(SHAPE[0]):
        volume[k] = -1000 + body * (1040 + noise + int(200 * np.sin(8 * z[k])))
    image = MLArray(volume, spacing=(1.0, 0.7, 0.7))
    if with_stats:
        image.meta.stats = Stats(min=-1000, max=300, percentile_min=-160, percentile_max=240)
    image.save(path)


MEASURE = """
import json, re, time
import numpy as np

def kib(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

t0 = time.perf_counter()
import npe2
from napari.components import ViewerModel
from mlarray.napari import read
npe2.PluginManager.instance().discover()
viewer = ViewerModel()
viewer.add_image(np.zeros((8, 8)))  # napari's own first-use work, not the file's
viewer.layers.clear()
t_import = time.perf_counter() - t0
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Linux: reset the peak resident size
base = kib("VmHWM")
t0 = time.perf_counter()
layers = read(PATH)
t_read = time.perf_counter() - t0
t0 = time.perf_counter()
(layer,) = viewer.open(PATH, plugin="mlarray")
t_first = time.perf_counter() - t0
t0 = time.perf_counter()
viewer.dims.set_current_step(0, 400)
t_step = time.perf_counter() - t0
print(json.dumps({"import_s": t_import, "plugin_read_s": t_read, "open_to_first_slice_s": t_first,
                  "step_s": t_step, "peak_rss_growth_mib": (kib("VmHWM") - base) / 1024,
                  "contrast_limits": list(map(float, layer.contrast_limits)), "data": type(layer.data).__name__}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=Path("napari-open-cost.mla"))
    parser.add_argument("--no-stats", action="store_true", help="write the file without statistics")
    args = parser.parse_args()
    if not args.path.exists():
        write(args.path, with_stats=not args.no_stats)
    code = textwrap.dedent(MEASURE).replace("PATH", repr(str(args.path)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_mib"] = args.path.stat().st_size / 2**20
    result["array_mib"] = int(np.prod(SHAPE)) * 2 / 2**20
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
