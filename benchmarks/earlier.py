"""The earlier implementation (PyPI ``mlarray==0.0.54``) as a benchmark peer, run in its own virtualenv.

Its import name is ``mlarray`` too, so it can never share an interpreter with this
package. The benchmark keeps a throw-away virtualenv with only that release (and its
dependencies) in a cache directory, creates it on first use with ``python -m venv`` and
``pip install``, and reuses it afterwards. Each dataset is handed over as a ``.npy``
file; :mod:`benchmarks.earlier_worker` runs in that virtualenv and measures the earlier
release with the very same code as every other format
(:func:`benchmarks.run.bench_format`: same patch positions, same checks against the
source array), then prints the results as JSON.

Nothing of the project's own virtualenv is touched: the peer's packages live only in
the cache directory (``$MLARRAY_BENCH_CACHE``, default ``~/.cache/mlarray-bench``).

pip installs the newest python-blosc2 the release admits, so the peer's speed moves with
python-blosc2's (4.15 changed its slicing: ``docs/performance.md``). To measure the release
with another one, set ``$MLARRAY_BENCH_PEER_BLOSC2`` to its version (``4.14.1``): that
peer gets a virtualenv of its own beside the default one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import Dataset

SPEC = "mlarray==0.0.54"
NAME = "mlarray-0.0.54"
VERSION = SPEC.split("==")[1]
WORKER = Path(__file__).with_name("earlier_worker.py")


def blosc2_pin() -> str | None:
    """The python-blosc2 version asked for the peer (``$MLARRAY_BENCH_PEER_BLOSC2``), or None for pip's choice."""
    pin = os.environ.get("MLARRAY_BENCH_PEER_BLOSC2", "").strip()
    if pin and not all(part.isdigit() for part in pin.split(".")):
        raise ValueError(f"MLARRAY_BENCH_PEER_BLOSC2={pin!r} is not a release number such as 4.14.1")
    return pin or None


def requirements() -> list[str]:
    """What pip installs into the peer's virtualenv."""
    pin = blosc2_pin()
    return [SPEC] + ([f"blosc2=={pin}"] if pin else [])


def cache_dir() -> Path:
    """Where the peer's virtualenv lives (``$MLARRAY_BENCH_CACHE`` or ``~/.cache/mlarray-bench``)."""
    root = os.environ.get("MLARRAY_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlarray-bench"
    )
    pin = blosc2_pin()
    return Path(root) / (f"venv-{NAME}-blosc2-{pin}" if pin else f"venv-{NAME}")


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def peer_python(log: Any = None) -> Path:
    """The interpreter of the peer's virtualenv, created (and ``mlarray==0.0.54`` installed) on first use.

    A marker file records the installed requirement; an environment without it (an
    interrupted install) is rebuilt.

    Raises
    ------
    RuntimeError
        The virtualenv could not be created or the release not installed (no network?).
    """
    env_dir = cache_dir()
    marker = env_dir / "installed.txt"
    python = _python(env_dir)
    wanted = " ".join(requirements())
    if python.exists() and marker.exists() and marker.read_text().strip() == wanted:
        return python
    if log is not None:
        log(f"creating the virtualenv of the earlier implementation in {env_dir} ({wanted})")
    venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements()],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        raise RuntimeError(f"pip could not install {wanted} into {env_dir}:\n{install.stderr[-2000:]}")
    marker.write_text(wanted + "\n")
    return python


class EarlierMLArray:
    """Adapter for the runner: measures ``mlarray==0.0.54`` in a subprocess with its own virtualenv.

    Unlike :class:`benchmarks.peers.Format` it has no verbs: the runner calls
    :meth:`bench`, which hands the dataset and the run's configuration to the worker.
    """

    name = NAME
    suffix = ".mla"
    compressed = True
    threaded_load = True
    slow_random_access = False

    def __init__(self) -> None:
        self._python: Path | None = None

    def bench(self, ds: Dataset, workdir: str, config: dict[str, Any], log: Any = None) -> dict[str, Any]:
        """Every measurement of :func:`benchmarks.run.bench_format`, taken in the peer's virtualenv."""
        if self._python is None:
            self._python = peer_python(log)
        source = os.path.join(workdir, f"{ds.name}-source.npy")
        np.save(source, ds.array)
        request = {
            "source": source,
            "name": ds.name,
            "description": ds.description,
            "axis_labels": ds.axis_labels,
            "spacing": ds.spacing,
            "workdir": workdir,
            "config": config,
            "repo": str(Path(__file__).resolve().parent.parent),
            "expected_version": VERSION,
        }
        try:
            run = subprocess.run(
                [str(self._python), str(WORKER)],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                cwd=workdir,  # not the repository: `import mlarray` must find the peer's package
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )
        finally:
            os.remove(source)
        if run.returncode != 0:
            raise RuntimeError(f"the {NAME} worker failed:\n{run.stderr[-4000:]}")
        if run.stderr.strip() and log is not None:
            log(run.stderr.strip())
        out: dict[str, Any] = json.loads(run.stdout)
        return out


def main() -> int:
    """``python -m benchmarks.earlier``: create (or show) the peer's virtualenv and print its interpreter."""
    python = peer_python(lambda m: print(m, file=sys.stderr))
    version = subprocess.run(
        [str(python), "-c", "import mlarray, blosc2; print(mlarray.__version__, blosc2.__version__)"],
        capture_output=True,
        text=True,
        cwd=str(python.parent),
        check=True,
    )
    print(f"{python}: mlarray, blosc2 = {version.stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
