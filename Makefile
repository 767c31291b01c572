# nodetool — set-up, run and test. `make run` and `make test` work on a fresh machine.
# the interpreter .venv is made from: the OS's optimised build when it can (scripts/python.sh)
PYTHON ?= $(shell sh scripts/python.sh)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test test-fast conformance reliability lint format completions bench bench-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,postgres,redis,dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv, install nodetool with every extra, build llama.cpp's server
	$(BIN)/python -m nodetool.providers.llama_build

run: install ## Start `nodetool serve` on the embedded default (local model, SQLite)
	$(BIN)/nodetool serve --host $(HOST) --port $(PORT)

test: install ## The whole default test suite (starts PostgreSQL/Redis if they are down)
	bash scripts/ensure_services.sh
	bash scripts/ensure_browser.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

conformance: install ## The engine over every workflow in NODETOOL_EXAMPLES_DIR (not part of `make test`)
	@test -n "$(NODETOOL_EXAMPLES_DIR)" || { echo "usage: make conformance NODETOOL_EXAMPLES_DIR=DIR" >&2; exit 2; }
	NODETOOL_EXAMPLES_DIR="$(NODETOOL_EXAMPLES_DIR)" $(BIN)/python -m pytest -q tests/conformance $(PYTEST_ARGS)

reliability: install ## Long reliability suite (fuzzing, faults, load, crash recovery) at full size
	bash scripts/ensure_services.sh
	NODETOOL_RELIABILITY_FULL=1 $(BIN)/python -m pytest -q -m reliability tests/reliability $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check nodetool tests benchmarks scripts
	$(BIN)/ruff format --check nodetool tests benchmarks scripts

format: install
	$(BIN)/ruff format nodetool tests benchmarks scripts
	$(BIN)/ruff check --fix nodetool tests benchmarks scripts

completions: install ## Regenerate the committed shell completions
	$(BIN)/python scripts/gen_completions.py

bench-deps: install ## llama-cpp-python (same portable flags) for the local-model benchmark
	$(BIN)/python -m nodetool.providers.llama_build --python-bindings

bench: bench-deps ## Benchmarks (each prints ratios measured side by side)
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/gateway.py
	$(BIN)/python benchmarks/idle_sockets.py
	$(BIN)/python benchmarks/mcp_calls.py
	$(BIN)/python benchmarks/local_model.py

clean: ## Remove the virtualenv and every llama.cpp build (the next install rebuilds)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	rm -rf "$${NODETOOL_LLAMA_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/nodetool/llama-server}"
