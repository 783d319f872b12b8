"""One test's set-up never leaks into the next: what a test configures for its process (the bot's
logging, as `configure_logging` and `check.main` do) is undone before the next test runs.

Found as `tests/commands/test_followups.py::test_a_followup_logs_with_the_context_of_the_command_that_deferred_it`
failing only after `tests/bot/test_logs.py::test_a_logger_made_before_logging_is_configured_follows_the_configuration`
(in one xdist worker): that test left structlog filtering below WARNING, so the next one's INFO
line never reached `capture_logs`.
"""

from __future__ import annotations

from pathlib import Path

from tests.session_support import run_session

LOGGING_TESTS = """
import io
import logging

import structlog

from bot.logs import configure_logging, get_logger

LIBRARY = logging.getLogger("httpx")  # made at import, as libraries make theirs


def test_configures_logging_for_its_process() -> None:
    configure_logging("WARNING", "json", stream=io.StringIO())


def test_sees_the_info_lines_of_the_bot_and_of_libraries(caplog) -> None:
    with structlog.testing.capture_logs() as logs:
        get_logger("t").info("bot line")
    with caplog.at_level(logging.INFO):
        LIBRARY.info("library line")
    assert [e["event"] for e in logs] == ["bot line"]
    assert [r.getMessage() for r in caplog.records] == ["library line"]
"""


def test_a_test_that_configures_logging_leaves_the_next_test_the_configuration_it_found(tmp_path: Path) -> None:
    result = run_session(tmp_path, "test_logging_order.py", LOGGING_TESTS, "-p", "no:xdist")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
