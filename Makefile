# The two commands of the README: `make run` serves, `make test` runs what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
LOCKS  := requirements/build.txt requirements/runtime.txt

.PHONY: run test deps lint typecheck eval eval-gate bench clean lock

# The venv holds exactly the lock files (requirements/*.txt: every package pinned with its
# hashes, pip and setuptools included), so citeqa is built with --no-build-isolation by the
# pinned setuptools and nothing unpinned enters. The build lock goes first, so the locked pip
# installs the rest: the pip that `venv` brings (23.2 with Python 3.11.7) fetched an unpinned
# newer release for an extra (`uvicorn[standard]`, asked for by chromadb) once PyPI had one, and
# stopped in --require-hashes mode. --clear: a changed lock starts from an empty
# venv, so no package of an older lock stays behind. pip's output stays visible: it is the
# minute or two of a first `make run`. `make run` needs only the runtime lock; the dev lock
# (the same versions plus the test tools, one of which builds from source) comes with `make test`.
$(RUN_STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --require-hashes --progress-bar on -r requirements/build.txt
	$(BIN)/python -m pip install --require-hashes --progress-bar on $(LOCKS:%=-r %)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

# llama-cpp-python (the real LLM server of some tests) compiles llama.cpp from source. ggml's
# default build is for the machine it runs on (-march=native): on an Intel Xeon with AMX it used
# AMX tile instructions that the machine's kernel does not grant, and every completion died
# with SIGSEGV (in ggml_backend_amx_mul_mat). GGML_NATIVE=OFF builds the same code on every
# machine (x86-64 with AVX2; generic elsewhere). pip's wheel cache is keyed by the sdist, not by
# CMAKE_ARGS, so this install keeps its own cache, holding only wheels built this way.
DEV_PIP_CACHE ?= $(HOME)/.cache/citeqa-dev-pip
$(STAMP): $(RUN_STAMP) requirements/dev.txt
	CMAKE_ARGS="-DGGML_NATIVE=OFF" PIP_CACHE_DIR="$(DEV_PIP_CACHE)" \
	  $(BIN)/python -m pip install --require-hashes --progress-bar on -r requirements/dev.txt
	$(BIN)/python -m pip check
	touch $@

# Re-resolve the lock files after a change of pyproject.toml's dependencies (see README).
lock:
	bash scripts/lock.sh

run: $(RUN_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/citeqa serve

lint: $(STAMP)
	$(BIN)/ruff check citeqa cli ingest service evals tests bench
	$(BIN)/ruff format --check citeqa cli ingest service evals tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian packages some tests need (docker-compose, chromium, chromedriver); quick when present.
deps:
	bash scripts/ci-deps.sh

# PYTHONFAULTHANDLER: a crash (also one after the last test, at the interpreter's exit) prints
# every thread's stack, so it names its cause.
test: $(STAMP) deps lint typecheck
	HF_HUB_OFFLINE=1 PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest
	$(MAKE) eval-gate

eval: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/citeqa eval --dataset evals/datasets/dev.jsonl

# The eval gate, with the commands docs/ci.md gives users: the bundled corpus ingested
# (incremental) into the default store, the dev set scored, and every metric held to the floors
# and tolerance of evals/baseline.json (exit 1 names the metric, the figures and worst items).
EVAL_STORE ?= .citeqa/eval-gate
eval-gate: $(STAMP)
	HF_HUB_OFFLINE=1 CITEQA_DATA_DIR=$(EVAL_STORE) $(BIN)/citeqa ingest
	HF_HUB_OFFLINE=1 CITEQA_DATA_DIR=$(EVAL_STORE) $(BIN)/citeqa eval \
		--dataset evals/datasets/dev.jsonl --out eval-out/dev \
		--baseline evals/baseline.json --junit eval-out/dev/junit.xml

# The bench extra (in the dev lock): pyinstrument profiles the targets a run misses, and
# llama-index-vector-stores-chroma builds the stock llama-index baseline (bench/baseline.py).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .citeqa .pytest_cache .mypy_cache .ruff_cache
