# The README's commands. Each target sets up whatever it needs first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins
export PATH := $(CURDIR)/$(BIN):$(PATH)
export GIT_PYTHON_REFRESH := quiet

.PHONY: demo test lint format bench stop setup install browser system-deps lock status clean

# make demo DATASET=path/to/spec.yaml: the same story on your own days, landed first with
# `python -m include.data.ingest --spec SPEC EXPORT...` (empty: the generated churn data)
DATASET ?=

demo: install ## train, gate and deploy the model through the local Airflow (DATASET=spec: on your landed data)
	$(BIN)/python -m scripts.demo$(if $(strip $(DATASET)), --dataset "$(strip $(DATASET))")

test: install browser system-deps lint ## lint, then the whole test suite
	$(BIN)/python -m pytest

lint: install ## ruff: the lint rules and the formatting of pyproject.toml, checked
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff: format the code and apply the safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## every benchmark, then benchmarks/RESULTS.md (BENCH_QUICK=1: fewer runs, for a quick look)
	$(BIN)/python -m benchmarks

stop: ## stop every process the project started (Airflow, model server)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m scripts.local_stack stop; else echo "nothing to stop"; fi

setup: install ## Airflow DB, airflow_settings.yaml, MLflow and DVC folders (demo does this)
	$(BIN)/python -m scripts.local_stack setup

status:
	$(BIN)/python -m scripts.local_stack status

install: $(STAMP)

# Debian's Chromium and its driver, for the browser tests of tests/e2e (installed once, via apt)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; }

# Debian's PostgreSQL, for the registry concurrency test of tests/reliability (installed once, via apt)
system-deps:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

# torch==2.13.0 in the lock resolves to the CPU wheel; the training image uses a CUDA build
$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

lock: ## regenerate requirements.txt from requirements.in in a fresh venv
	rm -rf /tmp/mlops-lock-venv && $(PYTHON) -m venv /tmp/mlops-lock-venv
	/tmp/mlops-lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# Full lock of requirements.in (make lock). Install with: pip install -r requirements.txt"; \
	  /tmp/mlops-lock-venv/bin/pip freeze --all | grep -vE '^(pip|setuptools|wheel)==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.txt

clean: stop
	rm -rf .local
