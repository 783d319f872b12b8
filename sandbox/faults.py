"""Fault injection and traffic counters for the sandbox (what a flaky real server does to a client).

`Faults` is plain thread-safe state shared by three users: the ASGI `FaultMiddleware` in front of
every HTTP request and websocket handshake, the realtime driver (DDP methods, subscriptions and
frames), and the control API that tests call from their own thread.

Names: a REST endpoint is named as Rocket.Chat names it (`/api/v1/integrations.update` ->
`integrations.update`, `/api/info` -> `info`, `/hooks/...` -> `hooks`); a DDP method is
`ddp:<method>` (so REST `login` and DDP `ddp:login` stay apart).

What the faults look like on the wire:

* `500`: REST answers Rocket.Chat's internal-error envelope; DDP a sanitised `error: 500` result.
* `429`: REST answers the rate limiter's body and `X-RateLimit-*` headers (contract §1.5); DDP the
  DDP rate limiter's `too-many-requests` error.
* `timeout`: the request is never answered. The server holds it until the client gives up
  (disconnects) or `hang` seconds pass, then drops the TCP connection without a response.
* latency: sleep before the request is handled (global, plus per endpoint).
* a failure may concern one object only (`concerning`): it then answers only the requests whose
  query string or body mentions that text (an integration's id), e.g. to make one integration's
  writes fail while others succeed.
* request recording (off by default, for tests): the JSON bodies of chosen REST endpoints are
  kept as the server received them (`record_requests`, `recorded_requests`), e.g. to check every
  body a client sends against Rocket.Chat's request schemas.
* refusing connections imitates a Rocket.Chat that is restarting behind its reverse proxy: the
  proxy answers REST with 503 `{"success": false, "error": "Service Unavailable"}` and refuses
  websocket upgrades with the same 503, until the refusal period ends. (Existing websockets are
  dropped separately, see `SandboxControl.drop_connections`; a restart does both.)
  The control API (`/_sandbox/...`) is never affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

FailMode = Literal["500", "429", "timeout"]
FAIL_MODES: Final[frozenset[str]] = frozenset({"500", "429", "timeout"})
DDP_PREFIX: Final = "ddp:"
CONTROL_PREFIX: Final = "/_sandbox"
# The rate limiter's default allowance, reported in X-RateLimit-Limit (contract §1.5).
RATE_LIMIT_CALLS: Final = 10

ClientAddress = tuple[str, int]
TransportAborter = Callable[[ClientAddress], bool]


def endpoint_name(path: str) -> str:
    """Rocket.Chat's name for the endpoint behind a path; never includes secrets from the path."""
    trimmed = path.strip("/")
    for prefix in ("api/v1/", "api/"):
        if trimmed.startswith(prefix):
            return trimmed[len(prefix) :]
    head = trimmed.split("/", 1)[0]
    return head or "/"


@dataclass(frozen=True)
class Failure:
    mode: FailMode
    retry_after: float
    hang: float


@dataclass(frozen=True)
class Counters:
    """Calls seen since the last reset. REST calls are counted even when a fault answers them."""

    rest: dict[str, int]
    ddp_methods: dict[str, int]
    ddp_subscriptions: dict[str, int]
    ddp_frames_in: int
    ddp_frames_out: int
    ws_connections: int

    def to_json(self) -> dict[str, Any]:
        return {
            "rest": dict(self.rest),
            "ddp_methods": dict(self.ddp_methods),
            "ddp_subscriptions": dict(self.ddp_subscriptions),
            "ddp_frames_in": self.ddp_frames_in,
            "ddp_frames_out": self.ddp_frames_out,
            "ws_connections": self.ws_connections,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counters:
        return cls(
            rest={str(k): int(v) for k, v in data["rest"].items()},
            ddp_methods={str(k): int(v) for k, v in data["ddp_methods"].items()},
            ddp_subscriptions={str(k): int(v) for k, v in data["ddp_subscriptions"].items()},
            ddp_frames_in=int(data["ddp_frames_in"]),
            ddp_frames_out=int(data["ddp_frames_out"]),
            ws_connections=int(data["ws_connections"]),
        )


@dataclass
class _Rule:
    remaining: int
    failure: Failure
    concerning: str | None = None

    def applies(self, mentions: str | None) -> bool:
        return self.concerning is None or (mentions is not None and self.concerning in mentions)


class Faults:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._rules: dict[str, list[_Rule]] = {}
        self._latency: dict[str | None, float] = {}
        self._refuse_until = 0.0
        self._rest: Counter[str] = Counter()
        self._methods: Counter[str] = Counter()
        self._subs: Counter[str] = Counter()
        self._frames_in = 0
        self._frames_out = 0
        self._ws = 0
        self._recording: frozenset[str] = frozenset()
        self._recorded: dict[str, list[Any]] = {}
        # Installed by the server that owns the sockets: drops one client's TCP connection.
        self.transport_aborter: TransportAborter | None = None

    # --- configuration ------------------------------------------------------------------------

    def fail_next(
        self,
        endpoint: str,
        times: int = 1,
        mode: FailMode = "500",
        *,
        retry_after: float = 1.0,
        hang: float = 30.0,
        concerning: str | None = None,
    ) -> None:
        """Answer the next `times` calls of `endpoint` with the fault `mode` (queued after earlier
        rules); with `concerning`, only calls whose query string or body contains that text."""
        if mode not in FAIL_MODES:
            raise ValueError(f"unknown fault mode {mode!r}")
        if times < 1 or retry_after < 0 or hang < 0:
            raise ValueError("times must be >= 1, retry_after and hang >= 0")
        if concerning is not None and not concerning:
            raise ValueError("concerning must not be empty")
        rule = _Rule(times, Failure(mode, retry_after, hang), concerning)
        with self._lock:
            self._rules.setdefault(endpoint, []).append(rule)

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        """Delay every call (endpoint None) or one endpoint's calls; both add up. 0 removes it."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            if seconds == 0:
                self._latency.pop(endpoint, None)
            else:
                self._latency[endpoint] = seconds

    def refuse_connections(self, seconds: float) -> None:
        """Answer REST with 503 and refuse websocket handshakes for `seconds` (0 ends it now)."""
        with self._lock:
            self._refuse_until = self._monotonic() + max(0.0, seconds)

    def record_requests(self, endpoints: Iterable[str]) -> None:
        """Keep the request bodies of these REST endpoints from now on (e.g. `chat.sendMessage`).

        Replaces the previous selection and forgets the bodies kept so far; no endpoints turns
        recording off. Recording is off by default (it costs memory on a long-running sandbox)."""
        with self._lock:
            self._recording = frozenset(endpoints)
            self._recorded = {name: [] for name in self._recording}

    def recording(self, endpoint: str) -> bool:
        with self._lock:
            return endpoint in self._recording

    def record_request(self, endpoint: str, body: Any) -> None:
        with self._lock:
            if endpoint in self._recording:
                self._recorded[endpoint].append(copy.deepcopy(body))

    def recorded_requests(self, endpoint: str) -> list[Any]:
        """The bodies received for `endpoint` since recording started, oldest first: parsed JSON,
        or the text itself when a body is not JSON. Empty bodies (GET) are not kept."""
        with self._lock:
            return copy.deepcopy(self._recorded.get(endpoint, []))

    def clear(self) -> None:
        """Forget pending failures, latency and any refusal period (counters and recordings are kept)."""
        with self._lock:
            self._rules.clear()
            self._latency.clear()
            self._refuse_until = 0.0

    # --- queries used by the middleware and the realtime driver -----------------------------

    def refusing(self) -> bool:
        with self._lock:
            return self._monotonic() < self._refuse_until

    def selective(self, endpoint: str) -> bool:
        """Whether a pending failure of `endpoint` concerns one object only (the middleware then
        reads the request's body to tell)."""
        with self._lock:
            return any(rule.concerning is not None for rule in self._rules.get(endpoint, ()))

    def take_failure(self, endpoint: str, mentions: str | None = None) -> Failure | None:
        """The failure for this call, if any: the first pending rule of `endpoint` that applies
        (`mentions`: the call's query string and body, for rules `concerning` one object)."""
        with self._lock:
            rules = self._rules.get(endpoint)
            if not rules:
                return None
            rule = next((rule for rule in rules if rule.applies(mentions)), None)
            if rule is None:
                return None
            rule.remaining -= 1
            if rule.remaining == 0:
                rules.remove(rule)
                if not rules:
                    del self._rules[endpoint]
            return rule.failure

    def latency(self, endpoint: str | None) -> float:
        with self._lock:
            own = self._latency.get(endpoint, 0.0) if endpoint is not None else 0.0
            return self._latency.get(None, 0.0) + own

    # --- counters --------------------------------------------------------------------------------

    def count_rest(self, name: str) -> None:
        with self._lock:
            self._rest[name] += 1

    def count_ddp_method(self, name: str) -> None:
        with self._lock:
            self._methods[name] += 1

    def count_ddp_subscription(self, name: str) -> None:
        with self._lock:
            self._subs[name] += 1

    def count_frames(self, *, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            self._frames_in += received
            self._frames_out += sent

    def count_ws_connection(self) -> None:
        with self._lock:
            self._ws += 1

    def counters(self) -> Counters:
        with self._lock:
            return Counters(
                rest=dict(self._rest),
                ddp_methods=dict(self._methods),
                ddp_subscriptions=dict(self._subs),
                ddp_frames_in=self._frames_in,
                ddp_frames_out=self._frames_out,
                ws_connections=self._ws,
            )

    def reset_counters(self) -> None:
        with self._lock:
            self._rest.clear()
            self._methods.clear()
            self._subs.clear()
            self._frames_in = self._frames_out = self._ws = 0


# --- REST renderings ----------------------------------------------------------------------------------


def internal_error_response() -> JSONResponse:
    return JSONResponse({"success": False, "error": "Internal server error"}, status_code=500)


def unavailable_response() -> JSONResponse:
    return JSONResponse({"success": False, "error": "Service Unavailable"}, status_code=503)


def too_many_requests_response(retry_after: float, now: float | None = None) -> JSONResponse:
    """The REST rate limiter's 429 (contract §1.5), resetting `retry_after` seconds from now."""
    reset_ms = int(((time.time() if now is None else now) + retry_after) * 1000)
    wait = math.ceil(retry_after)
    error = (
        "Error, too many requests. Please slow down. "
        f"You must wait {wait} seconds before trying this endpoint again. [error-too-many-requests]"
    )
    return JSONResponse(
        {"success": False, "error": error},
        status_code=429,
        headers={
            "X-RateLimit-Limit": str(RATE_LIMIT_CALLS),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset_ms),
        },
    )


# --- the middleware -------------------------------------------------------------------------------------


class FaultMiddleware:
    """Counts and disturbs HTTP requests and websocket handshakes; `/_sandbox` passes untouched."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] not in ("http", "websocket") or path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif self.faults.refusing():
            await self._refuse_websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = endpoint_name(str(scope["path"]))
        self.faults.count_rest(name)
        mentions: str | None = None
        if self.faults.recording(name) or self.faults.selective(name):
            receive, body = await self._read_body(name, receive)
            mentions = bytes(scope.get("query_string", b"")).decode("utf-8", errors="replace") + "\n" + body
        if self.faults.refusing():
            await unavailable_response()(scope, receive, send)
            return
        delay = self.faults.latency(name)
        if delay > 0:
            await asyncio.sleep(delay)
        failure = self.faults.take_failure(name, mentions)
        if failure is None:
            await self.app(scope, receive, send)
        elif failure.mode == "500":
            await internal_error_response()(scope, receive, send)
        elif failure.mode == "429":
            await too_many_requests_response(failure.retry_after)(scope, receive, send)
        else:
            await self._hang(scope, receive, send, failure.hang)

    async def _read_body(self, name: str, receive: Receive) -> tuple[Receive, str]:
        """Read the whole body, keep a copy if `name` is recorded, and hand the app the same
        messages again; also the body as text."""
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        text = bytes(body).decode("utf-8", errors="replace")
        if text and self.faults.recording(name):
            try:
                self.faults.record_request(name, json.loads(text))
            except ValueError:
                self.faults.record_request(name, text)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        return replay, text

    async def _hang(self, scope: Scope, receive: Receive, send: Send, limit: float) -> None:
        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(until_disconnect(), limit)
            return  # the client gave up: nothing left to answer
        except TimeoutError:
            pass
        aborter, client = self.faults.transport_aborter, scope.get("client")
        if aborter is not None and client is not None and aborter((str(client[0]), int(client[1]))):
            # Let the server notice the dropped connection before this request ends.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until_disconnect(), 1.0)
            return
        await internal_error_response()(scope, receive, send)

    async def _refuse_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(unavailable_response())
        else:
            await websocket.close(code=1013)  # try again later
