"""Benchmark-only routes inside the sandbox process: post commands, learn exact stored times.

The control API renders dates with millisecond precision, too coarse for commands that take a
few milliseconds. `MessageClock` listens to the store and keeps each inserted message's `ts` as
an epoch float (microseconds, the server's own clock), and the routes below let the driver:

    POST /_bench/post   {"messages": [{"user", "room", "text"}]}  store them, in one go
    POST /_bench/wait   {"ids": [...], "timeout": s}              stored times (and texts) of those ids
    POST /_bench/grow   {"integrations": n, "rooms": r}           add integrations up to n

They sit *outside* the sandbox's fault/counter middleware, so they never show up in the REST
call counts, and they need the control secret like `/_sandbox/...`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.workspace import grow_integrations
from sandbox.control import SECRET_HEADER
from sandbox.errors import MeteorError
from sandbox.store import Event, MessageEvent, Store

PREFIX = "/_bench/"


class MessageClock:
    """Stored-message times by id, fed by a store listener; waiters block on a condition."""

    def __init__(self, store: Store) -> None:
        self._condition = threading.Condition()
        self._times: dict[str, float] = {}
        self._texts: dict[str, str] = {}
        store.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        # Called under the store lock; takes only the condition's lock.
        if isinstance(event, MessageEvent) and event.inserted:
            with self._condition:
                self._times[event.message["_id"]] = event.message["ts"].timestamp()
                self._texts[event.message["_id"]] = str(event.message.get("msg", ""))[:200]
                self._condition.notify_all()

    def wait(self, ids: list[str], timeout: float) -> dict[str, tuple[float, str]]:
        """Time and text of those of `ids` stored within `timeout` seconds (all, if in time)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                missing = [i for i in ids if i not in self._times]
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return {i: (self._times[i], self._texts[i]) for i in ids if i in self._times}
                self._condition.wait(remaining)


class BenchApp:
    """The sandbox's ASGI app with `/_bench/...` routes in front of it."""

    def __init__(self, inner: ASGIApp, store: Store, secret: str, rooms: int) -> None:
        self.inner = inner
        self.store = store
        self.clock = MessageClock(store)
        self._secret = secret
        self._rooms = rooms
        self.routes = Starlette(
            routes=[
                Route("/_bench/post", self._post, methods=["POST"]),
                Route("/_bench/wait", self._wait, methods=["POST"]),
                Route("/_bench/grow", self._grow, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX):
            await self.routes(scope, receive, send)
        else:
            await self.inner(scope, receive, send)

    async def _arguments(self, request: Request) -> dict[str, Any] | JSONResponse:
        if not secrets.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), self._secret.encode()):
            return JSONResponse({"error": "bad or missing control secret"}, status_code=401)
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be an object"}, status_code=400)
        return body

    async def _post(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        stored: list[dict[str, Any]] = []
        try:
            # On the server loop and under the store lock: the whole batch is stored "at once".
            with self.store.lock:
                for item in body["messages"]:
                    message = self.store.send_message(str(item["user"]), str(item["room"]), str(item["text"]))
                    stored.append({"_id": message["_id"], "ts": message["ts"].timestamp()})
        except MeteorError as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        return JSONResponse({"messages": stored})

    async def _wait(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        ids = [str(i) for i in body["ids"]]
        found = await run_in_threadpool(self.clock.wait, ids, float(body.get("timeout", 10.0)))
        return JSONResponse(
            {"times": {i: t for i, (t, _) in found.items()}, "texts": {i: m for i, (_, m) in found.items()}}
        )

    async def _grow(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        started = time.perf_counter()
        total = await run_in_threadpool(grow_integrations, self.store, int(body["integrations"]), self._rooms)
        return JSONResponse({"integrations": total, "seconds": time.perf_counter() - started})
