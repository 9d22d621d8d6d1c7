"""The targets of issue 15, measured on one run, with their spread over repetitions.

Issue 15 asks for patch reads, open + read, threaded loads and writes relative to the
earlier implementation (PyPI ``mlarray==0.0.54``, measured in its own virtualenv by
:mod:`benchmarks.earlier`) and to NumPy memmap, and for file sizes no larger than
before. Each target records the ratio of the two medians (the verdict) and the spread
of the same ratio over the run's repetitions: patch reads are split into
``config.repetitions`` consecutive groups at the same positions for both formats,
writes and loads are repeated ``write_repeats`` / ``load_repeats`` times. The ratio of
repetition *i* of one format to repetition *i* of the other gives one value per
repetition; the table shows their median, minimum and maximum.
"""

from __future__ import annotations

import statistics
from typing import Any

OURS = "mlarray"
EARLIER = "mlarray-0.0.54"
CEILING = "npy-mmap"

BASELINE_DATA_BYTES: dict[str, tuple[tuple[int, ...], int]] = {
    "ct": ((512, 512, 320), 53227428),
    "seg": ((512, 512, 320), 218691),
    "mr": ((256, 256, 180), 39753971),
    "4ch": ((4, 160, 192, 160), 20762513),
}
"""Data-section bytes (chunks and chunk index) of each full-size volume as python-blosc2 wrote
it before issue 15 (commit b183c9e), the "no larger than today" reference; the header's
bytes are left out because they vary with the digest they record."""


def spread(numerators: list[float] | None, denominators: list[float] | None) -> dict[str, Any] | None:
    """Median, minimum and maximum of the ratios of paired repetitions (``None`` when unpaired)."""
    if not numerators or not denominators or len(numerators) != len(denominators):
        return None
    values = [a / b for a, b in zip(numerators, denominators, strict=True) if b]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _target(
    tid: str, text: str, measured: float | None, limit: float, spread_: dict[str, Any] | None, detail: str = ""
) -> dict[str, Any]:
    return {
        "id": tid,
        "issue": 15,
        "target": text,
        "measured": measured,
        "op": "<=",
        "limit": limit,
        "passed": None if measured is None else measured <= limit,
        "spread": spread_,
        "detail": detail,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 15 that the run can measure.

    Runs made before the targets existed (no ``repetitions`` in their configuration)
    give none; the comparisons with the earlier implementation need it in the run.
    """
    cfg = results.get("config", {})
    if "repetitions" not in cfg:
        return []
    data = results["datasets"]
    out: list[dict[str, Any]] = []

    def get(ds: str, fmt: str, key: str) -> Any:
        return data.get(ds, {}).get("formats", {}).get(fmt, {}).get(key)

    def ratio(ds: str, a: str, b: str, key: str, key_b: str | None = None) -> tuple[float | None, Any]:
        mine, theirs = get(ds, a, key), get(ds, b, key_b or key)
        measured = mine / theirs if mine is not None and theirs else None
        reps = spread(get(ds, a, _reps(key)), get(ds, b, _reps(key_b or key)))
        return measured, reps

    with_earlier = EARLIER in cfg.get("formats", [])
    if with_earlier:
        for ds in data:
            for key, title, limit in (
                ("patch128_ms", "128³ patch", 0.7),
                ("patch192_ms", "192³ patch", 0.7),
                ("openread128_ms", "open + 128³ patch", 0.8),
            ):
                if get(ds, OURS, key) is None:
                    continue  # e.g. a 192³ patch that would be the whole 4-channel volume
                measured, reps = ratio(ds, OURS, EARLIER, key)
                cpu = ratio(ds, OURS, EARLIER, key.replace("_ms", "_cpu_ms"))[0]
                notes = [] if cpu is None else [f"CPU-time ratio {cpu:.2f}"]
                over = get(ds, OURS, key.replace("patch", "read_over_floor").replace("_ms", ""))
                if key.startswith("patch") and over is not None:
                    notes.append(f"mlarray's read {over:.2f}x its decode floor")
                floor, earlier = get(ds, OURS, key.replace("patch", "floor")), get(ds, EARLIER, key)
                if key.startswith("patch") and floor is not None and earlier:
                    notes.append(f"the decode floor alone {floor / earlier:.2f}x 0.0.54's read")
                note = "; ".join(notes)
                text = f"{ds} {title}: mlarray / 0.0.54"
                out.append(_target(f"i15-{ds}-{key[:-3]}", text, measured, limit, reps, note))
    if get("ct", CEILING, "patch128_ms") is not None:
        measured, reps = ratio("ct", OURS, CEILING, "patch128_ms")
        floor, npy = get("ct", OURS, "floor128_ms"), get("ct", CEILING, "patch128_ms")
        note = "" if floor is None else f"decoding alone (the decode floor) {floor / npy:.2f}x NumPy memmap"
        out.append(_target("i15-ct-patch128-npy", "ct 128³ patch: mlarray / NumPy memmap", measured, 2.2, reps, note))
    for ds in data:
        measured, reps = ratio(ds, OURS, OURS, "load2_s", "load1_s")
        if measured is not None:
            out.append(_target(f"i15-{ds}-load", f"{ds} full load: 2 threads / 1 thread", measured, 0.6, reps))
    if with_earlier:
        for ds in data:
            measured, reps = ratio(ds, OURS, EARLIER, "write_s")
            cpu = ratio(ds, OURS, EARLIER, "write_cpu_s")[0]
            note = "" if cpu is None else f"CPU-time ratio {cpu:.2f}"
            out.append(_target(f"i15-{ds}-write", f"{ds} write: mlarray / 0.0.54", measured, 0.5, reps, note))
    for ds, (shape, before) in BASELINE_DATA_BYTES.items():
        now = get(ds, OURS, "data_bytes")
        if now is None or tuple(data[ds]["shape"]) != shape:
            continue  # only the full-size volumes have a reference
        out.append(
            _target(f"i15-{ds}-size", f"{ds} data bytes: now / before issue 15", now / before, 1.0, None, f"{now} B")
        )
    return out


def _reps(key: str) -> str:
    """The key of the per-repetition values of a median metric (``write_s`` -> ``write_reps_s``)."""
    stem, unit = key.rsplit("_", 1)
    return f"{stem}_reps_{unit}"
