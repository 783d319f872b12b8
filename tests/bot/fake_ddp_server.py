"""A minimal DDP server on a real loopback websocket, for testing `bot.rocketchat.realtime` end to end.

It speaks just enough of contract §4 (handshake, login by resume token or password digest,
subscriptions, methods, ping/pong, stream events) and can misbehave on request: refuse or
rate-limit logins, fall silent, never answer `connect`, refuse a DDP version or a subscription,
drop every connection, or send arbitrary frames. Every frame it receives is recorded, raw and
parsed, so tests can check exactly what the client put on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

# Pinned above DEBUG: the server would otherwise log the client's login frames, and the tests
# that check for leaked secrets capture every log record.
_QUIET = logging.getLogger("tests.fake_ddp_server")
_QUIET.setLevel(logging.WARNING)


def digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


@dataclass
class FakeConnection:
    index: int
    ws: ServerConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    user_id: str | None = None
    subs: dict[str, str] = field(default_factory=dict)  # sub id -> name, once ready
    silent: bool = False  # record frames but answer nothing, not even pings


@dataclass
class FakeDDPServer:
    tokens: dict[str, str] = field(default_factory=dict)  # resume token -> user id
    passwords: dict[str, tuple[str, str]] = field(default_factory=dict)  # username -> (user id, digest)
    legacy_welcome: bool = True
    answer_connect: bool = True
    refuse_version: bool = False
    rate_limited_logins: int = 0  # the next N logins get "too-many-requests"
    refused_subs: set[str] = field(default_factory=set)
    connections: list[FakeConnection] = field(default_factory=list)
    issued_tokens: list[str] = field(default_factory=list)
    held: list[tuple[FakeConnection, str]] = field(default_factory=list)

    _server: Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # --- lifecycle ---

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None, logger=_QUIET)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/websocket"

    # --- inspection ---

    def frames(self, msg: str | None = None, *, method: str | None = None) -> list[dict[str, Any]]:
        """Every frame received on any connection, optionally only one `msg` type or method."""
        return [
            f
            for c in self.connections
            for f in c.frames
            if (msg is None or f.get("msg") == msg) and (method is None or f.get("method") == method)
        ]

    def raw_texts(self) -> list[str]:
        return [t for c in self.connections for t in c.raw]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                changed = self._changed
                await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- misbehaviour and pushes ---

    async def drop_all(self, *, abrupt: bool = True) -> None:
        """Drop every open connection: a TCP abort (default) or a websocket close 1011."""
        for conn in self.connections:
            if abrupt:
                conn.ws.transport.abort()
            else:
                await conn.ws.close(1011, "dropped by the test")

    async def push(self, collection: str, event_name: str, args: list[Any]) -> None:
        """Send a stream event on every live connection subscribed to `collection`."""
        frame = {
            "msg": "changed",
            "collection": collection,
            "id": "id",
            "fields": {"eventName": event_name, "args": args},
        }
        for conn in self.connections:
            if collection in conn.subs.values():
                await _send(conn, frame)

    async def send_raw(self, data: str | bytes) -> None:
        for conn in self.connections:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(data)

    async def release_held(self, result: Any) -> None:
        """Answer every `held` call now, whether or not the client still waits for it."""
        held, self.held = self.held, []
        for conn, call_id in held:
            await _send(conn, {"msg": "result", "id": call_id, "result": result})

    async def send(self, frame: dict[str, Any]) -> None:
        for conn in self.connections:
            await _send(conn, frame)

    # --- the protocol ---

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeConnection(len(self.connections), ws)
        self.connections.append(conn)
        self._notify()
        try:
            if self.legacy_welcome:
                await ws.send('{"server_id":"0"}')
            async for text in ws:
                assert isinstance(text, str)
                conn.raw.append(text)
                conn.frames.append(json.loads(text))
                self._notify()
                if not conn.silent:
                    await self._answer(conn, conn.frames[-1])
        except ConnectionClosed:
            pass
        finally:
            conn.subs.clear()
            self._notify()

    async def _answer(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        msg = frame.get("msg")
        if msg == "connect":
            if self.refuse_version:
                await _send(conn, {"msg": "failed", "version": "2"})
                await conn.ws.close()
            elif self.answer_connect:
                await _send(conn, {"msg": "connected", "session": f"session-{conn.index}"})
        elif msg == "ping":
            await _send(conn, {"msg": "pong", "id": frame["id"]} if "id" in frame else {"msg": "pong"})
        elif msg == "method":
            await self._method(conn, frame)
        elif msg == "sub":
            if frame["name"] in self.refused_subs:
                error = {"isClientSafe": True, "error": "not-allowed", "message": "[not-allowed]"}
                await _send(conn, {"msg": "nosub", "id": frame["id"], "error": error})
            else:
                conn.subs[frame["id"]] = frame["name"]
                await _send(conn, {"msg": "ready", "subs": [frame["id"]]})
        elif msg == "unsub":
            conn.subs.pop(frame["id"], None)
            await _send(conn, {"msg": "nosub", "id": frame["id"]})

    async def _method(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        call_id, method, params = frame["id"], frame["method"], frame.get("params", [])
        if method == "login":
            await _send(conn, self._login(conn, call_id, params[0]))
        elif method == "echo":
            await _send(conn, {"msg": "result", "id": call_id, "result": params})
            await _send(conn, {"msg": "updated", "methods": [call_id]})
        elif method == "fail":
            error = {"isClientSafe": True, "error": "error-invalid-room", "reason": "Invalid room", "errorType": "x"}
            await _send(conn, {"msg": "result", "id": call_id, "error": error})
        elif method == "held":
            self.held.append((conn, call_id))  # answered when the test calls release_held()
        elif method == "never":
            pass
        else:
            error = {"error": 404, "reason": f"Method '{method}' not found"}
            await _send(conn, {"msg": "result", "id": call_id, "error": error})

    def _login(self, conn: FakeConnection, call_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.rate_limited_logins > 0:
            self.rate_limited_logins -= 1
            error = {"error": "too-many-requests", "reason": "slow down", "details": {"timeToReset": 1500}}
            return {"msg": "result", "id": call_id, "error": error}
        user_id: str | None = None
        kind = "resume"
        if "resume" in params:
            user_id = self.tokens.get(params["resume"])
        elif "user" in params and "password" in params:
            kind = "password"
            entry = self.passwords.get(params["user"].get("username"))
            given = params["password"]
            if entry and given.get("algorithm") == "sha-256" and given.get("digest") == entry[1]:
                user_id = entry[0]
        if user_id is None:
            return {"msg": "result", "id": call_id, "error": {"error": 403, "reason": "User not found"}}
        conn.user_id = user_id
        token = f"issued-{len(self.issued_tokens)}-{user_id}"
        self.issued_tokens.append(token)
        self.tokens[token] = user_id
        result = {"id": user_id, "token": token, "tokenExpires": {"$date": 1725000000000}, "type": kind}
        return {"msg": "result", "id": call_id, "result": result}


async def _send(conn: FakeConnection, frame: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionClosed):
        await conn.ws.send(json.dumps(frame))
