"""A command resumed after a crash (its write sent by the process that died) while the state
database fails again: through the running bot (in-process) against the sandbox. It must not be
answered "nothing was changed": the earlier run's write landed. It is left for the recovery,
which answers it from the journal once the database answers.

Was (found by the chaos test with three replicas: a replica killed right after its write, the
database restarted while another replica resumed the command): the resumed run had sent nothing
itself, so its state failure was answered "⏳ I can't record commands right now, so I did not
run this one; nothing was changed" while the integration had been disabled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from reliability_support import World, call, running_bot, settings_for, until, world

from bot.errors import StateUnavailable
from bot.integrations.service import intended_document
from bot.runtime.journal import current_command
from bot.state.store import StateStore, WriteIntent, read_message_ids


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


async def test_a_resumed_command_whose_journal_cannot_be_read_is_not_answered_nothing_changed(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = await call(w.control.create_incoming_integration, "resumed", channel="#ops", created_by="admin")
    settings = settings_for(w, tmp_path, bot_claim_lease=3)
    async with running_bot(settings):
        pass  # a first run: the state file exists, with cursors
    command = await call(w.control.post_message, "admin", "ops", f"!integration disable {target['_id']}")
    # What a kill -9 right after the write leaves: the claim, the intent, the integration written.
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        sent = datetime.fromisoformat(command["ts"].replace("Z", "+00:00"))
        assert await state.claim_messages([(command["_id"], command["rid"], sent)], datetime.now(UTC))
        before = await call(w.control.integration, target["_id"])
        intended = intended_document(before, {"enabled": False})
        assert await state.record_intent(
            WriteIntent(command["_id"], target["_id"], datetime.now(UTC), before, intended)
        )
    finally:
        await state.close()
    await call(w.control.update_integration, target["_id"], {"enabled": False})

    failing = [True]
    original = StateStore.intents

    async def intents(self: StateStore, message_id: str) -> Any:
        # The resumed run's reads of its journal fail; the recovery's decision before it (which
        # reads the intents' author) has been made: a decision that fails is only made later.
        if failing[0] and current_command.get() is not None:
            raise StateUnavailable("test", "the database restarted")
        return await original(self, message_id)

    monkeypatch.setattr(StateStore, "intents", intents)
    ids = read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])
    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings):
            await until(lambda: any(e["event"] == "command.unsettled" for e in captured), timeout=15, what="unsettled")
            assert [m for m in await call(w.control.messages, "ops") if m["_id"] in ids] == []
            failing[0] = False  # the database answers again: the recovery decides it from the journal
            answer = await call(w.control.wait_for_message, "ops", lambda m: m["_id"] in ids, timeout=15)
    assert "Disabled" in answer["msg"] and "nothing was changed" not in answer["msg"]
    assert (await call(w.control.integration, target["_id"]))["enabled"] is False
