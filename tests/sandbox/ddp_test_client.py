"""A minimal DDP client for the sandbox's socket-level tests (the `websockets` library underneath)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

Frame = dict[str, Any]


def ws_url(http_url: str, path: str = "/websocket") -> str:
    return http_url.replace("http://", "ws://", 1) + path


class DDPClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[Frame] = []
        self._ids = itertools.count(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, http_url: str, path: str = "/websocket") -> AsyncIterator[DDPClient]:
        async with connect(ws_url(http_url, path), ping_interval=None, open_timeout=5) as ws:
            yield cls(ws)

    async def send(self, frame: Frame | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def _read(self, wait: float) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), wait)
        frame: Frame = json.loads(raw)
        return frame

    async def recv(self, wait: float = 5.0) -> Frame:
        if self.inbox:
            return self.inbox.pop(0)
        return await self._read(wait)

    async def expect(self, predicate: Callable[[Frame], bool], wait: float = 5.0) -> Frame:
        """The first frame (queued or new) matching `predicate`; others stay queued in order."""
        for index, frame in enumerate(self.inbox):
            if predicate(frame):
                return self.inbox.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            frame = await self._read(max(0.0, deadline - loop.time()))
            if predicate(frame):
                return frame
            self.inbox.append(frame)

    async def connect(self) -> str:
        await self.send({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
        frame = await self.expect(lambda f: f.get("msg") in ("connected", "failed"))
        assert frame["msg"] == "connected", frame
        return str(frame["session"])

    async def call(self, method: str, *params: Any, wait: float = 5.0) -> Frame:
        """The `result` frame of a method call (its `updated` frame is awaited and dropped)."""
        call_id = f"m{next(self._ids)}"
        await self.send({"msg": "method", "method": method, "id": call_id, "params": list(params)})
        result = await self.expect(lambda f: f.get("msg") == "result" and f.get("id") == call_id, wait)
        await self.expect(lambda f: f.get("msg") == "updated" and call_id in f.get("methods", []), wait)
        return result

    async def login(self, token: str) -> Frame:
        result = await self.call("login", {"resume": token})
        assert "result" in result, result
        return result

    async def sub(self, name: str, *params: Any, wait: float = 5.0) -> Frame:
        """`ready` or `nosub` for a new subscription; returns that frame."""
        sub_id = f"s{next(self._ids)}"
        await self.send({"msg": "sub", "id": sub_id, "name": name, "params": list(params)})
        return await self.expect(
            lambda f: (
                (f.get("msg") == "ready" and sub_id in f.get("subs", []))
                or (f.get("msg") == "nosub" and f.get("id") == sub_id)
            ),
            wait,
        )

    async def changed(self, event_name: str | None = None, wait: float = 5.0) -> Frame:
        return await self.expect(
            lambda f: (
                f.get("msg") == "changed" and (event_name is None or f.get("fields", {}).get("eventName") == event_name)
            ),
            wait,
        )
