"""Coverage-guided fuzzing of the ``.mla`` readers with atheris (optional; issue 6).

``tools/fuzz.py`` is the required, reproducible run. This entry point lets libFuzzer
(through atheris, ``pip install -e ".[fuzz]"``) evolve files from the same seeds,
guided by coverage of mlarray's own Python code. Every input is written to a
temporary ``.mla`` file and read the ways a user would; an exception that is not an
:class:`mlarray.errors.MLArrayError` is reported by libFuzzer as a crash, with the
input saved as ``crash-<sha1>``. Usage::

    python tools/fuzz_atheris.py CORPUS_DIR -atheris_runs=100000 -rss_limit_mb=2048 -timeout=10

``CORPUS_DIR`` is created and filled with the seed files when it is empty. Inputs
run in this process, so the first finding ends the run (libFuzzer keeps the input);
add ``-fork=1 -ignore_crashes=1`` to keep fuzzing past known findings.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import atheris

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS.parent))

with atheris.instrument_imports(include=["mlarray"]):
    from mlarray import MLArray
    from mlarray.errors import MLArrayError
    from mlarray.storage import read_header
    from mlarray.validate import validate_file

_TMP = tempfile.mkdtemp(prefix="mla-atheris-")
_PATH = os.path.join(_TMP, "input.mla")


def one_input(data: bytes) -> None:
    """Read one candidate file every way; only MLArrayError may escape the reader."""
    with open(_PATH, "wb") as f:
        f.write(data)
    with contextlib.suppress(MLArrayError):
        read_header(_PATH)
    with contextlib.suppress(MLArrayError), MLArray.open(_PATH, mmap_mode="r") as arr:
        if arr.shape:
            arr[tuple(slice(0, 2) for _ in arr.shape)]
            arr[...]
    with contextlib.suppress(MLArrayError):
        MLArray.load(_PATH)
    validate_file(_PATH, deep=True)


def _fill_corpus(corpus: Path) -> None:
    from fuzz_mutators import make_seeds

    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    seeds_dir = Path(tempfile.mkdtemp(prefix="mla-atheris-seeds-"))
    for seed in make_seeds(seeds_dir):
        (corpus / f"seed-{seed.name}").write_bytes(seed.data)


def main() -> None:
    args = list(sys.argv)
    dirs = [a for a in args[1:] if not a.startswith("-")]
    if dirs:
        _fill_corpus(Path(dirs[0]))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
