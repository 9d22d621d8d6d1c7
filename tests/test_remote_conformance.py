"""The conformance corpus read through file objects and over HTTP gives the local reader's verdicts.

Remote bytes go through the same frame, header and chunk checks as a local file, so every
valid case must read to the same header and array, and every invalid case must fail with
the same code, whether the file comes from a path, an ``io.BytesIO`` or a loopback HTTP
server. This also runs the corpus's deliberately broken files through the remote decoder
(chunks checked before ``blosc2.decompress``): none may crash the process or return data.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from remote_servers import RangeServer

from mlarray import MLArray
from mlarray.remote.open import validate_remote
from mlarray.validate import validate_file

ROOT = Path(__file__).resolve().parent.parent / "conformance"
CASES: list[dict[str, Any]] = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))["cases"]


def test_the_corpus_is_present() -> None:
    assert len(CASES) >= 100
    assert {case["kind"] for case in CASES} == {"valid", "invalid"}


def _local_code(path: Path) -> str | None:
    code = validate_file(path, deep=True).code
    return "HEADER_ENCODING" if code == "LEGACY_FORMAT" else code  # legacy files are read from paths only


@pytest.fixture(scope="module")
def server() -> Iterator[RangeServer]:
    files = {f"/{case['id']}.mla": (ROOT / case["path"]).read_bytes() for case in CASES}
    with RangeServer(files=files) as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_remote_readers_agree_with_the_local_reader(case: dict[str, Any], server: RangeServer) -> None:
    path = ROOT / case["path"]
    expected = _local_code(path)
    # "may" cases: C-Blosc2 (which the local reader also runs) may refuse what the spec allows;
    # the remote reader does not hand files to blosc2.open, so it may give the manifest's verdict.
    allowed = {expected, case["expected"]["error"]} if case["requirement"] == "may" else {expected}
    as_object = validate_remote(io.BytesIO(path.read_bytes()), deep=True)
    over_http = validate_remote(f"{server.url}/{case['id']}.mla", deep=True)
    assert as_object.code in allowed, as_object.problems
    assert over_http.code == as_object.code, over_http.problems
    if expected is None:
        assert over_http.header == validate_file(path, deep=False).header
        local = MLArray.load(path)
        remote = MLArray.load(f"{server.url}/{case['id']}.mla")
        assert remote.meta.model_dump(mode="json") == local.meta.model_dump(mode="json")
        if local.shape is not None:
            np.testing.assert_array_equal(remote.to_numpy(), local.to_numpy())
            assert remote.dtype == local.dtype
