"""The sandbox's DDP server session as a sans-I/O object: text frames in, text frames out.

Theory of operation
-------------------
One `DDPSession` per websocket. The driver (`sandbox.realtime`) owns the socket and the clock;
this object owns the protocol (contract §4): the connect handshake and version negotiation,
keepalive, methods, subscriptions and the stream events they produce. Nothing here blocks or
touches a socket, so every rule is unit-tested by feeding JSON and reading what comes out.

* `receive(text, now)` parses one frame. What Meteor answers immediately (handshake, `ping`,
  protocol errors) is queued at once; `method`, `sub` and `unsub` become `Call`s queued in order,
  because the driver may delay or fail them (fault injection) before `execute(call)` runs them.
  Meteor also answers pings outside its per-session message queue, so a slow method never makes
  a healthy client look dead.
* `deliver(event)` turns a store event into `changed` frames for the matching subscriptions.
  Access is evaluated at delivery time with the *current* state of the store and of the session
  (who is logged in now, may they read that room now).
* `on_timer(now)` drives the server heartbeat (§4.2); `next_timer()` says when to call it.
* `data_to_send()` drains the queued frames; `close_code` is set once the server wants the
  transport closed (after a `failed` handshake or a heartbeat timeout).

The connection lifecycle is a transition table; an illegal transition is a bug and raises.
Login state is orthogonal to it (a connected session may log in, out, and in again), and, as in
Meteor, every change of user re-runs the session's subscriptions.
"""

from __future__ import annotations

import enum
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sandbox.config import SandboxConfig
from sandbox.errors import MeteorError
from sandbox.ids import epoch_ms, hash_login_token, meteor_id, parse_date, to_ejson
from sandbox.store import (
    DeleteMessageEvent,
    Event,
    MessageEvent,
    PermissionEvent,
    RoleChangeEvent,
    RoomChangedEvent,
    RoomEvent,
    Store,
    SubscriptionEvent,
    User,
)

log = logging.getLogger("sandbox.ddp")

# Meteor's DDPCommon.SUPPORTED_DDP_VERSIONS, in the server's order of preference.
SUPPORTED_VERSIONS: Final[tuple[str, ...]] = ("1", "pre2", "pre1")

STREAM_ROOM_MESSAGES: Final = "stream-room-messages"
STREAM_NOTIFY_USER: Final = "stream-notify-user"
STREAM_NOTIFY_LOGGED: Final = "stream-notify-logged"
STREAM_NOTIFY_ROOM: Final = "stream-notify-room"
PUBLICATIONS: Final[frozenset[str]] = frozenset(
    {STREAM_ROOM_MESSAGES, STREAM_NOTIFY_USER, STREAM_NOTIFY_LOGGED, STREAM_NOTIFY_ROOM}
)
MY_MESSAGES: Final = "__my_messages__"

# Keys the `sendMessage` method's Match pattern accepts (contract §4.7); anything else fails the check.
_STR, _BOOL, _OBJ, _DATE = "string", "boolean", "object", "date"
SEND_MESSAGE_KEYS: Final[dict[str, str]] = {
    "_id": _STR,
    "rid": _STR,
    "msg": _STR,
    "tmid": _STR,
    "tshow": _BOOL,
    "ts": _DATE,
    "t": _STR,
    "bot": _OBJ,
    "content": _OBJ,
    "e2e": _STR,
    "e2eMentions": _OBJ,
    "customFields": _OBJ,
    "federation": _OBJ,
    "groupable": _BOOL,
    "sentByEmail": _BOOL,
}
# executeSendMessage refuses a client timestamp further than this from the server clock.
_TS_TOLERANCE_MS: Final = 60_000


# One event's `changed` frames as encoded for the sessions it reached so far (`DDPSession._changed`).
Frames = dict[tuple[str, str, Any], str]


def encode(frame: dict[str, Any]) -> str:
    """Meteor's `stringifyDDP`: compact JSON, dates already in EJSON form."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error_object(error: MeteorError) -> dict[str, Any]:
    """A serialised `Meteor.Error` as it appears in `result` and `nosub` frames (§4.3)."""
    body: dict[str, Any] = {"isClientSafe": True, "error": error.error}
    if error.reason is not None:
        body["reason"] = error.reason
    if error.details is not None:
        body["details"] = to_ejson(error.details)
    body["message"] = error.message
    body["errorType"] = "Meteor.Error"
    return body


def internal_error() -> MeteorError:
    """What Meteor sends instead of any exception that is not a Meteor.Error (sanitised)."""
    return MeteorError(500, "Internal server error")


def match_failed() -> MeteorError:
    """A failed `check()` reaches the client as its sanitised error."""
    return MeteorError(400, "Match failed")


def too_many_requests(seconds: float) -> MeteorError:
    """The DDP rate limiter's error (used by fault injection)."""
    wait = max(1, round(seconds))
    return MeteorError(
        "too-many-requests",
        f"Error, too many requests. Please slow down. You must wait {wait} seconds before trying this method again.",
        {"timeToReset": int(seconds * 1000)},
    )


# --- lifecycle ------------------------------------------------------------------------------------


class State(enum.Enum):
    AWAITING_CONNECT = "awaiting-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


Transition = Literal["connect", "reject", "heartbeat-timeout", "close"]

_TRANSITIONS: Final[dict[tuple[State, Transition], State]] = {
    (State.AWAITING_CONNECT, "connect"): State.CONNECTED,
    (State.AWAITING_CONNECT, "reject"): State.CLOSED,
    (State.AWAITING_CONNECT, "close"): State.CLOSED,
    (State.CONNECTED, "heartbeat-timeout"): State.CLOSED,
    (State.CONNECTED, "close"): State.CLOSED,
    (State.CLOSED, "close"): State.CLOSED,
}


class IllegalTransition(RuntimeError):
    """A bug in the session or its driver: the lifecycle table has no such edge."""


# --- values exchanged with the driver -------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A queued `method`, `sub` or `unsub` frame, executed in arrival order by `execute`."""

    kind: Literal["method", "sub", "unsub"]
    id: str
    name: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Sub:
    id: str
    name: str
    event_name: str
    use_collection: bool


class SubscriptionTrash:
    """Subscriptions removed from the store, for `subscriptions/get` with `updatedSince`.

    The store forgets a removed subscription; Rocket.Chat keeps it in a trash collection and
    reports it as `{_id, _deletedAt}`. The realtime hub records removals here from store events.
    """

    def __init__(self) -> None:
        self._removed: list[tuple[str, str, datetime]] = []  # (user id, subscription id, when)

    def record(self, user_id: str, subscription_id: str, when: datetime) -> None:
        self._removed.append((user_id, subscription_id, when))

    def removed_since(self, user_id: str, since: datetime) -> list[dict[str, Any]]:
        return [
            {"_id": sub_id, "_deletedAt": when}
            for uid, sub_id, when in list(self._removed)
            if uid == user_id and when > since
        ]


EphemeralSink = Callable[[str, dict[str, Any]], None]


# --- the session ----------------------------------------------------------------------------------


class DDPSession:
    def __init__(
        self,
        store: Store,
        config: SandboxConfig,
        *,
        session_id: str | None = None,
        ephemeral: EphemeralSink | None = None,
        trash: SubscriptionTrash | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.session_id = session_id or meteor_id()
        self.state = State.AWAITING_CONNECT
        self.version: str | None = None
        self.user_id: str | None = None
        self.close_code: int | None = None
        self._login_token: str | None = None
        self._ephemeral = ephemeral
        self._trash = trash
        self._out: list[str] = []
        self._calls: deque[Call] = deque()
        self._subs: dict[str, _Sub] = {}
        self._collections_added: set[str] = set()
        self._heartbeat = False
        self._last_seen = 0.0
        self._ping_sent_at: float | None = None
        self._methods: dict[str, Callable[[tuple[Any, ...]], Any]] = {
            "login": self._login,
            "logout": self._logout,
            "rooms/get": self._rooms_get,
            "subscriptions/get": self._subscriptions_get,
            "sendMessage": self._send_message,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    def _transition(self, edge: Transition) -> None:
        target = _TRANSITIONS.get((self.state, edge))
        if target is None:
            raise IllegalTransition(f"{edge!r} is not allowed in state {self.state.value}")
        self.state = target

    def close(self, code: int = 1000) -> None:
        """The server closes this connection (shutdown): the driver closes once frames are sent."""
        if self.close_code is None:
            self._request_close("close", code)

    def connection_lost(self) -> None:
        """The transport is gone: forget subscriptions; later input and events are ignored."""
        self._transition("close")
        self._subs.clear()
        self._calls.clear()

    @property
    def subscriptions(self) -> dict[str, tuple[str, str]]:
        """Active subscriptions: id -> (publication name, event name)."""
        return {sub.id: (sub.name, sub.event_name) for sub in self._subs.values()}

    # --- output ----------------------------------------------------------------------------

    def _send(self, frame: dict[str, Any]) -> None:
        if self.state is not State.CLOSED:
            self._out.append(encode(frame))

    def _send_error(self, reason: str, offending: Any = None) -> None:
        frame: dict[str, Any] = {"msg": "error", "reason": reason}
        if offending is not None:
            frame["offendingMessage"] = offending
        self._send(frame)

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def _request_close(self, edge: Transition, code: int = 1000) -> None:
        self._transition(edge)
        self.close_code = code
        self._subs.clear()
        self._calls.clear()

    # --- input --------------------------------------------------------------------------------

    def receive(self, text: str, now: float) -> None:
        """Handle one received text frame; queues answers and `Call`s."""
        if self.state is State.CLOSED:
            return
        if self.state is State.CONNECTED:
            # Any traffic proves the client alive (Meteor's heartbeat.messageReceived).
            self._last_seen = now
            self._ping_sent_at = None
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            self._send_error("Parse error")
            return
        if not isinstance(frame, dict | list):
            self._send_error("Bad request")  # Meteor discards non-object messages before reporting
            return
        kind = frame.get("msg") if isinstance(frame, dict) else None
        if not isinstance(frame, dict) or not kind:
            self._send_error("Bad request", frame)
            return
        if kind == "connect":
            self._handle_connect(frame, now)
            return
        if self.state is not State.CONNECTED:
            self._send_error("Must connect first", frame)
            return
        if self.version != "pre1" and kind == "ping":
            pong: dict[str, Any] = {"msg": "pong"}
            if "id" in frame and frame["id"] is not None:
                pong["id"] = frame["id"]
            self._send(pong)
            return
        if self.version != "pre1" and kind == "pong":
            return
        if kind == "method":
            self._queue_method(frame)
        elif kind == "sub":
            self._queue_sub(frame)
        elif kind == "unsub":
            self._calls.append(Call("unsub", str(frame.get("id", "")), ""))
        else:
            self._send_error("Bad request", frame)

    def _handle_connect(self, frame: dict[str, Any], now: float) -> None:
        if self.state is State.CONNECTED:
            self._send_error("Already connected", frame)
            return
        version, support = frame.get("version"), frame.get("support")
        if not (
            isinstance(version, str)
            and isinstance(support, list)
            and all(isinstance(v, str) for v in support)
            and version in support
        ):
            self._send({"msg": "failed", "version": SUPPORTED_VERSIONS[0]})
            self._request_close("reject")
            return
        # The client's first supported version that the server speaks, else the server's favourite.
        best = next((v for v in support if v in SUPPORTED_VERSIONS), SUPPORTED_VERSIONS[0])
        if version != best:
            self._send({"msg": "failed", "version": best})
            self._request_close("reject")
            return
        self._transition("connect")
        self.version = version
        self._heartbeat = version != "pre1" and self.config.heartbeat_interval > 0
        self._last_seen = now
        self._ping_sent_at = None
        self._send({"msg": "connected", "session": self.session_id})

    def _queue_method(self, frame: dict[str, Any]) -> None:
        params = frame.get("params", [])
        if (
            not isinstance(frame.get("id"), str)
            or not isinstance(frame.get("method"), str)
            or not isinstance(params, list)
            or ("randomSeed" in frame and not isinstance(frame["randomSeed"], str))
        ):
            self._send_error("Malformed method invocation", frame)
            return
        self._calls.append(Call("method", frame["id"], frame["method"], tuple(params)))

    def _queue_sub(self, frame: dict[str, Any]) -> None:
        params = frame.get("params", [])
        if (
            not isinstance(frame.get("id"), str)
            or not isinstance(frame.get("name"), str)
            or not isinstance(params, list)
        ):
            self._send_error("Malformed subscription", frame)
            return
        self._calls.append(Call("sub", frame["id"], frame["name"], tuple(params)))

    # --- calls ----------------------------------------------------------------------------------

    def next_call(self) -> Call | None:
        return self._calls.popleft() if self._calls else None

    def pending_calls(self) -> int:
        return len(self._calls)

    def execute(self, call: Call) -> None:
        """Run a queued call: a method answers `result` + `updated`, a sub `ready` or `nosub`."""
        if self.state is not State.CONNECTED:
            return
        if call.kind == "method":
            self._run_method(call)
        elif call.kind == "sub":
            self._run_sub(call)
        else:
            self._stop_sub(call.id)

    def fail(self, call: Call, error: MeteorError) -> None:
        """Answer a call with an error without running it (fault injection)."""
        if self.state is not State.CONNECTED:
            return
        if call.kind == "method":
            self._send({"msg": "result", "id": call.id, "error": error_object(error)})
            self._send({"msg": "updated", "methods": [call.id]})
        elif call.kind == "sub":
            self._send({"msg": "nosub", "id": call.id, "error": error_object(error)})
        else:
            self._stop_sub(call.id)

    def feed(self, text: str, now: float = 0.0) -> None:
        """Receive a frame and execute every call it queued (what a driver without faults does)."""
        self.receive(text, now)
        while (call := self.next_call()) is not None:
            self.execute(call)

    def _run_method(self, call: Call) -> None:
        handler = self._methods.get(call.name)
        try:
            if handler is None:
                raise MeteorError(404, f"Method '{call.name}' not found")
            result = handler(call.params)
        except MeteorError as exc:
            self._send({"msg": "result", "id": call.id, "error": error_object(exc)})
        except _MatchError:
            self._send({"msg": "result", "id": call.id, "error": error_object(match_failed())})
        except Exception:
            log.exception("DDP method %s failed", call.name)
            self._send({"msg": "result", "id": call.id, "error": error_object(internal_error())})
        else:
            frame: dict[str, Any] = {"msg": "result", "id": call.id}
            if result is not None:
                frame["result"] = to_ejson(result)
            self._send(frame)
        self._send({"msg": "updated", "methods": [call.id]})

    # --- subscriptions ------------------------------------------------------------------------

    def _run_sub(self, call: Call) -> None:
        if call.id in self._subs:
            return  # Meteor ignores a sub whose id is already active (reconnect idempotence)
        if call.name not in PUBLICATIONS:
            error = MeteorError(404, f"Subscription '{call.name}' not found")
            self._send({"msg": "nosub", "id": call.id, "error": error_object(error)})
            return
        event_name = call.params[0] if call.params else None
        options = call.params[1] if len(call.params) > 1 else None
        use_collection = False
        if isinstance(options, bool):
            use_collection = options
        elif isinstance(options, dict):
            use_collection = bool(options.get("useCollection"))
        if not isinstance(event_name, str):
            self._send({"msg": "nosub", "id": call.id, "error": error_object(match_failed())})
            return
        if not event_name:
            self._send({"msg": "nosub", "id": call.id, "error": error_object(MeteorError("invalid-event-name"))})
            return
        sub = _Sub(call.id, call.name, event_name, use_collection)
        if not self._read_allowed(sub):
            self._send({"msg": "nosub", "id": call.id, "error": error_object(MeteorError("not-allowed"))})
            return
        self._subs[sub.id] = sub
        if use_collection and sub.name not in self._collections_added:
            self._collections_added.add(sub.name)
            self._send({"msg": "added", "collection": sub.name, "id": "id", "fields": {"eventName": event_name}})
        self._send({"msg": "ready", "subs": [sub.id]})

    def _stop_sub(self, sub_id: str, error: MeteorError | None = None) -> None:
        self._subs.pop(sub_id, None)
        frame: dict[str, Any] = {"msg": "nosub", "id": sub_id}
        if error is not None:
            frame["error"] = error_object(error)
        self._send(frame)

    def _rerun_subscriptions(self) -> None:
        """Meteor re-runs every named subscription when the connection's user changes."""
        for sub in list(self._subs.values()):
            if self._read_allowed(sub):
                self._send({"msg": "ready", "subs": [sub.id]})
            else:
                self._stop_sub(sub.id, MeteorError("not-allowed"))

    def _read_allowed(self, sub: _Sub) -> bool:
        uid = self.user_id
        if sub.name == STREAM_ROOM_MESSAGES:
            if sub.event_name == MY_MESSAGES:
                return True
            return uid is not None and self._can_read_room(uid, sub.event_name)
        if uid is None:
            return False
        if sub.name == STREAM_NOTIFY_USER:
            return sub.event_name.split("/", 1)[0] == uid
        if sub.name == STREAM_NOTIFY_ROOM:
            return self.store.is_member(sub.event_name.split("/", 1)[0], uid)
        return sub.name == STREAM_NOTIFY_LOGGED

    def _can_read_room(self, uid: str, room_id: str) -> bool:
        if self.store.can_access_room(uid, room_id):
            return True
        with self.store.lock:
            room = self.store.rooms.get(room_id)
            return room is not None and room["t"] == "c" and self.store.has_permission(uid, "preview-c-room")

    # --- events ---------------------------------------------------------------------------------

    def _changed(
        self, collection: str, event_name: str, args: list[Any], *, frames: Frames | None = None, key: Any = None
    ) -> None:
        """One `changed` frame. With `frames` (one event's frames, shared by every session it is
        delivered to), a frame `key` names alike for every session is encoded once, as Rocket.Chat's
        streamer stringifies an event once for all its subscriptions."""
        if frames is None:
            self._send(self._changed_frame(collection, event_name, args))
            return
        name = (collection, event_name, key)
        text = frames.get(name)
        if text is None:
            text = frames[name] = encode(self._changed_frame(collection, event_name, args))
        if self.state is not State.CLOSED:
            self._out.append(text)

    @staticmethod
    def _changed_frame(collection: str, event_name: str, args: list[Any]) -> dict[str, Any]:
        return {
            "msg": "changed",
            "collection": collection,
            "id": "id",
            "fields": {"eventName": event_name, "args": to_ejson(args)},
        }

    def _subs_for(self, name: str, event_name: str) -> list[_Sub]:
        return [s for s in self._subs.values() if s.name == name and s.event_name == event_name]

    def deliver(self, event: Event, frames: Frames | None = None) -> None:
        """Turn one store event into `changed` frames for this session's subscriptions (`frames`:
        those of this event encoded already for other sessions, see `_changed`)."""
        if self.state is not State.CONNECTED or not self._subs:
            return
        if isinstance(event, MessageEvent):
            self._deliver_message(event, frames)
        elif isinstance(event, SubscriptionEvent):
            self._deliver_user(event.user_id, "subscriptions-changed", [event.action, event.subscription])
        elif isinstance(event, RoomEvent):
            self._deliver_user(event.user_id, "rooms-changed", [event.action, event.room])
        elif isinstance(event, RoomChangedEvent):
            self._deliver_room_change(event.room)
        elif isinstance(event, PermissionEvent):
            self._deliver_logged("permissions-changed", [event.action, event.permission])
        elif isinstance(event, RoleChangeEvent):
            self._deliver_logged("roles-change", [event.payload])
        elif isinstance(event, DeleteMessageEvent):
            uid = self.user_id
            if uid is None:
                return
            event_name = f"{event.room_id}/deleteMessage"
            for _sub in self._subs_for(STREAM_NOTIFY_ROOM, event_name):
                if self.store.is_member(event.room_id, uid):
                    self._changed(STREAM_NOTIFY_ROOM, event_name, [{"_id": event.message_id}])

    def deliver_ephemeral(self, user_id: str, message: dict[str, Any]) -> None:
        """`<uid>/message`: a client-only notice for that user (e.g. why a send failed)."""
        if self.state is State.CONNECTED:
            self._deliver_user(user_id, "message", [message])

    def _deliver_message(self, event: MessageEvent, frames: Frames | None) -> None:
        message, room = event.message, event.room
        uid = self.user_id
        if uid is None or message.get("_hidden") or message.get("imported"):
            return
        rid = room["_id"]
        mine = self._subs_for(STREAM_ROOM_MESSAGES, MY_MESSAGES)
        direct = self._subs_for(STREAM_ROOM_MESSAGES, rid)
        if not mine and not direct:
            return
        if not self._can_read_room(uid, rid):
            return
        for _sub in direct:
            self._changed(STREAM_ROOM_MESSAGES, rid, [message], frames=frames)
        if mine and self.store.can_access_room(uid, rid):
            meta: dict[str, Any] = {"roomParticipant": self.store.is_member(rid, uid), "roomType": room["t"]}
            if room.get("name") is not None:
                meta["roomName"] = room["name"]
            for _sub in mine:
                self._changed(
                    STREAM_ROOM_MESSAGES, MY_MESSAGES, [message, meta], frames=frames, key=tuple(meta.items())
                )

    def _deliver_room_change(self, room: dict[str, Any]) -> None:
        """A room's change reaches a user's `rooms-changed` publication if the user is in the room.
        Subscribed first, member second: every message makes one, and most sessions (the bot's)
        never subscribe, so they should not take the store's lock for it."""
        uid = self.user_id
        subs = self._subs_for(STREAM_NOTIFY_USER, f"{uid}/rooms-changed") if uid is not None else []
        if subs and uid is not None and self.store.is_member(room["_id"], uid):
            for _sub in subs:
                self._changed(STREAM_NOTIFY_USER, f"{uid}/rooms-changed", ["updated", room])

    def _deliver_user(self, user_id: str, event: str, args: list[Any]) -> None:
        if self.user_id != user_id:
            return
        event_name = f"{user_id}/{event}"
        for _sub in self._subs_for(STREAM_NOTIFY_USER, event_name):
            self._changed(STREAM_NOTIFY_USER, event_name, args)

    def _deliver_logged(self, event_name: str, args: list[Any]) -> None:
        if self.user_id is None:
            return
        for _sub in self._subs_for(STREAM_NOTIFY_LOGGED, event_name):
            self._changed(STREAM_NOTIFY_LOGGED, event_name, args)

    # --- heartbeat (§4.2) -------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `on_timer` must next run, on the driver's clock; None while no heartbeat runs."""
        if self.state is not State.CONNECTED or not self._heartbeat:
            return None
        if self._ping_sent_at is None:
            return self._last_seen + self.config.heartbeat_interval
        return self._ping_sent_at + self.config.heartbeat_timeout

    def on_timer(self, now: float) -> None:
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return
        if self._ping_sent_at is None:
            self._send({"msg": "ping"})
            self._ping_sent_at = now
        else:
            self._request_close("heartbeat-timeout")

    # --- methods --------------------------------------------------------------------------------

    def _set_user(self, user_id: str | None, token: str | None) -> None:
        previous = self.user_id
        self.user_id, self._login_token = user_id, token
        if previous == user_id:
            return
        if previous is not None:
            self._send({"msg": "removed", "collection": "users", "id": previous})
        if user_id is not None:
            with self.store.lock:
                user = self.store.users[user_id]
                # The logged-in user's own document, as Meteor publishes it on `users` after login.
                fields = {
                    "username": user.username,
                    "name": user.name,
                    "emails": list(user.emails),
                    "status": user.status,
                    "active": user.active,
                    "roles": list(user.roles),
                }
            self._send({"msg": "added", "collection": "users", "id": user_id, "fields": fields})
        self._rerun_subscriptions()

    def _login(self, params: tuple[Any, ...]) -> dict[str, Any]:
        options = params[0] if params else None
        if not isinstance(options, dict):
            raise _MatchError
        user: User | None
        if "resume" in options:
            token = options["resume"]
            if not isinstance(token, str):
                raise _MatchError
            user = self.store.user_by_resume_token(token)
            login_type = "resume"
        elif "user" in options and "password" in options:
            user = self._password_user(options["user"], options["password"])
            token = self.store.create_login_token(user._id) if user is not None else ""
            login_type = "password"
        else:
            raise MeteorError(400, "Unrecognized options for login request")
        if user is None:
            # Rocket.Chat replaces every login failure with one ambiguous error (§4.4).
            raise MeteorError(401, "User not found")
        with self.store.lock:
            entry = user.login_tokens.get(hash_login_token(token))
            when = entry["when"] if entry is not None else self.store.clock()
        self._set_user(user._id, token)
        return {
            "id": user._id,
            "token": token,
            "tokenExpires": {"$date": epoch_ms(self.store.token_expires(when))},
            "type": login_type,
        }

    def _password_user(self, selector: Any, password: Any) -> User | None:
        if isinstance(selector, str):
            user = self.store.find_user_by_email(selector) if "@" in selector else self._by_username(selector)
        elif isinstance(selector, dict) and len(selector) == 1:
            key, value = next(iter(selector.items()))
            if not isinstance(value, str) or not value:
                raise _MatchError
            if key == "username":
                user = self._by_username(value)
            elif key == "email":
                user = self.store.find_user_by_email(value)
            elif key == "id":
                with self.store.lock:
                    user = self.store.users.get(value)
            else:
                raise _MatchError
        else:
            raise _MatchError
        if user is None:
            return None
        if isinstance(password, str):
            ok = self.store.check_password(user, plaintext=password)
        elif isinstance(password, dict) and isinstance(password.get("digest"), str):
            if password.get("algorithm") != "sha-256":
                raise MeteorError(400, "Unrecognized options for login request")
            ok = self.store.check_password(user, digest=password["digest"])
        else:
            raise _MatchError
        return user if ok else None

    def _by_username(self, username: str) -> User | None:
        user = self.store.find_user(username)
        return user if user is not None and user.username == username else None

    def _logout(self, params: tuple[Any, ...]) -> None:
        if self.user_id is not None and self._login_token is not None:
            self.store.revoke_login_token(self.user_id, self._login_token)
        self._set_user(None, None)

    @staticmethod
    def _since(params: tuple[Any, ...]) -> datetime | None:
        """`updatedSince` counts only as an EJSON date, as `updatedAt instanceof Date` does."""
        value = params[0] if params else None
        if isinstance(value, dict) and set(value) == {"$date"} and isinstance(value["$date"], int | float):
            return parse_date(value)
        return None

    def _rooms_get(self, params: tuple[Any, ...]) -> Any:
        if self.user_id is None:
            return []
        since = self._since(params)
        if since is None:
            return self.store.user_rooms(self.user_id)
        return {"update": self.store.user_rooms(self.user_id, updated_after=since), "remove": []}

    def _subscriptions_get(self, params: tuple[Any, ...]) -> Any:
        if self.user_id is None:
            return []
        subs = self.store.user_subscriptions(self.user_id)
        since = self._since(params)
        if since is None:
            return subs
        removed = self._trash.removed_since(self.user_id, since) if self._trash is not None else []
        return {"update": [s for s in subs if s["_updatedAt"] > since], "remove": removed}

    def _send_message(self, params: tuple[Any, ...]) -> dict[str, Any]:
        message = params[0] if params else None
        if not isinstance(message, dict):
            raise _MatchError
        for key, value in message.items():
            kind = SEND_MESSAGE_KEYS.get(key)
            if kind is None or not _matches(kind, value):
                raise _MatchError
        uid = self.user_id
        if uid is None:
            raise MeteorError("error-invalid-user", "Invalid user", {"method": "sendMessage"})
        if message.get("t"):
            # "Cannot send system messages using 'sendMessage'" is a plain Error: sanitised to 500.
            raise RuntimeError("system message over sendMessage")
        if message.get("ts") is not None:
            now = epoch_ms(self.store.clock())
            if abs(int(message["ts"]["$date"]) - now) > _TS_TOLERANCE_MS:
                raise MeteorError(
                    "error-message-ts-out-of-sync",
                    "Message timestamp is out of sync",
                    {"method": "sendMessage", "message_ts": message["ts"], "server_ts": now},
                )
        rid = message.get("rid")
        if message.get("tmid"):
            parent = self.store.get_message(message["tmid"])
            if parent is not None:
                rid = parent["rid"]
        if not rid:
            raise RuntimeError("The 'rid' property on the message object is missing.")
        try:
            return self.store.send_message(
                uid,
                rid,
                message.get("msg") or "",
                tmid=message.get("tmid"),
                tshow=bool(message.get("tshow")),
                message_id=message.get("_id"),
                bot=message.get("bot"),
                custom_fields=message.get("customFields"),
            )
        except MeteorError as exc:
            # executeSendMessage also tells the user why, as an ephemeral message from rocket.cat.
            if self._ephemeral is not None:
                now_dt = self.store.clock()
                self._ephemeral(
                    uid,
                    {
                        "_id": meteor_id(),
                        "rid": rid,
                        "ts": now_dt,
                        "_updatedAt": now_dt,
                        "msg": exc.reason or str(exc.error),
                        "u": {"_id": "rocket.cat", "username": "rocket.cat"},
                        "private": True,
                        "groupable": False,
                    },
                )
            raise


class _MatchError(Exception):
    """A failed Match check inside a method; reported as `Match failed [400]`."""


def _matches(kind: str, value: Any) -> bool:
    if value is None:  # Match.Maybe
        return True
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _OBJ:
        return isinstance(value, dict)
    return isinstance(value, dict) and set(value) == {"$date"} and isinstance(value["$date"], int | float)
