"""A resumed `set --yes` / `confirm` / `undo` whose write landed before a kill -9 (found in review).

bot/runtime/journal.py promises: "LANDED: the write is not sent again; the command gets the outcome it
would have had (changed=True), so it writes its audit row and answers exactly as if it had not
been interrupted". `enable`/`disable` reach the journal in `Edit.apply`; `set` planned on the
stored document (already changed: "already has those values"), `undo` saw a conflict and
`confirm` had lost its preview with the process, so they answered "nothing changed" and the change
had no audit row. They now ask `IntegrationService.resumed` first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from set_harness import Harness, open_harness

from bot.runtime.journal import CommandRun, JournaledIntegrationService, current_command
from commands import changes


class Killed(BaseException):
    """Stands for kill -9 right after the write landed, before its audit row."""


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_harness()
    services = harness.services
    services.integrations = JournaledIntegrationService(services.rest, services.state, harness.clock)
    try:
        yield harness
    finally:
        await harness.close()


async def _twice(h: Harness, monkeypatch: pytest.MonkeyPatch, text: str) -> Any:
    message, invocation = h.message("admin", "ops", text)
    real = changes.record

    async def killed(*args: Any, **kwargs: Any) -> int:
        raise Killed

    monkeypatch.setattr(changes, "record", killed)
    now = h.clock()
    assert await h.services.state.claim_message(message.id, message.room_id, now, now)  # as the runtime does
    token = current_command.set(CommandRun(message.id, recovering=False))
    try:
        with pytest.raises(Killed):
            await h.dispatcher.dispatch(message, invocation)
    finally:
        current_command.reset(token)
    monkeypatch.setattr(changes, "record", real)
    token = current_command.set(CommandRun(message.id, recovering=True))  # the restart resumes it
    try:
        return await h.dispatcher.dispatch(message, invocation)
    finally:
        current_command.reset(token)


async def test_a_resumed_set_whose_write_landed_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.control.create_incoming_integration("Resumed set", channel="#general", alias="old")
    reply = await _twice(h, monkeypatch, f"!integration set {hook['_id']} alias=new --yes")
    assert h.doc(hook["_id"])["alias"] == "new"  # the write landed
    rows = await h.services.state.history()
    assert reply.outcome == "changed", reply.text
    assert [r.action for r in rows] == ["set"]


async def test_a_resumed_undo_whose_write_landed_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.control.create_incoming_integration("Resumed undo", channel="#general")
    assert (await h.say("admin", "ops", f"!integration disable {hook['_id']}")).outcome == "changed"
    reply = await _twice(h, monkeypatch, "!integration undo")
    assert h.doc(hook["_id"])["enabled"] is True  # the undo's write landed
    assert reply.outcome == "changed", reply.text


async def test_a_resumed_confirm_whose_write_landed_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = h.control.create_incoming_integration("Resumed confirm", channel="#general", alias="old")
    preview = await h.say("admin", "ops", f"!integration set {hook['_id']} alias=new")
    assert preview.outcome == "preview", preview.text
    reply = await _twice(h, monkeypatch, "!integration yes")
    assert h.doc(hook["_id"])["alias"] == "new"  # the write landed
    assert "nothing was changed" not in reply.text, reply.text
