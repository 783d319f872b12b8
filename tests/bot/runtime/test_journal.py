"""The write journal: a resumed command never applies its change twice (against the sandbox)."""

from __future__ import annotations

import copy
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_support import World, call, world

from bot.errors import ClaimTakenOver, EditedSince, VerificationFailed
from bot.integrations.authz import CallerRights, RightsCache
from bot.rocketchat.models import Integration
from bot.runtime.journal import CommandRun, JournaledIntegrationService, Judgement, current_command, judge
from bot.state.store import AuditRecord, StateStore, WriteIntent

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DOC = {"_id": "i1", "type": "webhook-incoming", "name": "Hook", "enabled": True, "channel": ["#general"]}


def intent(before: dict[str, Any], intended: dict[str, Any]) -> WriteIntent:
    return WriteIntent("m1", "i1", NOW, before, intended)


def test_judge_an_intent_by_the_document_as_it_is_now() -> None:
    before = {**DOC, "_updatedAt": "2026-11-24T11:00:00.000Z"}
    intended = {**before, "enabled": False}
    landed = {**intended, "_updatedAt": "2026-11-24T12:00:00.000Z", "_updatedBy": {"_id": "bot"}}
    assert judge(intent(before, intended), landed) is Judgement.LANDED
    assert judge(intent(before, intended), copy.deepcopy(before)) is Judgement.NOT_LANDED
    someone_else = {**before, "alias": "changed", "_updatedAt": "2026-11-24T12:01:00.000Z"}
    assert judge(intent(before, intended), someone_else) is Judgement.SUPERSEDED


async def test_intents_are_stored_per_message_and_cleared(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    assert await state.claim_message("m1", "R", NOW, NOW)
    assert await state.record_intent(intent(DOC, {**DOC, "enabled": False}))
    assert await state.record_intent(intent(DOC, {**DOC, "enabled": True}))  # a retry replaces the first
    stored = await state.intents("m1")
    assert len(stored) == 1 and stored[0].intended["enabled"] is True and stored[0].before == DOC
    assert await state.intents("m2") == []
    assert await state.prune_intents() == 0  # its command is still unfinished
    await state.finish_message("m1", "ok")  # drops its intents
    assert await state.intents("m1") == []
    assert not await state.record_intent(intent(DOC, DOC))  # no claim of this process's: no write either
    assert await state.intents("m1") == []
    await state.close()


async def test_an_audit_row_is_recorded_once_per_command_integration_and_action(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    row = AuditRecord(
        at=NOW,
        actor_id="u1",
        actor_username="alice",
        integration_id="i1",
        integration_name="Hook",
        integration_type="webhook-incoming",
        action="disable",
        message_id="m1",
        before=DOC,
        after={**DOC, "enabled": False},
    )
    first = await state.record(row)
    assert await state.record(row) == first  # the same command, resumed after a crash
    other = await state.record(dataclasses.replace(row, action="enable"))
    assert other != first
    no_message = dataclasses.replace(row, message_id=None)
    assert await state.record(no_message) != await state.record(no_message)
    assert len(await state.history(integration_ids=["i1"])) == 4
    await state.close()


# --- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_world() -> Iterator[World]:
    with world() as w:
        yield w


@pytest.fixture
async def parts(sandbox_world: World, tmp_path: Path) -> AsyncIterator[tuple[JournaledIntegrationService, Any, Any]]:
    state = await StateStore.open(tmp_path / "s.db")
    rest = sandbox_world.rest()
    service = JournaledIntegrationService(rest, state, lambda: datetime.now(UTC))
    rights = await RightsCache(rest).get(sandbox_world.creds("admin")["userId"])
    yield service, state, rights
    await rest.aclose()
    await state.close()


def updates(w: World) -> int:
    return w.control.counters().rest.get("integrations.update", 0)


async def fresh_hook(w: World, name: str) -> dict[str, Any]:
    return await call(w.control.create_incoming_integration, name, channel="#general", alias="keep-me", emoji=":ghost:")


async def claimed(state: StateStore, message_id: str) -> None:
    """The command's claim, as the runtime makes it before running it (kept when already made)."""
    await state.claim_message(message_id, "R", NOW, NOW)


async def disable_as(
    service: JournaledIntegrationService,
    state: StateStore,
    rights: CallerRights,
    message_id: str,
    target: Any,
    *,
    recovering: bool,
    text: str | None = None,
    author: str | None = None,
    edited: bool = False,
) -> Any:
    await claimed(state, message_id)
    token = current_command.set(CommandRun(message_id, recovering, text=text, author=author, edited=edited))
    try:
        return await service.set_enabled(target, False, rights=rights)
    finally:
        current_command.reset(token)


async def test_a_write_records_its_intent_first(sandbox_world: World, parts: Any) -> None:
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-intent")
    outcome = await disable_as(service, state, rights, "cmd-1", hook["_id"], recovering=False)
    assert outcome.changed and outcome.after.enabled is False
    [stored] = await state.intents("cmd-1")
    assert stored.integration_id == hook["_id"]
    assert stored.before["enabled"] is True and stored.intended["enabled"] is False
    assert stored.before["alias"] == "keep-me"


async def test_a_resumed_command_whose_write_landed_does_not_write_again(sandbox_world: World, parts: Any) -> None:
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-landed")
    await disable_as(service, state, rights, "cmd-2", hook["_id"], recovering=False)  # then "the process died"
    assert await service.landed("cmd-2")
    before = updates(sandbox_world)
    again = await disable_as(service, state, rights, "cmd-2", "journal-landed", recovering=True)
    assert updates(sandbox_world) == before
    # The command sees the change it made, not "already disabled": it answers and audits as usual.
    assert again.changed and again.before.enabled is True and again.after.enabled is False
    stored = await call(sandbox_world.control.integration, hook["_id"])
    assert stored["enabled"] is False and stored["alias"] == "keep-me"


async def test_a_resumed_command_whose_write_never_landed_writes_once(sandbox_world: World, parts: Any) -> None:
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-lost")
    async with sandbox_world.rest() as rest:
        document = await rest.integrations_get(hook["_id"])
    intended = {**document, "enabled": False}
    await claimed(state, "cmd-3")
    await state.record_intent(WriteIntent("cmd-3", hook["_id"], NOW, document, intended))  # died mid-PUT
    assert not await service.landed("cmd-3")
    before = updates(sandbox_world)
    outcome = await disable_as(service, state, rights, "cmd-3", Integration.of(document), recovering=True)
    assert updates(sandbox_world) == before + 1
    assert outcome.changed and outcome.after.enabled is False


async def test_a_write_records_the_text_of_its_command(sandbox_world: World, parts: Any) -> None:
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-text")
    said = "!integration disable journal-text"
    await disable_as(service, state, rights, "cmd-t", hook["_id"], recovering=False, text=said)
    assert [i.text for i in await state.intents("cmd-t")] == [said]
    assert await service.said("cmd-t") == said


async def test_a_write_records_the_author_of_its_command(sandbox_world: World, parts: Any) -> None:
    """Read back by a restart: another user's message at its id is not that command (recovery)."""
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-author")
    await disable_as(service, state, rights, "cmd-a", hook["_id"], recovering=False, author="u-admin")
    assert [i.author for i in await state.intents("cmd-a")] == ["u-admin"]
    assert await service.author("cmd-a") == "u-admin"
    assert await service.author("cmd-none") is None  # no intent: nothing to compare with


@pytest.mark.parametrize("journaled", [True, False], ids=["not-landed", "never-reached"])
async def test_a_command_resumed_as_it_ran_before_an_edit_sends_no_new_write(
    sandbox_world: World, parts: Any, journaled: bool
) -> None:
    """Its message was edited since (bot/runtime/recovery.py): a write of it that did not land,
    or one it had not reached, is not made now."""
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, f"journal-edited-{journaled}")
    async with sandbox_world.rest() as rest:
        document = await rest.integrations_get(hook["_id"])
    await claimed(state, "cmd-e")
    if journaled:
        await state.record_intent(WriteIntent("cmd-e", hook["_id"], NOW, document, {**document, "enabled": False}))
    before = updates(sandbox_world)
    with pytest.raises(EditedSince):
        await disable_as(service, state, rights, "cmd-e", hook["_id"], recovering=True, edited=True)
    assert updates(sandbox_world) == before
    assert (await call(sandbox_world.control.integration, hook["_id"]))["enabled"] is True


async def test_a_resumed_command_overtaken_by_someone_else_changes_nothing(sandbox_world: World, parts: Any) -> None:
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-superseded")
    async with sandbox_world.rest() as rest:
        document = await rest.integrations_get(hook["_id"])
    await claimed(state, "cmd-4")
    await state.record_intent(WriteIntent("cmd-4", hook["_id"], NOW, document, {**document, "enabled": False}))
    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    await call(sandbox_world.control.update_integration, hook["_id"], {"alias": "theirs", "_updatedAt": later})
    before = updates(sandbox_world)
    with pytest.raises(VerificationFailed) as caught:
        await disable_as(service, state, rights, "cmd-4", hook["_id"], recovering=True)
    assert "enabled" in caught.value.differences
    assert updates(sandbox_world) == before
    stored = await call(sandbox_world.control.integration, hook["_id"])
    assert stored["enabled"] is True and stored["alias"] == "theirs"


async def test_a_command_taken_over_by_another_process_writes_nothing(sandbox_world: World, parts: Any) -> None:
    """Was: a replica paused past its claim's lease went on with the command once resumed and
    wrote it, while the replica that had taken the claim over ran it too."""
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-taken-over")
    await claimed(state, "cmd-t")
    # Another replica took the claim over (its lease ran out while this process was paused).
    await state.database.count("UPDATE processed_messages SET owner = 'host/2/other' WHERE message_id = 'cmd-t'")
    before = updates(sandbox_world)
    with pytest.raises(ClaimTakenOver):
        await disable_as(service, state, rights, "cmd-t", hook["_id"], recovering=False)
    assert updates(sandbox_world) == before
    assert await state.intents("cmd-t") == []
    stored = await call(sandbox_world.control.integration, hook["_id"])
    assert stored["enabled"] is True


async def test_without_a_command_context_nothing_is_journaled(sandbox_world: World, parts: Any) -> None:
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-no-context")
    outcome = await service.set_enabled(hook["_id"], False, rights=rights)
    assert outcome.changed
    with sqlite3.connect(state.path) as db:
        rows = db.execute("SELECT count(*) FROM write_intents WHERE integration_id = ?", (hook["_id"],)).fetchone()
    assert rows == (0,)


async def test_a_verified_write_is_known_to_have_landed_after_the_integration_changed_again(
    sandbox_world: World, parts: Any
) -> None:
    """Was: a command killed after its answer and before its audit row, whose integration someone
    changed meanwhile (the person's next command, run by another replica), was judged "superseded"
    by its recovery: it was closed without its audit row. Its intent now says it was verified."""
    service, state, rights = parts
    hook = await fresh_hook(sandbox_world, "journal-verified")
    await disable_as(service, state, rights, "cmd-v", hook["_id"], recovering=False)  # then "the process died"
    [stored] = await state.intents("cmd-v")
    assert stored.verified is not None and stored.verified["enabled"] is False
    await call(sandbox_world.control.update_integration, hook["_id"], {"enabled": True, "alias": "changed since"})
    assert await service.landed("cmd-v") and await service.unrecorded("cmd-v")
    before = updates(sandbox_world)
    again = await disable_as(service, state, rights, "cmd-v", hook["_id"], recovering=True)
    assert updates(sandbox_world) == before  # not written again over the newer change
    assert again.changed and again.before.enabled is True and again.after.enabled is False
    assert again.after.document["alias"] == "keep-me"  # the document it wrote, for its audit row
