"""Hooks for the whole test suite (tests/).

Here at the top and not in tests/: pytest puts a conftest's directory on sys.path, and tests/ there
would make tests/bot, tests/sandbox and tests/commands shadow the real packages.

`secret-watch`: no password or token appears in any log output of the whole suite (the output
pytest captured for each test, and every bot process's output); a leak fails the session. See
tests/secret_watch.py.

`postgres`: the fixtures `postgres_server` (a real PostgreSQL server per pytest process) and
`postgres_url` (a new empty database on it per test). See tests/postgres_support.py.

`_logging_as_found`: logging is configured per process (`bot.logs.configure_logging`, as
`integrations-bot run` and `check` do), and tests that exercise that configure the pytest process.
Each test gets the configuration the one before it found, so no test depends on the order the
tests run in (xdist hands tests to workers in a different order every run). tests/test_isolation.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from tests import postgres_support
from tests.secret_watch import WATCH, SecretWatchPlugin


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SecretWatchPlugin(WATCH), "secret-watch")
    config.pluginmanager.register(postgres_support, "postgres")


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Undo what the test configured: structlog (its level filter would hide the next test's lines
    from `capture_logs`), the root logger's handlers and level, and the level of every logger that
    existed before the test (a library quietened to WARNING would hide its records from `caplog`)."""
    config = structlog.get_config()
    processors = list(config["processors"])  # `capture_logs` edits this very list in place
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = {
        name: (logger, logger.level)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    config["processors"][:] = processors
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger, was in loggers.values():
        logger.setLevel(was)
