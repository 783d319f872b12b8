"""Child processes of the benchmark: the sandbox server and the real `integrations-bot run`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

_BIN = Path(sys.executable).parent
_REPO = Path(__file__).resolve().parents[1]
READY_EVENT = b'"bot.ready"'
CAUGHT_UP_EVENT = b'"catchup.done"'
RECONNECTED_EVENT = b'"realtime.reconnected"'


class ProcessFailed(RuntimeError):
    pass


def _line_time(line: bytes) -> float:
    """The `timestamp` of one JSON log line (ISO 8601, UTC), as epoch seconds."""
    stamp = json.loads(line)["timestamp"]
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


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

    stderr (JSON log lines) goes straight into `<workdir>/bot.log`. It used to be a pipe that
    the driver drained and copied: then every log line the bot wrote woke the driver, which took
    a core from the bot or the sandbox exactly while a command was being timed (2 cores, 3
    processes). Now the driver reads the file only while it waits for events: `bot.ready` ends
    the start-up, the first `catchup.done` the catch-up pass that follows it (`chat.syncMessages`
    for each room with activity since its cursor), and the catch-up figure waits for later ones.
    Their times are the lines' own timestamps, so how often the file is looked at does not change
    them.
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
            # This checkout's code, whichever checkout the console script was installed from.
            "PYTHONPATH": os.pathsep.join(filter(None, (str(_REPO), os.environ.get("PYTHONPATH")))),
        }
        self.log_path = workdir / "bot.log"
        self.process: asyncio.subprocess.Process | None = None
        self._read_up_to = 0  # bytes of the log already looked at
        # event -> the timestamps (epoch seconds) of the lines carrying it, in order
        events = (READY_EVENT, CAUGHT_UP_EVENT, RECONNECTED_EVENT)
        self._seen: dict[bytes, list[float]] = {event: [] for event in events}

    async def start(self, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Start the bot; returns the seconds from spawning the process to its `bot.ready` line."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            spawned = time.time()
            self.process = await asyncio.create_subprocess_exec(
                str(_BIN / "integrations-bot"),
                "run",
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            ready = await self._wait_for(READY_EVENT, timeout)
        except ProcessFailed:
            await self.stop()
            raise
        return ready - spawned

    async def wait_caught_up(self, timeout: float = 120.0) -> float:  # noqa: ASYNC109
        """Wait for the first catch-up pass to end; returns its seconds after `bot.ready`."""
        return await self._wait_for(CAUGHT_UP_EVENT, timeout) - self._seen[READY_EVENT][0]

    async def wait_for_nth(self, event: bytes, count: int, timeout: float = 120.0) -> float:  # noqa: ASYNC109
        """Wait for the `count`-th line carrying `event` (`READY_EVENT`, `CAUGHT_UP_EVENT` or
        `RECONNECTED_EVENT`); returns its timestamp."""
        return await self._wait_for(event, timeout, count)

    def times_of(self, event: bytes) -> list[float]:
        """The timestamps of the lines carrying `event` seen so far."""
        self._scan()
        return list(self._seen.get(event, []))

    async def _wait_for(self, event: bytes, timeout: float, count: int = 1) -> float:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            self._scan()
            if len(self._seen[event]) >= count:
                return self._seen[event][count - 1]
            if self.process is None or self.process.returncode is not None:
                code = None if self.process is None else self.process.returncode
                raise ProcessFailed(f"the bot exited ({code}) before {event.decode()}:\n" + self.tail())
            if time.monotonic() >= deadline:
                raise ProcessFailed(f"no {event.decode()} from the bot within {timeout:g} s:\n" + self.tail())
            await asyncio.sleep(0.005)

    def _scan(self) -> None:
        """Look at the complete lines written since the last look for the events."""
        with self.log_path.open("rb") as log:
            log.seek(self._read_up_to)
            chunk = log.read()
        complete = chunk.rfind(b"\n") + 1
        self._read_up_to += complete
        for line in chunk[:complete].splitlines():
            for event, times in self._seen.items():
                if event in line:
                    times.append(_line_time(line))

    def tail(self, lines: int = 30) -> str:
        """The last lines of the bot's log, for error messages."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the bot has used so far."""
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    async def stop(self) -> int:
        if self.process is None:
            return 0
        return await _stop(self.process)
