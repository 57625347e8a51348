# pairstream — the two commands a newcomer needs: `make run` (or `make demo`) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3; do \
            command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] <= (3,12))' 2>/dev/null && { echo $$p; break; }; done)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
JAR_STAMP := .cache/questdb/.fetched

.PHONY: stop setup run demo test lint bench-throughput bench-latency bench-memory bench-scale bench-soak bench-estimators bench-bars bench-replay bench-scan clean

setup: $(STAMP) $(JAR_STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.10-3.12 is needed (bytewax 0.21.1 ships wheels for those)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

$(JAR_STAMP): $(STAMP)
	$(BIN)/python -m connectors.questdb_server fetch
	@touch $@

## run: set up and run the main job live (starts a local QuestDB unless one answers);
## Bytewax recovery in var/recovery, so a restart resumes without losing or repeating a trade
run: setup
	$(BIN)/pairstream run --recovery var/recovery

## demo: set up and replay the bundled real sample into QuestDB (offline)
demo: setup
	$(BIN)/pairstream demo

## test: set up and run the whole suite against a real QuestDB
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

## bench-*: benchmarks that print figures (see bench/README.md)
bench-throughput: setup
	$(BIN)/python -m bench.throughput

bench-latency: setup
	$(BIN)/python -m bench.latency

bench-memory: setup
	$(BIN)/python -m bench.memory

bench-scale: setup
	$(BIN)/python -m bench.scale

bench-soak: setup
	$(BIN)/python -m bench.soak

bench-estimators: setup
	$(BIN)/python -m bench.bench_estimators

bench-bars: setup
	$(BIN)/python -m bench.bench_bars

bench-scan: setup
	$(BIN)/python -m bench.scan

bench-replay: setup
	$(BIN)/python -m bench.replay

clean:
	rm -rf $(VENV) .cache var .pytest_cache .ruff_cache

## stop: stop the local QuestDB that `make demo` left running
stop:
	$(BIN)/python -m connectors.questdb_server stop
