"""A due timed disable while another replica is stalled in the middle of a batch on the same
integration (SIGSTOP, a frozen VM: bot/state/postgres.py, "Stalled replicas").

The stalled replica was closing a command whose write of the integration it never verified: its
close marks the integration's `integration_writes` row pending, and holds that row until it
resumes. The re-enable marks the same row pending before its write, and gives up after the
store's `lock_timeout` (`StateBusy`): nothing was written. That is a failure to try again (the
scheduler puts the timer aside), never the end of the timer: the integration is turned back on
once the row is free, and nobody is told it could not be.

PostgreSQL only (a row lock held across replicas); the rig is tests/bot/incident/test_timer_replicas.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.errors import StateUnavailable
from bot.incident.timers import Expiry
from bot.state.store import AuditRecord, StateStore, WriteIntent
from bot.state.timer_states import TimerState
from sandbox.control import incoming_integration_document
from tests.bot.incident.test_timer_replicas import (
    DUE,
    START,
    Cluster,
    assert_re_enabled_once,
    cluster_on,
    timed_disable,
)
from tests.bot.state.test_postgres_stalled_batches import MARK_FROM_INTENTS, stopped_after

LOCK_TIMEOUT = 0.5


@pytest.fixture
async def cluster(postgres_url: str) -> AsyncIterator[Cluster]:
    async with cluster_on("postgresql", postgres_url) as found:
        yield found


async def stalled_on(cluster: Cluster, integration_id: str) -> StateStore:
    """Another replica, whose command journaled a write of the integration and never verified it
    (its close will mark the integration pending)."""
    stalled = await StateStore.connect(cluster.where, owner="stalled", lock_timeout=LOCK_TIMEOUT)
    now = cluster.clock.now()
    assert await stalled.claim_messages([("unverified", cluster.room_id, now)], now) == {"unverified"}
    assert await stalled.record_intent(WriteIntent("unverified", integration_id, now, {"enabled": False}, {}))
    return stalled


async def test_a_due_timer_behind_a_replica_stalled_on_its_integration_is_tried_again_not_given_up(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await cluster.replica(lock_timeout=LOCK_TIMEOUT)
    timer = await timed_disable(cluster, through=a)
    stalled = await stalled_on(cluster, timer.integration_id)
    try:
        cluster.advance_to(timer.due_at)
        async with stopped_after(monkeypatch, MARK_FROM_INTENTS) as reached:
            closing = asyncio.create_task(stalled.finish_message("unverified", "done"))
            await asyncio.wait_for(reached.wait(), 5)
            # A failure the scheduler retries (bot/incident/scheduler.py), not an ending.
            with pytest.raises(StateUnavailable):
                await asyncio.wait_for(a.timers.expire(timer), 10)
            assert cluster.doc(timer.integration_id)["enabled"] is False  # nothing written
            still = await a.state.timers.get(timer.id)
            assert still is not None and still.state is TimerState.ACTIVE
            assert cluster.notices() == []
            assert await cluster.endings(a.state) == []
        assert await closing is True
        # The replica resumed: the next try turns it back on, once.
        assert await asyncio.wait_for(a.timers.expire(timer), 10) is not None
        await assert_re_enabled_once(cluster, timer, a.state)
    finally:
        await stalled.close()


async def test_a_re_enable_whose_lock_release_gives_up_behind_a_stalled_replica_is_still_told(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica stalls once the re-enable was written (its audit row and the timer's ending are
    recorded under the lock): the release's record of the write gives up behind it. The ending
    stands (the write's trace is the pending mark stored before it), and the room hears it."""
    a = await cluster.replica(lock_timeout=LOCK_TIMEOUT)
    timer = await timed_disable(cluster, through=a)
    stalled = await stalled_on(cluster, timer.integration_id)
    record = a.timers._record
    closing: list[asyncio.Task[bool]] = []
    try:
        async with stopped_after(monkeypatch, MARK_FROM_INTENTS) as reached:

            async def stall_then_record(*args: Any, **kwargs: Any) -> AuditRecord:
                # Under the lock, after the write: the other replica begins its close and stops.
                closing.append(asyncio.create_task(stalled.finish_message("unverified", "done")))
                await asyncio.wait_for(reached.wait(), 5)
                return await record(*args, **kwargs)

            monkeypatch.setattr(a.timers, "_record", stall_then_record)
            cluster.advance_to(timer.due_at)
            try:
                expiry: Expiry | None = await asyncio.wait_for(a.timers.expire(timer), 10)
            except StateUnavailable:
                expiry = None  # as the scheduler would: put aside, then tried again
            if expiry is None:
                assert await asyncio.wait_for(a.timers.expire(timer), 10) is None  # ended already
        assert await closing[0] is True
        await assert_re_enabled_once(cluster, timer, a.state)
    finally:
        await stalled.close()


async def test_a_flood_guards_disable_whose_lock_release_gives_up_behind_a_stalled_replica_stands(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flood guard's timed disable was written, audited and its timer confirmed under the lock;
    only the release's record of the write gave up behind the stalled replica: it is a timed
    disable made (the flood notice says so, the scheduler turns it back on), not one refused."""
    a = await cluster.replica(lock_timeout=LOCK_TIMEOUT)
    doc = incoming_integration_document(cluster.sandbox, "Pager", channel="#ops", alias="pager", created_by="boss")
    hook = cluster.sandbox.insert_integration(doc)
    stalled = await stalled_on(cluster, str(hook["_id"]))
    record = a.state.record
    closing: list[asyncio.Task[bool]] = []
    try:
        async with stopped_after(monkeypatch, MARK_FROM_INTENTS) as reached:

            async def stall_then_record(entry: AuditRecord) -> int:
                # Under the lock, after the write: the other replica begins its close and stops.
                closing.append(asyncio.create_task(stalled.finish_message("unverified", "done")))
                await asyncio.wait_for(reached.wait(), 5)
                return await record(entry)

            monkeypatch.setattr(a.state, "record", stall_then_record)
            timer = await asyncio.wait_for(
                a.timers.disable_by_bot(
                    hook, until=START + DUE, reason="flood", room_id=cluster.room_id, key="flood-pager"
                ),
                10,
            )
        assert await closing[0] is True
        assert timer is not None and timer.state is TimerState.ACTIVE
        assert cluster.doc(timer.integration_id)["enabled"] is False
        assert [r.action for r in await a.state.history()] == ["disable"]
    finally:
        await stalled.close()
