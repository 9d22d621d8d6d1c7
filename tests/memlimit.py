"""Run a Python snippet in a subprocess under an address-space limit and measure its peak memory.

Tests of the out-of-core paths (convert, relayout, migrate, stats, validate) use this to
prove that a file several times larger than the memory limit still goes through. Usage::

    from memlimit import run_limited

    run = run_limited(
        "from mlarray.convert import convert_file\\n"
        "convert_file(src, dst)\\n"
        "result = 'ok'",
        budget=250 << 20,                       # bytes allowed above the baseline
        setup="import mlarray.convert, nibabel",  # imported before the baseline is measured
        variables={"src": str(src), "dst": str(dst)},
    )
    assert run.result == "ok"
    assert run.peak_rss - run.baseline_rss < 250 << 20

How the limit is made meaningful
--------------------------------
``RLIMIT_AS`` caps *virtual* memory, and an interpreter with NumPy and Blosc2 loaded
already reserves a lot of it (shared libraries, thread stacks, glibc malloc arenas of
64 MiB per thread). So the child process:

1. runs with one BLAS/OpenMP thread, ``threads`` Blosc2 threads (``BLOSC_NTHREADS``), at
   most two malloc arenas (``MALLOC_ARENA_MAX``) and a fixed mmap threshold
   (``MALLOC_MMAP_THRESHOLD_``), so the reservation is small and stable: with glibc's
   dynamic threshold a large block freed once came back from an arena's heap, whose
   64 MiB reservations depended on which thread asked (a run measured 143-149 MiB over
   its baseline and, on a busy machine, failed its 192 MiB budget; with the fixed
   threshold it measures 133 MiB every time);
2. imports ``setup`` and runs ``warmup`` (by default a small Blosc2 compress/decompress, so
   the thread pool exists before the measurement);
3. reads its own virtual size (``VmSize``) and resident size (``VmRSS``) from
   ``/proc/self/status``: the *baseline*;
4. sets the soft ``RLIMIT_AS`` to ``baseline VmSize + budget``, runs ``code`` and reports
   ``VmHWM`` (the peak resident size) with the snippet's ``result``. (Not ``ru_maxrss``:
   Linux carries it over from the parent across ``fork``/``exec``, so a child of a big
   pytest process would report the parent's peak.)

An allocation past the limit raises ``MemoryError`` in the child (or kills it if C code
cannot handle the failure); both become :class:`LimitExceeded` here, also when the
snippet's code wrapped the ``MemoryError`` in another exception (NumPy's "Unable to
allocate" message is recognised in the traceback). File-backed memory
maps count in both measures (a memory-mapped 600 MB input needs 600 MB of address
space), which is exactly what an out-of-core path must not need.

The snippet's ``result`` (any JSON value) is passed back; ``variables`` (JSON values) are
defined before ``setup`` runs. Linux only (``/proc``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

CHILD = r"""
import json, os, resource, sys

def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmSize", "VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

_report_path = sys.argv[1]
with open(sys.argv[2]) as _f:
    _job = json.load(_f)
globals().update(_job["variables"])
exec(_job["setup"])
exec(_job["warmup"])
_base = _status()
_limit = None
_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
if _job["budget"] is not None:
    _limit = _base["VmSize"] + _job["budget"]
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _hard))  # the soft limit: raised again below
result = None
_error = None
try:
    exec(_job["code"])
except MemoryError as exc:
    _error = "MemoryError: " + str(exc)
_peak = _status()["VmHWM"]
resource.setrlimit(resource.RLIMIT_AS, (_hard, _hard))
with open(_report_path, "w") as _f:
    json.dump({"result": result, "error": _error, "peak_rss": _peak, "baseline_rss": _base["VmRSS"],
               "baseline_vm": _base["VmSize"], "limit": _limit}, _f)
"""

WARMUP = (
    "import blosc2 as _b, numpy as _np\n"
    "_b.decompress2(_b.compress2(_np.arange(1 << 20, dtype=_np.int32).tobytes(), typesize=4))\n"
)
"""Spawns Blosc2's thread pool before the baseline is measured."""


class LimitExceeded(MemoryError):
    """The snippet needed more memory than the budget (``MemoryError`` or killed by the failure)."""


@dataclass(frozen=True)
class Measured:
    """What :func:`run_limited` reports (sizes in bytes)."""

    result: Any
    """The value the snippet assigned to ``result``."""
    peak_rss: int
    """``VmHWM`` of the child: the most resident memory it ever had (baseline included)."""
    baseline_rss: int
    """Resident size after ``setup`` and ``warmup``, before ``code`` ran."""
    baseline_vm: int
    """Virtual size at the same moment; the limit is this plus the budget."""
    limit: int | None
    """The ``RLIMIT_AS`` that was set (``None`` without a budget)."""

    @property
    def peak_over_baseline(self) -> int:
        """Peak resident memory the snippet added to the baseline."""
        return self.peak_rss - self.baseline_rss


def run_limited(
    code: str,
    *,
    budget: int | None,
    setup: str = "import numpy, blosc2, mlarray",
    warmup: str = WARMUP,
    variables: dict[str, Any] | None = None,
    threads: int = 2,
    timeout: float = 300.0,
) -> Measured:
    """Run ``code`` in a fresh interpreter with ``RLIMIT_AS`` = baseline + ``budget`` bytes.

    Parameters
    ----------
    code : str
        Python statements; whatever they assign to ``result`` (a JSON value) is returned.
    budget : int or None
        Bytes of address space allowed above the baseline; ``None`` measures without a limit.
    setup : str
        Statements run before the baseline is measured (the imports the snippet needs).
    warmup : str
        Statements run after ``setup`` and before the baseline (thread pools, caches).
    variables : dict, optional
        JSON values defined as global names before ``setup`` runs.
    threads : int
        Blosc2 threads (``BLOSC_NTHREADS``); BLAS and OpenMP get one.
    timeout : float
        Seconds before the child is killed (``subprocess.TimeoutExpired``).

    Raises
    ------
    LimitExceeded
        The snippet ran out of the budget.
    RuntimeError
        The snippet failed otherwise (its stderr is in the message).
    """
    env = dict(os.environ)
    env.update(
        BLOSC_NTHREADS=str(threads),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
        MALLOC_MMAP_THRESHOLD_="131072",  # fixed: a big block is always its own map, whichever thread asks
    )
    job = {"code": code, "budget": budget, "setup": setup, "warmup": warmup, "variables": variables or {}}
    with tempfile.TemporaryDirectory(prefix="memlimit-") as tmp:
        report, spec = os.path.join(tmp, "report.json"), os.path.join(tmp, "job.json")
        with open(spec, "w") as f:
            json.dump(job, f)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, report, spec],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if not os.path.exists(report):
            tail = proc.stderr[-3000:]
            signs = ("MemoryError", "Unable to allocate", "std::bad_alloc")  # the last two: wrapped or C++ errors
            if budget is not None and (any(s in tail for s in signs) or proc.returncode < 0):
                raise LimitExceeded(
                    f"the snippet ran out of its {budget} byte budget (exit {proc.returncode}):\n{tail}"
                )
            raise RuntimeError(f"the snippet failed (exit {proc.returncode}):\n{tail}")
        with open(report) as f:
            out = json.load(f)
    if out["error"] is not None:
        raise LimitExceeded(f"the snippet ran out of its {budget} byte budget: {out['error']}")
    return Measured(out["result"], out["peak_rss"], out["baseline_rss"], out["baseline_vm"], out["limit"])
