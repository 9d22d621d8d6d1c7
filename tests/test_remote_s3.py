"""Reading and writing .mla files on S3, against moto's S3-compatible server on 127.0.0.1 (not a mock of fsspec).

The server runs in a thread of the test process (``moto.server.ThreadedMotoServer``) and
speaks the S3 REST protocol over HTTP; s3fs and aiobotocore talk to it as to AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from mlarray import MLArray
from mlarray.errors import (
    MLArrayError,
    MLArrayFileNotFoundError,
    NotAFrameError,
    ReadOnlyError,
    RemoteChangedError,
)

BUCKET = "scans"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def options(endpoint: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
        "skip_instance_cache": True,
    }


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(size=(40, 96, 80)) * 100).astype(np.float32)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("s3") / "mr.mla"
    MLArray(volume, chunk_size=(10, 48, 40), block_size=(5, 16, 20), spacing=(3, 1, 1), meta={"site": "A"}).save(path)
    return path


@pytest.fixture(scope="module")
def uploaded(s3: Any, local: Path) -> str:
    s3.put_object(Bucket=BUCKET, Key="data/mr.mla", Body=local.read_bytes())
    return f"s3://{BUCKET}/data/mr.mla"


def test_open_and_patch_reads_equal_local_reads(uploaded: str, options: dict[str, Any], local: Path) -> None:
    image = MLArray.open(uploaded, storage_options=options)
    with MLArray.open(local) as reference:
        assert image.meta.model_dump(mode="json") == reference.meta.model_dump(mode="json")
        for key in [(slice(3, 17), slice(40, 60), slice(0, 80)), (39,), (slice(None), 5, slice(None, None, 7))]:
            np.testing.assert_array_equal(image[key], reference[key])
    image = MLArray.open(uploaded, storage_options=options)  # an empty chunk cache
    source: Any = image._nd.source
    assert source.requests == 2  # the open: two windows
    before = (source.requests, source.bytes_read)
    image[12:18, 50:90, 45:75]  # inside one chunk (1, 1, 1): one ranged GetObject
    assert source.requests - before[0] == 1
    assert source.bytes_read - before[1] == len(_chunk(local, 1 * 4 + 1 * 2 + 1))


def _chunk(path: Path, number: int) -> bytes:
    import blosc2

    nd = blosc2.open(str(path), mmap_mode="r")  # kept referenced while its schunk is used
    return bytes(nd.schunk.get_chunk(number))


def test_load_and_the_command_line(uploaded: str, options: dict[str, Any], volume: np.ndarray) -> None:
    np.testing.assert_array_equal(MLArray.load(uploaded, storage_options=options).to_numpy(), volume)
    from mlarray.remote.open import validate_remote

    report = validate_remote(uploaded, deep=True, storage_options=options)
    assert report.valid, report.problems


def test_saving_to_s3_uploads_one_complete_object(
    options: dict[str, Any], s3: Any, volume: np.ndarray, tmp_path: Path
) -> None:
    image = MLArray(volume[:10], spacing=(1, 2, 3))
    url = f"s3://{BUCKET}/written/new.mla"
    image.save(url, storage_options=options)
    body = s3.get_object(Bucket=BUCKET, Key="written/new.mla")["Body"].read()
    (tmp_path / "new.mla").write_bytes(body)
    again = MLArray.load(tmp_path / "new.mla")
    np.testing.assert_array_equal(again.to_numpy(), volume[:10])
    assert again.meta.spatial.spacing == [1.0, 2.0, 3.0]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="written/")["Contents"]
    assert [o["Key"] for o in listed] == ["written/new.mla"]  # no temporary object left behind


def test_an_object_replaced_after_open_is_detected(
    options: dict[str, Any], s3: Any, local: Path, volume: np.ndarray
) -> None:
    s3.put_object(Bucket=BUCKET, Key="moving.mla", Body=local.read_bytes())
    image = MLArray.open(f"s3://{BUCKET}/moving.mla", storage_options=options)
    changed = MLArray(volume + 1, chunk_size=(10, 48, 40), block_size=(5, 16, 20), spacing=(3, 1, 1))
    path = local.with_name("changed.mla")
    changed.save(path)
    s3.put_object(Bucket=BUCKET, Key="moving.mla", Body=path.read_bytes())
    with pytest.raises(RemoteChangedError):
        image[0:5]


def test_missing_objects_and_write_modes(options: dict[str, Any], uploaded: str) -> None:
    with pytest.raises(MLArrayFileNotFoundError):
        MLArray.open(f"s3://{BUCKET}/absent.mla", storage_options=options)
    with pytest.raises(ReadOnlyError):
        MLArray.open(uploaded, mmap_mode="r+", storage_options=options)


def test_empty_and_short_objects_get_the_codes_of_local_files(options: dict[str, Any], s3: Any, local: Path) -> None:
    """A 0-byte object is not a frame (moto serves it whole, with no Content-Range); a cut one is truncated."""
    s3.put_object(Bucket=BUCKET, Key="empty.mla", Body=b"")
    with pytest.raises(NotAFrameError):
        MLArray.open(f"s3://{BUCKET}/empty.mla", storage_options=options)
    data = local.read_bytes()
    s3.put_object(Bucket=BUCKET, Key="cut.mla", Body=data[: len(data) // 2])
    with pytest.raises(MLArrayError) as info:
        MLArray.open(f"s3://{BUCKET}/cut.mla", storage_options=options)[...]
    local_cut = local.with_name("cut.mla")
    local_cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MLArrayError) as here:
        MLArray.open(local_cut)[...]
    assert info.value.code == here.value.code


def test_the_command_line_takes_storage_options(uploaded: str, endpoint: str, local: Path) -> None:
    """``--storage-option`` reaches s3fs: header, info and validate of an object on the S3 server."""
    import json

    from typer.testing import CliRunner

    from mlarray.cli import app

    given = [
        "--storage-option", "key=testing",
        "--storage-option", "secret=testing",
        "--storage-option", f"endpoint_url={endpoint}",
        "--storage-option", "client_kwargs.region_name=us-east-1",
        "--storage-option", "skip_instance_cache=true",
    ]  # fmt: skip
    runner = CliRunner()
    header = runner.invoke(app, ["header", uploaded, "--field", "array.shape", *given])
    assert header.exit_code == 0, header.output
    assert json.loads(header.stdout) == list(MLArray.open(local).shape)
    info = runner.invoke(app, ["info", uploaded, "--json", *given])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["shape"] == list(MLArray.open(local).shape)
    valid = runner.invoke(app, ["validate", uploaded, "--json", *given])
    assert valid.exit_code == 0, valid.output
    assert json.loads(valid.stdout)[0]["valid"] is True
    # without the endpoint s3fs would go to AWS: with a wrong one the read fails as a typed error
    wrong = [*given[:4], "--storage-option", "endpoint_url=http://127.0.0.1:9", *given[6:]]
    failed = runner.invoke(app, ["info", uploaded, *wrong])
    assert failed.exit_code == 1 and "error:" in failed.output


class _RequesterPaysGate:
    """A real HTTP proxy in front of the S3 server that refuses object reads without ``x-amz-request-payer``,
    as S3 does for a requester-pays bucket; everything else is forwarded as it is."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if (
                    self.command == "GET"
                    and "?" not in self.path
                    and self.headers.get("x-amz-request-payer") != "requester"
                ):
                    message = b"<Error><Code>AccessDenied</Code><Message>requester pays</Message></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                upstream_connection = http.client.HTTPConnection(target.hostname, target.port)
                upstream_connection.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                answer = upstream_connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header(
                    "Content-Length",
                    answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)),
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_requester_pays_and_other_s3fs_request_options_are_sent(
    uploaded: str, options: dict[str, Any], endpoint: str, local: Path
) -> None:
    gate = _RequesterPaysGate(endpoint)
    try:
        gated = {**options, "endpoint_url": gate.url}
        with pytest.raises(MLArrayError):
            MLArray.open(uploaded, storage_options=gated)  # without the option: refused, as by S3
        image = MLArray.open(uploaded, storage_options={**gated, "requester_pays": True})
        with MLArray.open(local) as reference:
            np.testing.assert_array_equal(image[3:17, 40:60], reference[3:17, 40:60])
        image.close()
    finally:
        gate.close()
