"""Helpers for driving a `RealtimeClient` in tests: collect its events, wait for them, run it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from bot.rocketchat.realtime import RealtimeClient, RealtimeEvent

E = TypeVar("E")


class Recorder:
    """Collects the client's events and the backoff delays it asked to sleep."""

    def __init__(self) -> None:
        self.events: list[RealtimeEvent] = []
        self.delays: list[float] = []
        self._changed = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)

    async def collect(self, client: RealtimeClient) -> None:
        async for event in client.events():
            self.events.append(event)
            self._notify()
        self._notify()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[E], count: int = 1, within: float = 3.0) -> E:
        async with asyncio.timeout(within):
            while len(self.of(kind)) < count:
                changed = self._changed
                await changed.wait()
        return self.of(kind)[count - 1]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                changed = self._changed
                await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


@contextlib.asynccontextmanager
async def running(client: RealtimeClient, recorder: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    collector = asyncio.create_task(recorder.collect(client))
    runner = asyncio.create_task(client.run())
    try:
        yield runner
    finally:
        await client.close()
        await asyncio.gather(runner, return_exceptions=True)
        await asyncio.wait_for(collector, 3)
