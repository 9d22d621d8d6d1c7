"""``mlarray stats FILE_OR_DIR``: fill ``stats``, ``bbox``, ``is_seg`` and ``class_locations`` of existing files.

A thin command over :func:`mlarray.stats.update_stats`, registered by :mod:`mlarray.cli.commands`.
Each file's header is rewritten atomically; one failing file does not stop the others.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from mlarray.cli.options import JobsOpt, SchedulerOpt, Verbose, errors, run_files
from mlarray.cli.output import dumps, echo_line, job_line
from mlarray.errors import MLArrayError
from mlarray.jobs import WORKER_LOST, each_once, find_mla, remove_orphans


def find_files(paths: list[Path]) -> list[Path]:
    """The ``.mla`` files among ``paths``, directories searched recursively (unfinished saves skipped)."""
    found: list[Path] = []
    for path in paths:
        found += find_mla(path) if path.is_dir() else [path]
    return each_once(found)


def _one(path: Path, class_locations: bool, seg: bool | None) -> dict[str, Any]:
    """One file through :func:`mlarray.stats.update_stats`.

    ``class_locations`` are written for label maps only (spec 5.11), so an image that is not
    one (``--no-seg``) loses those an earlier run recorded; its ``bbox`` is kept (the header
    does not say whether the boxes came from the labels or from someone: detections, annotations).
    """
    from mlarray.stats import update_stats

    remove_orphans(path)  # what an unfinished earlier rewrite of this file left (a killed run)
    try:
        meta = update_stats(path, with_class_locations=class_locations, seg=seg)
    except MLArrayError as exc:
        return {"path": str(path), "ok": False, "code": exc.code, "error": exc.message}
    classes = meta.bbox.labels if meta.is_seg and meta.bbox is not None and meta.bbox.labels is not None else []
    return {
        "path": str(path),
        "ok": True,
        "is_seg": meta.is_seg,
        "classes": classes,
        "class_locations": meta.class_locations is not None,
    }


def _lost(path: Path, message: str) -> dict[str, Any]:
    return {"path": str(path), "ok": False, "code": WORKER_LOST, "error": message}


def _line(result: dict[str, Any]) -> str:
    if not result["ok"]:
        return job_line(result["path"], "", False, result["code"], result["error"])
    if not result["is_seg"]:
        return f"ok      {result['path']}: image statistics"
    where = ", class locations" if result["class_locations"] else ""
    return f"ok      {result['path']}: label map, {len(result['classes'])} classes, boxes{where}"


def stats_command(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(metavar="FILE_OR_DIR", help=".mla files or directories of them.")],
    class_locations: Annotated[
        bool,
        typer.Option(
            "--class-locations",
            help="Also record, per label, the voxel count and up to 10,000 voxels (for patch samplers); "
            "label maps whose non-spatial axes have length 1 only.",
        ),
    ] = False,
    seg: Annotated[
        bool | None,
        typer.Option(
            "--seg/--no-seg",
            help="The files are (not) label maps. Default: keep is_seg, or detect integer label maps.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-file report as JSON.")] = False,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    verbose: Verbose = False,
) -> None:
    """Compute statistics (and, for label maps, per-class boxes and class locations) into each file's header.

    Only the header is rewritten, atomically (a copy of the file replaces it). An integer or boolean
    array with no negative value and at most 255 distinct values is taken for a label map unless
    is_seg is recorded or --seg/--no-seg is given. Class locations are recorded only with
    --class-locations; --no-seg removes class locations recorded earlier (boxes are kept).
    """
    with errors(ctx, verbose):
        files = find_files(paths)
        if not files:
            raise typer.BadParameter("no .mla files found", param_hint="FILE_OR_DIR")
        one = partial(_one, class_locations=class_locations, seg=seg)
        results = run_files(
            one,
            files,
            lost=_lost,
            jobs=jobs,
            scheduler=scheduler,
            what="stats",
            label=lambda p: p.name,
            cleanup=partial(remove_orphans, mine=True),
            emit=None if as_json else lambda result: echo_line(_line(result)),
        )
        if as_json:
            typer.echo(dumps(results))
        if not all(r["ok"] for r in results):
            raise typer.Exit(1)
