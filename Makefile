# Two entry points: `make repro` (set-up + the DVC pipeline on the embedded model) and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup repro test readme lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch first and pinned: the local CPU build; anything looser pulls the CUDA wheels
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e ".[dev]"
	touch $@

repro: setup
	dvc repro
	$(PYTHON) tools/render.py results   # docs/results.md; README.md's headline only by `make readme`

test: setup
	$(PYTHON) -m pytest -q

readme: setup
	$(PYTHON) tools/render.py readme

lint: setup
	$(VENV)/bin/ruff check src stages tests benchmarks tools
