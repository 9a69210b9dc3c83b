# autolabel — every target is a thin call of the CLI. Variables: see `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AUTOLABEL := $(VENV)/bin/autolabel
STAMP := $(VENV)/.installed

.PHONY: help venv test test-fast lint demo

help:
	@echo "make demo   - run the whole pipeline on a synthetic city (sets up .venv)"
	@echo "make test   - run the test suite (sets up .venv)"
	@echo "make lint   - ruff"

# The virtualenv: torch first (the pinned CPU build on this disk), then the package with test extras.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --timeout=900 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check autolabel tests bench
