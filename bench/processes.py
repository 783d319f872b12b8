"""Child processes of the benchmark: the sandbox server and the real `integrations-bot run`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil

_BIN = Path(sys.executable).parent
READY_EVENT = b'"bot.ready"'
CAUGHT_UP_EVENT = b'"catchup.done"'


class ProcessFailed(RuntimeError):
    pass


async def _stop(process: asyncio.subprocess.Process, timeout: float = 15.0) -> int:  # noqa: ASYNC109
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        return await process.wait()


class SandboxProcess:
    """`python -m bench.sandbox_process`, started and waited for until its credentials exist."""

    def __init__(self, workdir: Path, *, users: int, rooms: int, integrations: int) -> None:
        self.credentials_file = workdir / "sandbox-credentials.json"
        self.arguments = [
            "--users",
            str(users),
            "--rooms",
            str(rooms),
            "--integrations",
            str(integrations),
            "--credentials-file",
            str(self.credentials_file),
        ]
        self.process: asyncio.subprocess.Process | None = None
        self.credentials: dict[str, Any] = {}

    async def start(self, timeout: float = 300.0) -> dict[str, Any]:  # noqa: ASYNC109
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.sandbox_process", *self.arguments, stdin=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self.credentials_file.exists():
            if self.process.returncode is not None:
                raise ProcessFailed(f"the sandbox exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise ProcessFailed("the sandbox did not start in time")
            await asyncio.sleep(0.05)
        self.credentials = json.loads(self.credentials_file.read_text())
        return self.credentials

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    async def stop(self) -> None:
        if self.process is not None:
            await _stop(self.process)


class BotProcess:
    """The real console script, `integrations-bot run`, configured through its environment.

    stderr (JSON log lines) is read continuously, so the pipe never fills and blocks the bot, and
    copied to `<workdir>/bot.log`; `bot.ready` marks the end of start-up, the first
    `catchup.done` the end of the catch-up pass that follows it (one `chat.syncMessages` per
    room the bot is in). The last lines are kept for error messages.
    """

    def __init__(self, workdir: Path, url: str, user_id: str, auth_token: str) -> None:
        self.workdir = workdir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ROCKETCHAT_", "BOT_"))},
            "ROCKETCHAT_URL": url,
            "ROCKETCHAT_USER_ID": user_id,
            "ROCKETCHAT_AUTH_TOKEN": auth_token,
            "BOT_STATE_DB": str(workdir / "bot-state.sqlite3"),
            "BOT_LOG_FORMAT": "json",
            "BOT_LOG_LEVEL": "INFO",
        }
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.caught_up = asyncio.Event()
        self._ready_at = 0.0
        self._caught_up_at = 0.0
        self.tail: deque[str] = deque(maxlen=30)
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Start the bot; returns the seconds from spawning the process to its `bot.ready` line."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            str(_BIN / "integrations-bot"),
            "run",
            cwd=self.workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read(self.process))
        waiter = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait({waiter, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await self.stop()
            raise ProcessFailed("the bot did not become ready:\n" + "\n".join(self.tail))
        return time.perf_counter() - started

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        with (self.workdir / "bot.log").open("wb") as log:
            async for line in process.stderr:
                if not self.ready.is_set() and READY_EVENT in line:
                    self._ready_at = time.perf_counter()
                    self.ready.set()
                if not self.caught_up.is_set() and CAUGHT_UP_EVENT in line:
                    self._caught_up_at = time.perf_counter()
                    self.caught_up.set()
                log.write(line)
                self.tail.append(line.decode("utf-8", "replace").rstrip())

    async def wait_caught_up(self, timeout: float = 120.0) -> float:  # noqa: ASYNC109
        """Wait for the first catch-up pass to end; returns its seconds after `bot.ready`."""
        try:
            await asyncio.wait_for(self.caught_up.wait(), timeout)
        except TimeoutError:
            raise ProcessFailed("the bot's first catch-up pass did not end:\n" + "\n".join(self.tail)) from None
        return self._caught_up_at - self._ready_at

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    async def stop(self) -> int:
        if self.process is None:
            return 0
        code = await _stop(self.process)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return code
