"""Remote patch reads on the loopback interface: requests, bytes and latency per patch.

Writes a 256³ ``int16`` CT-like volume (``patch_size=128``), serves it from the tests'
range-honouring HTTP server (``tests/remote_servers.py``) and from moto's S3-compatible
server, both on 127.0.0.1, and reads ``128³`` patches at fixed positions, each through a
freshly opened handle (empty chunk cache). Prints one row per patch: ranged requests,
bytes fetched, bytes fetched / patch size, and the latency over HTTP and S3.
The numbers in ``docs/guide/remote.md`` come from this script::

    python -m benchmarks.remote
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlarray import MLArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from remote_servers import RangeServer  # noqa: E402 - the tests' server

SIDE, PATCH = 256, 128
STARTS = [(0, 0, 0), (128, 128, 128), (128, 0, 64), (17, 128, 128), (64, 64, 64), (100, 30, 7)]


def volume() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:SIDE, 0:SIDE, 0:SIDE].astype(np.float32)
    body = 1000 * np.exp(-((z - 128) ** 2 + (y - 128) ** 2 + (x - 128) ** 2) / 8000)
    return (body + rng.normal(0, 20, body.shape)).astype(np.int16)


def _patches(open_image: Any, counter: Any, data: np.ndarray[Any, Any]) -> list[tuple[int, int, float]]:
    rows = []
    for start in STARTS:
        image = open_image()
        before = counter(image)
        key = tuple(slice(a, a + PATCH) for a in start)
        began = time.perf_counter()
        patch = image[key]
        elapsed = time.perf_counter() - began
        assert np.array_equal(patch, data[key])
        after = counter(image)
        rows.append((after[0] - before[0], after[1] - before[1], elapsed))
    return rows


def _counter(image: Any) -> tuple[int, int]:
    source = image._nd.source
    return source.requests, source.bytes_read


def main() -> None:
    data = volume()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ct.mla"
        MLArray(data, spacing=(1, 1, 1), patch_size=PATCH).save(path)
        stored = path.read_bytes()
        layout = MLArray.open(path).meta.layout
        with RangeServer(files={"/ct.mla": stored}) as server:
            url = f"{server.url}/ct.mla"
            http = _patches(lambda: MLArray.open(url), _counter, data)
        s3 = _s3(stored, data)
    assert layout is not None
    print(f"file: {len(stored)} bytes, chunks {layout.chunk_size}, blocks {layout.block_size}, {layout.codec}")
    print("patch start      requests  bytes      fetched/patch  HTTP ms  S3 ms")
    nbytes = PATCH**3 * 2
    for start, (requests, sent, t_http), (_, _, t_s3) in zip(STARTS, http, s3, strict=True):
        print(f"{start!s:16} {requests:8}  {sent:9}  {sent / nbytes:13.2f}  {t_http * 1e3:7.0f}  {t_s3 * 1e3:5.0f}")
    print(
        f"median latency: HTTP {statistics.median(r[2] for r in http) * 1e3:.0f} ms, "
        f"S3 {statistics.median(r[2] for r in s3) * 1e3:.0f} ms"
    )


def _s3(stored: bytes, data: np.ndarray[Any, Any]) -> list[tuple[int, int, float]]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
        )
        client.create_bucket(Bucket="scans")
        client.put_object(Bucket="scans", Key="ct.mla", Body=stored)
        options = {"key": "x", "secret": "x", "endpoint_url": endpoint, "client_kwargs": {"region_name": "us-east-1"}}
        return _patches(lambda: MLArray.open("s3://scans/ct.mla", storage_options=options), _counter, data)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
