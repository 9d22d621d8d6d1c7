"""The ``mlarray`` command line: every command and option, exit codes, JSON output, entry points."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
import typer
from legacy_files import RunsShell, write_legacy
from typer.testing import CliRunner

import mlarray
from mlarray import MLArray
from mlarray.cli import app, convert_app, header_app
from mlarray.cli.convert_jobs import Codec, parse_patch_size
from mlarray.cli.output import dumps
from mlarray.errors import MissingDependencyError, MLArrayFileNotFoundError
from mlarray.models.v1.annotations import Codec as CodecLiteral
from mlarray.schema import render
from mlarray.storage import encode_header, inspect_frame
from mlarray.validate import validate_file

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("validate", "header", "info", "convert", "stats", "schema", "migrate")
DIRECTION = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]


def run(*args: Any, target: Any = app) -> Any:
    return CliRunner().invoke(target, [str(a) for a in args])


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(7).integers(-1000, 1000, size=(12, 16, 20), dtype=np.int16)


@pytest.fixture
def sample(tmp_path: Path, volume: np.ndarray) -> Path:
    path = tmp_path / "ct.mla"
    image = MLArray(volume, spacing=(2.5, 0.8, 0.8), origin=(1, 2, 3), direction=DIRECTION, meta={"id": "p01"})
    image.meta.is_seg = False
    MLArray(image, patch_size=8).save(path)
    return path


def bad_header_file(path: Path, volume: np.ndarray) -> Path:
    """A file whose header is JSON but breaks the schema (negative spacing, unknown field)."""
    MLArray(volume).save(path)
    header = MLArray(path).meta.model_dump(mode="json")
    header["spatial"]["spacing"] = [1.0, -1.0, 1.0]
    header["colour"] = "red"
    nd = blosc2.open(str(path), mode="a")
    nd.schunk.vlmeta.set_vlmeta("mlarray", encode_header(header), typesize=1)
    del nd
    return path


# --------------------------------------------------------------------------- general


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    first, second, third = result.stdout.strip().splitlines()
    assert first == f"mlarray {mlarray.__version__} (header schema {mlarray.SCHEMA_VERSION})"
    # which read path this installation uses: C-Blosc2 through ctypes and the compiled block loop
    assert second.startswith("reads: C-Blosc2 3.") and "compiled block loop _blockcopy" in second
    assert third.startswith("writes: compiled chunk compressor for LZ4 and LZ4HC")


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(command: str | None, flag: str) -> None:
    result = run(*([command] if command else []), flag)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    if command is None:
        assert all(name in result.stdout for name in COMMANDS)


@pytest.mark.parametrize("target", [header_app, convert_app], ids=["mlarray_header", "mlarray_convert"])
def test_help_on_compatibility_entry_points(target: Any) -> None:
    for flag in ("-h", "--help"):
        result = run(flag, target=target)
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_no_arguments_shows_help() -> None:
    result = run()
    assert "Usage" in result.output and "validate" in result.output


def test_unknown_command_and_option_are_usage_errors(sample: Path) -> None:
    assert run("frobnicate").exit_code == 2
    assert run("header", sample, "--no-such-option").exit_code == 2
    assert run("header").exit_code == 2  # missing FILE


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = run("header", tmp_path / "missing.mla")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("[FILE_NOT_FOUND]")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [("--verbose", "header", "{}"), ("header", "{}", "--verbose"), ("-v", "info", "{}")])
def test_verbose_lets_the_exception_through(tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = str(tmp_path / "missing.mla")
    result = run(*(a.format(missing) for a in args))
    assert result.exit_code == 1
    assert isinstance(result.exception, MLArrayFileNotFoundError)


# --------------------------------------------------------------------------- validate


def test_validate_a_valid_file(sample: Path) -> None:
    result = run("validate", sample)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"{sample}: valid", "1 file checked: 1 valid, 0 invalid"]


def test_validate_json_output(sample: Path) -> None:
    result = run("validate", sample, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [validate_file(sample).to_json()]


def test_validate_walks_directories_and_reports_every_bad_file(
    tmp_path: Path, sample: Path, volume: np.ndarray
) -> None:
    data = sample.read_bytes()
    tree = tmp_path / "tree"
    (tree / "nested" / "deeper").mkdir(parents=True)
    (tree / "good.mla").write_bytes(data)
    (tree / "nested" / "truncated.mla").write_bytes(data[:-200])
    (tree / "nested" / "deeper" / "magic.mla").write_bytes(data[:2] + b"notframe" + data[10:])
    (tree / "nested" / "empty.mla").write_bytes(b"")
    (tree / "ignored.txt").write_text("not an .mla file")
    bad_header_file(tree / "schema.mla", volume)
    write_legacy(tree / "legacy.mla", volume, {"spacing": [1.0, 1.0, 1.0]})

    result = run("validate", tree, "--json")
    assert result.exit_code == 1
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert set(reports) == {"good.mla", "truncated.mla", "magic.mla", "empty.mla", "schema.mla", "legacy.mla"}
    assert reports["good.mla"]["valid"] and reports["good.mla"]["code"] is None
    assert reports["truncated.mla"]["code"] == "TRUNCATED_FILE"
    assert reports["magic.mla"]["code"] == "NOT_A_FRAME"
    assert reports["empty.mla"]["code"] == "NOT_A_FRAME"
    assert reports["legacy.mla"]["code"] == "LEGACY_FORMAT"  # reported as legacy, not as garbage
    schema_problems = {(p["loc"], p["code"]) for p in reports["schema.mla"]["problems"]}
    assert schema_problems == {("header.spatial.spacing.1", "HEADER_INVALID"), ("header.colour", "HEADER_INVALID")}

    human = run("validate", tree)
    assert human.exit_code == 1
    lines = human.stdout.splitlines()
    assert lines[-1] == "6 files checked: 1 valid, 4 invalid, 1 legacy (convert with `mlarray migrate`)"
    assert f"{tree / 'nested' / 'truncated.mla'}:file: TRUNCATED_FILE: " in human.stdout
    assert any(line.startswith(f"{tree / 'schema.mla'}:header.colour: HEADER_INVALID: ") for line in lines)
    legacy_line = next(line for line in lines if "legacy.mla" in line)
    assert "mlarray migrate" in legacy_line
    assert len(lines) == 1 + 1 + 1 + 1 + 2 + 1 + 1  # one line per problem, plus the summary


def test_validate_several_arguments_and_missing_files(tmp_path: Path, sample: Path) -> None:
    result = run("validate", sample, tmp_path / "missing.mla", "--json")
    assert result.exit_code == 1
    codes = [r["code"] for r in json.loads(result.stdout)]
    assert codes == [None, "FILE_NOT_FOUND"]


def test_validate_usage_errors(tmp_path: Path) -> None:
    assert run("validate").exit_code == 2
    (tmp_path / "empty").mkdir()
    result = run("validate", tmp_path / "empty")
    assert result.exit_code == 2
    assert "no .mla files" in result.stderr


def corrupt_first_chunk(path: Path) -> None:
    """Overwrite compressed bytes inside the first chunk: the frame structure and header stay intact.

    (The chunk's header fields are checked with the data section (spec 4.4, step 10), so the
    damage goes into its payload, which only decompression notices.)
    """
    start = inspect_frame(path).header_size
    with open(path, "r+b") as f:
        f.seek(start + 300)
        f.write(b"\xff" * 64)


def test_deep_validation_decompresses_the_chunks(sample: Path) -> None:
    corrupt_first_chunk(sample)
    assert run("validate", sample, "--quick").exit_code == 0  # only header and frame structure are read
    deep = run("validate", sample, "--json")  # deep by default
    assert deep.exit_code == 1
    assert json.loads(deep.stdout)[0]["code"] in {"CORRUPT_FRAME", "DIGEST_MISMATCH"}


@pytest.mark.parametrize("case", ["corrupt-chunk-nbytes", "digest-mismatch"])
def test_validate_is_deep_by_default_on_the_suites_broken_files(case: str) -> None:
    """The suite's MUST/SHOULD-reject files are invalid to a plain `mlarray validate`; --quick only reads headers."""
    path = ROOT / "conformance" / "cases" / "invalid" / f"{case}.mla"
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["error"]
    result = run("validate", path, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["code"] == expected
    assert run("validate", path, "--quick").exit_code == 0


def test_deep_validation_reports_progress(tmp_path: Path) -> None:
    sample = tmp_path / "chunked.mla"
    MLArray(np.arange(24 * 40, dtype=np.int32).reshape(24, 40), chunk_size=(8, 16), block_size=(4, 8)).save(sample)
    seen: list[tuple[int, int]] = []
    report = validate_file(sample, progress=lambda done, total: seen.append((done, total)))
    assert report.valid
    total = seen[0][1]
    assert total == 3 * 3 + 2  # the chunk checks, nine chunks, the digest
    assert seen == [(done, total) for done in range(1, total + 1)]
    assert validate_file(sample, deep=False, progress=lambda *_: seen.append((-1, -1))).valid
    assert (-1, -1) not in seen


def test_directories_and_missing_paths_say_so(tmp_path: Path) -> None:
    (tmp_path / "folder.mla").mkdir()
    for call in (MLArray.open, MLArray.load):
        with pytest.raises(mlarray.InvalidArgumentError, match="is a directory"):
            call(tmp_path / "folder.mla")
        with pytest.raises(mlarray.InvalidArgumentError, match="is a directory"):
            call(tmp_path)
        with pytest.raises(mlarray.MLArrayFileNotFoundError):
            call(tmp_path / "missing")
        with pytest.raises(mlarray.MLArrayFileNotFoundError):
            call(tmp_path / "no-such-dir" / "scan.mla")
    with pytest.raises(mlarray.InvalidArgumentError, match="is a directory"):
        MLArray(np.zeros(3)).save(tmp_path)
    with pytest.raises(mlarray.MLArrayFileNotFoundError, match="does not exist"):
        MLArray(np.zeros(3)).save(tmp_path / "no-such-dir" / "scan.mla")
    result = run("info", tmp_path / "missing")
    assert result.exit_code != 0 and "FILE_NOT_FOUND" in result.output, result.output
    result = run("header", tmp_path)
    assert result.exit_code != 0 and "is a directory" in result.output, result.output


def test_header_info_and_validate_never_read_the_array(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the array was opened")

    monkeypatch.setattr(blosc2, "open", refuse)
    monkeypatch.setattr(blosc2, "decompress2", refuse, raising=False)
    corrupt_first_chunk(sample)
    assert run("header", sample).exit_code == 0
    assert run("info", sample).exit_code == 0
    assert run("validate", sample, "--quick").exit_code == 0
    assert run("validate", sample, "--deep").exit_code == 1


# --------------------------------------------------------------------------- header


def test_header_prints_the_stored_json(sample: Path) -> None:
    result = run("header", sample)
    assert result.exit_code == 0
    header = json.loads(result.stdout)
    assert header == MLArray(sample).meta.model_dump(mode="json")
    assert header["spatial"]["direction"] == DIRECTION


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("spatial.spacing", [2.5, 0.8, 0.8]),
        ("spatial.spacing.0", 2.5),
        ("spatial.direction.2", [-1.0, 0.0, 0.0]),
        ("array.dtype", "<i2"),
        ("source", {"id": "p01"}),
        ("is_seg", False),
        ("stats", None),
    ],
)
def test_header_field(sample: Path, field: str, expected: Any) -> None:
    for option in ("--field", "-f"):
        result = run("header", sample, option, field)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == expected


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("spatial.spacings", "spatial has no 'spacings' (available: affine, axis_labels"),
        ("spatial.spacing.3", "is a list of 3"),
        ("array.dtype.x", 'is "<i2", not an object'),
        ("nope", "the header has no 'nope'"),
        ("spatial..spacing", "invalid field path"),
    ],
)
def test_header_missing_field_is_a_clear_error(sample: Path, field: str, message: str) -> None:
    result = run("header", sample, "--field", field)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_header_of_an_invalid_file_lists_the_problems(tmp_path: Path, volume: np.ndarray) -> None:
    result = run("header", bad_header_file(tmp_path / "bad.mla", volume))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "invalid header (2 problems) [HEADER_INVALID]" in lines[0]
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == ["colour", "spatial.spacing.1"]


def test_mlarray_header_entry_point_matches_the_command(sample: Path) -> None:
    assert run(sample, target=header_app).stdout == run("header", sample).stdout
    assert (
        run(sample, "--field", "spatial.origin", target=header_app).stdout
        == run("header", sample, "--field", "spatial.origin").stdout
    )


# --------------------------------------------------------------------------- info


def test_info_table(sample: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(sample)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    for expected in ("shape", "[12, 16, 20]", "<i2", "size on disk", "compression ratio", "chunk size", "[8, 8, 8]"):
        assert expected in text
    assert "spacing            [2.5, 0.8, 0.8]" in text
    assert "direction          [0, 0, 1]" in text
    assert "source keys        id" in text


def test_info_json(sample: Path, volume: np.ndarray) -> None:
    result = run("info", sample, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    size = sample.stat().st_size
    assert info["shape"] == [12, 16, 20] and info["dtype"] == "<i2"
    assert info["size_on_disk"] == size and info["uncompressed_size"] == volume.nbytes
    assert info["compression_ratio"] == pytest.approx(volume.nbytes / size, abs=1e-3)
    assert info["layout"]["patch_size"] == [8, 8, 8]
    assert info["spatial"]["spacing"] == [2.5, 0.8, 0.8]


def test_info_of_a_metadata_only_file(tmp_path: Path) -> None:
    MLArray(None, spacing=(1, 1, 1)).save(tmp_path / "meta.mla")
    result = run("info", tmp_path / "meta.mla")
    assert result.exit_code == 0
    assert "metadata-only" in result.stdout
    assert json.loads(run("info", tmp_path / "meta.mla", "--json").stdout)["compression_ratio"] is None


# --------------------------------------------------------------------------- schema


def test_schema_prints_the_json_schema() -> None:
    result = run("schema")
    assert result.exit_code == 0
    assert result.stdout == render()
    assert json.loads(result.stdout)["$id"].endswith(mlarray.SCHEMA_VERSION)
    assert run("schema", "--version", mlarray.SCHEMA_VERSION).stdout == render()


def test_schema_unknown_version_is_a_usage_error() -> None:
    result = run("schema", "--version", "9.9")
    assert result.exit_code == 2
    assert "unknown schema version '9.9'" in result.stderr


# --------------------------------------------------------------------------- convert


def test_convert_mla_relayout(tmp_path: Path, sample: Path, volume: np.ndarray) -> None:
    out = tmp_path / "relayout.mla"
    result = run("convert", sample, out, "--patch-size", "4,8,8", "--codec", "zstd", "--clevel", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"ok      {sample} -> {out}"
    image = MLArray(out)
    np.testing.assert_array_equal(image.to_numpy(), volume)
    layout = image.meta.layout
    assert layout is not None
    assert (layout.strategy, layout.patch_size, layout.codec, layout.clevel) == ("patch", [4, 8, 8], "zstd", 7)
    assert image.spacing == [2.5, 0.8, 0.8] and image.direction == DIRECTION
    assert image.meta.source == {"id": "p01"}


def test_convert_codec_only_keeps_the_chunking(tmp_path: Path, sample: Path) -> None:
    out = tmp_path / "zlib.mla"
    assert run("convert", sample, out, "--codec", "ZLIB").exit_code == 0
    before, after = MLArray(sample).meta.layout, MLArray(out).meta.layout
    assert before is not None and after is not None
    assert (after.chunk_size, after.block_size, after.patch_size) == (before.chunk_size, before.block_size, [8, 8, 8])
    assert (after.codec, after.clevel) == ("zlib", before.clevel)


def test_convert_in_place_and_single_int_patch(sample: Path, volume: np.ndarray) -> None:
    result = run("convert", sample, sample, "--patch-size", "6", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"src": str(sample), "dst": str(sample), "ok": True, "code": None, "error": None, "skipped": False}
    ]
    image = MLArray(sample)
    assert image.meta.layout is not None and image.meta.layout.patch_size == [6, 6, 6]
    np.testing.assert_array_equal(image.to_numpy(), volume)


@pytest.mark.parametrize(
    "options",
    [["--patch-size", "4,x"], ["--patch-size", "0"], ["--clevel", "12"], ["--codec", "gzip"], ["--to", "png"]],
)
def test_convert_bad_options_are_usage_errors(tmp_path: Path, sample: Path, options: list[str]) -> None:
    result = run("convert", sample, tmp_path / "o.mla", *options)
    assert result.exit_code == 2
    assert "Invalid value" in result.stderr
    assert not (tmp_path / "o.mla").exists()


def test_convert_patch_size_of_the_wrong_length_is_a_clear_error(tmp_path: Path, sample: Path) -> None:
    result = run("convert", sample, tmp_path / "o.mla", "--patch-size", "4,4")
    assert result.exit_code == 1
    assert "patch_size has 2 entries" in result.stderr and "[INVALID_ARGUMENT]" in result.stderr


def test_convert_argument_count_is_checked(tmp_path: Path, sample: Path) -> None:
    assert run("convert", sample).exit_code == 2
    assert run("convert", sample, sample, tmp_path / "x.mla").exit_code == 2
    assert run("convert").exit_code == 2


def test_convert_other_formats_without_the_extra(tmp_path: Path, sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlarray.convert", None)  # makes `import mlarray.convert` fail
    result = run("convert", sample, tmp_path / "out.nii.gz")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "mlarray[convert]"' in lines[0]


def test_convert_unknown_extension(tmp_path: Path, sample: Path) -> None:
    result = run("convert", sample, tmp_path / "out.png")
    assert result.exit_code == 1
    assert "unknown format" in result.stderr
    as_json = run("convert", sample, tmp_path / "out.png", "--json")
    assert as_json.exit_code == 1
    [job] = json.loads(as_json.stdout)
    assert (job["ok"], job["code"]) == (False, "WRONG_EXTENSION")


@pytest.fixture
def fake_converter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Stand in for mlarray.convert.convert_file, recording its calls (fails for names containing 'bad')."""
    from mlarray.convert import convert_file as real_convert_file

    calls: list[tuple[Any, ...]] = []

    def convert_file(src: Path, dst: Path, *, patch_size: Any = None, codec: Any = None, clevel: Any = None) -> None:
        calls.append((src, dst, patch_size, codec, clevel))
        if "bad" in src.name:
            raise mlarray.InvalidArgumentError("cannot represent this image", path=str(src))
        if "nodeps" in src.name:
            raise MissingDependencyError('install the extra: pip install "mlarray[convert]"', module="nibabel")
        if src.suffix == dst.suffix == ".mla":
            real_convert_file(src, dst, patch_size=patch_size, codec=codec, clevel=clevel)
        else:
            dst.write_bytes(b"converted")

    monkeypatch.setitem(sys.modules, "mlarray.convert", types.SimpleNamespace(convert_file=convert_file))
    return calls


def test_convert_delegates_other_formats(tmp_path: Path, fake_converter: list[tuple[Any, ...]]) -> None:
    src = tmp_path / "ct.nii.gz"
    src.write_bytes(b"nifti")
    result = run("convert", src, tmp_path / "ct.mla", "--patch-size", "64,64,32", "--codec", "lz4hc", "--clevel", "3")
    assert result.exit_code == 0, result.output
    assert fake_converter == [(src, tmp_path / "ct.mla", (64, 64, 32), "lz4hc", 3)]
    compat = run(src, tmp_path / "back.nrrd", target=convert_app)
    assert compat.exit_code == 0
    assert fake_converter[-1] == (src, tmp_path / "back.nrrd", None, None, None)


def test_convert_missing_reader_is_one_line(tmp_path: Path, fake_converter: list[tuple[Any, ...]]) -> None:
    src = tmp_path / "nodeps.nii"
    src.write_bytes(b"x")
    result = run("convert", src, tmp_path / "out.mla")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        'error: install the extra: pip install "mlarray[convert]" [MISSING_DEPENDENCY]'
    ]


def test_convert_nifti_through_the_cli_and_back(tmp_path: Path) -> None:
    """The seed README's `mlarray_convert sample.nii.gz output.mla` and `mlarray_convert sample.mla out.nii.gz`."""
    import nibabel as nib

    data = np.random.default_rng(0).integers(0, 500, size=(10, 12, 7), dtype=np.int16)
    theta = np.deg2rad(20)
    affine = np.array(
        [
            [0.9 * np.cos(theta), -1.1 * np.sin(theta), 0, 12.0],
            [0.9 * np.sin(theta), 1.1 * np.cos(theta), 0, -30.0],
            [0, 0, 2.5, 4.0],
            [0, 0, 0, 1],
        ]
    )
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "sample.nii.gz")
    to_mla = run(tmp_path / "sample.nii.gz", tmp_path / "output.mla", target=convert_app)
    assert to_mla.exit_code == 0, to_mla.output
    assert run("validate", tmp_path / "output.mla", "--deep").exit_code == 0
    back = run(tmp_path / "output.mla", tmp_path / "back.nii.gz", target=convert_app)
    assert back.exit_code == 0, back.output
    again = nib.load(tmp_path / "back.nii.gz")
    np.testing.assert_array_equal(np.asarray(again.dataobj), data)
    np.testing.assert_allclose(again.affine, affine, atol=1e-5)


def test_convert_keep_raw_and_info_show_the_scaling(tmp_path: Path) -> None:
    import nibabel as nib

    raw = np.random.default_rng(1).integers(0, 4096, size=(6, 7, 8), dtype=np.uint16)
    nifti = nib.Nifti1Image(raw, np.eye(4))
    nifti.header["scl_slope"], nifti.header["scl_inter"] = 1.0, -1024.0
    nib.save(nifti, tmp_path / "ct.nii")
    physical = run("convert", tmp_path / "ct.nii", tmp_path / "hu.mla")
    assert physical.exit_code == 0, physical.output
    hu = MLArray.load(tmp_path / "hu.mla")
    assert hu.dtype == np.int16
    np.testing.assert_array_equal(hu.to_numpy(), raw.astype(np.int32) - 1024)
    kept = run("convert", "--keep-raw", tmp_path / "ct.nii", tmp_path / "raw.mla")
    assert kept.exit_code == 0, kept.output
    image = MLArray.load(tmp_path / "raw.mla")
    np.testing.assert_array_equal(image.to_numpy(), raw)
    np.testing.assert_array_equal(image.to_numpy(scaled=True), raw - 1024.0)
    table = run("info", tmp_path / "raw.mla")
    assert "physical = raw * 1 + -1024 (raw <u2); stores raw values" in " ".join(table.output.split())
    info = json.loads(run("info", "--json", tmp_path / "hu.mla").output)
    assert info["scaling"] == {"slope": 1.0, "intercept": -1024.0, "raw_dtype": "<u2", "stored": "physical"}
    # --keep-raw only means something when writing .mla from another format.
    refused = run("convert", "--keep-raw", tmp_path / "hu.mla", tmp_path / "again.mla")
    assert refused.exit_code != 0 and "keep_raw" in refused.output


def test_convert_batch_directory(tmp_path: Path, sample: Path, fake_converter: list[tuple[Any, ...]]) -> None:
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "a.nii.gz").write_bytes(b"x")
    (inputs / "bad.nrrd").write_bytes(b"x")
    (inputs / "sub" / "c.nhdr").write_bytes(b"x")
    (inputs / "sub" / "c.raw").write_bytes(b"x")  # data file of the detached header: not an input
    (inputs / "sub" / "d.mla").write_bytes(sample.read_bytes())
    (inputs / "notes.txt").write_text("skip me")
    out = tmp_path / "out"

    result = run("convert", inputs, out, "--clevel", "1")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == "converted 3 of 4 files, 1 failed, 1 skipped (unsupported)"
    assert f"FAILED  {inputs / 'bad.nrrd'}: cannot represent this image [INVALID_ARGUMENT]" in lines
    assert any(line.startswith(f"skipped {inputs / 'notes.txt'}: not a format") for line in lines)
    assert not any("c.raw" in line for line in lines)  # the data file of sub/c.nhdr is part of an input
    assert (out / "a.mla").read_bytes() == b"converted"
    assert (out / "sub" / "c.mla").read_bytes() == b"converted"
    relayout = MLArray(out / "sub" / "d.mla")
    assert relayout.meta.layout is not None and relayout.meta.layout.clevel == 1
    assert sorted(call[0].name for call in fake_converter) == ["a.nii.gz", "bad.nrrd", "c.nhdr", "d.mla"]


def test_convert_batch_counts_skipped_files_and_strict_fails_them(
    tmp_path: Path, fake_converter: list[tuple[Any, ...]]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.nii").write_bytes(b"x")
    for name in ("scan.dcm", "notes.txt", "b.mhd"):
        (inputs / name).write_bytes(b"x")
    relaxed = run("convert", inputs, tmp_path / "out", "--json")
    assert relaxed.exit_code == 0, relaxed.output
    report = json.loads(relaxed.stdout)
    skipped = sorted(Path(j["src"]).name for j in report if j["skipped"])
    assert skipped == ["notes.txt", "scan.dcm"]  # b.mhd is MetaImage: converted
    assert all(j["ok"] is None and j["code"] == "UNSUPPORTED_FORMAT" for j in report if j["skipped"])
    strict = run("convert", inputs, tmp_path / "out2", "--strict")
    assert strict.exit_code == 1
    last = strict.stdout.splitlines()[-1]
    assert last == "converted 2 of 2 files, 0 failed, 2 skipped (unsupported, failed with --strict)"


def test_convert_batch_inputs_with_out_dir_json(
    tmp_path: Path, sample: Path, fake_converter: list[tuple[Any, ...]]
) -> None:
    (tmp_path / "x.nii").write_bytes(b"x")
    (tmp_path / "x.nii.gz").write_bytes(b"x")  # would also become x.nrrd: refused, not overwritten
    (tmp_path / "bad.nii").write_bytes(b"x")
    result = run(
        "convert",
        tmp_path / "x.nii",
        tmp_path / "x.nii.gz",
        tmp_path / "bad.nii",
        "-o",
        tmp_path / "o",
        "--to",
        "nrrd",
        "--json",
    )
    assert result.exit_code == 1
    jobs = json.loads(result.stdout)
    assert [(Path(j["src"]).name, Path(j["dst"]).name, j["ok"], j["code"]) for j in jobs] == [
        ("x.nii", "x.nrrd", True, None),
        ("x.nii.gz", "x.nrrd", False, "OUTPUT_COLLISION"),
        ("bad.nii", "bad.nrrd", False, "INVALID_ARGUMENT"),
    ]
    ok = run("convert", tmp_path / "x.nii", "-o", tmp_path / "o2", "--to", ".nii.gz")
    assert ok.exit_code == 0 and (tmp_path / "o2" / "x.nii.gz").exists()


def test_convert_single_file_into_an_existing_directory(tmp_path: Path, sample: Path) -> None:
    (tmp_path / "dir").mkdir()
    result = run("convert", sample, tmp_path / "dir")
    assert result.exit_code == 0, result.output
    assert validate_file(tmp_path / "dir" / "ct.mla").valid


def test_parse_patch_size() -> None:
    assert parse_patch_size("128") == 128
    assert parse_patch_size(" 128, 96 ,64") == (128, 96, 64)
    assert parse_patch_size("Default") == "default"
    assert parse_patch_size(None) is None
    for bad in ("", "1,,2", "-1", "1.5", "auto"):
        with pytest.raises(ValueError):
            parse_patch_size(bad)


def test_codec_choices_match_the_header_model() -> None:
    assert [c.value for c in Codec] == list(CodecLiteral.__args__)


# --------------------------------------------------------------------------- migrate


def test_migrate(tmp_path: Path, volume: np.ndarray) -> None:
    old = write_legacy(tmp_path / "old.mla", volume, {"spacing": (1.0, 2.0, 3.0), "meta": {"id": 1}, "custom": 5})
    new = tmp_path / "new.mla"
    result = run("migrate", old, new, "--patch-size", "4", "--codec", "zstd", "--clevel", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"ok      {old} -> {new}",
        "  mapped: spacing, meta",
        "  kept under extra.legacy: custom",
    ]
    assert run("validate", new, "--deep").exit_code == 0
    image = MLArray(new)
    np.testing.assert_array_equal(image.to_numpy(), volume)
    assert image.spacing == [1.0, 2.0, 3.0] and image.meta.source == {"id": 1}
    assert image.meta.extra == {"legacy": {"custom": 5}}
    layout = image.meta.layout
    assert layout is not None and (layout.patch_size, layout.codec, layout.clevel) == ([4, 4, 4], "zstd", 2)


def test_migrate_refuses_a_malicious_file(tmp_path: Path, volume: np.ndarray) -> None:
    marker = tmp_path / "pwned"
    evil = write_legacy(tmp_path / "evil.mla", volume, {"x": RunsShell(f"touch {shlex.quote(str(marker))}")})
    result = run("migrate", evil, tmp_path / "new.mla")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("[UNSAFE_LEGACY]") and "system" in lines[0]
    assert "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "new.mla").exists()


def test_migrate_a_current_file_is_copied_or_left_alone(tmp_path: Path, sample: Path) -> None:
    """As the directory form: "current" files are checked, then copied (OLD NEW) or left alone (--in-place)."""
    before = sample.read_bytes()
    copied = run("migrate", sample, tmp_path / "new.mla")
    assert copied.exit_code == 0, copied.output
    assert copied.stdout.splitlines() == [f"current {sample} -> {tmp_path / 'new.mla'} (copied)"]
    assert (tmp_path / "new.mla").read_bytes() == before
    kept = run("migrate", sample, "--in-place")
    assert (kept.exit_code, kept.stdout.splitlines()) == (0, [f"current {sample}"])
    assert sample.read_bytes() == before


def test_header_of_a_legacy_file_prints_the_header_it_is_read_with(tmp_path: Path, volume: np.ndarray) -> None:
    """``mlarray_header OLD.mla`` keeps working on the files 0.0.x users have (cli.md: "still work")."""
    old = write_legacy(tmp_path / "old.mla", volume, {"spacing": (1.0, 2.0, 3.0), "meta": {"id": 1}, "custom": 5})
    with pytest.warns(mlarray.LegacyFormatWarning):
        expected = MLArray(old).meta.model_dump(mode="json")
    for target in (app, header_app):
        result = CliRunner().invoke(target, (["header"] if target is app else []) + [str(old)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == expected
        assert result.stderr.startswith(f"note: {old} is a file of the earlier mlarray implementation")
        assert "mlarray migrate" in result.stderr
    field = run("header", old, "--field", "spatial.spacing")
    assert field.exit_code == 0 and json.loads(field.stdout) == [1.0, 2.0, 3.0]
    assert json.loads(run("header", old, "-f", "extra.legacy.custom").stdout) == 5


def test_header_of_a_malicious_legacy_file_is_refused(tmp_path: Path, volume: np.ndarray) -> None:
    marker = tmp_path / "pwned"
    evil = write_legacy(tmp_path / "evil.mla", volume, {"x": RunsShell(f"touch {shlex.quote(str(marker))}")})
    result = run("header", evil)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().endswith("[UNSAFE_LEGACY]")
    assert not marker.exists()


def test_header_of_a_non_json_header_that_is_not_legacy_is_still_refused(tmp_path: Path, volume: np.ndarray) -> None:
    path = tmp_path / "odd.mla"
    MLArray(volume).save(path)
    import blosc2

    nd = blosc2.open(str(path), mode="a")
    nd.schunk.vlmeta.set_vlmeta("mlarray", b"\x00\x01", typesize=1)
    del nd
    result = run("header", path)
    assert result.exit_code == 1 and "[HEADER_ENCODING]" in result.stderr and "note:" not in result.stderr


# --------------------------------------------------------------------------- real processes


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_python_dash_m_mlarray(tmp_path: Path, sample: Path) -> None:
    def python_m(*args: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlarray", *map(str, args)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
            cwd=tmp_path,
        )

    version = python_m("--version")
    assert version.returncode == 0 and mlarray.__version__ in version.stdout
    valid = python_m("validate", sample, "--json")
    assert valid.returncode == 0 and json.loads(valid.stdout)[0]["valid"] is True
    missing = python_m("info", tmp_path / "missing.mla")
    assert missing.returncode == 1
    assert re.fullmatch(r"error: .*missing\.mla: no such file \[FILE_NOT_FOUND\]\n", missing.stderr)


def test_console_script_entry_point_in_a_process(sample: Path) -> None:
    """What the installed ``mlarray_header`` script runs: ``mlarray.cli:legacy_header``."""
    script = "import sys; from mlarray.cli import legacy_header; sys.argv[0] = 'mlarray_header'; legacy_header()"
    result = subprocess.run(
        [sys.executable, "-c", script, str(sample), "--field", "spatial.spacing"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [2.5, 0.8, 0.8]


def test_entry_points_declared_in_pyproject_exist() -> None:
    from mlarray import _launch, cli

    section = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[project.scripts]")[1].split("\n[")[0]
    scripts = dict(re.findall(r'^(\w+) = "([\w.:]+)"$', section, re.MULTILINE))
    assert scripts == {
        "mlarray": "mlarray._launch:main",
        "mlarray_header": "mlarray._launch:legacy_header",
        "mlarray_convert": "mlarray._launch:legacy_convert",
    }
    for target in scripts.values():  # each launcher runs the command line's function of its name
        assert callable(getattr(_launch, target.split(":")[1]))
        assert callable(getattr(cli, target.split(":")[1]))


_INTERRUPT_WHILE_IMPORTING = """
import sys

MODULE = sys.argv[1]

class Interrupt:  # Ctrl-C while the command line's libraries load, at a point of the test's choosing
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt())
sys.argv = ["mlarray", "validate", "."]
from mlarray._launch import main
main()
"""


@pytest.mark.parametrize("module", ["numpy", "blosc2", "pydantic", "typer"])
def test_ctrl_c_while_the_command_line_loads_exits_130_without_a_traceback(tmp_path: Path, module: str) -> None:
    """It printed Python's traceback (20-60 lines) and the process died by SIGINT."""
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_WHILE_IMPORTING, module],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")
    assert not list(tmp_path.iterdir())


def test_import_mlarray_loads_no_heavy_library_until_a_name_is_used() -> None:
    script = (
        "import sys, mlarray\n"
        "heavy = ('numpy', 'blosc2', 'pydantic', 'typer', 'rich')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from mlarray import MLArray, zeros\n"
        "print(zeros(2).to_numpy().tolist(), mlarray.MLArray is MLArray, mlarray.models.Meta is mlarray.Meta)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120, check=True
    )
    assert result.stdout.splitlines() == ["[]", "[0.0, 0.0] True True"]


# --------------------------------------------------------------------------- docs/cli.md stays true


def test_cli_docs_mention_only_real_commands_and_options() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        assert f"mlarray {command}" in text, f"docs/cli.md does not document `mlarray {command}`"
        help_text = run(command, "--help").stdout
        section = text.split(f"## `mlarray {command}")[1].split("\n## ")[0]
        for option in set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section)):
            assert option in help_text, f"docs/cli.md shows {option} for `mlarray {command}`, which has no such option"
    for code in ("0", "1", "2"):
        assert f"| {code} |" in text


def test_printed_json_parses_back_and_keeps_short_lists_on_one_line() -> None:
    value = {
        "spacing": [2.5, 0.8, 0.8],
        "direction": [[1.0, 0.0], [0.0, 1.0]],
        "text": "brackets [1, 2] and {x}, ünïcode",
        "nested": [{"a": []}, {}, [1, [2, 3]]],
        "long": list(range(60)),
    }
    text = dumps(value)
    assert json.loads(text) == value
    assert '"spacing": [2.5, 0.8, 0.8]' in text
    assert "    [1.0, 0.0],\n    [0.0, 1.0]\n" in text
    assert "ünïcode" in text
    assert max(len(line) for line in text.splitlines()) <= 110


def test_storage_options_parse_and_apply_to_urls_only(tmp_path: Path) -> None:
    from mlarray.cli.options import parse_storage_options

    parsed = parse_storage_options(
        ["anon=true", "client_kwargs.region_name=eu-west-1", "client_kwargs.retries=3", "token=007", 'x="8"']
    )
    assert parsed == {
        "anon": True,
        "client_kwargs": {"region_name": "eu-west-1", "retries": 3},
        "token": "007",  # not JSON (a leading zero): the text itself
        "x": "8",
    }
    assert parse_storage_options(["endpoint_url=http://h:9000/a=b"]) == {"endpoint_url": "http://h:9000/a=b"}
    assert parse_storage_options(None) is None
    for bad in (["anon"], ["=1"], ["a..b=1"], ["a=1", "a.b=2"], ["a.b=2", "a=1"]):
        with pytest.raises(typer.BadParameter):
            parse_storage_options(bad)
    sample = tmp_path / "s.mla"
    MLArray(np.zeros((4, 4), np.uint8)).save(sample)
    for command in ("header", "info", "validate"):
        result = run(command, sample, "--storage-option", "anon=true")
        assert result.exit_code == 2 and "URLs only" in result.output, (command, result.output)
