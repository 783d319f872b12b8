"""Timed disables with several replicas on one state: every replica arms every timer (also the
ones set through another), exactly one of them re-enables a due one, once (one write, one audit
row, one notice), a timer outlives the replica it was set through, and a timer extended or ended
through one replica is never re-enabled early by another.

"Replicas" here are TimerService + Scheduler pairs, each with its own REST client and (on
PostgreSQL) its own `StateStore.connect` to one database, so their integration locks meet only in
the database, as two processes' would. On SQLite (one process) they share the one store, and a
replica "dying" means its store is closed and the file opened again. All against one sandbox
(served through `httpx.ASGITransport`, its writes counted); a `ManualClock` drives time; waits for
background schedulers are bounded polls of what they did, never a judgement on how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from bot.clock import ManualClock
from bot.incident.scheduler import Scheduler
from bot.incident.timers import Expiry, TimerService
from bot.incident.toolkit import SHARED_POLL
from bot.integrations.authz import RightsCache
from bot.integrations.service import IntegrationService
from bot.rocketchat.rest import RestClient
from bot.state.store import AuditRecord, StateStore
from bot.state.timer_states import TimedDisable, TimerEvent, TimerState
from bot.state.timer_store import TimerDraft, TimerStore
from sandbox.config import SandboxConfig
from sandbox.control import incoming_integration_document
from sandbox.faults import FaultMiddleware, Faults
from sandbox.rest import create_rest_app
from sandbox.store import Store

START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DUE = timedelta(minutes=30)


class Died(BaseException):
    """A replica stopping dead at a chosen point (as kill -9 would: nothing after it runs)."""


class ReplicaTimers(TimerService):
    """A TimerService that notes what its scheduler did: the rounds it ran (with the timers it
    saw) and the timers it finished handling, so a test can wait for both replicas' turns."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rounds: list[tuple[datetime, dict[int, TimedDisable]]] = []
        self.handled: list[int] = []
        self.die_before_audit = False

    async def active(self) -> list[TimedDisable]:
        timers = await super().active()
        self.rounds.append((self.clock.now(), {t.id: t for t in timers}))
        return timers

    async def expire(self, timer: TimedDisable) -> Expiry | None:
        try:
            return await super().expire(timer)
        finally:
            self.handled.append(timer.id)

    async def _record(self, timer: TimedDisable, action: str, *args: Any, **kwargs: Any) -> AuditRecord:
        if self.die_before_audit:
            raise Died
        return await super()._record(timer, action, *args, **kwargs)

    def saw_round_at(self, when: datetime) -> bool:
        return any(at >= when for at, _ in self.rounds)

    def settled(self, timer: TimedDisable, due: datetime) -> bool:
        """Whether this replica is done with `timer` at its due time `due`: it handled it, or it
        ran a round then and found it ended already (by the other replica)."""
        return timer.id in self.handled or any(at >= due and timer.id not in seen for at, seen in self.rounds)

    def sees(self, timer: TimedDisable) -> bool:
        return bool(self.rounds) and self.rounds[-1][1].get(timer.id) == timer


class DyingTimerStore(TimerStore):
    """Dies instead of recording the end of a re-enable (the write and its audit row were made)."""

    async def transition(self, timer: TimedDisable, event: TimerEvent, **kwargs: Any) -> TimedDisable | None:
        if event is TimerEvent.RE_ENABLED:
            raise Died
        return await super().transition(timer, event, **kwargs)


@dataclass
class Replica:
    state: StateStore
    rest: RestClient
    timers: ReplicaTimers
    scheduler: Scheduler
    owns_state: bool
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.scheduler.run())

    async def stop(self) -> None:
        """Gone: its scheduler stops where it is, its connections close."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.rest.aclose()
        if self.owns_state:
            await self.state.close()
            self.owns_state = False


@dataclass
class Cluster:
    backend: str
    where: str
    sandbox: Store
    app: Any
    faults: Faults
    clock: ManualClock
    bot_id: str
    room_id: str
    replicas: list[Replica] = field(default_factory=list)
    _sqlite: StateStore | None = None

    async def replica(self, *, dying_store: bool = False, lock_timeout: float | None = None) -> Replica:
        """A new replica. PostgreSQL: its own connections to the database (`lock_timeout`: how
        long its statements wait for a row, `StateStore.connect`). SQLite (one process): the one
        open store, opened again when every replica using it is gone."""
        if self.backend == "postgresql":
            state, owns = await StateStore.connect(self.where, lock_timeout=lock_timeout), True
        else:
            if self._sqlite is None or not any(r.owns_state for r in self.replicas if r.state is self._sqlite):
                self._sqlite, owns = await StateStore.open(self.where), True
            else:
                owns = False
            state = self._sqlite
        bot = self.sandbox.find_user("integrations-bot")
        assert bot is not None
        rest = RestClient(
            "http://sandbox.test",
            user_id=bot._id,
            auth_token=self.sandbox.create_login_token(bot._id),
            transport=httpx.ASGITransport(app=self.app),
        )
        timers = ReplicaTimers(
            store=DyingTimerStore(state.database) if dying_store else state.timers,
            state=state,
            rest=rest,
            integrations=IntegrationService(rest, locks=state.locks),
            rights=RightsCache(rest, ttl=0),
            bot_user_id=bot._id,
            bot_username="integrations-bot",
            clock=self.clock,
        )
        scheduler = Scheduler(timers, self.clock, poll=SHARED_POLL)
        timers.wake = scheduler.wake
        replica = Replica(state, rest, timers, scheduler, owns)
        self.replicas.append(replica)
        return replica

    def doc(self, integration_id: str) -> dict[str, Any]:
        found = self.sandbox.get_integration(integration_id)
        assert found is not None
        return found

    def updates(self) -> int:
        return self.faults.counters().rest.get("integrations.update", 0)

    def notices(self) -> list[dict[str, Any]]:
        return [m for m in self.sandbox.room_messages(self.room_id) if m["u"]["_id"] == self.bot_id]

    async def endings(self, state: StateStore) -> list[str]:
        return [r.action for r in await state.history() if r.action.startswith("re-enable")]

    def advance_to(self, when: datetime) -> None:
        self.clock.set(when)


@pytest.fixture(params=["sqlite", "postgresql"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    where = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else str(tmp_path / "state.sqlite3")
    )
    async with cluster_on(request.param, where) as found:
        yield found


@asynccontextmanager
async def cluster_on(backend: str, where: str) -> AsyncIterator[Cluster]:
    """A sandbox with the bot, an admin and a room, and the replicas started on `where`, stopped after."""
    sandbox = Store()
    faults = Faults()
    app = FaultMiddleware(create_rest_app(sandbox, SandboxConfig()), faults)
    bot = sandbox.create_user("integrations-bot", password="pw-bot", roles=["bot", "admin"])
    sandbox.create_user("boss", password="pw-boss", roles=["admin"])
    sandbox.create_user("rocket.cat", password="pw-cat", roles=["bot"])  # the webhooks' default poster
    room = sandbox.create_room("ops", "c", members=["integrations-bot", "boss"])
    found = Cluster(backend, where, sandbox, app, faults, ManualClock(START), bot._id, room["_id"])
    with stamina.set_testing(True, attempts=3):
        yield found
    for replica in reversed(found.replicas):
        await replica.stop()


async def until(what: str, condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Wait (bounded) for the background schedulers to have done something."""
    for _ in range(2000):
        met = condition()
        if met if isinstance(met, bool) else await met:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def timed_disable(cluster: Cluster, through: Replica) -> TimedDisable:
    """`disable Pager for 30m` run by `through`, in its order: claim the command, schedule,
    disable, confirm, finish. Afterwards the sandbox's counters start from zero."""
    assert await through.state.claim_message("command-1", cluster.room_id, cluster.clock.now(), cluster.clock.now())
    doc = incoming_integration_document(cluster.sandbox, "Pager", channel="#ops", alias="pager", created_by="boss")
    hook = str(cluster.sandbox.insert_integration(doc)["_id"])
    scheduled = await through.timers.schedule(
        TimerDraft(
            integration_id=hook,
            integration_name="Pager",
            integration_type="webhook-incoming",
            created_at=cluster.clock.now(),
            due_at=cluster.clock.now() + DUE,
            actor_id="boss-id",
            actor_username="boss",
            room_id=cluster.room_id,
            message_id="command-1",
        )
    )
    assert scheduled is not None
    rights = await through.timers._rights.get(cluster.bot_id)
    outcome = await IntegrationService(through.rest, locks=through.state.locks).apply_changes(
        hook, {"enabled": False}, rights=rights
    )
    confirmed = await through.timers.confirm(scheduled, outcome.after.document, audit_id=None)
    assert confirmed is not None and confirmed.state is TimerState.ACTIVE
    await through.state.finish_message("command-1", "disabled")
    cluster.faults.reset_counters()
    return confirmed


async def assert_re_enabled_once(cluster: Cluster, timer: TimedDisable, state: StateStore) -> None:
    assert cluster.doc(timer.integration_id)["enabled"] is True
    assert cluster.updates() == 1
    assert await cluster.endings(state) == ["re-enable"]
    (notice,) = cluster.notices()
    assert "is back on" in notice["msg"]
    ended = await state.timers.get(timer.id)
    assert ended is not None and ended.state is TimerState.EXPIRED


async def test_a_due_timer_is_re_enabled_once_although_both_replicas_fire_it(cluster: Cluster) -> None:
    a, b = await cluster.replica(), await cluster.replica()
    a.start()
    b.start()
    timer = await timed_disable(cluster, through=a)
    cluster.advance_to(START + SHARED_POLL)
    await until("B armed the timer set through A", lambda: b.timers.sees(timer))

    cluster.advance_to(timer.due_at)
    await until(
        "both replicas' turns", lambda: a.timers.settled(timer, timer.due_at) and b.timers.settled(timer, timer.due_at)
    )

    await assert_re_enabled_once(cluster, timer, b.state)


async def test_two_replicas_expiring_the_same_timer_at_once_write_it_once(cluster: Cluster) -> None:
    a, b = await cluster.replica(), await cluster.replica()
    timer = await timed_disable(cluster, through=a)
    cluster.advance_to(timer.due_at)

    results = await asyncio.gather(a.timers.expire(timer), b.timers.expire(timer))

    assert sorted(r is not None for r in results) == [False, True]
    await assert_re_enabled_once(cluster, timer, a.state)


async def test_a_timer_set_through_a_replica_that_is_gone_is_fired_by_another(cluster: Cluster) -> None:
    a = await cluster.replica()
    a.start()
    if cluster.backend == "postgresql":  # B runs all along, and never sees the command
        b = await cluster.replica()
        b.start()
    timer = await timed_disable(cluster, through=a)
    await a.stop()
    if cluster.backend == "sqlite":  # one process: the bot restarts on the same file
        b = await cluster.replica()
        b.start()

    cluster.advance_to(timer.due_at + timedelta(seconds=1))
    await until("B fired it", lambda: timer.id in b.timers.handled)

    await assert_re_enabled_once(cluster, timer, b.state)


async def test_extending_through_one_replica_moves_the_others_firing(cluster: Cluster) -> None:
    a, b = await cluster.replica(), await cluster.replica()
    a.start()
    b.start()
    timer = await timed_disable(cluster, through=a)
    cluster.advance_to(START + SHARED_POLL)
    await until("B armed the timer set through A", lambda: b.timers.sees(timer))
    armed_by_b = b.timers.rounds[-1][1][timer.id]

    extended = await a.timers.extend(timer, timer.due_at + DUE)
    assert extended is not None
    # B holding the row as it was armed, at the old due time: not re-enabled.
    cluster.advance_to(timer.due_at)
    assert await b.timers.expire(armed_by_b) is None
    b.timers.handled.clear()
    await until(
        "both replicas looked at the old due time",
        lambda: a.timers.saw_round_at(timer.due_at) and b.timers.saw_round_at(timer.due_at),
    )
    assert cluster.doc(timer.integration_id)["enabled"] is False
    assert cluster.updates() == 0 and cluster.notices() == []

    cluster.advance_to(extended.due_at)
    await until(
        "both replicas' turns",
        lambda: a.timers.settled(timer, extended.due_at) and b.timers.settled(timer, extended.due_at),
    )

    await assert_re_enabled_once(cluster, timer, a.state)


@pytest.mark.parametrize("how", ["ended early", "re-enabled by a command"])
async def test_a_timer_ended_early_through_one_replica_is_never_re_enabled_by_another(
    cluster: Cluster, how: str
) -> None:
    a, b = await cluster.replica(), await cluster.replica()
    b.start()
    timer = await timed_disable(cluster, through=a)
    cluster.advance_to(START + SHARED_POLL)
    await until("B armed the timer set through A", lambda: b.timers.sees(timer))
    armed_by_b = b.timers.rounds[-1][1][timer.id]

    if how == "ended early":
        assert await a.timers.end_early(timer, "disabled for good") is not None
    else:  # `enable Pager` through A: the write, then the timer follows it
        rights = await a.timers._rights.get(cluster.bot_id)
        outcome = await IntegrationService(a.rest, locks=a.state.locks).apply_changes(
            timer.integration_id, {"enabled": True}, rights=rights
        )
        await a.timers.follow_change(timer.integration_id, outcome.after.document, "enabled by boss")
    writes = cluster.updates()
    enabled = cluster.doc(timer.integration_id)["enabled"]

    cluster.advance_to(timer.due_at + timedelta(minutes=1))
    assert await b.timers.expire(armed_by_b) is None
    await until("B looked after the due time", lambda: b.timers.saw_round_at(timer.due_at))

    assert cluster.updates() == writes and cluster.doc(timer.integration_id)["enabled"] is enabled
    assert await cluster.endings(b.state) == [] and cluster.notices() == []
    ended = await b.state.timers.get(timer.id)
    assert ended is not None and ended.state is TimerState.CANCELLED


@pytest.mark.parametrize("where", ["after its write", "after its audit row"])
async def test_a_replica_dying_mid_re_enable_is_finished_by_another_once(cluster: Cluster, where: str) -> None:
    a = await cluster.replica(dying_store=where == "after its audit row")
    a.timers.die_before_audit = where == "after its write"
    timer = await timed_disable(cluster, through=a)
    cluster.advance_to(timer.due_at)
    with pytest.raises(Died):
        await a.timers.expire(timer)
    assert cluster.doc(timer.integration_id)["enabled"] is True  # the write landed
    still = await a.state.timers.get(timer.id)
    assert still is not None and still.state is TimerState.ACTIVE
    await a.stop()

    b = await cluster.replica()
    b.start()
    await until("B finished it", lambda: timer.id in b.timers.handled)

    await assert_re_enabled_once(cluster, timer, b.state)
