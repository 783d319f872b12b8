# integrations-bot: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JSDIRS := tests/ddp_client_js tests/markdown_js
PYTEST_WORKERS ?= 2

.PHONY: all venv lint typecheck dockerlint test test-fast demo bench clean jsdeps

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Node projects of the tests: Rocket.Chat's official DDP client (it talks to the sandbox) and
# Rocket.Chat's message parser (echoed user text never renders as a link or formatting).
%/node_modules/.installed: %/package.json %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

jsdeps: $(foreach dir,$(JSDIRS),$(if $(wildcard $(dir)/package.json),$(dir)/node_modules/.installed))

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: venv
	$(BIN)/mypy

dockerlint: venv
	$(BIN)/hadolint Dockerfile

test: venv jsdeps lint typecheck dockerlint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Unit tests only, no lint: the inner loop while developing.
test-fast: venv
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not e2e and not slow"

demo: venv
	$(BIN)/integrations-bot demo

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(foreach dir,$(JSDIRS),$(dir)/node_modules)
