# Labelwise: `make run` starts the app with the demo project, `make test` runs the suite,
# `make bench` runs bench/ and rewrites docs/benchmarks.md (BENCH_ARGS=--with-sim adds the
# simulation on a CPU; `make bench-quick` runs smaller sizes).
# All create .venv and install requirements.txt first (only when it changed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# TOKENIZERS_PARALLELISM is left to the tokenizers library (on): the worker tokenises on every
# core (1.06x faster pool scoring on a 2-core CPU), and so do the benchmarks. Tests set it off.

.PHONY: run test test-fast bench bench-quick install clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m app migrate
	$(BIN)/python -m app demo --if-empty
	$(BIN)/python -m app serve

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
