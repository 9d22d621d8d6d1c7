"""Fuzz worker: run every read operation on one mutated file and classify each outcome.

Started by ``tools/fuzz.py`` as a separate process so that a crash (segfault, abort)
or a hang inside blosc2's C code kills or stalls only this process, and the parent
can attribute it to the case and the operation that was running. The process's data
(heap and private anonymous memory: ``RLIMIT_DATA``) is capped so a hostile declared
size turns into a ``MemoryError`` instead of exhausting the machine. Not the address
space (``RLIMIT_AS``): under that cap mlarray reads chunks instead of mapping the file,
so the mapped read path (the block loop's per-block checks on the map, loads with
``pread``) would never meet a mutated file.

``FUZZ_INJECT`` (a JSON object ``{case id: "crash" | "hang" | "memory" | "error"}``)
makes the worker misbehave on those cases; the tests use it to check the parent.

Protocol (JSON lines): the parent writes ``{"id", "path", "npy"}``; the worker answers
``{"ev": "start", "op"}`` before and ``{"ev": "end", "op", "outcome", "finding"}`` after
each operation, then ``{"ev": "done", "rss_mb"}``.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

OPS = (
    "read_header",
    "open",
    "getitem_small",
    "getitem_all",
    "read_out",
    "getitem_staged",
    "close",
    "load",
    "validate",
    "validate_deep",
)
"""Operations in the order they run on every file."""


def limit_memory(megabytes: int) -> None:
    """Cap this process's data (``RLIMIT_DATA``) so huge allocations fail with ``MemoryError``."""
    if megabytes > 0:
        size = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (size, size))


def _where(tb: Any) -> dict[str, str]:
    frames = traceback.extract_tb(tb)
    if not frames:
        return {"top": "?", "ours": "?"}
    top = frames[-1]
    ours = [f for f in frames if f"{os.sep}mlarray{os.sep}" in f.filename]
    mine = ours[-1] if ours else top
    return {
        "top": f"{_short(top.filename)}:{top.lineno} in {top.name}",
        "ours": f"{_short(mine.filename)}:{mine.lineno} in {mine.name}",
    }


def _short(filename: str) -> str:
    for marker in (f"{os.sep}site-packages{os.sep}", f"{os.sep}mlarray{os.sep}"):
        if marker in filename:
            head = "mlarray/" if marker.strip(os.sep) == "mlarray" else ""
            return head + filename.split(marker, 1)[1]
    return filename


def _memory_error_in(exc: BaseException) -> BaseException | None:
    """A real allocation failure behind ``exc`` (mlarray's own typed limit errors do not count)."""
    from mlarray.errors import MLArrayError

    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError) and not isinstance(current, MLArrayError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def classify(exc: BaseException) -> tuple[str, dict[str, Any] | None]:
    """An exception's outcome: its error code, or a finding if it is not a clean typed error."""
    from mlarray.errors import MLArrayError

    if isinstance(exc, MLArrayError):
        memory = _memory_error_in(exc)
        if memory is None:
            return exc.code, None
        finding = {
            "kind": "memory",
            "type": f"MemoryError wrapped in {type(exc).__name__}",
            "message": str(exc)[:500],
            **_where(memory.__traceback__),
        }
        return "FINDING", finding
    kind = "memory" if isinstance(exc, MemoryError) else "exception"
    finding = {
        "kind": kind,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": str(exc)[:500],
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
        **_where(exc.__traceback__),
    }
    return "FINDING", finding


class Runner:
    """Runs the operations of one case, reporting each one on ``out``."""

    def __init__(self, out: Any, injections: dict[str, str] | None = None) -> None:
        self.out = out
        self.injections = injections or {}
        self._expected: dict[str, Any] = {}

    def emit(self, **event: Any) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def expected(self, npy: str | None) -> Any:
        if not npy:
            return None
        if npy not in self._expected:
            import numpy as np

            self._expected[npy] = np.load(npy)
        return self._expected[npy]

    def op(self, name: str, call: Callable[[], Any]) -> Any:
        self.emit(ev="start", op=name)
        try:
            value, outcome = call()
        except Exception as exc:
            outcome, finding = classify(exc)
            self.emit(ev="end", op=name, outcome=outcome, finding=finding)
            return None
        self.emit(ev="end", op=name, outcome=outcome, finding=None)
        return value

    def compare(self, got: Any, expected: Any, key: Any = ...) -> str:
        import numpy as np

        if expected is None:
            return "ok"
        want = expected[key]
        got = np.asarray(got)
        if got.shape != want.shape or got.dtype != want.dtype:
            return "ok_other_array"
        return "ok_equal" if got.tobytes() == want.tobytes() else "ok_differs"

    def run(self, case: dict[str, Any]) -> None:
        from mlarray import MLArray
        from mlarray.storage import read_header
        from mlarray.validate import validate_file

        path, expected = case["path"], self.expected(case.get("npy"))
        injected = self.injections.get(case["id"])
        self.op("read_header", lambda: (inject(injected), read_header(path), "ok")[1:])
        arr = self.op("open", lambda: (MLArray.open(path, mmap_mode="r"), "ok"))
        if arr is None:
            self.emit(ev="end", op="getitem_small", outcome="skipped", finding=None)
            self.emit(ev="end", op="getitem_all", outcome="skipped", finding=None)
            self.emit(ev="end", op="read_out", outcome="skipped", finding=None)
            self.emit(ev="end", op="getitem_staged", outcome="skipped", finding=None)
            self.emit(ev="end", op="close", outcome="skipped", finding=None)
        else:
            small = tuple(slice(0, 2) for _ in range(max(arr.ndim, 1)))
            self.op("getitem_small", lambda: (None, self.compare(arr[small], expected, small)))
            self.op("getitem_all", lambda: (None, self.compare(arr[...], expected)))
            self.op("read_out", lambda: (None, self.compare(read_into(arr, small), expected, small)))
            self.op("getitem_staged", lambda: (None, self.compare(read_staged(arr), expected)))
            self.op("close", lambda: (arr.close(), "ok"))
        self.op("load", lambda: (None, self.compare(MLArray.load(path).to_numpy(), expected)))
        for name, deep in (("validate", False), ("validate_deep", True)):
            self.op(name, lambda deep=deep: (None, _report_outcome(validate_file(path, deep=deep))))


def read_into(arr: Any, key: Any) -> Any:
    """``arr.read(key, out=...)`` into a buffer whose bytes are all 0x5A: every element must be written."""
    import numpy as np

    from mlarray.reading import any_result_shape

    if arr.shape is None or arr.dtype is None:  # metadata only: the image's own error
        return arr.read(key, out=np.empty(0))
    shape = any_result_shape(tuple(arr.shape), key)
    count = int(np.prod(shape, dtype=np.int64))
    out = np.frombuffer(b"\x5a" * (count * arr.dtype.itemsize), dtype=arr.dtype).reshape(shape).copy()
    return arr.read(key, out=out)


def read_staged(arr: Any) -> Any:
    """``arr[...]`` through the patch path's stage (a row of chunks at a time, streamed to the result),
    which on its own takes only results of ``STAGE_MIN`` bytes or more."""
    from mlarray.storage import patchread

    before = patchread.STAGE_MIN
    patchread.STAGE_MIN = 0
    try:
        return arr[...]
    finally:
        patchread.STAGE_MIN = before


def inject(kind: str | None) -> None:
    """Misbehave on purpose (``FUZZ_INJECT``), so tests can prove the parent notices."""
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        time.sleep(3600)
    elif kind == "memory":
        bytearray(64 << 30)
    elif kind == "error":
        raise TypeError("injected foreign exception")


def _report_outcome(report: Any) -> str:
    return "valid" if report.valid else f"invalid:{report.code}"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    limit_memory(int(os.environ.get("FUZZ_WORKER_MEM_MB", "2048")))
    faulthandler.enable(file=sys.stderr, all_threads=True)
    import mlarray.validate  # noqa: F401  (import before the first case, outside its timing)

    runner = Runner(sys.stdout, json.loads(os.environ.get("FUZZ_INJECT", "{}")))
    runner.emit(ev="ready", pid=os.getpid())
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        print(f"--- case {case['id']}", file=sys.stderr, flush=True)
        runner.run(case)
        runner.emit(ev="done", rss_mb=_rss_mb())


if __name__ == "__main__":
    main()
