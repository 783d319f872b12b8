"""Logs: JSON lines with context, and secrets masked by key and by value, also in tracebacks."""

from __future__ import annotations

import io
import json
import logging
import time

from hypothesis import given
from hypothesis import strategies as st

from bot.logs import (
    after_answer,
    bind,
    clear,
    configure_logging,
    get_logger,
    holding,
    redact_text,
    register_secret,
    release,
)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_bound_context_and_mask_secret_keys() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    bind(correlation_id="c-1", room="GENERAL")
    try:
        get_logger("t").info("command done", authToken="abc-very-secret", password="hunter2!", count=3)
    finally:
        clear()
    [record] = lines(out)
    assert record["event"] == "command done"
    assert record["correlation_id"] == "c-1"
    assert record["room"] == "GENERAL"
    assert record["count"] == 3
    assert record["authToken"] == "***"
    assert record["password"] == "***"


def test_registered_secret_values_are_masked_everywhere() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    secret = "Zx9-registered-secret-value"
    register_secret(secret)
    log = get_logger("t")
    log.info(f"url /hooks/abc/{secret}", detail={"nested": [f"x{secret}y"]})
    logging.getLogger("httpx").warning("GET http://h/?t=%s", secret)
    try:
        raise ValueError(f"refused {secret}")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert secret not in text
    assert text.count("***") >= 4


def test_console_format_when_asked() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    get_logger("t").info("hello", user="alice")
    assert "hello" in out.getvalue()
    assert "user=alice" in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")


@given(prefix=st.text(max_size=20), suffix=st.text(max_size=20))
def test_redact_text_removes_any_registered_secret(prefix: str, suffix: str) -> None:
    secret = "hypothesis-secret-0123456789"
    register_secret(secret)
    assert secret not in redact_text(prefix + secret + suffix + secret)


def test_short_values_are_not_treated_as_secrets() -> None:
    register_secret("abc")
    assert redact_text("abc abc") == "abc abc"


def test_a_logger_made_before_logging_is_configured_follows_the_configuration() -> None:
    # Modules create their loggers at import time, long before `configure_logging` runs.
    early = get_logger("integrations_bot.early")
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    early.info("below the level")
    early.warning("kept", detail=1)
    assert [(r["event"], r["level"], r["logger"], r["detail"]) for r in lines(out)] == [
        ("kept", "warning", "integrations_bot.early", 1)
    ]


def test_library_records_and_bot_events_share_one_format() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    register_secret("library-secret-value-42")
    logging.getLogger("some.library").warning("calling https://x/?t=library-secret-value-42")
    get_logger("integrations_bot.x").info("bot event")
    library, ours = lines(out)
    assert (library["logger"], library["level"], library["event"]) == (
        "some.library",
        "warning",
        "calling https://x/?t=***",
    )
    assert (ours["logger"], ours["level"], ours["event"]) == ("integrations_bot.x", "info", "bot event")
    assert set(library) == set(ours)  # the same keys either way


def test_held_lines_wait_for_release_and_keep_their_time_and_context() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = get_logger("t")
    with holding():
        bind(correlation_id="c-7")
        after_answer(log, "integration.updated", integration_id="I1", token="whsec-abcdef")
        clear()  # the dispatcher clears the context before the answer is posted
        assert lines(out) == []
        time.sleep(0.002)
        log.info("reply.posted")  # the answer, not held
        release()
        after_answer(log, "command", outcome="changed")
        log.warning("something odd")  # never held
        assert [r["event"] for r in lines(out)] == ["reply.posted", "integration.updated", "something odd"]
    posted, updated, _odd, command = lines(out)
    assert command["event"] == "command"  # what was still held is written when the block ends
    assert updated["correlation_id"] == "c-7" and "correlation_id" not in posted
    assert updated["token"] == "***"
    assert str(updated["timestamp"]) < str(posted["timestamp"])  # logged first, written after


def test_held_lines_are_written_when_the_command_fails() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        with holding():
            after_answer(get_logger("t"), "integration.updated", integration_id="I1")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert [r["event"] for r in lines(out)] == ["integration.updated"]


def test_outside_a_command_a_line_is_written_at_once() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    after_answer(get_logger("t"), "timer.ended", integration_id="I1")
    assert [r["event"] for r in lines(out)] == ["timer.ended"]
