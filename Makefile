# integrations-bot: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JSDIRS := tests/ddp_client_js tests/markdown_js
PYTEST_WORKERS ?= 2

.PHONY: all venv lint typecheck dockerlint test test-fast demo bench clean jsdeps postgres

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

# PostgreSQL server binaries for the tests and the benchmark, which start throwaway servers of their
# own (tests/postgres_support.py): Debian's `postgresql` package, installed when no version is there.
# The distribution's own cluster is not created, so there is nothing of it to start or stop.
# PG_ROOT is where Debian puts them (tests/postgres_support.py looks there too).
PG_ROOT ?= /usr/lib/postgresql
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)
APT     := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
postgres:
	@if ! ls $(PG_ROOT)/*/bin/initdb >/dev/null 2>&1; then \
		echo "PostgreSQL server binaries not found under $(PG_ROOT): installing Debian's postgresql package"; \
		$(APT) update -q && \
		$(APT) install -y -q --no-install-recommends postgresql-common && \
		$(SUDO) sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
			/etc/postgresql-common/createcluster.conf && \
		$(APT) install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold postgresql \
		|| exit 1; \
	fi
	@getent passwd postgres >/dev/null || { \
		echo "no 'postgres' user: the tests run the server as that user when root (it comes with the postgresql package)" >&2; \
		exit 1; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: venv
	$(BIN)/mypy

dockerlint: venv
	$(BIN)/hadolint Dockerfile

test: venv jsdeps postgres lint typecheck dockerlint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Unit tests only, no lint: the inner loop while developing.
test-fast: venv postgres
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not e2e and not slow"

demo: venv
	$(BIN)/integrations-bot demo

bench: venv postgres
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(foreach dir,$(JSDIRS),$(dir)/node_modules)
