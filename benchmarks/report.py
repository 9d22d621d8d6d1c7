"""Turn raw benchmark numbers into ratios, target verdicts and markdown tables.

Kept apart from the runner so the same summary can be recomputed from a saved JSON
file (``python -m benchmarks.report results.json``) without rerunning anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import issue15

OURS = "mlarray"
EARLIER = "mlarray-0.0.54"
"""The earlier implementation (PyPI), measured in its own virtualenv (:mod:`benchmarks.earlier`)."""
CEILING = "npy-mmap"
UNCOMPRESSED = {CEILING}
NOT_OTHERS = {OURS, EARLIER, *UNCOMPRESSED}
"""Formats left out of "best other compressed": ours, the earlier implementation (its own column), npy."""

METRICS: list[tuple[str, str, float]] = [
    ("size_bytes", "size MB", 2.0**-20),
    ("compression_ratio", "ratio", 1.0),
    ("write_s", "write s", 1.0),
    ("open_ms", "open ms", 1.0),
    ("patch128_ms", "128³ ms", 1.0),
    ("patch192_ms", "192³ ms", 1.0),
    ("openread128_ms", "open+128³ ms", 1.0),
    ("openread192_ms", "open+192³ ms", 1.0),
    ("slice_first_ms", "slice first ms", 1.0),
    ("slice_last_ms", "slice last ms", 1.0),
    ("load1_s", "load 1T s", 1.0),
    ("load2_s", "load 2T s", 1.0),
]
"""(key, column title, display scale). Smaller is better for all but ``compression_ratio``."""

COMPARED = [m for m in METRICS if m[0] != "compression_ratio"]

CPU_METRICS: list[tuple[str, str, float]] = [
    ("patch128_cpu_ms", "128³ ms", 1.0),
    ("patch192_cpu_ms", "192³ ms", 1.0),
    ("openread128_cpu_ms", "open+128³ ms", 1.0),
    ("openread192_cpu_ms", "open+192³ ms", 1.0),
    ("slice_first_cpu_ms", "slice first ms", 1.0),
    ("slice_last_cpu_ms", "slice last ms", 1.0),
    ("write_cpu_s", "write CPU s (all threads)", 1.0),
]
"""CPU time of the benchmark process (all its threads): stable when the machine is busy."""


def _best_other(formats: dict[str, Any], key: str) -> tuple[str | None, float | None]:
    """The compressed peer (not mlarray) with the smallest value of ``key``."""
    best: tuple[str | None, float | None] = (None, None)
    for name, values in formats.items():
        if name in NOT_OTHERS or values.get(key) is None:
            continue
        if best[1] is None or values[key] < best[1]:
            best = (name, values[key])
    return best


def ratios(entry: dict[str, Any]) -> dict[str, Any]:
    """Per metric: mlarray / npy-mmap, mlarray / the earlier implementation, best other compressed / mlarray."""
    formats = entry["formats"]
    ours = formats.get(OURS, {})
    out = {}
    for key, _, _ in COMPARED + CPU_METRICS:
        mine = ours.get(key)
        if mine is None:
            continue
        ceiling = formats.get(CEILING, {}).get(key)
        previous = formats.get(EARLIER, {}).get(key)
        other, other_value = _best_other(formats, key)
        out[key] = {
            "mlarray": mine,
            "vs_npy": mine / ceiling if ceiling else None,
            "vs_earlier": mine / previous if previous else None,
            "best_other": other,
            "best_other_value": other_value,
            "best_other_over_mlarray": other_value / mine if other_value is not None and mine else None,
        }
    return out


def _target(tid: str, text: str, measured: float | None, op: str, limit: float, detail: str = "") -> dict[str, Any]:
    ok = None if measured is None else (measured <= limit if op == "<=" else measured >= limit)
    return {"id": tid, "target": text, "measured": measured, "op": op, "limit": limit, "passed": ok, "detail": detail}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the targets of issue 3 and then those of issue 15 (:mod:`benchmarks.issue15`) on one run."""
    return targets_issue3(results) + issue15.targets(results)


def targets_issue3(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the targets of issue 3 on one run."""
    data = results["datasets"]
    out: list[dict[str, Any]] = []

    def get(ds: str, fmt: str, key: str) -> Any:
        return data.get(ds, {}).get("formats", {}).get(fmt, {}).get(key)

    def div(a: Any, b: Any) -> float | None:
        return a / b if a is not None and b else None

    def cpu_note(ds: str, key: str, peer: str) -> str:
        ratio = div(get(ds, OURS, key), get(ds, peer, key))
        return "" if ratio is None else f"CPU-time ratio {ratio:.2f}"

    for edge in (128, 192):
        key = f"patch{edge}_ms"
        mine = get("ct", OURS, key)
        other, value = _best_other(data.get("ct", {}).get("formats", {}), key)
        cpu = f"patch{edge}_cpu_ms"
        out.append(
            _target(
                f"ct-{edge}-npy",
                f"CT {edge}³ patch, open handle: mlarray / npy-mmap",
                div(mine, get("ct", CEILING, key)),
                "<=",
                3.0,
                cpu_note("ct", cpu, CEILING),
            )
        )
        peer_cpu = div(get("ct", other, cpu), get("ct", OURS, cpu)) if other else None
        note = f"fastest other: {other}" + ("" if peer_cpu is None else f"; CPU-time ratio {peer_cpu:.2f}")
        out.append(
            _target(
                f"ct-{edge}-peers",
                f"CT {edge}³ patch: fastest other compressed / mlarray",
                div(value, mine),
                ">=",
                3.0,
                note,
            )
        )
    for edge in (128, 192):
        mine = get("ct", OURS, f"patch{edge}_ms")
        cpu = div(get("ct", OURS, f"openread{edge}_cpu_ms"), get("ct", OURS, f"patch{edge}_cpu_ms"))
        note = "" if cpu is None else f"CPU-time ratio {cpu:.2f}"
        out.append(
            _target(
                f"ct-openread-{edge}",
                f"CT open+read {edge}³ / open-handle read",
                div(get("ct", OURS, f"openread{edge}_ms"), mine),
                "<=",
                2.0,
                note,
            )
        )
    cost = results.get("header_cost", {})
    small = cost.get("10MB", {})
    out.append(
        _target(
            "header-ms",
            "read + validate the header (ms, 10 MB file)",
            small.get("read_header_ms"),
            "<=",
            1.0,
            "'well under 1 ms'",
        )
    )
    # Only 128³: the 4-channel volume is 160x192x160, so a 192³ patch would be the whole array.
    key = "patch128_ms"
    out.append(
        _target(
            "4ch-128-npy",
            "4-channel 128³ patch over all channels: mlarray / npy-mmap",
            div(get("4ch", OURS, key), get("4ch", CEILING, key)),
            "<=",
            1.6,
            cpu_note("4ch", "patch128_cpu_ms", CEILING),
        )
    )
    for ds in data:
        out.append(
            _target(
                f"{ds}-load",
                f"{ds} full load: 2 threads / 1 thread",
                div(get(ds, OURS, "load2_s"), get(ds, OURS, "load1_s")),
                "<=",
                0.6,
            )
        )
    write_cpu = get("ct", OURS, "write_cpu_s")
    note = "" if write_cpu is None else f"CPU time of all threads {write_cpu:.2f} s"
    out.append(_target("ct-write", "CT write time (s)", get("ct", OURS, "write_s"), "<=", 0.3, note))
    out.append(_target("ct-ratio", "CT compression ratio", get("ct", OURS, "compression_ratio"), ">=", 2.8))
    for peer in ("zarr-v3", "h5py-gzip"):
        for ds in data:
            out.append(
                _target(
                    f"{ds}-size-{peer}",
                    f"{ds} file size: mlarray / {peer}",
                    div(get(ds, OURS, "size_bytes"), get(ds, peer, "size_bytes")),
                    "<=",
                    1.0,
                )
            )
    names = sorted(cost, key=lambda k: int(k.rstrip("MB")))
    if len(names) >= 2:
        lo, hi = cost[names[0]], cost[names[-1]]
        for key in ("read_header_ms", "validate_ms"):
            out.append(
                _target(
                    f"header-scale-{key}",
                    f"{key[:-3]}: {names[-1]} file / {names[0]} file",
                    div(hi.get(key), lo.get(key)),
                    "<=",
                    1.5,
                    f"{lo.get(key, 0):.3f} ms vs {hi.get(key, 0):.3f} ms",
                )
            )
    return out


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios per dataset and the target verdicts."""
    return {
        "ratios": {name: ratios(entry) for name, entry in results["datasets"].items()},
        "targets": targets(results),
    }


def _fmt(value: Any, scale: float = 1.0) -> str:
    if value is None:
        return "n/a"
    v = value * scale
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The whole report as markdown."""
    m, cfg = results["machine"], results["config"]
    lines = [
        f"# mlarray benchmark ({'quick' if cfg['quick'] else 'full'} run)",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpu_count')} cores, caches {m.get('caches')}, "
        f"{m.get('memory_gb', '?')} GB RAM; {m.get('platform')}; Python {m.get('python')}.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in m.get('versions', {}).items())}; commit {m.get('git_commit')}.",
        f"Load average at start / end: {m.get('load_average')} / {m.get('load_average_end')}.",
        *_earlier_versions(results),
        f"Medians over {cfg['patches']} random patches ({cfg['slow_patches']} for nifti-gz), {cfg['slices']} slices, "
        f"{cfg['load_repeats']} full loads, {cfg['write_repeats']} writes (1 for nifti-gz); warm page cache; "
        "one decompression thread for patch and slice reads. Every read was checked against the source.",
        "",
    ]
    summary = results.get("summary") or summarize(results)
    for name, entry in results["datasets"].items():
        shape = "x".join(map(str, entry["shape"]))
        lines += [f"## {name}: {entry['description']} ({entry['raw_bytes'] / 2**20:.0f} MB raw, shape {shape})", ""]
        rows = [[fmt] + [_fmt(v.get(key), scale) for key, _, scale in METRICS] for fmt, v in entry["formats"].items()]
        rows += _earlier_row(entry, METRICS)
        lines += _table(["format"] + [title for _, title, _ in METRICS], rows) + [""]
        rows = [
            [fmt] + [_fmt(v.get(key), scale) for key, _, scale in CPU_METRICS] for fmt, v in entry["formats"].items()
        ]
        rows += _earlier_row(entry, CPU_METRICS)
        lines += ["CPU time of the process (all threads), which other jobs on the machine do not inflate:", ""]
        lines += _table(["format"] + [title for _, title, _ in CPU_METRICS], rows) + [""]
        ratio_rows = []
        for key, title, _ in COMPARED + [(k, f"CPU {t}", s_) for k, t, s_ in CPU_METRICS]:
            r = summary["ratios"][name].get(key)
            if r is None:
                continue
            other = "n/a" if r["best_other"] is None else f"{r['best_other']} ({_fmt(r['best_other_over_mlarray'])}x)"
            ratio_rows.append([title, _fmt(r["vs_npy"]), _fmt(r.get("vs_earlier")), other])
        header = ["mlarray", "÷ npy-mmap", f"÷ {EARLIER}", "best other compressed (its value ÷ mlarray)"]
        lines += _table(header, ratio_rows) + [""]
        lines += floor_lines(entry)
    cost = results.get("header_cost")
    if cost:
        lines += ["## Header cost (mlarray)", ""]
        rows = [
            [k, _fmt(v["file_mb"]), _fmt(v["read_header_ms"]), _fmt(v["validate_ms"]), _fmt(v["open_ms"])]
            for k, v in cost.items()
        ]
        lines += _table(["file", "size MB", "read header ms", "validate --quick ms", "MLArray.open ms"], rows) + [""]
    lines += ["## Targets", ""]
    verdict = {True: "met", False: "**missed**", None: "not measured"}
    rows = [
        [t["target"], f"{t['op']} {t['limit']:g}", _fmt(t["measured"]), verdict[t["passed"]], t["detail"]]
        for t in summary["targets"]
        if t.get("issue", 3) == 3
    ]
    lines += _table(["target", "limit", "measured", "verdict", "note"], rows) + [""]
    later = [t for t in summary["targets"] if t.get("issue") == 15]
    if later:
        lines += [
            "## Targets of issue 15",
            "",
            "Measured = ratio of the two medians (the verdict); spread = the same ratio per repetition "
            f"(patch reads in {cfg.get('repetitions')} groups at the same positions, {cfg['write_repeats']} writes, "
            f"{cfg['load_repeats']} loads): median [min - max].",
            "",
        ]
        rows = [
            [t["target"], f"{t['op']} {t['limit']:g}", _fmt(t["measured"]), _spread(t["spread"]), verdict[t["passed"]]]
            + [t["detail"]]
            for t in later
        ]
        lines += _table(["target", "limit", "measured", "spread over repetitions", "verdict", "note"], rows) + [""]
    return "\n".join(lines)


def floor_lines(entry: dict[str, Any]) -> list[str]:
    """What decoding alone costs on this volume (:mod:`benchmarks.floor`), when the run measured it."""
    formats = entry["formats"]
    ours, npy = formats.get("mlarray", {}), formats.get("npy-mmap", {})
    parts = []
    for edge in (128, 192):
        floor = ours.get(f"floor{edge}_ms")
        if floor is None:
            continue
        text = (
            f"{edge}³ {_fmt(floor)} ms (the blocks hold {_fmt(ours[f'overlap{edge}'])}x the patch's voxels; "
            f"an mlarray read takes {_fmt(ours[f'read_over_floor{edge}'])}x it"
        )
        if npy.get(f"patch{edge}_ms"):
            text += f"; the floor is {_fmt(floor / npy[f'patch{edge}_ms'])}x npy-mmap's read"
        parts.append(text + ")")
    if not parts:
        return []
    return [
        "Decode floor of the mlarray file: C-Blosc2 decoding only the blocks each patch overlaps into a "
        "reused buffer, nothing copied out, measured in turn with the reads: " + "; ".join(parts) + ".",
        "",
    ]


def _earlier_versions(results: dict[str, Any]) -> list[str]:
    """The line naming the earlier implementation's versions (none when it was not run)."""
    for entry in results["datasets"].values():
        versions = entry["formats"].get(EARLIER, {}).get("versions")
        if versions:
            listed = ", ".join(f"{k} {v}" for k, v in versions.items())
            return [f"{EARLIER}: the PyPI release in its own virtualenv ({listed})."]
    return []


def _spread(s: dict[str, Any] | None) -> str:
    if s is None:
        return "n/a"
    return f"{_fmt(s['median'])} [{_fmt(s['min'])} - {_fmt(s['max'])}], n={s['n']}"


def _earlier_row(entry: dict[str, Any], metrics: list[tuple[str, str, float]]) -> list[list[str]]:
    """The row "mlarray ÷ 0.0.54" under a per-format table (none when the earlier release was not run)."""
    formats = entry["formats"]
    if EARLIER not in formats or OURS not in formats:
        return []
    cells = []
    for key, _, _ in metrics:
        mine, theirs = formats[OURS].get(key), formats[EARLIER].get(key)
        cells.append("n/a" if mine is None or not theirs else f"{mine / theirs:.2f}x")
    return [[f"*{OURS} ÷ {EARLIER}*", *cells]]


def spread(runs: list[dict[str, Any]]) -> str:
    """A markdown table of every target's measured value across several runs (first run first)."""
    verdicts = [{t["id"]: t for t in summarize(r)["targets"]} for r in runs]
    rows = []
    for tid, first in verdicts[0].items():
        values = [v[tid]["measured"] for v in verdicts if tid in v and v[tid]["measured"] is not None]
        met = sum(1 for v in verdicts if tid in v and v[tid]["passed"])
        low, high = (min(values), max(values)) if values else (None, None)
        rows.append(
            [
                first["target"],
                f"{first['op']} {first['limit']:g}",
                _fmt(first["measured"]),
                f"{_fmt(low)} - {_fmt(high)}",
                f"{met}/{len(runs)}",
            ]
        )
    header = ["target", "limit", "first run", f"range over {len(runs)} runs", "met in"]
    return "\n".join(_table(header, rows))


DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
DOCS_JSON = DOCS_PAGE.with_name("benchmark-results.json")
DOCS_START = "<!-- results: written by `python -m benchmarks.report --publish`; do not edit by hand -->"
DOCS_END = "<!-- end of results -->"


def docs_block(results: dict[str, Any]) -> str:
    """The report of ``results`` as it appears in the documentation: headings one level down.

    Runs stored under ``repeat_runs`` (same machine, earlier) add a table of how far each
    target's measurement moved between runs.
    """
    repeats = results.get("repeat_runs") or []
    results = dict(results, summary=summarize(results))
    lines = markdown(results).splitlines()[1:]  # the page has its own title
    text = "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
    if repeats:
        commits = ", ".join(str(r["machine"].get("git_commit")) for r in [results, *repeats])
        text += (
            f"\n\n### Spread over {len(repeats) + 1} runs\n\n"
            f"The same benchmark on the same machine at commits {commits} (this run first): "
            "how much each target's measurement moves from run to run on a shared machine.\n\n"
            + spread([results, *repeats])
        )
    return text


def published_block(page_text: str) -> str:
    """The results block currently in the documentation page."""
    try:
        start = page_text.index(DOCS_START) + len(DOCS_START)
        end = page_text.index(DOCS_END, start)
    except ValueError:
        raise ValueError(f"the page lacks the markers {DOCS_START!r} ... {DOCS_END!r}") from None
    return page_text[start:end].strip()


def publish(results_paths: list[Path], page: Path = DOCS_PAGE, json_copy: Path = DOCS_JSON) -> None:
    """Copy runs to the documentation's JSON and rewrite the page's results block from them.

    The first run is the one shown; any further runs are kept under ``repeat_runs`` for
    the spread table.
    """
    runs = [json.loads(p.read_text()) for p in results_paths]
    for run in runs:
        run.pop("repeat_runs", None)
    results = dict(runs[0], repeat_runs=runs[1:]) if len(runs) > 1 else runs[0]
    text = page.read_text()
    old = published_block(text)
    start = text.index(DOCS_START) + len(DOCS_START)
    end = text.index(DOCS_END, start)
    text = text[:start] + "\n\n" + docs_block(results) + "\n\n" + text[end:]
    json_copy.write_text(json.dumps(results, indent=1) + "\n")
    page.write_text(text)
    print(f"{page}: results block {'rewritten' if old != published_block(text) else 'unchanged'}; JSON in {json_copy}")


def main(argv: list[str] | None = None) -> int:
    """Print the markdown report of a saved results JSON; with several, also the spread of the targets.

    ``--publish RESULTS.json [EARLIER.json ...]`` instead copies the runs to
    ``docs/benchmark-results.json`` and rewrites the results block of
    ``docs/performance.md`` from them.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "--publish":
        publish([Path(a) for a in args[1:]])
        return 0
    if not args or args[0].startswith("-"):
        print(
            "usage: python -m benchmarks.report RESULTS.json [MORE.json ...]\n"
            "       python -m benchmarks.report --publish RESULTS.json [EARLIER.json ...]",
            file=sys.stderr,
        )
        return 2
    runs = [json.loads(Path(a).read_text()) for a in args]
    runs[0]["summary"] = summarize(runs[0])
    print(markdown(runs[0]))
    if len(runs) > 1:
        print(f"## Spread over {len(runs)} runs\n")
        print(spread(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
