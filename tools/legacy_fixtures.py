"""Generate the real legacy fixtures: `.mla` files written by published mlarray 0.0.x releases.

For every requested version this script creates a throw-away virtualenv in a temporary directory,
installs ``mlarray==<version>`` together with the blosc2 release that was current when that version
was published (see ``BLOSC2_PINS``), and runs ``tools/legacy_writer.py`` inside it. The writer writes
a small set of files with that version's own public API and reopens each with the same API; this
script collects its report into ``<out>/manifest.json`` (the shape the legacy tests read) and
``<out>/PROVENANCE.md``.

The earlier implementation's import name collides with ours, so it only ever runs inside those
temporary virtualenvs. Nothing here unpickles anything: the pickle globals of each header are listed
by walking the opcodes with ``pickletools.genops``.

Usage::

    python tools/legacy_fixtures.py --out tests/fixtures/legacy [--versions 0.0.23 0.0.54] [--keep-venvs]

With ``--versions`` only those versions are regenerated; the manifest entries of the other versions
already in ``<out>`` are kept.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import json
import os
import pickletools
import shutil
import struct
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

WRITER = Path(__file__).with_name("legacy_writer.py")
SCRIPT = "tools/legacy_fixtures.py"

# Every version whose header format or write/read path differs from its neighbours (the first
# release of each distinct pair of meta.py and mlarray.py), plus 0.0.30, which the issue names.
# PROVENANCE.md says what changed at each one.
VERSIONS = [
    "0.0.23",
    "0.0.27",
    "0.0.28",
    "0.0.30",
    "0.0.31",
    "0.0.33",
    "0.0.34",
    "0.0.35",
    "0.0.40",
    "0.0.41",
    "0.0.42",
    "0.0.43",
    "0.0.44",
    "0.0.45",
    "0.0.46",
    "0.0.47",
    "0.0.48",
    "0.0.49",
    "0.0.50",
    "0.0.51",
    "0.0.52",
    "0.0.53",
    "0.0.54",
]

# mlarray 0.0.x only requires ``blosc2>=3``. We pin the newest final blosc2 release uploaded to PyPI
# before that mlarray release (upload dates as PyPI lists them), so each file is written the way a
# user installing that version on its release day would have written it.
BLOSC2_PINS: dict[str, tuple[str, str, str]] = {
    # mlarray version: (blosc2 version, mlarray upload date, blosc2 upload date)
    "0.0.23": ("3.12.2", "2026-01-23", "2025-12-04"),
    "0.0.27": ("3.12.2", "2026-01-24", "2025-12-04"),
    "0.0.28": ("3.12.2", "2026-01-28", "2025-12-04"),
    "0.0.30": ("3.12.2", "2026-01-28", "2025-12-04"),
    "0.0.31": ("3.12.2", "2026-01-28", "2025-12-04"),
    "0.0.33": ("4.0.0", "2026-01-30", "2026-01-29"),
    "0.0.34": ("4.0.0", "2026-02-02", "2026-01-29"),
    "0.0.35": ("4.0.0", "2026-02-02", "2026-01-29"),
    "0.0.40": ("4.0.0", "2026-02-16", "2026-01-29"),
    "0.0.41": ("4.0.0", "2026-02-17", "2026-01-29"),
    "0.0.42": ("4.0.0", "2026-02-17", "2026-01-29"),
    "0.0.43": ("4.0.0", "2026-02-18", "2026-01-29"),
    "0.0.44": ("4.0.0", "2026-02-19", "2026-01-29"),
    "0.0.45": ("4.0.0", "2026-02-19", "2026-01-29"),
    "0.0.46": ("4.0.0", "2026-02-19", "2026-01-29"),
    "0.0.47": ("4.0.0", "2026-02-19", "2026-01-29"),
    "0.0.48": ("4.0.0", "2026-02-20", "2026-01-29"),
    "0.0.49": ("4.0.0", "2026-02-20", "2026-01-29"),
    "0.0.50": ("4.0.0", "2026-02-26", "2026-01-29"),
    "0.0.51": ("4.1.2", "2026-03-06", "2026-03-03"),
    "0.0.52": ("4.1.2", "2026-04-01", "2026-03-03"),
    "0.0.53": ("4.1.2", "2026-04-01", "2026-03-03"),
    "0.0.54": ("4.11.0", "2026-08-26", "2026-08-12"),
}

PICKLE_OPS_WITH_STRING = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def msgpack_bin_payload(raw: bytes) -> bytes | None:
    """The bytes inside a msgpack ``bin`` object, or None when ``raw`` is not a single bin object."""
    if not raw:
        return None
    head = raw[0]
    sizes = {0xC4: (1, ">B"), 0xC5: (2, ">H"), 0xC6: (4, ">I")}
    if head not in sizes:
        return None
    width, fmt = sizes[head]
    (length,) = struct.unpack(fmt, raw[1 : 1 + width])
    body = raw[1 + width :]
    return body if len(body) == length else None


def pickle_globals(data: bytes) -> list[list[str]]:
    """Every (module, name) pair a pickle references, found by walking its opcodes (nothing is run)."""
    found: list[list[str]] = []
    memo: dict[int, Any] = {}
    recent: list[Any] = []  # values pushed by string opcodes and memo gets, enough for STACK_GLOBAL
    for opcode, arg, _pos in pickletools.genops(data):
        name = opcode.name
        if name in PICKLE_OPS_WITH_STRING:
            recent.append(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(str(arg))))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(str(arg))] = recent[-1] if recent else None
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            found.append([module, attr])
            recent.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = recent[-2], recent[-1]
            found.append([str(module), str(attr)])
            recent.append(None)
        else:
            recent.append(None)
    unique: list[list[str]] = []
    for pair in found:
        if pair not in unique:
            unique.append(pair)
    return sorted(unique)


def make_venv(root: Path, version: str) -> Path:
    """A fresh virtualenv with mlarray==version and its contemporaneous blosc2; returns its python."""
    env_dir = root / f"venv-{version}"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    blosc2_pin = BLOSC2_PINS[version][0]
    cmd = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"mlarray=={version}",
        f"blosc2=={blosc2_pin}",
    ]
    subprocess.run(cmd, check=True)
    return python


def run_writer(python: Path, out_dir: Path, workdir: Path) -> dict[str, Any]:
    """Run the writer inside the legacy virtualenv (from a directory without our package on the path)."""
    writer = workdir / "legacy_writer.py"
    shutil.copyfile(WRITER, writer)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(python), "-I", str(writer), str(out_dir)], cwd=workdir, env=env, check=True, capture_output=True, text=True
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def manifest_entries(version: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for item in report["files"]:
        raw = base64.b64decode(item["raw_vlmeta"])
        if item["encoding"] == "gzip-pickle":
            payload = msgpack_bin_payload(raw)
            if payload is None:
                raise SystemExit(f"{version}/{item['name']}: pickled header is not a msgpack bin object")
            globals_seen = pickle_globals(gzip.decompress(payload))
        else:
            globals_seen = []
        entries.append(
            {
                "path": f"{version}/{item['name']}.mla",
                "version": version,
                "blosc2": report["blosc2"],
                "numpy": report["numpy"],
                "encoding": item["encoding"],
                "pickle_globals": globals_seen,
                "features": item["features"],
                "array": item["array"],
                "header": item["header"],
                "api": item["api"],
            }
        )
    return entries


def provenance(entries: list[dict[str, Any]], reports: dict[str, dict[str, Any]], generated: str) -> str:
    """PROVENANCE.md: packages used per version, the script, the date, and why each version is here."""
    lines = [
        "# Provenance of the legacy fixtures",
        "",
        f"Generated {generated} by `{SCRIPT}` (writer program `tools/legacy_writer.py`, run inside a",
        "throw-away virtualenv per version). Every file in this folder was written by the published",
        "`mlarray` release named by its folder, through that release's own public API, and reopened with",
        "the same API to record `api` in `manifest.json`. Regenerate with",
        "",
        "    python tools/legacy_fixtures.py --out tests/fixtures/legacy [--versions 0.0.23 ...]",
        "",
        "blosc2 is pinned to the newest final release on PyPI uploaded before that mlarray release",
        "(mlarray itself only asks for `blosc2>=3`); numpy and msgpack are whatever pip resolved then.",
        "",
        "| version | published | blosc2 (published) | numpy | msgpack | python | header | files | not written |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for version in sorted(reports, key=_version_key):
        report = reports[version]
        blosc2_pin, released, blosc2_date = BLOSC2_PINS[version]
        encodings = sorted({e["encoding"] for e in entries if e["version"] == version})
        skipped = ", ".join(f"`{s['name']}` ({s['error'].splitlines()[0][:80]})" for s in report["skipped"]) or "-"
        lines.append(
            f"| {version} | {released} | {report['blosc2']} ({blosc2_date}) | {report['numpy']} | "
            f"{report['msgpack']} | {report['python']} | {', '.join(encodings)} | {len(report['files'])} | {skipped} |"
        )
    lines += ["", WHY_INTRO, "| version | same code as | what changed there |", "| --- | --- | --- |"]
    lines += [f"| {version} | {same} | {what} |" for version, same, what in VERSION_NOTES]
    lines += ["", READER_NOTES]
    return "\n".join(lines) + "\n"


READER_NOTES = """## What a reader of these headers must know

All of it is visible in `manifest.json` (`header` is the stored header as JSON); this is the summary.

- **Where the header lives.** Blosc2 variable-length metalayer `mlarray`. 0.0.23-0.0.48 store the
  mapping itself (python-blosc2 msgpack-encodes it; no `__tuple__` markers occur, every sequence was
  cast to a list first). 0.0.49+ store `gzip(pickle(mapping))` as one msgpack `bin` object (pickle
  protocol 5). 0.0.49's pickle holds only builtins (no globals). 0.0.50-0.0.54 pickle
  `spatial.shape`, `blosc2.chunk_size/block_size/patch_size` as `mlarray.meta._FrozenList` and
  `blosc2.cparams/dparams` as `mlarray.meta._FrozenDict`, each rebuilt by `REDUCE` with one positional
  argument (a plain list or dict), the module name memoized and re-read with `BINGET`.
- **Section names.** Free-form source metadata is `image` (0.0.23-0.0.27), `original` (0.0.28-0.0.33),
  `source` (0.0.34+). The layout section is `_blosc2` up to 0.0.41 and `blosc2` from 0.0.42.
- **Wrapping.** 0.0.23-0.0.27 store values directly (`is_seg: true`, `image: {...}`, `extra: {...}`,
  `_has_array: true`, `stats`/`bbox`/`image` may be `null`). From 0.0.28 every section is present and
  single-value sections are wrapped in a one-key mapping: `original`/`source`/`extra` -> `{"data": {...}}`,
  `is_seg` -> `{"is_seg": ...}`, `_has_array` -> `{"has_array": ...}`, `_image_meta_format` ->
  `{"image_meta_format": ...}`; but `_mlarray_version` stays a bare string (`"v0"`) in every version.
- **stats.** 0.0.23-0.0.27: `null` or a mapping of the ten statistics; 0.0.28+: always a mapping with
  every key, `null` where unset; 0.0.31+ add `percentile_min_key` / `percentile_max_key`.
- **bbox.** 0.0.23-0.0.27: `null` or a bare list `[n][ndim][2]` of ints; 0.0.28-0.0.32 `{"bboxes": ...}`;
  0.0.33+ `{"bboxes", "scores", "labels"}` (labels may mix strings and numbers; all `null` when unset).
- **Geometry.** `spacing` and `origin` are lists over the spatial axes only; `direction` is nested
  (`[ndim][ndim]`), never flat. 0.0.49+ may store `spatial.affine` (`[ndim+1][ndim+1]`) instead: the API
  refuses affine together with spacing/origin/direction, so those are then `null`. 0.0.54 adds
  `spatial.coord_system` (a string such as `"LPS"`).
- **Axes.** 0.0.23-0.0.34 mark one channel axis with `spatial.channel_axis` (int or `null`).
  0.0.35+ use `spatial.axis_labels` (strings: `spatial`, `spatial_x/y/z`, `channel`, `temporal`,
  `non_spatial`, `continuous`, `components`), `spatial.axis_units`, and cache the counts in
  `_num_spatial_axes` / `_num_non_spatial_axes`.
- **spatial.shape** is the full array shape where set, but it is `null` in files written through the
  constructor by 0.0.28-0.0.34 and in files created memory-mapped (`open(..., w+)`) by 0.0.23-0.0.40.
  Take the shape from the Blosc2 frame.
- **Layout.** `chunk_size` / `block_size` are the frame's own (all axes); `patch_size` covers the spatial
  axes only, or is `null` (explicit chunk/block sizes). 0.0.48+ add `cparams` (e.g. `{"codec": 2,
  "clevel": 8}`, the codec as a plain int) and `dparams`.
- **Metadata-only images** have `_has_array` false, `spatial.shape` and the layout sizes `null`, and the
  frame holds a placeholder float64 array of shape `(0,)`.
"""

WHY_INTRO = """## Why these versions

The set holds the first release of every distinct pair of `meta.py` and `mlarray.py` between 0.0.23
and 0.0.54 (the releases in between are byte-identical in both files to the one listed before them),
plus 0.0.30, which issue 10 names explicitly.
"""

# Why each version is in the set: (version, releases with the same code, what changed there).
VERSION_NOTES: list[tuple[str, str, str]] = [
    (
        "0.0.23",
        "0.0.24-0.0.26",
        "first release: `Meta.to_dict()` stored as msgpack; sections `image`, `spatial` (with "
        "`channel_axis`), `stats`, `bbox` (a bare list of boxes), `is_seg`, `_blosc2`, "
        "`_has_array`, `_image_meta_format`, `_mlarray_version`, `extra`",
    ),
    (
        "0.0.27",
        "-",
        "`open`/`load` become class methods (`mlarray.py` only); header unchanged",
    ),
    (
        "0.0.28",
        "0.0.29",
        "`Meta` rewritten on `BaseMeta`: `to_mapping()`, single-key sections stored as `{key: "
        "value}` (`original: {data: ...}`, `is_seg: {is_seg: ...}`, ...), `image` renamed "
        "`original`, `bbox` becomes `{bboxes: ...}`",
    ),
    (
        "0.0.30",
        "0.0.28-0.0.29",
        "named by the issue; same code as 0.0.28",
    ),
    (
        "0.0.31",
        "0.0.32",
        "statistics gain `percentile_min_key` / `percentile_max_key`",
    ),
    (
        "0.0.33",
        "-",
        "bounding boxes gain `scores` and `labels`; first release written with blosc2 4",
    ),
    (
        "0.0.34",
        "-",
        "`original` renamed `source`",
    ),
    (
        "0.0.35",
        "0.0.36-0.0.39",
        "`channel_axis` replaced by `axis_labels`, `axis_units` and the cached "
        "`_num_spatial_axes` / `_num_non_spatial_axes`",
    ),
    (
        "0.0.40",
        "-",
        "`open(mode=..., mmap_mode=...)`, in-memory `asarray`; chunk/block derived from the patch "
        "size now depend on the dtype's item size",
    ),
    (
        "0.0.41",
        "-",
        "`create()` split from `open()` (`mlarray.py` only)",
    ),
    (
        "0.0.42",
        "-",
        "`_blosc2` section renamed `blosc2`",
    ),
    (
        "0.0.43",
        "-",
        "the constructor validates the metadata after `copy=` is applied (`mlarray.py` only)",
    ),
    (
        "0.0.44",
        "-",
        "explicit chunk and block sizes must come together and clear `patch_size` (`mlarray.py` only)",
    ),
    (
        "0.0.45",
        "-",
        "numpy-style constructors (`zeros`, `arange`, ...)",
    ),
    (
        "0.0.46",
        "-",
        "layout (`patch_size`, `chunk_size`, `block_size`, `cparams`) moves to the constructor, "
        "`save(path)` takes only the path; `load` reads the frame into memory",
    ),
    (
        "0.0.47",
        "-",
        "`mlarray.py` rework: `open`/`create`/`load` class methods rebuilt on the in-memory store",
    ),
    (
        "0.0.48",
        "-",
        "`blosc2` section gains `cparams` / `dparams`; `compressed=` flag (plain NumPy in memory)",
    ),
    (
        "0.0.49",
        "-",
        "header stored as gzip(pickle(mapping)) instead of msgpack; `spatial.affine`",
    ),
    (
        "0.0.50",
        "0.0.51-0.0.53 (`meta.py`)",
        "header containers pickled as `mlarray.meta._FrozenList` / `_FrozenDict`",
    ),
    (
        "0.0.51",
        "-",
        "`compress()` / `decompress()` (`mlarray.py` only)",
    ),
    (
        "0.0.52",
        "-",
        "a new strategy derives chunk/block from the patch size (`blosc2_layout_strategies`)",
    ),
    (
        "0.0.53",
        "-",
        "the 0.0.52 layout strategy is reverted",
    ),
    (
        "0.0.54",
        "-",
        "`spatial.coord_system`; the 0.0.52 layout strategy is back",
    ),
]


def write_outputs(out: Path, entries: list[dict[str, Any]], reports: dict[str, dict[str, Any]]) -> None:
    """manifest.json (one file entry per line, so diffs stay readable), reports.json and PROVENANCE.md."""
    entries = sorted(entries, key=lambda e: (_version_key(e["version"]), e["path"]))
    generated = dt.datetime.now(dt.timezone.utc).date().isoformat()
    head = json.dumps({"script": SCRIPT, "generated": generated})[:-1]
    body = ",\n".join(json.dumps(entry, separators=(",", ":")) for entry in entries)
    (out / "manifest.json").write_text(f'{head}, "files": [\n{body}\n]}}\n')
    ordered = {v: reports[v] for v in sorted(reports, key=_version_key)}
    lines = ",\n".join(f"{json.dumps(v)}:{json.dumps(r, separators=(',', ':'))}" for v, r in ordered.items())
    (out / "reports.json").write_text("{\n" + lines + "\n}\n")
    (out / "PROVENANCE.md").write_text(provenance(entries, reports, generated))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="fixture folder, e.g. tests/fixtures/legacy")
    parser.add_argument("--versions", nargs="+", default=VERSIONS, help="mlarray versions to (re)generate")
    parser.add_argument("--keep-venvs", type=Path, default=None, help="build the virtualenvs here and keep them")
    args = parser.parse_args(argv)
    unknown = [v for v in args.versions if v not in BLOSC2_PINS]
    if unknown:
        parser.error(f"no blosc2 pin for {unknown}; add them to BLOSC2_PINS")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    reports_path = out / "reports.json"
    old_entries: list[dict[str, Any]] = []
    reports: dict[str, dict[str, Any]] = {}
    if manifest_path.exists():
        old_entries = [e for e in json.loads(manifest_path.read_text())["files"] if e["version"] not in args.versions]
    if reports_path.exists():
        reports = {v: r for v, r in json.loads(reports_path.read_text()).items() if v not in args.versions}

    entries = list(old_entries)
    with tempfile.TemporaryDirectory(prefix="mla-legacy-") as tmp:
        root = args.keep_venvs or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for version in args.versions:
            print(f"[{version}] installing mlarray=={version} blosc2=={BLOSC2_PINS[version][0]}", flush=True)
            python = make_venv(root, version)
            target = out / version
            if target.exists():
                shutil.rmtree(target)
            report = run_writer(python, target.resolve(), root)
            if report["mlarray"] != version:
                raise SystemExit(f"asked for mlarray {version}, the virtualenv has {report['mlarray']}")
            entries.extend(manifest_entries(version, report))
            report["files"] = [item["name"] for item in report["files"]]  # the rest is in the manifest
            reports[version] = report
            print(
                f"[{version}] {len(report['files'])} files, skipped {[s['name'] for s in report['skipped']]}",
                flush=True,
            )

    write_outputs(out, entries, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
