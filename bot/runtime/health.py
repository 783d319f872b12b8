"""The bot's optional HTTP endpoint: `/healthz`, `/readyz` and `/metrics` (BOT_HTTP_PORT).

Theory of operation
-------------------
The runtime hands this module a `probe`: a function returning a frozen `Probe` (what the bot can
say about itself right now). Two pure functions turn a probe into an HTTP status and a JSON body:

- `/healthz` (liveness, the container HEALTHCHECK): 200 while the realtime session is connected
  and logged in, 503 otherwise. A bot that is reconnecting after a drop is briefly unhealthy;
  an orchestrator should restart it only after several failures in a row (see the Dockerfile).
- `/readyz` (ready to take commands): logged in, every subscription ready (the message stream
  included), the state database open and the permission table loaded, and not shutting down.
- `/metrics`: the Prometheus text format of `bot.runtime.metrics.Metrics`.

The server is uvicorn running a tiny Starlette app inside the bot's own event loop: uvicorn and
Starlette are already dependencies (the sandbox server uses them). uvicorn's signal handlers are
disabled (the bot owns SIGTERM/SIGINT) and so is its logging configuration (the bot's structured
logging stays in charge). The socket is bound here, so port 0 works and the real port is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import logs
from bot.errors import ConfigError
from bot.runtime.metrics import Metrics

log = logs.get_logger("integrations_bot.health")

_STOP_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class Probe:
    """What the bot knows about itself at one moment."""

    realtime: str  # bot.rocketchat.realtime.RealtimeState value, or "starting" before the client exists
    logged_in: bool
    subscriptions_ready: bool
    message_stream: bool  # False once the server ended the message subscription (the bot is deaf)
    state_db_open: bool
    permissions_loaded: bool
    stopping: bool


def healthz(probe: Probe) -> tuple[int, dict[str, Any]]:
    healthy = probe.logged_in
    body = {"status": "ok" if healthy else "unavailable", "realtime": probe.realtime, "logged_in": probe.logged_in}
    return (200 if healthy else 503), body


def readyz(probe: Probe) -> tuple[int, dict[str, Any]]:
    checks = {
        "logged_in": probe.logged_in,
        "subscriptions_ready": probe.subscriptions_ready and probe.message_stream,
        "state_db_open": probe.state_db_open,
        "permissions_loaded": probe.permissions_loaded,
        "accepting_commands": not probe.stopping,
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not-ready", "realtime": probe.realtime, "checks": checks}
    return (200 if ready else 503), body


def create_app(probe: Callable[[], Probe], metrics: Metrics) -> Starlette:
    async def health(_request: Request) -> Response:
        status, body = healthz(probe())
        return JSONResponse(body, status_code=status)

    async def ready(_request: Request) -> Response:
        status, body = readyz(probe())
        return JSONResponse(body, status_code=status)

    async def exposition(_request: Request) -> Response:
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/readyz", ready, methods=["GET"]),
            Route("/metrics", exposition, methods=["GET"]),
        ]
    )


class _QuietUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the bot's SIGTERM handler must stay in charge."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serves `create_app` on host:port from the running event loop."""

    def __init__(self, probe: Callable[[], Probe], metrics: Metrics) -> None:
        self.app = create_app(probe, metrics)
        self.host = ""
        self.port = 0
        self._server: _QuietUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; returns the bound port. A port in use is a ConfigError naming the setting."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"BOT_HTTP_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        sock.listen(64)
        sock.setblocking(False)
        self.host, self.port = host, int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            ws="none",
            log_config=None,  # keep the bot's logging configuration
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = _QuietUvicorn(config)
        self._server, self._socket = server, sock
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
        while not server.started:
            if self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done() and not server.started:
            error = self._task.exception()
            sock.close()
            raise ConfigError(f"BOT_HTTP_PORT: the HTTP endpoint did not start ({error})")
        log.info("http.listening", host=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, _STOP_TIMEOUT)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None


__all__ = ["HttpServer", "Probe", "create_app", "healthz", "readyz"]
