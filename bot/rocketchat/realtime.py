"""The bot's realtime connection: a small asyncio driver around `bot.rocketchat.ddp` over `websockets`.

Theory of operation
-------------------
`RealtimeClient.run()` owns the websocket and keeps one *session* alive at a time:

    open websocket → DDP connect → login → (re)subscribe → ready → ... → disconnect
         ↑                                                                   │
         └──────────── backoff: full jitter, exponential, capped ────────────┘

Every session gets a fresh `DDPProtocol`, because DDP subscriptions and pending calls do not
survive a reconnect. Subscriptions registered with `subscribe()` are remembered here and replayed
on every session, after logging in again. The session lifecycle is the table `TRANSITIONS`.

One reader task per session receives frames, feeds them to the protocol and acts on the events:
it completes method-call futures, tracks subscription readiness and puts stream events on the
event queue. It also does the keepalive: after `heartbeat_interval` seconds of silence it sends a
DDP ping; if nothing at all arrives within `heartbeat_timeout` after that, the connection is dead
(a half-open TCP connection or a hung server) and the session ends. Server pings are answered by
the protocol itself. Websocket-level pings are off, so there is exactly one keepalive to reason
about and to test.

Reconnecting is the answer to every transport failure: refused or timed-out connections,
closed websockets, missing pongs, a server that never finishes the handshake, a transient login
refusal (rate limit, 5xx). It is not the answer to refused credentials: that is `AuthFailed`,
raised out of `run()` so the process stops with a clear message instead of hammering the
server. The attempt count resets only after a session stayed ready for `Backoff.reset_after`
seconds, so a server that accepts and then drops every connection is still backed off.

Consumers see `events()`: stream events (`StreamEvent`) and lifecycle events (`Connected`,
`Disconnected`, `Reconnecting`, `SubscriptionEnded`). `Connected` is emitted once a session is
logged in *and* every subscription is ready, so a consumer that catches up on missed messages
when it sees `Connected(reconnect=True)` cannot miss the ones that arrive meanwhile (it may see
some twice; dedupe by message id).

No websockets or asyncio exception leaves this module: `call()` raises `Unavailable` (not
connected, timed out, connection lost) or `MethodFailed`; `run()` raises `AuthFailed` or
`ConfigError`. Secrets: login frames are never logged, results are never logged, and the
websockets library gets a logger that cannot log frames even when the application runs at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from bot import logs
from bot.errors import AuthFailed, ConfigError, Unavailable, UpstreamError
from bot.rocketchat import ddp, ejson
from bot.rocketchat.ddp import StreamEvent

__all__ = [
    "TRANSITIONS",
    "Backoff",
    "Connected",
    "Disconnected",
    "MethodFailed",
    "PasswordCredentials",
    "RealtimeClient",
    "RealtimeEvent",
    "RealtimeState",
    "Reconnecting",
    "ResumeCredentials",
    "StreamEvent",
    "Subscription",
    "SubscriptionEnded",
    "websocket_url",
]

log = logs.get_logger("bot.realtime")  # the `logger` operators filter on: kept when the module moved

# websockets logs every frame at DEBUG, login frames included. Its logger here is pinned to INFO
# so that running the application at DEBUG cannot put a token or password digest in the logs.
_WIRE_LOGGER: Final = logging.getLogger("bot.realtime.wire")
_WIRE_LOGGER.setLevel(logging.INFO)

_T = TypeVar("_T")

# Login errors worth a reconnect: Meteor's DDP rate limiter and server-side failures.
# Everything else (401/403, "User not found", totp-required, ...) means the credentials are wrong.
_TRANSIENT_LOGIN_ERRORS: Final = frozenset({"too-many-requests", "error-too-many-requests"})


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeCredentials:
    """Log in with an auth token or personal access token (contract §4.4)."""

    token: SecretStr

    def __init__(self, token: str | SecretStr) -> None:
        object.__setattr__(self, "token", _secret(token))


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """Log in with a username or email and a password; only the password's digest is sent."""

    password: SecretStr
    username: str | None
    email: str | None

    def __init__(self, password: str | SecretStr, *, username: str | None = None, email: str | None = None) -> None:
        if (username is None) == (email is None):
            raise ValueError("give exactly one of username or email")
        object.__setattr__(self, "password", _secret(password))
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "email", email)


Credentials = ResumeCredentials | PasswordCredentials


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: attempt n waits uniformly in [0, min(maximum, initial * multiplier**(n-1))]."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    # A session that stayed ready this long counts as healthy: the next failure starts over at 1.
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.multiplier < 1 or self.reset_after < 0:
            raise ValueError("backoff needs 0 < initial <= maximum, multiplier >= 1, reset_after >= 0")

    def ceiling(self, attempt: int) -> float:
        try:
            raw = self.initial * self.multiplier ** max(attempt - 1, 0)
        except OverflowError:
            return self.maximum
        return min(self.maximum, raw)

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """Full jitter: spreads reconnecting clients out instead of synchronising them."""
        return random() * self.ceiling(attempt)


@dataclass(frozen=True, eq=False)
class Subscription:
    """A handle for one `subscribe()` call; compare by identity, not by value."""

    name: str
    params: tuple[Any, ...]


class RealtimeState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"  # opening the websocket, waiting for the DDP session
    LOGGING_IN = "logging_in"
    SUBSCRIBING = "subscribing"  # logged in; some subscriptions are not ready yet
    READY = "ready"
    CLOSED = "closed"


_S = RealtimeState
TRANSITIONS: Final[Mapping[RealtimeState, frozenset[RealtimeState]]] = MappingProxyType(
    {
        _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.CLOSED}),
        _S.CONNECTING: frozenset({_S.LOGGING_IN, _S.DISCONNECTED, _S.CLOSED}),
        _S.LOGGING_IN: frozenset({_S.SUBSCRIBING, _S.DISCONNECTED, _S.CLOSED}),
        _S.SUBSCRIBING: frozenset({_S.READY, _S.DISCONNECTED, _S.CLOSED}),
        # A subscription added while ready takes the client back to SUBSCRIBING until it is ready.
        _S.READY: frozenset({_S.SUBSCRIBING, _S.DISCONNECTED, _S.CLOSED}),
        _S.CLOSED: frozenset(),
    }
)


# --- lifecycle events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in and every subscription ready. `reconnect` is False only for the first session."""

    user_id: str
    session: str | None
    reconnect: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class SubscriptionEnded:
    """The server refused or stopped a subscription; it is no longer replayed on reconnect."""

    subscription: Subscription
    error: str | int | None
    reason: str | None


RealtimeEvent = StreamEvent | Connected | Disconnected | Reconnecting | SubscriptionEnded


class MethodFailed(UpstreamError):
    """A DDP method answered with an error. `error` is Meteor's code (a string, or 404/500)."""

    def __init__(self, method: str, error: str | int | None, reason: str | None) -> None:
        self.method = method
        self.error = error
        self.reason = reason
        super().__init__(f"ddp:{method}", f"{method}: {reason or error or 'error without a reason'}")


def websocket_url(server_url: str) -> str:
    """The DDP websocket URL of a Rocket.Chat server: https://host/path → wss://host/path/websocket."""
    parts = urlsplit(server_url)
    scheme = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ConfigError(f"not an http(s) server URL: {parts.scheme}://{parts.hostname or ''}")
    path = parts.path.rstrip("/")
    if not path.endswith("/websocket"):
        path += "/websocket"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


# --- the client -------------------------------------------------------------------------------


class _LinkDown(Exception):
    """The session's connection is gone or unusable; reconnect (after `retry_after`, if given)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Closing(Exception):
    """`close()` was called while we were waiting for something else."""


@dataclass(eq=False)
class _Link:
    """One session: the websocket, its protocol and what is in flight on it."""

    ws: ClientConnection
    protocol: ddp.DDPProtocol
    connected: asyncio.Future[str | None]
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    calls: dict[str, asyncio.Future[ddp.Result | ddp.MethodError]] = field(default_factory=dict)
    subs: dict[str, Subscription] = field(default_factory=dict)  # sub id -> subscription
    unready: set[str] = field(default_factory=set)
    pinged: bool = False
    logged_in: bool = False
    session: str | None = None
    ready_at: float | None = None  # clock time the session first became ready

    def fail(self, exc: _LinkDown) -> None:
        futures: list[asyncio.Future[Any]] = [self.connected, *self.calls.values()]
        for future in futures:
            if not future.done():
                future.set_exception(exc)


class RealtimeClient:
    """Keeps a logged-in, subscribed DDP session alive. See the module docstring."""

    def __init__(
        self,
        ws_url: str,
        credentials: Credentials,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        call_timeout: float = 30.0,
        heartbeat_interval: float = 15.0,
        heartbeat_timeout: float = 15.0,
        close_timeout: float = 5.0,
        max_frame_size: int = 16 * 2**20,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = ws_url
        self._credentials = credentials
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._close_timeout = close_timeout
        self._max_frame_size = max_frame_size
        self._sleep = sleep
        self._random = random
        self._clock = clock

        self._state = RealtimeState.DISCONNECTED
        self._state_changed = asyncio.Event()
        self._subscriptions: dict[Subscription, None] = {}  # insertion-ordered set
        self._events: asyncio.Queue[RealtimeEvent | None] = asyncio.Queue()  # None: the end
        self._link: _Link | None = None
        self._resume_token: SecretStr | None = None  # from a password login, for quieter reconnects
        self._running = False
        self._closing = False
        self._close_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._fatal: AuthFailed | ConfigError | None = None
        self._sessions_ready = 0
        self._background: set[asyncio.Task[None]] = set()

        self.user_id: str | None = None
        # Plain counters for metrics.
        self.reconnects = 0
        self.frames_in = 0
        self.frames_out = 0
        self.unexpected_frames = 0

    @property
    def state(self) -> RealtimeState:
        return self._state

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    # --- public API ---

    async def run(self) -> None:
        """Connect and stay connected until `close()`. Raises AuthFailed or ConfigError (fatal)."""
        if self._running:
            raise RuntimeError("RealtimeClient.run() is already running")
        if self._closing:
            return
        self._running = True
        attempt = 0
        try:
            while not self._closing:
                ready_at, retry_after = await self._session()
                if self._closing:
                    break
                if ready_at is not None and self._clock() - ready_at >= self._backoff.reset_after:
                    attempt = 0
                attempt += 1
                delay = max(self._backoff.delay(attempt, self._random), retry_after or 0.0)
                self.reconnects += 1
                log.info("realtime.reconnecting", attempt=attempt, delay=round(delay, 3))
                self._emit(Reconnecting(attempt, delay))
                try:
                    await self._unless_closed(self._sleep(delay))
                except _Closing:
                    break
        except (AuthFailed, ConfigError) as exc:
            self._fatal = exc
            log.error("realtime.fatal", error=str(exc))
            raise
        finally:
            self._running = False
            self._finish()

    async def close(self) -> None:
        """Stop: close the websocket cleanly, end `run()` and the `events()` iterator. Idempotent."""
        if not self._closing:
            self._closing = True
            self._close_requested.set()
            link = self._link
            if link is not None:
                await link.ws.close()
        if self._running:
            await self._stopped.wait()
        else:
            self._finish()

    # The timeouts below are part of the API on purpose: they become our own Unavailable error.
    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until logged in with every subscription ready; Unavailable on timeout or close."""
        try:
            async with asyncio.timeout(timeout):
                while self._state not in (RealtimeState.READY, RealtimeState.CLOSED):
                    await self._state_changed.wait()
        except TimeoutError:
            raise Unavailable("ddp", f"realtime API not ready within {timeout:g}s ({self._state.value})") from None
        if self._state is RealtimeState.CLOSED:
            if isinstance(self._fatal, AuthFailed):
                raise AuthFailed(self._fatal.endpoint, str(self._fatal))
            if isinstance(self._fatal, ConfigError):
                raise ConfigError(str(self._fatal))
            raise Unavailable("ddp", "realtime client is closed")

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Call a DDP method as the logged-in bot and return its result.

        Raises `Unavailable` when not logged in, when no answer comes within `timeout` (default
        `call_timeout`) or when the connection drops first, and `MethodFailed` on an error answer.
        A call is never re-sent after a reconnect: the server may have run it.
        """
        endpoint = f"ddp:{method}"
        link = self._link
        if link is None or self._state not in (RealtimeState.SUBSCRIBING, RealtimeState.READY):
            raise Unavailable(endpoint, f"{method}: not connected to the realtime API ({self._state.value})")
        limit = self._call_timeout if timeout is None else timeout
        try:
            answer = await self._call_on(link, method, params, limit)
        except TimeoutError:
            raise Unavailable(endpoint, f"{method}: no answer within {limit:g}s") from None
        except _LinkDown as exc:
            raise Unavailable(endpoint, f"{method}: connection lost ({exc.reason})") from None
        if isinstance(answer, ddp.MethodError):
            raise MethodFailed(method, answer.error, answer.reason)
        return answer.result

    def subscribe(self, name: str, *params: Any) -> Subscription:
        """Subscribe now if logged in, and again after every reconnect."""
        json.dumps(ejson.encode(list(params)), allow_nan=False)  # refuse bad params here, not mid-session
        subscription = Subscription(name, params)
        self._subscriptions[subscription] = None
        link = self._link
        if link is not None and link.logged_in and self._state in (RealtimeState.SUBSCRIBING, RealtimeState.READY):
            self._subscribe_on(link, subscription)
            if self._state is RealtimeState.READY:
                self._set_state(RealtimeState.SUBSCRIBING)
            self._flush_soon(link)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription and end it on the current session, if any."""
        self._subscriptions.pop(subscription, None)
        link = self._link
        if link is None:
            return
        for sub_id, sub in list(link.subs.items()):
            if sub is subscription:
                del link.subs[sub_id]
                link.unready.discard(sub_id)
                if sub_id in link.protocol.subscriptions and link.protocol.state is ddp.State.CONNECTED:
                    link.protocol.unsubscribe(sub_id)
                    self._flush_soon(link)
        self._check_ready(link)

    async def events(self) -> AsyncIterator[RealtimeEvent]:
        """Stream and lifecycle events, in order, until the client is closed. One consumer.

        The queue is unbounded on purpose: a slow consumer must never stop the reader, or the
        keepalive would stall and the server would drop a healthy connection.
        """
        while True:
            item = await self._events.get()
            if item is None:
                self._events.put_nowait(None)  # later iterators end at once too
                return
            yield item

    def pending(self) -> list[RealtimeEvent]:
        """The events already queued behind the one `events()` last gave, without waiting, in
        order (a consumer that handles a burst in one go); `events()` continues after them."""
        found: list[RealtimeEvent] = []
        while not self._events.empty():
            item = self._events.get_nowait()
            if item is None:
                self._events.put_nowait(None)  # the end stays queued for `events()`
                break
            found.append(item)
        return found

    # --- sessions ---

    async def _session(self) -> tuple[float | None, float | None]:
        """Run one session to its end. Returns (clock time it became ready, server's retry-after)."""
        self._set_state(RealtimeState.CONNECTING)
        try:
            ws = await self._unless_closed(self._open())
        except _Closing:
            return None, None
        except _LinkDown as exc:
            log.warning("realtime.connect_failed", reason=exc.reason)
            self._set_state(RealtimeState.DISCONNECTED)
            return None, None

        link = _Link(ws, ddp.DDPProtocol(), asyncio.get_running_loop().create_future())
        self._link = link
        reader = asyncio.create_task(self._read(link), name="realtime-reader")
        down = _LinkDown("closed")
        try:
            await self._handshake(link)
            await reader
        except _LinkDown as exc:
            down = exc
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if link.connected.done() and not link.connected.cancelled():
                link.connected.exception()  # retrieved: no "never retrieved" warning
            self._link = None
            link.protocol.close()
            await ws.close()
        if not self._closing:
            log.warning("realtime.disconnected", reason=down.reason)
            self._set_state(RealtimeState.DISCONNECTED)
            self._emit(Disconnected(down.reason))
        return link.ready_at, down.retry_after

    async def _open(self) -> ClientConnection:
        try:
            return await connect(
                self._url,
                open_timeout=self._connect_timeout,
                ping_interval=None,  # the DDP heartbeat below is the one keepalive
                close_timeout=self._close_timeout,
                max_size=self._max_frame_size,
                logger=_WIRE_LOGGER,
                # No permessage-deflate: DDP frames are small (a message is ~0.5-2 kB), and
                # compressing each one costs both ends CPU on every frame (measured on loopback:
                # the bot heard a command ~0.1 ms sooner without it) and the server a zlib
                # context per connection, for bandwidth a bot does not need to save.
                compression=None,
            )
        except InvalidURI:
            raise ConfigError("the realtime URL is not a valid ws:// or wss:// URL") from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise _LinkDown(f"cannot connect: {_describe(exc)}") from None

    async def _handshake(self, link: _Link) -> None:
        link.protocol.connect()
        await self._flush(link)
        try:
            async with asyncio.timeout(self._connect_timeout):
                link.session = await link.connected
                self._set_state(RealtimeState.LOGGING_IN)
                login = await self._login(link)
        except TimeoutError:
            raise _LinkDown(f"no DDP session and login within {self._connect_timeout:g}s") from None
        self.user_id = login.user_id
        link.logged_in = True
        self._set_state(RealtimeState.SUBSCRIBING)
        for subscription in self._subscriptions:
            self._subscribe_on(link, subscription)
        await self._flush(link)
        self._check_ready(link)

    async def _login(self, link: _Link) -> ddp.LoginResult:
        for kind, params in self._login_attempts():
            answer = await self._call_on(link, "login", (params,), self._connect_timeout)
            if isinstance(answer, ddp.Result):
                result = ddp.parse_login_result(answer.result)
                if result is None:
                    raise AuthFailed("ddp:login", "login answered without a user id and token")
                if isinstance(self._credentials, PasswordCredentials):
                    self._resume_token = SecretStr(result.token)
                log.info("realtime.logged_in", user_id=result.user_id, method=kind)
                return result
            reason = answer.reason or str(answer.error)
            if answer.error in _TRANSIENT_LOGIN_ERRORS or (isinstance(answer.error, int) and answer.error >= 500):
                raise _LinkDown(f"login temporarily refused: {reason}", _retry_after(answer.details))
            if kind == "remembered-resume":
                log.info("realtime.resume_refused", reason=reason)
                self._resume_token = None
                continue
            raise AuthFailed("ddp:login", f"realtime login refused: {reason}")
        raise AssertionError("the last login attempt either returns or raises")

    def _login_attempts(self) -> list[tuple[str, dict[str, Any]]]:
        creds = self._credentials
        if isinstance(creds, ResumeCredentials):
            return [("resume", ddp.resume_login_params(creds.token.get_secret_value()))]
        password = (
            "password",
            ddp.password_login_params(creds.password.get_secret_value(), username=creds.username, email=creds.email),
        )
        if self._resume_token is not None:
            return [("remembered-resume", ddp.resume_login_params(self._resume_token.get_secret_value())), password]
        return [password]

    async def _call_on(
        self, link: _Link, method: str, params: tuple[Any, ...], limit: float
    ) -> ddp.Result | ddp.MethodError:
        call_id = link.protocol.call(method, params)
        future: asyncio.Future[ddp.Result | ddp.MethodError] = asyncio.get_running_loop().create_future()
        link.calls[call_id] = future
        try:
            await self._flush(link)
            async with asyncio.timeout(limit):
                return await future
        finally:
            link.calls.pop(call_id, None)

    # --- reading ---

    async def _read(self, link: _Link) -> NoReturn:
        try:
            while True:
                text = await self._receive(link)
                for event in link.protocol.receive_text(text):
                    self._dispatch(link, event)
                await self._flush(link)
        except _LinkDown as exc:
            link.fail(exc)
            raise
        except BaseException:
            link.fail(_LinkDown("closed"))
            raise

    async def _receive(self, link: _Link) -> str:
        while True:
            waited = self._heartbeat_timeout if link.pinged else self._heartbeat_interval
            try:
                async with asyncio.timeout(waited):
                    data = await link.ws.recv()
            except TimeoutError:
                if link.pinged:
                    raise _LinkDown(f"no answer to ping within {waited:g}s") from None
                link.protocol.ping()
                link.pinged = True
                await self._flush(link)
                continue
            except ConnectionClosed as exc:
                raise _LinkDown(_describe(exc)) from None
            link.pinged = False  # any frame proves the server is alive, as in Meteor
            self.frames_in += 1
            if isinstance(data, str):
                return data
            self.unexpected_frames += 1
            log.warning("realtime.unexpected_frame", reason="binary frame")

    def _dispatch(self, link: _Link, event: ddp.Event) -> None:
        match event:
            case StreamEvent():
                self._emit(event)
            case ddp.Result() | ddp.MethodError():
                future = link.calls.get(event.id)
                if future is not None and not future.done():
                    future.set_result(event)
                else:
                    log.debug("realtime.late_result", call_id=event.id)
            case ddp.Connected(session=session):
                if not link.connected.done():
                    link.connected.set_result(session)
            case ddp.Failed(version=version):
                raise _LinkDown(f"server refused DDP version {ddp.DDP_VERSION} (offers {version})")
            case ddp.Ready(subs=subs):
                link.unready.difference_update(subs)
                self._check_ready(link)
            case ddp.NoSub():
                self._on_nosub(link, event)
            case ddp.ServerError(reason=reason):
                log.warning("realtime.server_error", reason=reason)
            case ddp.UnexpectedFrame(reason=reason, msg=msg):
                self.unexpected_frames += 1
                log.warning("realtime.unexpected_frame", reason=reason, msg=msg)
            case _:
                pass  # updated, ping (already answered), pong, plain collection documents

    def _on_nosub(self, link: _Link, event: ddp.NoSub) -> None:
        subscription = link.subs.pop(event.id, None)
        link.unready.discard(event.id)
        if subscription is not None and subscription in self._subscriptions:
            del self._subscriptions[subscription]
            error = event.error.error if event.error else None
            reason = event.error.reason if event.error else None
            log.warning("realtime.subscription_ended", name=subscription.name, error=error, reason=reason)
            self._emit(SubscriptionEnded(subscription, error, reason))
        self._check_ready(link)

    # --- plumbing ---

    def _subscribe_on(self, link: _Link, subscription: Subscription) -> None:
        sub_id = link.protocol.subscribe(subscription.name, subscription.params)
        link.subs[sub_id] = subscription
        link.unready.add(sub_id)

    def _check_ready(self, link: _Link) -> None:
        if self._state is not RealtimeState.SUBSCRIBING or link is not self._link or link.unready:
            return
        self._set_state(RealtimeState.READY)
        if link.ready_at is None and self.user_id is not None:
            link.ready_at = self._clock()
            log.info("realtime.ready", user_id=self.user_id, subscriptions=len(link.subs))
            self._emit(Connected(self.user_id, link.session, reconnect=self._sessions_ready > 0))
            self._sessions_ready += 1

    async def _flush(self, link: _Link) -> None:
        async with link.send_lock:
            for frame in link.protocol.data_to_send():
                try:
                    await link.ws.send(frame)
                except ConnectionClosed as exc:
                    raise _LinkDown(_describe(exc)) from None
                self.frames_out += 1

    def _flush_soon(self, link: _Link) -> None:
        """Send from synchronous code; a failure shows up in the reader as a closed connection."""

        async def flush() -> None:
            with contextlib.suppress(_LinkDown):
                await self._flush(link)

        task = asyncio.get_running_loop().create_task(flush())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _unless_closed(self, awaitable: Awaitable[_T]) -> _T:
        """Await `awaitable` unless `close()` is called first (then raise _Closing)."""
        task = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._close_requested.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, closing, return_exceptions=True)
        if task.cancelled():
            raise _Closing
        result = task.result()
        if self._closing:
            if isinstance(result, ClientConnection):
                await result.close()
            raise _Closing
        return result

    def _set_state(self, new: RealtimeState) -> None:
        if new not in TRANSITIONS[self._state]:
            raise ddp.LocalProtocolError(f"realtime client cannot go from {self._state.value} to {new.value}")
        self._state = new
        # Wake every waiter, then give the next ones a fresh event.
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    def _emit(self, event: RealtimeEvent) -> None:
        self._events.put_nowait(event)

    def _finish(self) -> None:
        if self._state is not RealtimeState.CLOSED:
            self._closing = True
            self._set_state(RealtimeState.CLOSED)
            self._events.put_nowait(None)
        self._stopped.set()


def _secret(value: str | SecretStr) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


def _retry_after(details: Any) -> float | None:
    """Meteor's rate limiter puts the wait (ms) in `details.timeToReset`."""
    if isinstance(details, dict):
        wait = details.get("timeToReset")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait < 3_600_000:
            return float(wait) / 1000
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is not None:
            return f"closed by the server (code {exc.rcvd.code}{', ' + exc.rcvd.reason if exc.rcvd.reason else ''})"
        return "connection lost"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
