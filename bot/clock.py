"""Time for the scheduler: what time it is, and waiting until a moment unless woken earlier.

The scheduler never calls `asyncio.sleep` or `datetime.now` itself; it gets a `Clock`. The bot
runs on `SystemClock`; tests drive `ManualClock`, a real implementation whose time moves only
when told (`advance`), so a 30-minute disable is tested without waiting 30 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        """Return once `when` has come (never, for None) or as soon as `wake` is set."""


class SystemClock:
    """Wall-clock time. Waits are cut into slices of at most `max_slice` so a wall-clock jump
    (NTP step, a suspended laptop) delays a due timer by at most one slice."""

    def __init__(self, now: Callable[[], datetime] = utcnow, *, max_slice: float = 30.0) -> None:
        self._now = now
        self._max_slice = max_slice

    def now(self) -> datetime:
        return self._now()

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        while not wake.is_set():
            if when is None:
                remaining = self._max_slice
            else:
                remaining = (when - self.now()).total_seconds()
                if remaining <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(remaining, self._max_slice))


class ManualClock:
    """A clock that stands still until `advance`/`set` moves it; sleepers wake when their time comes."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)

    def set(self, when: datetime) -> None:
        self._now = when
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        while not wake.is_set() and (when is None or self._now < when):
            moved = self._moved
            waiters = {asyncio.ensure_future(moved.wait()), asyncio.ensure_future(wake.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
