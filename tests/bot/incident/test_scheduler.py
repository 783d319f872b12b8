"""The scheduler with an injected clock: due timers expire at their time and not before, a restart
(a new scheduler) re-arms what the source holds, overdue ones go at once, transient failures are
retried with growing delays, anything else is logged and retried without stopping the loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.clock import ManualClock, SystemClock
from bot.errors import RateLimited, StateUnavailable, Unavailable
from bot.incident.scheduler import RetryPolicy, Scheduler
from bot.state.timer_states import TimedDisable, TimerState

START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def timer(timer_id: int, due_in: timedelta) -> TimedDisable:
    return TimedDisable(
        id=timer_id,
        revision=1,
        state=TimerState.ACTIVE,
        integration_id=f"i{timer_id}",
        integration_name=f"hook {timer_id}",
        integration_type="webhook-incoming",
        created_at=START,
        due_at=START + due_in,
        actor_id="u1",
        actor_username="alice",
    )


class MemorySource:
    """A timer source held in memory: `expire` ends a timer (or raises what `failures` says)."""

    def __init__(self, *timers: TimedDisable) -> None:
        self.timers = {t.id: t for t in timers}
        self.expired: list[tuple[int, datetime]] = []
        self.failures: dict[int, list[BaseException]] = {}
        self.recovered = 0
        self.unsettled = 0
        self.clock: ManualClock | None = None
        self.changed = asyncio.Event()

    async def recover(self) -> int:
        self.recovered += 1
        return self.unsettled

    async def active(self) -> list[TimedDisable]:
        return sorted(self.timers.values(), key=lambda t: t.due_at)

    async def expire(self, found: TimedDisable) -> None:
        pending = self.failures.get(found.id)
        if pending:
            raise pending.pop(0)
        assert self.clock is not None
        self.expired.append((found.id, self.clock.now()))
        del self.timers[found.id]
        self.changed.set()


def rig(*timers: TimedDisable) -> tuple[MemorySource, ManualClock, Scheduler]:
    clock = ManualClock(START)
    source = MemorySource(*timers)
    source.clock = clock
    return source, clock, Scheduler(source, clock, retry=RetryPolicy(first=timedelta(seconds=5)))


async def test_nothing_expires_before_its_time_and_each_at_its_time() -> None:
    source, clock, scheduler = rig(timer(1, timedelta(minutes=30)), timer(2, timedelta(minutes=10)))
    assert await scheduler.run_once() == START + timedelta(minutes=10)
    assert source.expired == []
    clock.advance(timedelta(minutes=10))
    assert await scheduler.run_once() == START + timedelta(minutes=30)
    assert source.expired == [(2, START + timedelta(minutes=10))]
    clock.advance(timedelta(minutes=19, seconds=59))
    await scheduler.run_once()
    assert [e[0] for e in source.expired] == [2]
    clock.advance(timedelta(seconds=1))
    assert await scheduler.run_once() is None
    assert [e[0] for e in source.expired] == [2, 1]


async def test_a_new_scheduler_handles_overdue_timers_at_once() -> None:
    # The bot was down when these were due; the database still holds them.
    source, _clock, scheduler = rig(timer(1, timedelta(minutes=-5)), timer(2, timedelta(hours=-1)))
    await scheduler.run_once()
    assert sorted(e[0] for e in source.expired) == [1, 2]
    assert source.recovered == 1


async def test_the_loop_sleeps_until_due_and_wakes_for_a_new_timer() -> None:
    source, clock, scheduler = rig(timer(1, timedelta(minutes=30)))
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(0)
        clock.advance(timedelta(minutes=29))
        await asyncio.sleep(0)
        assert source.expired == []
        source.timers[2] = timer(2, timedelta(minutes=29, seconds=30))  # a new, sooner one
        scheduler.wake()
        clock.advance(timedelta(seconds=30))
        await asyncio.wait_for(source.changed.wait(), 5)
        assert [e[0] for e in source.expired] == [2]
        source.changed.clear()
        clock.advance(timedelta(seconds=30))
        await asyncio.wait_for(source.changed.wait(), 5)
        assert [e[0] for e in source.expired] == [2, 1]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_with_a_poll_a_timer_another_process_set_is_armed_without_a_wake() -> None:
    # Several replicas: a timer set through another one never wakes this scheduler.
    source, clock, _ = rig()
    scheduler = Scheduler(source, clock, poll=timedelta(seconds=5))
    assert await scheduler.run_once() == START + timedelta(seconds=5)  # nothing due: look again soon
    source.timers[1] = timer(1, timedelta(minutes=30))  # set elsewhere: no wake()
    clock.advance(timedelta(seconds=5))
    assert await scheduler.run_once() == START + timedelta(seconds=10)  # seen; polled until due
    clock.set(START + timedelta(minutes=30))
    await scheduler.run_once()
    assert source.expired == [(1, START + timedelta(minutes=30))]


async def test_without_a_poll_an_idle_scheduler_waits_for_a_wake() -> None:
    _source, _clock, scheduler = rig()
    assert await scheduler.run_once() is None


async def test_unavailable_is_retried_later_with_growing_delays() -> None:
    source, clock, scheduler = rig(timer(1, timedelta(0)))
    source.failures[1] = [Unavailable("integrations.get", "down"), Unavailable("integrations.get", "down")]
    assert await scheduler.run_once() == START + timedelta(seconds=5)
    clock.advance(timedelta(seconds=4))
    assert await scheduler.run_once() == START + timedelta(seconds=5)  # not retried early
    clock.advance(timedelta(seconds=1))
    assert await scheduler.run_once() == START + timedelta(seconds=15)  # 5 s, then 10 s
    assert source.expired == []
    clock.advance(timedelta(seconds=10))
    assert await scheduler.run_once() is None
    assert source.expired == [(1, START + timedelta(seconds=15))]


async def test_a_rate_limit_waits_as_long_as_the_server_says() -> None:
    source, _clock, scheduler = rig(timer(1, timedelta(0)))
    source.failures[1] = [RateLimited("integrations.update", retry_after=42)]
    assert await scheduler.run_once() == START + timedelta(seconds=42)


async def test_a_bug_in_one_timer_does_not_stop_the_others() -> None:
    source, clock, scheduler = rig(timer(1, timedelta(0)), timer(2, timedelta(0)))
    source.failures[1] = [RuntimeError("boom")]
    next_at = await scheduler.run_once()
    assert [e[0] for e in source.expired] == [2]
    assert next_at == START + RetryPolicy().longest
    clock.advance(RetryPolicy().longest)
    await scheduler.run_once()
    assert [e[0] for e in source.expired] == [2, 1]


async def test_half_set_up_timers_are_looked_at_again_soon() -> None:
    source, clock, scheduler = rig()
    source.unsettled = 1
    assert await scheduler.run_once() == START + RetryPolicy().recheck
    source.unsettled = 0
    clock.advance(RetryPolicy().recheck)
    assert await scheduler.run_once() is None
    assert source.recovered == 2


async def test_a_retry_is_forgotten_when_the_timer_ends_elsewhere() -> None:
    source, _clock, scheduler = rig(timer(1, timedelta(0)))
    source.failures[1] = [Unavailable("x", "down")]
    assert await scheduler.run_once() == START + timedelta(seconds=5)
    del source.timers[1]  # e.g. `enable` ended it meanwhile
    assert await scheduler.run_once() is None  # no retry scheduled for a timer that is gone


def test_retry_delays_grow_to_a_cap() -> None:
    policy = RetryPolicy(first=timedelta(seconds=5), longest=timedelta(seconds=30))
    assert [policy.delay(n).total_seconds() for n in range(1, 6)] == [5, 10, 20, 30, 30]


async def test_the_system_clock_returns_at_the_due_time_or_when_woken() -> None:
    clock = SystemClock()
    wake = asyncio.Event()
    await asyncio.wait_for(clock.sleep_until(clock.now() + timedelta(milliseconds=20), wake), 2)
    await asyncio.wait_for(clock.sleep_until(clock.now() - timedelta(seconds=1), wake), 2)  # already due
    waiter = asyncio.create_task(clock.sleep_until(None, wake))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    wake.set()
    await asyncio.wait_for(waiter, 2)


class OutageSource(MemorySource):
    """A source whose database is away for the next `down` reads (recover and active)."""

    def __init__(self, *timers: TimedDisable) -> None:
        super().__init__(*timers)
        self.down = 0

    async def recover(self) -> int:
        if self.down:
            raise StateUnavailable("test database", "connection refused")
        return await super().recover()

    async def active(self) -> list[TimedDisable]:
        if self.down:
            self.down -= 1
            raise StateUnavailable("test database", "connection refused")
        return await super().active()


async def test_the_state_database_away_delays_the_round_and_never_ends_the_loop() -> None:
    """Was: a StateUnavailable from the timers' table ended the scheduler's task: that replica
    never fired a timer again, and exited 1 when stopped (seen at a PostgreSQL restart)."""
    clock = ManualClock(START)
    source = OutageSource(timer(1, timedelta(0)))
    source.clock = clock
    scheduler = Scheduler(source, clock, retry=RetryPolicy(first=timedelta(seconds=5)), poll=timedelta(seconds=5))
    source.down = 1
    assert await scheduler.run_once() == START + timedelta(seconds=5)  # looked at again soon
    assert source.expired == []
    clock.advance(timedelta(seconds=5))
    await scheduler.run_once()
    assert source.expired == [(1, START + timedelta(seconds=5))]


async def test_the_state_database_away_while_expiring_is_retried_like_rocketchat_away() -> None:
    source, clock, scheduler = rig(timer(1, timedelta(0)))
    source.failures[1] = [StateUnavailable("test database", "connection refused")]
    assert await scheduler.run_once() == START + timedelta(seconds=5)  # the first delay, not the longest
    clock.advance(timedelta(seconds=5))
    await scheduler.run_once()
    assert source.expired == [(1, START + timedelta(seconds=5))]
