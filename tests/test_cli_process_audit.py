"""Regressions found running the command line as real processes: links, full disks, pipes, encodings, widths.

Each test runs ``python -m mlarray`` (or the typer app) the way a user or a batch system does and
checks what cli.md promises: one report line per file, error codes of the reference, exit statuses.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from mlarray import MLArray
from mlarray.cli import app

ROOT = Path(__file__).resolve().parent.parent


def mlarray_process(*args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, **kwargs.pop("env", {})}
    streams = {"stdout": kwargs.pop("stdout", subprocess.PIPE), "stderr": kwargs.pop("stderr", subprocess.PIPE)}
    command = [sys.executable, "-m", "mlarray", *map(str, args)]
    return subprocess.run(command, text=True, env=env, timeout=300, **streams, **kwargs)


def run(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _folder_with_links(tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    folder.mkdir()
    MLArray(np.arange(64, dtype=np.int16).reshape(4, 4, 4), spacing=(1, 1, 1)).save(folder / "good.mla")
    (folder / "loop.mla").symlink_to("loop.mla")
    (folder / "dangling.mla").symlink_to("deleted.mla")
    return folder


def test_a_link_loop_fails_its_own_file_and_the_batch_converts_the_others(tmp_path: Path) -> None:
    folder = _folder_with_links(tmp_path)
    result = run("convert", folder, tmp_path / "out")
    lines = result.stdout.splitlines()  # type: ignore[attr-defined]
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert (tmp_path / "out" / "good.mla").is_file()
    failed = sorted(line for line in lines if line.startswith("FAILED"))
    assert len(failed) == 2 and "dangling.mla" in failed[0] and "loop.mla" in failed[1]
    assert all(line.endswith("[FILE_NOT_FOUND]") for line in failed)


def test_folder_commands_report_links_that_lead_to_no_file(tmp_path: Path) -> None:
    """A link farm whose shared file was deleted does not validate as complete."""
    folder = _folder_with_links(tmp_path)
    checked = run("validate", folder)
    assert checked.exit_code == 1  # type: ignore[attr-defined]
    assert checked.stdout.splitlines()[-1] == "3 files checked: 1 valid, 2 invalid"  # type: ignore[attr-defined]
    stats = run("stats", folder)
    assert stats.exit_code == 1  # type: ignore[attr-defined]
    assert sum("[FILE_NOT_FOUND]" in line for line in stats.stdout.splitlines()) == 2  # type: ignore[attr-defined]
    assert MLArray.open(folder / "good.mla").meta.stats is not None  # the others were done


def _small_disk() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # writes past 200 kB fail with EFBIG


def test_a_full_disk_during_an_export_is_write_failed_naming_the_file(tmp_path: Path) -> None:
    source = tmp_path / "d"
    source.mkdir()
    noise = np.random.default_rng(0).normal(0, 1, (16, 64, 128)).astype(np.float32)  # 512 kB, incompressible
    MLArray(noise, spacing=(1, 1, 1)).save(source / "a.mla")
    for to in ("nii.gz", "nrrd"):
        batch = mlarray_process("convert", "-o", tmp_path / "out", "--to", to, source, preexec_fn=_small_disk)
        assert batch.returncode == 1
        line = batch.stdout.splitlines()[0]
        assert line.startswith("FAILED") and line.endswith("the previous file is untouched [WRITE_FAILED]"), line
        assert str(tmp_path / "out" / f"a.{to}") in line
    single = mlarray_process("convert", source / "a.mla", tmp_path / "a.nii.gz", preexec_fn=_small_disk)
    assert single.returncode == 1
    reason = "writing failed (File too large); the previous file is untouched"
    assert single.stderr.strip() == f"error: {tmp_path / 'a.nii.gz'}: {reason} [WRITE_FAILED]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "out"]  # no temporary folder left
    assert list((tmp_path / "out").iterdir()) == []


def test_a_reader_that_stops_early_is_no_failure(tmp_path: Path) -> None:
    """``mlarray validate DIR | head -1``: exit 141 (as a program ended by SIGPIPE), nothing on stderr."""
    for i in range(30):
        MLArray(np.zeros((2, 2, 2), np.uint8)).save(tmp_path / f"case_{i:02d}.mla")
    for args in (["validate", tmp_path], ["validate", "--json", tmp_path], ["header", tmp_path / "case_00.mla"]):
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlarray", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line
        with proc.stderr:
            err = proc.stderr.read()
        assert proc.wait(timeout=300) == 141, err
        assert err == b""


def test_output_to_a_full_disk_is_one_error_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        for args in (["--version"], ["--help"], ["schema"]):
            done = mlarray_process(*args, stdout=full, stderr=subprocess.PIPE)
            assert done.returncode == 1
            assert done.stderr == "error: No space left on device [WRITE_FAILED]\n", done.stderr


def test_files_whose_names_are_not_utf8_are_read_and_written(tmp_path: Path) -> None:
    """C-Blosc2 takes names as UTF-8; such files were reported CORRUPT_FRAME, their --json output was no JSON."""
    folder = tmp_path / "d"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.mla")
    data = np.arange(512, dtype=np.int16).reshape(8, 8, 8)
    MLArray(data, spacing=(1, 1, 1)).save(folder / name)  # a save writes its temporary file under a UTF-8 name
    assert [p.name for p in folder.iterdir()] == [name]
    np.testing.assert_array_equal(MLArray.open(folder / name).to_numpy(), data)
    with MLArray.open(folder / name, "r+") as image:
        image[0] = 7
    created = MLArray.create(folder / os.fsdecode(b"n\xe9w.mla"), shape=(4, 4), dtype=np.uint8)
    created[...] = 3
    created.close()
    assert MLArray.load(folder / os.fsdecode(b"n\xe9w.mla")).to_numpy().sum() == 48

    env = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}
    checked = mlarray_process("validate", "--json", folder, env=env)
    assert checked.returncode == 0, checked.stdout
    report = json.loads(checked.stdout)
    assert sorted(os.fsencode(r["path"]) for r in report) == sorted(
        os.fsencode(folder / n) for n in (name, os.fsdecode(b"n\xe9w.mla"))
    )
    stats = mlarray_process("stats", folder, env=env, errors="surrogateescape")  # report lines: the names' bytes
    assert stats.returncode == 0, stats.stdout
    assert MLArray.open(folder / name).meta.stats is not None
    converted = mlarray_process("convert", folder, tmp_path / "out", env=env, errors="surrogateescape")
    assert converted.returncode == 0, converted.stdout
    np.testing.assert_array_equal(MLArray.load(tmp_path / "out" / name)[1:], data[1:])
    assert not [p for p in folder.iterdir() if p.name.startswith(".mla-tmp")]


def test_json_output_survives_an_8bit_output_encoding(tmp_path: Path) -> None:
    image = MLArray(np.zeros((2, 2), np.uint8))
    image.meta.source = {"descrip": "Größe 日本 ✓"}
    image.save(tmp_path / "u.mla")
    done = mlarray_process("header", tmp_path / "u.mla", env={"PYTHONIOENCODING": "latin-1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"]["descrip"] == "Größe 日本 ✓"


def test_a_zero_or_tiny_terminal_width_is_ignored(tmp_path: Path) -> None:
    """``COLUMNS=0`` (a 0x0 pseudo-terminal) made ``info`` print nothing with exit 0 and dropped usage errors."""
    MLArray(np.zeros((4, 8, 8), np.int16), spacing=(1, 1, 2)).save(tmp_path / "a.mla")
    for columns in ("0", "1", "5"):
        info = mlarray_process("info", tmp_path / "a.mla", env={"COLUMNS": columns})
        assert info.returncode == 0 and "spacing" in info.stdout and "…" not in info.stdout, info.stdout
        usage = mlarray_process("validate", "--no-such-option", env={"COLUMNS": columns})
        assert usage.returncode == 2 and "--no-such-option" in usage.stderr, usage.stderr


def _stop_as_the_bar_starts(folder: Path, signum: int) -> tuple[int, bytes]:
    """Run ``mlarray stats`` on a pseudo-terminal; send ``signum`` the moment the progress bar hides the cursor."""
    import pty
    import select
    import signal

    main, child = pty.openpty()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlarray", "stats", "--class-locations", str(folder)],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "PYTHONPATH": path},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(child)
    output, sent = b"", False
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
                if not sent and b"\x1b[?25l" in output:
                    proc.send_signal(signum)
                    sent = True
            elif proc.poll() is not None:
                break
    finally:
        os.close(main)
    return proc.wait(timeout=300), output


def test_an_interrupt_as_the_progress_bar_starts_leaves_the_cursor_visible(tmp_path: Path) -> None:
    import signal

    for i in range(10):  # long enough that the signal always comes before the end
        labels = (np.random.default_rng(i).random((48, 160, 160)) * 4).astype(np.uint8)
        MLArray(labels).save(tmp_path / f"s{i}.mla")
    for signum, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        code, output = _stop_as_the_bar_starts(tmp_path, signum)
        assert b"\x1b[?25l" in output  # the bar hid the cursor on the terminal
        assert code == status, output
        assert output.count(b"\x1b[?25h") >= output.count(b"\x1b[?25l"), output[-80:]


def test_a_file_name_with_a_newline_keeps_its_report_on_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    MLArray(np.zeros((2, 4, 4), np.uint8)).save(folder / "a\nok      fake.mla")
    MLArray(np.zeros((2, 4, 4), np.uint8)).save(folder / "b\x1b[31m.mla")
    for args in (["validate", folder], ["stats", folder, "--no-seg"], ["convert", folder, tmp_path / "out"]):
        done = run(*args)
        assert done.exit_code == 0, done.output  # type: ignore[attr-defined]
        lines = done.stdout.splitlines()  # type: ignore[attr-defined]
        assert not any(line.startswith("ok      fake.mla") for line in lines), lines
        assert any("a\\nok      fake.mla" in line for line in lines) and any("b\\x1b[31m.mla" in line for line in lines)
        assert "\x1b" not in done.stdout  # type: ignore[attr-defined]
