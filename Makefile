# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench install inspector

$(BIN)/stepkeeper: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/stepkeeper

install: $(BIN)/stepkeeper

demo: install
	$(BIN)/stepkeeper demo

# The MCP Inspector CLI for the acceptance tests, when npm is here (CI has it).
inspector:
	@if [ -x tests/inspector/node_modules/.bin/mcp-inspector ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/inspector --silent --no-audit --no-fund; \
	else echo "npm not found: the MCP Inspector test will be skipped"; fi

test: install inspector
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m benchmarks --quick
