"""Deterministic synthetic volumes that look like the data mlarray is used for.

Compression ratios and patch-read costs depend on the data, so the benchmark needs
volumes with the statistics of real ones: a CT with air at exactly -1024 around a
body, smooth anatomy and scanner noise; a sparse label map; an MR image with noise
everywhere (nothing compresses well); and a channel-first multi-modal stack with a
zero background. Everything is generated from a seed with NumPy alone, so two runs
(and two machines) benchmark byte-identical arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class Dataset:
    """One benchmark volume and how mlarray should describe it."""

    name: str
    description: str
    array: np.ndarray[Any, Any]
    axis_labels: list[str] | None = None
    spacing: list[float] = field(default_factory=list)

    @property
    def spatial_axes(self) -> list[int]:
        """Array axes that are spatial (patches are random along these only)."""
        if self.axis_labels is None:
            return list(range(self.array.ndim))
        return [i for i, label in enumerate(self.axis_labels) if label == "spatial"]


def _grid(n: int) -> np.ndarray[Any, Any]:
    """Voxel centres of an axis of ``n`` voxels in normalized coordinates [-1, 1]."""
    return np.linspace(-1.0, 1.0, n, dtype=F32)


def _smooth(
    shape: tuple[int, ...], rng: np.random.Generator, terms: int = 6, freq: float = 6.0
) -> np.ndarray[Any, Any]:
    """A smooth random field in about [-1, 1]: a sum of separable cosines."""
    out = np.zeros(shape, dtype=F32)
    for _ in range(terms):
        term: Any = F32(rng.uniform(0.3, 1.0))
        for axis, n in enumerate(shape):
            f = rng.uniform(0.5, freq)
            wave = np.cos(f * _grid(n) + rng.uniform(0, 2 * np.pi)).astype(F32)
            index = [None] * len(shape)
            index[axis] = slice(None)  # type: ignore[call-overload]
            term = term * wave[tuple(index)]
        out += term
    out /= F32(max(float(np.abs(out).max()), 1e-6))
    return out


def _ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray[Any, Any]:
    """Normalized squared distance ``sum(((u - c) / r) ** 2)`` (< 1 inside) on the whole grid."""
    out = np.zeros(shape, dtype=F32)
    for axis, (n, c, r) in enumerate(zip(shape, centre, radii, strict=True)):
        d = ((_grid(n) - F32(c)) / F32(r)) ** 2
        index = [None] * len(shape)
        index[axis] = slice(None)  # type: ignore[call-overload]
        out += d[tuple(index)]
    return out


def ct(shape: tuple[int, int, int] = (512, 512, 320), seed: int = 1) -> Dataset:
    """CT-like int16: body ellipse (axes 0-1) along axis 2, air exactly -1024 outside.

    Inside the body: a fat rim, soft tissue with smooth variation, two lungs in the
    upper half, a spine and a few organs, plus Gaussian noise (sigma 20 HU).
    """
    rng = np.random.default_rng(seed)
    u0, u1, u2 = _grid(shape[0]), _grid(shape[1]), _grid(shape[2])
    scale = (1.0 + 0.05 * np.cos(np.pi * u2)).astype(F32)
    r2 = ((u0[:, None] / F32(0.92)) ** 2 + (u1[None, :] / F32(0.82)) ** 2)[:, :, None] / (scale**2)[None, None, :]
    body = r2 <= 1.0
    soft, fine = _smooth(shape, rng), _smooth(shape, rng, terms=3, freq=10.0)
    hu = F32(40.0) + F32(25.0) * soft
    hu[np.broadcast_to(r2 > 0.78, shape)] = -100.0
    upper = (u2 > 0.05)[None, None, :]
    for side in (-0.42, 0.42):
        lung = (_ellipsoid(shape, (side, -0.05, 0.55), (0.3, 0.45, 0.5)) < 1.0) & upper
        hu[lung] = F32(-850.0) + F32(40.0) * fine[lung]
    spine = np.broadcast_to(_ellipsoid(shape[:2], (0.0, 0.62), (0.1, 0.1))[:, :, None] < 1.0, shape)
    hu[spine] = F32(600.0) + F32(300.0) * fine[spine]
    for centre, radii, value in (
        ((-0.35, 0.0, -0.45), (0.35, 0.3, 0.35), 60.0),
        ((0.4, 0.25, -0.5), (0.12, 0.15, 0.2), 30.0),
        ((-0.4, 0.25, -0.5), (0.12, 0.15, 0.2), 30.0),
        ((0.15, -0.3, -0.3), (0.2, 0.15, 0.25), 10.0),
    ):
        organ = _ellipsoid(shape, centre, radii) < 1.0
        hu[organ] = F32(value) + F32(15.0) * fine[organ]
    hu += rng.standard_normal(shape, dtype=F32) * F32(20.0)
    out = np.clip(np.rint(hu), -1000, 3000).astype(np.int16)
    out[~np.broadcast_to(body, shape)] = -1024
    return Dataset(
        "ct", f"CT-like int16 {_dims(shape)}, air = -1024 outside a body ellipse", out, spacing=[0.8, 0.8, 1.5]
    )


def seg(shape: tuple[int, int, int] = (512, 512, 320), seed: int = 2) -> Dataset:
    """uint8 label map: background 0 and labels 1-8 as ellipsoid blobs with wobbly borders."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.uint8)
    for label in range(1, 9):
        centre = tuple(rng.uniform(-0.5, 0.5) for _ in shape)
        radii = tuple(rng.uniform(0.15, 0.4) for _ in shape)
        lo = [max(0, int((c - 1.3 * r + 1) / 2 * n)) for c, r, n in zip(centre, radii, shape, strict=True)]
        hi = [min(n, int((c + 1.3 * r + 1) / 2 * n) + 1) for c, r, n in zip(centre, radii, shape, strict=True)]
        sub = tuple(h - lo_ for lo_, h in zip(lo, hi, strict=True))
        # Distances on the sub-box, expressed in whole-volume normalized coordinates.
        d = np.zeros(sub, dtype=F32)
        for axis, (n, c, r, a, b) in enumerate(zip(shape, centre, radii, lo, hi, strict=True)):
            index = [None] * 3
            index[axis] = slice(None)  # type: ignore[call-overload]
            d += (((_grid(n)[a:b] - F32(c)) / F32(r)) ** 2)[tuple(index)]
        d += F32(0.35) * _smooth(sub, rng, terms=4, freq=10.0)
        view = out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        view[d < 1.0] = label
    return Dataset("seg", f"uint8 segmentation {_dims(shape)}, 8 labels in blobs", out, spacing=[0.8, 0.8, 1.5])


def mr(shape: tuple[int, int, int] = (256, 256, 180), seed: int = 3) -> Dataset:
    """MR-like float32 magnitude image: head with tissue classes, bias field, Rician noise everywhere."""
    rng = np.random.default_rng(seed)
    head = _ellipsoid(shape, (0.0, 0.0, 0.0), (0.78, 0.9, 0.85))
    tissue = _smooth(shape, rng, terms=8, freq=14.0)
    signal = np.where(tissue > 0.1, F32(0.85), np.where(tissue > -0.4, F32(0.6), F32(0.3)))
    signal = np.where(head < 0.8, signal, np.where(head < 1.0, F32(0.45), F32(0.0)))
    signal = signal * (F32(1.0) + F32(0.15) * _smooth(shape, rng, terms=2, freq=2.0))
    sigma = F32(0.03)
    re = signal + sigma * rng.standard_normal(shape, dtype=F32)
    im = sigma * rng.standard_normal(shape, dtype=F32)
    out = (np.sqrt(re * re + im * im) * F32(1000.0)).astype(F32)
    return Dataset("mr", f"MR-like float32 {_dims(shape)}, noise everywhere", out, spacing=[1.0, 1.0, 1.0])


def multichannel(shape: tuple[int, int, int, int] = (4, 160, 192, 160), seed: int = 4) -> Dataset:
    """Channel-first float32 stack (like T1/T1c/T2/FLAIR): z-scored brain, exactly 0 outside."""
    rng = np.random.default_rng(seed)
    spatial = shape[1:]
    brain = _ellipsoid(spatial, (0.0, 0.0, 0.0), (0.8, 0.85, 0.8)) < 1.0
    tissue = _smooth(spatial, rng, terms=8, freq=14.0)
    tumour = _ellipsoid(spatial, (0.3, -0.2, 0.1), (0.2, 0.25, 0.2)) + F32(0.3) * _smooth(spatial, rng, terms=3)
    out = np.zeros(shape, dtype=F32)
    for c in range(shape[0]):
        w, g, csf, t = (rng.uniform(0.2, 1.0) for _ in range(4))
        img = np.where(tissue > 0.1, F32(w), np.where(tissue > -0.4, F32(g), F32(csf)))
        img = np.where(tumour < 1.0, F32(t + 0.5), img) + F32(0.05) * rng.standard_normal(spatial, dtype=F32)
        inside = img[brain]
        img = (img - inside.mean()) / inside.std()
        out[c] = np.where(brain, img, F32(0.0))
    labels = ["channel", "spatial", "spatial", "spatial"]
    return Dataset("4ch", f"4-channel float32 {_dims(shape)}, channel first", out, labels, [1.0, 1.0, 1.0])


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


FULL: dict[str, Callable[[], Dataset]] = {
    "ct": ct,
    "seg": seg,
    "mr": mr,
    "4ch": multichannel,
}
"""The volumes of issue 3, at full size."""

QUICK: dict[str, Callable[[], Dataset]] = {
    "ct": lambda: ct((320, 320, 224)),
    "seg": lambda: seg((320, 320, 224)),
    "mr": lambda: mr((224, 224, 160)),
    "4ch": lambda: multichannel((4, 128, 160, 128)),
}
"""Smaller volumes with the same statistics for ``--quick``."""
