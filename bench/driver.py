"""One benchmark run: one sandbox, three workspace sizes, the bot and the floor side by side.

Theory of operation
-------------------
The driver starts `bench.sandbox_process` once (10,000 users, 1,000 rooms, 100 integrations),
then for each size (100, 1,000, 10,000 integrations; the sandbox grows between stages):

1. starts the real `integrations-bot run` (fresh state file) and times spawn → `bot.ready`,
   then waits for the catch-up pass the bot starts once connected and reports its duration
   separately: the latency figures are for a warm bot;
2. warms up, then measures latency: rounds of one bot command and one floor command, each
   toggling an integration by name (`disable` when it is enabled, `enable` when not), with a
   short pause after each so that every command meets an idle system;
3. counts REST calls and DDP frames per `disable` and per `enable` (sandbox counters), for the
   bot and for the floor;
4. at 1,000 integrations: throughput, 1,000 commands from 100 operators stored in one batch,
   then the floor doing the same work with 100 concurrent workers;
5. samples the bot's resident memory and stops it;
6. at 1,000 integrations, after that: the bot on PostgreSQL, as 1 and as 3 replicas, through the
   same latency and throughput workloads (`bench.replicas`).

Then, once (`_catchup`), the catch-up figure: the sandbox gives the bot direct messages with
plain users until it is in 10,000 rooms; a new bot starts and finishes its first pass; the
sandbox drops its connection and holds its next login back 1 s, during which 10 commands are
stored in 10 rooms (5 command rooms, 5 DMs), on no stream; the bot reconnects, catches up and
answers them. The figure is the REST calls of that pass (`subscriptions.get`, `rooms.get`,
`chat.syncMessages`, from the sandbox's counters, reset just before the drop) and its time, from
the bot's `realtime.reconnected` line to its `catchup.done` line.

Times: a command's latency is the server's stored `ts` of the bot's answer minus that of the
command (microsecond precision, one clock). The driver picks the command's id, so it knows the
answer's id in advance and posts the command and waits for the answer in one request: nothing
of the benchmark's own is processed by the sandbox while the bot is being served. The floor
has no command message: its latency runs from the driver's wall clock just before its first
request to the stored `ts` of its answer (same machine, same realtime clock). The bot's answer
is found by its id, which the bot derives from the command's id with the key in its state file
(`bot.rocketchat.message_ids`): read once the bot has started (`bot.state.store.read_message_ids`). Nobody else
posts here, so the answer always takes the first id of its chain.
"""

from __future__ import annotations

import asyncio
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import replicas, storm
from bench.floor import FloorClient, message_id
from bench.processes import CAUGHT_UP_EVENT, RECONNECTED_EVENT, BotProcess, SandboxProcess
from bench.stats import Summary
from bench.workspace import COMMAND_ROOMS, WorkspaceSpec, integration_name
from bot.rocketchat.message_ids import MessageIds
from bot.state.store import read_message_ids
from sandbox.control import SECRET_HEADER
from sandbox.faults import Counters

PREFIX = "!integration"


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (100, 1_000, 10_000)
    users: int = WorkspaceSpec.users
    rooms: int = WorkspaceSpec.rooms
    latency_rounds: int = 500  # per client and size (p50 moved ±0.04 in the ratio between runs with 300)
    warmup_rounds: int = 30
    cost_commands: int = 20  # per action, client and size
    throughput_commands: int = 1_000
    throughput_users: int = 100
    throughput_size: int = 1_000  # the stage at which throughput is measured
    replica_counts: tuple[int, ...] = (1, 3)  # bots on PostgreSQL, at the throughput size (bench.replicas)
    targets: int = 30  # integrations per client toggled in the latency rounds
    pause: float = 0.005  # seconds of quiet after each latency command
    timeout: float = 120.0
    catchup_rooms: int = 10_000  # rooms the bot is in for the catch-up figure (0: no figure)
    catchup_active: int = 10  # of which this many get a command during the drop
    storm_rate: int = 200  # webhook messages per second into the bot's rooms (bench.storm; 0: no storm)
    storm_rounds: int = 200  # commands timed, half quiet, half during the storm
    storm_seconds: float = 5.0  # seconds of quiet and of storm over which the bot's CPU is taken
    storm_warmup: float = 3.0  # seconds of storm before anything is measured (the flood notices)


# What a catch-up pass asks (`bot.runtime.catchup`).
CATCHUP_ENDPOINTS = ("subscriptions.get", "rooms.get", "chat.syncMessages")


class BenchFailed(RuntimeError):
    pass


class SandboxApi:
    """The driver's side of `/_bench/...` and `/_sandbox/...` (counters)."""

    def __init__(self, credentials: dict[str, Any]) -> None:
        control = credentials["control"]
        self._http = httpx.AsyncClient(
            base_url=control["url"], headers={SECRET_HEADER: control["secret"]}, timeout=600.0
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, path: str, **arguments: Any) -> Any:
        return await self._call(path, **arguments)

    async def _call(self, path: str, **arguments: Any) -> Any:
        response = await self._http.post(path, json=arguments)
        if response.status_code != 200:
            raise BenchFailed(f"{path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def post_and_wait(
        self,
        messages: Sequence[tuple[str, str, str, str]],
        answers: Sequence[str],
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[list[float], dict[str, tuple[float, str]]]:
        """Store messages (id, user id, room id, text) in one batch and, in the same request, wait
        for the `answers` ids: the stored times of the messages, and time and text of each answer.
        Raises if an answer is missing after `timeout` seconds."""
        answer = await self._call(
            "/_bench/post",
            messages=[{"_id": i, "user": u, "room": r, "text": t} for i, u, r, t in messages],
            wait=list(answers),
            timeout=timeout,
        )
        found = {i: (float(t), str(answer["texts"][i])) for i, t in answer["times"].items()}
        if len(found) < len(answers):
            missing = len(answers) - len(found)
            raise BenchFailed(f"{missing} of {len(answers)} answers never arrived within {timeout:g} s")
        return [float(m["ts"]) for m in answer["messages"]], found

    async def post(self, messages: Sequence[tuple[str, str, str, str]]) -> None:
        """Store messages (id, user id, room id, text) in one batch, without waiting for answers."""
        batch = [{"_id": i, "user": u, "room": r, "text": t} for i, u, r, t in messages]
        await self._call("/_bench/post", messages=batch)

    async def wait(self, ids: Sequence[str], timeout: float) -> dict[str, tuple[float, str]]:  # noqa: ASYNC109
        """Stored time and text of each id; raises if any is missing after `timeout` seconds."""
        answer = await self._call("/_bench/wait", ids=list(ids), timeout=timeout)
        found = {i: (float(t), str(answer["texts"][i])) for i, t in answer["times"].items()}
        if len(found) < len(ids):
            raise BenchFailed(f"{len(ids) - len(found)} of {len(ids)} answers never arrived within {timeout:g} s")
        return found

    async def stored(self, ids: Sequence[str]) -> set[str]:
        """Those of `ids` stored by now, without waiting."""
        return set((await self._call("/_bench/wait", ids=list(ids), timeout=0))["times"])

    async def grow(self, integrations: int) -> float:
        return float((await self._call("/_bench/grow", integrations=integrations))["seconds"])

    async def counters(self) -> Counters:
        return Counters.from_json((await self._call("/_sandbox/counters"))["result"])

    async def reset_counters(self) -> None:
        await self._call("/_sandbox/reset_counters")

    async def direct_rooms(self, total: int, active: int) -> dict[str, Any]:
        return dict(await self._call("/_bench/direct_rooms", total=total, active=active))

    async def set_latency(self, seconds: float, endpoint: str) -> None:
        await self._call("/_sandbox/set_latency", seconds=seconds, endpoint=endpoint)

    async def drop_connections(self) -> None:
        await self._call("/_sandbox/drop_connections")


@dataclass
class Toggles:
    """Which integrations are enabled now, as far as the driver has changed them."""

    enabled: dict[str, bool] = field(default_factory=dict)

    def next_action(self, name: str) -> str:
        return "disable" if self.enabled.get(name, True) else "enable"

    def flip(self, name: str) -> bool:
        """Flip and return the new state."""
        self.enabled[name] = not self.enabled.get(name, True)
        return self.enabled[name]


@dataclass(frozen=True)
class Operator:
    user_id: str
    room_id: str


@dataclass
class Stage:
    integrations: int
    ready_seconds: float = 0.0
    catchup_seconds: float = 0.0
    rss_bytes: int = 0
    bot_cpu_seconds: float = 0.0  # the bot process's CPU time (user + system) over the latency rounds
    bot: dict[str, list[float]] = field(default_factory=lambda: {"disable": [], "enable": []})
    floor: dict[str, list[float]] = field(default_factory=lambda: {"disable": [], "enable": []})
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)
    throughput: dict[str, Any] | None = None
    grow_seconds: float = 0.0


class Run:
    def __init__(self, config: BenchConfig, workdir: Path, log: Any = print) -> None:
        self.config = config
        self.workdir = workdir
        self.log = log
        self.toggles = Toggles()
        self.failures: list[str] = []
        self._ids: MessageIds | None = None  # the running bot's (`_stage`)
        self.sent: list[str] = []  # ids of the bot commands posted (bench.replicas checks their answers)
        self.replicas: dict[str, Any] | None = None  # bench.replicas.measure's figures
        self.storm: dict[str, Any] | None = None  # bench.storm.measure's figures

    # --- the whole run --------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        config = self.config
        sandbox = SandboxProcess(self.workdir, users=config.users, rooms=config.rooms, integrations=min(config.sizes))
        started = time.perf_counter()
        credentials = await sandbox.start()
        self.log(f"sandbox seeded in {time.perf_counter() - started:.1f} s ({credentials['users']} users)")
        api = SandboxApi(credentials)
        bot_credentials = credentials["bot"]
        floor = FloorClient(credentials["url"], bot_credentials["userId"], bot_credentials["authToken"])
        rooms = credentials["command_rooms"]
        operators = [Operator(o["userId"], rooms[n % len(rooms)]) for n, o in enumerate(credentials["operators"])]
        stages: list[Stage] = []
        catchup: dict[str, Any] | None = None
        try:
            for size in sorted(config.sizes):
                stage = Stage(size)
                stage.grow_seconds = await api.grow(size)
                self.log(f"--- {size} integrations")
                await self._stage(stage, api, floor, credentials, operators)
                if size == config.throughput_size and config.replica_counts:
                    self.replicas = await replicas.measure(self, api, floor, credentials, operators, sqlite_stage=stage)
                stages.append(stage)
            if config.storm_rate:
                self.storm = await storm.measure(self, api, credentials, operators)
            sandbox_rss = sandbox.rss()
            if config.catchup_rooms:
                catchup = await self._catchup(api, credentials, operators)
        finally:
            await floor.aclose()
            await api.aclose()
            await sandbox.stop()
        return self._results(stages, credentials, sandbox_rss, catchup)

    # --- catch-up after a reconnect ----------------------------------------------------------------

    async def _catchup(self, api: SandboxApi, credentials: dict[str, Any], operators: list[Operator]) -> dict[str, Any]:
        """REST calls and time of the catch-up pass after a reconnect (module docstring)."""
        config = self.config
        self.log(f"--- catch-up: {config.catchup_rooms:,} rooms, {config.catchup_active} with a command")
        channels = min(COMMAND_ROOMS, config.catchup_active // 2)
        grown = await api.direct_rooms(config.catchup_rooms, config.catchup_active - channels)
        typists = [(o.user_id, o.room_id) for o in operators[:channels]]
        typists += [(str(dm["userId"]), str(dm["room"])) for dm in grown["dms"]]
        bot_credentials = credentials["bot"]
        bot = BotProcess(
            self.workdir / "bot-catchup", credentials["url"], bot_credentials["userId"], bot_credentials["authToken"]
        )
        await bot.start()
        self._ids = read_message_ids(bot.env["BOT_STATE_DB"])
        try:
            await bot.wait_caught_up(config.timeout)
            await asyncio.sleep(0.5)  # the first pass's commands are long answered: a quiet bot
            await api.set_latency(1.0, "ddp:login")  # the commands below land while it is away
            await api.reset_counters()
            await api.drop_connections()
            ids = [message_id() for _ in typists]
            await api.post([(i, user, room, f"{PREFIX} help") for i, (user, room) in zip(ids, typists, strict=True)])
            await api.set_latency(0, "ddp:login")
            await api.wait([self.reply_id(i) for i in ids], config.timeout)
            done = await bot.wait_for_nth(CAUGHT_UP_EVENT, 2, config.timeout)
            counters = await api.counters()
            reconnected = bot.times_of(RECONNECTED_EVENT)
            passes = len(bot.times_of(CAUGHT_UP_EVENT)) - 1
        finally:
            code = await bot.stop()
            if code != 0:
                self.failures.append(f"the bot exited with {code} after the catch-up figure")
        calls = {k: v for k, v in sorted(counters.rest.items()) if k in CATCHUP_ENDPOINTS}
        if passes != 1 or len(reconnected) != 1:
            self.failures.append(f"catch-up figure: {len(reconnected)} reconnects, {passes} passes (expected 1, 1)")
        return {
            "rooms": int(grown["rooms"]),
            "active": len(typists),
            "grow_seconds": round(float(grown["seconds"]), 2),
            "calls": sum(calls.values()),
            "rest": calls,
            "pass_seconds": round(done - reconnected[0], 3) if reconnected else None,
        }

    async def _stage(
        self,
        stage: Stage,
        api: SandboxApi,
        floor: FloorClient,
        credentials: dict[str, Any],
        operators: list[Operator],
    ) -> None:
        config = self.config
        bot_credentials = credentials["bot"]
        bot = BotProcess(
            self.workdir / f"bot-{stage.integrations}",
            credentials["url"],
            bot_credentials["userId"],
            bot_credentials["authToken"],
        )
        stage.ready_seconds = await bot.start()
        self.log(f"bot ready in {stage.ready_seconds:.2f} s")
        self._ids = read_message_ids(bot.env["BOT_STATE_DB"])
        try:
            stage.catchup_seconds = await bot.wait_caught_up(config.timeout)
            self.log(f"first catch-up pass done {stage.catchup_seconds:.2f} s later")
            rss = [bot.rss()]
            bot_targets = [integration_name(n) for n in range(config.targets)]
            floor_targets = [integration_name(n) for n in range(config.targets, 2 * config.targets)]
            await self._rounds(None, api, floor, operators, bot_targets, floor_targets, config.warmup_rounds)
            cpu = bot.cpu_seconds()
            await self._rounds(stage, api, floor, operators, bot_targets, floor_targets, config.latency_rounds)
            stage.bot_cpu_seconds = bot.cpu_seconds() - cpu
            rss.append(bot.rss())
            stage.cost = await self._cost(api, floor, operators, bot_targets, floor_targets)
            if stage.integrations == config.throughput_size:
                stage.throughput = await self._throughput(api, floor, operators)
                rss.append(bot.rss())
            stage.rss_bytes = max(rss)
        finally:
            code = await bot.stop()
            if code != 0:
                self.failures.append(f"the bot exited with {code} at {stage.integrations} integrations")

    # --- one command each way -------------------------------------------------------------------

    async def bot_command(self, api: SandboxApi, operator: Operator, name: str) -> tuple[str, float]:
        action = self.toggles.next_action(name)
        command_id = message_id()
        self.sent.append(command_id)
        answer = self.reply_id(command_id)
        text = f"{PREFIX} {action} {name}"
        [command_ts], found = await api.post_and_wait(
            [(command_id, operator.user_id, operator.room_id, text)], [answer], self.config.timeout
        )
        answer_ts, text = found[answer]
        self._check(action, name, text)
        self.toggles.flip(name)
        return action, answer_ts - command_ts

    async def floor_command(
        self, api: SandboxApi, floor: FloorClient, operator: Operator, name: str
    ) -> tuple[str, float]:
        action = self.toggles.next_action(name)
        started = time.time()
        answer = await floor.set_enabled(name, action == "enable", operator.room_id, operator.user_id)
        found = await api.wait([answer], self.config.timeout)
        self.toggles.flip(name)
        return action, found[answer][0] - started

    def reply_id(self, command_id: str) -> str:
        """The id of the running bot's answer to `command_id`."""
        assert self._ids is not None, "the bot is started by _stage"
        return self._ids.answer(command_id)[0]

    def _check(self, action: str, name: str, text: str) -> None:
        expected = "Disabled" if action == "disable" else "Enabled"
        if expected not in text:
            self.failures.append(f"{action} {name}: unexpected answer {text[:120]!r}")

    # --- latency ----------------------------------------------------------------------------------

    async def _rounds(  # noqa: PLR0917
        self,
        stage: Stage | None,
        api: SandboxApi,
        floor: FloorClient,
        operators: list[Operator],
        bot_targets: list[str],
        floor_targets: list[str],
        rounds: int,
    ) -> None:
        typists = operators[:COMMAND_ROOMS]
        for number in range(rounds):
            operator = typists[number % len(typists)]
            action, seconds = await self.bot_command(api, operator, bot_targets[number % len(bot_targets)])
            if stage is not None:
                stage.bot[action].append(seconds)
            await asyncio.sleep(self.config.pause)
            action, seconds = await self.floor_command(api, floor, operator, floor_targets[number % len(floor_targets)])
            if stage is not None:
                stage.floor[action].append(seconds)
            await asyncio.sleep(self.config.pause)

    # --- cost -----------------------------------------------------------------------------------

    async def _cost(
        self,
        api: SandboxApi,
        floor: FloorClient,
        operators: list[Operator],
        bot_targets: list[str],
        floor_targets: list[str],
    ) -> dict[str, dict[str, Any]]:
        """Calls per command, by endpoint: `disable` then `enable` on the same targets.

        Targets left disabled by the latency rounds are enabled first (not counted), so every
        counted command changes something.
        """
        count = self.config.cost_commands
        operator = operators[0]
        bot_names, floor_names = bot_targets[:count], floor_targets[:count]
        for name in bot_names:
            if self.toggles.next_action(name) == "enable":
                await self.bot_command(api, operator, name)
        for name in floor_names:
            if self.toggles.next_action(name) == "enable":
                await self.floor_command(api, floor, operator, name)
        found: dict[str, dict[str, Any]] = {}
        for action in ("disable", "enable"):
            await asyncio.sleep(0.2)  # let the bot finish its bookkeeping of earlier commands
            await api.reset_counters()
            for name in bot_names:
                await self.bot_command(api, operator, name)
            await asyncio.sleep(0.2)
            found[f"bot {action}"] = per_command(await api.counters(), len(bot_names))
            await api.reset_counters()
            for name in floor_names:
                await self.floor_command(api, floor, operator, name)
            found[f"floor {action}"] = per_command(await api.counters(), len(floor_names))
        return found

    # --- throughput -------------------------------------------------------------------------------

    async def _throughput(self, api: SandboxApi, floor: FloorClient, operators: list[Operator]) -> dict[str, Any]:
        config = self.config
        users = operators[: config.throughput_users]
        names = [integration_name(n) for n in range(config.throughput_commands)]
        # Command k comes from user k % users: every user types commands/users of them.
        batch = [(users[k % len(users)], name, self.toggles.next_action(name)) for k, name in enumerate(names)]
        await asyncio.sleep(0.5)
        ids = [message_id() for _ in batch]
        self.sent.extend(ids)
        messages = [
            (i, u.user_id, u.room_id, f"{PREFIX} {action} {name}")
            for i, (u, name, action) in zip(ids, batch, strict=True)
        ]
        stored, answers = await api.post_and_wait(
            messages,
            [self.reply_id(i) for i in ids],
            config.timeout * 5,
        )
        first_ts = min(stored)
        last_ts = max(stored)
        for cid, (_user, name, action) in zip(ids, batch, strict=True):
            self._check(action, name, answers[self.reply_id(cid)][1])
            self.toggles.flip(name)
        bot_seconds = max(ts for ts, _ in answers.values()) - last_ts

        # The floor: the same work (the other way round), one worker per user, same concurrency.
        per_user: dict[int, list[str]] = {}
        for k, name in enumerate(names):
            per_user.setdefault(k % len(users), []).append(name)
        await asyncio.sleep(0.5)

        async def worker(user: Operator, mine: list[str]) -> list[str]:
            ids = []
            for name in mine:
                action = self.toggles.next_action(name)
                ids.append(await floor.set_enabled(name, action == "enable", user.room_id, user.user_id))
            return ids

        started = time.time()
        lists = await asyncio.gather(*(worker(users[u], mine) for u, mine in per_user.items()))
        floor_answers = await api.wait([i for ids in lists for i in ids], config.timeout)
        floor_seconds = max(ts for ts, _ in floor_answers.values()) - started
        for name in names:
            self.toggles.flip(name)
        return {
            "commands": len(names),
            "users": len(users),
            "batch_store_seconds": round(last_ts - first_ts, 4),
            "bot_seconds": round(bot_seconds, 4),
            "floor_seconds": round(floor_seconds, 4),
            "bot_per_second": round(len(names) / bot_seconds, 1),
            "floor_per_second": round(len(names) / floor_seconds, 1),
            "ratio": round(floor_seconds / bot_seconds, 3),
        }

    # --- results ----------------------------------------------------------------------------------

    def _results(
        self, stages: list[Stage], credentials: dict[str, Any], sandbox_rss: int, catchup: dict[str, Any] | None
    ) -> dict[str, Any]:
        config = self.config
        rows = [stage_json(s) for s in stages]
        found = targets(rows)
        if catchup is not None:
            name = f"catch-up calls per reconnect at {catchup['rooms']} rooms with {catchup['active']} active"
            found.append({"target": name, "value": catchup["calls"], "limit": 15, "met": catchup["calls"] <= 15})
        return {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "config": {
                "users": credentials["users"],
                "rooms": credentials["rooms"],
                "sizes": list(config.sizes),
                "latency_rounds": config.latency_rounds,
                "warmup_rounds": config.warmup_rounds,
                "pause_seconds": config.pause,
                "cost_commands": config.cost_commands,
                "throughput_commands": config.throughput_commands,
                "throughput_users": config.throughput_users,
                "throughput_size": config.throughput_size,
            },
            "sandbox_seed_seconds": round(float(credentials["seed_seconds"]), 2),
            "sandbox_rss_mb": round(sandbox_rss / 2**20, 1),
            "stages": rows,
            "catchup": catchup,
            "storm": self.storm,
            "targets": [*found, *storm.targets(self.storm)],
            "failures": self.failures,
        }


def per_command(counters: Counters, commands: int) -> dict[str, Any]:
    rest = {k: round(v / commands, 2) for k, v in sorted(counters.rest.items())}
    return {
        "commands": commands,
        "rest_total": round(sum(counters.rest.values()) / commands, 2),
        "rest": rest,
        "ddp_frames_out": round(counters.ddp_frames_out / commands, 2),
        "ddp_frames_in": round(counters.ddp_frames_in / commands, 2),
        "ddp_methods": {k: round(v / commands, 2) for k, v in sorted(counters.ddp_methods.items())},
    }


def stage_json(stage: Stage) -> dict[str, Any]:
    bot_all = stage.bot["disable"] + stage.bot["enable"]
    floor_all = stage.floor["disable"] + stage.floor["enable"]
    latency: dict[str, Any] = {}
    for label, bot_samples, floor_samples in (
        ("all", bot_all, floor_all),
        ("disable", stage.bot["disable"], stage.floor["disable"]),
        ("enable", stage.bot["enable"], stage.floor["enable"]),
    ):
        bot, floor = Summary.of(bot_samples), Summary.of(floor_samples)
        latency[label] = {
            "bot": bot.to_json(),
            "floor": floor.to_json(),
            "ratio": {
                "p50": round(bot.p50_ms / floor.p50_ms, 3),
                "p90": round(bot.p90_ms / floor.p90_ms, 3),
                "p99": round(bot.p99_ms / floor.p99_ms, 3),
            },
        }
    return {
        "integrations": stage.integrations,
        "ready_seconds": round(stage.ready_seconds, 3),
        "catchup_seconds": round(stage.catchup_seconds, 3),
        "rss_mb": round(stage.rss_bytes / 2**20, 1),
        # One bot command per latency round; the deferred book-keeping of each is included.
        "bot_cpu_ms_per_command": round(1000 * stage.bot_cpu_seconds / max(1, len(bot_all)), 3),
        "latency": latency,
        "cost": stage.cost,
        "throughput": stage.throughput,
        "grow_seconds": round(stage.grow_seconds, 2),
    }


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, met: bool) -> None:
        found.append({"target": name, "value": round(value, 3), "limit": limit, "met": met})

    for row in rows:
        ratio = row["latency"]["all"]["ratio"]
        size = row["integrations"]
        add(f"p50 bot/floor at {size}", ratio["p50"], 1.3, ratio["p50"] <= 1.3)
        add(f"p99 bot/floor at {size}", ratio["p99"], 2.0, ratio["p99"] <= 2.0)
    for row in rows:
        if row["throughput"] is not None:
            value = row["throughput"]["ratio"]
            add(f"throughput bot/floor at {row['integrations']}", value, 0.8, value >= 0.8)
    smallest, largest = rows[0], rows[-1]
    for action in ("disable", "enable"):
        base = smallest["cost"][f"bot {action}"]["rest_total"]
        worst = max(r["cost"][f"bot {action}"]["rest_total"] for r in rows)
        add(f"REST calls per {action}, largest / smallest workspace", worst / base, 1.0, worst <= base)
    add(f"ready at {largest['integrations']} (s)", largest["ready_seconds"], 2.0, largest["ready_seconds"] <= 2.0)
    add(f"RSS at {largest['integrations']} (MB)", largest["rss_mb"], 80.0, largest["rss_mb"] <= 80.0)
    growth = largest["latency"]["all"]["bot"]["p50_ms"] / smallest["latency"]["all"]["bot"]["p50_ms"]
    add(f"p50 at {largest['integrations']} / p50 at {smallest['integrations']}", growth, 1.1, growth <= 1.1)
    return found


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


async def run_bench(config: BenchConfig, log: Any = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="integrations-bot-bench-") as workdir:
        run = Run(config, Path(workdir), log)
        return replicas.add_to(await run.run(), run.replicas)
