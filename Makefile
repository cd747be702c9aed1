# The two commands of the README: `make run` serves, `make test` runs what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test deps lint typecheck eval bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/citeqa serve

lint: $(STAMP)
	$(BIN)/ruff check citeqa ingest service evals tests bench
	$(BIN)/ruff format --check citeqa ingest service evals tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian packages some tests need (docker-compose, chromium, chromedriver); quick when present.
deps:
	bash scripts/ci-deps.sh

test: $(STAMP) deps lint typecheck
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

eval: $(STAMP)
	$(BIN)/citeqa eval --dataset evals/datasets/dev.jsonl

# The bench extra (pyinstrument) profiles the targets a run misses.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .citeqa .pytest_cache .mypy_cache .ruff_cache
