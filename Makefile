# Two entry points for a fresh clone (see README.md):
#   make demo   set up and run the end-to-end demo on the bundled synthetic data
#   make test   set up and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# PyTorch, installed only where the virtual environment has no torch yet. Plain PyPI serves the
# CUDA build on Linux; TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	# not the [vision] extra: PyPI's torchvision is built against the CUDA torch and cannot load beside
	# a CPU build of torch (its tests skip without a loadable torchvision)
	$(PY) -m pip install -e ".[dev,scale,parquet,monitor,lightning]"
	touch $@

demo: setup
	$(VENV)/bin/rankfusion demo --out demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/bench_spectral.py

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis
