"""Hooks for the whole test suite (tests/).

Here at the top and not in tests/: pytest puts a conftest's directory on sys.path, and tests/ there
would make tests/bot, tests/sandbox and tests/commands shadow the real packages.

`secret-watch`: no password or token appears in any log output of the whole suite (the output
pytest captured for each test, and every bot process's output); a leak fails the session. See
tests/secret_watch.py.
"""

from __future__ import annotations

import pytest

from tests.secret_watch import WATCH, SecretWatchPlugin


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SecretWatchPlugin(WATCH), "secret-watch")
