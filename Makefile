# nodetool — set-up, run and test. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test test-fast reliability lint format completions bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,postgres,redis,dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install nodetool with every extra

run: install ## Start `nodetool serve` on the embedded default (local model, SQLite)
	$(BIN)/nodetool serve --host $(HOST) --port $(PORT)

test: install ## The whole default test suite (starts PostgreSQL/Redis if they are down)
	bash scripts/ensure_services.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

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

bench: install ## Benchmarks (each prints ratios measured side by side)
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/gateway.py
	$(BIN)/python benchmarks/local_model.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
