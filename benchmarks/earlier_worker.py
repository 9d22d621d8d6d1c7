"""Measure the earlier implementation (``mlarray==0.0.54``) inside its own virtualenv.

Run by :mod:`benchmarks.earlier` as ``<peer venv>/bin/python benchmarks/earlier_worker.py``
with a JSON request on stdin; prints the measurements of
:func:`benchmarks.run.bench_format` as JSON on stdout. With ``"serve": true`` in the
request (:mod:`benchmarks.paired`) it answers one JSON line per request instead, until
told to close. The repository is put at the
*end* of ``sys.path`` so that ``import mlarray`` finds the release installed in the
virtualenv, never this checkout (checked before anything is measured).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.pop(0)  # this script's folder: its modules are imported as benchmarks.* below


def main() -> int:
    request = json.loads(sys.stdin.readline())  # one line: in serve mode more requests follow
    import blosc2
    import numpy as np

    import mlarray

    repo = os.path.realpath(request["repo"])
    ours = os.path.realpath(mlarray.__file__).startswith(repo + os.sep)
    if ours or mlarray.__version__ != request["expected_version"]:
        raise SystemExit(f"imported mlarray {mlarray.__version__} from {mlarray.__file__}, not the earlier release")
    sys.path.append(repo)
    from benchmarks import peers, run
    from benchmarks.datasets import Dataset

    class Earlier(peers.Format):
        """``mlarray==0.0.54`` with its defaults, used as its README shows."""

        name = "mlarray-0.0.54"
        suffix = ".v0054.mla"
        threaded_load = True

        def write(self, ds: Dataset, path: str) -> None:
            mlarray.MLArray(ds.array, spacing=ds.spacing, axis_labels=ds.axis_labels).save(path)

        def open(self, path: str) -> Any:
            return mlarray.MLArray.open(path)  # one decompression thread by default

        def read(self, handle: Any, key: peers.Key) -> np.ndarray[Any, Any]:
            return np.asarray(handle[key])

        def close(self, handle: Any) -> None:
            handle.close()

        def load(self, path: str, nthreads: int) -> np.ndarray[Any, Any]:
            return np.asarray(mlarray.MLArray.load(path, dparams={"nthreads": nthreads}).to_numpy())

    array = np.load(request["source"])
    ds = Dataset(request["name"], request["description"], array, request["axis_labels"], request["spacing"])
    if request.get("serve"):  # benchmarks.paired: answer small requests until told to stop
        from benchmarks import paired

        print(json.dumps({"answer": {"mlarray": mlarray.__version__, "blosc2": blosc2.__version__}}), flush=True)
        paired.serve(paired.LocalSide(Earlier(), ds))
        return 0
    cfg = run.Config(**request["config"])
    out = run.bench_format(Earlier(), ds, request["workdir"], cfg)
    out["versions"] = {"mlarray": mlarray.__version__, "blosc2": blosc2.__version__, "numpy": np.__version__}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
