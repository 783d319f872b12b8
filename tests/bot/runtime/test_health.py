"""`/healthz`, `/readyz` and `/metrics`: the pure rules, the HTTP server, and a running bot's states."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from health_support import READY
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from reliability_support import World, call, running_bot, settings_for, until, world

from bot.errors import ConfigError
from bot.rocketchat.rest import RequestRecord
from bot.runtime.health import HttpServer, Probe, healthz, readyz
from bot.runtime.metrics import Metrics


def test_a_ready_bot_is_healthy_and_ready() -> None:
    assert healthz(READY)[0] == 200
    status, body = readyz(READY)
    assert status == 200 and body["status"] == "ready" and all(body["checks"].values())


@pytest.mark.parametrize(
    ("change", "health", "ready", "failing"),
    [
        ({"realtime": "connecting", "logged_in": False, "subscriptions_ready": False}, 503, 503, "logged_in"),
        ({"realtime": "subscribing", "subscriptions_ready": False}, 200, 503, "subscriptions_ready"),
        ({"message_stream": False}, 200, 503, "subscriptions_ready"),
        ({"state_db_open": False}, 200, 503, "state_db_open"),
        ({"permissions_loaded": False}, 200, 503, "permissions_loaded"),
        ({"stopping": True}, 200, 503, "accepting_commands"),
    ],
)
def test_what_makes_the_bot_unhealthy_or_not_ready(
    change: dict[str, object], health: int, ready: int, failing: str
) -> None:
    probe = dataclasses.replace(READY, **change)  # type: ignore[arg-type]
    assert healthz(probe)[0] == health
    status, body = readyz(probe)
    assert status == ready and body["checks"][failing] is False
    assert body["realtime"] == probe.realtime


@given(st.builds(Probe, st.sampled_from(["ready", "subscribing", "connecting"]), *[st.booleans()] * 6))
def test_ready_implies_healthy(probe: Probe) -> None:
    if readyz(probe)[0] == 200:
        assert healthz(probe)[0] == 200


# --- metrics --------------------------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render()[0].decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_rest_calls_are_counted_by_endpoint_status_and_outcome() -> None:
    metrics = Metrics()
    metrics.observe_request(RequestRecord("integrations.get", "GET", 200, 0.01, 0, "ok"))
    metrics.observe_request(RequestRecord("integrations.update", "PUT", 500, 1.5, 3, "unavailable"))
    metrics.observe_request(RequestRecord("chat.sendMessage", "POST", None, 30.0, 3, "unavailable"))
    got = samples(metrics)
    key = (("endpoint", "integrations.get"), ("outcome", "ok"), ("status", "200"))
    assert got[("integrations_bot_rest_requests_total", key)] == 1
    no_answer = (("endpoint", "chat.sendMessage"), ("outcome", "unavailable"), ("status", "none"))
    assert got[("integrations_bot_rest_requests_total", no_answer)] == 1
    errors = (("endpoint", "integrations.update"), ("outcome", "unavailable"))
    assert got[("integrations_bot_rest_errors_total", errors)] == 1
    assert ("integrations_bot_rest_errors_total", (("endpoint", "integrations.get"), ("outcome", "ok"))) not in got
    assert got[("integrations_bot_rest_retries_total", (("endpoint", "integrations.update"),))] == 3


def test_commands_are_counted_by_name_and_outcome_with_a_latency_histogram() -> None:
    metrics = Metrics()
    metrics.observe_command("disable", "changed", 0.2)
    metrics.observe_command("disable", "denied", 0.05)
    got = samples(metrics)
    assert got[("integrations_bot_commands_total", (("command", "disable"), ("outcome", "changed")))] == 1
    assert got[("integrations_bot_command_duration_seconds_count", (("command", "disable"),))] == 2
    assert got[("integrations_bot_command_duration_seconds_bucket", (("command", "disable"), ("le", "0.25")))] == 2
    assert not any(name.endswith("_created") for name, _ in got)


# --- the HTTP server ------------------------------------------------------------------------------


async def test_the_endpoints_follow_the_probe_and_serve_metrics() -> None:
    current = {"probe": dataclasses.replace(READY, realtime="connecting", logged_in=False)}
    metrics = Metrics()
    metrics.observe_command("list", "ok", 0.1)
    server = HttpServer(lambda: current["probe"], metrics)
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await client.get("/healthz")
            assert answer.status_code == 503 and answer.json()["realtime"] == "connecting"
            current["probe"] = READY
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            exposition = await client.get("/metrics")
            assert exposition.status_code == 200 and exposition.headers["content-type"].startswith("text/plain")
            assert 'integrations_bot_commands_total{command="list",outcome="ok"} 1.0' in exposition.text
            assert (await client.get("/nothing-here")).status_code == 404
    finally:
        await server.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_port_in_use_is_a_configuration_error_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer(lambda: READY, Metrics())
        with pytest.raises(ConfigError, match="BOT_HTTP_PORT"):
            await server.start("127.0.0.1", port)


# --- a running bot ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_world() -> Iterator[World]:
    with world() as w:
        yield w


async def test_a_running_bot_reports_its_state_through_a_drop_and_a_stop(sandbox_world: World, tmp_path: Path) -> None:
    control = sandbox_world.control
    settings = settings_for(sandbox_world, tmp_path, bot_http_port=0)
    async with running_bot(settings) as (bot, _task):
        assert bot.http is not None
        base = f"http://127.0.0.1:{bot.http.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            await until(lambda: bot.probe().subscriptions_ready, what="ready")
            assert (await client.get("/readyz")).status_code == 200
            command = await call(control.post_message, "admin", "general", "!integration help")
            assert bot.state is not None
            answer = bot.state.message_ids.answer(command["_id"])
            await call(control.wait_for_message, "general", lambda m: m["_id"] in answer, 10)

            await call(control.refuse_connections, 30)
            await call(control.drop_connections)
            await until(lambda: not bot.probe().logged_in, what="the drop")
            answer = await client.get("/healthz")
            assert answer.status_code == 503 and answer.json()["logged_in"] is False
            assert (await client.get("/readyz")).status_code == 503
            await call(control.refuse_connections, 0)
            await until(lambda: bot.probe().subscriptions_ready, timeout=20, what="the reconnect")
            assert (await client.get("/healthz")).status_code == 200
            await until(
                lambda: samples(bot.metrics).get(("integrations_bot_realtime_reconnects_total", ())) == 1,
                what="the reconnect metric",
            )
            text = (await client.get("/metrics")).text
            assert 'integrations_bot_commands_total{command="help",outcome="ok"} 1.0' in text
            assert "integrations_bot_realtime_reconnects_total 1.0" in text
            assert 'integrations_bot_rest_requests_total{endpoint="chat.sendMessage",outcome="ok",status="200"}' in text
            assert "integrations_bot_realtime_connected 1.0" in text
            bot.stop()
            await until(lambda: bot.probe().stopping, what="stopping")
    assert not bot.probe().state_db_open
