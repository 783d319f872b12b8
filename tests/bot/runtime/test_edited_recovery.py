"""A command whose write landed before the bot was killed, and whose message its caller edited
before the restart looked at it: through the running bot (in-process) against the sandbox.

Was: answered "I did not run it again: it was edited since", with no audit row, while its change
had been made (`history` and `undo` did not know it). Now the restart answers it from the text it
had when it ran (kept with its write intent), audits the change that landed, and sends no write:
neither again, nor one that had not landed (the message now says something else).

A message another user posted at the command's id (once it was deleted), edited or not, is not that
command: the restart closes it without answering or auditing anything as theirs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from reliability_support import BOT, World, call, running_bot, settings_for, world

from bot.integrations.service import intended_document
from bot.state.group_store import GroupDraft
from bot.state.store import StateStore, WriteIntent, read_message_ids

TIMEOUT = 15.0


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


async def started_once(w: World, tmp_path: Path) -> Any:
    settings = settings_for(w, tmp_path)
    async with running_bot(settings):
        pass  # a first run: the state file exists, with its key and cursors
    return settings


async def killed_after_writing(
    w: World,
    tmp_path: Path,
    command: dict[str, Any],
    targets: list[dict[str, Any]],
    *,
    landed: int,
    edited_to: str | None = "!integration enable something else",
) -> None:
    """What a kill -9 after the first `landed` writes leaves: the claim, an intent per target (with
    the command's text and author), those integrations written; the caller then edits the message
    (to `edited_to`, unless None)."""
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        sent = datetime.fromisoformat(command["ts"].replace("Z", "+00:00"))
        assert await state.claim_messages([(command["_id"], command["rid"], sent)], datetime.now(UTC))
        for target in targets:
            before = await call(w.control.integration, target["_id"])
            intent = WriteIntent(
                command["_id"],
                target["_id"],
                datetime.now(UTC),
                before,
                intended_document(before, {"enabled": False}),
                text=command["msg"],
                author=command["u"]["_id"],
            )
            assert await state.record_intent(intent)
        if len(targets) > 1:  # a bulk command records its group before its first write
            await state.groups.create(
                GroupDraft(
                    created_at=sent,
                    actor_id=command["u"]["_id"],
                    actor_username=command["u"]["username"],
                    selector='matching "edited-bulk-*"',
                    message_id=command["_id"],
                    glob="edited-bulk-*",
                    room_id=command["rid"],
                )
            )
    finally:
        await state.close()
    for target in targets[:landed]:
        await call(w.control.update_integration, target["_id"], {"enabled": False})
    if edited_to is not None:
        await call(w.control.edit_message, command["_id"], edited_to)


async def audited(tmp_path: Path, integration_id: str) -> list[tuple[str | None, str]]:
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        return [(r.message_id, r.action) for r in await state.history(integration_ids=[integration_id], limit=10)]
    finally:
        await state.close()


async def actors(tmp_path: Path, integration_id: str) -> list[str]:
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        return [r.actor_username for r in await state.history(integration_ids=[integration_id], limit=10)]
    finally:
        await state.close()


def answer_ids(tmp_path: Path, command: dict[str, Any]) -> tuple[str, ...]:
    return read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])


async def answer_to(w: World, tmp_path: Path, command: dict[str, Any]) -> dict[str, Any]:
    wanted = answer_ids(tmp_path, command)
    return await call(
        w.control.wait_for_message,
        command["rid"],
        lambda m: m["_id"] in wanted and m["u"]["username"] == BOT,
        TIMEOUT,
    )


async def closed(state: StateStore, message_id: str) -> None:
    """Until the command's claim is closed (its recovery done); a functional deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while await state.message_status(message_id) == "claimed":
        if loop.time() > deadline:
            raise TimeoutError(f"the claim of {message_id} was not closed")
        await asyncio.sleep(0.05)


def writes(w: World) -> int:
    return int(w.control.counters().rest.get("integrations.update", 0))


async def test_an_edited_command_whose_write_landed_is_answered_and_audited_as_it_ran(w: World, tmp_path: Path) -> None:
    settings = await started_once(w, tmp_path)
    target = await call(w.control.create_incoming_integration, "edited-landed", channel="#ops", created_by="admin")
    command = await call(w.control.post_message, "admin", "ops", "!integration disable edited-landed because noisy")
    await killed_after_writing(w, tmp_path, command, [target], landed=1)
    sent = writes(w)
    async with running_bot(settings):
        answer = await answer_to(w, tmp_path, command)
        shown = await call(w.control.post_message, "admin", "ops", "!integration history edited-landed")
        history = await answer_to(w, tmp_path, shown)
    assert "edited" in answer["msg"] and "Disabled" in answer["msg"], answer["msg"]
    assert "did not run it again" not in answer["msg"]
    assert writes(w) == sent  # not written again
    assert await audited(tmp_path, target["_id"]) == [(command["_id"], "disable")]
    assert "noisy" in history["msg"], history["msg"]


async def test_an_answered_edited_command_gets_its_audit_row_without_a_second_answer(w: World, tmp_path: Path) -> None:
    """Killed between its answer and its audit row (commands/followups.py), then edited."""
    settings = await started_once(w, tmp_path)
    target = await call(w.control.create_incoming_integration, "edited-answered", channel="#ops", created_by="admin")
    command = await call(w.control.post_message, "admin", "ops", "!integration disable edited-answered")
    await killed_after_writing(w, tmp_path, command, [target], landed=1)
    first = answer_ids(tmp_path, command)[0]
    await call(w.control.post_message, BOT, "ops", "Disabled edited-answered", message_id=first)
    sent = writes(w)
    async with running_bot(settings) as (bot, _):
        state = bot.state
        assert state is not None
        await closed(state, command["_id"])
    assert await audited(tmp_path, target["_id"]) == [(command["_id"], "disable")]
    answers = [m for m in await call(w.control.messages, "ops") if m["_id"] in answer_ids(tmp_path, command)]
    assert [m["msg"] for m in answers] == ["Disabled edited-answered"]  # no second visible answer
    assert writes(w) == sent


async def test_an_edited_bulk_command_reports_its_landed_members_and_writes_no_other(w: World, tmp_path: Path) -> None:
    settings = await started_once(w, tmp_path)
    targets = [
        await call(w.control.create_incoming_integration, f"edited-bulk-{n}", channel="#ops", created_by="admin")
        for n in ("a", "b")
    ]
    command = await call(
        w.control.post_message, "admin", "ops", '!integration disable all matching "edited-bulk-*" --yes'
    )
    await killed_after_writing(w, tmp_path, command, targets, landed=1)  # killed before the second write
    sent = writes(w)
    async with running_bot(settings):
        answer = await answer_to(w, tmp_path, command)
    text = answer["msg"]
    assert "edited" in text and "Switched off 1 of 2" in text, text
    assert "edited-bulk-b" in text.split("Not switched off, as your message was edited since", 1)[1], text
    assert writes(w) == sent  # the member not written is not written now: the message says something else
    assert (await call(w.control.integration, targets[1]["_id"]))["enabled"] is True
    assert await audited(tmp_path, targets[0]["_id"]) == [(command["_id"], "disable")]
    assert await audited(tmp_path, targets[1]["_id"]) == []


@pytest.mark.parametrize("edited", [False, True], ids=["unedited", "edited"])
async def test_another_users_message_at_the_id_of_a_command_whose_write_landed_gets_no_credit(
    w: World, tmp_path: Path, edited: bool
) -> None:
    """Admin's `disable` of owen's integration landed, the bot was killed before its audit row;
    admin's message was deleted and owen posted one with its id (any unused id may be taken,
    contract gotcha 26): the same command, or another edited since. Was: resumed as owen's, the
    change audited and answered as his (`history` named him, `undo` was his); edited, admin's
    stored text ran as owen's command. Now it is not that command: closed, nobody answered."""
    settings = await started_once(w, tmp_path)
    name = f"replaced-{'edited' if edited else 'unedited'}"
    target = await call(w.control.create_incoming_integration, name, channel="#ops", created_by="owen")
    said = f"!integration disable {name} because noisy"
    command = await call(w.control.post_message, "admin", "ops", said)
    await killed_after_writing(w, tmp_path, command, [target], landed=1, edited_to=None)
    await call(w.control.delete_message, command["_id"])
    await call(w.control.post_message, "owen", "ops", said, message_id=command["_id"])
    if edited:
        await call(w.control.edit_message, command["_id"], "!integration help")
    sent = writes(w)
    async with running_bot(settings) as (bot, _):
        state = bot.state
        assert state is not None
        await closed(state, command["_id"])
    assert await actors(tmp_path, target["_id"]) == []  # no row naming owen (nor anyone) as its author
    from_bot = [m for m in await call(w.control.messages, "ops") if m["u"]["username"] == BOT]
    assert [m["msg"] for m in from_bot if m["_id"] in answer_ids(tmp_path, command) or "owen" in m["msg"]] == []
    assert writes(w) == sent  # the integration is left as the landed write made it
    assert (await call(w.control.integration, target["_id"]))["enabled"] is False
