"""Timed disables in the state file: compare-and-set transitions, one pending per integration,
survival across reopening, and the migration from files written by earlier releases."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.state.store import SCHEMA_VERSION, AuditRecord, StateStore
from bot.state.timer_states import IllegalTransition, TimerEvent, TimerState
from bot.state.timer_store import TimerDraft, TimerStore

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DISABLED = {"_id": "i1", "type": "webhook-incoming", "enabled": False, "_updatedAt": "2026-11-24T03:00:01.000Z"}

# The schema of version 1 exactly as the first release wrote it (kept here literally, so the test
# keeps proving the upgrade even if someone edits the migration list by mistake).
V1_SCHEMA = """
CREATE TABLE processed_messages (
    message_id TEXT PRIMARY KEY, room_id TEXT NOT NULL, message_ts REAL NOT NULL, claimed_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('claimed', 'done', 'ignored')), outcome TEXT);
CREATE INDEX processed_messages_claimed_at ON processed_messages (claimed_at);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor_id TEXT NOT NULL, actor_username TEXT NOT NULL,
    room_id TEXT, message_id TEXT, integration_id TEXT NOT NULL, integration_name TEXT NOT NULL,
    integration_type TEXT NOT NULL, action TEXT NOT NULL, reason TEXT, before_json TEXT, after_json TEXT);
CREATE INDEX audit_integration ON audit (integration_id, at);
CREATE INDEX audit_actor ON audit (actor_id, at);
CREATE TABLE room_cursors (room_id TEXT PRIMARY KEY, last_seen REAL NOT NULL);
"""


def draft(integration_id: str = "i1", *, minutes: int = 30, message_id: str = "m1") -> TimerDraft:
    return TimerDraft(
        integration_id=integration_id,
        integration_name="Guggy",
        integration_type="webhook-incoming",
        created_at=NOW,
        due_at=NOW + timedelta(minutes=minutes),
        actor_id="u1",
        actor_username="alice",
        reason="flapping",
        room_id="GENERAL",
        thread_id="t1",
        message_id=message_id,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TimerStore]:
    state = await StateStore.open(tmp_path / "state.sqlite3")
    yield state.timers
    await state.close()


async def test_a_timed_disable_goes_through_its_states_and_keeps_what_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = await StateStore.open(path)
    timers = state.timers
    scheduled = await timers.schedule(draft())
    assert scheduled is not None and scheduled.state is TimerState.SCHEDULED and scheduled.disabled_document is None
    active = await timers.transition(scheduled, TimerEvent.CONFIRMED, at=NOW, document=DISABLED, audit_id=7)
    assert active is not None and active.state is TimerState.ACTIVE and active.audit_id == 7
    assert active.disabled_document == DISABLED
    assert active.disabled_updated_at == "2026-11-24T03:00:01+00:00"
    later = NOW + timedelta(hours=2)
    extended = await timers.transition(active, TimerEvent.EXTENDED, at=NOW, due_at=later)
    assert extended is not None and extended.due_at == later and extended.revision == active.revision + 1
    await state.close()

    # kill -9 / restart: everything is still there, in the same state.
    reopened_state = await StateStore.open(path)
    reopened = reopened_state.timers
    (pending,) = await reopened.pending()
    assert pending == extended
    assert (pending.reason, pending.room_id, pending.thread_id, pending.actor_username) == (
        "flapping",
        "GENERAL",
        "t1",
        "alice",
    )
    done = await reopened.transition(pending, TimerEvent.RE_ENABLED, at=later, note="turned back on")
    assert done is not None and done.state is TimerState.EXPIRED and done.ended_at == later
    assert await reopened.pending() == [] and await reopened.ended() == [done]
    await reopened_state.close()


async def test_only_one_timed_disable_per_integration_is_pending(store: TimerStore) -> None:
    first = await store.schedule(draft("i1"))
    assert first is not None
    assert await store.schedule(draft("i1", message_id="m2")) is None
    assert await store.schedule(draft("i2")) is not None
    ended = await store.transition(first, TimerEvent.ABORTED, at=NOW, note="refused")
    assert ended is not None and ended.state is TimerState.CANCELLED
    assert await store.schedule(draft("i1", message_id="m3")) is not None  # ended ones don't count


async def test_of_two_racing_transitions_exactly_one_wins(store: TimerStore) -> None:
    scheduled = await store.schedule(draft())
    assert scheduled is not None
    active = await store.transition(scheduled, TimerEvent.CONFIRMED, at=NOW, document=DISABLED)
    assert active is not None
    # The scheduler and an `enable` command both saw the same row.
    assert await store.transition(active, TimerEvent.ENDED_EARLY, at=NOW, note="enable by bob") is not None
    assert await store.transition(active, TimerEvent.RE_ENABLED, at=NOW) is None
    final = await store.get(active.id)
    assert final is not None and final.state is TimerState.CANCELLED and final.end_note == "enable by bob"


async def test_illegal_transitions_raise_and_change_nothing(store: TimerStore) -> None:
    scheduled = await store.schedule(draft())
    assert scheduled is not None
    with pytest.raises(IllegalTransition):
        await store.transition(scheduled, TimerEvent.RE_ENABLED, at=NOW)
    with pytest.raises(ValueError, match="document"):
        await store.transition(scheduled, TimerEvent.CONFIRMED, at=NOW)
    assert await store.get(scheduled.id) == scheduled


async def test_pending_is_soonest_first_and_filterable(store: TimerStore) -> None:
    late = await store.schedule(draft("late", minutes=90))
    soon = await store.schedule(draft("soon", minutes=5))
    assert late is not None and soon is not None
    await store.transition(late, TimerEvent.CONFIRMED, at=NOW, document=DISABLED)
    assert [t.integration_id for t in await store.pending()] == ["soon", "late"]
    assert [t.integration_id for t in await store.pending(TimerState.ACTIVE)] == ["late"]
    assert (await store.pending_for("soon")) == soon


async def test_a_version_1_file_opens_with_its_data_intact(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript(V1_SCHEMA)
    connection.execute(
        "INSERT INTO processed_messages VALUES ('m-old', 'GENERAL', ?, ?, 'done', 'changed')",
        (NOW.timestamp(), NOW.timestamp()),
    )
    connection.execute(
        "INSERT INTO audit (at, actor_id, actor_username, room_id, message_id, integration_id, integration_name,"
        " integration_type, action, reason, before_json, after_json) VALUES (?, 'u1', 'alice', 'GENERAL', 'm-old',"
        " 'i1', 'Guggy', 'webhook-incoming', 'disable', 'spam', ?, ?)",
        (NOW.timestamp(), json.dumps({"enabled": True}), json.dumps({"enabled": False})),
    )
    connection.execute("INSERT INTO room_cursors VALUES ('GENERAL', ?)", (NOW.timestamp(),))
    connection.execute("PRAGMA user_version=1")
    connection.commit()
    connection.close()

    state = await StateStore.open(path)
    assert await state.schema_version() == SCHEMA_VERSION
    assert await state.message_status("m-old") == "done"
    assert await state.claim_message("m-old", "GENERAL", NOW, NOW) is False  # still handled once only
    (row,) = await state.history()
    assert (row.action, row.reason, row.before, row.after) == ("disable", "spam", {"enabled": True}, {"enabled": False})
    assert row.until is None and row.undoes is None
    assert await state.cursors() == {"GENERAL": NOW}
    # The new parts work on the upgraded file.
    timers = state.timers
    assert await timers.schedule(draft()) is not None
    new_id = await state.record(
        AuditRecord(
            at=NOW, actor_id="u1", actor_username="alice", integration_id="i1", integration_name="Guggy",
            integration_type="webhook-incoming", action="undo", undoes=row.id, until=NOW + timedelta(hours=1),
        )
    )  # fmt: skip
    newest = (await state.history(limit=1))[0]
    assert newest.id == new_id and newest.undoes == row.id and newest.until == NOW + timedelta(hours=1)
    await state.close()


async def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = await StateStore.open(path)
    timers = state.timers
    scheduled = await timers.schedule(draft())
    await state.close()
    again = await StateStore.open(path)
    assert await again.schema_version() == SCHEMA_VERSION
    assert await again.timers.pending() == [scheduled]
    await again.close()
