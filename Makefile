# integrations-bot: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JSDIR  := tests/ddp_client_js
PYTEST_WORKERS ?= 2

.PHONY: all venv lint typecheck dockerlint test test-fast demo bench clean jsdeps

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Node client used to prove that Rocket.Chat's official DDP client talks to the sandbox.
$(JSDIR)/node_modules/.installed: $(JSDIR)/package.json $(wildcard $(JSDIR)/package-lock.json)
	cd $(JSDIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

jsdeps: $(if $(wildcard $(JSDIR)/package.json),$(JSDIR)/node_modules/.installed)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(JSDIR)/node_modules
