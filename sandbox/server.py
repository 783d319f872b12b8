"""Running the sandbox: the ASGI app (REST + DDP + control API) under uvicorn in its own thread.

`SandboxServer.start()` binds the listening socket itself (so `port=0` yields the real port before
anything runs), starts uvicorn on a private event loop in a daemon thread, and returns only once
a TCP connection to the socket succeeds. `stop()` closes every websocket cleanly, asks uvicorn to
exit, and joins the thread.

Tests reach into the running server through `control` (a `SandboxControl`): its methods are
synchronous and may be called from any thread except the server's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from sandbox.config import SandboxConfig
from sandbox.control import SandboxControl, control_routes
from sandbox.faults import ClientAddress, FaultMiddleware, Faults
from sandbox.realtime import RealtimeHub, realtime_routes
from sandbox.rest import rest_routes
from sandbox.store import Store

log = logging.getLogger("sandbox.server")

_START_TIMEOUT: Final = 15.0
_STOP_TIMEOUT: Final = 10.0


def create_app(
    store: Store,
    config: SandboxConfig,
    *,
    faults: Faults,
    hub: RealtimeHub,
    control: SandboxControl,
    control_secret: str,
) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        hub.attach()
        try:
            yield
        finally:
            hub.detach()

    routes: list[BaseRoute] = [
        Mount("/_sandbox", routes=control_routes(control, control_secret)),
        *realtime_routes(hub),
        *rest_routes(store, config),
    ]
    return FaultMiddleware(Starlette(routes=routes, lifespan=lifespan), faults)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the embedding program owns the signals
    (the CLI stops the server itself; tests and the benchmark must keep Ctrl-C working)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SandboxServer:
    def __init__(
        self,
        store: Store | None = None,
        config: SandboxConfig | None = None,
        *,
        welcome_frame: bool = False,
        control_secret: str | None = None,
    ) -> None:
        self.store = store if store is not None else Store()
        self.config = config if config is not None else SandboxConfig()
        self.faults = Faults()
        self.faults.transport_aborter = self._abort_client
        self.hub = RealtimeHub(self.store, self.config, self.faults, welcome_frame=welcome_frame)
        self.control = SandboxControl(self.store, faults=self.faults, config=self.config, connections=self)
        self.control_secret = control_secret or secrets.token_urlsafe(32)
        self.app = create_app(
            self.store,
            self.config,
            faults=self.faults,
            hub=self.hub,
            control=self.control,
            control_secret=self.control_secret,
        )
        self.host = "127.0.0.1"
        self.port = 0
        self._uvicorn: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 - display only
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        if self._task is not None:
            return not self._task.done()
        return self._thread is not None and self._thread.is_alive()

    def _prepare(self, host: str, port: int) -> tuple[uvicorn.Server, socket.socket]:
        if self._uvicorn is not None:
            raise RuntimeError("the sandbox server was already started")
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
        # proto says TCP, and accepted sockets inherit it. Without it every request on a kept-alive
        # connection stalls ~40 ms (Nagle meets the client's delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self.host, self.port = host, int(sock.getsockname()[1])
        self.store.set_setting("Site_Url", self.url)
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            ws="websockets-sansio",
            # Meteor keeps DDP alive with its own ping frames, never with websocket-level pings.
            ws_ping_interval=None,
            ws_ping_timeout=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._uvicorn = _EmbeddedUvicorn(config)
        return self._uvicorn, sock

    def _probe(self) -> None:
        host = self.url.removeprefix("http://").rsplit(":", 1)[0]
        with socket.create_connection((host, self.port), timeout=_START_TIMEOUT):
            pass

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port from a background thread (port 0 picks a free port, see `port`);
        returns once connections are accepted."""
        server, sock = self._prepare(host, port)
        self._thread = threading.Thread(target=self._serve, args=(server, sock), name="sandbox-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the sandbox server failed to start") from self._crash
            if time.monotonic() > deadline:
                raise TimeoutError("the sandbox server did not start in time")
            time.sleep(0.005)
        self._probe()

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:
            self._crash = exc
            log.exception("sandbox server crashed")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            sock.close()

    def stop(self) -> None:
        """Close websockets, stop serving, join the server thread. Safe to call twice."""
        thread, server, loop = self._thread, self._uvicorn, self._loop
        if thread is None or server is None:
            return
        if thread.is_alive() and loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.hub.close_all(1001), loop).result(_STOP_TIMEOUT)
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        self.control.close()
        if thread.is_alive():
            raise TimeoutError("the sandbox server did not stop in time")

    def __enter__(self) -> SandboxServer:
        if self._uvicorn is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # --- the same inside a running event loop -------------------------------------------------------

    async def start_async(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve from the *current* event loop. Control methods then run on that loop's thread:
        call the blocking ones (`wait_for_message`) through `asyncio.to_thread`."""
        server, sock = self._prepare(host, port)
        self._loop = asyncio.get_running_loop()
        self._socket = sock
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="sandbox-server")
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if self._task.done():
                sock.close()
                raise RuntimeError("the sandbox server failed to start") from self._task.exception()
            if time.monotonic() > deadline:
                raise TimeoutError("the sandbox server did not start in time")
            await asyncio.sleep(0.005)
        await asyncio.to_thread(self._probe)

    async def stop_async(self) -> None:
        task, server = self._task, self._uvicorn
        if task is None or server is None or task.done():
            return
        await self.hub.close_all(1001)
        server.should_exit = True
        await asyncio.wait_for(task, _STOP_TIMEOUT)
        self.control.close()
        if self._socket is not None:
            self._socket.close()

    async def __aenter__(self) -> SandboxServer:
        if self._uvicorn is None:
            await self.start_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop_async()

    # --- socket-level operations (Connections protocol of SandboxControl) ---------------------------

    def drop_connections(self) -> int:
        """Drop every websocket abruptly; returns how many. Callable from any thread."""
        loop = self._loop
        if loop is None or not self.running:
            return 0
        if self._on_loop(loop):
            return self.hub.drop_all()

        async def drop() -> int:
            return self.hub.drop_all()

        return asyncio.run_coroutine_threadsafe(drop(), loop).result(_STOP_TIMEOUT)

    @staticmethod
    def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    def _abort_client(self, client: ClientAddress) -> bool:
        """Abort the TCP connection of one peer address, without any closing handshake (loop only).

        uvicorn keeps every live protocol object (HTTP or websocket) in `server_state.connections`,
        each with its peer address in `client` and its asyncio transport in `transport`."""
        server = self._uvicorn
        if server is None:
            return False
        for protocol in list(server.server_state.connections):
            peer: Any = getattr(protocol, "client", None)
            transport: Any = getattr(protocol, "transport", None)
            if peer is not None and tuple(peer) == tuple(client) and transport is not None:
                transport.abort()
                return True
        return False
