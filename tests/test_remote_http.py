"""Reading .mla files over HTTP from a real range-honouring server on 127.0.0.1, and from file objects.

The server (:mod:`tests.remote_servers`) counts every request and body byte, so the
tests assert what a patch read costs: one ranged request per run of chunks that lie one
after another in the file, and exactly the compressed bytes of the chunks the key touches.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest
from remote_servers import Faults, RangeServer
from typer.testing import CliRunner

from mlarray import MLArray
from mlarray.cli import app
from mlarray.errors import (
    CorruptFrameError,
    MLArrayError,
    MLArrayFileNotFoundError,
    NotAFrameError,
    ReadOnlyError,
    RemoteChangedError,
    RemoteError,
)

SHAPE, CHUNKS, BLOCKS = (48, 64, 64), (16, 32, 32), (8, 16, 16)


def _volume() -> np.ndarray:
    rng = np.random.default_rng(16)
    data = rng.integers(-1000, 3000, SHAPE, dtype=np.int16)
    data[:16, :32, :32] = 0  # a chunk that blosc2 stores as a special zeros chunk
    return data


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("remote") / "ct.mla"
    image = MLArray(_volume(), chunk_size=CHUNKS, block_size=BLOCKS, spacing=(2.5, 0.8, 0.8), meta={"patient": "p1"})
    image.meta.is_seg = False
    image.save(path)
    return path


@pytest.fixture(scope="module")
def server(local: Path) -> Iterator[RangeServer]:
    with RangeServer(files={"/ct.mla": local.read_bytes(), "/other.mla": local.read_bytes()}) as running:
        yield running


@pytest.fixture
def url(server: RangeServer) -> str:
    server.reset()
    return f"{server.url}/ct.mla"


def _chunk_sizes(path: Path) -> list[int]:
    """Compressed size of every chunk, as blosc2 reports it (independent of mlarray's reader)."""
    nd = blosc2.open(str(path), mmap_mode="r")
    return [len(nd.schunk.get_chunk(i)) for i in range(nd.schunk.nchunks)]


def _touched(key: tuple[slice, ...]) -> list[int]:
    """Chunk numbers whose box intersects the key's box (brute force over the grid)."""
    grid = [math.ceil(s / c) for s, c in zip(SHAPE, CHUNKS, strict=True)]
    out = []
    for number, position in enumerate(itertools.product(*map(range, grid))):
        if all(k.start < (p + 1) * c and p * c < k.stop for k, p, c in zip(key, position, CHUNKS, strict=True)):
            out.append(number)
    return out


def _runs(numbers: list[int]) -> int:
    """Runs of consecutive chunk numbers (blosc2 stores chunks in number order, one after another)."""
    return sum(1 for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n - 1)


def test_open_costs_two_requests_and_reads_the_same_header(local: Path, url: str, server: RangeServer) -> None:
    image = MLArray.open(url)
    assert server.requests == 2, [s.range for s in server.log]
    assert {s.range for s in server.log} == {"bytes=0-65535", "bytes=-65536"}
    expected = MLArray.open(local)
    assert image.meta.model_dump(mode="json") == expected.meta.model_dump(mode="json")
    assert image.shape == SHAPE and image.dtype == np.int16
    assert image.filepath == url and image.mode == "r"


@pytest.mark.parametrize(
    "key",
    [
        (slice(0, 16), slice(0, 32), slice(0, 32)),  # one zeros chunk: no request at all
        (slice(20, 30), slice(10, 50), slice(40, 64)),
        (slice(5, 40), slice(0, 64), slice(30, 34)),
        (slice(47, 48), slice(63, 64), slice(0, 64)),
    ],
)
def test_a_patch_fetches_only_the_chunks_it_touches(
    local: Path, url: str, server: RangeServer, key: tuple[slice, ...]
) -> None:
    image = MLArray.open(url)
    with MLArray.open(local) as reference:
        expected = reference[key]
    sizes = _chunk_sizes(local)
    touched = _touched(key)
    stored = [n for n in touched if n != 0]  # chunk 0 (zeros) is an index entry: no bytes to fetch
    server.reset()
    patch = image[key]
    np.testing.assert_array_equal(patch, expected)
    assert patch.dtype == expected.dtype and patch.shape == expected.shape
    assert server.bytes_sent == sum(sizes[n] for n in stored)
    assert server.requests == _runs(stored) <= len(touched)
    assert server.bytes_sent < local.stat().st_size
    # the same patch again comes from the chunk cache
    server.reset()
    np.testing.assert_array_equal(image[key], expected)
    assert server.requests == 0


@pytest.mark.parametrize("decoder", ["default", "numpy"])
def test_reads_of_every_key_kind_equal_local_reads(
    local: Path, url: str, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if decoder == "numpy":  # the decoder used when the block-level reader cannot serve a key
        monkeypatch.setattr("mlarray.remote.array._fastread", lambda: None)
    image = MLArray.open(url)
    data = _volume()
    keys: list[Any] = [
        ...,
        5,
        -1,
        (slice(None, None, -3), 7),
        (Ellipsis, slice(60, 2, -5)),
        (np.array([0, 47, 3]),),
        (data[:, 0, 0] > 0,),
        (slice(10, 10),),
        (1, 2, 3),
    ]
    for key in keys:
        np.testing.assert_array_equal(image[key], data[key])
    np.testing.assert_array_equal(image.to_numpy(), data)
    np.testing.assert_array_equal(np.asarray(image), data)
    with pytest.raises(IndexError):
        image[48]


def test_load_fetches_everything_once(local: Path, url: str, server: RangeServer) -> None:
    loaded = MLArray.load(url)
    np.testing.assert_array_equal(loaded.to_numpy(), _volume())
    assert loaded.meta.model_dump(mode="json") == MLArray.open(local).meta.model_dump(mode="json")
    data_requests = [s for s in server.log if s.range not in ("bytes=0-65535", "bytes=-65536")]
    assert sum(s.sent for s in data_requests) == sum(n for n in _chunk_sizes(local) if n > 32)
    assert MLArray(url).meta.source == {"patient": "p1"}


def test_remote_arrays_are_read_only(url: str) -> None:
    with pytest.raises(ReadOnlyError, match="read-only"):
        MLArray.open(url, mmap_mode="r+")
    with pytest.raises(ReadOnlyError):
        MLArray.open(url, mode="a", mmap_mode=None)
    image = MLArray.open(url)
    with pytest.raises(ReadOnlyError):
        image[0, 0, 0] = 1


def test_a_remote_array_pickles_as_a_reopen(url: str) -> None:
    image = MLArray.open(url)
    again = pickle.loads(pickle.dumps(image))
    np.testing.assert_array_equal(again[3:5], image[3:5])


def test_saving_a_remote_array_locally(tmp_path: Path, url: str) -> None:
    MLArray.open(url).save(tmp_path / "copy.mla")
    np.testing.assert_array_equal(MLArray.load(tmp_path / "copy.mla").to_numpy(), _volume())


# --------------------------------------------------------------------------- hostile servers

HOSTILE = {
    "http-500": (Faults(status=500), RemoteError),
    "http-404": (Faults(status=404), MLArrayFileNotFoundError),
    "ignores-range": (Faults(ignore_range=True), RemoteError),
    "truncated-body": (Faults(truncate=True), RemoteError),
    "short-length": (Faults(short_length=True), RemoteError),
    "shifted-range": (Faults(shifted_range=True), CorruptFrameError),
    "file-changed": (Faults(replace_with=b"x" * 100), RemoteChangedError),
    "file-changed-if-match-ignored": (Faults(replace_with=b"x" * 100, ignore_if_match=True), RemoteChangedError),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_server_during_a_patch_read_gives_a_typed_error(url: str, server: RangeServer, name: str) -> None:
    faults, error = HOSTILE[name]
    image = MLArray.open(url)
    server.faults = dataclasses.replace(faults, after=server.requests)  # from the first request after the open on
    with pytest.raises(error) as caught:
        image[20:40, 10:50, 5:60]
    assert isinstance(caught.value, MLArrayError)
    server.reset()
    np.testing.assert_array_equal(image[20:40, 10:50, 5:60], _volume()[20:40, 10:50, 5:60])  # nothing was cached


AT_OPEN = {
    # the bytes are not the file's: the frame checks refuse them before anything else runs
    "shifted-range": NotAFrameError,
    # the file was replaced before the first request: both windows agree, on a file that is no frame
    "file-changed": NotAFrameError,
    "file-changed-if-match-ignored": NotAFrameError,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_server_at_open_gives_a_typed_error(url: str, server: RangeServer, name: str) -> None:
    faults, error = HOSTILE[name]
    server.faults = dataclasses.replace(faults)
    with pytest.raises(AT_OPEN.get(name, error)):
        MLArray.open(url)


def test_a_file_that_changes_between_the_two_open_requests(url: str, server: RangeServer, local: Path) -> None:
    server.faults = Faults(after=1, replace_with=local.read_bytes() + b"")  # same bytes: the ETag agrees
    MLArray.open(url)
    server.reset()
    changed = bytearray(local.read_bytes())
    changed[-1] ^= 0xFF
    server.faults = Faults(after=1, replace_with=bytes(changed))
    with pytest.raises(RemoteChangedError):
        MLArray.open(url)


def test_a_server_with_weak_etags(url: str, server: RangeServer) -> None:
    """Weak ETags never satisfy If-Match: the reader compares them itself instead of sending If-Match."""
    server.faults = Faults(weak_etag=True)
    image = MLArray.open(url)
    np.testing.assert_array_equal(image[3:9, 30:40], _volume()[3:9, 30:40])
    assert all(s.status == 206 for s in server.log)
    server.faults = Faults(weak_etag=True, after=server.requests, replace_with=b"y" * 100_000)
    with pytest.raises(RemoteChangedError):
        image[20:30]


def test_missing_and_malformed_remote_files(url: str, server: RangeServer, local: Path) -> None:
    with pytest.raises(MLArrayFileNotFoundError):
        MLArray.open(f"{server.url}/absent.mla")
    server.files["/garbage.mla"] = b"not a frame" * 10
    from mlarray.errors import TruncatedFileError

    with pytest.raises(NotAFrameError):
        MLArray.open(f"{server.url}/garbage.mla")
    server.files["/cut.mla"] = local.read_bytes()[:-5000]
    with pytest.raises(TruncatedFileError):
        MLArray.open(f"{server.url}/cut.mla")


# --------------------------------------------------------------------------- file objects


def test_file_objects_read_like_paths(local: Path) -> None:
    data = _volume()
    with local.open("rb") as handle:
        image = MLArray.open(handle)
        np.testing.assert_array_equal(image[10:30, 5:60, 7], data[10:30, 5:60, 7])
        assert image.meta.model_dump(mode="json") == MLArray.open(local).meta.model_dump(mode="json")
        assert image.filepath is None and image.mmap_mode == "r"  # not a path anything could reopen
    buffer = io.BytesIO(local.read_bytes())
    np.testing.assert_array_equal(MLArray.load(buffer).to_numpy(), data)
    with pytest.raises(TypeError, match="file object"):
        pickle.dumps(MLArray.open(buffer))


def test_file_objects_get_the_same_frame_checks(local: Path) -> None:
    from mlarray.errors import InvalidArgumentError, TruncatedFileError

    with pytest.raises(TruncatedFileError):
        MLArray.open(io.BytesIO(local.read_bytes()[:-100]))
    with pytest.raises(NotAFrameError):
        MLArray.open(io.BytesIO(b"\x00" * 200))
    with pytest.raises(InvalidArgumentError, match="text mode"):
        MLArray.open(io.StringIO("abc"))


# --------------------------------------------------------------------------- command line


def test_cli_header_info_and_quick_validate_accept_urls(url: str, local: Path, server: RangeServer) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["header", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(runner.invoke(app, ["header", str(local)]).output)
    result = runner.invoke(app, ["info", "--json", url])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["shape"] == list(SHAPE) and info["size_on_disk"] == local.stat().st_size
    server.reset()
    result = runner.invoke(app, ["validate", "--quick", url])
    assert result.exit_code == 0, result.output
    assert server.requests == 2  # the frame, header and chunk index only
    result = runner.invoke(app, ["validate", "--json", url])
    assert result.exit_code == 0 and json.loads(result.output)[0]["valid"] is True
    result = runner.invoke(app, ["validate", "--json", f"{server.url}/absent.mla"])
    assert result.exit_code == 1 and json.loads(result.output)[0]["code"] == "FILE_NOT_FOUND"


def test_cli_deep_validate_of_a_url_finds_a_corrupt_chunk(url: str, server: RangeServer, local: Path) -> None:
    data = bytearray(local.read_bytes())
    sizes = _chunk_sizes(local)
    nd = blosc2.open(str(local), mmap_mode="r")
    middle = nd.schunk.get_chunk(5)
    at = bytes(data).index(middle)
    data[at + 40 : at + 60] = b"\xff" * 20  # damage chunk 5's block data
    assert len(middle) == sizes[5]
    server.files["/damaged.mla"] = bytes(data)
    runner = CliRunner()
    quick = runner.invoke(app, ["validate", "--quick", f"{server.url}/damaged.mla"])
    assert quick.exit_code == 0, quick.output
    deep = runner.invoke(app, ["validate", "--json", f"{server.url}/damaged.mla"])
    assert deep.exit_code == 1
    assert json.loads(deep.output)[0]["code"] in ("CORRUPT_FRAME", "DIGEST_MISMATCH")


def test_deep_validation_fetches_the_data_once(url: str, server: RangeServer, local: Path) -> None:
    """Chunk checks, decompression and the digest share one pass over the data section."""
    from mlarray.remote.open import validate_remote
    from mlarray.storage.frame import data_section

    start, end = data_section(local)
    server.reset()
    report = validate_remote(url)
    assert report.valid, report.problems
    assert end - start <= server.bytes_sent <= local.stat().st_size + 2 * 64 * 1024  # + the two windows of the open
    data = bytearray(local.read_bytes())
    data[end - 100] ^= (
        0xFF  # in the last chunk's stored data: it still decodes (to other values); only the digest tells
    )
    server.files["/stale.mla"] = bytes(data)
    stale = validate_remote(f"{server.url}/stale.mla")
    assert [p.code for p in stale.problems] == ["DIGEST_MISMATCH"]


def test_the_installed_command_reads_a_url(url: str, local: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlarray", "info", "--json", url], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["shape"] == list(SHAPE)
    missing = subprocess.run(
        [sys.executable, "-m", "mlarray", "header", url.replace("ct.mla", "gone.mla")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1 and "FILE_NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr


def test_import_mlarray_does_not_import_fsspec(local: Path) -> None:
    code = (
        "import io, sys, mlarray, mlarray.cli\n"
        f"mlarray.MLArray.open(io.BytesIO(open({str(local)!r}, 'rb').read()))[0]\n"
        "bad = sorted(m for m in ('fsspec', 'aiohttp', 's3fs', 'aiobotocore', 'requests') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_large_header_costs_a_bounded_number_of_requests(tmp_path: Path, server: RangeServer) -> None:
    rng = np.random.default_rng(8)
    notes = {f"note{i}": rng.bytes(600).hex() for i in range(300)}  # ~360 kB of incompressible header text
    path = tmp_path / "big-header.mla"
    MLArray(_volume(), chunk_size=CHUNKS, block_size=BLOCKS, meta={"notes": notes}).save(path)
    server.reset()
    server.files["/big-header.mla"] = path.read_bytes()
    image = MLArray.open(f"{server.url}/big-header.mla")
    # the two windows, then the trailer (the header) and the chunk index, which lie outside them
    assert server.requests == 4, [s.range for s in server.log]
    assert image.meta.source == {"notes": notes}
    np.testing.assert_array_equal(image[40:48, 60:64], _volume()[40:48, 60:64])


_INHERITED: list[Any] = []


def _read_in_child(key: tuple[slice, ...]) -> np.ndarray:
    return np.asarray(_INHERITED[0][key])


def test_a_handle_inherited_by_a_forked_worker_still_reads(url: str) -> None:
    """Data-loader workers forked after the parent opened (and read) a remote array: fsspec's I/O thread is not
    inherited, so the source reconnects in the child instead of waiting on the parent's event loop forever."""
    import multiprocessing
    import warnings

    image = MLArray.open(url)
    image[0:2]  # the parent's I/O thread is running now
    _INHERITED[:] = [image]
    key = (slice(30, 40), slice(0, 64), slice(20, 50))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a process with threads (3.12+)
            with multiprocessing.get_context("fork").Pool(1) as pool:
                result = pool.apply_async(_read_in_child, (key,)).get(timeout=120)
    finally:
        _INHERITED.clear()
    np.testing.assert_array_equal(result, _volume()[key])


_FORKED_CHAINED = """
import multiprocessing, sys, warnings
import numpy as np
from mlarray import MLArray
warnings.simplefilter("ignore", DeprecationWarning)
image = MLArray.open(sys.argv[1])
first = image[0:2]
def child(_):
    return np.asarray(image[30:40, 0:64, 20:50])
with multiprocessing.get_context("fork").Pool(1) as pool:
    got = pool.map(child, [0], chunksize=1)[0]
np.save(sys.argv[2], got)
"""


def test_a_chained_url_handle_inherited_by_a_forked_worker_still_reads(url: str, tmp_path: Path) -> None:
    """A chained URL is read through fsspec's own filesystem: the child gets a filesystem of its own (fsspec's
    async filesystems raise "not fork-safe" otherwise, which surfaced as CORRUPT_FRAME). Run in a fresh
    interpreter: the fork happens in a process that has no other remote handles."""
    import subprocess
    import sys

    out = tmp_path / "got.npy"
    subprocess.run([sys.executable, "-c", _FORKED_CHAINED, "simplecache::" + url, str(out)], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), _volume()[30:40, 0:64, 20:50])


@pytest.mark.parametrize(
    ("target", "remote"),
    [
        ("simplecache::s3://bucket/key.mla", True),
        ("zip::file:///data/x.zip", True),
        ("simplecache::/tmp/x.mla", True),
        ("http://[::1]:8000/x.mla", True),
        ("https://host/x.mla?token=a::b", True),
        ("scan::v2.mla", False),
        ("/data/scan::v2.mla", False),
        (Path("simplecache::s3://bucket/key.mla"), False),  # a Path is always local
    ],
)
def test_only_strings_that_are_urls_are_remote(target: Any, remote: bool) -> None:
    from mlarray.remote import is_remote

    assert is_remote(target) is remote


def test_a_local_file_with_double_colons_in_its_name_is_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    monkeypatch.chdir(tmp_path)
    MLArray(data).save("scan::v2.mla")
    np.testing.assert_array_equal(MLArray.load("scan::v2.mla").to_numpy(), data)
    with MLArray.open(str(tmp_path / "scan::v2.mla")) as image:
        np.testing.assert_array_equal(image[...], data)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/x.mla", "http://[bad/x.mla", "nosuchproto://a/x.mla", "ftp://127.0.0.1:1/x.mla"]
)
def test_urls_that_cannot_be_opened_give_a_typed_error(url: str) -> None:
    from mlarray.errors import RemoteError

    with pytest.raises(RemoteError):
        MLArray.open(url)


def test_file_objects_whose_seek_returns_none_open(tmp_path: Path) -> None:
    import mmap

    data = np.arange(10, dtype=np.int16)
    MLArray(data).save(tmp_path / "a.mla")
    with open(tmp_path / "a.mla", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        mapped.seek(0)  # mmap.seek returns None before Python 3.13
        np.testing.assert_array_equal(MLArray.open(mapped)[2:5], data[2:5])


def test_a_file_object_that_fails_to_read_is_a_read_error_not_a_corrupt_file(tmp_path: Path) -> None:
    from mlarray.errors import RemoteError

    MLArray(np.arange(4096, dtype=np.int16).reshape(64, 64)).save(tmp_path / "a.mla")

    class Failing(io.BytesIO):
        broken = False

        def read(self, size: int | None = -1) -> bytes:
            if self.broken:
                raise OSError(5, "Input/output error")
            return super().read(size)

    source = Failing((tmp_path / "a.mla").read_bytes())
    image = MLArray.open(source)
    source.broken = True
    with pytest.raises(RemoteError):
        image[2:4]
    with pytest.raises(RemoteError):
        image.to_numpy()


@pytest.mark.parametrize("target", [bytearray(b"not a path"), memoryview(b"not a path"), 5])
def test_objects_that_are_no_paths_give_a_typed_error(target: Any) -> None:
    from mlarray.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="expected a path"):
        MLArray.open(target)


def test_bytes_paths_open(tmp_path: Path) -> None:
    MLArray(np.arange(6, dtype=np.uint8)).save(tmp_path / "a.mla")
    with MLArray.open(os.fsencode(tmp_path / "a.mla")) as image:
        np.testing.assert_array_equal(image[...], np.arange(6, dtype=np.uint8))


@pytest.mark.parametrize("url", ["memory://out/a.bin", "memory://out/"])
def test_saving_to_a_url_without_the_extension_names_the_url(url: str) -> None:
    from mlarray.errors import WrongExtensionError

    with pytest.raises(WrongExtensionError) as info:
        MLArray(np.zeros(3)).save(url)
    assert info.value.path == url


def test_dparams_threads_decode_remote_reads(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlarray.storage import fastread

    if not fastread.available():  # the NumPy chunk decoder has no threads to give
        assert MLArray.open(url, dparams={"nthreads": 2})._nd.nthreads == 2
        return
    asked: list[int] = []
    real = fastread.read_region

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("nthreads", 1))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastread, "read_region", recording)
    key = (slice(3, 40), slice(5, 60), slice(0, 64))
    with MLArray.open(url, dparams={"nthreads": 2}) as image:
        np.testing.assert_array_equal(image[key], _volume()[key])
    assert asked == [2]
