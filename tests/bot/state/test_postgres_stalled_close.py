"""A replica stalled in the middle of closing a command's claim (SIGSTOP, a frozen VM or container,
a starved CPU) holds no other replica's claims up.

Closing a claim is a pipeline of statements (`StateStore.finish_message`, `record_finishing`): on a
connection in autocommit they are one implicit transaction until the pipeline's Sync, and each is
sent as it is executed, so a process that stops between them leaves that transaction open on the
server, the claim's row locked, for as long as it is stopped. Another replica that claims the same
command (it heard it late, after a pause or a reconnection, and it is its caller's home) must not
wait for that transaction: its claims are one statement for everything it heard at once, and its
intake waits for that statement, so every command after it went unclaimed for as long as the other
replica stayed stopped (e2e: a bulk `yes` through the other replica went unanswered for 10 s).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.state.store import StateStore
from tests.bot.state.test_postgres_stalled_batches import stopped_after

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CLOSE = "UPDATE processed_messages SET status"


async def test_a_claim_is_not_held_up_by_a_replica_stalled_while_closing_that_command(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled = await StateStore.connect(postgres_url, owner="stalled")
    other = await StateStore.connect(postgres_url, owner="other")
    try:
        assert await stalled.claim_messages([("answered", "GENERAL", NOW)], NOW) == {"answered"}
        async with stopped_after(monkeypatch, CLOSE) as reached:
            closing = asyncio.create_task(stalled.finish_message("answered", "done"))
            await asyncio.wait_for(reached.wait(), 5)  # stopped between two statements of its pipeline
            # The other replica hears that command late, with a new one after it.
            heard = [("answered", "GENERAL", NOW), ("next", "GENERAL", NOW)]
            claimed = await asyncio.wait_for(other.claim_messages(heard, NOW), 3)
        assert claimed == {"next"}
        assert await closing is True
        assert await other.message_status("answered") == "done"
    finally:
        await stalled.close()
        await other.close()
