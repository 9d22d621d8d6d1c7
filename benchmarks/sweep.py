"""Parameter sweeps behind the defaults: ``python -m benchmarks.sweep layout|codec|out [options]``.

``layout`` writes a volume with many chunk/block shapes and times random patch
reads; ``codec`` writes the four volumes with several codec/filter/level choices at
the default layout and reports size, write time and read times; ``out`` compares reads
into new arrays with reads into existing ones (``MLArray.read(key, out=...)``). These are the
measurements ``docs/performance.md`` cites for the choices in
:mod:`mlarray.layout` and :mod:`mlarray.storage.io`. Mlarray only, through its public API.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import datasets
from benchmarks.run import patch_keys, warm


def _read_times(path: str, ds: datasets.Dataset, edge: int, n: int, seed: int = 0, passes: int = 3) -> float:
    """Median over patches of the best of ``passes`` CPU times (ms) of the reading thread.

    CPU time of the reading thread, best of a few passes, is what stays stable on a
    machine shared with other jobs; the benchmark proper reports wall-clock medians.
    """
    from mlarray import MLArray

    keys = patch_keys(ds, edge, n, np.random.default_rng([seed, edge]))
    best = [float("inf")] * len(keys)
    with MLArray.open(path) as a:
        a[keys[-1]]
        for _ in range(passes):
            for i, key in enumerate(keys):
                t0 = time.thread_time()
                out = a[key]
                best[i] = min(best[i], time.thread_time() - t0)
        for key in keys[:3]:
            if not np.array_equal(a[key], ds.array[key]):
                raise RuntimeError(f"wrong data for {key}")
    del out
    return 1e3 * statistics.median(best)


def _npy_times(ds: datasets.Dataset, workdir: str, n: int, passes: int = 3) -> tuple[float, float]:
    """The npy-mmap ceiling measured the same way as :func:`_read_times`."""
    path = os.path.join(workdir, "sweep.npy")
    np.save(path, ds.array)
    mm = np.load(path, mmap_mode="r")
    out = []
    for edge in (128, 192):
        keys = patch_keys(ds, edge, n, np.random.default_rng([0, edge]))
        best = [float("inf")] * len(keys)
        for _ in range(passes):
            for i, key in enumerate(keys):
                t0 = time.thread_time()
                np.array(mm[key])
                best[i] = min(best[i], time.thread_time() - t0)
        out.append(1e3 * statistics.median(best))
    del mm
    os.remove(path)
    return out[0], out[1]


def _write(ds: datasets.Dataset, path: str, **kwargs: Any) -> tuple[float, Any]:
    from mlarray import MLArray

    t0 = time.perf_counter()
    MLArray(ds.array, spacing=ds.spacing, axis_labels=ds.axis_labels, **kwargs).save(path)
    dt = time.perf_counter() - t0
    with MLArray.open(path) as a:
        layout = a.meta.layout
    return dt, layout


def _load_time(path: str, threads: int) -> float:
    from mlarray import MLArray

    t0 = time.perf_counter()
    MLArray.load(path, dparams={"nthreads": threads})
    return time.perf_counter() - t0


def layout_sweep(ds: datasets.Dataset, blocks: list[tuple[int, ...]], chunks: list[int], n: int, workdir: str) -> None:
    """Time 128^3 / 192^3 patch reads for cubic chunk edges x block shapes (spatial axes only).

    Non-spatial axes are kept whole in chunks and blocks. Combinations whose chunk edge is
    not a multiple of the block edge are skipped (Blosc2 would pad every chunk).
    """
    spatial = ds.spatial_axes
    ceiling = _npy_times(ds, workdir, n)
    print(f"npy-mmap ceiling (128³, 192³ ms): {ceiling[0]:.2f}, {ceiling[1]:.2f}")
    print("| chunk | block | block KB | chunk MB | size MB | write s | 128³ ms | 192³ ms |")
    print("|---|---|---|---|---|---|---|---|")
    for chunk_edge, bshape in itertools.product(chunks, blocks):
        if any(chunk_edge % b for b in bshape):
            continue
        chunk = tuple(min(chunk_edge, s) if a in spatial else s for a, s in enumerate(ds.array.shape))
        it = iter(bshape)
        block = tuple(min(next(it), c) if a in spatial else c for a, c in enumerate(chunk))
        path = os.path.join(workdir, "sweep.mla")
        dt, _ = _write(ds, path, chunk_size=chunk, block_size=block)
        warm(path)
        t128 = _read_times(path, ds, 128, n)
        t192 = _read_times(path, ds, 192, n)
        bkb = np.prod(block) * ds.array.itemsize / 1024
        cmb = np.prod(chunk) * ds.array.itemsize / 2**20
        size = os.path.getsize(path) / 2**20
        print(
            f"| {chunk} | {block} | {bkb:.0f} | {cmb:.1f} | {size:.1f} | {dt:.2f} | {t128:.2f} | {t192:.2f} |",
            flush=True,
        )
        os.remove(path)


CODECS = [
    ("lz4", 5, ["shuffle"]),
    ("lz4", 5, ["bitshuffle"]),
    ("lz4hc", 1, ["shuffle"]),
    ("lz4hc", 1, ["bitshuffle"]),
    ("lz4hc", 3, ["shuffle"]),
    ("lz4hc", 9, ["shuffle"]),
    ("blosclz", 5, ["shuffle"]),
    ("zstd", 1, ["shuffle"]),
    ("zstd", 1, ["bitshuffle"]),
    ("zstd", 3, ["shuffle"]),
    ("zstd", 1, ["shuffle", "bytedelta"]),
]


def codec_sweep(names: list[str], quick: bool, n: int, workdir: str, codecs: list[tuple[str, int, list[str]]]) -> None:
    """Size, write, patch and load times per codec/level/filter on each volume (default layout)."""
    import blosc2

    from mlarray.storage.cparams import make_cparams

    makers = datasets.QUICK if quick else datasets.FULL
    print("| dataset | codec | clevel | filters | ratio | write s | 128³ ms | 192³ ms | load 1T s | load 2T s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        ds = makers[name]()
        for codec, clevel, filters in codecs:
            path = os.path.join(workdir, "sweep.mla")
            cparams = make_cparams(codec, clevel, filters, ds.array.itemsize, nthreads=blosc2.nthreads)
            dt, _ = _write(ds, path, cparams=cparams)
            warm(path)
            ratio = ds.array.nbytes / os.path.getsize(path)
            t128, t192 = _read_times(path, ds, 128, n), _read_times(path, ds, 192, n)
            l1, l2 = _load_time(path, 1), _load_time(path, 2)
            print(
                f"| {name} | {codec} | {clevel} | {'+'.join(filters)} | {ratio:.2f} | {dt:.2f} | {t128:.2f} | "
                f"{t192:.2f} | {l1:.3f} | {l2:.3f} |",
                flush=True,
            )
            os.remove(path)


def out_sweep(names: list[str], quick: bool, n: int, rounds: int, workdir: str) -> None:
    """Reads into a new array against reads into an existing one (``MLArray.read(key, out=...)``).

    Patches: ``n`` random 128³ patches, each read both ways in turn, CPU time of the
    reading thread (median). Loads: ``MLArray.load(...).to_numpy()`` against ``open`` +
    ``read(out=buffer)`` + ``close``, with 1 and 2 threads, ``rounds`` times each in
    alternating order, wall-clock (median). Both ways are checked against the source.
    """
    from mlarray import MLArray

    makers = datasets.QUICK if quick else datasets.FULL
    print(
        "| dataset | 128³: out= / new | load 1T: new ms | load 1T: out= ms | load 2T: new ms | load 2T: out= ms "
        "| 2T / 1T: new | 2T / 1T: out= |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        ds = makers[name]()
        path = os.path.join(workdir, "sweep.mla")
        _write(ds, path)
        warm(path)
        keys = patch_keys(ds, 128, n, np.random.default_rng([0, 128]))
        new_cpu, out_cpu = [], []
        with MLArray.open(path) as image:
            buffer = np.empty(image[keys[0]].shape, image.dtype)
            for key in keys:
                t0 = time.thread_time()
                fresh = image[key]
                new_cpu.append(time.thread_time() - t0)
                t0 = time.thread_time()
                image.read(key, out=buffer)
                out_cpu.append(time.thread_time() - t0)
                if not (np.array_equal(fresh, ds.array[key]) and np.array_equal(buffer, fresh)):
                    raise RuntimeError(f"wrong data for {key}")
                del fresh
        whole = np.empty_like(ds.array)
        loads: dict[tuple[str, int], list[float]] = {(way, t): [] for way in ("new", "out") for t in (1, 2)}
        for r in range(rounds):
            for way, threads in itertools.product(("new", "out")[:: 1 if r % 2 else -1], (1, 2)[:: -1 if r % 2 else 1]):
                t0 = time.perf_counter()
                if way == "new":
                    result = MLArray.load(path, dparams={"nthreads": threads}).to_numpy()
                else:
                    with MLArray.open(path, dparams={"nthreads": threads}) as image:
                        result = image.read(out=whole)
                loads[way, threads].append(time.perf_counter() - t0)
                if r == 0 and not np.array_equal(result, ds.array):
                    raise RuntimeError(f"wrong data for a {way} load")
                del result
        med = {k: 1e3 * statistics.median(v) for k, v in loads.items()}
        print(
            f"| {name} | {statistics.median(out_cpu) / statistics.median(new_cpu):.2f} | {med['new', 1]:.1f} | "
            f"{med['out', 1]:.1f} | {med['new', 2]:.1f} | {med['out', 2]:.1f} | {med['new', 2] / med['new', 1]:.2f} | "
            f"{med['out', 2] / med['out', 1]:.2f} |",
            flush=True,
        )
        os.remove(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lay = sub.add_parser("layout", help="chunk x block shapes on one volume")
    lay.add_argument("--dataset", default="ct")
    lay.add_argument("--blocks", default="16x16x16,16x32x32,32x32x32,32x64x64,64x64x64", help="block shapes")
    lay.add_argument("--chunks", default="64,96,128,192,256")
    cod = sub.add_parser("codec", help="codec/filter/level choices on the volumes")
    cod.add_argument("--datasets", default=",".join(datasets.FULL))
    cod.add_argument("--codecs", help="semicolon-separated codec:clevel:filter+filter entries (default: built-in list)")
    out = sub.add_parser("out", help="reads into new arrays against reads into existing ones (read(out=...))")
    out.add_argument("--datasets", default=",".join(datasets.FULL))
    out.add_argument("--rounds", type=int, default=20, help="whole loads per way and thread count")
    for p in (lay, cod, out):
        p.add_argument("--quick", action="store_true", help="the smaller --quick volumes")
        p.add_argument("--patches", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlarray-sweep-") as workdir:
        if args.what == "layout":
            ds = (datasets.QUICK if args.quick else datasets.FULL)[args.dataset]()
            blocks = [tuple(int(v) for v in b.split("x")) for b in args.blocks.split(",")]
            edges = [int(x) for x in args.chunks.split(",")]
            layout_sweep(ds, blocks, edges, args.patches, workdir)
        elif args.what == "out":
            out_sweep(args.datasets.split(","), args.quick, args.patches, args.rounds, workdir)
        else:
            codecs = CODECS
            if args.codecs:
                codecs = [
                    (c, int(lvl), [f for f in flt.split("+") if f])
                    for c, lvl, flt in (e.split(":") for e in args.codecs.split(";"))
                ]
            codec_sweep(args.datasets.split(","), args.quick, args.patches, workdir, codecs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
