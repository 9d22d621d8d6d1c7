"""Files of a newer minor schema version: read with their unknown members ignored, written again with a warning.

Spec 2.2: a reader ignores members it does not know. Spec 2.3: a writer that writes such a
header again writes its own version without them, and tells the user.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import mlarray
from mlarray import MLArray
from mlarray.models import Meta, newer_members
from mlarray.storage import decode_header, read_header
from mlarray.storage.frame import inspect_frame

CASES = Path(__file__).resolve().parent.parent / "conformance" / "cases" / "valid"
DROPPED = ("array.future_array_member", "future_top_level", "spatial.future_spatial_member", "stats.future_stat")


@pytest.fixture
def newer(tmp_path: Path) -> Path:
    path = tmp_path / "newer.mla"
    shutil.copy(CASES / "header-newer-minor.mla", path)
    return path


def test_the_members_a_newer_minor_header_holds_beyond_this_version_are_found(newer: Path) -> None:
    assert read_header(newer).dropped == DROPPED
    data = decode_header(inspect_frame(str(newer)).header_bytes)
    assert newer_members({**data, "schema_version": "1.1"}, Meta()) == []  # a known version has none to ignore


def test_reading_does_not_warn_and_writing_again_warns_once_naming_them(newer: Path, tmp_path: Path) -> None:
    image = MLArray.load(newer)  # pytest turns any warning into an error: reading gives none
    np.testing.assert_array_equal(image.to_numpy(), MLArray.open(newer).to_numpy())
    with pytest.warns(mlarray.DroppedMembersWarning, match="future_top_level") as caught:
        image.save(tmp_path / "again.mla")
    assert caught[0].filename == __file__  # points at the caller
    image.save(tmp_path / "twice.mla")  # once per image: no second warning
    assert read_header(tmp_path / "again.mla").meta.schema_version == "1.1"
    with pytest.warns(mlarray.DroppedMembersWarning):
        MLArray(newer).save(tmp_path / "from-path.mla")


def test_an_r_plus_edit_of_a_newer_minor_file_warns_when_it_closes(newer: Path) -> None:
    warned = pytest.warns(mlarray.DroppedMembersWarning, match="spatial.future_spatial_member")
    with warned, MLArray.open(newer, mmap_mode="r+") as image:
        image.meta.extra["reviewed"] = True
    head = read_header(newer)
    assert head.meta.extra["reviewed"] is True and head.dropped == ()
    with MLArray.open(newer, mmap_mode="r+"):  # nothing to drop any more, nothing edited: no warning
        pass
