"""Training-loader benchmark: random 128³ patches per second through a DataLoader with 2 workers.

Compares five ways to feed a segmentation model from the CT and label volumes of
``benchmarks.datasets``, each with the same patch size, batch size and worker count:

* ``mlarray``: :class:`mlarray.torch.PatchDataset` on ``.mla`` files whose label header
  carries ``class_locations`` (a third of the patches centred on foreground);
* ``npy-mmap``: ``np.load(mmap_mode='r')`` crops, class locations from a pickle;
* ``blosc2+pickle``: raw Blosc2 ``.b2nd`` files with mlarray's chunk/block/codec choice and a
  pickle of class locations beside them (nnU-Net v2's preprocessed-data approach);
* ``monai-nii.gz``: MONAI ``LoadImaged`` + ``RandCropByPosNegLabeld`` on ``.nii.gz``;
* ``torchio-nii.gz``: a TorchIO ``Queue`` (``LabelSampler``, 4 patches per volume load,
  room for two volumes' patches) over ``.nii.gz`` subjects, timed over 4x as many patches
  as MONAI so that the queue refills many times.

Usage: ``python -m benchmarks.training [--shape 512,512,320] [--patches 64]``. Never run
by the tests. The rate excludes the first batch (worker start-up and first opens), which
is reported separately; every pipeline runs ``--repeats`` times in a rotating order and
the median run is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks import datasets
from mlarray import MLArray
from mlarray.foreground import class_locations
from mlarray.stats import annotate
from mlarray.torch import PatchDataset
from mlarray.torch._patches import centred_corner, random_corner

PATCH = (128, 128, 128)
WORKERS = 2
BATCH = 2
RESULTS = Path(__file__).resolve().parent / "results"


class ArrayPatches(Dataset[dict[str, Any]]):
    """The same sampling as PatchDataset over plain arrays opened per process (npy memmap or blosc2)."""

    def __init__(self, cases: list[tuple[str, str, str]], kind: str, samples: int, seed: int = 0) -> None:
        self.cases, self.kind, self.samples, self.seed = cases, kind, samples, seed
        self._open: dict[str, Any] = {}
        self._locations: dict[str, Any] = {}

    def __len__(self) -> int:
        return self.samples

    def _array(self, path: str) -> Any:
        if path not in self._open:
            if self.kind == "npy":
                self._open[path] = np.load(path, mmap_mode="r")
            else:
                import blosc2

                self._open[path] = blosc2.open(path, mmap_mode="r", dparams=blosc2.DParams(nthreads=1))
        return self._open[path]

    def _classes(self, path: str) -> Any:
        if path not in self._locations:
            with open(path, "rb") as f:
                self._locations[path] = pickle.load(f)  # our own file, written by this benchmark
        return self._locations[path]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        image_path, label_path, pickle_path = self.cases[int(rng.integers(len(self.cases)))]
        image, label = self._array(image_path), self._array(label_path)
        shape = image.shape
        classes = self._classes(pickle_path)
        if rng.random() < 1 / 3 and classes:
            coords = classes[list(classes)[int(rng.integers(len(classes)))]]
            corner = centred_corner(coords[int(rng.integers(len(coords)))], shape, PATCH)
        else:
            corner = random_corner(rng, shape, PATCH)
        key = tuple(slice(max(0, c), min(s, c + p)) for c, s, p in zip(corner.tolist(), shape, PATCH, strict=True))
        pads = [(lo.start - c, c + p - lo.stop) for lo, c, p in zip(key, corner.tolist(), PATCH, strict=True)]
        img = np.pad(np.asarray(image[key]), pads)
        lab = np.pad(np.asarray(label[key]), pads)
        return {"image": torch.from_numpy(img[None].astype(np.float32)), "label": torch.from_numpy(lab[None])}


def _monai_loader(cases: list[tuple[str, str]], samples: int) -> DataLoader[Any]:
    from monai.data import Dataset as MonaiDataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandCropByPosNegLabeld

    keys = ["image", "label"]
    transform = Compose(
        [
            LoadImaged(keys),
            EnsureChannelFirstd(keys),
            RandCropByPosNegLabeld(keys, label_key="label", spatial_size=PATCH, pos=1, neg=2, num_samples=1),
        ]
    )
    data = [{"image": cases[i % len(cases)][0], "label": cases[i % len(cases)][1]} for i in range(samples)]
    return DataLoader(MonaiDataset(data, transform), batch_size=BATCH, num_workers=WORKERS, collate_fn=_first)


def _first(batch: list[Any]) -> Any:
    return batch


def _torchio_loader(cases: list[tuple[str, str]], samples: int) -> DataLoader[Any]:
    import torchio as tio

    subjects = [tio.Subject(image=tio.ScalarImage(i), label=tio.LabelMap(seg)) for i, seg in cases]
    per_volume = 4  # the queue holds two volumes' patches: timing past the first batch includes refills
    queue = tio.Queue(
        tio.SubjectsDataset(subjects * -(-samples // (per_volume * len(subjects)))),
        max_length=2 * per_volume,
        samples_per_volume=per_volume,
        sampler=tio.LabelSampler(PATCH, label_name="label", label_probabilities={0: 2, 1: 1}),
        num_workers=WORKERS,
        shuffle_subjects=False,
    )
    return DataLoader(queue, batch_size=BATCH, num_workers=0)


def _batch_size(batch: Any) -> int:
    """Patches in a batch: a list of samples (MONAI), or a dict whose image is a tensor or TorchIO's dict."""
    if isinstance(batch, list):
        return len(batch)
    image = batch["image"]
    return int((image["data"] if isinstance(image, dict) else image).shape[0])


def measure(loader: Any, limit: int) -> dict[str, float]:
    """Time to the first batch, then patches per second over the following batches (up to ``limit`` patches)."""
    start = time.perf_counter()
    first_at = None
    count = 0
    for batch in loader:
        n = _batch_size(batch)
        if first_at is None:
            first_at = time.perf_counter()
        else:
            count += n
        if count >= limit:
            break
    end = time.perf_counter()
    assert first_at is not None
    return {"first_batch_s": first_at - start, "patches": count, "rate": count / (end - first_at)}


def prepare(workdir: Path, shape: tuple[int, int, int], n_cases: int) -> dict[str, Any]:
    """Write every format's files for ``n_cases`` copies of the CT/label pair."""
    import blosc2
    import nibabel as nib

    ct, seg = datasets.ct(shape), datasets.seg(shape)
    affine = np.diag([*ct.spacing, 1.0]) if ct.spacing else np.eye(4)
    files: dict[str, Any] = {"mla": [], "npy": [], "b2nd": [], "nii": []}
    for k in range(n_cases):
        img_mla, lab_mla = workdir / f"ct{k}.mla", workdir / f"seg{k}.mla"
        MLArray(ct.array, spacing=ct.spacing or None, patch_size=PATCH).save(img_mla)
        labels = MLArray(seg.array, spacing=ct.spacing or None, patch_size=PATCH)
        annotate(labels, with_class_locations=True, seg=True)
        labels.save(lab_mla)
        files["mla"].append((str(img_mla), str(lab_mla)))
        samples = {s.label: s.coords for s in class_locations(seg.array)}
        pkl = workdir / f"seg{k}.pkl"
        pkl.write_bytes(pickle.dumps(samples))
        for kind, suffix in (("npy", ".npy"), ("b2nd", ".b2nd")):
            paths = []
            for name, source, mla in (("ct", ct.array, img_mla), ("seg", seg.array, lab_mla)):
                path = workdir / f"{name}{k}{suffix}"
                if kind == "npy":
                    np.save(path, source)
                else:
                    layout = MLArray.open(mla).meta.layout
                    assert layout is not None
                    cparams = blosc2.CParams(codec=getattr(blosc2.Codec, layout.codec.upper()), clevel=layout.clevel)
                    blosc2.asarray(
                        source,
                        urlpath=str(path),
                        mode="w",
                        chunks=layout.chunk_size,
                        blocks=layout.block_size,
                        cparams=cparams,
                    )
                paths.append(str(path))
            files[kind].append((paths[0], paths[1], str(pkl)))
        nii_img, nii_lab = workdir / f"ct{k}.nii.gz", workdir / f"seg{k}.nii.gz"
        nib.save(nib.Nifti1Image(ct.array, affine), nii_img)
        nib.save(nib.Nifti1Image(seg.array, affine), nii_lab)
        files["nii"].append((str(nii_img), str(nii_lab)))
    return files


def run(
    shape: tuple[int, int, int], patches: int, slow_patches: int, n_cases: int, repeats: int, workdir: Path
) -> dict[str, Any]:
    """Measure every pipeline ``repeats`` times, in a rotating order (machine load drifts); keep the median run."""
    files = prepare(workdir, shape, n_cases)
    common: dict[str, Any] = {"batch_size": BATCH, "num_workers": WORKERS}
    images, labels = [i for i, _ in files["mla"]], [lab for _, lab in files["mla"]]
    queued = 4 * slow_patches  # a queue serves several patches per volume load: time more of them

    def ours() -> Any:
        ds = PatchDataset(images, labels, patch_size=PATCH, samples_per_epoch=patches + BATCH, seed=0)
        return DataLoader(ds, **common)

    pipelines: dict[str, tuple[Any, int]] = {
        "mlarray": (ours, patches),
        "npy-mmap": (lambda: DataLoader(ArrayPatches(files["npy"], "npy", patches + BATCH), **common), patches),
        "blosc2+pickle": (
            lambda: DataLoader(ArrayPatches(files["b2nd"], "b2nd", patches + BATCH), **common),
            patches,
        ),
        "monai-nii.gz": (lambda: _monai_loader(files["nii"], slow_patches + BATCH), slow_patches),
        "torchio-nii.gz": (lambda: _torchio_loader(files["nii"], queued + BATCH), queued),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in pipelines}
    names = list(pipelines)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            make, limit = pipelines[name]
            runs[name].append(measure(make(), limit))
    results = {}
    for name, measured in runs.items():
        ordered = sorted(measured, key=lambda m: m["rate"])
        results[name] = {**ordered[len(ordered) // 2], "all_rates": [m["rate"] for m in measured]}
    return results


def table(results: dict[str, Any]) -> str:
    """The markdown table: rate, ratio to mlarray, time to the first batch."""
    ours = results["mlarray"]["rate"]
    lines = [
        "| pipeline | patches/s (median) | mlarray is | first batch (s) | patches timed | all runs (patches/s) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        ratio = "–" if name == "mlarray" else f"{ours / r['rate']:.1f}x"
        runs = ", ".join(f"{x:.1f}" for x in r["all_rates"])
        lines.append(f"| {name} | {r['rate']:.1f} | {ratio} | {r['first_batch_s']:.1f} | {r['patches']} | {runs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="512,512,320", help="volume shape (default: the main benchmark's CT)")
    parser.add_argument("--cases", type=int, default=2, help="image/label pairs (copies of the same volumes)")
    parser.add_argument("--patches", type=int, default=64, help="patches timed for the fast pipelines")
    parser.add_argument("--slow-patches", type=int, default=8, help="patches timed for the .nii.gz pipelines")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every pipeline; the median is reported")
    parser.add_argument("--workdir", help="where files are written (default: a temporary directory)")
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    assert len(shape) == 3
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = run(shape, args.patches, args.slow_patches, args.cases, args.repeats, Path(tmp))  # type: ignore[arg-type]
    out = {
        "config": {**vars(args), "shape": list(shape), "patch": list(PATCH), "workers": WORKERS, "batch": BATCH},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training-latest.json").write_text(json.dumps(out, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
