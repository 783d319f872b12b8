"""A reason that is only a time limit is asked about, not taken as "disable for good".

Was (review45): a responder on a phone types `disable Grafana until 5pm`, or `disable Grafana — for
2h` (the phone made ` - ` an em dash, read as `--`): both read as a plain disable with the reason
"until 5pm" / "for 2h"; a running timed disable was cancelled and the integration stayed off for
good, the opposite of what was asked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from set_harness import Harness

from commands.args import time_limit
from tests.markdown_oracle import MessageParser, formatting


@pytest.mark.parametrize(
    "typed",
    [
        "!integration disable Grafana until 5pm",
        "!integration disable Grafana \u2014 for 2h",
        "!integration disable Grafana because till 17:30",
        "!integration off Grafana -- until tomorrow morning",
    ],
)
async def test_a_time_limit_as_a_reason_changes_nothing_and_says_how(h: Harness, typed: str) -> None:
    h.with_incident_toolkit()
    first = await h.say("admin", "alerts", "!integration disable Grafana for 30m because spam")
    assert first.outcome == "changed", first.text
    reply = await h.say("admin", "alerts", typed)
    assert reply.outcome == "usage", reply.text
    assert "for 2h" in reply.text and "won't turn it back on" not in reply.text, reply.text
    snoozed = await h.say("admin", "alerts", "!integration snoozed")
    assert "Grafana" in snoozed.text, snoozed.text  # its timed disable still runs


async def test_a_quoted_reason_or_one_with_a_duration_is_taken_as_it_is(h: Harness) -> None:
    h.with_incident_toolkit()
    quoted = await h.say("admin", "alerts", '!integration disable Grafana because "until 5pm the vendor says"')
    assert quoted.outcome == "changed" and "until 5pm the vendor says" in quoted.text, quoted.text
    assert (await h.say("admin", "alerts", "!integration enable Grafana")).outcome == "changed"
    timed = await h.say("admin", "alerts", "!integration disable Grafana for 1h because until 5pm maybe")
    assert timed.outcome == "changed", timed.text


async def test_a_bulk_disable_with_a_time_limit_as_its_reason_is_asked_about(h: Harness) -> None:
    reply = await h.say("admin", "alerts", '!integration disable all matching "Graf*" until 5pm --yes')
    assert reply.outcome == "usage", reply.text


@pytest.mark.parametrize(
    ("reason", "limit"),
    [
        ("until 5pm", "until 5pm"),
        ("until 5 pm, then check", "until 5 pm"),
        ("till 17:30", "till 17:30"),
        ("Until noon", "Until noon"),
        ("until tomorrow", "until tomorrow"),
        ("until Monday", "until Monday"),
        ("for 2h", "for 2h"),
        ("for 1 hour because flapping", "for 1 hour"),
        ("for 30 minutes", "for 30 minutes"),
        ("until 17h", "until 17h"),
        ("until next week", "until next week"),
        ("until 5 p.m.", "until 5 p.m"),
        ("until 5", "until 5"),
    ],
)
def test_time_limits_are_recognised(reason: str, limit: str) -> None:
    assert time_limit(reason) == limit


@pytest.mark.parametrize(
    "reason",
    [
        "until the vendor fixes it",
        "until further notice",
        "spamming until 5pm",
        "for the next release",
        "for good",
        "flapping",
        "untilted",
        "until 5 people complain",
        "until 2 teams agree",
        "until next",
        "",
    ],
)
def test_reasons_that_are_not_time_limits(reason: str) -> None:
    assert time_limit(reason) is None


@given(st.text(max_size=80))
def test_a_time_limit_is_always_where_the_reason_begins(reason: str) -> None:
    """Any text: no error, and a limit found is the reason's own first words (what the reply quotes)."""
    limit = time_limit(reason)
    assert limit is None or " ".join(reason.split()).startswith(limit)


@pytest.fixture(scope="module")
def parser() -> Iterator[MessageParser]:
    running = MessageParser()
    yield running
    running.close()


@pytest.mark.parametrize(
    "selector",
    ['matching "x`[Confirm here](https://evil.example)`"', "in #x`[Confirm](https://evil.example)`"],
    ids=["pattern", "room"],
)
async def test_a_time_limit_refusal_of_disable_all_renders_no_link_from_the_selector(
    h: Harness, parser: MessageParser, selector: str
) -> None:
    """Was (review49): the refusal repeated the room or pattern inside a code span made by hand,
    so a backtick in it closed the span and the bot's answer rendered a link of the caller's
    choosing (anyone may send it; nothing needs to exist). Echoed text never renders."""
    reply = await h.say("admin", "general", f"!integration disable all {selector} until 5pm")
    assert reply.outcome == "usage", reply.text
    assert "LINK" not in formatting(parser.parse(reply.text)), reply.text
