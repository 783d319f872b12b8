"""`integrations-bot healthcheck`: what the container HEALTHCHECK concludes from the bot's `/healthz`.

The bot side is the real `bot.runtime.health.HttpServer` on loopback with a probe the test sets; the
probe program runs in a worker thread (it is synchronous, the server lives on the test's loop) or
as the installed console script in a clean environment, as Docker runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from health_support import READY

from bot.config import Settings
from bot.ops.healthcheck import HealthcheckSettings, Verdict, check, probe_address
from bot.runtime.health import HttpServer, Probe
from bot.runtime.metrics import Metrics

SCRIPT = Path(sys.executable).with_name("integrations-bot")
RECONNECTING = dataclasses.replace(READY, realtime="connecting", logged_in=False, subscriptions_ready=False)


@asynccontextmanager
async def bot_endpoint(probe: dict[str, Probe], host: str = "127.0.0.1") -> AsyncIterator[int]:
    """The bot's real HTTP endpoint on a free port, answering from `probe["now"]`."""
    server = HttpServer(lambda: probe["now"], Metrics())
    port = await server.start(host, 0)
    try:
        yield port
    finally:
        await server.stop()


async def probe_in_thread(port: int | None, host: str = "127.0.0.1", wait: float = 3.0) -> Verdict:
    return await asyncio.to_thread(check, port, host, timeout=wait)


def run_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed script with only PATH/HOME and `env`, from an empty directory (no .env)."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(SCRIPT), "healthcheck"],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_a_logged_in_bot_is_healthy_and_a_reconnecting_one_is_not() -> None:
    probe = {"now": READY}
    async with bot_endpoint(probe) as port:
        healthy = await probe_in_thread(port)
        assert healthy.healthy
        assert healthy.line == f"healthy: http://127.0.0.1:{port}/healthz answered 200 (realtime ready, logged in)"
        probe["now"] = RECONNECTING
        sick = await probe_in_thread(port)
        assert not sick.healthy
        assert "answered 503" in sick.line and "realtime connecting, not logged in" in sick.line


async def test_nothing_listening_is_unhealthy() -> None:
    # A bound socket that does not listen: the port is surely closed and nobody else can take it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        verdict = await probe_in_thread(port)
    assert not verdict.healthy
    assert verdict.line.startswith(f"unhealthy: nothing answers at http://127.0.0.1:{port}/healthz")


async def test_a_bot_that_accepts_but_never_answers_is_unhealthy_after_the_timeout() -> None:
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen()  # the kernel accepts the connection; nobody ever reads or answers
        verdict = await probe_in_thread(hanging.getsockname()[1], wait=0.2)
    assert not verdict.healthy and "did not answer within 0.2 s" in verdict.line


async def test_another_service_on_the_port_is_not_taken_for_the_bot() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        other_port = other.getsockname()[1]

        def answer_404() -> None:
            connection, _ = other.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")

        server = asyncio.create_task(asyncio.to_thread(answer_404))
        verdict = await probe_in_thread(other_port)
        await server
    assert not verdict.healthy and verdict.line == f"unhealthy: http://127.0.0.1:{other_port}/healthz answered 404"


def test_an_unset_port_means_the_endpoint_is_off() -> None:
    verdict = check(None)
    assert not verdict.healthy and "health endpoint is off" in verdict.line and "BOT_HTTP_PORT" in verdict.line
    assert "BOT_HTTP_PORT=0" in check(0).line and not check(0).healthy


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("0.0.0.0", "127.0.0.1"),  # the image's setting: every interface, so loopback works
        ("", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("::", "[::1]"),
        ("::1", "[::1]"),
        ("10.1.2.3", "10.1.2.3"),  # bound to one address only: ask there
    ],
)
def test_the_probe_asks_where_the_bot_listens(host: str, address: str) -> None:
    assert probe_address(host) == address


async def test_a_bot_listening_on_every_interface_is_reached_over_loopback() -> None:
    async with bot_endpoint({"now": READY}, host="0.0.0.0") as port:
        assert (await probe_in_thread(port, "0.0.0.0")).healthy


def test_the_settings_match_the_bots_own() -> None:
    for name in ("bot_http_host", "bot_http_port"):
        mine, theirs = HealthcheckSettings.model_fields[name], Settings.model_fields[name]
        assert (mine.default, mine.annotation, mine.metadata) == (theirs.default, theirs.annotation, theirs.metadata)


# --- the console script, as Docker runs it ------------------------------------------------------------


async def test_the_script_exits_0_on_a_healthy_bot_and_1_on_a_sick_one_without_rocketchat_settings(
    tmp_path: Path,
) -> None:
    probe = {"now": READY}
    async with bot_endpoint(probe) as port:
        healthy = await asyncio.to_thread(run_script, tmp_path, BOT_HTTP_PORT=str(port))
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.startswith("integrations-bot healthcheck: healthy") and healthy.stderr == ""
        probe["now"] = RECONNECTING
        sick = await asyncio.to_thread(run_script, tmp_path, BOT_HTTP_PORT=str(port))
    assert sick.returncode == 1 and sick.stdout == ""
    assert sick.stderr.count("\n") == 1 and "answered 503" in sick.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "the health endpoint is off: BOT_HTTP_PORT is not set"),
        ({"BOT_HTTP_PORT": "eighty"}, "BOT_HTTP_PORT: Input should be a valid integer"),
        ({"BOT_HTTP_PORT": "0"}, "BOT_HTTP_PORT=0"),
    ],
)
def test_the_script_explains_a_missing_or_wrong_port_in_one_line_and_exits_1(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    # A broken Rocket.Chat configuration next to it does not matter to the probe.
    result = run_script(tmp_path, ROCKETCHAT_URL="not a url", **env)
    assert result.returncode == 1  # never 2: Docker reserves it
    assert result.stderr.count("\n") == 1 and says in result.stderr and "Traceback" not in result.stderr


async def test_the_script_reads_the_port_from_the_env_file_like_the_bot(tmp_path: Path) -> None:
    async with bot_endpoint({"now": READY}) as port:
        (tmp_path / ".env").write_text(f"BOT_HTTP_PORT={port}\n")
        result = await asyncio.to_thread(run_script, tmp_path)
    assert result.returncode == 0, result.stderr
