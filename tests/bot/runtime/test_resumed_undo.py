"""An `undo` resumed after a crash, its caller having made a newer change meanwhile (through another
replica, while its claim's lease ran): through the running bot (in-process) against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_support import BOT, World, call, running_bot, settings_for, world

from bot.state.group_store import GroupDraft
from bot.state.store import AuditRecord, StateStore, WriteIntent, read_message_ids

TIMEOUT = 15.0


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


async def answer_to(w: World, tmp_path: Path, command: dict[str, Any]) -> dict[str, Any]:
    wanted = read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])
    return await call(
        w.control.wait_for_message,
        command["rid"],
        lambda m: m["_id"] in wanted and m["u"]["username"] == BOT,
        TIMEOUT,
    )


async def interrupted(state: StateStore, w: World, undo: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """`undo` claimed and its write intent (switching `target` back on) stored, as by a process
    killed right after; returns the document the intent was read from."""
    sent = datetime.fromisoformat(undo["ts"].replace("Z", "+00:00"))
    assert await state.claim_messages([(undo["_id"], undo["rid"], sent)], datetime.now(UTC))
    before: dict[str, Any] = await call(w.control.integration, target["_id"])
    intended = {**before, "enabled": True}
    intent = WriteIntent(
        undo["_id"], target["_id"], datetime.now(UTC), before, intended, text=undo["msg"], author=undo["u"]["_id"]
    )
    assert await state.record_intent(intent)
    return before


async def test_a_resumed_undo_reverts_what_it_had_begun_to_revert_not_a_newer_bulk_change(
    w: World, tmp_path: Path
) -> None:
    """`undo` of a disable, killed after its write landed; meanwhile its caller switched a group
    off (`disable all … --yes`, through another replica). Resumed, it finishes the undo it had
    made (audited), and never switches that newer group back on."""
    control = w.control
    settings = settings_for(w, tmp_path)
    target = await call(control.create_incoming_integration, "undo-target", channel="#ops", created_by="admin")
    members = [
        await call(control.create_incoming_integration, f"undo-newer-{n}", channel="#ops", created_by="admin")
        for n in ("a", "b")
    ]
    async with running_bot(settings):
        disable = await call(control.post_message, "admin", "ops", "!integration disable undo-target")
        assert "Disabled" in (await answer_to(w, tmp_path, disable))["msg"]
    undo = await call(control.post_message, "admin", "ops", "!integration undo")
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        await interrupted(state, w, undo, target)
        await call(control.update_integration, target["_id"], {"enabled": True})  # its write landed
        # Then the newer change, through another replica: a group switched off, audited.
        group = await state.groups.create(
            GroupDraft(
                created_at=datetime.now(UTC),
                actor_id=undo["u"]["_id"],
                actor_username="admin",
                selector='matching "undo-newer-*"',
                message_id="newer-bulk",
                glob="undo-newer-*",
                room_id=undo["rid"],
            )
        )
        for member in members:
            was = await call(control.integration, member["_id"])
            await call(control.update_integration, member["_id"], {"enabled": False})
            now = await call(control.integration, member["_id"])
            await state.record(
                AuditRecord(
                    at=datetime.now(UTC),
                    actor_id=undo["u"]["_id"],
                    actor_username="admin",
                    integration_id=member["_id"],
                    integration_name=member["name"],
                    integration_type=member["type"],
                    action="disable",
                    room_id=undo["rid"],
                    message_id="newer-bulk",
                    before=was,
                    after=now,
                    group_id=group.id,
                )
            )
    finally:
        await state.close()
    async with running_bot(settings):
        answer = await answer_to(w, tmp_path, undo)
    assert [(await call(control.integration, m["_id"]))["enabled"] for m in members] == [False, False], answer["msg"]
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        rows = await state.history(integration_ids=[target["_id"]], limit=10)
    finally:
        await state.close()
    assert [(r.message_id, r.action) for r in rows] == [(undo["_id"], "undo"), (disable["_id"], "disable")]
    assert "undo-target" in answer["msg"], answer["msg"]


async def test_a_resumed_undo_never_reverts_a_newer_change_of_the_integration_it_had_begun(
    w: World, tmp_path: Path
) -> None:
    """`undo` of a disable, killed once its write intent was stored but before its write was
    sent; meanwhile its caller changed that same integration again (`set … alias=…`, through
    another replica). Resumed, it is still the undo of the disable, which was changed since: it
    says so and writes nothing. Was: the newer `set` of that integration was taken for the change
    to undo, and reverted (the caller's alias lost, undone by a command sent before it)."""
    control = w.control
    settings = settings_for(w, tmp_path)
    target = await call(control.create_incoming_integration, "undo-same", channel="#ops", created_by="admin")
    async with running_bot(settings):
        disable = await call(control.post_message, "admin", "ops", "!integration disable undo-same")
        assert "Disabled" in (await answer_to(w, tmp_path, disable))["msg"]
    undo = await call(control.post_message, "admin", "ops", "!integration undo")
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        before = await interrupted(state, w, undo, target)  # killed here: its write was never sent
        # The newer change, through another replica: the same integration's alias, audited.
        later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
        await call(control.update_integration, target["_id"], {"alias": "newer", "_updatedAt": later})
        now = await call(control.integration, target["_id"])
        await state.record(
            AuditRecord(
                at=datetime.now(UTC),
                actor_id=undo["u"]["_id"],
                actor_username="admin",
                integration_id=target["_id"],
                integration_name=target["name"],
                integration_type=target["type"],
                action="set",
                room_id=undo["rid"],
                message_id="newer-set",
                before=before,
                after=now,
            )
        )
    finally:
        await state.close()
    async with running_bot(settings):
        answer = await answer_to(w, tmp_path, undo)
    stored = await call(control.integration, target["_id"])
    assert (stored["alias"], stored["enabled"]) == ("newer", False), answer["msg"]
    assert "did not undo" in answer["msg"] and "`disable`" in answer["msg"], answer["msg"]
