# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian's Chromium renders the HTML report in tests/test_report.py (installed as root only).
CHROMIUM := /usr/bin/chromium

.PHONY: demo test test-slow bench lint format clean

# uv installs the same packages as pip in ~25 s instead of ~90 s (make test's budget is 10
# minutes); pip does it if uv cannot be had. Compiled at install, as pip does: without the
# .pyc files every first import compiles, and the tracker worker's start misses the tests'
# exit deadlines.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[all,test]" \
	  || $(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $(STAMP)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium (for the HTML report's browser test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium) >/dev/null; \
	else \
	  echo "chromium is not installed (it needs root and apt-get): tests/test_report.py needs it"; \
	fi

demo: $(STAMP)
	$(BIN)/python -m tracker demo

# make test's budget is 10 minutes. These test files assert no deadline, timing or share of the
# CPU, so they run two at a time (pytest-xdist; ~35 s saved on 2 cores). Every other file has
# deadlines or CPU shares under test and runs after them, one test at a time: a busy-meter test
# starved by a second test process was why an earlier try ran everything two at a time and
# was reverted (aa2c959).
PARALLEL_TESTS := tests/test_report.py tests/test_metrics.py tests/test_beyond.py \
	tests/test_langgraph.py tests/test_secrets.py tests/test_parity.py \
	tests/test_tail_sampling.py tests/test_archive.py tests/test_comet_metrics.py \
	tests/test_streaming_figures.py tests/test_summary.py tests/test_tracebacks.py

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check tracker workers tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --durations=4 $(PARALLEL_TESTS)
	$(BIN)/python -m pytest -q --durations=12 $(addprefix --ignore=,$(PARALLEL_TESTS))

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check tracker workers tests benchmarks
	$(BIN)/ruff format --check tracker workers tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format tracker workers tests benchmarks
	$(BIN)/ruff check --fix tracker workers tests benchmarks

clean:
	rm -rf $(VENV) tracker-offline .pytest_cache .ruff_cache
