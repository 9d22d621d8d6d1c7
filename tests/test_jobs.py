"""Dataset-wide jobs in parallel: --jobs N (local processes) and --scheduler (a real dask.distributed cluster).

A 200-file directory of tiny NIfTI files converts with the same per-file report on
2 local processes and on a 2-worker LocalCluster on 127.0.0.1 as serially; stats,
validate and migrate likewise. A worker process that really dies (``os._exit`` in
the worker, through a per-file function of this module or a worker plugin the test
registers on the cluster) loses no output file and is reported, typed, for its file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mlarray import MLArray
from mlarray.cli import app
from mlarray.cli.convert_jobs import Job, run_job
from mlarray.errors import ALL_ERRORS, HeaderValidationError, MissingDependencyError, Problem
from mlarray.jobs import WORKER_LOST, WorkerLostError, remove_orphans, run_each

nib = pytest.importorskip("nibabel")
distributed = pytest.importorskip("distributed", reason="the dask extra is part of dev")
import dask  # noqa: E402

N_FILES = 200
DIE = "case_137.nii.gz"  # the file whose worker dies in the worker-death tests
MLA_MAGIC = b"\x9e\xa8b2frame"  # a Blosc2 frame (every .mla file) starts so


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 tiny NIfTI files (some scaled, some in sub-folders), one broken file and one unsupported file."""
    root = tmp_path_factory.mktemp("nifti")
    rng = np.random.default_rng(16)
    for i in range(N_FILES):
        folder = root / ("sub" if i % 10 == 0 else "")
        folder.mkdir(exist_ok=True)
        data = rng.integers(-500, 500, size=(6, 5, 4), dtype=np.int16)
        image = nib.Nifti1Image(data, np.diag([0.5 + i / 100, 1.0, 2.0, 1.0]))
        if i % 7 == 0:
            image.header.set_slope_inter(0.5, -10.0)
        nib.save(image, str(folder / f"case_{i:03d}.nii.gz"))
    (root / "broken.nii").write_bytes(b"\x00" * 100)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A 2-worker, 2-process LocalCluster on 127.0.0.1.

    A task whose worker dies is given up at once (allowed-failures 0) and each worker
    holds only the task it runs (worker-saturation 1.0), so a death marks one file.
    """
    config = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with (
        dask.config.set(config),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            worker_dashboard_address=None,
        ) as cluster,
    ):
        yield cluster


def _outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decoded(data: bytes, where: Path) -> tuple[bytes, str, dict[str, Any]]:
    """What a file holds: array bytes, dtype and header (without the digest, which covers the compressed bytes)."""
    scratch = where.with_name(where.name + ".check.mla")
    scratch.write_bytes(data)
    try:
        image = MLArray.load(scratch)
    finally:
        scratch.unlink()
    meta = image.meta.model_dump(mode="json")
    meta.pop("integrity", None)
    array = image.to_numpy()
    return array.tobytes(), array.dtype.str, meta


def _contents(root: Path) -> dict[str, Any]:
    """The decoded contents of every file under ``root`` (parallel writes may order compressed chunks differently)."""
    found = _outputs(root)
    return {name: _decoded(data, root / name) if data.startswith(MLA_MAGIC) else data for name, data in found.items()}


def _convert(dataset: Path, out: Path, *extra: Any) -> tuple[Any, Any]:
    """The text report of the whole directory and the JSON report of its sub-folder."""
    text = run("convert", dataset, out, *extra)
    as_json = run("convert", dataset / "sub", out.with_name(out.name + "-json"), "--json", *extra)
    return text, as_json


Serial = tuple[Path, str, str, dict[str, bytes]]
"""The serial run: its output directory, text report, JSON report and output files."""


@pytest.fixture(scope="module")
def serial(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Serial:
    out = tmp_path_factory.mktemp("serial") / "out"
    text, as_json = _convert(dataset, out)
    assert text.exit_code == 1 and as_json.exit_code == 0  # broken.nii fails, the others convert
    return out, text.stdout, as_json.stdout, _outputs(out)


def _same_report(result: Any, expected: str, here: Path, there: Path) -> None:
    assert result.stdout.replace(str(here), str(there)) == expected


def test_serial_report_is_what_it_was(serial: Serial) -> None:
    _, text, _, outputs = serial
    lines = text.splitlines()
    assert sum(line.startswith("ok ") for line in lines) == N_FILES
    assert any("broken.nii" in line and line.startswith("FAILED") for line in lines)
    assert any(line.startswith("skipped") and "notes.txt" in line for line in lines)
    assert lines[-1] == f"converted {N_FILES} of {N_FILES + 1} files, 1 failed, 1 skipped (unsupported)"
    assert len(outputs) == N_FILES


@pytest.mark.parametrize("mode", ["jobs", "scheduler"])
def test_200_files_convert_in_parallel_with_the_serial_report(
    dataset: Path, tmp_path: Path, serial: Serial, cluster: Any, mode: str
) -> None:
    serial_out, text, as_json, outputs = serial
    out = tmp_path / "out"
    extra = ["--jobs", "2"] if mode == "jobs" else ["--scheduler", cluster.scheduler_address]
    result, result_json = _convert(dataset, out, *extra)
    assert result.exit_code == 1 and result_json.exit_code == 0
    _same_report(result, text, out, serial_out)
    _same_report(result_json, as_json, out.with_name("out-json"), serial_out.with_name("out-json"))
    assert _contents(out) == {name: _decoded(data, out / name) for name, data in outputs.items()}
    assert all(data.startswith(MLA_MAGIC) for data in outputs.values())


def test_stats_validate_migrate_in_parallel_match_serial(
    dataset: Path, tmp_path: Path, serial: Serial, cluster: Any
) -> None:
    files = tmp_path / "mla"
    for name, data in list(serial[3].items())[:24]:
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_bytes(data)
    (files / "broken.mla").write_bytes(b"not a frame")
    jobs, scheduler = ["--jobs", "2"], ["--scheduler", cluster.scheduler_address]
    for command, mode in (
        (["validate", files], jobs),
        (["validate", "--quick", "--json", files], scheduler),
        (["migrate", files, tmp_path / "migrated"], scheduler),
        (["migrate", "--json", files, tmp_path / "m2"], jobs),
    ):
        expected = run(*command)
        assert expected.exit_code == 1 and "broken.mla" in expected.stdout
        got = run(*command, *mode)
        assert (got.exit_code, got.stdout) == (expected.exit_code, expected.stdout)
    copies = []
    for name in ("serial", "jobs", "scheduler"):  # stats rewrite headers: one copy of the files each
        copy = tmp_path / name
        for p in files.rglob("*.mla"):
            (copy / p.relative_to(files)).parent.mkdir(parents=True, exist_ok=True)
            (copy / p.relative_to(files)).write_bytes(p.read_bytes())
        copies.append(copy)
    reports = [
        run("stats", "--json", copy, *mode).stdout.replace(str(copy), "ROOT")
        for copy, mode in zip(copies, ([], jobs, scheduler), strict=True)
    ]
    assert '"ok": true' in reports[0] and '"code": "NOT_A_FRAME"' in reports[0]
    assert reports[1] == reports[0] and reports[2] == reports[0]
    assert _contents(copies[1]) == _contents(copies[0]) == _contents(copies[2])


# --------------------------------------------------------------------------- a worker that dies


def convert_or_die(job: Job) -> Job:
    """The real per-file conversion, except that the worker process running ``DIE`` exits on the spot."""
    if job.src.name == DIE:
        os._exit(17)
    return run_job(job)


def _lost(job: Job, message: str) -> Job:
    return Job(job.src, job.dst, ok=False, code=WORKER_LOST, error=message)


def _jobs(dataset: Path, out: Path, count: int) -> list[Job]:
    names = [f"case_{i:03d}.nii.gz" for i in range(131, 131 + 2 * count) if i % 10][:count]  # not in sub/
    return [Job(dataset / n, out / n.replace(".nii.gz", ".mla")) for n in names]


@pytest.mark.parametrize("mode", ["jobs", "scheduler"])
def test_a_worker_that_dies_loses_no_file_and_is_reported(
    dataset: Path, tmp_path: Path, cluster: Any, mode: str
) -> None:
    jobs = _jobs(dataset, tmp_path, 8)
    started: list[int] = []
    clean = lambda job: remove_orphans(job.dst)  # noqa: E731
    if mode == "jobs":
        results = run_each(
            convert_or_die, jobs, lost=_lost, jobs=2, on_start=lambda i, _: started.append(i), cleanup=clean
        )
    else:
        results = run_each(convert_or_die, jobs, lost=_lost, scheduler=cluster.scheduler_address, cleanup=clean)
    assert [r.src for r in results] == [j.src for j in jobs]  # input order
    lost = [r for r in results if not r.ok]
    assert [(r.src.name, r.code) for r in lost] == [(DIE, WORKER_LOST)]
    assert "worker process died" in (lost[0].error or "")
    for result in results:
        assert result.dst is not None
        if result.ok:
            with MLArray.open(result.dst) as image:  # complete, valid files
                np.testing.assert_array_equal(image.to_numpy(), nib.load(str(result.src)).get_fdata())
    assert not (tmp_path / DIE.replace(".nii.gz", ".mla")).exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(r.dst.name for r in results if r.ok), (left, started)  # no temporary file is left
    if mode == "jobs":  # the files running when the worker died were each run again alone
        assert started.count(jobs.index(next(j for j in jobs if j.src.name == DIE))) == 2


class ExitOnFile(distributed.WorkerPlugin):
    """A worker plugin: the worker process exits as the task of file number ``index`` starts executing."""

    name = "mlarray-test-exit-on-file"

    def __init__(self, index: int) -> None:
        self.index = index

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and str(key).startswith("mlarray-converting-") and str(key).endswith(f"-{self.index}"):
            os._exit(17)


def test_cli_on_a_cluster_reports_the_file_whose_worker_died(dataset: Path, tmp_path: Path, cluster: Any) -> None:
    files = dataset / "sub"
    names = sorted(p.name for p in files.iterdir())
    index = names.index("case_100.nii.gz")
    with distributed.Client(cluster) as client:
        client.register_plugin(ExitOnFile(index), name=ExitOnFile.name)
        try:
            result = run("convert", files, tmp_path, "--scheduler", cluster.scheduler_address)
        finally:
            client.unregister_worker_plugin(ExitOnFile.name)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert any(WORKER_LOST in line for line in lines), result.output
    failed, summary = [line for line in lines if not line.startswith("ok ")]
    assert failed.startswith(f"FAILED  {files / 'case_100.nii.gz'}: the worker process died") and failed.endswith(
        f"[{WORKER_LOST}]"
    )
    assert summary == f"converted {len(names) - 1} of {len(names)} files, 1 failed"
    assert not (tmp_path / "case_100.mla").exists()
    assert not list(tmp_path.glob(".mla-tmp-*"))
    assert len(list(tmp_path.glob("*.mla"))) == len(names) - 1


def test_errors_and_results_cross_process_boundaries_whole() -> None:
    """Per-file results carry mlarray errors; each pickles with its code, message and fields."""
    errors = [
        cls("bad", path="/x.mla") for cls in ALL_ERRORS if cls not in (HeaderValidationError, MissingDependencyError)
    ]
    errors += [HeaderValidationError([Problem("spatial", "X", "wrong")], path="/x.mla")]
    errors += [MissingDependencyError("install it", module="nibabel"), WorkerLostError("gone", path="/y")]
    for error in errors:
        back = pickle.loads(pickle.dumps(error))
        assert (type(back), str(back), back.code, vars(back)) == (type(error), str(error), error.code, vars(error))
    assert pickle.loads(pickle.dumps(errors[-2])).name == "nibabel"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_each(str, [1], lost=lambda i, m: m, jobs=0)
    result = run("validate", "--jobs", "0", ".")
    assert result.exit_code == 2


def test_remove_orphans_takes_only_the_targets_temporary_files(tmp_path: Path) -> None:
    (tmp_path / ".mla-tmp-0a1b2c3d-a.mla").write_bytes(b"half a file")
    (tmp_path / ".mla-tmp-99999999-b.mla").write_bytes(b"another target's")
    (tmp_path / ".mla-tmp-12345678").mkdir()
    (tmp_path / ".mla-tmp-12345678" / "a.nii").write_bytes(b"half")
    (tmp_path / "a.mla").write_bytes(b"the finished file stays")
    remove_orphans(tmp_path / "a.mla")
    remove_orphans(tmp_path / "a.nii")
    remove_orphans(None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mla-tmp-99999999-b.mla", "a.mla"]
