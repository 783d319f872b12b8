"""The bot during a webhook storm: command latency, and the CPU a webhook message costs it.

Theory of operation
-------------------
After the last size's stage, the driver starts one more bot (fresh state file, the flood guard on
with its defaults) and, through the sandbox's `/_bench/webhook` route, makes incoming webhooks of
the workspace post into the command rooms (the bot's rooms) at `rate` messages per second: a
batch every 100 ms, each message as Rocket.Chat stores a webhook's (`bot.i`, its post-as user),
round-robin over every (webhook, room) pair. Then:

1. **Latency.** Rounds of one bot command each (the stages' toggles, `Run.bot_command`), in four
   blocks: quiet, storm, quiet, storm. The storm blocks start after `warmup` seconds of storm,
   during which the flood guard posts its notices (one per webhook and room, then quiet for
   30 min): the figure is the bot under a storm it has already reported. The target is the
   storm's p50 over the quiet p50 of the same run (issue 16: at most 1.5).
2. **CPU per webhook message.** The bot's CPU time (user + system) over `seconds` of quiet
   (nothing posted) and over `seconds` of storm (no commands); the difference, per message
   stored, is what one webhook message costs the bot as a whole: its DDP frame parsed and
   validated, the noisy window, the flood guard's count.
3. **The flood guard's share**, measured in this process (`guard_cost`): the bot's per-message
   path (`NoiseWindow.add` then `FloodCounter.count`) over a storm of synthetic posts, with and
   without the counting, in µs of CPU per message.

The machine is shared (2 cores: the sandbox, the bot and the driver), so the storm also takes
CPU from the bot: the latency figure includes that, as it would on a server hosting both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bench.processes import BotProcess
from bench.stats import Summary
from bench.workspace import integration_name
from bot.incident.flood import FloodCounter
from bot.incident.noise import NoiseWindow, WebhookPost
from bot.state.store import read_message_ids

if TYPE_CHECKING:
    from bench.driver import Operator, Run, SandboxApi

P50_LIMIT: Final = 1.5  # storm p50 / quiet p50 (issue 16)
TICK: Final = 0.1  # seconds between batches of the storm
HOOKS: Final = 2  # webhooks storming, each into every command room
AFTERMATH: Final = 1.0  # seconds after a storm before quiet rounds (its last frames handled)


class Storm:
    """Webhook messages at `rate` per second until stopped; counts what was stored."""

    def __init__(self, api: SandboxApi, names: list[str], rooms: list[str], rate: int) -> None:
        self._api, self._names, self._rooms, self._rate = api, names, rooms, rate
        self.posted = 0
        self.seconds = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Storm:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        # Stopped between two batches, not cancelled in the middle of one: a request cut short
        # leaves the sandbox reading a body that never comes (and its batch uncounted here).
        assert self._task is not None
        self._stop.set()
        await self._task

    async def _run(self) -> None:
        per_tick = max(1, round(self._rate * TICK))
        started = time.monotonic()
        tick = 0
        try:
            while not self._stop.is_set():
                answer = await self._api.call("/_bench/webhook", names=self._names, rooms=self._rooms, count=per_tick)
                self.posted += int(answer["posted"])
                tick += 1
                delay = started + tick * TICK - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            self.seconds = time.monotonic() - started

    @property
    def rate(self) -> float:
        return self.posted / self.seconds if self.seconds else 0.0


def storm_hooks(size: int) -> list[str]:
    """Incoming webhooks of the workspace that no other stage toggles: the last ones."""
    found = [integration_name(n) for n in range(size - 1, -1, -1) if n % 3 != 2]
    return found[:HOOKS]


async def measure(run: Run, api: SandboxApi, credentials: dict[str, Any], operators: list[Operator]) -> dict[str, Any]:
    config = run.config
    rate, rounds, seconds = config.storm_rate, config.storm_rounds, config.storm_seconds
    size = max(config.sizes)
    names, rooms = storm_hooks(size), list(credentials["command_rooms"])
    run.log(f"--- webhook storm: {rate}/s from {len(names)} webhooks into {len(rooms)} rooms")
    bot_credentials = credentials["bot"]
    bot = BotProcess(
        run.workdir / "bot-storm", credentials["url"], bot_credentials["userId"], bot_credentials["authToken"]
    )
    await bot.start()
    run._ids = read_message_ids(bot.env["BOT_STATE_DB"])
    quiet: list[float] = []
    storm: list[float] = []
    typists = operators[: len(rooms)]
    targets = [integration_name(n) for n in range(config.targets)]

    async def block(samples: list[float], count: int, offset: int) -> None:
        for number in range(count):
            operator = typists[(offset + number) % len(typists)]
            _action, latency = await run.bot_command(api, operator, targets[(offset + number) % len(targets)])
            samples.append(latency)
            await asyncio.sleep(config.pause)

    try:
        await bot.wait_caught_up(config.timeout)
        await block([], config.warmup_rounds, 0)
        # CPU: quiet, then storm, each `seconds` long, no commands.
        cpu = bot.cpu_seconds()
        await asyncio.sleep(seconds)
        idle = bot.cpu_seconds() - cpu
        async with Storm(api, names, rooms, rate) as cpu_storm:
            await asyncio.sleep(config.storm_warmup)  # the flood guard's notices
            cpu, posted = bot.cpu_seconds(), cpu_storm.posted
            started = time.monotonic()
            await asyncio.sleep(seconds)
            busy, posted = bot.cpu_seconds() - cpu, cpu_storm.posted - posted
            elapsed = time.monotonic() - started
        await asyncio.sleep(AFTERMATH)
        # Latency: quiet, storm, quiet, storm.
        half = max(1, rounds // 2)
        offset = 0
        stormy_rates: list[float] = []
        for _ in range(2):
            await block(quiet, half, offset)
            offset += half
            async with Storm(api, names, rooms, rate) as latency_storm:
                await asyncio.sleep(config.storm_warmup)
                await block(storm, half, offset)
            stormy_rates.append(latency_storm.rate)
            await asyncio.sleep(AFTERMATH)  # the storm's last frames handled before quiet rounds
            offset += half
    finally:
        code = await bot.stop()
        if code != 0:
            run.failures.append(f"the bot exited with {code} after the webhook storm")
    quiet_summary, storm_summary = Summary.of(quiet), Summary.of(storm)
    per_message = (busy - idle * elapsed / seconds) / posted if posted else 0.0
    return {
        "rate_asked": rate,
        "rate_posted": round(min(stormy_rates), 1),
        "webhooks": len(names),
        "rooms": len(rooms),
        "warmup_seconds": config.storm_warmup,
        "commands": {"quiet": len(quiet), "storm": len(storm)},
        "quiet": quiet_summary.to_json(),
        "storm": storm_summary.to_json(),
        "p50_ratio": round(storm_summary.p50_ms / quiet_summary.p50_ms, 3),
        "p99_ratio": round(storm_summary.p99_ms / quiet_summary.p99_ms, 3),
        "cpu_messages": posted,
        "cpu_seconds": round(elapsed, 2),
        "bot_cpu_us_per_message": round(1e6 * per_message, 1),
        "guard": guard_cost(),
    }


def guard_cost(messages: int = 200_000, pairs: int = 20) -> dict[str, float]:
    """µs of CPU per message of the bot's per-message path, in this process: the noisy window's
    `add` alone, and followed by the flood guard's `count` (its default settings)."""
    start = datetime(2026, 12, 6, tzinfo=UTC)
    step = timedelta(seconds=1 / 200)  # 200 messages a second
    posts = [
        WebhookPost(f"m{n}", f"room-{n % pairs}", f"hook-{n % 2}", start + n * step, "poster") for n in range(messages)
    ]

    def per_message(with_guard: bool) -> float:
        clock = iter(p.ts for p in posts)
        now = [start]
        window = NoiseWindow(now=lambda: now[0])
        counter = FloodCounter(threshold=20, window=timedelta(seconds=60), quiet=timedelta(minutes=30))
        began = time.process_time()
        for post in posts:
            now[0] = next(clock)
            if window.add(post) and with_guard:
                counter.count(post, "poster", now[0])
        return (time.process_time() - began) / messages * 1e6

    window_only, both = per_message(False), per_message(True)
    return {
        "window_us": round(window_only, 2),
        "window_and_guard_us": round(both, 2),
        "guard_us": round(max(0.0, both - window_only), 2),
    }


def targets(storm: dict[str, Any] | None) -> list[dict[str, Any]]:
    if storm is None:
        return []
    value = storm["p50_ratio"]
    name = f"p50 during a {storm['rate_asked']}/s webhook storm / quiet p50"
    return [{"target": name, "value": value, "limit": P50_LIMIT, "met": value <= P50_LIMIT}]


def table(results: dict[str, Any]) -> list[str]:
    storm = results.get("storm")
    if not storm:
        return []
    guard = storm["guard"]
    return [
        f"webhook storm, {storm['rate_posted']:g}/s stored ({storm['rate_asked']}/s asked) from {storm['webhooks']} "
        f"webhooks into {storm['rooms']} rooms: command latency p50 / p99 quiet "
        f"{storm['quiet']['p50_ms']:.1f} / {storm['quiet']['p99_ms']:.1f} ms, storm "
        f"{storm['storm']['p50_ms']:.1f} / {storm['storm']['p99_ms']:.1f} ms (p50 ratio {storm['p50_ratio']:.2f}, "
        f"{storm['commands']['storm']} commands each)",
        f"bot CPU per webhook message: {storm['bot_cpu_us_per_message']:g} µs ({storm['cpu_messages']} messages in "
        f"{storm['cpu_seconds']:g} s); of which noisy window {guard['window_us']:g} µs + flood guard "
        f"{guard['guard_us']:g} µs (in-process)",
    ]
