# The targets people type. Every target creates/uses the local virtualenv .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORE_STAMP := $(VENV)/.installed-core
# The CPU build of torch the project tests with; an unpinned torch resolves to a multi-GB CUDA build.
TORCH := torch==2.13.0+cpu

.PHONY: demo test fuzz lint schema conformance bench bench-quick bench-publish docs clean

$(CORE_STAMP): pyproject.toml setup.py $(wildcard mlarray/storage/csrc/*)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(PY) -m pip install --quiet -e ".[dev]" "$(TORCH)"
	tools/install-render-deps.sh  # Xvfb and X libraries for the napari render test (apt-get, as root)
	touch $(STAMP)

demo: $(CORE_STAMP)  ## write a synthetic CT volume to .mla, reopen it memory-mapped, read a patch (core dependencies only)
	$(PY) -m mlarray.demo

test: $(STAMP)  ## the whole test suite
	$(PY) -m pytest -q

fuzz: $(STAMP)  ## dedicated fuzz run: 10,000 mutated files (report in fuzz-report.json, files in tools/fuzz-findings/)
	$(PY) tools/fuzz.py --count 10000 --seed 1 --out fuzz-report.json

lint: $(STAMP)
	$(PY) -m ruff check mlarray tests
	$(PY) -m mypy mlarray

schema: $(STAMP)  ## regenerate the committed JSON Schema from the models
	$(PY) -m mlarray.schema --write

conformance: $(STAMP)  ## ajv checks the schema; the independent C reader runs the conformance suite
	conformance/ajv-check.sh
	PYTHON=$(PY) conformance/readers/c/build.sh
	$(PY) conformance/run.py --require must -- conformance/readers/c/build/mla_reader

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## full benchmark against npy/blosc2/zarr/h5py/NIfTI (about 6 minutes on 2 cores); see docs/performance.md
	$(PY) -m benchmarks.run

bench-quick: $(BENCH_STAMP)  ## smaller volumes and fewer samples (under 3 minutes)
	$(PY) -m benchmarks.run --quick

bench-publish: $(BENCH_STAMP)  ## full benchmark, then docs/performance.md + docs/benchmark-results.json regenerated from it
	$(PY) -m benchmarks.run --publish

bench-paired: $(BENCH_STAMP)  ## issue 15's targets, mlarray and 0.0.54 interleaved round by round (about 2 minutes)
	$(PY) -m benchmarks.paired

docs: $(STAMP)  ## build the documentation site into site/; any warning fails the build
	$(PY) docs/gen_reference.py --check
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis demo-output site
