# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job: build/reuse the demo world + model, ingest every class into
#                 the embedded Bolt database, print a summary and example query results.
#   make test   - the test suite (CPU; GPU checks run only where CUDA is present).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test test-fast lint-cypher bench clean-demo install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/neurflow demo

test: $(VENV)/.installed node_modules/.installed
	$(PY) -m pytest -q tests

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q tests -m "not slow and not db"

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_core.py --json benchmarks/results/core_cpu.json
	$(PY) benchmarks/bench_evaluate.py
	$(PY) benchmarks/bench_queries.py

clean-demo:
	rm -rf .neurflow/demo
