"""Regressions found by the CLI audit: signals, unfinished saves, symbolic links, options and error lines.

Each test names the rule of ``docs/cli.md`` it holds the command line to. Signals are sent to
real ``mlarray`` processes; the tests poll for the state they wait for instead of sleeping.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from legacy_files import write_legacy
from typer.testing import CliRunner

from mlarray import MLArray
from mlarray.cli import app
from mlarray.cli.output import CLIError, error_lines
from mlarray.errors import ERROR_CODES, FrameMismatchError, InvalidArgumentError, MLArrayError
from mlarray.jobs import find_mla, remove_orphans
from mlarray.legacy import migrate_file
from mlarray.legacy.reader import is_legacy_file
from mlarray.storage import decode_header, encode_header, inspect_frame, read_header
from mlarray.storage.io import TMP_PREFIX, check_against_frame
from mlarray.validate import frame_mismatches, validate_file

ROOT = Path(__file__).resolve().parent.parent


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def volume(seed: int = 0, shape: tuple[int, ...] = (8, 16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.int16)


def labels(shape: tuple[int, ...] = (8, 16, 16)) -> np.ndarray:
    seg = np.zeros(shape, dtype=np.uint8)
    seg[1:4, 2:6, 3:9] = 1
    seg[5:7, 8:12, 10:14] = 2
    return seg


def temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{TMP_PREFIX}*"))


def rewrite_header(path: Path, edit: dict[str, Any]) -> None:
    """Replace top-level header members (``array``, ``layout``...) by hand, bypassing every check."""
    head = decode_header(inspect_frame(str(path)).header_bytes)
    for key, value in edit.items():
        head[key] = {**head[key], **value}
    nd = blosc2.open(str(path), mode="a")
    nd.schunk.vlmeta.set_vlmeta("mlarray", encode_header(head), typesize=1)
    del nd


# --------------------------------------------------------------------------- 1. SIGTERM and unfinished saves

N_FILES = 40


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background parent may ignore SIGINT; Python then would too


def _interrupt_while_writing(args: list[str], root: Path, signum: int) -> subprocess.CompletedProcess[str]:
    """Run ``mlarray ARGS``, send ``signum`` as soon as a temporary file exists under ``root``, wait for the exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlarray", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while not any(name.startswith(TMP_PREFIX) for name in os.listdir(root)):
        assert proc.poll() is None, f"finished before a file was being written: {proc.communicate()}"
        assert time.monotonic() < deadline, "no file was written within 120 s"
        time.sleep(0.001)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def legacy_dataset(tmp_path: Path) -> tuple[Path, dict[str, bytes], dict[str, np.ndarray]]:
    root = tmp_path / "data"
    root.mkdir()
    arrays = {f"case_{i:03d}.mla": volume(i, (16, 128, 128)) for i in range(N_FILES)}
    for name, array in arrays.items():
        write_legacy(root / name, array, {"spacing": (1.0, 1.0, 1.0)})
    return root, {name: (root / name).read_bytes() for name in arrays}, arrays


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_during_migrate_in_place_leaves_no_temporary_file(
    legacy_dataset: tuple[Path, dict[str, bytes], dict[str, np.ndarray]], signum: int, status: int
) -> None:
    """cli.md: SIGTERM stops as Ctrl-C does (exit 143 / 130), each file is old or new, and a rerun is harmless."""
    root, before, arrays = legacy_dataset
    stopped = _interrupt_while_writing(["migrate", str(root), "--in-place"], root, signum)
    assert stopped.returncode == status, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert temporaries(root) == []
    migrated = 0
    for name, array in arrays.items():
        path = root / name
        if path.read_bytes() != before[name]:
            migrated += 1
            assert validate_file(path).valid and not is_legacy_file(path)
            np.testing.assert_array_equal(MLArray(path).to_numpy(), array)
    assert migrated < N_FILES  # it was stopped before the end

    again = run("migrate", root, "--in-place")
    assert again.exit_code == 0, again.output
    summary = f"{N_FILES} files: {N_FILES - migrated} migrated, {migrated} already current, 0 failed"
    assert again.stdout.splitlines()[-1] == summary


def test_sigterm_during_stats_leaves_no_temporary_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    MLArray(volume(1, (16, 128, 128)), spacing=(1, 1, 1)).save(root / "case_000.mla")
    for i in range(1, N_FILES):
        shutil.copyfile(root / "case_000.mla", root / f"case_{i:03d}.mla")
    original = (root / "case_000.mla").read_bytes()
    stopped = _interrupt_while_writing(["stats", str(root)], root, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr
    assert temporaries(root) == []
    done = [p for p in sorted(root.iterdir()) if p.read_bytes() != original]
    assert len(done) < N_FILES  # stopped before the end (maybe while rewriting the first file)
    for path in done:
        assert validate_file(path).valid and read_header(path).meta.stats is not None
    checked = run("validate", root)
    assert (
        checked.exit_code == 0
        and checked.stdout.splitlines()[-1] == f"{N_FILES} files checked: {N_FILES} valid, 0 invalid"
    )


def _leave_orphans(root: Path, name: str) -> list[Path]:
    """What a killed writer of ``root/name`` leaves: a half temporary file and a temporary folder."""
    half = root / f"{TMP_PREFIX}0a1b2c3d-{name}"
    half.write_bytes((root / name).read_bytes()[:100])
    folder = root / f"{TMP_PREFIX}{os.urandom(4).hex()}"
    folder.mkdir()
    (folder / name).write_bytes(b"half")
    return [half, folder]


def test_directory_searches_skip_unfinished_saves_and_writers_remove_them(tmp_path: Path) -> None:
    """cli.md: no command takes a .mla-tmp-* file for a file; stats and migrate remove their files' orphans."""
    root = tmp_path / "data"
    root.mkdir()
    write_legacy(root / "old.mla", volume(2), {"spacing": (1.0, 1.0, 1.0)})
    MLArray(volume(3)).save(root / "new.mla")
    orphans = _leave_orphans(root, "old.mla") + _leave_orphans(root, "new.mla")[:1]
    stranger = root / f"{TMP_PREFIX}99999999-gone.mla"  # a save of a file that no command here writes
    stranger.write_bytes(b"half")
    assert find_mla(root) == [root / "new.mla", root / "old.mla"]

    checked = run("validate", root, "--quick")
    assert (
        checked.stdout.splitlines()[-1]
        == "2 files checked: 1 valid, 0 invalid, 1 legacy (convert with `mlarray migrate`)"
    )
    assert all(p.exists() for p in [*orphans, stranger])  # validate writes nothing

    migrated = run("migrate", root, "--in-place")
    assert migrated.exit_code == 0, migrated.output
    assert migrated.stdout.splitlines()[-1] == "2 files: 1 migrated, 1 already current, 0 failed"
    assert TMP_PREFIX not in migrated.stdout
    assert not any(p.exists() for p in orphans)  # old.mla's and new.mla's: both are migrate's targets
    assert stranger.exists()  # gone.mla is no file here: its save may still be running

    stats = run("stats", root)
    assert stats.exit_code == 0 and len(stats.stdout.splitlines()) == 2
    assert temporaries(root) == [stranger]

    out = tmp_path / "out"
    _leave_orphans(root, "new.mla")
    converted = run("convert", root, out)
    assert converted.exit_code == 0 and converted.stdout.splitlines()[-1] == "converted 2 of 2 files, 0 failed"
    assert sorted(p.name for p in out.iterdir()) == ["new.mla", "old.mla"]


def test_single_file_writers_remove_their_orphans(tmp_path: Path) -> None:
    src = tmp_path / "a.mla"
    MLArray(volume(4)).save(src)
    for args in (["stats", src], ["convert", src, src, "--codec", "zstd"], ["migrate", src, "--in-place"]):
        orphans = _leave_orphans(tmp_path, "a.mla")
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert not any(p.exists() for p in orphans), args


def test_remove_orphans_matches_the_whole_name(tmp_path: Path) -> None:
    (tmp_path / "a.mla").write_bytes(b"x")
    other = tmp_path / f"{TMP_PREFIX}0a1b2c3d-b-a.mla"  # an orphan of b-a.mla, whose name ends like a.mla's
    other.write_bytes(b"half")
    mine = tmp_path / f"{TMP_PREFIX}0a1b2c3d-a.mla"
    mine.write_bytes(b"half")
    remove_orphans(tmp_path / "a.mla")
    assert other.exists() and not mine.exists()


# --------------------------------------------------------------------------- 2. symbolic links


@pytest.fixture
def farm(tmp_path: Path) -> tuple[Path, Path]:
    """``links/*.mla``: relative symbolic links into ``real/`` (another directory)."""
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    MLArray(volume(5), spacing=(1, 1, 1)).save(real / "img.mla")
    write_legacy(real / "old.mla", volume(6), {"spacing": (2.0, 1.0, 1.0)})
    for name in ("img.mla", "old.mla"):
        (links / name).symlink_to(Path("..") / "real" / name)
    return real, links


def assert_links_intact(real: Path, links: Path) -> None:
    for name in ("img.mla", "old.mla"):
        assert (links / name).is_symlink() and os.readlink(links / name) == os.path.join("..", "real", name)
    assert temporaries(real.parent) == []


def test_stats_and_migrate_write_through_links(farm: tuple[Path, Path]) -> None:
    """cli.md: a link stays a link and the file it leads to is updated."""
    real, links = farm
    result = run("stats", links / "img.mla")
    assert result.exit_code == 0, result.output
    assert read_header(real / "img.mla").meta.stats is not None
    result = run("migrate", links, "--in-place")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "2 files: 1 migrated, 1 already current, 0 failed"
    assert not is_legacy_file(real / "old.mla") and validate_file(real / "old.mla").valid
    np.testing.assert_array_equal(MLArray(real / "old.mla").to_numpy(), volume(6))
    assert_links_intact(real, links)


def test_convert_in_place_through_a_link(farm: tuple[Path, Path]) -> None:
    real, links = farm
    result = run("convert", links / "img.mla", links / "img.mla", "--codec", "zstd")
    assert result.exit_code == 0, result.output
    layout = read_header(real / "img.mla").meta.layout
    assert layout is not None and layout.codec == "zstd"
    np.testing.assert_array_equal(MLArray(real / "img.mla").to_numpy(), volume(5))
    assert_links_intact(real, links)


def test_save_through_links(tmp_path: Path) -> None:
    """``MLArray.save(link)`` replaces the file the link leads to (chains followed), as ``open(link, "w")`` writes."""
    real = tmp_path / "real"
    real.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    MLArray(volume(7)).save(real / "a.mla")
    (elsewhere / "a.mla").symlink_to(Path("..") / "real" / "a.mla")
    (tmp_path / "chain.mla").symlink_to(elsewhere / "a.mla")
    MLArray(volume(8)).save(tmp_path / "chain.mla")
    np.testing.assert_array_equal(MLArray(real / "a.mla").to_numpy(), volume(8))
    assert (tmp_path / "chain.mla").is_symlink() and (elsewhere / "a.mla").is_symlink()

    (elsewhere / "b.mla").symlink_to(Path("..") / "real" / "b.mla")  # dangling: the target is created
    MLArray(volume(9)).save(elsewhere / "b.mla")
    assert (elsewhere / "b.mla").is_symlink() and (real / "b.mla").is_file()
    np.testing.assert_array_equal(MLArray(real / "b.mla").to_numpy(), volume(9))

    with MLArray.open(elsewhere / "a.mla", "r+") as image:  # a header rewrite on close, too
        image.meta.source = {"edited": True}
    assert (elsewhere / "a.mla").is_symlink() and MLArray(real / "a.mla").meta.source == {"edited": True}
    assert temporaries(tmp_path) == []


def test_save_through_a_link_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.mla").symlink_to("y.mla")
    (tmp_path / "y.mla").symlink_to("x.mla")
    with pytest.raises(InvalidArgumentError, match="loop"):
        MLArray(volume(1)).save(tmp_path / "x.mla")
    assert (tmp_path / "x.mla").is_symlink() and (tmp_path / "y.mla").is_symlink()
    assert temporaries(tmp_path) == []


def test_remove_orphans_looks_beside_the_real_file(farm: tuple[Path, Path]) -> None:
    real, links = farm
    orphan = real / f"{TMP_PREFIX}0a1b2c3d-img.mla"
    orphan.write_bytes(b"half")
    remove_orphans(links / "img.mla")
    assert not orphan.exists()


# --------------------------------------------------------------------------- 3. --verbose after every command


def _verbose_runs(tmp_path: Path) -> dict[str, list[str]]:
    missing, out = str(tmp_path / "missing.mla"), str(tmp_path / "out.mla")
    return {
        "validate": ["validate", missing],
        "header": ["header", missing],
        "info": ["info", missing],
        "convert": ["convert", missing, out],
        "stats": ["stats", missing],
        "schema": ["schema"],
        "migrate": ["migrate", missing, out],
    }


def test_verbose_runs_cover_every_command(tmp_path: Path) -> None:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert names == set(_verbose_runs(tmp_path))


@pytest.mark.parametrize("flag", ["--verbose", "-v"])
@pytest.mark.parametrize("command", ["validate", "header", "info", "convert", "stats", "schema", "migrate"])
def test_verbose_after_the_command_is_as_before_it(tmp_path: Path, command: str, flag: str) -> None:
    """cli.md: `--verbose`/`-v` works "either right after `mlarray` or after the command"."""
    args = _verbose_runs(tmp_path)[command]
    before, after = run(flag, *args), run(*args, flag)
    assert "No such option" not in after.output
    assert after.exit_code == before.exit_code != 2
    assert type(after.exception) is type(before.exception)
    if command in ("header", "info", "convert", "migrate"):  # a failure: the exception comes through
        assert isinstance(after.exception, MLArrayError)


# --------------------------------------------------------------------------- 4. migrate --codec / --clevel


@pytest.mark.parametrize(
    ("options", "expected"),
    [([], ("lz4hc", 5)), (["--clevel", "9"], ("lz4hc", 9)), (["--codec", "zstd"], ("zstd", 5))],
)
def test_migrate_codec_and_level_default_separately(tmp_path: Path, options: list[str], expected: Any) -> None:
    """cli.md: "`--codec`, `--clevel` | As for `convert`": one given does not change the other."""
    for dtype in (np.int16, np.uint8):
        old = write_legacy(tmp_path / "old.mla", volume(1).astype(dtype), {"spacing": (1.0, 1.0, 1.0)})
        plain = tmp_path / "plain.mla"
        assert run("migrate", old, plain).exit_code == 0
        new = tmp_path / "new.mla"
        result = run("migrate", old, new, *options)
        assert result.exit_code == 0, result.output
        layout, default = read_header(new).meta.layout, read_header(plain).meta.layout
        assert layout is not None and default is not None
        assert (layout.codec, layout.clevel) == expected
        assert layout.filters == default.filters  # what a save without cparams chooses for this dtype


def test_migrate_file_refuses_cparams_with_codec(tmp_path: Path) -> None:
    old = write_legacy(tmp_path / "old.mla", volume(1), {})
    with pytest.raises(InvalidArgumentError, match="not both"):
        migrate_file(old, tmp_path / "new.mla", cparams={"clevel": 1}, clevel=2)
    with pytest.raises(InvalidArgumentError, match="unknown codec"):
        migrate_file(old, tmp_path / "new.mla", codec="brotli")
    assert not (tmp_path / "new.mla").exists()


# --------------------------------------------------------------------------- 5. stats --no-seg


def test_no_seg_removes_class_locations_and_keeps_boxes(tmp_path: Path) -> None:
    """spec 5.11: class_locations are "Written for label maps (`is_seg` `true`)"; cli.md: bbox is kept."""
    path = tmp_path / "seg.mla"
    MLArray(labels(), spacing=(1, 1, 1)).save(path)
    assert run("stats", path, "--class-locations").exit_code == 0
    labelled = read_header(path).meta
    assert labelled.is_seg and labelled.class_locations is not None and labelled.bbox is not None
    result = run("stats", path, "--no-seg")
    assert result.exit_code == 0 and result.stdout == f"ok      {path}: image statistics\n"
    meta = read_header(path).meta
    assert meta.is_seg is False and meta.class_locations is None
    assert meta.bbox == labelled.bbox
    assert validate_file(path).valid
    from mlarray.stats import annotate

    image = MLArray(labels(), spacing=(1, 1, 1))
    annotate(image, with_class_locations=True)
    assert image.meta.class_locations is not None
    annotate(image, seg=False)  # the Python API as the command: no class locations once not a label map
    assert image.meta.is_seg is False and image.meta.class_locations is None


# --------------------------------------------------------------------------- 6. validate lists every mismatch


def test_validate_lists_every_frame_mismatch(tmp_path: Path) -> None:
    """cli.md: "Every problem is listed with its location and code" (--quick and --deep)."""
    path = tmp_path / "bad.mla"
    MLArray(volume(1), patch_size=8).save(path)
    rewrite_header(path, {"array": {"shape": [8, 16, 17], "dtype": "<i4"}, "layout": {"block_size": [2, 2, 2]}})
    for mode in ("--quick", "--deep"):
        result = run("validate", path, mode)
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert [line.split(": ")[1] for line in lines[:-1]] == ["FRAME_MISMATCH"] * 3
        assert "header shape (8, 16, 17)" in lines[0] and "header dtype <i4" in lines[1]
        assert "blocks [2, 2, 2]" in lines[2]


@pytest.mark.parametrize(
    "edit",
    [{"array": {"shape": [8, 16, 17]}}, {"array": {"dtype": "<u2"}}, {"layout": {"block_size": [2, 2, 2]}}],
    ids=["shape", "dtype", "layout"],
)
def test_one_mismatch_reads_as_check_against_frame_says(tmp_path: Path, edit: dict[str, Any]) -> None:
    path = tmp_path / "bad.mla"
    MLArray(volume(1), patch_size=8).save(path)
    rewrite_header(path, edit)
    frame = inspect_frame(str(path))
    from mlarray.models import parse_header

    meta = parse_header(decode_header(frame.header_bytes))
    with pytest.raises(FrameMismatchError) as raised:
        check_against_frame(meta, frame, str(path))
    assert [str(FrameMismatchError(m, path=str(path))) for m in frame_mismatches(meta, frame)] == [str(raised.value)]
    assert [p.message for p in validate_file(path, deep=False).problems] == [str(raised.value)]


# --------------------------------------------------------------------------- 7. every error line ends with a code


def test_convert_seg_to_another_format_ends_with_the_code(tmp_path: Path) -> None:
    src = tmp_path / "ct.mla"
    MLArray(volume(1)).save(src)
    result = run("convert", "--seg", src, tmp_path / "o.nii")
    assert result.exit_code == 1
    assert result.stderr == f"error: --seg needs an .mla output, not {tmp_path / 'o.nii'} [INVALID_ARGUMENT]\n"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (CLIError("bad"), "INVALID_ARGUMENT"),
        (CLIError("no reader", code="MISSING_DEPENDENCY"), "MISSING_DEPENDENCY"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.mla"), "FILE_NOT_FOUND"),
        (PermissionError(errno.EACCES, "Permission denied", "x.mla"), "READ_ONLY"),
        (OSError(errno.ENOSPC, "No space left on device", "x.mla"), "WRITE_FAILED"),
        (OSError(errno.EIO, "Input/output error"), "MLARRAY_ERROR"),
        (RuntimeError("a bug"), "MLARRAY_ERROR"),
    ],
)
def test_every_error_line_ends_with_a_documented_code(exc: BaseException, code: str) -> None:
    """cli.md: "A failure is printed as one line on stderr, ending with the error code"."""
    (line,) = error_lines(exc)
    assert line.startswith("error: ") and line.endswith(f" [{code}]")
    assert code in ERROR_CODES


# --------------------------------------------------------------------------- 8. migrating a current file


def test_migrate_one_file_in_place_twice_is_harmless(tmp_path: Path) -> None:
    """cli.md: running it again is harmless; the guide: current files are copied (or, in place, left alone)."""
    path = write_legacy(tmp_path / "m2.mla", volume(1), {"spacing": (1.0, 1.0, 1.0)})
    first = run("migrate", path, "--in-place")
    assert first.exit_code == 0 and first.stdout.startswith(f"ok      {path} -> {path}\n")
    migrated = path.read_bytes()
    second = run("migrate", path, "--in-place", "--json")
    assert second.exit_code == 0, second.output
    (report,) = json.loads(second.stdout)
    assert (report["status"], report["src"], report["dst"], report["error"]) == ("current", str(path), str(path), None)
    assert path.read_bytes() == migrated


def test_migrate_a_broken_current_file_still_fails(tmp_path: Path) -> None:
    path = tmp_path / "cut.mla"
    MLArray(volume(1)).save(path)
    path.write_bytes(path.read_bytes()[:-50])
    for args in ([path, "--in-place"], [path, tmp_path / "new.mla"]):
        result = run("migrate", *args)
        assert result.exit_code == 1 and result.stderr.strip().endswith("[TRUNCATED_FILE]")
    assert not (tmp_path / "new.mla").exists()


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy" / "0.0.54"


def test_a_second_batch_run_into_a_folder_inside_the_input_does_not_take_its_outputs_for_inputs(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    data = tmp_path / "data"
    data.mkdir()
    nib.save(nib.Nifti1Image(volume().astype(np.int16), np.eye(4)), str(data / "a.nii.gz"))
    for _ in range(3):
        result = run("convert", str(data), str(data / "mla"))
        assert result.exit_code == 0, result.output
    made = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.mla"))
    assert made == ["mla/a.mla"]  # not mla/mla/a.mla, mla/mla/mla/a.mla
    shutil.copy(FIXTURES / "seg_uint8.mla", data / "old.mla")
    for _ in range(3):
        result = run("migrate", str(data), str(data / "new"))
        assert result.exit_code == 0, result.output
    assert not (data / "new" / "new").exists() and not (data / "new" / "mla" / "mla").exists()


def test_changing_the_layout_of_a_metadata_only_file_copies_its_header(tmp_path: Path) -> None:
    MLArray(None, spacing=(1.0, 2.0, 3.0), meta={"id": 7}).save(tmp_path / "meta.mla")
    result = run(
        "convert", str(tmp_path / "meta.mla"), str(tmp_path / "out.mla"), "--codec", "zstd", "--patch-size", "64"
    )
    assert result.exit_code == 0, result.output
    out = MLArray.load(tmp_path / "out.mla")
    assert out.shape is None and out.spacing == [1.0, 2.0, 3.0] and out.meta.source == {"id": 7}


def test_info_reads_files_of_the_earlier_implementation_as_header_does(tmp_path: Path) -> None:
    old = tmp_path / "old.mla"
    shutil.copy(FIXTURES / "seg_uint8.mla", old)
    result = run("info", str(old), "--json")
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    assert tuple(details["shape"]) == MLArray(old).shape and details["size_on_disk"] == old.stat().st_size
    assert "earlier mlarray implementation" in result.stderr


def test_the_command_line_prints_mlarrays_warnings_as_one_line(tmp_path: Path) -> None:
    old = tmp_path / "old.mla"
    shutil.copy(FIXTURES / "seg_uint8.mla", old)
    done = subprocess.run(
        [sys.executable, "-m", "mlarray", "convert", str(old), str(tmp_path / "new.mla")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "earlier mlarray implementation" in lines[0]
    assert "LegacyFormatWarning" not in done.stderr and ".py:" not in done.stderr


def _tenfold_unless_three(item: int) -> int:
    """A batch's per-file work for the test below (module level: worker processes import it)."""
    if item == 3:
        raise KeyboardInterrupt
    return item * 10


def test_a_batch_reports_each_file_as_it_is_done_and_an_interrupted_one_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Batch commands printed nothing until the last file: a run stopped after 110 of 1,500 conversions
    reported none of the 110 (audit scale)."""
    from mlarray.cli.options import run_files

    emitted: list[int] = []
    work = _tenfold_unless_three
    with pytest.raises(KeyboardInterrupt):
        run_files(work, list(range(6)), lost=lambda i, m: -1, jobs=1, scheduler=None, what="t", label=str,
                  emit=emitted.append)  # fmt: skip
    assert emitted == [0, 10, 20]  # the files done before the interrupt, in order, already reported
    assert capsys.readouterr().err.strip() == "stopped after 3 of 6 files"
    emitted.clear()
    results = run_files(work, [5, 4, 2, 1], lost=lambda i, m: -1, jobs=2, scheduler=None, what="t", label=str,
                        emit=emitted.append)  # fmt: skip
    assert emitted == results == [50, 40, 20, 10]  # in the order of the files, whichever finished first


def test_a_file_named_twice_is_handled_once(tmp_path: Path) -> None:
    """``validate D D/sub D/./sub/c0.mla`` checked D/sub's files two or three times ("32 files checked" for 20);
    ``stats D D/sub`` rewrote them twice, perhaps from two workers at once (audit scale)."""
    sub = tmp_path / "sub"
    sub.mkdir()
    for i in range(3):
        MLArray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"a{i}.mla")
        MLArray(np.full((4, 4), i, np.uint8)).save(sub / f"c{i}.mla")
    (tmp_path / "link.mla").symlink_to(sub / "c1.mla")
    args = (tmp_path, sub, tmp_path / "." / "sub" / "c0.mla", sub / "c0.mla", tmp_path / "link.mla")
    result = run("validate", *args)
    assert result.exit_code == 0, result.output
    assert "6 files checked: 6 valid" in result.output
    stats = run("stats", *args)
    assert stats.exit_code == 0, stats.output
    assert stats.output.count("\n") == 6  # one line per file
