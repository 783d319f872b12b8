"""Audit rows as chat lines: who did what to which integration, why, until when, from where;
user text mention-safe; edited fields named, their values never shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.incident.audit_lines import audit_room_line, history_line, sentence
from bot.state.store import AuditRecord
from bot.text import ZWSP

NOW = datetime(2026, 11, 24, 14, 5, tzinfo=UTC)


def row(action: str, **fields: object) -> AuditRecord:
    values: dict[str, object] = {
        "at": NOW - timedelta(minutes=5),
        "actor_id": "u1",
        "actor_username": "alice",
        "integration_id": "abc123",
        "integration_name": "Guggy",
        "integration_type": "webhook-incoming",
        "action": action,
    }
    values.update(fields)
    return AuditRecord(**values)  # type: ignore[arg-type]


def test_a_timed_disable_reads_as_a_sentence() -> None:
    line = history_line(row("disable", reason="flapping", until=NOW + timedelta(minutes=30)), now=NOW, where="in #ops")
    assert line == "5 min ago · alice disabled `Guggy` (incoming) until 14:35 UTC, in 30 min — flapping · in #ops"


def test_the_audit_room_line_has_a_mark_and_the_id() -> None:
    line = audit_room_line(row("enable"), now=NOW, where="here")
    assert line.startswith("🟢 alice enabled `Guggy` (incoming)") and line.endswith("· id `abc123`")


def test_an_edit_names_the_fields_not_the_values() -> None:
    before = {"_id": "abc123", "type": "webhook-incoming", "alias": "a", "token": "tok-secret-1", "emoji": ":x:"}
    after = {**before, "alias": "b", "token": "tok-secret-2"}
    text = sentence(row("set", before=before, after=after), now=NOW)
    assert text == "alice changed alias, token of `Guggy` (incoming)"
    assert "tok-secret" not in text


def test_user_text_cannot_mention_or_run_commands() -> None:
    text = sentence(row("disable", actor_username="@all", reason="!integration enable x @here"), now=NOW)
    assert "@all" not in text and "@here" not in text
    assert f"@{ZWSP}here" in text and f"@{ZWSP}all" in text


def test_bot_actions_and_unknown_actions_still_read() -> None:
    assert sentence(row("re-enable", actor_username="integrations-bot"), now=NOW).startswith(
        "integrations-bot turned `Guggy` (incoming) back on"
    )
    assert sentence(row("rename{label}"), now=NOW) == "alice rename(label) `Guggy` (incoming)"
