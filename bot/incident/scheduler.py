"""The loop that turns integrations back on when their timed disable is due.

It keeps no schedule of its own: each round it asks the timer source for the active timers (the
database is the schedule, so a restart re-arms everything by simply starting the loop), handles
every one that is due, and sleeps on the clock until the next due time or until `wake()` (a
timer was scheduled, extended or ended). One whose time passed while the bot was down is
therefore due at once.

Several replicas on one database (PostgreSQL) each run this loop. A replica is woken only by its
own commands, so with `poll` set it also looks at the database every `poll` (one indexed query of
the active timers): a timer set or extended through another replica is armed here within one poll,
and fires here if that replica is gone. When two replicas fire the same due timer, the integration's
shared lock and the row's compare-and-set decide: the first one turns it back on, records and
announces it; the second finds the row ended (see `bot.incident.timers`).

Retries only on named errors: `Unavailable` and `RateLimited` (Rocket.Chat is down or busy) and
`StateUnavailable` (the state database is away, or a row it needs stayed locked by another
replica stalled mid-batch for `LOCK_TIMEOUT`, bot/state/postgres.py) put that timer aside for a
growing delay (or the server's retry-after), and the loop goes on with the others; any other
exception is a bug, logged with its traceback and retried after the longest delay, so one bad
row cannot spin the loop or stop the others. The database away while the timers are read is
looked at again after the first retry delay: the loop never ends on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot import logs
from bot.clock import Clock
from bot.errors import RateLimited, StateUnavailable, Unavailable, UpstreamError
from bot.state.timer_states import TimedDisable

log = logs.get_logger("integrations_bot.scheduler")


class TimerSource(Protocol):
    async def recover(self) -> int:
        """Settle half-set-up timers; how many had to be left for a later round."""

    async def active(self) -> list[TimedDisable]: ...

    async def expire(self, timer: TimedDisable) -> Any: ...


@dataclass(frozen=True)
class RetryPolicy:
    first: timedelta = timedelta(seconds=5)
    longest: timedelta = timedelta(minutes=5)
    # How soon to look again at half-set-up timers whose command is still running.
    recheck: timedelta = timedelta(seconds=10)

    def delay(self, attempt: int) -> timedelta:
        """The wait before retry number `attempt` (1-based): first, 2×first, 4×first, … ≤ longest."""
        return min(self.first * (1 << max(0, attempt - 1)), self.longest)


class Scheduler:
    def __init__(
        self,
        source: TimerSource,
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        poll: timedelta | None = None,
    ) -> None:
        """`poll`: look at the source at least this often (other processes change it too); None
        when this process is the only one that changes it (it wakes the scheduler itself)."""
        self._source = source
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._poll = poll
        self._wake = asyncio.Event()
        self._recover_after: datetime | None = None
        self._attempts: dict[int, int] = {}
        self._not_before: dict[int, datetime] = {}

    def wake(self) -> None:
        """The schedule changed: look again now."""
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled."""
        log.info("scheduler.started")
        while True:
            self._wake.clear()
            next_at = await self.run_once()
            await self._clock.sleep_until(next_at, self._wake)

    async def run_once(self) -> datetime | None:
        """One round: settle half-set-up timers, then everything due; returns when the next round
        is needed (None: only when woken)."""
        await self._recover()
        next_at = await self.run_due()
        if self._recover_after is not None:
            next_at = self._recover_after if next_at is None else min(next_at, self._recover_after)
        if self._poll is not None:
            poll_at = self._clock.now() + self._poll
            next_at = poll_at if next_at is None else min(next_at, poll_at)
        return next_at

    async def run_due(self) -> datetime | None:
        """Handle every timer due now; return when the next one (or the next retry) is due."""
        next_at: datetime | None = None
        try:
            timers = await self._source.active()
        except StateUnavailable as exc:  # the database is away: look again soon, the timers keep
            log.warning("scheduler.state_unavailable", error=str(exc))
            return self._clock.now() + self._retry.first
        live = {timer.id for timer in timers}
        for gone in [key for key in self._not_before if key not in live]:
            self._not_before.pop(gone, None)
            self._attempts.pop(gone, None)
        for timer in timers:
            at = max(timer.due_at, self._not_before.get(timer.id, timer.due_at))
            if at <= self._clock.now():
                retry_at = await self._expire(timer)
                if retry_at is None:
                    continue
                at = retry_at
            next_at = at if next_at is None else min(next_at, at)
        return next_at

    async def _recover(self) -> None:
        """Settle timed disables a crash left half set up (every round: usually a no-op query)."""
        if self._recover_after is not None and self._clock.now() < self._recover_after:
            return
        try:
            left = await self._source.recover()
        except (UpstreamError, StateUnavailable) as exc:
            self._recover_after = self._clock.now() + self._retry.first
            log.warning("scheduler.recover_failed", error=str(exc))
            return
        self._recover_after = self._clock.now() + self._retry.recheck if left else None

    async def _expire(self, timer: TimedDisable) -> datetime | None:
        """Expire one timer; the time to retry it when that failed, else None."""
        try:
            await self._source.expire(timer)
        except (Unavailable, RateLimited, StateUnavailable) as exc:
            attempt = self._attempts.get(timer.id, 0) + 1
            delay = self._retry.delay(attempt)
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                delay = max(delay, timedelta(seconds=exc.retry_after))
            log.warning("scheduler.retry", timer_id=timer.id, attempt=attempt, seconds=delay.total_seconds())
        except Exception:
            attempt = self._attempts.get(timer.id, 0) + 1
            delay = self._retry.longest
            log.exception("scheduler.expire_crashed", timer_id=timer.id)
        else:
            self._attempts.pop(timer.id, None)
            self._not_before.pop(timer.id, None)
            return None
        self._attempts[timer.id] = attempt
        retry_at = self._clock.now() + delay
        self._not_before[timer.id] = retry_at
        return retry_at
