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
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bot.errors import StateBusy
from bot.state.store import AuditRecord, StateStore, WriteIntent

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


@pytest.mark.parametrize("journaled", [False, True], ids=["marked-pending-before-its-write", "recorded-in-its-release"])
async def test_a_change_is_not_held_up_by_a_replica_stalled_while_closing_a_command_on_that_integration(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, journaled: bool
) -> None:
    """Its trace before the write is the row's pending mark (a timed re-enable's, an undo's), or
    its command's write intent, and then its release records the verified write on the row in the
    lock's transaction (a command's)."""
    stalled = await StateStore.connect(postgres_url, owner="stalled", lock_timeout=LOCK_TIMEOUT)
    other = await StateStore.connect(postgres_url, owner="other", lock_timeout=LOCK_TIMEOUT)
    third = await StateStore.connect(postgres_url, owner="third", lock_timeout=LOCK_TIMEOUT)
    try:
        # The stalled replica's command journaled a write of the hook and never verified it.
        assert await stalled.claim_messages([("unverified", "GENERAL", NOW)], NOW) == {"unverified"}
        assert await stalled.record_intent(WriteIntent("unverified", "hook", NOW, {"enabled": True}, {}))

        async def change(store: StateStore) -> None:
            async with store.locks.hold("hook") as held:
                await held.writing(journaled=journaled)
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


async def test_the_claims_keepers_statements_never_wait_for_a_replica_stalled_while_closing_a_claim(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewing, taking over, releasing and pruning claims, and saying the replica is alive, only
    touch rows whose committed version is the replica's own, or closed, or skip the locked ones:
    never the claim a stalled close holds (none of them waits for the backstop either)."""
    stalled = await StateStore.connect(postgres_url, owner="stalled")
    other = await StateStore.connect(postgres_url, owner="other")
    later = NOW + other.lease * 2
    try:
        assert await stalled.claim_messages([("answered", "GENERAL", NOW)], NOW) == {"answered"}
        assert await other.claim_messages([("mine", "GENERAL", NOW)], NOW) == {"mine"}

        async def keeping() -> list[str]:
            assert await other.renew_claims(NOW, {"mine", "answered"}) == 1
            assert await other.replicas(60.0) == ["other"]
            taken = await other.take_over(later, expired_only=True)
            await other.release_claims()
            await other.prune_messages(later)
            return taken

        async with stopped_after(monkeypatch, "UPDATE processed_messages SET status") as reached:
            closing = asyncio.create_task(stalled.finish_message("answered", "done"))
            await asyncio.wait_for(reached.wait(), 5)
            # Both leases ran out by `later`: the stalled replica's claim, locked, is not taken.
            assert await asyncio.wait_for(keeping(), 3) == ["mine"]
        assert await closing is True
        assert await other.message_status("answered") == "done"
    finally:
        await stalled.close()
        await other.close()


async def test_a_command_taken_over_from_a_replica_stalled_while_recording_it_gives_up_on_its_audit_row(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stalled replica's audit row of the command is sent, not committed (its close next in the
    batch): the replica that took the command over, once its lease ran out, records the same row
    (a unique key), and waited for as long as the other stayed stopped; and its recovery of every
    command after that one with it. It gives up after the bound, and records it once it can: the
    row the stalled replica stored, once (its close refused: the claim is no longer its own)."""
    stalled = await StateStore.connect(postgres_url, owner="stalled", lock_timeout=LOCK_TIMEOUT)
    other = await StateStore.connect(postgres_url, owner="other", lock_timeout=LOCK_TIMEOUT)
    record = AuditRecord(
        at=NOW,
        actor_id="u1",
        actor_username="admin",
        integration_id="hook",
        integration_name="hook",
        integration_type="webhook-incoming",
        action="disable",
        message_id="command",
    )
    try:
        assert await stalled.claim_messages([("command", "GENERAL", NOW)], NOW) == {"command"}
        async with stopped_after(monkeypatch, "INSERT INTO audit") as reached:
            recording = asyncio.create_task(stalled.record_finishing(record, "done"))
            await asyncio.wait_for(reached.wait(), 5)
            assert await other.take_over(NOW + other.lease * 2, expired_only=True) == ["command"]
            with pytest.raises(StateBusy):
                await asyncio.wait_for(other.record(record), 5)
        row_id, closed = await recording
        assert not closed
        assert await other.record(record) == row_id
        assert [r.id for r in await other.history(integration_ids=["hook"])] == [row_id]
    finally:
        await stalled.close()
        await other.close()


async def test_waiting_for_another_replicas_lock_of_an_integration_is_never_cut_short_by_the_row_bound(
    postgres_url: str,
) -> None:
    """The bound is for rows; a change waits for the integration's lock as long as its holder
    holds it (bounded elsewhere: `LOCK_HELD_MAX`), even where the database sets `lock_timeout`
    for every session (as behind a PgBouncer, whose sessions do not follow their clients)."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        name = conninfo_to_dict(postgres_url)["dbname"]
        await admin.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout = '100ms'").format(sql.Identifier(name)))
    holder = await StateStore.connect(postgres_url, owner="holder", lock_timeout=LOCK_TIMEOUT)
    waiter = await StateStore.connect(postgres_url, owner="waiter", lock_timeout=LOCK_TIMEOUT)
    try:
        held, waited = asyncio.Event(), asyncio.Event()

        async def holding() -> None:
            async with holder.locks.hold("hook"):
                held.set()
                await asyncio.sleep(LOCK_TIMEOUT * 3)  # a slow REST write
                assert not waited.is_set()

        task = asyncio.create_task(holding())
        await asyncio.wait_for(held.wait(), 5)
        await asyncio.wait_for(held_once(waiter, "hook"), 10)
        waited.set()
        await task
    finally:
        await holder.close()
        await waiter.close()
