"""An answered command's book-keeping: its audit row, then its claim's close, sent together (one
round trip on PostgreSQL). Through the running bot (in-process) against the sandbox: a claim is
never closed without the row, and when the two cannot be stored the claim stays open until they
are (a replica killed meanwhile leaves the row to the recovery of its command)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from reliability_support import World, call, running_bot, settings_for, until, world

from bot.errors import StateUnavailable
from bot.state.store import AuditRecord, StateStore


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


async def closed(state: StateStore, message_id: str, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    """Until the command's claim is closed (a functional deadline)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await state.message_status(message_id) != "done":
        assert asyncio.get_running_loop().time() < deadline, f"the claim of {message_id} was never closed"
        await asyncio.sleep(0.02)


async def test_a_claim_is_closed_with_its_audit_row_and_stays_open_while_that_fails(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await call(w.control.create_incoming_integration, "first", channel="#ops", created_by="admin")
    second = await call(w.control.create_incoming_integration, "second", channel="#ops", created_by="admin")
    failing = [False]
    original = StateStore.record_finishing

    async def record_finishing(self: StateStore, record: AuditRecord, outcome: str) -> Any:
        if failing[0]:
            raise StateUnavailable("test", "the database restarted")
        return await original(self, record, outcome)

    monkeypatch.setattr(StateStore, "record_finishing", record_finishing)
    settings = settings_for(w, tmp_path, bot_claim_lease=3)
    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings) as (bot, _task):
            state = bot.state
            assert state is not None
            done = await call(w.control.post_message, "admin", "ops", f"!integration disable {first['_id']}")
            await closed(state, done["_id"])
            assert [r.message_id for r in await state.history(integration_ids=[first["_id"]])] == [done["_id"]]

            failing[0] = True
            held = await call(w.control.post_message, "admin", "ops", f"!integration disable {second['_id']}")
            await until(lambda: any(e.get("event") == "command.unsettled" for e in captured), timeout=15)
            assert await state.message_status(held["_id"]) == "claimed"
            assert await state.history(integration_ids=[second["_id"]]) == []
            failing[0] = False  # the database answers again: the row, then the close
            await closed(state, held["_id"])
            assert [r.message_id for r in await state.history(integration_ids=[second["_id"]])] == [held["_id"]]
