"""More of mlarray 0.0.x's API on this package's models (compatibility audit, items 4-12).

Expected values marked "0.0.54:" are what mlarray 0.0.54 returned or raised for the
same call (run under that version); values in this package's float form (``1.0`` for
``1``) are the same numbers.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest

import mlarray
from mlarray import (
    HeaderValidationError,
    Meta,
    MetaBbox,
    MetaImageFormat,
    MetaIsSeg,
    MetaSpatial,
    MetaStatistics,
    MLArray,
    ReadOnlyError,
)
from mlarray.errors import HeaderKeyError, HeaderTypeError, model_error
from mlarray.models import Layout, parse_header
from mlarray.models.v1.annotations import BLOSC2_CODEC_IDS, BLOSC2_FILTER_IDS

LEGACY = Path(__file__).parent / "fixtures" / "legacy" / "0.0.54"


def _read_legacy(name: str, tmp_path: Path) -> MLArray:
    """A copy of a 0.0.54 fixture file, read (a copy: the warning, once per file, stays for other tests)."""
    copy = tmp_path / name
    shutil.copyfile(LEGACY / name, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mlarray.LegacyFormatWarning)
        return MLArray(copy)


# --------------------------------------------------------------------------- is_default, reset, ensure


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: Meta(), True),  # 0.0.54: True
        (lambda: Meta(source={"a": 1}), False),  # 0.0.54: False
        (lambda: Meta(is_seg=False), False),
        (lambda: MetaStatistics(), True),  # 0.0.54: True
        (lambda: MetaStatistics(min=1), False),  # 0.0.54: False
        (lambda: MetaSpatial(), True),  # 0.0.54: True
        (lambda: MetaSpatial(spacing=[1, 2]), False),  # 0.0.54: False
        (lambda: MLArray(np.zeros((2, 3))).meta, False),  # 0.0.54: False (the image has an array)
        (lambda: MetaBbox([[[0, 1]]]), False),  # boxes are mandatory here: never a default
    ],
)
def test_is_default(build: Any, expected: bool) -> None:
    assert build().is_default() is expected


def test_reset_restores_defaults_validated() -> None:
    stats = MetaStatistics(min=1, max=2)
    stats.reset()
    assert stats.to_plain() == {} and stats.is_default()  # 0.0.54: {}

    spatial = MetaSpatial(spacing=[1, 2], coord_system="RAS", shape=[4, 5])
    spatial.reset()  # 0.0.54 raised AttributeError at the read-only shape; here shape is kept
    assert spatial.to_plain() == {"shape": [4, 5]}

    meta = MLArray(np.zeros((2, 3)), spacing=(2, 3), meta={"k": 1}).meta
    meta.reset()
    assert meta.source == {} and meta.spatial.spacing is None
    assert meta.array is not None and meta.array.shape == [2, 3]  # what the writer owns stays

    boxes = MetaBbox([[[0, 1]]], scores=[0.5])
    with pytest.raises(HeaderValidationError) as caught:
        boxes.reset()  # a BBoxes without boxes does not exist
    assert [p.loc for p in caught.value.problems] == ["bboxes"]
    assert boxes.scores == [0.5]  # unchanged


def test_ensure() -> None:
    assert MetaStatistics.ensure(None).to_plain() == {}  # 0.0.54: {}
    assert MetaStatistics.ensure({"min": 3, "max": 4}).to_plain() == {"min": 3.0, "max": 4.0}  # 0.0.54: same
    same = MetaStatistics(min=1)
    assert MetaStatistics.ensure(same) is same  # 0.0.54: True
    assert MetaSpatial.ensure({"spacing": [2, 2]}).spacing == [2, 2]  # 0.0.54: [2, 2]
    assert MetaBbox.ensure({"bboxes": [[[0, 1]]]}).bboxes == [[[0, 1]]]  # 0.0.54: [[[0, 1]]]
    with pytest.raises(TypeError):
        MetaStatistics.ensure(3)  # 0.0.54: TypeError
    with pytest.raises(HeaderKeyError):
        MetaStatistics.ensure({"minimum": 3})


# --------------------------------------------------------------------------- positional arguments


def test_positional_arguments_follow_the_0_0_x_signatures() -> None:
    assert MetaSpatial([1, 2, 3], [0, 0, 0]).to_plain() == {"spacing": [1, 2, 3], "origin": [0, 0, 0]}
    assert MetaStatistics(0, 1, 0.5).to_plain() == {"min": 0, "max": 1, "mean": 0.5}  # 0.0.54: same
    assert MetaBbox([[[0, 1]]], [0.5], ["a"]).to_plain() == {"bboxes": [[[0, 1]]], "scores": [0.5], "labels": ["a"]}
    assert Meta({"a": 1}, {"b": 2}).source == {"a": 1}  # 0.0.54: MetaSource(data={'a': 1})
    assert Meta({"a": 1}, {"b": 2}).extra == {"b": 2}
    assert Meta(None, None, MetaSpatial([2, 2]), None, None, True).is_seg is True
    assert MetaIsSeg(True).is_seg is True
    assert MetaImageFormat("nifti").image_meta_format == "nifti"
    assert Meta(is_seg=MetaIsSeg(False)).is_seg is False


def test_positional_arguments_are_validated_and_checked() -> None:
    with pytest.raises(HeaderTypeError):
        MetaSpatial(["a", 1])
    with pytest.raises(TypeError, match="at most 1 positional"):
        MetaIsSeg(True, False)
    with pytest.raises(TypeError, match="both positionally and by keyword"):
        MetaStatistics(0, min=1)
    assert MetaStatistics(min=1).min == 1.0  # keywords unchanged


# --------------------------------------------------------------------------- exception classes


@pytest.mark.parametrize(
    ("call", "builtin"),
    [
        (lambda: MetaStatistics(min="x"), TypeError),  # 0.0.54: TypeError
        (lambda: Meta(source=[1, 2]), TypeError),  # 0.0.54: TypeError
        (lambda: MetaSpatial(spacing=["a", 1]), TypeError),  # 0.0.54: TypeError
        (lambda: Meta(source={"a": object()}), TypeError),  # 0.0.54: TypeError (not JSON-serializable)
        (lambda: Meta(foo=1), TypeError),  # 0.0.54: TypeError (unexpected keyword)
        (lambda: MetaSpatial(coord_system=3), TypeError),  # 0.0.54: TypeError
        (lambda: MetaStatistics.from_mapping({"min": 1, "foo": 2}), KeyError),  # 0.0.54: KeyError
        (lambda: MetaBbox([[[0, 1, 2]]]), ValueError),  # 0.0.54: ValueError
        (lambda: MetaBbox([[[0, 1]]], scores=[1, 2]), ValueError),  # 0.0.54: ValueError
    ],
)
def test_model_errors_keep_the_builtin_0_0_x_raised(call: Any, builtin: type[Exception]) -> None:
    with pytest.raises(builtin) as caught:
        call()
    error = caught.value
    assert isinstance(error, HeaderValidationError) and isinstance(error, ValueError)
    assert error.code == "HEADER_INVALID" and error.problems


def test_value_problems_are_not_type_errors() -> None:
    with pytest.raises(HeaderValidationError) as caught:
        MetaStatistics(min=2, max=1)
    assert not isinstance(caught.value, TypeError)


def test_editing_raises_the_same_classes() -> None:
    stats = MetaStatistics(min=1)
    with pytest.raises(TypeError):
        stats.min = "x"  # type: ignore[assignment]
    assert stats.min == 1.0
    meta = Meta(source={"a": 1})
    with pytest.raises(TypeError):
        meta.source = [1]  # type: ignore[assignment]
    assert meta.source == {"a": 1}


def test_key_error_prints_its_message_unquoted() -> None:
    with pytest.raises(KeyError) as caught:
        MetaStatistics.from_mapping({"foo": 2})
    assert str(caught.value).startswith("invalid header (1 problem):\n  - foo: unknown member")


def test_headers_read_from_data_raise_the_base_class() -> None:
    with pytest.raises(HeaderValidationError) as caught:
        parse_header({"schema_version": "1.0", "stats": {"min": "x"}, "foo": 1})
    assert type(caught.value) is HeaderValidationError


@pytest.mark.parametrize("error", [model_error([]), HeaderTypeError([]), HeaderKeyError([])])
def test_new_error_classes_pickle(error: HeaderValidationError) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error) and again.code == "HEADER_INVALID"


def test_writing_to_a_read_only_image_is_also_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "ro.mla"
    MLArray(np.zeros((2, 4, 4), np.float32)).save(path)
    with MLArray.open(path, mmap_mode="r") as image, pytest.raises(ValueError) as caught:  # 0.0.54: ValueError
        image[0, 0, 0] = 1
    assert isinstance(caught.value, ReadOnlyError) and isinstance(caught.value, PermissionError)
    assert caught.value.code == "READ_ONLY"


# --------------------------------------------------------------------------- meta.blosc2.cparams / dparams


def test_codec_and_filter_ids_are_python_blosc2s() -> None:
    assert {name: blosc2.Codec[name.upper()].value for name in BLOSC2_CODEC_IDS} == BLOSC2_CODEC_IDS
    assert {name: blosc2.Filter[name.upper()].value for name in BLOSC2_FILTER_IDS} == BLOSC2_FILTER_IDS


def test_cparams_of_a_0_0_54_file_match_what_0_0_54_reported(tmp_path: Path) -> None:
    image = _read_legacy("defaults_float32.mla", tmp_path)
    layout = image.meta.blosc2
    assert layout is not None
    # 0.0.54: {'codec': 2, 'clevel': 8} and {'nthreads': 1}; blosc2's default filter (shuffle) was implied
    assert layout.cparams == {"codec": 2, "clevel": 8, "filters": [1]}
    assert layout.dparams == {"nthreads": 1}


def test_cparams_reproduce_the_compression(tmp_path: Path) -> None:
    data = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    MLArray(data, cparams={"codec": blosc2.Codec.ZSTD, "clevel": 3, "filters": [blosc2.Filter.BITSHUFFLE]}).save(
        tmp_path / "a.mla"
    )
    first = MLArray(tmp_path / "a.mla").meta.blosc2
    assert first is not None and first.cparams == {"codec": 5, "clevel": 3, "filters": [2]}
    assert blosc2.CParams(**first.cparams).codec == blosc2.Codec.ZSTD
    MLArray(data, cparams=first.cparams).save(tmp_path / "b.mla")
    second = MLArray(tmp_path / "b.mla").meta.blosc2
    assert second is not None and (second.codec, second.clevel, second.filters) == ("zstd", 3, ["bitshuffle"])
    plain = Layout(strategy="manual", chunk_size=[1], block_size=[1], filters=[])
    assert plain.cparams["filters"] == [0]  # NOFILTER
    assert "cparams" not in plain.to_plain()  # a read-out, not a header field


# --------------------------------------------------------------------------- meta.spatial.shape


def test_spatial_shape_reads_the_array_shape(tmp_path: Path) -> None:
    image = MLArray(np.zeros((4, 5, 6), np.float32))
    assert image.meta.spatial.shape == [4, 5, 6]  # 0.0.54: [4, 5, 6]
    assert "shape" not in image.meta.spatial.to_plain()  # the header is unchanged
    image.save(tmp_path / "x.mla")
    assert MLArray(tmp_path / "x.mla").meta.spatial.shape == [4, 5, 6]  # 0.0.54: [4, 5, 6]
    with MLArray.open(tmp_path / "x.mla") as opened:
        assert opened.meta.spatial.shape == [4, 5, 6]  # 0.0.54: [4, 5, 6]
    header = json.loads(json.dumps(MLArray(tmp_path / "x.mla").meta.to_plain()))
    assert "shape" not in header["spatial"]


def test_spatial_shape_is_the_spatial_part_with_other_axes(tmp_path: Path) -> None:
    image = MLArray(np.zeros((3, 4, 5, 2)), axis_labels=["spatial_z", "spatial_y", "spatial_x", "channel"])
    assert image.meta.spatial.shape == [3, 4, 5]  # 0.0.54 gave the whole shape [3, 4, 5, 2]
    legacy = _read_legacy("channels_float32.mla", tmp_path)
    assert legacy.shape == (2, 6, 10, 12) and legacy.meta.spatial.shape == [6, 10, 12]


def test_spatial_shape_without_an_array_is_none() -> None:
    assert MLArray(spacing=(1, 2, 3)).meta.spatial.shape is None  # 0.0.54: None
    assert Meta().spatial.shape is None and MetaSpatial(spacing=[1, 2]).shape is None


def test_spatial_shape_follows_the_array_and_survives_sharing() -> None:
    image = MLArray(np.zeros((4, 5)))
    spatial = image.meta.spatial
    Meta(spatial=spatial)  # a metadata-only header around the same object does not blank it
    assert image.meta.spatial.shape == [4, 5]
    copied = MLArray(np.zeros((7, 8)), copy=image)
    assert copied.meta.spatial.shape == [7, 8] and image.meta.spatial.shape == [4, 5]
    image.meta.copy_from(copied.meta, overwrite=True)
    assert image.meta.spatial.shape == [4, 5]


def test_a_stored_spatial_shape_is_still_validated() -> None:
    image = MLArray(np.zeros((4, 5)))
    image.meta.spatial.shape = [4, 5]
    assert image.meta.spatial.to_plain()["shape"] == [4, 5]
    with pytest.raises(HeaderValidationError):
        parse_header(
            {"schema_version": "1.0", "array": {"shape": [4, 5], "dtype": "<f8"}, "spatial": {"shape": [5, 4]}}
        )


# --------------------------------------------------------------------------- top-level functions


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1, "b": [1.5, None, True, "x"], "c": {"d": (1, 2)}}, True),  # 0.0.54: True
        ({"a": object()}, False),  # 0.0.54: False
        ({"a": b"bytes"}, False),  # 0.0.54: False
        ({"a": float("nan")}, False),  # 0.0.54: True (json.dumps writes NaN, which is not JSON)
        ({1: "x"}, False),  # 0.0.54: True (json.dumps turns the key into "1")
    ],
)
def test_is_serializable(value: Any, expected: bool) -> None:
    assert mlarray.is_serializable(value) is expected
    if expected:
        Meta(source=value)  # what it promises


def test_cli_functions_are_exported_and_lazy() -> None:
    assert {"is_serializable", "cli_print_header", "cli_convert_to_mlarray"} <= set(mlarray.__all__)
    code = "import sys, mlarray; print('typer' in sys.modules, 'mlarray.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_cli_print_header_prints_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "h.mla"
    MLArray(np.zeros((2, 3)), meta={"case": "c-1"}).save(path)
    monkeypatch.setattr(sys, "argv", ["mlarray_header", str(path)])
    assert mlarray.cli_print_header() is None  # returns, like 0.0.54's
    printed = json.loads(capsys.readouterr().out)
    assert printed["source"] == {"case": "c-1"} and printed["array"]["shape"] == [2, 3]
    monkeypatch.setattr(sys, "argv", ["mlarray_header", str(tmp_path / "missing.mla")])
    with pytest.raises(SystemExit) as failed:
        mlarray.cli_print_header()
    assert failed.value.code != 0


def test_cli_convert_to_mlarray_converts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in.mla"
    MLArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)).save(source)
    monkeypatch.setattr(sys, "argv", ["mlarray_convert", str(source), str(tmp_path / "out.mla")])
    mlarray.cli_convert_to_mlarray()
    np.testing.assert_array_equal(MLArray(tmp_path / "out.mla")[...], np.arange(24).reshape(2, 3, 4))


def test_spatial_equality_is_field_equality() -> None:
    """The array shape a header records for ``spatial.shape``'s read-out does not make equal fields unequal."""
    assert MLArray(np.zeros((4, 5)), spacing=[1, 2]).meta.spatial == MetaSpatial(spacing=[1.0, 2.0])
    assert MLArray(np.zeros((3, 3))).meta.spatial == MLArray(np.zeros((7, 7))).meta.spatial == MetaSpatial()
    assert MetaSpatial(spacing=[1.0]) != MetaSpatial(spacing=[2.0])
