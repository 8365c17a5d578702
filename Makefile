# Both `run` and `test` create the virtual environment themselves, so a fresh
# clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DATA   ?= .idnode-demo

.PHONY: run test lint bench bench-bulk bench-postgres bench-console bench-trace clean venv

$(BIN)/idnode: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/idnode

venv: $(BIN)/idnode

run: venv
	@test -f $(DATA)/idnode.toml || $(BIN)/idnode init --data-dir $(DATA) --prefix 88.100.1
	@$(BIN)/idnode demo --data-dir $(DATA) --if-empty
	$(BIN)/idnode serve --data-dir $(DATA)

test: venv
	$(BIN)/python -m pytest -q
	$(MAKE) lint

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: venv
	$(BIN)/python -m bench.resolve --matrix --duration 5 --repeat 2

bench-bulk: venv
	$(BIN)/python -m bench.bulk --write-docs

# Server time per web console page at 1,000,000 identifiers (builds the node once, ~6 min).
bench-console: venv
	$(BIN)/python -m bench.console --write-docs

# EPCIS capture and queries at 1,000,000 events (builds the node once, a few minutes).
bench-trace: venv
	$(BIN)/python -m bench.trace --write-docs

# Needs a PostgreSQL server (--database URL, default postgres@127.0.0.1/idnode_bench).
bench-postgres: venv
	$(BIN)/python -m bench.postgres

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
