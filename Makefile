# Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAGE ?= dev

.PHONY: help run aws api worker test lint unit bench loadtest chaos deploy remove package clean

help:
	@echo "make run       the whole system offline: embedded AWS, API and consumers"
	@echo "make test      lint and the full test suite"
	@echo "make aws | api | worker   one piece of the offline stack at a time"
	@echo "make deploy | remove | package STAGE=dev   the AWS paths"
	@echo "make loadtest | bench | chaos   load, benchmark and chaos tools"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .

test: $(VENV)/.installed lint
	$(PY) -m pytest -q

unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
