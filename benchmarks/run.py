"""Run the mlarray benchmark: ``python -m benchmarks.run [--quick]``.

Generates the synthetic volumes of :mod:`benchmarks.datasets`, writes each with
every format of :mod:`benchmarks.peers`, and measures in one run: file size, write
time, random 128^3 / 192^3 patch reads through an open handle and with an open per
patch, 2D slices along the first and last spatial axes, and full loads with 1 and 2
threads. Page cache warm, one decompression thread for patch reads, medians over
many samples, every read checked against the source array. Prints markdown tables
and writes JSON; :mod:`benchmarks.report` turns the numbers into ratios and targets.

Timing numbers come from a shared machine: rerun and compare before concluding.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import datasets, earlier, peers, report

PATCH_EDGES = (128, 192)
RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Config:
    """What one run measures (recorded in the JSON)."""

    quick: bool
    patches: int
    slow_patches: int
    slices: int
    load_repeats: int
    write_repeats: int
    seed: int
    datasets: list[str]
    formats: list[str]
    header_sizes_mb: list[int]
    repetitions: int = 5
    """Patch reads are also summarized per group of ``patches / repetitions`` samples (the spread)."""


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _groups(values: list[float], n: int) -> list[float]:
    """Medians of ``n`` consecutive groups of ``values`` (repetitions, for the spread of a ratio)."""
    n = max(1, min(n, len(values)))
    size = len(values) / n
    return [statistics.median(values[round(i * size) : round((i + 1) * size)]) for i in range(n)]


def all_formats() -> list[Any]:
    """Every format in table order: ours, the earlier implementation (own virtualenv), then the others."""
    formats: list[Any] = peers.all_formats()
    return formats[:1] + [earlier.EarlierMLArray()] + formats[1:]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def warm(path: str) -> None:
    """Read every byte of ``path`` (a file or a directory store) so the page cache holds it."""
    paths = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs] if os.path.isdir(path) else [path]
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def patch_keys(ds: datasets.Dataset, edge: int, n: int, rng: np.random.Generator) -> list[peers.Key]:
    """``n`` random patches of ``edge`` voxels per spatial axis (clipped to the shape), all channels."""
    keys = []
    for _ in range(n):
        key: list[Any] = []
        for axis, size in enumerate(ds.array.shape):
            if axis in ds.spatial_axes:
                p = min(edge, size)
                start = int(rng.integers(0, size - p + 1))
                key.append(slice(start, start + p))
            else:
                key.append(slice(None))
        keys.append(tuple(key))
    return keys


def slice_keys(ds: datasets.Dataset, axis: int, n: int, rng: np.random.Generator) -> list[peers.Key]:
    """``n`` random 2D slices at a fixed index of spatial ``axis`` (and of every non-spatial axis)."""
    keys = []
    shape, spatial = ds.array.shape, ds.spatial_axes
    for _ in range(n):
        key: list[Any] = []
        for a, size in enumerate(shape):
            if a == axis or a not in spatial:
                key.append(int(rng.integers(0, size)))
            else:
                key.append(slice(None))
        keys.append(tuple(key))
    return keys


def _check(fmt: peers.Format, ds: datasets.Dataset, key: peers.Key, out: np.ndarray[Any, Any]) -> None:
    expected = ds.array[key]
    if out.dtype != expected.dtype or out.shape != expected.shape or not np.array_equal(out, expected):
        raise RuntimeError(f"{fmt.name} returned wrong data for {ds.name}{key}")


def time_reads(
    fmt: peers.Format, ds: datasets.Dataset, path: str, keys: list[peers.Key], reopen: bool
) -> tuple[float, float, list[float]]:
    """Median wall and process CPU seconds per read of ``keys``, and every wall time in key order.

    With ``reopen`` each read opens and closes the file. The CPU time of the process
    (all its threads: zarr decodes in a thread pool) is recorded beside the wall time
    because it stays meaningful when other jobs compete for the cores.
    """
    walls, cpus = [], []
    handle = None if reopen else fmt.open(path)
    try:
        if handle is not None:
            fmt.read(handle, keys[-1])  # warm-up (not timed)
        for key in keys:
            c0, t0 = time.process_time(), time.perf_counter()
            if reopen:
                h = fmt.open(path)
                out = fmt.read(h, key)
                fmt.close(h)
            else:
                out = fmt.read(handle, key)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            _check(fmt, ds, key, out)
    finally:
        if handle is not None:
            fmt.close(handle)
    return statistics.median(walls), statistics.median(cpus), walls


def time_open(fmt: peers.Format, path: str, n: int) -> float:
    """Median seconds to open and close the file without reading data."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fmt.close(fmt.open(path))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_format(fmt: peers.Format, ds: datasets.Dataset, workdir: str, cfg: Config) -> dict[str, Any]:
    """Every measurement of one format on one dataset."""
    path = os.path.join(workdir, f"{ds.name}{fmt.suffix}")
    slow = fmt.slow_random_access
    writes, write_cpu = [], []
    for _ in range(1 if slow else cfg.write_repeats):
        fmt.remove(path)
        gc.collect()
        c0 = time.process_time()
        writes.append(_timed(lambda: fmt.write(ds, path))[0])
        write_cpu.append(time.process_time() - c0)
    size = fmt.size(path)
    warm(path)
    if fmt.name == "mlarray":  # chunks and index, without the header (whose bytes vary with its digest)
        from mlarray.storage import data_section

        start, end = data_section(path)
        data_bytes: int | None = end - start
    else:
        data_bytes = None
    n_patch = cfg.slow_patches if slow else cfg.patches
    n_slice = min(cfg.slices, n_patch)
    seed = [cfg.seed, sum(map(ord, ds.name))]
    out: dict[str, Any] = {
        "size_bytes": size,
        "data_bytes": data_bytes,
        "compression_ratio": ds.array.nbytes / size,
        "write_s": _median(writes),
        "write_cpu_s": _median(write_cpu),
        "write_reps_s": writes,
        "samples": {"patches": n_patch, "slices": n_slice, "writes": len(writes)},
    }
    out["open_ms"] = 1e3 * time_open(fmt, path, 5 if slow else 50)
    for edge in PATCH_EDGES:
        if all(edge >= ds.array.shape[a] for a in ds.spatial_axes):
            # The patch would be the whole volume: that is a full load, measured below.
            for name in (f"patch{edge}", f"openread{edge}"):
                out[f"{name}_ms"] = out[f"{name}_cpu_ms"] = None
            continue
        keys = patch_keys(ds, edge, n_patch, np.random.default_rng([*seed, edge]))
        for name, reopen in ((f"patch{edge}", False), (f"openread{edge}", True)):
            wall, cpu, walls = time_reads(fmt, ds, path, keys, reopen=reopen)
            out[f"{name}_ms"], out[f"{name}_cpu_ms"] = 1e3 * wall, 1e3 * cpu
            out[f"{name}_reps_ms"] = [1e3 * t for t in _groups(walls, cfg.repetitions)]
    if fmt.name == peers.MLArrayFormat.name and not slow:
        out.update(decode_floors(fmt, ds, path, n_patch, seed))
    spatial = ds.spatial_axes
    for label, axis in (("first", spatial[0]), ("last", spatial[-1])):
        keys = slice_keys(ds, axis, n_slice, np.random.default_rng([*seed, axis, 7]))
        wall, cpu, _ = time_reads(fmt, ds, path, keys, reopen=False)
        out[f"slice_{label}_ms"], out[f"slice_{label}_cpu_ms"] = 1e3 * wall, 1e3 * cpu
    for threads in (1, 2):
        if threads > 1 and not fmt.threaded_load:
            out[f"load{threads}_s"] = None
            continue
        loads = []
        for i in range(1 if slow else cfg.load_repeats):
            gc.collect()
            dt, arr = _timed(functools.partial(fmt.load, path, threads))
            loads.append(dt)
            if i == 0:
                _check(fmt, ds, (Ellipsis,), arr)
            del arr
        out[f"load{threads}_s"] = _median(loads)
        out[f"load{threads}_reps_s"] = loads
    fmt.remove(path)
    return out


def decode_floors(fmt: peers.Format, ds: datasets.Dataset, path: str, n: int, seed: list[int]) -> dict[str, Any]:
    """The decode floor of the mlarray file at the patch positions of the reads (:mod:`benchmarks.floor`).

    For each patch size: the floor's median milliseconds, the median overlap (voxels
    decoded per voxel read) and the median per-patch ratio of an mlarray read to the
    floor, the two measured in turn on each patch.
    """
    from benchmarks import floor

    out: dict[str, Any] = {}
    handle = fmt.open(path)
    try:
        for edge in PATCH_EDGES:
            if all(edge >= ds.array.shape[a] for a in ds.spatial_axes):
                continue
            keys = patch_keys(ds, edge, n, np.random.default_rng([*seed, edge]))
            found = floor.paired(path, keys, {"read": lambda key: fmt.read(handle, key)})
            out[f"floor{edge}_ms"] = found["floor_ms"]
            out[f"overlap{edge}"] = found["overlap"]
            out[f"read_over_floor{edge}"] = found["read_over_floor"]
    except RuntimeError as exc:  # no C-Blosc2 to call, or the file is not mapped: nothing to report
        _log(f"no decode floor for {ds.name}: {exc}")
    finally:
        fmt.close(handle)
    return out


def header_cost(workdir: str, sizes_mb: list[int], repeats: int = 200) -> dict[str, Any]:
    """Median cost of reading the header, opening, and shallow validation for files of several sizes.

    The files are measured in turns (one call on each, repeated), so a slow spell of a
    shared machine weighs on every size alike and their ratio stays meaningful.
    """
    from mlarray import MLArray
    from mlarray.storage import read_header
    from mlarray.validate import validate_file

    rng = np.random.default_rng(0)
    paths = {}
    for mb in sizes_mb:
        path = paths[f"{mb}MB"] = os.path.join(workdir, f"header-{mb}mb.mla")
        data = rng.integers(0, 256, size=(mb, 1024, 1024), dtype=np.uint8)
        # Stored uncompressed in 1 MiB chunks, so the file size is the array size.
        MLArray(data, cparams=_stored_cparams(), chunk_size=(1, 1024, 1024), block_size=(1, 256, 1024)).save(path)
        del data
        warm(path)
    results: dict[str, dict[str, float]] = {k: {"file_mb": os.path.getsize(p) / 2**20} for k, p in paths.items()}
    quick_validate = functools.partial(validate_file, deep=False)  # the header-only check (`--quick`)
    for name, fn in (("read_header_ms", read_header), ("validate_ms", quick_validate), ("open_ms", _open_close)):
        times: dict[str, list[float]] = {k: [] for k in paths}
        for path in paths.values():
            fn(path)
        for _ in range(repeats):
            for k, path in paths.items():
                times[k].append(_timed(functools.partial(fn, path))[0])
        for k in paths:
            results[k][name] = 1e3 * statistics.median(times[k])
    for path in paths.values():
        os.remove(path)
    return results


def _open_close(path: str) -> None:
    from mlarray import MLArray

    MLArray.open(path).close()


def _stored_cparams() -> Any:
    """Compression parameters that store bytes as they are (file size = array size)."""
    import blosc2

    return blosc2.CParams(codec=blosc2.Codec.LZ4, clevel=0, filters=[blosc2.Filter.NOFILTER], filters_meta=[0])


def machine() -> dict[str, Any]:
    """The machine and software the numbers come from."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / n).read_text().strip() for n in ("level", "type", "size"))
        except OSError:
            continue
        caches[f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''}"] = size
    info["caches"] = caches
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    versions = {}
    for mod in ("numpy", "blosc2", "zarr", "h5py", "nibabel", "mlarray"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    info["versions"] = versions
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        info["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller volumes and fewer samples (under 3 minutes)")
    parser.add_argument("--patches", type=int, help="random patches per measurement (default 50, quick 12)")
    parser.add_argument("--slow-patches", type=int, default=3, help="patches for whole-file gzip formats (default 3)")
    parser.add_argument("--datasets", default=",".join(datasets.FULL), help="comma-separated subset of datasets")
    parser.add_argument("--formats", default=",".join(f.name for f in all_formats()), help="subset of formats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where files are written (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON results")
    parser.add_argument(
        "--publish", action="store_true", help="then rewrite docs/performance.md and docs/benchmark-results.json"
    )
    args = parser.parse_args(argv)
    partial = args.datasets != ",".join(datasets.FULL) or args.formats != ",".join(f.name for f in all_formats())
    if args.publish and (args.quick or args.patches or partial):
        parser.error(
            "--publish needs a full run of every dataset and format (no --quick/--patches/--datasets/--formats)"
        )
    quick = args.quick
    return Config(
        quick=quick,
        patches=args.patches or (12 if quick else 50),
        slow_patches=args.slow_patches,
        slices=12 if quick else 20,
        load_repeats=3 if quick else 5,
        write_repeats=3 if quick else 5,
        seed=args.seed,
        datasets=args.datasets.split(","),
        formats=args.formats.split(","),
        header_sizes_mb=[10, 256] if quick else [10, 1024],
    ), args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    makers = datasets.QUICK if cfg.quick else datasets.FULL
    formats = [f for f in all_formats() if f.name in cfg.formats]
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "config": asdict(cfg), "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="mlarray-bench-", dir=args.workdir) as workdir:
        for name in cfg.datasets:
            t_gen, ds = _timed(makers[name])
            entry: dict[str, Any] = {
                "description": ds.description,
                "shape": list(ds.array.shape),
                "dtype": ds.array.dtype.str,
                "raw_bytes": ds.array.nbytes,
                "formats": {},
            }
            results["datasets"][name] = entry
            _log(f"{name}: {ds.description} (generated in {t_gen:.1f} s)")
            for fmt in formats:
                if isinstance(fmt, earlier.EarlierMLArray):  # in its own virtualenv (same import name)
                    measure = functools.partial(fmt.bench, ds, workdir, asdict(cfg), _log)
                else:
                    measure = functools.partial(bench_format, fmt, ds, workdir, cfg)
                t_fmt, entry["formats"][fmt.name] = _timed(measure)
                _log(f"  {fmt.name:9s} done in {t_fmt:.1f} s")
            del ds
        if "mlarray" in cfg.formats:
            results["header_cost"] = header_cost(workdir, cfg.header_sizes_mb)
    results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["elapsed_s"] = time.time() - started
    results["summary"] = report.summarize(results)
    text = report.markdown(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "quick" if cfg.quick else "full"
    for target in (args.out / f"{kind}-{stamp}.json", args.out / f"latest-{kind}.json"):
        target.write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"latest-{kind}.md").write_text(text)
    _log(f"results: {args.out / f'latest-{kind}.json'} (total {results['elapsed_s']:.0f} s)")
    if args.publish:
        report.publish([args.out / f"latest-{kind}.json"])
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
