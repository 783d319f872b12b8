"""Shared pieces of the reliability tests (catch-up, journal, recovery, runtime, health).

A seeded sandbox (the demo workspace of `sandbox.seed`) runs in its own thread on loopback; the
bot's real clients talk to it over real sockets. Control calls block, so async tests make them
through `asyncio.to_thread` (`call`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import stamina

from bot.config import Settings
from bot.rocketchat.rest import RestClient
from bot.runtime.bot import Bot
from sandbox.seed import seed_demo
from sandbox.server import SandboxServer

T = TypeVar("T")
BOT = "integrations-bot"


@dataclass
class World:
    server: SandboxServer
    seed: dict[str, Any]

    @property
    def control(self) -> Any:
        return self.server.control

    @property
    def url(self) -> str:
        return self.server.url

    def creds(self, username: str = BOT) -> dict[str, Any]:
        return dict(self.seed["users"][username])

    def rest(self, username: str = BOT, **options: Any) -> RestClient:
        creds = self.creds(username)
        return RestClient(self.url, user_id=creds["userId"], auth_token=creds["authToken"], **options)

    def integration_id(self, name: str, kind: str = "webhook-incoming") -> str:
        found = [d for d in self.control.integrations() if d["name"] == name and d["type"] == kind]
        assert len(found) == 1, found
        return str(found[0]["_id"])


@contextlib.contextmanager
def world() -> Iterator[World]:
    server = SandboxServer()
    seed = seed_demo(server.store)
    server.start()
    try:
        yield World(server, seed)
    finally:
        server.stop()


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


def settings_for(w: World, tmp_path: Path, **values: Any) -> Settings:
    creds = w.creds()
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        rocketchat_url=w.url,
        rocketchat_user_id=creds["userId"],
        rocketchat_auth_token=creds["authToken"],
        bot_state_db=tmp_path / "state.sqlite3",
        bot_request_timeout=5,
        **values,
    )


class ShiftedClock:
    """The bot's wall clock, moved by `offset` (to make commands look older than they are)."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, **options: Any) -> AsyncIterator[tuple[Bot, asyncio.Task[None]]]:
    """An in-process `Bot` running until the block ends (then stopped; its errors re-raised)."""
    bot = Bot(settings, **options)
    task = asyncio.create_task(bot.run())
    try:
        with stamina.set_testing(True, attempts=3):
            ready = asyncio.create_task(bot.ready.wait())
            await asyncio.wait({ready, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if task.done():
                task.result()
            assert bot.ready.is_set(), "the bot did not become ready"
            yield bot, task
    finally:
        bot.stop()
        await asyncio.wait_for(asyncio.shield(task), 15)


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:  # noqa: ASYNC109
    """Poll an in-process condition (cheap checks only) until it holds; a functional deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
