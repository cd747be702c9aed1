# The two commands of the README: `make run` serves, `make test` runs what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/dev.txt

.PHONY: run test deps lint typecheck eval bench clean lock

# The venv holds exactly the lock (requirements/dev.txt: every package pinned with its hashes,
# setuptools and pip included), so the project is built with --no-build-isolation from the
# pinned setuptools and nothing unpinned enters. --clear: a changed lock starts from an empty
# venv, so no package of an older lock stays behind. pip's output stays visible: it is the
# minute or two of a first `make run`.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --require-hashes --progress-bar on -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve the lock files after a change of pyproject.toml's dependencies (see README).
lock:
	bash scripts/lock.sh

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

# The bench extra (pyinstrument, in the dev lock) profiles the targets a run misses.
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .citeqa .pytest_cache .mypy_cache .ruff_cache
