"""``mlarray migrate``: rewrite files of the earlier implementation (0.0.x) in the current format."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from mlarray.cli.options import ClevelOpt, CodecOpt, JobsOpt, PatchSizeOpt, SchedulerOpt, Verbose, errors, run_files
from mlarray.cli.output import dumps, echo_line, job_line
from mlarray.jobs import WorkerLostError, remove_orphans
from mlarray.legacy import MigrationResult, migrate_file
from mlarray.legacy.migrate import MigrationReport, keep_current, migrate_one, tree_pairs
from mlarray.legacy.reader import is_legacy_file


def _migration_line(result: MigrationResult) -> list[str]:
    """The report lines of one migrated file."""
    if result.status == "failed":
        code = result.error.code if result.error is not None else None
        return [job_line(str(result.src), "", False, code, str(result.error))]
    if result.status == "current":
        where = "" if result.dst in (None, result.src) else f" -> {result.dst} (copied)"
        return [f"current {result.src}{where}"]
    lines = [f"ok      {result.src} -> {result.dst}"]
    mapping = result.mapping
    if mapping is not None:
        if mapping.mapped:
            lines.append(f"  mapped: {', '.join(mapping.mapped)}")
        if mapping.kept:
            lines.append(f"  kept under extra.legacy: {', '.join(mapping.kept)}")
        if mapping.dropped:
            lines.append(f"  left out (not representable in JSON): {', '.join(mapping.dropped)}")
    return lines


def _migration_json(result: MigrationResult) -> dict[str, Any]:
    mapping = result.mapping
    return {
        "src": str(result.src),
        "dst": None if result.dst is None else str(result.dst),
        "status": result.status,
        "code": None if result.error is None else result.error.code,
        "error": None if result.error is None else str(result.error),
        "mapped": mapping.mapped if mapping else [],
        "kept": mapping.kept if mapping else [],
        "dropped": mapping.dropped if mapping else [],
    }


def _lost(pair: tuple[Path, Path], message: str) -> MigrationResult:
    return MigrationResult(pair[0], pair[1], "failed", error=WorkerLostError(message, path=str(pair[0])))


def _migrate_pair(pair: tuple[Path, Path], **options: Any) -> MigrationResult:
    """One file of a directory migration, after removing what an unfinished earlier save of its target left."""
    remove_orphans(pair[1])
    return migrate_one(pair, **options)


def _migrate_file(src: Path, target: Path, options: dict[str, Any]) -> MigrationResult:
    """``migrate OLD NEW`` / ``migrate OLD --in-place``: as one file of a directory migration, failures raised.

    A file already in the current format is checked and copied to ``target`` (left alone in place).
    """
    remove_orphans(target)
    if not is_legacy_file(src):
        result = keep_current(src, target)
        if result.error is not None:
            raise result.error
        return result
    return MigrationResult(src, target, "migrated", mapping=migrate_file(src, target, **options))


def migrate(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(metavar="OLD", help="A legacy file, or a directory of .mla files.")],
    dst: Annotated[
        Path | None, typer.Argument(metavar="NEW", help="Output file, or output directory for a directory.")
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Replace each legacy file by its migrated version (atomically).")
    ] = False,
    patch_size: PatchSizeOpt = None,
    codec: CodecOpt = None,
    clevel: ClevelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-file report as JSON.")] = False,
    jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None,
    verbose: Verbose = False,
) -> None:
    """Rewrite files of the earlier mlarray implementation (0.0.x, legacy header) in the current format.

    OLD NEW migrates one file; DIR OUTDIR every .mla file under DIR into OUTDIR (current files are copied);
    --in-place replaces each legacy file only once its migrated copy is complete (current files are left
    alone, so running it again is harmless). The legacy header is decoded
    without running code: a pickle may name only the earlier implementation's own list and dict types.
    """
    with errors(ctx, verbose):
        if in_place == (dst is not None):
            raise typer.BadParameter("give OLD NEW, DIR OUTDIR, or OLD/DIR with --in-place", param_hint="NEW")
        options: dict[str, Any] = {
            "patch_size": patch_size,
            "codec": codec.value if codec else None,
            "clevel": clevel,
        }
        if not src.is_dir():
            result = _migrate_file(src, src if dst is None else dst, options)
            typer.echo(dumps([_migration_json(result)]) if as_json else "\n".join(_migration_line(result)))
            return
        pairs = tree_pairs(src, dst)
        if not pairs:
            raise typer.BadParameter(f"no .mla files found in {src}", param_hint="OLD")
        results = run_files(
            partial(_migrate_pair, **options),
            pairs,
            lost=_lost,
            jobs=jobs,
            scheduler=scheduler,
            what="migrating",
            label=lambda pair: pair[0].name,
            cleanup=lambda pair: remove_orphans(pair[1], mine=True),
            emit=None if as_json else _echo_migration,
        )
        report = MigrationReport(results)
        if as_json:
            typer.echo(dumps([_migration_json(r) for r in report.results]))
        else:
            n = len(report.results)
            typer.echo(
                f"{n} file{'s' if n != 1 else ''}: {report.count('migrated')} migrated, "
                f"{report.count('current')} already current, {report.count('failed')} failed"
            )
        if not report.ok:
            raise typer.Exit(1)


def _echo_migration(result: Any) -> None:
    for line in _migration_line(result):
        echo_line(line)
