"""A sans-I/O DDP client: text frames in, events out, text frames to send.

Theory of operation
-------------------
Rocket.Chat's realtime API is Meteor's DDP: one JSON object per websocket text frame. This
module knows the protocol and nothing about sockets, tasks or clocks, so it can be tested by
feeding it strings and so the asyncio driver (`bot.rocketchat.realtime`) stays small.

One `DDPProtocol` object lives for exactly one websocket connection. The driver calls
`connect()`, `call()`, `subscribe()`, ... which queue frames, sends whatever `data_to_send()`
returns, and hands each received text frame to `receive_text()`, which returns the events it
produced. After a disconnect the driver throws the object away and starts a new one: DDP
subscriptions and method calls do not survive a reconnect.

The server is not trusted to be well-behaved: nothing it sends makes this module raise.
Garbage, unknown message types, missing fields and frames that make no sense in the current
state become an `UnexpectedFrame` event (or are dropped, for the legacy `{"server_id": "0"}`
welcome of Meteor 2.x). Our own code *is* trusted to be right, so misuse — calling a method
before `connect()`, connecting twice, unsubscribing an id we never issued — raises
`LocalProtocolError` at once, the way h11 does.

The connection lifecycle is the transition table `TRANSITIONS`; every state change goes
through it. Server pings are answered here (a pong is queued) so that a driver cannot forget
to; the driver only has to flush `data_to_send()` after each `receive_text()`.

Dates: DDP carries EJSON dates (`{"$date": ms}`). Parameters we send are encoded with
`bot.rocketchat.ejson.encode`; received payloads are passed through raw, and the places that read a date
decode it with `bot.rocketchat.ejson.decode_date` (see `bot.rocketchat.messages`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from bot.rocketchat import ejson

DDP_VERSION: Final = "1"
SUPPORTED_VERSIONS: Final = ("1", "pre2", "pre1")


class LocalProtocolError(RuntimeError):
    """Our own code used the protocol wrongly (a bug here, never caused by the server)."""


class State(enum.Enum):
    DISCONNECTED = "disconnected"  # nothing sent yet
    CONNECTING = "connecting"  # `connect` sent, waiting for `connected` or `failed`
    CONNECTED = "connected"  # session established; methods and subscriptions flow
    CLOSED = "closed"  # refused by the server or the transport is gone; terminal


class Trigger(enum.Enum):
    SEND_CONNECT = "send connect"
    RECEIVE_CONNECTED = "receive connected"
    RECEIVE_FAILED = "receive failed"
    CLOSE = "close"


TRANSITIONS: Final[Mapping[tuple[State, Trigger], State]] = MappingProxyType(
    {
        (State.DISCONNECTED, Trigger.SEND_CONNECT): State.CONNECTING,
        (State.CONNECTING, Trigger.RECEIVE_CONNECTED): State.CONNECTED,
        (State.CONNECTING, Trigger.RECEIVE_FAILED): State.CLOSED,
        (State.DISCONNECTED, Trigger.CLOSE): State.CLOSED,
        (State.CONNECTING, Trigger.CLOSE): State.CLOSED,
        (State.CONNECTED, Trigger.CLOSE): State.CLOSED,
        (State.CLOSED, Trigger.CLOSE): State.CLOSED,
    }
)

# Which server messages make sense in which state (besides `connected`/`failed`, which the
# transition table decides). Meteor only speaks DDP proper after `connected`, but it may report
# an `error` for a bad `connect` frame and either side may ping at any time.
_ACCEPTED_IN: Final[Mapping[State, frozenset[str]]] = MappingProxyType(
    {
        State.DISCONNECTED: frozenset(),
        State.CONNECTING: frozenset({"error", "ping", "pong"}),
        State.CONNECTED: frozenset(
            {"result", "updated", "ready", "nosub", "added", "changed", "removed", "ping", "pong", "error"}
        ),
        State.CLOSED: frozenset(),
    }
)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    session: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    """The server does not speak our DDP version; it closes the connection after this."""

    version: str | None


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    # Hidden from repr: the login result carries the resume token.
    result: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class MethodError:
    """A method answered with an error. `error` is Meteor's code: a string or a number (404, 500)."""

    id: str
    error: str | int | None
    reason: str | None
    details: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class Updated:
    methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ready:
    subs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    error: str | int | None
    reason: str | None
    details: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class NoSub:
    """A subscription ended: refused (`error` set), stopped by the server, or after our `unsub`."""

    id: str
    error: ErrorInfo | None


@dataclass(frozen=True, slots=True)
class Added:
    collection: str
    id: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Changed:
    collection: str
    id: str
    fields: Mapping[str, Any]
    cleared: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Removed:
    collection: str
    id: str


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A Rocket.Chat stream event: a `changed` on a `stream-*` collection, unpacked.

    Emitted instead of `Changed` when the frame has a string `eventName` and a list `args`.
    """

    collection: str
    event_name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    """The server pinged; the pong is already queued."""

    id: str | None


@dataclass(frozen=True, slots=True)
class Pong:
    id: str | None


@dataclass(frozen=True, slots=True)
class ServerError:
    """A DDP-level `error` message: the server could not understand a frame we sent."""

    reason: str | None
    # Hidden from repr: the offending message may be our login frame, with its credentials.
    offending: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class UnexpectedFrame:
    """A frame we cannot use. `msg` is its DDP message type when it had one."""

    reason: str
    msg: str | None


Event = (
    Connected
    | Failed
    | Result
    | MethodError
    | Updated
    | Ready
    | NoSub
    | Added
    | Changed
    | Removed
    | StreamEvent
    | Ping
    | Pong
    | ServerError
    | UnexpectedFrame
)


# --- the protocol -----------------------------------------------------------------------------


class DDPProtocol:
    """The DDP state of one websocket connection. See the module docstring."""

    def __init__(self) -> None:
        self._state = State.DISCONNECTED
        self._outgoing: list[str] = []
        self._last_id = 0
        self._pending_calls: dict[str, str] = {}  # call id -> method name
        self._subscriptions: dict[str, str] = {}  # sub id -> publication name, until its nosub

    @property
    def state(self) -> State:
        return self._state

    @property
    def pending_calls(self) -> Mapping[str, str]:
        """Method calls still waiting for their `result`: id -> method name."""
        return MappingProxyType(self._pending_calls)

    @property
    def subscriptions(self) -> Mapping[str, str]:
        """Subscriptions not yet ended by a `nosub`: id -> publication name."""
        return MappingProxyType(self._subscriptions)

    # --- our side ---

    def connect(self) -> None:
        self._transition(Trigger.SEND_CONNECT)
        self._send({"msg": "connect", "version": DDP_VERSION, "support": list(SUPPORTED_VERSIONS)})

    def call(self, method: str, params: Sequence[Any] = ()) -> str:
        """Queue a method call; returns its id (match it against `Result`/`MethodError`)."""
        self._require_open("call a method")
        call_id = self._new_id()
        self._send({"msg": "method", "method": method, "id": call_id, "params": ejson.encode(list(params))})
        self._pending_calls[call_id] = method
        return call_id

    def subscribe(self, name: str, params: Sequence[Any] = ()) -> str:
        """Queue a subscription; returns its id (match it against `Ready`/`NoSub`)."""
        self._require_open("subscribe")
        sub_id = self._new_id()
        self._send({"msg": "sub", "id": sub_id, "name": name, "params": ejson.encode(list(params))})
        self._subscriptions[sub_id] = name
        return sub_id

    def unsubscribe(self, sub_id: str) -> None:
        """Queue an `unsub`. The subscription ends when the server's `nosub` arrives."""
        self._require_open("unsubscribe")
        if sub_id not in self._subscriptions:
            raise LocalProtocolError(f"no active subscription with id {sub_id!r}")
        self._send({"msg": "unsub", "id": sub_id})

    def ping(self) -> str:
        """Queue a client ping; returns its id (the server echoes it in `Pong`)."""
        self._require_open("ping")
        ping_id = self._new_id()
        self._send({"msg": "ping", "id": ping_id})
        return ping_id

    def close(self) -> None:
        """The transport is gone (or being closed). Frames not yet sent are dropped."""
        self._transition(Trigger.CLOSE)
        self._outgoing.clear()

    def data_to_send(self) -> list[str]:
        """Frames queued since the last call, in order. Each is one websocket text frame."""
        frames, self._outgoing = self._outgoing, []
        return frames

    # --- the server's side ---

    def receive_text(self, text: str) -> list[Event]:
        """Process one received text frame. Never raises, whatever the text."""
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            return [UnexpectedFrame("not JSON", None)]
        if not isinstance(frame, dict):
            return [UnexpectedFrame("not a JSON object", None)]
        msg = frame.get("msg")
        if msg is None:
            if "server_id" in frame:
                return []  # Meteor 2.x welcome frame, meaningless to a client
            return [UnexpectedFrame("no msg field", None)]
        if not isinstance(msg, str):
            return [UnexpectedFrame("msg is not a string", None)]
        if msg == "connected":
            return [self._on_connected(frame)]
        if msg == "failed":
            return [self._on_failed(frame)]
        handler = _HANDLERS.get(msg)
        if handler is None:
            return [UnexpectedFrame("unknown message type", msg)]
        if msg not in _ACCEPTED_IN[self._state]:
            return [UnexpectedFrame(f"not expected while {self._state.value}", msg)]
        return [handler(self, frame)]

    def _on_connected(self, frame: dict[str, Any]) -> Event:
        if not self._server_transition(Trigger.RECEIVE_CONNECTED):
            return UnexpectedFrame(f"not expected while {self._state.value}", "connected")
        return Connected(_opt_str(frame.get("session")))

    def _on_failed(self, frame: dict[str, Any]) -> Event:
        if not self._server_transition(Trigger.RECEIVE_FAILED):
            return UnexpectedFrame(f"not expected while {self._state.value}", "failed")
        self._outgoing.clear()
        return Failed(_opt_str(frame.get("version")))

    def _on_result(self, frame: dict[str, Any]) -> Event:
        call_id = frame.get("id")
        if not isinstance(call_id, str) or call_id not in self._pending_calls:
            return UnexpectedFrame("result for no pending call", "result")
        del self._pending_calls[call_id]
        if frame.get("error") is not None:
            info = _error_info(frame["error"])
            return MethodError(call_id, info.error, info.reason, info.details)
        return Result(call_id, frame.get("result"))

    def _on_updated(self, frame: dict[str, Any]) -> Event:
        methods = frame.get("methods")
        if not isinstance(methods, list):
            return UnexpectedFrame("methods is not a list", "updated")
        return Updated(tuple(m for m in methods if isinstance(m, str)))

    def _on_ready(self, frame: dict[str, Any]) -> Event:
        subs = frame.get("subs")
        if not isinstance(subs, list):
            return UnexpectedFrame("subs is not a list", "ready")
        known = tuple(s for s in subs if isinstance(s, str) and s in self._subscriptions)
        if not known:
            return UnexpectedFrame("ready for no active subscription", "ready")
        return Ready(known)

    def _on_nosub(self, frame: dict[str, Any]) -> Event:
        sub_id = frame.get("id")
        if not isinstance(sub_id, str) or sub_id not in self._subscriptions:
            return UnexpectedFrame("nosub for no active subscription", "nosub")
        del self._subscriptions[sub_id]
        error = frame.get("error")
        return NoSub(sub_id, None if error is None else _error_info(error))

    def _on_added(self, frame: dict[str, Any]) -> Event:
        collection, doc_id, fields = frame.get("collection"), frame.get("id"), frame.get("fields", {})
        if not isinstance(collection, str) or not isinstance(doc_id, str) or not isinstance(fields, dict):
            return UnexpectedFrame("added without collection, id or fields", "added")
        return Added(collection, doc_id, fields)

    def _on_changed(self, frame: dict[str, Any]) -> Event:
        collection, doc_id = frame.get("collection"), frame.get("id")
        fields, cleared = frame.get("fields", {}), frame.get("cleared", [])
        if not isinstance(collection, str) or not isinstance(doc_id, str) or not isinstance(fields, dict):
            return UnexpectedFrame("changed without collection, id or fields", "changed")
        event_name, args = fields.get("eventName"), fields.get("args")
        if collection.startswith("stream-") and isinstance(event_name, str) and isinstance(args, list):
            return StreamEvent(collection, event_name, tuple(args))
        cleared_names = tuple(c for c in cleared if isinstance(c, str)) if isinstance(cleared, list) else ()
        return Changed(collection, doc_id, fields, cleared_names)

    def _on_removed(self, frame: dict[str, Any]) -> Event:
        collection, doc_id = frame.get("collection"), frame.get("id")
        if not isinstance(collection, str) or not isinstance(doc_id, str):
            return UnexpectedFrame("removed without collection or id", "removed")
        return Removed(collection, doc_id)

    def _on_ping(self, frame: dict[str, Any]) -> Event:
        ping_id = _opt_str(frame.get("id"))
        self._send({"msg": "pong"} if ping_id is None else {"msg": "pong", "id": ping_id})
        return Ping(ping_id)

    def _on_pong(self, frame: dict[str, Any]) -> Event:
        return Pong(_opt_str(frame.get("id")))

    def _on_error(self, frame: dict[str, Any]) -> Event:
        return ServerError(_opt_str(frame.get("reason")), frame.get("offendingMessage"))

    # --- plumbing ---

    def _transition(self, trigger: Trigger) -> None:
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            raise LocalProtocolError(f"cannot {trigger.value} while {self._state.value}")
        self._state = target

    def _server_transition(self, trigger: Trigger) -> bool:
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            return False
        self._state = target
        return True

    def _require_open(self, action: str) -> None:
        if self._state not in (State.CONNECTING, State.CONNECTED):
            raise LocalProtocolError(f"cannot {action} while {self._state.value}; call connect() first")

    def _new_id(self) -> str:
        self._last_id += 1
        return str(self._last_id)

    def _send(self, frame: dict[str, Any]) -> None:
        # allow_nan=False: NaN is not JSON and a server would refuse the whole frame.
        self._outgoing.append(json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False))


_HANDLERS: Final[Mapping[str, Callable[[DDPProtocol, dict[str, Any]], Event]]] = MappingProxyType(
    {
        "result": DDPProtocol._on_result,
        "updated": DDPProtocol._on_updated,
        "ready": DDPProtocol._on_ready,
        "nosub": DDPProtocol._on_nosub,
        "added": DDPProtocol._on_added,
        "changed": DDPProtocol._on_changed,
        "removed": DDPProtocol._on_removed,
        "ping": DDPProtocol._on_ping,
        "pong": DDPProtocol._on_pong,
        "error": DDPProtocol._on_error,
    }
)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _error_info(error: Any) -> ErrorInfo:
    """Meteor serialises errors as objects; tolerate a bare code or anything else."""
    if isinstance(error, dict):
        code = error.get("error")
        return ErrorInfo(
            code if isinstance(code, str | int) and not isinstance(code, bool) else None,
            _opt_str(error.get("reason")) or _opt_str(error.get("message")),
            error.get("details"),
        )
    if isinstance(error, str | int) and not isinstance(error, bool):
        return ErrorInfo(error, None, None)
    return ErrorInfo(None, None, None)


# --- login (contract §4.4) --------------------------------------------------------------------


def resume_login_params(token: str) -> dict[str, Any]:
    """Params for `login` with an auth token or personal access token."""
    return {"resume": token}


def password_login_params(password: str, *, username: str | None = None, email: str | None = None) -> dict[str, Any]:
    """Params for `login` with a password. Only its SHA-256 digest is sent, never the plaintext."""
    if (username is None) == (email is None):
        raise ValueError("give exactly one of username or email")
    user = {"username": username} if username is not None else {"email": email}
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    return {"user": user, "password": {"digest": digest, "algorithm": "sha-256"}}


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    token: str = field(repr=False)
    token_expires: datetime | None
    type: str | None


def parse_login_result(result: Any) -> LoginResult | None:
    """The user id and resume token from a successful `login` result, or None if they are missing."""
    if not isinstance(result, dict):
        return None
    user_id, token = result.get("id"), result.get("token")
    if not isinstance(user_id, str) or not user_id or not isinstance(token, str) or not token:
        return None
    return LoginResult(user_id, token, ejson.decode_date(result.get("tokenExpires")), _opt_str(result.get("type")))
