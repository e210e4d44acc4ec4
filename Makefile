# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job: build/reuse the demo world + model, ingest every class into
#                 the embedded Bolt database, print a summary and example query results.
#   make test   - the test suite (CPU; GPU checks run only where CUDA is present).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test test-fast lint lint-cypher bench clean-demo install browser

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

# Headless Chromium and its driver for the browser tests (tests/web/test_browser.py), from
# Debian; installed only when missing (as root, as CI runs), otherwise those tests skip
# outside CI and fail under CI=true.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium/chromium-driver missing and not root: the browser tests will skip (fail under CI=true)"; fi

# ruff (pyflakes, pycodestyle, import order) and mypy on the package; both must be clean.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check neurflow_core ingest queries tests benchmarks
	MYPY=$(VENV)/bin/mypy tools/typecheck.sh

test: $(VENV)/.installed node_modules/.installed browser lint
	$(PY) -m pytest -q tests

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q tests -m "not slow and not db"

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_core.py --json benchmarks/results/core_cpu.json
	$(PY) benchmarks/bench_evaluate.py
	$(PY) benchmarks/bench_queries.py

clean-demo:
	rm -rf .neurflow/demo
