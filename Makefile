# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup lint test test-fast demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first: a bare `torch` requirement with no torch present pulls a multi-GB CUDA build.
# Keep a torch the user already has (in the venv); otherwise take the CPU 2.13.0 build.
$(STAMP): $(PY) pyproject.toml
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
	  $(PIP) install -q "torch==2.13.0"; \
	fi
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# Lint, format and types first: CI fails on any of them (config in pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Two xdist workers, one a core: each test file stays on one worker and every file that starts
# Ray shares one (tests/conftest.py), so a machine never runs two Ray clusters at once.
XDIST := -n 2 --dist loadgroup

test: lint
	RAY_USAGE_STATS_ENABLED=0 $(PY) -m pytest -q $(XDIST)

# Everything but the slow end-to-end tests (CI runs those too, through `make test`).
test-fast: lint
	RAY_USAGE_STATS_ENABLED=0 $(PY) -m pytest -q $(XDIST) -m "not slow"

demo: $(STAMP)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/cfglab demo

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
