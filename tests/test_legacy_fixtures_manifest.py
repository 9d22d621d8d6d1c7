"""The committed legacy fixture set is present and agrees with its manifest.

The files under ``tests/fixtures/legacy/<version>/`` were written by published mlarray 0.0.x
releases (``tools/legacy_fixtures.py``). This module checks the set itself: every file listed exists
and every file is listed, every version the generator names is there, the set stays small, each file
is a complete Blosc2 frame, and each manifest entry is internally consistent. Reading the files with
our reader is ``tests/test_legacy_fixtures.py``'s job.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import json
import re
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import blosc2
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "legacy"
MANIFEST = FIXTURES / "manifest.json"
GENERATOR = ROOT / "tools" / "legacy_fixtures.py"

# Issue 10 names these; the generator's own list must keep covering them.
REQUIRED_VERSIONS = {"0.0.23", "0.0.30", "0.0.40", "0.0.45", "0.0.50", "0.0.54"}
TOTAL_BUDGET = 1_500_000  # bytes for the whole folder, manifest included
FILE_BUDGET = 64_000
ENTRY_KEYS = {"path", "version", "blosc2", "numpy", "encoding", "pickle_globals", "features", "array", "header", "api"}
FRAME_MAGIC = b"\x9e\xa8b2frame\x00"  # msgpack fixarray(14), then the fixstr "b2frame\0"
FROZEN = [["mlarray.meta", "_FrozenDict"], ["mlarray.meta", "_FrozenList"]]


def _generator() -> ModuleType:
    """The generator script (stdlib only; it installs nothing when merely imported)."""
    spec = importlib.util.spec_from_file_location("legacy_fixtures_tool", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text())
    return data


@pytest.fixture(scope="module")
def entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = manifest["files"]
    return files


def test_manifest_has_the_agreed_top_level_shape(manifest: dict[str, Any]) -> None:
    assert set(manifest) == {"script", "generated", "files"}
    assert manifest["script"] == "tools/legacy_fixtures.py"
    assert (ROOT / manifest["script"]).is_file()
    dt.date.fromisoformat(manifest["generated"])
    assert len(manifest["files"]) >= 5 * len(REQUIRED_VERSIONS)


def test_every_listed_file_exists_and_every_file_is_listed(entries: list[dict[str, Any]]) -> None:
    listed = [e["path"] for e in entries]
    assert len(listed) == len(set(listed)), "a path is listed twice"
    on_disk = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.mla"))
    assert sorted(listed) == on_disk
    others = sorted(p.name for p in FIXTURES.rglob("*") if p.is_file() and p.suffix != ".mla")
    assert others == ["PROVENANCE.md", "manifest.json", "reports.json"]


def test_every_generated_version_is_present_with_its_own_folder(entries: list[dict[str, Any]]) -> None:
    versions = {e["version"] for e in entries}
    expected = set(_generator().VERSIONS)
    assert expected >= REQUIRED_VERSIONS
    assert versions == expected
    folders = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert folders == expected
    for entry in entries:
        assert entry["path"].split("/")[0] == entry["version"]


def test_provenance_names_every_version_and_its_blosc2(entries: list[dict[str, Any]]) -> None:
    text = (FIXTURES / "PROVENANCE.md").read_text()
    assert "tools/legacy_fixtures.py" in text
    pins = _generator().BLOSC2_PINS
    for entry in entries:
        assert entry["blosc2"] == pins[entry["version"]][0], entry["path"]
        row = f"| {entry['version']} | {pins[entry['version']][1]} | {entry['blosc2']} "
        assert row in text, entry["version"]


def test_the_set_stays_small() -> None:
    sizes = {p: p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()}
    assert sum(sizes.values()) < TOTAL_BUDGET
    too_big = [str(p) for p, size in sizes.items() if p.suffix == ".mla" and size > FILE_BUDGET]
    assert too_big == []


def test_each_file_is_one_complete_blosc2_frame(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        data = (FIXTURES / entry["path"]).read_bytes()
        assert data.startswith(FRAME_MAGIC), entry["path"]
        # after the magic: int32 header length (0xd2 marker), then uint64 frame length (0xcf marker)
        assert data[10] == 0xD2 and data[15] == 0xCF, entry["path"]
        (frame_len,) = struct.unpack(">Q", data[16:24])
        assert frame_len == len(data), entry["path"]


def test_entries_are_internally_consistent(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        where = entry["path"]
        assert set(entry) == ENTRY_KEYS, where
        assert entry["encoding"] in ("msgpack", "gzip-pickle"), where
        assert isinstance(entry["header"], dict) and entry["header"], where
        assert entry["features"] and all(isinstance(f, str) for f in entry["features"]), where
        api, array = entry["api"], entry["array"]
        if array is None:
            assert "metadata_only" in entry["features"], where
            assert api["shape"] is None and api["dtype"] is None, where
        else:
            assert set(array) == {"shape", "dtype", "sha256"}, where
            assert re.fullmatch(r"[0-9a-f]{64}", array["sha256"]), where
            assert api["shape"] == array["shape"] and api["dtype"] == array["dtype"], where
            assert array["dtype"][0] in "<|", where  # the hash is over little-endian bytes


def test_header_encoding_follows_the_version(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        pickled = _version_key(entry["version"]) >= (0, 0, 49)
        assert entry["encoding"] == ("gzip-pickle" if pickled else "msgpack"), entry["path"]
        if not pickled or _version_key(entry["version"]) < (0, 0, 50):
            assert entry["pickle_globals"] == [], entry["path"]
        else:
            assert all(pair in FROZEN for pair in entry["pickle_globals"]), entry["path"]
    newest = [e for e in entries if e["version"] == "0.0.54" and e["array"] is not None]
    assert newest and all(e["pickle_globals"] == FROZEN for e in newest)


def test_recorded_pickle_globals_match_the_files(entries: list[dict[str, Any]]) -> None:
    """Re-scan each pickled header's opcodes (nothing is unpickled) and compare with the manifest."""
    tool = _generator()
    for entry in entries:
        if entry["encoding"] != "gzip-pickle":
            continue
        nd = blosc2.open(str(FIXTURES / entry["path"]), mode="r")
        raw = bytes(nd.schunk.vlmeta.get_vlmeta("mlarray"))
        payload = tool.msgpack_bin_payload(raw)
        assert payload is not None, entry["path"]
        assert tool.pickle_globals(gzip.decompress(payload)) == entry["pickle_globals"], entry["path"]
