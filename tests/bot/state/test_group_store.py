"""Bulk disables in the state store (migration 8), on both backends: one group per command, its
members' timers and audit rows linked to it, and what `extend`/`enable all in` look it up by."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bot.state.group_store import GroupDraft
from bot.state.store import SCHEMA_VERSION, AuditRecord, StateStore
from bot.state.timer_states import TimerState
from bot.state.timer_store import TimerDraft

# The `open_store` fixture's opener (tests/bot/state/conftest.py), named here: a module named
# `conftest` is not importable reliably when several test directories run in one session.
Opener = Callable[..., Awaitable[StateStore]]

NOW = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)


def group_draft(message_id: str = "m1", **fields: object) -> GroupDraft:
    values: dict[str, object] = {
        "created_at": NOW,
        "actor_id": "u1",
        "actor_username": "admin",
        "selector": "in #alerts",
        "message_id": message_id,
        "target_room_id": "R1",
        "reason": "paging storm",
        "due_at": NOW + timedelta(minutes=30),
        "room_id": "OPS",
        "thread_id": "t1",
    }
    values.update(fields)
    return GroupDraft(**values)  # type: ignore[arg-type]


def member(integration_id: str, group_id: int) -> TimerDraft:
    return TimerDraft(
        integration_id=integration_id,
        integration_name=f"Hook {integration_id}",
        integration_type="webhook-incoming",
        created_at=NOW,
        due_at=NOW + timedelta(minutes=30),
        actor_id="u1",
        actor_username="admin",
        message_id="m1",
        group_id=group_id,
    )


async def test_a_group_is_one_row_per_command_and_keeps_everything(open_store: Opener) -> None:
    state = await open_store()
    assert await state.schema_version() == SCHEMA_VERSION >= 8
    first = await state.groups.create(group_draft())
    again = await state.groups.create(group_draft(reason="another reading"))  # the same command, resumed
    assert again == first
    assert first.id > 0
    assert (first.selector, first.target_room_id, first.reason, first.due_at) == (
        "in #alerts",
        "R1",
        "paging storm",
        NOW + timedelta(minutes=30),
    )
    assert (first.room_id, first.thread_id, first.actor_username) == ("OPS", "t1", "admin")
    other = await state.groups.create(group_draft("m2", target_room_id=None, glob="Jenkins*", due_at=None))
    assert other.id != first.id and other.due_at is None
    assert await state.groups.get(first.id) == first
    assert await state.groups.many([first.id, other.id]) == {first.id: first, other.id: other}


async def test_members_timers_and_audit_rows_point_at_their_group(open_store: Opener) -> None:
    state = await open_store()
    group = await state.groups.create(group_draft())
    a = await state.timers.schedule(member("i1", group.id))
    b = await state.timers.schedule(member("i2", group.id))
    alone = await state.timers.schedule(dataclasses.replace(member("i3", group.id), group_id=None))
    assert a is not None and b is not None and alone is not None
    assert a.group_id == group.id and alone.group_id is None
    assert [t.integration_id for t in await state.timers.in_group(group.id)] == ["i1", "i2"]
    assert {t.state for t in await state.timers.in_group(group.id)} == {TimerState.SCHEDULED}
    record = AuditRecord(
        at=NOW,
        actor_id="u1",
        actor_username="admin",
        integration_id="i1",
        integration_name="Hook i1",
        integration_type="webhook-incoming",
        action="disable",
        message_id="m1",
        group_id=group.id,
    )
    await state.record(record)
    await state.record(dataclasses.replace(record, integration_id="i2"))
    await state.record(dataclasses.replace(record, integration_id="i9", message_id="m9", group_id=None))
    rows = await state.history(group_id=group.id)
    assert sorted(r.integration_id for r in rows) == ["i1", "i2"]
    assert {r.group_id for r in rows} == {group.id}


async def test_groups_are_found_by_room_or_pattern_newest_first_and_extended(open_store: Opener) -> None:
    state = await open_store()
    old = await state.groups.create(group_draft("m1"))
    new = await state.groups.create(group_draft("m2", created_at=NOW + timedelta(minutes=1)))
    await state.groups.create(group_draft("m3", target_room_id="R2"))
    glob = await state.groups.create(group_draft("m4", target_room_id=None, glob="Jenkins*"))
    assert [g.id for g in await state.groups.recent(target_room_id="R1")] == [new.id, old.id]
    assert [g.id for g in await state.groups.recent(glob="jenkins*")] == [glob.id]
    assert await state.groups.recent(glob="jenkins") == []
    later = NOW + timedelta(hours=2)
    await state.groups.set_due(new.id, later)
    found = await state.groups.get(new.id)
    assert found is not None and found.due_at == later


async def test_another_replica_sees_the_group(open_store: Opener) -> None:
    first = await open_store()
    group = await first.groups.create(group_draft())
    await first.close()
    second = await open_store()
    assert await second.groups.for_message("m1") == group


async def test_a_pattern_group_stays_in_reach_behind_any_number_of_other_patterns(open_store: Opener) -> None:
    """Was: `recent(glob=…)` read the newest 200 pattern groups and filtered them in Python, so
    someone repeating `disable all matching "own*" --yes` 200 times pushed an admin's
    `matching "jenkins*"` group out of `enable all`'s and `extend all`'s reach."""
    state = await open_store()
    admins = await state.groups.create(group_draft("admin", target_room_id=None, glob="Jenkins*"))
    for n in range(210):
        draft = group_draft(f"flood{n}", target_room_id=None, glob="own*", created_at=NOW + timedelta(seconds=n + 1))
        await state.groups.create(draft)
    assert [g.id for g in await state.groups.recent(glob="jenkins*")] == [admins.id]
    assert [g.id for g in await state.groups.recent(glob="JENKINS*")] == [admins.id]
    assert len(await state.groups.recent(glob="OWN*", limit=5)) == 5
    assert await state.groups.recent(glob="jenkins") == []
    assert await state.groups.recent(glob="Jenkins%") == [] and await state.groups.recent(glob="_enkins*") == []
