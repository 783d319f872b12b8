"""Driving the sandbox from tests: `SandboxControl` in-process, `SandboxClient` over HTTP.

Theory of operation
-------------------
End-to-end tests, the demo and the benchmark need to arrange a workspace (users, roles, rooms,
integrations), play other chat users, disturb the server, and wait for what the bot does. They
do it with the same method names whether the sandbox runs in their process (`SandboxControl`,
plain synchronous and thread-safe: every operation goes through the store's lock or the faults'
lock) or in another one (`SandboxClient`, the same methods over `/_sandbox/<method>`).

All documents handed out are JSON-ready copies in their REST form (dates as ISO strings), so a
test sees identical values through either door. Users and rooms are named by id or by
username/name everywhere.

`wait_for_message` blocks on a condition variable fed by a store listener: the listener bumps a
version number and remembers the newest copy of each changed message; waiters re-check only what
changed since the version they last saw. No polling, no sleeping.
"""

from __future__ import annotations

import bisect
import copy
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from sandbox.config import SandboxConfig
from sandbox.errors import MeteorError, SandboxError
from sandbox.faults import Counters, FailMode, Faults
from sandbox.ids import meteor_id, object_id, parse_date, to_rest
from sandbox.integration_history import CallOutcome, call_data, record_outgoing_call
from sandbox.store import DeleteMessageEvent, Event, MessageEvent, Store, User

SECRET_HEADER: Final = "X-Sandbox-Secret"  # noqa: S105 - a header name, not a secret
MessagePredicate = Callable[[dict[str, Any]], bool]
# How long one long-poll request of `SandboxClient.wait_for_message` may block on the server.
_LONG_POLL: Final = 10.0


class NotFound(SandboxError, LookupError):
    """No such user, room, message or integration."""


class ControlError(SandboxError):
    """The control API refused a request (bad secret, unknown operation, bad arguments)."""


@dataclass(frozen=True)
class UserCredentials:
    user_id: str
    username: str
    auth_token: str
    password: str | None
    roles: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "username": self.username,
            "authToken": self.auth_token,
            "password": self.password,
            "roles": list(self.roles),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserCredentials:
        return cls(data["userId"], data["username"], data["authToken"], data["password"], tuple(data["roles"]))


class Connections(Protocol):
    """What owns the sockets (the running server)."""

    def drop_connections(self) -> int: ...


# --- integration documents --------------------------------------------------------------------------


def _channels(channel: str | Iterable[str]) -> list[str]:
    parts = channel.split(",") if isinstance(channel, str) else list(channel)
    return [p.strip() for p in parts if p.strip()]


def incoming_integration_document(
    store: Store,
    name: str,
    *,
    channel: str | Iterable[str],
    username: str = "rocket.cat",
    created_by: str = "admin",
    enabled: bool = True,
    alias: str | None = None,
    avatar: str | None = None,
    emoji: str | None = None,
    script: str | None = None,
    script_enabled: bool = False,
    override_destination_channel_enabled: bool = False,
    integration_id: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """An incoming webhook as `integrations.create` stores it (contract §2.1)."""
    poster, creator = _must_user(store, username), _must_user(store, created_by)
    now = store.clock()
    doc: dict[str, Any] = {
        "_id": integration_id or object_id(),
        "type": "webhook-incoming",
        "name": name,
        "enabled": enabled,
        "username": poster.username,
        "userId": poster._id,
        "channel": _channels(channel),
        "scriptEnabled": script_enabled,
        "scriptEngine": "isolated-vm",
        "overrideDestinationChannelEnabled": override_destination_channel_enabled,
        "token": token or meteor_id(48),
        "_createdAt": now,
        "_createdBy": creator.brief(),
        "_updatedAt": now,
    }
    _set_optional(doc, alias=alias, avatar=avatar, emoji=emoji, script=script)
    if script_enabled and script:
        doc["scriptCompiled"] = script
    return doc


def outgoing_integration_document(
    store: Store,
    name: str,
    *,
    channel: str | Iterable[str],
    urls: Iterable[str],
    event: str = "sendMessage",
    username: str = "rocket.cat",
    created_by: str = "admin",
    enabled: bool = True,
    trigger_words: Iterable[str] = (),
    trigger_word_anywhere: bool = False,
    token: str | None = None,
    target_room: str | None = None,
    alias: str | None = None,
    avatar: str | None = None,
    emoji: str | None = None,
    impersonate_user: bool = False,
    retry_failed_calls: bool = False,
    retry_count: int | None = None,
    retry_delay: str | None = None,
    run_on_edits: bool = False,
    script: str | None = None,
    script_enabled: bool = False,
    integration_id: str | None = None,
) -> dict[str, Any]:
    """An outgoing webhook as `integrations.create` stores it (contract §2.1): the token only if
    given, trigger words only when given, retry settings defaulted only when retries are on."""
    poster, creator = _must_user(store, username), _must_user(store, created_by)
    now = store.clock()
    doc: dict[str, Any] = {
        "_id": integration_id or object_id(),
        "type": "webhook-outgoing",
        "name": name,
        "enabled": enabled,
        "event": event,
        "username": poster.username,
        "userId": poster._id,
        "channel": _channels(channel),
        "urls": list(urls),
        "triggerWordAnywhere": trigger_word_anywhere,
        "impersonateUser": impersonate_user,
        "retryFailedCalls": retry_failed_calls,
        "runOnEdits": run_on_edits,
        "scriptEnabled": script_enabled,
        "script": script or "",
        "scriptEngine": "isolated-vm",
        "_createdAt": now,
        "_createdBy": creator.brief(),
        "_updatedAt": now,
    }
    words = [w for w in trigger_words if w]
    if words:
        doc["triggerWords"] = words
    if retry_failed_calls:
        doc["retryCount"] = retry_count if retry_count and retry_count > 0 else 4
        doc["retryDelay"] = (retry_delay or "powers-of-ten").lower()
    _set_optional(doc, token=token, targetRoom=target_room, alias=alias, avatar=avatar, emoji=emoji)
    if script_enabled and script:
        doc["scriptCompiled"] = script
    return doc


def _rest(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document in its REST JSON form."""
    rendered: dict[str, Any] = to_rest(document)
    return rendered


def _set_optional(doc: dict[str, Any], **values: str | None) -> None:
    for key, value in values.items():
        if value is not None:
            doc[key] = value


def _must_user(store: Store, user: str) -> User:
    found = store.find_user(user)
    if found is None:
        raise NotFound(f"no user {user!r}")
    return found


def _from_rest_dates(document: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    for key in ("_createdAt", "_updatedAt"):
        value = doc.get(key)
        if isinstance(value, str | dict):
            parsed = parse_date(value)
            if parsed is not None:
                doc[key] = parsed
    return doc


# --- message log for waiting -----------------------------------------------------------------------


class _MessageLog:
    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.version = 0
        self._latest: dict[str, tuple[int, str, dict[str, Any]]] = {}  # message id -> (version, rid, msg)
        # Per room, (version, message id) of every change in order: a wait looks only at the tail.
        self._changes: dict[str, list[tuple[int, str]]] = {}

    def on_event(self, event: Event) -> None:
        # Called under the store lock; takes only the condition's lock (never the other way round).
        if isinstance(event, MessageEvent):
            with self.condition:
                self.version += 1
                self._latest[event.message["_id"]] = (self.version, event.message["rid"], event.message)
                self._changes.setdefault(event.message["rid"], []).append((self.version, event.message["_id"]))
                self.condition.notify_all()
        elif isinstance(event, DeleteMessageEvent):
            with self.condition:
                self._latest.pop(event.message_id, None)

    def current(self) -> int:
        with self.condition:
            return self.version

    def wait_changed(self, room_id: str, after: int, timeout: float) -> tuple[list[dict[str, Any]], int]:
        """Messages of a room changed after version `after` (newest copies), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                changes = self._changes.get(room_id, [])
                tail = changes[bisect.bisect_right(changes, after, key=lambda change: change[0]) :]
                latest = (self._latest.get(message_id) for _version, message_id in tail)
                newest = {entry[2]["_id"]: entry for entry in latest if entry is not None and entry[0] > after}
                found = sorted(newest.values(), key=lambda entry: entry[0])
                if found:
                    return [_rest(msg) for _v, _rid, msg in found], self.version
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], self.version
                self.condition.wait(remaining)


# --- in-process control ---------------------------------------------------------------------------


class SandboxControl:
    def __init__(
        self,
        store: Store,
        *,
        faults: Faults | None = None,
        config: SandboxConfig | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.store = store
        self.faults = faults or Faults()
        self.config = config or SandboxConfig()
        self._connections = connections
        self._log = _MessageLog()
        store.add_listener(self._log.on_event)

    def close(self) -> None:
        self.store.remove_listener(self._log.on_event)

    # --- lookups -----------------------------------------------------------------------------

    def _user(self, user: str) -> User:
        return _must_user(self.store, user)

    def _room_id(self, room: str) -> str:
        found = self.store.find_room(room.removeprefix("#"))
        if found is None:
            raise NotFound(f"no room {room!r}")
        return str(found["_id"])

    # --- users, roles, permissions --------------------------------------------------------------

    def create_user(
        self,
        username: str,
        *,
        password: str | None = None,
        roles: Iterable[str] = ("user",),
        name: str | None = None,
        email: str | None = None,
        user_type: str = "user",
        personal_access_token: bool = False,
    ) -> UserCredentials:
        """A user who can log in with `password` (random if not given) or the returned token
        (a resume login token, or a personal access token when asked for)."""
        secret = password if password is not None else secrets.token_urlsafe(12)
        with self.store.lock:
            role_list = list(roles)
            for role in role_list:
                if role not in self.store.roles:
                    self.store.create_role(role)
            user = self.store.create_user(
                username, password=secret, roles=role_list, name=name, email=email, user_type=user_type
            )
            if personal_access_token:
                token = self.store.create_login_token(user._id, kind="personalAccessToken", name="sandbox")
            else:
                token = self.store.create_login_token(user._id)
            return UserCredentials(user._id, user.username, token, secret, tuple(role_list))

    def login_token(self, user: str) -> str:
        return self.store.create_login_token(self._user(user)._id)

    def personal_access_token(self, user: str, name: str = "sandbox") -> str:
        return self.store.create_login_token(self._user(user)._id, kind="personalAccessToken", name=name)

    def user(self, user: str) -> dict[str, Any]:
        with self.store.lock:
            found = self._user(user)
            return {
                "_id": found._id,
                "username": found.username,
                "name": found.name,
                "roles": list(found.roles),
                "type": found.type,
                "active": found.active,
            }

    def set_user_roles(self, user: str, roles: Iterable[str]) -> list[str]:
        """Replace a user's global roles; emits `roles-change` like the real server."""
        return self.store.set_user_roles(self._user(user)._id, roles)

    def rename_user(self, user: str, username: str) -> None:
        """Change a user's username, as an admin (or the user, where allowed) does; the account keeps its id."""
        self.store.rename_user(self._user(user)._id, username)

    def set_user_active(self, user: str, active: bool) -> None:
        """Deactivate (or reactivate) an account; a deactivated one is logged out everywhere."""
        self.store.set_user_active(self._user(user)._id, active)

    def create_role(self, role: str, *, permissions: Iterable[str] = (), description: str = "") -> dict[str, Any]:
        """A custom role holding `permissions` (each change emits `permissions-changed`)."""
        with self.store.lock:
            doc = self.store.roles.get(role)
            created = self.store.create_role(role, description=description) if doc is None else copy.deepcopy(doc)
            for permission in permissions:
                current = self.store.permissions.get(permission, {}).get("roles", [])
                if role not in current:
                    self.store.set_permission_roles(permission, [*current, role])
            return _rest(created)

    def set_role_permissions(self, role: str, permissions: Iterable[str]) -> list[str]:
        """Make `role` hold exactly `permissions`; returns them sorted."""
        wanted = set(permissions)
        with self.store.lock:
            if role not in self.store.roles:
                self.store.create_role(role)
            for permission in sorted(set(self.store.permissions) | wanted):
                current = list(self.store.permissions.get(permission, {}).get("roles", []))
                if permission in wanted and role not in current:
                    self.store.set_permission_roles(permission, [*current, role])
                elif permission not in wanted and role in current:
                    self.store.set_permission_roles(permission, [r for r in current if r != role])
        return sorted(wanted)

    def set_permission_roles(self, permission: str, roles: Iterable[str]) -> dict[str, Any]:
        return _rest(self.store.set_permission_roles(permission, roles))

    def permission_roles(self, permission: str) -> list[str]:
        with self.store.lock:
            doc = self.store.permissions.get(permission)
            if doc is None:
                raise NotFound(f"no permission {permission!r}")
            return list(doc["roles"])

    # --- rooms ------------------------------------------------------------------------------------

    def create_room(
        self,
        name: str,
        *,
        room_type: str = "c",
        members: Iterable[str] = (),
        owner: str | None = None,
        read_only: bool = False,
        room_id: str | None = None,
    ) -> dict[str, Any]:
        if room_type not in ("c", "p"):
            raise ValueError("room_type must be 'c' or 'p' (use create_direct for DMs)")
        room = self.store.create_room(
            name,
            "c" if room_type == "c" else "p",
            members=list(members),
            owner=owner,
            room_id=room_id,
            read_only=read_only,
        )
        return _rest(room)

    def create_direct(self, user_a: str, user_b: str, others: Iterable[str] = ()) -> dict[str, Any]:
        """The DM of these users (ids or usernames); with `others`, a group DM of all of them."""
        return _rest(self.store.create_direct(user_a, user_b, *others))

    def add_member(self, room: str, user: str, *, added_by: str | None = None) -> dict[str, Any]:
        return _rest(self.store.add_member(self._room_id(room), user, added_by=added_by))

    def remove_member(self, room: str, user: str) -> None:
        self.store.remove_member(self._room_id(room), user)

    def room(self, room: str) -> dict[str, Any]:
        with self.store.lock:
            return _rest(self.store.rooms[self._room_id(room)])

    def room_id(self, room: str) -> str:
        return self._room_id(room)

    # --- messages ---------------------------------------------------------------------------------

    def post_message(
        self,
        user: str,
        room: str,
        text: str = "",
        *,
        tmid: str | None = None,
        tshow: bool = False,
        message_id: str | None = None,
        alias: str | None = None,
        emoji: str | None = None,
        avatar: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        check_access: bool = True,
    ) -> dict[str, Any]:
        """Post as `user`, with the server's send rules (`tmid` for a thread reply, `tshow` to
        also show it in the room)."""
        message = self.store.send_message(
            self._user(user)._id,
            self._room_id(room),
            text,
            tmid=tmid,
            tshow=tshow,
            message_id=message_id,
            alias=alias,
            emoji=emoji,
            avatar=avatar,
            attachments=attachments,
            check_access=check_access,
        )
        return _rest(message)

    def edit_message(self, message_id: str, text: str, *, editor: str | None = None) -> dict[str, Any]:
        return _rest(self.store.edit_message(message_id, text, editor=editor))

    def react(self, message_id: str, emoji: str, user: str) -> dict[str, Any]:
        return _rest(self.store.react(message_id, emoji, user))

    def delete_message(self, message_id: str) -> None:
        self.store.delete_message(message_id)

    def post_webhook_message(self, integration_id: str, text: str, *, room: str | None = None) -> dict[str, Any]:
        """A message as the incoming webhook posts it (`bot: {i: <id>}`, its alias/emoji/avatar)."""
        room_id = self._room_id(room) if room is not None else None
        return _rest(self.store.post_webhook_message(integration_id, text, room_id=room_id))

    def post_system_message(self, room: str, kind: str, text: str, user: str) -> dict[str, Any]:
        return _rest(self.store.post_system_message(self._room_id(room), kind, text, user))

    def messages(self, room: str) -> list[dict[str, Any]]:
        return [_rest(m) for m in self.store.room_messages(self._room_id(room))]

    def message(self, message_id: str) -> dict[str, Any]:
        found = self.store.get_message(message_id)
        if found is None:
            raise NotFound(f"no message {message_id!r}")
        return _rest(found)

    def wait_for_message(self, room: str, predicate: MessagePredicate, timeout: float = 5.0) -> dict[str, Any]:
        """The first message of `room` (already there, or inserted/updated later) that satisfies
        `predicate`; raises TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        messages, cursor = self.wait_messages(room, None)
        while True:
            for message in messages:
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message in {room!r} within {timeout} s")
            messages, cursor = self.wait_messages(room, cursor, remaining)

    def wait_messages(self, room: str, cursor: int | None, timeout: float = 0.0) -> tuple[list[dict[str, Any]], int]:
        """Long-poll primitive: with no cursor, all messages of the room now; else the messages
        changed after `cursor`, waiting up to `timeout` for one. Returns them and the new cursor."""
        room_id = self._room_id(room)
        if cursor is None:
            start = self._log.current()  # before reading, so nothing falls between the two
            return [_rest(m) for m in self.store.room_messages(room_id)], start
        return self._log.wait_changed(room_id, cursor, timeout)

    # --- integrations --------------------------------------------------------------------------

    def create_incoming_integration(
        self,
        name: str,
        *,
        channel: str | list[str],
        username: str = "rocket.cat",
        created_by: str = "admin",
        enabled: bool = True,
        alias: str | None = None,
        avatar: str | None = None,
        emoji: str | None = None,
        script: str | None = None,
        script_enabled: bool = False,
        override_destination_channel_enabled: bool = False,
        integration_id: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        doc = incoming_integration_document(
            self.store,
            name,
            channel=channel,
            username=username,
            created_by=created_by,
            enabled=enabled,
            alias=alias,
            avatar=avatar,
            emoji=emoji,
            script=script,
            script_enabled=script_enabled,
            override_destination_channel_enabled=override_destination_channel_enabled,
            integration_id=integration_id,
            token=token,
        )
        return _rest(self.store.insert_integration(doc))

    def create_outgoing_integration(
        self,
        name: str,
        *,
        channel: str | list[str],
        urls: list[str],
        event: str = "sendMessage",
        username: str = "rocket.cat",
        created_by: str = "admin",
        enabled: bool = True,
        trigger_words: list[str] | tuple[str, ...] = (),
        trigger_word_anywhere: bool = False,
        token: str | None = None,
        target_room: str | None = None,
        alias: str | None = None,
        avatar: str | None = None,
        emoji: str | None = None,
        impersonate_user: bool = False,
        retry_failed_calls: bool = False,
        retry_count: int | None = None,
        retry_delay: str | None = None,
        run_on_edits: bool = False,
        script: str | None = None,
        script_enabled: bool = False,
        integration_id: str | None = None,
    ) -> dict[str, Any]:
        doc = outgoing_integration_document(
            self.store,
            name,
            channel=channel,
            urls=urls,
            event=event,
            username=username,
            created_by=created_by,
            enabled=enabled,
            trigger_words=trigger_words,
            trigger_word_anywhere=trigger_word_anywhere,
            token=token,
            target_room=target_room,
            alias=alias,
            avatar=avatar,
            emoji=emoji,
            impersonate_user=impersonate_user,
            retry_failed_calls=retry_failed_calls,
            retry_count=retry_count,
            retry_delay=retry_delay,
            run_on_edits=run_on_edits,
            script=script,
            script_enabled=script_enabled,
            integration_id=integration_id,
        )
        return _rest(self.store.insert_integration(doc))

    def insert_integration(self, document: dict[str, Any]) -> dict[str, Any]:
        """Store a document exactly as given (ISO or EJSON `_createdAt`/`_updatedAt` become dates)."""
        return _rest(self.store.insert_integration(_from_rest_dates(document)))

    def update_integration(
        self, integration_id: str, set_fields: dict[str, Any], unset_fields: Iterable[str] = ()
    ) -> dict[str, Any]:
        """A raw `$set`/`$unset` on a stored document (to arrange odd states, e.g. nulls)."""
        if self.store.get_integration(integration_id) is None:
            raise NotFound(f"no integration {integration_id!r}")
        return _rest(self.store.update_integration(integration_id, set_fields, unset_fields))

    def integration(self, integration_id: str) -> dict[str, Any]:
        found = self.store.get_integration(integration_id)
        if found is None:
            raise NotFound(f"no integration {integration_id!r}")
        return _rest(found)

    def integrations(self) -> list[dict[str, Any]]:
        return [_rest(d) for d in self.store.list_integrations()]

    def delete_integration(self, integration_id: str) -> None:
        if self.store.delete_integration(integration_id) is None:
            raise NotFound(f"no integration {integration_id!r}")

    # --- outgoing webhook call history (sandbox/integration_history.py) -----------------------

    def record_outgoing_call(
        self,
        integration_id: str,
        *,
        status: int | None = None,
        body: str = "",
        error_code: str | None = None,
        at: str | None = None,
        url: str | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """Record that the outgoing webhook called its URL: answered `status` with `body`, or
        got no answer (`status` None; `error_code` e.g. ECONNREFUSED). `at` (ISO) is when the
        call finished (default now); `message_id` the message that triggered it (its payload
        then carries that message, room and trigger word). Returns the stored entry."""
        if self.store.get_integration(integration_id) is None:
            raise NotFound(f"no integration {integration_id!r}")
        if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
            raise ValueError("status must be an HTTP status code or null")
        when = parse_date(at) if at is not None else None
        if at is not None and when is None:
            raise ValueError(f"not a date: {at!r}")
        data = None
        if message_id is not None:
            message = self.store.get_message(message_id)
            if message is None:
                raise NotFound(f"no message {message_id!r}")
            room = self.store.find_room(str(message["rid"])) or {"_id": message["rid"]}
            integration = self.store.get_integration(integration_id) or {}
            data = call_data(integration, message=message, room=room, site_url=str(self.store.get_setting("Site_Url")))
        outcome = CallOutcome(status=status, body=body, error_code=error_code)
        return _rest(record_outgoing_call(self.store, integration_id, outcome, at=when, url=url, data=data))

    def insert_integration_history(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Store a history document exactly as given (ISO `_createdAt`/`_updatedAt` become
        dates): for shapes older servers wrote."""
        return _rest(self.store.insert_integration_history(_from_rest_dates(entry)))

    def integration_history(self, integration_id: str) -> list[dict[str, Any]]:
        """Every stored history entry of the integration, oldest first."""
        return [_rest(e) for e in self.store.find_integration_history(integration_id)]

    def clear_integration_history(self, integration_id: str) -> int:
        return self.store.clear_integration_history(integration_id)

    # --- settings and behaviour switches -------------------------------------------------------

    def set_setting(self, setting: str, value: Any) -> None:
        self.store.set_setting(setting, value)

    def setting(self, setting: str) -> Any:
        return self.store.get_setting(setting)

    def configure(
        self,
        *,
        update_mode: str | None = None,
        omitted_as_null: bool | None = None,
        rate_limit: bool | None = None,
    ) -> dict[str, Any]:
        """Switch which Rocket.Chat the running sandbox imitates; returns the new settings."""
        if update_mode is not None:
            if update_mode not in ("8.x", "legacy"):
                raise ValueError("update_mode must be '8.x' or 'legacy'")
            self.config.update_mode = "8.x" if update_mode == "8.x" else "legacy"
        if omitted_as_null is not None:
            self.config.omitted_as_null = omitted_as_null
        if rate_limit is not None:
            self.config.rate_limit = rate_limit
        return {
            "update_mode": self.config.update_mode,
            "omitted_as_null": self.config.omitted_as_null,
            "rate_limit": self.config.rate_limit,
        }

    # --- faults and counters --------------------------------------------------------------------

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
        """Fail the next `times` calls of a REST endpoint (`integrations.update`) or DDP method
        (`ddp:login`) with `"500"`, `"429"` or `"timeout"` (see sandbox.faults); with `concerning`,
        only the REST calls whose query string or body contains that text (an integration's id)."""
        self.faults.fail_next(endpoint, times, mode, retry_after=retry_after, hang=hang, concerning=concerning)

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        self.faults.set_latency(seconds, endpoint)

    def refuse_connections(self, seconds: float) -> None:
        self.faults.refuse_connections(seconds)

    def clear_faults(self) -> None:
        self.faults.clear()

    def drop_connections(self) -> int:
        """Drop every open websocket abruptly; returns how many were dropped."""
        return self._connections.drop_connections() if self._connections is not None else 0

    def counters(self) -> Counters:
        return self.faults.counters()

    def reset_counters(self) -> None:
        self.faults.reset_counters()

    def record_requests(self, endpoints: Iterable[str]) -> None:
        """Keep the JSON bodies of requests to these REST endpoints (off by default, see sandbox.faults)."""
        self.faults.record_requests(endpoints)

    def recorded_requests(self, endpoint: str) -> list[Any]:
        """The bodies received for `endpoint` since `record_requests`, oldest first."""
        return self.faults.recorded_requests(endpoint)


# --- the same operations over HTTP ---------------------------------------------------------------

# Operations reachable over `/_sandbox/<name>`, with keyword arguments in the JSON body.
HTTP_OPERATIONS: Final[frozenset[str]] = frozenset(
    {
        "create_user",
        "login_token",
        "personal_access_token",
        "user",
        "set_user_roles",
        "set_user_active",
        "rename_user",
        "create_role",
        "set_role_permissions",
        "set_permission_roles",
        "permission_roles",
        "create_room",
        "create_direct",
        "add_member",
        "remove_member",
        "room",
        "room_id",
        "post_message",
        "edit_message",
        "react",
        "delete_message",
        "post_webhook_message",
        "post_system_message",
        "messages",
        "message",
        "wait_messages",
        "create_incoming_integration",
        "create_outgoing_integration",
        "insert_integration",
        "update_integration",
        "integration",
        "integrations",
        "delete_integration",
        "record_outgoing_call",
        "insert_integration_history",
        "integration_history",
        "clear_integration_history",
        "set_setting",
        "setting",
        "configure",
        "fail_next",
        "set_latency",
        "refuse_connections",
        "clear_faults",
        "drop_connections",
        "counters",
        "reset_counters",
        "record_requests",
        "recorded_requests",
    }
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, UserCredentials | Counters):
        return value.to_json()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return to_rest(value)
    return value


def _error(status: int, message: str, kind: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "kind": kind, **extra}, status_code=status)


def control_routes(control: SandboxControl, secret: str) -> list[BaseRoute]:
    """`POST /<operation>` with the control secret in `X-Sandbox-Secret` (mount under `/_sandbox`)."""

    async def operation(request: Request) -> JSONResponse:
        if not secrets.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
            return _error(401, "bad or missing control secret", "unauthorized")
        name = str(request.path_params["operation"])
        if name not in HTTP_OPERATIONS:
            return _error(404, f"no control operation {name!r}", "unknown-operation")
        raw = await request.body()
        try:
            arguments = json.loads(raw) if raw else {}
        except ValueError:
            return _error(400, "body is not JSON", "bad-request")
        if not isinstance(arguments, dict):
            return _error(400, "body must be a JSON object of keyword arguments", "bad-request")
        method = getattr(control, name)
        try:
            result = await run_in_threadpool(method, **arguments)
        except MeteorError as exc:
            return _error(400, exc.message, "meteor", errorType=exc.error, reason=exc.reason, details=exc.details)
        except NotFound as exc:
            return _error(404, str(exc), "not-found")
        except TimeoutError as exc:
            return _error(408, str(exc), "timeout")
        except (TypeError, ValueError, KeyError) as exc:
            return _error(400, f"{type(exc).__name__}: {exc}", "bad-request")
        return JSONResponse({"result": _jsonable(result)})

    return [Route("/{operation}", operation, methods=["POST"])]


class SandboxClient:
    """`SandboxControl`'s methods for a sandbox running in another process (same names, same
    values; `wait_for_message` evaluates the predicate here, long-polling the server)."""

    def __init__(self, url: str, secret: str, *, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={SECRET_HEADER: secret}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, operation: str, *, http_timeout: float | None = None, **arguments: Any) -> Any:
        body = {k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()}
        response = self._http.post(
            f"/_sandbox/{operation}",
            json=body,
            timeout=http_timeout if http_timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        data = response.json()
        if response.status_code == 200:
            return data["result"]
        kind = data.get("kind")
        if kind == "meteor":
            raise MeteorError(data["errorType"], data.get("reason"), data.get("details"))
        if kind == "not-found":
            raise NotFound(data["error"])
        if kind == "timeout":
            raise TimeoutError(data["error"])
        raise ControlError(f"{response.status_code} {data.get('error')}")

    # users, roles, permissions
    def create_user(
        self,
        username: str,
        *,
        password: str | None = None,
        roles: Iterable[str] = ("user",),
        name: str | None = None,
        email: str | None = None,
        user_type: str = "user",
        personal_access_token: bool = False,
    ) -> UserCredentials:
        data = self._call(
            "create_user",
            username=username,
            password=password,
            roles=list(roles),
            name=name,
            email=email,
            user_type=user_type,
            personal_access_token=personal_access_token,
        )
        return UserCredentials.from_json(data)

    def login_token(self, user: str) -> str:
        return str(self._call("login_token", user=user))

    def personal_access_token(self, user: str, name: str = "sandbox") -> str:
        return str(self._call("personal_access_token", user=user, name=name))

    def user(self, user: str) -> dict[str, Any]:
        return dict(self._call("user", user=user))

    def set_user_roles(self, user: str, roles: Iterable[str]) -> list[str]:
        return list(self._call("set_user_roles", user=user, roles=list(roles)))

    def rename_user(self, user: str, username: str) -> None:
        self._call("rename_user", user=user, username=username)

    def set_user_active(self, user: str, active: bool) -> None:
        self._call("set_user_active", user=user, active=active)

    def create_role(self, role: str, *, permissions: Iterable[str] = (), description: str = "") -> dict[str, Any]:
        return dict(self._call("create_role", role=role, permissions=list(permissions), description=description))

    def set_role_permissions(self, role: str, permissions: Iterable[str]) -> list[str]:
        return list(self._call("set_role_permissions", role=role, permissions=list(permissions)))

    def set_permission_roles(self, permission: str, roles: Iterable[str]) -> dict[str, Any]:
        return dict(self._call("set_permission_roles", permission=permission, roles=list(roles)))

    def permission_roles(self, permission: str) -> list[str]:
        return list(self._call("permission_roles", permission=permission))

    # rooms
    def create_room(
        self,
        name: str,
        *,
        room_type: str = "c",
        members: Iterable[str] = (),
        owner: str | None = None,
        read_only: bool = False,
        room_id: str | None = None,
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "create_room",
                name=name,
                room_type=room_type,
                members=list(members),
                owner=owner,
                read_only=read_only,
                room_id=room_id,
            )
        )

    def create_direct(self, user_a: str, user_b: str, others: Iterable[str] = ()) -> dict[str, Any]:
        return dict(self._call("create_direct", user_a=user_a, user_b=user_b, others=list(others)))

    def add_member(self, room: str, user: str, *, added_by: str | None = None) -> dict[str, Any]:
        return dict(self._call("add_member", room=room, user=user, added_by=added_by))

    def remove_member(self, room: str, user: str) -> None:
        self._call("remove_member", room=room, user=user)

    def room(self, room: str) -> dict[str, Any]:
        return dict(self._call("room", room=room))

    def room_id(self, room: str) -> str:
        return str(self._call("room_id", room=room))

    # messages
    def post_message(
        self,
        user: str,
        room: str,
        text: str = "",
        *,
        tmid: str | None = None,
        tshow: bool = False,
        message_id: str | None = None,
        alias: str | None = None,
        emoji: str | None = None,
        avatar: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        check_access: bool = True,
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "post_message",
                user=user,
                room=room,
                text=text,
                tmid=tmid,
                tshow=tshow,
                message_id=message_id,
                alias=alias,
                emoji=emoji,
                avatar=avatar,
                attachments=attachments,
                check_access=check_access,
            )
        )

    def edit_message(self, message_id: str, text: str, *, editor: str | None = None) -> dict[str, Any]:
        return dict(self._call("edit_message", message_id=message_id, text=text, editor=editor))

    def react(self, message_id: str, emoji: str, user: str) -> dict[str, Any]:
        return dict(self._call("react", message_id=message_id, emoji=emoji, user=user))

    def delete_message(self, message_id: str) -> None:
        self._call("delete_message", message_id=message_id)

    def post_webhook_message(self, integration_id: str, text: str, *, room: str | None = None) -> dict[str, Any]:
        return dict(self._call("post_webhook_message", integration_id=integration_id, text=text, room=room))

    def post_system_message(self, room: str, kind: str, text: str, user: str) -> dict[str, Any]:
        return dict(self._call("post_system_message", room=room, kind=kind, text=text, user=user))

    def messages(self, room: str) -> list[dict[str, Any]]:
        return list(self._call("messages", room=room))

    def message(self, message_id: str) -> dict[str, Any]:
        return dict(self._call("message", message_id=message_id))

    def wait_messages(self, room: str, cursor: int | None, timeout: float = 0.0) -> tuple[list[dict[str, Any]], int]:
        poll = min(max(0.0, timeout), _LONG_POLL)
        messages, new_cursor = self._call(
            "wait_messages", http_timeout=poll + 10.0, room=room, cursor=cursor, timeout=poll
        )
        return list(messages), int(new_cursor)

    def wait_for_message(self, room: str, predicate: MessagePredicate, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        messages, cursor = self.wait_messages(room, None)
        while True:
            for message in messages:
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message in {room!r} within {timeout} s")
            messages, cursor = self.wait_messages(room, cursor, remaining)

    # integrations
    def create_incoming_integration(
        self,
        name: str,
        *,
        channel: str | list[str],
        username: str = "rocket.cat",
        created_by: str = "admin",
        enabled: bool = True,
        alias: str | None = None,
        avatar: str | None = None,
        emoji: str | None = None,
        script: str | None = None,
        script_enabled: bool = False,
        override_destination_channel_enabled: bool = False,
        integration_id: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "create_incoming_integration",
                name=name,
                channel=channel,
                username=username,
                created_by=created_by,
                enabled=enabled,
                alias=alias,
                avatar=avatar,
                emoji=emoji,
                script=script,
                script_enabled=script_enabled,
                override_destination_channel_enabled=override_destination_channel_enabled,
                integration_id=integration_id,
                token=token,
            )
        )

    def create_outgoing_integration(
        self,
        name: str,
        *,
        channel: str | list[str],
        urls: list[str],
        event: str = "sendMessage",
        username: str = "rocket.cat",
        created_by: str = "admin",
        enabled: bool = True,
        trigger_words: list[str] | tuple[str, ...] = (),
        trigger_word_anywhere: bool = False,
        token: str | None = None,
        target_room: str | None = None,
        alias: str | None = None,
        avatar: str | None = None,
        emoji: str | None = None,
        impersonate_user: bool = False,
        retry_failed_calls: bool = False,
        retry_count: int | None = None,
        retry_delay: str | None = None,
        run_on_edits: bool = False,
        script: str | None = None,
        script_enabled: bool = False,
        integration_id: str | None = None,
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "create_outgoing_integration",
                name=name,
                channel=channel,
                urls=urls,
                event=event,
                username=username,
                created_by=created_by,
                enabled=enabled,
                trigger_words=list(trigger_words),
                trigger_word_anywhere=trigger_word_anywhere,
                token=token,
                target_room=target_room,
                alias=alias,
                avatar=avatar,
                emoji=emoji,
                impersonate_user=impersonate_user,
                retry_failed_calls=retry_failed_calls,
                retry_count=retry_count,
                retry_delay=retry_delay,
                run_on_edits=run_on_edits,
                script=script,
                script_enabled=script_enabled,
                integration_id=integration_id,
            )
        )

    def insert_integration(self, document: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("insert_integration", document=document))

    def update_integration(
        self, integration_id: str, set_fields: dict[str, Any], unset_fields: Iterable[str] = ()
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "update_integration",
                integration_id=integration_id,
                set_fields=set_fields,
                unset_fields=list(unset_fields),
            )
        )

    def integration(self, integration_id: str) -> dict[str, Any]:
        return dict(self._call("integration", integration_id=integration_id))

    def integrations(self) -> list[dict[str, Any]]:
        return list(self._call("integrations"))

    def delete_integration(self, integration_id: str) -> None:
        self._call("delete_integration", integration_id=integration_id)

    # outgoing webhook call history
    def record_outgoing_call(
        self,
        integration_id: str,
        *,
        status: int | None = None,
        body: str = "",
        error_code: str | None = None,
        at: str | None = None,
        url: str | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "record_outgoing_call",
                integration_id=integration_id,
                status=status,
                body=body,
                error_code=error_code,
                at=at,
                url=url,
                message_id=message_id,
            )
        )

    def insert_integration_history(self, entry: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("insert_integration_history", entry=entry))

    def integration_history(self, integration_id: str) -> list[dict[str, Any]]:
        return list(self._call("integration_history", integration_id=integration_id))

    def clear_integration_history(self, integration_id: str) -> int:
        return int(self._call("clear_integration_history", integration_id=integration_id))

    # settings and switches
    def set_setting(self, setting: str, value: Any) -> None:
        self._call("set_setting", setting=setting, value=value)

    def setting(self, setting: str) -> Any:
        return self._call("setting", setting=setting)

    def configure(
        self, *, update_mode: str | None = None, omitted_as_null: bool | None = None, rate_limit: bool | None = None
    ) -> dict[str, Any]:
        return dict(
            self._call("configure", update_mode=update_mode, omitted_as_null=omitted_as_null, rate_limit=rate_limit)
        )

    # faults and counters
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
        self._call(
            "fail_next",
            endpoint=endpoint,
            times=times,
            mode=mode,
            retry_after=retry_after,
            hang=hang,
            concerning=concerning,
        )

    def set_latency(self, seconds: float, endpoint: str | None = None) -> None:
        self._call("set_latency", seconds=seconds, endpoint=endpoint)

    def refuse_connections(self, seconds: float) -> None:
        self._call("refuse_connections", seconds=seconds)

    def clear_faults(self) -> None:
        self._call("clear_faults")

    def drop_connections(self) -> int:
        return int(self._call("drop_connections"))

    def counters(self) -> Counters:
        return Counters.from_json(self._call("counters"))

    def reset_counters(self) -> None:
        self._call("reset_counters")

    def record_requests(self, endpoints: Iterable[str]) -> None:
        self._call("record_requests", endpoints=list(endpoints))

    def recorded_requests(self, endpoint: str) -> list[Any]:
        return list(self._call("recorded_requests", endpoint=endpoint))
