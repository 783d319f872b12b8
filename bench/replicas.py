"""The bot on PostgreSQL in the benchmark: 1 replica and 3 replicas on one shared database.

Theory of operation
-------------------
At the throughput size (1,000 integrations), right after the SQLite bot's stage, the driver
starts one PostgreSQL server (`tests.postgres_support.PostgresServer`, the tests' own throwaway
server: `initdb` into a temporary directory, run as the `postgres` user when root; `make bench`
installs Debian's package like `make test` does) and, for each replica count (1, then 3):

1. creates a new, empty database and starts that many real `integrations-bot run` processes on
   it, each in its own working directory, all with the same credentials and `BOT_STATE_URL`,
   and `BOT_HTTP_PORT` for their `/metrics`; waits for every replica's first catch-up pass;
2. runs the SQLite bot's own workloads through them (`Run._rounds`: warm-up, then latency
   rounds alternating with the floor; `Run._cost`: REST calls per command; `Run._throughput`:
   1,000 commands at once, then the floor the same way), so each variant has floor rounds of its
   own, measured in the same minutes; over the latency rounds it takes the CPU time of each
   replica and of the PostgreSQL server (postmaster and backends);
3. checks that every command was run once and answered once: the replicas' claims won (from
   their `/metrics`, `integrations_bot_claims_total{result="won"}`) add up to the commands sent,
   none was taken over, every answer is at the first id of its chain and no command has a second
   answer (a later id of the chain);
4. stops the replicas.

Every replica receives every command on its own realtime session; each caller's home replica
claims theirs first (`bot.runtime.homes`) and the claim in the database decides
(`bot.state.store`), so the claims won per replica (all of them, and those of the throughput
burst) show how the work was shared.

The server runs with the tests' settings (`tests.postgres_support.SETTINGS`): no fsync, as the
SQLite bot's WAL with synchronous=NORMAL makes none per commit either; a production server
fsyncs its WAL at each commit, which these figures leave out.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import psutil

from bench.processes import BotProcess
from bench.stats import Summary
from bot.rocketchat.message_ids import MessageIds
from bot.state.store import read_message_ids
from tests.postgres_support import PostgresServer

if TYPE_CHECKING:
    from bench.driver import Operator, Run, SandboxApi, Stage
    from bench.floor import FloorClient

P50_LIMIT: Final = 1.4  # PostgreSQL p50 / the floor's (issue 15)
THROUGHPUT_LIMIT: Final = 1.0  # 3 replicas' throughput / the floor's (issue 15)
_METRIC: Final = re.compile(r"^(integrations_bot_[a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$")


def variant_name(replicas: int) -> str:
    return f"PostgreSQL×{replicas}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def parse_metrics(text: str) -> dict[str, float]:
    """The bot's own samples of a Prometheus text page, keyed `name` or `name{labels}`."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line.strip())
        if match:
            name, labels, value = match.groups()
            found[f"{name}{{{labels}}}" if labels else name] = float(value)
    return found


@dataclass(frozen=True)
class Claims:
    """One replica's claim counters."""

    won: int
    lost: int
    takeovers: int

    @classmethod
    def of(cls, samples: dict[str, float]) -> Claims:
        return cls(
            won=int(samples.get('integrations_bot_claims_total{result="won"}', 0)),
            lost=int(samples.get('integrations_bot_claims_total{result="lost"}', 0)),
            takeovers=int(samples.get("integrations_bot_claim_takeovers_total", 0)),
        )

    def __sub__(self, other: Claims) -> Claims:
        return Claims(self.won - other.won, self.lost - other.lost, self.takeovers - other.takeovers)


class Replicas:
    """`count` real `integrations-bot run` processes on one PostgreSQL database."""

    def __init__(self, workdir: Path, credentials: dict[str, Any], state_url: str, count: int) -> None:
        bot_credentials = credentials["bot"]
        self.ports = [_free_port() for _ in range(count)]
        self.bots: list[BotProcess] = []
        for number, port in enumerate(self.ports):
            bot = BotProcess(
                workdir / f"replica-{number}",
                credentials["url"],
                bot_credentials["userId"],
                bot_credentials["authToken"],
            )
            bot.env["BOT_STATE_URL"] = state_url
            bot.env["BOT_HTTP_PORT"] = str(port)
            self.bots.append(bot)
        self._http = httpx.AsyncClient(timeout=10.0)

    async def start(self, timeout: float) -> tuple[float, float]:  # noqa: ASYNC109
        """Start them all at once; returns the slowest one's seconds to `bot.ready` and to the end
        of its first catch-up pass after that."""
        try:
            ready = await asyncio.gather(*(bot.start() for bot in self.bots))
            caught_up = await asyncio.gather(*(bot.wait_caught_up(timeout) for bot in self.bots))
        except BaseException:
            await self.stop()
            raise
        return max(ready), max(caught_up)

    async def claims(self) -> list[Claims]:
        found = []
        for port in self.ports:
            response = await self._http.get(f"http://127.0.0.1:{port}/metrics")
            response.raise_for_status()
            found.append(Claims.of(parse_metrics(response.text)))
        return found

    def cpu_seconds(self) -> list[float]:
        return [bot.cpu_seconds() for bot in self.bots]

    def rss(self) -> list[int]:
        return [bot.rss() for bot in self.bots]

    async def stop(self) -> list[int]:
        await self._http.aclose()
        return list(await asyncio.gather(*(bot.stop() for bot in self.bots)))


async def answered_once(api: SandboxApi, ids: MessageIds, commands: list[str]) -> dict[str, int]:
    """How many of `commands` have their answer at the first id of its chain, or a second answer
    (a later id): all and none when each was answered exactly once."""
    first = [ids.answer(c)[0] for c in commands]
    later = [i for c in commands for i in ids.answer(c)[1:]]
    stored = await api.stored([*first, *later])
    return {
        "commands": len(commands),
        "answered": sum(i in stored for i in first),
        "answered_again": sum(i in stored for i in later),
    }


def server_cpu_seconds(server: PostgresServer) -> float:
    """CPU time (user + system) of the PostgreSQL server so far: the postmaster, its live
    processes (a backend per pooled connection) and those it has reaped."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    own = postmaster.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in postmaster.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return float(total)


def latency_json(stage: Stage) -> dict[str, Any]:
    bot = Summary.of(stage.bot["disable"] + stage.bot["enable"])
    floor = Summary.of(stage.floor["disable"] + stage.floor["enable"])
    return {
        "bot": bot.to_json(),
        "floor": floor.to_json(),
        "ratio": {"p50": round(bot.p50_ms / floor.p50_ms, 3), "p99": round(bot.p99_ms / floor.p99_ms, 3)},
    }


async def measure(
    run: Run,
    api: SandboxApi,
    floor: FloorClient,
    credentials: dict[str, Any],
    operators: list[Operator],
    *,
    sqlite_stage: Stage,
) -> dict[str, Any]:
    """Every replica count of `run.config.replica_counts` at `sqlite_stage`'s size (module docstring)."""
    from bench.driver import Stage
    from bench.workspace import integration_name

    config = run.config
    server = PostgresServer()
    started = time.perf_counter()
    server.start()  # on this thread: the server gets a parent-death signal when its parent thread ends
    run.log(f"PostgreSQL {server.bindir.parent.name} started in {time.perf_counter() - started:.1f} s")
    variants: list[dict[str, Any]] = []
    try:
        for count in config.replica_counts:
            name = variant_name(count)
            run.log(f"--- {name} at {sqlite_stage.integrations} integrations")
            url = server.create_database(f"bench_{count}x")
            replicas = Replicas(run.workdir / f"postgres-{count}x", credentials, url, count)
            ready, caught_up = await replicas.start(config.timeout)
            run.log(f"{count} replica(s) ready in {ready:.2f} s, first catch-up pass done {caught_up:.2f} s later")
            ids = read_message_ids(url)
            run._ids = ids
            stage = Stage(sqlite_stage.integrations)
            try:
                before = await replicas.claims()
                run.sent = []
                bot_targets = [integration_name(n) for n in range(config.targets)]
                floor_targets = [integration_name(n) for n in range(config.targets, 2 * config.targets)]
                await run._rounds(None, api, floor, operators, bot_targets, floor_targets, config.warmup_rounds)
                cpu, server_cpu = replicas.cpu_seconds(), server_cpu_seconds(server)
                await run._rounds(stage, api, floor, operators, bot_targets, floor_targets, config.latency_rounds)
                per_round = 1000 / max(1, config.latency_rounds)
                cpu_ms = [per_round * (b - a) for a, b in zip(cpu, replicas.cpu_seconds(), strict=True)]
                server_cpu_ms = per_round * (server_cpu_seconds(server) - server_cpu)
                rss = replicas.rss()
                stage.cost = await run._cost(api, floor, operators, bot_targets, floor_targets)
                before_burst = await replicas.claims()
                stage.throughput = await run._throughput(api, floor, operators)
                rss = [max(a, b) for a, b in zip(rss, replicas.rss(), strict=True)]
                await asyncio.sleep(0.5)  # the last commands' book-keeping, before the claims are read
                after = await replicas.claims()
                claims = [a - b for a, b in zip(after, before, strict=True)]
                burst = [a - b for a, b in zip(after, before_burst, strict=True)]
                answers = await answered_once(api, ids, run.sent)
            finally:
                codes = await replicas.stop()
            variant = {
                "name": name,
                "replicas": count,
                "ready_seconds": round(ready, 3),
                "catchup_seconds": round(caught_up, 3),
                # CPU per latency round (one bot command, one floor command), per replica and of the
                # PostgreSQL server; each bot also receives the floor's answers
                "cpu_ms_per_command": [round(c, 3) for c in cpu_ms],
                "postgres_cpu_ms_per_command": round(server_cpu_ms, 3),
                "rss_mb": [round(r / 2**20, 1) for r in rss],
                "latency": latency_json(stage),
                "cost": stage.cost,
                "throughput": stage.throughput,
                "claims": [{"won": c.won, "lost": c.lost, "takeovers": c.takeovers} for c in claims],
                "claims_won_in_burst": [c.won for c in burst],  # of the throughput stage's commands
                "answers": answers,
            }
            variants.append(variant)
            run.failures.extend(check(variant, codes))
    finally:
        server.close()
    return {
        "integrations": sqlite_stage.integrations,
        "postgresql": server.bindir.parent.name,
        "sqlite": {
            "latency": latency_json(sqlite_stage),
            "cost": sqlite_stage.cost,
            "cpu_ms_per_command": [sqlite_stage.bot_cpu_seconds * 1000 / max(1, config.latency_rounds)],
            "throughput": sqlite_stage.throughput,
        },
        "variants": variants,
    }


def check(variant: dict[str, Any], codes: list[int]) -> list[str]:
    """What went wrong in one variant: every command run once (claims) and answered once."""
    name = variant["name"]
    problems = [f"{name}: replica {n} exited with {code}" for n, code in enumerate(codes) if code != 0]
    answers = variant["answers"]
    commands = answers["commands"]
    won = sum(c["won"] for c in variant["claims"])
    if won != commands:
        problems.append(f"{name}: {won} claims won for {commands} commands")
    if any(c["takeovers"] for c in variant["claims"]):
        problems.append(f"{name}: claims taken over: {[c['takeovers'] for c in variant['claims']]}")
    if answers["answered"] != commands or answers["answered_again"]:
        problems.append(f"{name}: not every command answered exactly once: {answers}")
    return problems


def targets(replicas: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's targets: PostgreSQL p50 within 1.4× the floor (each replica count), and 3
    replicas' throughput at least the floor's."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, met: bool) -> None:
        found.append({"target": name, "value": round(value, 3), "limit": limit, "met": met})

    size = replicas["integrations"]
    for variant in replicas["variants"]:
        p50 = variant["latency"]["ratio"]["p50"]
        add(f"p50 {variant['name']}/floor at {size}", p50, P50_LIMIT, p50 <= P50_LIMIT)
    for variant in replicas["variants"]:
        if variant["replicas"] == 3 and variant["throughput"] is not None:
            ratio = variant["throughput"]["ratio"]
            add(f"throughput {variant['name']}/floor at {size}", ratio, THROUGHPUT_LIMIT, ratio >= THROUGHPUT_LIMIT)
    return found


def add_to(results: dict[str, Any], replicas: dict[str, Any] | None) -> dict[str, Any]:
    """`results` with the replicas' figures and targets (none when the run had no replica stage)."""
    if replicas is not None:
        results["replicas"] = replicas
        results["targets"] = [*results["targets"], *targets(replicas)]
    return results


def table(results: dict[str, Any]) -> list[str]:
    """The side-by-side lines of the report: floor, SQLite, PostgreSQL with 1 and 3 replicas."""
    replicas = results.get("replicas")
    if not replicas:
        return []
    columns = [("SQLite", replicas["sqlite"]), *((v["name"], v) for v in replicas["variants"])]
    floor_p50 = [c["latency"]["floor"]["p50_ms"] for _, c in columns]
    floor_p99 = [c["latency"]["floor"]["p99_ms"] for _, c in columns]
    floor_rate = [c["throughput"]["floor_per_second"] for _, c in columns if c["throughput"]]

    def span(values: list[float], digits: int) -> str:
        low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
        return low if low == high else f"{low}–{high}"

    def claims(column: dict[str, Any]) -> str:
        return " / ".join(str(c["won"]) for c in column.get("claims", [])) or "-"

    def once(column: dict[str, Any]) -> str:
        answers = column.get("answers")
        if answers is None:
            return "-"
        ok = answers["answered"] == answers["commands"] and not answers["answered_again"]
        return f"{answers['answered']}/{answers['commands']}" + ("" if ok else " NOT ONCE")

    def rest(column: dict[str, Any], key: str) -> str:
        found = column.get("cost", {}).get(key)
        return "-" if found is None else f"{found['rest_total']:g}"

    def server(column: dict[str, Any]) -> str:
        return f"{column['postgres_cpu_ms_per_command']:.1f}"

    def rate(column: dict[str, Any]) -> str:
        found = column["throughput"]
        return "-" if found is None else f"{found['bot_per_second']:.0f} ({found['ratio']:.2f})"

    header = ["", "floor", *(name for name, _ in columns)]
    rows = [
        header,
        [
            "latency p50 / p99 (ms)",
            f"{span(floor_p50, 1)} / {span(floor_p99, 1)}",
            *(f"{c['latency']['bot']['p50_ms']:.1f} / {c['latency']['bot']['p99_ms']:.1f}" for _, c in columns),
        ],
        [
            "ratio to the floor p50 / p99",
            "1",
            *("{p50:.2f} / {p99:.2f}".format(**c["latency"]["ratio"]) for _, c in columns),
        ],
        [
            "REST calls per disable / enable",
            f"{rest(columns[0][1], 'floor disable')} / {rest(columns[0][1], 'floor enable')}",
            *(f"{rest(c, 'bot disable')} / {rest(c, 'bot enable')}" for _, c in columns),
        ],
        [
            "bot CPU per round (ms), per process",
            "-",
            *(" + ".join(f"{ms:.1f}" for ms in c["cpu_ms_per_command"]) for _, c in columns),
        ],
        ["PostgreSQL server CPU per round (ms)", "-", "-", *(server(c) for _, c in columns[1:])],
        ["throughput, commands/s (ratio)", f"{span(floor_rate, 0)} (1)", *(rate(c) for _, c in columns)],
        ["claims won per replica: all", "-", "-", *(claims(c) for _, c in columns[1:])],
        [
            "  of which in the burst",
            "-",
            "-",
            *(" / ".join(str(n) for n in c["claims_won_in_burst"]) for _, c in columns[1:]),
        ],
        ["answered exactly once", "-", "-", *(once(c) for _, c in columns[1:])],
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return [
        "",
        f"state backends at {replicas['integrations']:,} integrations (PostgreSQL {replicas['postgresql']}, "
        "one server; each bot beside floor rounds of its own, ratios to those):",
        *lines,
    ]
