"""Benchmark-only routes inside the sandbox process: post commands, learn exact stored times.

The control API renders dates with millisecond precision, too coarse for commands that take a
few milliseconds. `MessageClock` listens to the store and keeps each inserted message's `ts` as
an epoch float (microseconds, the server's own clock), and the routes below let the driver:

    POST /_bench/post   {"messages": [{"user", "room", "text", "_id"?}], "wait": [ids]?, "timeout": s?}
                        store them, in one go; with `wait`, answer once those ids are stored too
    POST /_bench/wait   {"ids": [...], "timeout": s}              stored times (and texts) of those ids
    POST /_bench/grow   {"integrations": n, "rooms": r}           add integrations up to n
    POST /_bench/direct_rooms {"total": n, "active": k}         DMs with the bot until it is in n rooms

They sit *outside* the sandbox's fault/counter middleware, so they never show up in the REST
call counts, and they need the control secret like `/_sandbox/...`.

Waiting is done on the server's event loop (futures resolved by the store listener), never in a
thread: a waiting thread woken on every stored message competed for the GIL with the sandbox
exactly while the bot was being served. And a bot command is posted and waited for in *one*
request (`wait` with the ids the driver chose), so no second benchmark request is being parsed
by the sandbox while it delivers the command to the bot: measured, a separate `/_bench/wait`
sent right after the post added ~1.3 ms to the bot's latency (harness cost, not the bot's).
"""

from __future__ import annotations

import asyncio
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

from bench.workspace import grow_direct_rooms, grow_integrations
from sandbox.control import SECRET_HEADER
from sandbox.errors import MeteorError
from sandbox.store import Event, MessageEvent, Store

PREFIX = "/_bench/"


class MessageClock:
    """Stored-message times by id, fed by a store listener; waiters are futures on the loop."""

    def __init__(self, store: Store) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, float] = {}
        self._texts: dict[str, str] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        store.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        # Called under the store lock, from whichever thread stored the message.
        if isinstance(event, MessageEvent) and event.inserted:
            message_id = event.message["_id"]
            with self._lock:
                self._times[message_id] = event.message["ts"].timestamp()
                self._texts[message_id] = str(event.message.get("msg", ""))[:200]
                waiters = self._waiters.pop(message_id, [])
            for waiter in waiters:
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    def expect(self, ids: list[str]) -> list[asyncio.Future[None]]:
        """Futures for those of `ids` not stored yet (call on the loop, before they can be stored)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        with self._lock:
            for message_id in ids:
                if message_id not in self._times:
                    future = loop.create_future()
                    self._waiters.setdefault(message_id, []).append(future)
                    futures.append(future)
        return futures

    async def wait(
        self,
        ids: list[str],
        timeout: float,  # noqa: ASYNC109
        futures: list[asyncio.Future[None]] | None = None,
    ) -> dict[str, tuple[float, str]]:
        """Time and text of those of `ids` stored within `timeout` seconds (all, if in time)."""
        pending = self.expect(ids) if futures is None else futures
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        with self._lock:
            for message_id in ids:
                waiters = [w for w in self._waiters.get(message_id, []) if not w.done()]
                if waiters:
                    self._waiters[message_id] = waiters
                else:
                    self._waiters.pop(message_id, None)
            return {i: (self._times[i], self._texts[i]) for i in ids if i in self._times}


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
                Route("/_bench/direct_rooms", self._direct_rooms, methods=["POST"]),
                Route("/_bench/webhook", self._webhook, methods=["POST"]),
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
        wanted = [str(i) for i in body.get("wait") or []]
        expected = self.clock.expect(wanted)  # before storing: an answer cannot slip past
        stored: list[dict[str, Any]] = []
        try:
            # On the server loop and under the store lock: the whole batch is stored "at once".
            with self.store.lock:
                for item in body["messages"]:
                    given = item.get("_id")
                    message = self.store.send_message(
                        str(item["user"]),
                        str(item["room"]),
                        str(item["text"]),
                        message_id=str(given) if given is not None else None,
                    )
                    stored.append({"_id": message["_id"], "ts": message["ts"].timestamp()})
        except MeteorError as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        answer: dict[str, Any] = {"messages": stored}
        if wanted:
            found = await self.clock.wait(wanted, float(body.get("timeout", 10.0)), expected)
            answer.update(_found(found))
        return JSONResponse(answer)

    async def _wait(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        ids = [str(i) for i in body["ids"]]
        return JSONResponse(_found(await self.clock.wait(ids, float(body.get("timeout", 10.0)))))

    async def _grow(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        started = time.perf_counter()
        total = await run_in_threadpool(grow_integrations, self.store, int(body["integrations"]), self._rooms)
        return JSONResponse({"integrations": total, "seconds": time.perf_counter() - started})

    async def _webhook(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        names, rooms = [str(n) for n in body["names"]], [str(r) for r in body["rooms"]]
        # On the server loop, like the messages of `/_bench/post`: a batch is stored at once.
        return JSONResponse({"posted": _webhook_posts(self.store, names, rooms, int(body["count"]))})

    async def _direct_rooms(self, request: Request) -> JSONResponse:
        body = await self._arguments(request)
        if isinstance(body, JSONResponse):
            return body
        started = time.perf_counter()
        grown = await run_in_threadpool(grow_direct_rooms, self.store, int(body["total"]), int(body["active"]))
        return JSONResponse({**grown, "seconds": time.perf_counter() - started})


def _webhook_posts(store: Store, names: list[str], rooms: list[str], count: int) -> int:
    """`count` messages as the enabled incoming webhooks named `names` post them (`bot.i`, their
    post-as user), round-robin over every (webhook, room) pair; returns how many were stored."""
    with store.lock:
        wanted = set(names)
        hooks = [
            i
            for i, doc in store.integrations.items()
            if doc.get("name") in wanted and doc.get("type") == "webhook-incoming" and doc.get("enabled") is True
        ]
    pairs = [(hook, room) for hook in sorted(hooks) for room in rooms]
    posted = 0
    for number in range(count if pairs else 0):
        hook, room = pairs[number % len(pairs)]
        store.post_webhook_message(hook, f"storm message {number}", room_id=room)
        posted += 1
    return posted


def _found(found: dict[str, tuple[float, str]]) -> dict[str, Any]:
    return {"times": {i: t for i, (t, _) in found.items()}, "texts": {i: m for i, (_, m) in found.items()}}
