"""`show`: who changed an integration and when, also before anyone has updated it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.rocketchat.models import Integration
from bot.text import ZWSP
from commands.show import describe
from tests.bot.test_text import server_mentions

NOW = datetime(2024, 6, 5, 9, 5, tzinfo=UTC)


def document(**extra: Any) -> dict[str, Any]:
    return {
        "_id": "665f1c2e9b1e8a0012345678",
        "type": "webhook-incoming",
        "name": "Guggy",
        "enabled": True,
        "channel": ["#general"],
        "username": "rocket.cat",
        "token": "t" * 48,
        "_createdAt": "2024-06-05T08:00:00.000Z",
        "_createdBy": {"_id": "a1", "username": "admin"},
        "_updatedAt": "2024-06-05T09:00:00.000Z",
        **extra,
    }


def test_never_updated_says_when_without_a_dangling_by() -> None:
    lines = describe(Integration.of(document()), NOW).splitlines()
    assert "created by admin, 1 h 5 min ago" in lines
    assert "last changed 5 min ago" in lines  # integrations.create sets no _updatedBy


def test_updated_says_by_whom_and_when() -> None:
    doc = document(_updatedBy={"_id": "o1", "username": "owen"})
    assert "last changed by owen, 5 min ago" in describe(Integration.of(doc), NOW).splitlines()


def outgoing_document(**extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": "webhook-outgoing",
        "event": "sendMessage",
        "channel": ["#general", "all_public_channels"],
        "triggerWords": ["!guggy", "/gif me"],
        "targetRoom": "@rocket.cat",
        "retryFailedCalls": True,
        "retryCount": 6,
        "retryDelay": "powers-of-ten",
        "urls": ["https://example.org/hook"],
    }
    return document(**{**values, **extra})


def test_values_are_shown_exactly_as_stored() -> None:
    """Was: `show` printed the stored `!guggy` as `！guggy` (full-width), `rocket.cat` with a
    zero-width space after the dot and `all_public_channels` with look-alike underscores (the
    neutralising of free text); copied back into a command, they named something else. Now every
    value is in code spans, character for character."""
    doc = outgoing_document(alias="Guggy_bot *v2*", emoji=":ghost:")
    lines = describe(Integration.of(doc), NOW).splitlines()
    assert "event: `sendMessage`" in lines
    assert "channel: `#general`, `all_public_channels`" in lines
    assert "posts as: `rocket.cat`" in lines
    assert "alias: `Guggy_bot *v2*`" in lines
    assert "emoji: `:ghost:`" in lines
    assert "trigger words: `!guggy`, `/gif me`" in lines
    assert "target room: `@rocket.cat`" in lines
    assert "retry failed calls: `6` × `powers-of-ten`" in lines
    assert "created by admin, 1 h 5 min ago" in lines
    assert ZWSP not in "\n".join(lines)


def test_a_shown_value_pages_nobody_and_renders_nothing() -> None:
    doc = outgoing_document(alias="ping @all", triggerWords=["hey @here", "a`b"], name="Guggy @all")
    text = describe(Integration.of(doc), NOW)
    assert server_mentions(text) == []
    lines = text.splitlines()
    assert lines[0].startswith("`Guggy ``@all` · outgoing webhook")
    assert "alias: `ping ``@all`" in lines
    assert "trigger words: `hey ``@here`, `a`\\``b`" in lines
