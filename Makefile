# Two entry points: `make repro` (set-up + the DVC pipeline on the embedded model) and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup repro test readme lint lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	# torch first and pinned: the local CPU build; anything looser pulls the CUDA wheels
	$(PYTHON) -m pip install -q torch==2.13.0
	# every other package at the version constraints.txt records (`make lock` refreshes it)
	$(PYTHON) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# Re-resolve pyproject.toml's dependencies in a scratch environment and record every version in constraints.txt.
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install -q torch==2.13.0 && .venv-lock/bin/pip install -q -e ".[dev]"
	{ echo "# Every package's version, installed by make setup (pip -c); torch is pinned in pyproject.toml."; \
	  echo "# Refresh: make lock (re-resolves pyproject.toml in a scratch environment)."; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt
	rm -rf .venv-lock

repro: setup
	dvc repro
	$(PYTHON) tools/render.py results   # docs/results.md; README.md's headline only by `make readme`

# Two workers with one thread each (2 cores), each test file on one worker, so the real-pipeline tests build their
# tiny repo once; --durations lists the slowest tests (CI allows 20 minutes).
test: setup
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2 --dist loadfile --durations=15

readme: setup
	$(PYTHON) tools/render.py readme

lint: setup
	$(VENV)/bin/ruff check src stages tests benchmarks tools
