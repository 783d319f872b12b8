"""The realtime endpoint: a thin asyncio driver of `DDPSession` over Starlette websockets.

Theory of operation
-------------------
`RealtimeHub` lives on the server's event loop. It registers one store listener; the store calls
it synchronously, under its lock, from whichever thread changed the data (a REST handler on the
loop, a test thread using the control API...). The listener only hands the event to the loop with
`call_soon_threadsafe`, which keeps the store's commit order, so every session sees every event
once and in order. On the loop the hub gives the event to each session and wakes its writer.

Each websocket gets four small tasks around its session:

* reader: frames from the socket into `session.receive` (pings are answered right there);
* worker: executes queued method/sub calls one at a time, applying injected faults;
* writer: the only task that sends, so frames leave in the order the session queued them;
* heartbeat: sleeps until `session.next_timer()` and calls `on_timer`.

The connection ends when any of them ends (client gone, server-requested close, socket error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from sandbox.config import SandboxConfig
from sandbox.ddp import Call, DDPSession, Frames, SubscriptionTrash, internal_error, too_many_requests
from sandbox.faults import DDP_PREFIX, ClientAddress, Faults
from sandbox.store import Event, Store, SubscriptionEvent

log = logging.getLogger("sandbox.realtime")

# The frame Meteor 2.x sends first to force very old clients to reload (contract §4.1).
LEGACY_WELCOME = '{"server_id":"0"}'


class RealtimeHub:
    def __init__(
        self, store: Store, config: SandboxConfig, faults: Faults | None = None, *, welcome_frame: bool = False
    ) -> None:
        self.store = store
        self.config = config
        self.faults = faults or Faults()
        self.welcome_frame = welcome_frame
        self.trash = SubscriptionTrash()
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle (on the server loop) -------------------------------------------------------------

    def attach(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.store.add_listener(self._on_store_event)

    def detach(self) -> None:
        self.store.remove_listener(self._on_store_event)
        self._loop = None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # --- events -------------------------------------------------------------------------------

    def _on_store_event(self, event: Event) -> None:
        """Any thread, under the store lock: record what must be, then hop onto the loop."""
        if isinstance(event, SubscriptionEvent) and event.action == "removed":
            self.trash.record(event.user_id, event.subscription["_id"], self.store.clock())
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down: nobody is listening
            loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: Event) -> None:
        frames: Frames = {}  # a frame alike for several sessions is encoded once
        for connection in list(self._connections):
            connection.session.deliver(event, frames)
            connection.wake_writer()

    def _schedule_ephemeral(self, user_id: str, message: dict[str, Any]) -> None:
        # Called from inside a session's method: deliver after it, as Rocket.Chat's broadcast does.
        loop = self._loop
        if loop is not None:
            loop.call_soon(self._fan_out_ephemeral, user_id, message)

    def _fan_out_ephemeral(self, user_id: str, message: dict[str, Any]) -> None:
        for connection in list(self._connections):
            connection.session.deliver_ephemeral(user_id, message)
            connection.wake_writer()

    # --- connections --------------------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        connection = _Connection(self, websocket)
        self._connections.add(connection)
        self.faults.count_ws_connection()
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            connection.session.connection_lost()
            connection.done.set()

    def drop_all(self) -> int:
        """Drop every websocket abruptly (no close frame), as a network failure looks to a client."""
        dropped = 0
        for connection in list(self._connections):
            if connection.abort():
                dropped += 1
        return dropped

    async def close_all(self, code: int = 1001, grace: float = 2.0) -> None:
        """Close every websocket cleanly (server shutdown); wait up to `grace` s for their drivers."""
        connections = list(self._connections)
        for connection in connections:
            connection.session.close(code)
            connection.wake_writer()
        waits = [asyncio.ensure_future(c.done.wait()) for c in connections]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=grace)
            for task in pending:
                task.cancel()


class _Connection:
    def __init__(self, hub: RealtimeHub, websocket: WebSocket) -> None:
        self.hub = hub
        self.websocket = websocket
        self.session = DDPSession(hub.store, hub.config, ephemeral=hub._schedule_ephemeral, trash=hub.trash)
        client = websocket.client
        self.client: ClientAddress | None = (client.host, client.port) if client is not None else None
        self.done = asyncio.Event()
        self._writable = asyncio.Event()
        self._calls = asyncio.Event()
        self._timer = asyncio.Event()

    def wake_writer(self) -> None:
        self._writable.set()

    def abort(self) -> bool:
        aborter = self.hub.faults.transport_aborter
        return aborter is not None and self.client is not None and aborter(self.client)

    async def run(self) -> None:
        if self.hub.welcome_frame:
            await self.websocket.send_text(LEGACY_WELCOME)
            self.hub.faults.count_frames(sent=1)
        tasks = [
            asyncio.create_task(self._read(), name="ddp-reader"),
            asyncio.create_task(self._write(), name="ddp-writer"),
            asyncio.create_task(self._work(), name="ddp-worker"),
            asyncio.create_task(self._beat(), name="ddp-heartbeat"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.debug("websocket driver task ended with %r", result)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            self.hub.faults.count_frames(received=1)
            before = self.session.state, self.session.next_timer()
            self.session.receive(text, loop.time())
            if self.session.pending_calls():
                self._calls.set()
            after = self.session.state, self.session.next_timer()
            if after[0] is not before[0] or (after[1] is not None and (before[1] is None or after[1] < before[1])):
                self._timer.set()  # the heartbeat is due earlier than it is sleeping for (a pong ends a wait)
            self.wake_writer()

    async def _write(self) -> None:
        while True:
            await self._writable.wait()
            self._writable.clear()
            frames = self.session.data_to_send()
            for frame in frames:
                await self.websocket.send_text(frame)
            if frames:
                self.hub.faults.count_frames(sent=len(frames))
            if self.session.close_code is not None:
                if self.websocket.application_state is WebSocketState.CONNECTED:
                    await self.websocket.close(self.session.close_code)
                return

    async def _work(self) -> None:
        while True:
            await self._calls.wait()
            self._calls.clear()
            while (call := self.session.next_call()) is not None:
                await self._run(call)
                self.wake_writer()

    async def _run(self, call: Call) -> None:
        faults = self.hub.faults
        if call.kind == "unsub":
            self.session.execute(call)
            return
        if call.kind == "sub":
            faults.count_ddp_subscription(call.name)
            await _sleep(faults.latency(None))
            self.session.execute(call)
            return
        key = DDP_PREFIX + call.name
        faults.count_ddp_method(call.name)
        await _sleep(faults.latency(key))
        failure = faults.take_failure(key)
        if failure is None:
            self.session.execute(call)
        elif failure.mode == "500":
            self.session.fail(call, internal_error())
        elif failure.mode == "429":
            self.session.fail(call, too_many_requests(failure.retry_after))
        else:
            # Never answer; if the client has not given up (closed) by the bound, drop the connection.
            await asyncio.sleep(failure.hang)
            if not self.abort():
                self.session.close(1011)

    async def _beat(self) -> None:
        # Runs until cancelled: ending on its own would end the connection before the writer has
        # flushed a final frame (`failed`) and closed the socket with the session's close code.
        loop = asyncio.get_running_loop()
        while True:
            deadline = self.session.next_timer()
            delay = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer.wait(), delay)
            self._timer.clear()
            self.session.on_timer(loop.time())
            self.wake_writer()


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def realtime_routes(hub: RealtimeHub) -> list[BaseRoute]:
    """`/websocket` and the paths Meteor also serves raw websockets on."""
    return [
        WebSocketRoute("/websocket", hub.endpoint),
        WebSocketRoute("/sockjs/websocket", hub.endpoint),
        WebSocketRoute("/sockjs/{server_id}/{session_id}/websocket", hub.endpoint),
    ]
