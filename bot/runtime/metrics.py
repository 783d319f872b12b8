"""Prometheus metrics of one running bot (served on `/metrics` by `bot.runtime.health`).

Each `Metrics` owns its own `CollectorRegistry`, so tests (and several bots in one process) never
share counters. The instruments are fed through three narrow doors, so no other module needs to
know Prometheus:
- `observe_command` is a `Dispatcher` observer: one call per command with its outcome and time;
- `observe_request` is the `RestClient` `on_request` hook: one call per logical REST call;
- the runtime sets the gauges and counts reconnects, catch-up and recovery results.

Label values are bounded on purpose: command names come from the command table (an unknown word
is `unknown`), endpoints are Rocket.Chat's endpoint names (never a URL with an id or a token).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from bot.rocketchat.rest import RequestRecord

# No `*_created` series: they double the output and no dashboard of ours reads them. (A process-wide
# switch of prometheus_client; the bot is the only user of it in its process.)
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX: Final = "integrations_bot"
# Commands take a few REST calls; a slow or rate-limiting server stretches them to seconds.
COMMAND_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REST_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The bot's instruments. See the README's Operations section for what each one means."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            f"{PREFIX}_commands", "Commands answered, by command and outcome", ["command", "outcome"], registry=r
        )
        self.command_seconds = Histogram(
            f"{PREFIX}_command_duration_seconds",
            "Time from starting a command to having its answer (before posting it)",
            ["command"],
            buckets=COMMAND_BUCKETS,
            registry=r,
        )
        self.commands_in_flight = Gauge(
            f"{PREFIX}_commands_in_flight", "Commands running or being answered", registry=r
        )
        self.duplicates = Counter(
            f"{PREFIX}_duplicate_deliveries",
            "Command messages seen again (re-delivery, reconnect, restart) and not run again",
            ["origin"],
            registry=r,
        )
        self.claims = Counter(
            f"{PREFIX}_claims",
            "Commands this replica tried to claim: won (it runs them) or lost (seen before, or another replica's)",
            ["result"],
            registry=r,
        )
        self.left_to_home = Counter(
            f"{PREFIX}_commands_left_to_home",
            "Commands of another replica's caller (bot/runtime/homes.py): answered there (answered), or"
            " claimed here after the delay (claimed: the home did not), or found claimed then (lost)",
            ["result"],
            registry=r,
        )
        self.replicas_alive = Gauge(
            f"{PREFIX}_replicas_alive", "Replicas on the shared database as this one last read them", registry=r
        )
        self.clock_offset = Gauge(
            f"{PREFIX}_clock_offset_seconds",
            "The shared database server's clock minus this host's, at this replica's last look (leases compare"
            " the hosts' clocks)",
            registry=r,
        )
        self.takeovers = Counter(
            f"{PREFIX}_claim_takeovers",
            "Unfinished commands taken over from a process that died (its lease ran out) or a previous run",
            registry=r,
        )
        self.state_up = Gauge(
            f"{PREFIX}_state_up", "1 while the state database answers (0 during an outage)", registry=r
        )
        self.state_up.set(1)
        self.lock_wait_seconds = Histogram(
            f"{PREFIX}_integration_lock_wait_seconds",
            "Time waited for an integration's lock in the shared database (another replica writing it)",
            buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0),
            registry=r,
        )
        self.realtime_connected = Gauge(
            f"{PREFIX}_realtime_connected", "1 while the realtime session is logged in and subscribed", registry=r
        )
        self.reconnects = Counter(
            f"{PREFIX}_realtime_reconnects", "Realtime sessions re-established after a drop", registry=r
        )
        self.disconnects = Counter(f"{PREFIX}_realtime_disconnects", "Realtime sessions lost", registry=r)
        self.rest_requests = Counter(
            f"{PREFIX}_rest_requests",
            "REST calls (after retries), by endpoint, HTTP status (none: no answer) and outcome",
            ["endpoint", "status", "outcome"],
            registry=r,
        )
        self.rest_errors = Counter(
            f"{PREFIX}_rest_errors",
            "REST calls that did not succeed, by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.rest_retries = Counter(
            f"{PREFIX}_rest_retries", "REST retries and rate-limit waits, by endpoint", ["endpoint"], registry=r
        )
        self.rest_seconds = Histogram(
            f"{PREFIX}_rest_request_duration_seconds",
            "REST call time including retries and rate-limit waits",
            ["endpoint"],
            buckets=REST_BUCKETS,
            registry=r,
        )
        self.catchup_commands = Counter(
            f"{PREFIX}_catchup_commands",
            "Commands found by catch-up after a reconnect or restart: run, stale (answered, not run) or duplicate",
            ["result"],
            registry=r,
        )
        self.catchup_passes = Counter(
            f"{PREFIX}_catchup_passes", "Catch-up passes over the bot's rooms, by outcome", ["outcome"], registry=r
        )
        self.recovered = Counter(
            f"{PREFIX}_recovered_commands",
            "Commands a crash left unfinished, by what the restart did with them",
            ["result"],
            registry=r,
        )
        self.replies_pending = Gauge(
            f"{PREFIX}_replies_pending", "Answers that could not be posted yet and are being retried", registry=r
        )
        self.pending_reenables = Gauge(
            f"{PREFIX}_pending_reenables", "Timed re-enables scheduled and not yet done", registry=r
        )

    # --- the hooks ---------------------------------------------------------------------------

    def observe_command(self, command: str, outcome: str, seconds: float) -> None:
        """A `Dispatcher` observer: (command name, outcome word, seconds)."""
        self.commands.labels(command=command, outcome=outcome).inc()
        self.command_seconds.labels(command=command).observe(max(0.0, seconds))

    def observe_request(self, record: RequestRecord) -> None:
        """The `RestClient` `on_request` hook."""
        status = str(record.status) if record.status is not None else "none"
        self.rest_requests.labels(endpoint=record.endpoint, status=status, outcome=record.outcome).inc()
        if record.outcome != "ok":
            self.rest_errors.labels(endpoint=record.endpoint, outcome=record.outcome).inc()
        if record.retries:
            self.rest_retries.labels(endpoint=record.endpoint).inc(record.retries)
        self.rest_seconds.labels(endpoint=record.endpoint).observe(max(0.0, record.duration))

    # --- exposition --------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["COMMAND_BUCKETS", "PREFIX", "REST_BUCKETS", "Metrics"]
