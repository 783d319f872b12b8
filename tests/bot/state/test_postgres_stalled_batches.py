"""A replica stalled in the middle of a batch (SIGSTOP, a frozen VM or container, a starved CPU)
holds the other replicas' statements up for a bounded time only.

A batch is a pipeline of statements, one implicit transaction until its Sync, each sent as it is
executed: a process that stops between two of them leaves that transaction open on the server, its
rows locked, for as long as it is stopped (`bot/state/postgres.py`, "Stalled replicas"). Closing a
command whose write was never verified marks its integration's `integration_writes` row pending;
another replica's change of that integration marks the same row before it writes, holding the
integration's lock in the database meanwhile. It waited for as long as the first replica stayed
stopped: the change never ended, and every replica's next change of that integration (a command, a
timed re-enable) waited behind its lock. It now gives up after the store's `lock_timeout`
(`StateBusy`: nothing was written), and the lock is free for the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from bot.errors import StateBusy
from bot.state.store import StateStore, WriteIntent

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
# The statement of a claim's close that marks its integrations pending (`StateStore._finishing`).
MARK_FROM_INTENTS = "INSERT INTO integration_writes (integration_id, pending) SELECT"
LOCK_TIMEOUT = 0.5


@asynccontextmanager
async def stopped_after(monkeypatch: pytest.MonkeyPatch, prefix: str) -> AsyncIterator[asyncio.Event]:
    """The first statement starting with `prefix` is sent, then its process stops (between two
    statements of its pipeline) until the block ends. Yields the event set once it stopped."""
    reached, resumed = asyncio.Event(), asyncio.Event()
    execute = psycopg.AsyncConnection.execute

    async def stopping(self: psycopg.AsyncConnection[Any], query: Any, *a: Any, **k: Any) -> Any:
        cursor = await execute(self, query, *a, **k)  # sent: the server runs it, then waits for the rest
        if isinstance(query, str) and query.startswith(prefix) and not reached.is_set():
            reached.set()
            await resumed.wait()
        return cursor

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", stopping)
    try:
        yield reached
    finally:
        resumed.set()


async def held_once(store: StateStore, integration_id: str) -> None:
    async with store.locks.hold(integration_id):
        pass


async def test_a_change_is_not_held_up_by_a_replica_stalled_while_closing_a_command_on_that_integration(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled = await StateStore.connect(postgres_url, owner="stalled", lock_timeout=LOCK_TIMEOUT)
    other = await StateStore.connect(postgres_url, owner="other", lock_timeout=LOCK_TIMEOUT)
    third = await StateStore.connect(postgres_url, owner="third", lock_timeout=LOCK_TIMEOUT)
    try:
        # The stalled replica's command journaled a write of the hook and never verified it.
        assert await stalled.claim_messages([("unverified", "GENERAL", NOW)], NOW) == {"unverified"}
        assert await stalled.record_intent(WriteIntent("unverified", "hook", NOW, {"enabled": True}, {}))

        async def change(store: StateStore) -> None:
            async with store.locks.hold("hook") as held:
                await held.writing()  # its trace before the write (a timed re-enable's, an undo's)
                held.written("2026-12-07T12:00:00.000Z")

        async with stopped_after(monkeypatch, MARK_FROM_INTENTS) as reached:
            closing = asyncio.create_task(stalled.finish_message("unverified", "done"))
            await asyncio.wait_for(reached.wait(), 5)
            with pytest.raises(StateBusy):
                await asyncio.wait_for(change(other), 5)
            # The hook's lock is free: the next change of it (through any replica) gets it.
            await asyncio.wait_for(held_once(third, "hook"), 5)
        assert await closing is True
        await asyncio.wait_for(change(third), 5)  # the stalled replica resumed: its row is free
        assert await third.recorded_write("hook") == "2026-12-07T12:00:00.000Z"
    finally:
        await stalled.close()
        await other.close()
        await third.close()
