"""The legacy unpickler's allow-list: the earlier implementation's own containers decode, nothing else runs.

mlarray 0.0.50-0.0.54 pickled their headers with two list/dict subclasses of their own,
``mlarray.meta._FrozenList`` and ``mlarray.meta._FrozenDict``, each reducing to
``(cls, (plain_list_or_dict,))``. Those two names are allowed, each resolved to an inert
builder; these tests build real pickles of that shape and hand-written pickles that abuse
the two names (wrong arguments, NEWOBJ, BUILD/__setstate__, nested and returned globals).
"""

from __future__ import annotations

import gzip
import pickle
import shlex
import struct
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from legacy_files import RunsShell, write_legacy

from mlarray import LegacyFormatError, LegacyFormatWarning, MLArray
from mlarray.errors import HeaderEncodingError, MLArrayError, UnsafeLegacyFileError
from mlarray.legacy import ALLOWED_GLOBALS, migrate_file, read_legacy_header, safe_unpickle

# --------------------------------------------------------------------------- pickles as 0.0.50+ wrote them


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in module ``mlarray.meta`` whose two containers reduce exactly as the earlier ones did."""

    class _FrozenList(list[Any]):
        def __reduce_ex__(self, protocol: Any) -> Any:
            return (_FrozenList, (list(self),))

    class _FrozenDict(dict[Any, Any]):
        def __reduce_ex__(self, protocol: Any) -> Any:
            return (_FrozenDict, (dict(self),))

    module = types.ModuleType("mlarray.meta")
    for cls in (_FrozenList, _FrozenDict):
        cls.__module__ = "mlarray.meta"
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "mlarray.meta", module)
    yield module


def _freeze(module: types.ModuleType, value: Any) -> Any:
    if isinstance(value, dict):
        return module._FrozenDict({k: _freeze(module, v) for k, v in value.items()})
    if isinstance(value, list):
        return module._FrozenList([_freeze(module, v) for v in value])
    return value


HEADER: dict[str, Any] = {
    "source": {"data": {"patient": "p1", "n": 3, "nested": {"a": [1, 2]}}},
    "extra": {"data": {}},
    "spatial": {
        "spacing": [1.0, 2.0, 3.0],
        "origin": [4, 5, 6],
        "direction": [[0, 1, 0], [1, 0, 0], [0, 0, 1]],
        "affine": None,
        "shape": [6, 7, 9],
        "axis_labels": None,
        "coord_system": "LPS",
        "axis_units": None,
        "_num_spatial_axes": None,
        "_num_non_spatial_axes": None,
    },
    "stats": {"min": -3.0, "max": 9.5, "mean": None},
    "bbox": {"bboxes": [[[1, 4], [2, 5], [0, 8]]], "scores": [0.5], "labels": ["tumour"]},
    "is_seg": {"is_seg": False},
    "blosc2": {"chunk_size": [6, 7, 9], "block_size": [3, 7, 9], "patch_size": [4, 4, 4], "cparams": {"clevel": 8}},
    "_has_array": {"has_array": True},
    "_image_meta_format": {"image_meta_format": None},
    "_mlarray_version": "v0",
}


def _plain_types(value: Any) -> bool:
    if isinstance(value, dict):
        return type(value) is dict and all(_plain_types(v) for v in value.values())
    if isinstance(value, list):
        return type(value) is list and all(_plain_types(v) for v in value)
    return True


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_frozen_containers_decode_to_plain_ones(frozen: types.ModuleType, protocol: int) -> None:
    data = pickle.dumps(_freeze(frozen, HEADER), protocol=protocol)
    assert b"_FrozenList" in data and b"_FrozenDict" in data  # the pickle really names both globals
    value = safe_unpickle(data)
    assert value == HEADER
    assert _plain_types(value)


def test_the_allow_list_is_exactly_the_two_containers() -> None:
    assert set(ALLOWED_GLOBALS) == {("mlarray.meta", "_FrozenList"), ("mlarray.meta", "_FrozenDict")}


def test_a_file_as_0054_wrote_it_reads_and_migrates(
    tmp_path: Path, frozen: types.ModuleType, recwarn: pytest.WarningsRecorder
) -> None:
    volume = np.random.default_rng(5).normal(size=(6, 7, 9)).astype(np.float32)
    raw = gzip.compress(pickle.dumps(_freeze(frozen, HEADER), protocol=pickle.HIGHEST_PROTOCOL))
    old = write_legacy(tmp_path / "old.mla", volume, None, raw=msgpack.packb(raw), chunks=(6, 7, 9))
    assert read_legacy_header(old) == HEADER

    with pytest.warns(LegacyFormatWarning, match="mlarray migrate"):
        image = MLArray(old)
    np.testing.assert_array_equal(image.to_numpy(), volume)
    assert image.spacing == [1.0, 2.0, 3.0] and image.origin == [4.0, 5.0, 6.0]
    assert image.direction == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert image.meta.spatial.coord_system == "LPS"
    assert image.meta.source == {"patient": "p1", "n": 3, "nested": {"a": [1, 2]}}
    assert image.meta.is_seg is False
    assert image.meta.stats is not None and (image.meta.stats.min, image.meta.stats.max) == (-3.0, 9.5)
    assert image.meta.bbox is not None and image.meta.bbox.labels == ["tumour"] and image.meta.bbox.scores == [0.5]
    assert image.meta.extra["legacy"]["blosc2"]["patch_size"] == [4, 4, 4]

    migrate_file(old, tmp_path / "new.mla")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a migrated file reads without the legacy warning
        new = MLArray(tmp_path / "new.mla")
    np.testing.assert_array_equal(new.to_numpy(), volume)
    assert new.meta.layout is not None and new.meta.layout.patch_size == [4, 4, 4]  # the recorded patch size
    assert new.meta.model_dump(exclude={"writer", "layout", "integrity"}) == image.meta.model_dump(
        exclude={"writer", "layout", "integrity"}
    )


# --------------------------------------------------------------------------- hand-written abuse of the two names

PROTO2 = b"\x80\x02"
STOP = b"."
MARK, TUPLE, TUPLE1, TUPLE2, EMPTY_TUPLE = b"(", b"t", b"\x85", b"\x86", b")"
EMPTY_LIST, EMPTY_DICT, APPEND, SETITEM = b"]", b"}", b"a", b"s"
REDUCE, BUILD, NEWOBJ = b"R", b"b", b"\x81"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def small(n: int) -> bytes:
    return b"K" + bytes([n])


FL = glob("mlarray.meta", "_FrozenList")
FD = glob("mlarray.meta", "_FrozenDict")
ONE_LIST = EMPTY_LIST + small(1) + APPEND  # [1]
ONE_DICT = EMPTY_DICT + text("k") + small(1) + SETITEM  # {"k": 1}


def wrap(body: bytes) -> bytes:
    """``{"spatial": <body>}`` as a protocol-2 pickle."""
    return PROTO2 + EMPTY_DICT + text("spatial") + body + SETITEM + STOP


ABUSES: dict[str, tuple[bytes, type[MLArrayError]]] = {
    "list-of-a-dict": (wrap(FL + ONE_DICT + TUPLE1 + REDUCE), UnsafeLegacyFileError),
    "dict-of-a-list": (wrap(FD + ONE_LIST + TUPLE1 + REDUCE), UnsafeLegacyFileError),
    "two-arguments": (wrap(FL + ONE_LIST + ONE_LIST + TUPLE2 + REDUCE), UnsafeLegacyFileError),
    "no-argument": (wrap(FL + EMPTY_TUPLE + REDUCE), UnsafeLegacyFileError),
    "string-argument": (wrap(FL + text("abc") + TUPLE1 + REDUCE), UnsafeLegacyFileError),
    "newobj": (wrap(FL + EMPTY_TUPLE + NEWOBJ), HeaderEncodingError),
    "newobj-ex-kwargs": (
        b"\x80\x04" + EMPTY_DICT + text("x") + FL + EMPTY_TUPLE + ONE_DICT + b"\x92" + SETITEM + STOP,
        HeaderEncodingError,
    ),
    "build-dict-state-on-result": (wrap(FD + ONE_DICT + TUPLE1 + REDUCE + ONE_DICT + BUILD), HeaderEncodingError),
    "build-slot-state-on-result": (
        wrap(FL + ONE_LIST + TUPLE1 + REDUCE + MARK + b"N" + ONE_DICT + TUPLE + BUILD),
        HeaderEncodingError,
    ),
    "build-dict-state-on-stand-in": (wrap(FL + ONE_DICT + BUILD), HeaderEncodingError),
    "build-slot-state-on-stand-in": (
        wrap(FL + MARK + b"N" + EMPTY_DICT + text("builds") + small(1) + SETITEM + TUPLE + BUILD),
        UnsafeLegacyFileError,
    ),
    "setstate-global": (wrap(FL + ONE_LIST + TUPLE1 + REDUCE + glob("os", "system") + BUILD), UnsafeLegacyFileError),
    "nested-global-in-argument": (
        wrap(FL + EMPTY_LIST + glob("os", "system") + APPEND + TUPLE1 + REDUCE),
        UnsafeLegacyFileError,
    ),
    "nested-call-in-argument": (
        wrap(FL + EMPTY_LIST + glob("builtins", "eval") + text("1") + TUPLE1 + REDUCE + APPEND + TUPLE1 + REDUCE),
        UnsafeLegacyFileError,
    ),
    "stand-in-as-a-value": (wrap(FL), UnsafeLegacyFileError),
    "stand-in-inside-its-own-result": (wrap(FL + EMPTY_LIST + FD + APPEND + TUPLE1 + REDUCE), UnsafeLegacyFileError),
    "stand-in-nested-deep": (PROTO2 + EMPTY_LIST * 1000 + FL + APPEND * 1000 + STOP, UnsafeLegacyFileError),
    "stand-in-as-a-key": (PROTO2 + EMPTY_DICT + MARK + FL + TUPLE + small(1) + SETITEM + STOP, UnsafeLegacyFileError),
    "other-name-same-module": (wrap(glob("mlarray.meta", "Meta") + EMPTY_TUPLE + REDUCE), UnsafeLegacyFileError),
    "dotted-name": (wrap(glob("mlarray", "meta._FrozenList") + ONE_LIST + TUPLE1 + REDUCE), UnsafeLegacyFileError),
    "same-name-other-module": (
        wrap(glob("builtins", "_FrozenList") + ONE_LIST + TUPLE1 + REDUCE),
        UnsafeLegacyFileError,
    ),
    "stand-in-attribute": (
        wrap(glob("builtins", "getattr") + FL + text("builds") + TUPLE2 + REDUCE),
        UnsafeLegacyFileError,
    ),
}


@pytest.mark.parametrize("case", sorted(ABUSES))
def test_abuse_of_the_allowed_names_is_refused(case: str) -> None:
    data, error = ABUSES[case]
    with pytest.raises(error) as info:
        safe_unpickle(data)
    assert isinstance(info.value, MLArrayError) and info.value.code in ("UNSAFE_LEGACY", "HEADER_ENCODING")


def test_the_stand_ins_cannot_be_changed_or_pickled() -> None:
    stand_in = ALLOWED_GLOBALS[("mlarray.meta", "_FrozenList")]
    with pytest.raises(UnsafeLegacyFileError):
        stand_in.builds = dict  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pickle.dumps(stand_in)
    assert stand_in([1, 2]) == [1, 2] and type(stand_in([1])) is list


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_code_hidden_inside_frozen_containers_never_runs(
    tmp_path: Path, frozen: types.ModuleType, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    header = _freeze(frozen, {"source": {"data": {"x": [1]}}, "_has_array": {"has_array": True}})
    evil = dict(header)
    evil["extra"] = frozen._FrozenDict({"data": frozen._FrozenList([RunsShell(f"touch {shlex.quote(str(marker))}")])})
    raw = gzip.compress(pickle.dumps(evil, protocol=protocol))
    old = write_legacy(tmp_path / "evil.mla", np.zeros((2, 3, 4), np.uint8), None, raw=raw)
    for call in (MLArray, MLArray.load, MLArray.open):
        with pytest.raises(UnsafeLegacyFileError, match="system"):
            call(old)
    with pytest.raises(UnsafeLegacyFileError):
        migrate_file(old, tmp_path / "new.mla")
    assert not marker.exists() and not (tmp_path / "new.mla").exists()


def test_r_plus_on_a_legacy_file_says_to_migrate(tmp_path: Path, frozen: types.ModuleType) -> None:
    raw = gzip.compress(pickle.dumps(_freeze(frozen, HEADER), protocol=5))
    old = write_legacy(tmp_path / "old.mla", np.zeros((6, 7, 9), np.float32), None, raw=raw)
    before = old.read_bytes()
    with pytest.raises(LegacyFormatError, match="mlarray migrate") as info:
        MLArray.open(old, mmap_mode="r+")
    assert isinstance(info.value, ValueError) and info.value.code == "LEGACY_FORMAT"
    assert old.read_bytes() == before
