"""The sandbox's data: users, login tokens, roles, permissions, rooms, subscriptions, messages,
integration documents and public settings, plus an event hub the realtime layer listens to.

Theory of operation
-------------------
One `Store` is shared by the REST app, the DDP server and the in-process control API. Tests call
the control API from their own thread while the server runs its own event loop in another, so
every public method takes one re-entrant lock; nothing here is async. Each mutation that a real
Rocket.Chat would announce on a realtime stream emits a small frozen event object to every
registered listener, synchronously and under the lock (so listeners see events in commit order).
Listeners must be cheap and thread-safe: the DDP server only hands them to its own loop with
`call_soon_threadsafe`.

Stored values keep `datetime` objects; `ids.to_rest` / `ids.to_ejson` render them for each wire.
Everything returned to callers is a deep copy (`copied`), so no caller can mutate stored state by
accident.

What lives here is the *data model* and the rules that are the same whatever the entry point
(mention extraction, membership, permission evaluation per contract §3.2, the send-message rules
of §4.7). Endpoint semantics (integrations.update's field handling, REST envelopes, DDP framing)
live in the modules that implement those endpoints.
"""

from __future__ import annotations

import bisect
import copy
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, cast

from sandbox.errors import MeteorError
from sandbox.ids import hash_login_token, login_token, meteor_id, object_id, password_digest, utcnow
from sandbox.permissions import DEFAULT_PERMISSIONS, DEFAULT_ROLES

RoomType = Literal["c", "p", "d"]

_T = TypeVar("_T")
_SHARED: frozenset[type] = frozenset({str, int, float, bool, type(None), datetime})


def copied(value: _T) -> _T:
    """A deep copy of a stored value, made for what the store holds (dicts, lists, strings,
    numbers, datetimes; anything else goes to `copy.deepcopy`). It is 4-5 times faster than
    `copy.deepcopy`, which every post paid several times (the stored message, its room, the
    events that carry them): ~0.1 ms per message before a subscriber heard of it."""
    return cast(_T, _copy(value))


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    if kind in _SHARED:
        return value
    return copy.deepcopy(value)


Clock = Callable[[], datetime]

# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageEvent:
    """A message document was inserted or updated (edit, reaction, thread counters...)."""

    message: dict[str, Any]
    room: dict[str, Any]
    inserted: bool


@dataclass(frozen=True)
class SubscriptionEvent:
    """`stream-notify-user` `<uid>/subscriptions-changed`."""

    user_id: str
    action: Literal["inserted", "updated", "removed"]
    subscription: dict[str, Any]


@dataclass(frozen=True)
class RoomEvent:
    """`stream-notify-user` `<uid>/rooms-changed` for one user (joined, left)."""

    user_id: str
    action: Literal["inserted", "updated", "removed"]
    room: dict[str, Any]


@dataclass(frozen=True)
class RoomChangedEvent:
    """`<uid>/rooms-changed` `updated` for every member of the room (a new last message).

    Rocket.Chat emits a room's change once, keyed by the room id, and each user's
    `rooms-changed` publication listens on the ids of the rooms that user is subscribed to
    (RoomStreamer in its notifications module): one event per room, matched per connection,
    not one per member."""

    room: dict[str, Any]


@dataclass(frozen=True)
class PermissionEvent:
    """`stream-notify-logged` `permissions-changed`: args `[action, permission]`."""

    action: Literal["inserted", "updated", "removed", "changed"]
    permission: dict[str, Any]


@dataclass(frozen=True)
class RoleChangeEvent:
    """`stream-notify-logged` `roles-change`: args `[{type, _id, u, scope?}]`."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class DeleteMessageEvent:
    """`stream-notify-room` `<rid>/deleteMessage`: args `[{_id}]`."""

    room_id: str
    message_id: str


Event = (
    MessageEvent
    | SubscriptionEvent
    | RoomEvent
    | RoomChangedEvent
    | PermissionEvent
    | RoleChangeEvent
    | DeleteMessageEvent
)
Listener = Callable[[Event], None]

# --- records --------------------------------------------------------------------------------------


@dataclass
class User:
    _id: str
    username: str
    name: str
    roles: list[str]
    password_digest: str | None
    emails: list[dict[str, Any]]
    created_at: datetime
    type: str = "user"
    active: bool = True
    status: str = "online"
    # hashed token -> {"when": datetime, "type": "resume"|"personalAccessToken", "name"?: str}
    login_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated_at: datetime | None = None

    def brief(self) -> dict[str, Any]:
        return {"_id": self._id, "username": self.username}


# Rocket.Chat's default `UTF8_User_Names_Validation` / channel name class (contract §5.4).
NAME_CLASS = r"[0-9a-zA-Z\-_.]+"
_USER_MENTION = re.compile(rf"(?:^|(?<=[\s>]))@({NAME_CLASS}(?:@{NAME_CLASS})?)(?::{NAME_CLASS})?", re.M)
_CHANNEL_MENTION = re.compile(rf"(?:^|(?<=[\s>]))#({NAME_CLASS})", re.M)


class IntegrationNameIndex:
    """Which integration names contain a text, case-insensitively, without a scan per document.

    The reference semantics is a regex search of the escaped text with IGNORECASE (Rocket.Chat's
    `$regex` with the `i` option). For ASCII names and an ASCII text that is exactly a substring
    test on lower-cased strings, done here with one `str.find` over all such names joined by NUL
    (C speed). Names that are not plain ASCII, or contain NUL, and texts that are not ASCII go
    through the regex itself. Rebuilt lazily after a name changes (`changed()`).
    """

    def __init__(self) -> None:
        self._stale = True
        self._blob = ""
        self._starts: list[int] = []  # offset of each name in the blob
        self._ids: list[str] = []  # id of each name in the blob
        self._other: list[str] = []  # ids whose names only the regex may judge
        self._order: dict[str, int] = {}  # id -> storage position

    def changed(self) -> None:
        self._stale = True

    def _rebuild(self, docs: dict[str, dict[str, Any]]) -> None:
        parts: list[str] = []
        self._starts, self._ids, self._other, self._order = [], [], [], {}
        offset = 0
        for position, (integration_id, doc) in enumerate(docs.items()):
            self._order[integration_id] = position
            name = doc.get("name")
            if not isinstance(name, str):
                continue  # never matches a non-empty text
            if name.isascii() and "\x00" not in name:
                self._starts.append(offset)
                self._ids.append(integration_id)
                parts.append(name.lower())
                offset += len(name) + 1
            else:
                self._other.append(integration_id)
        self._blob = "\x00".join(parts)
        self._stale = False

    def search(self, docs: dict[str, dict[str, Any]], text: str) -> list[str]:
        """Ids (in storage order) of the documents whose name contains `text`."""
        if self._stale:
            self._rebuild(docs)
        pattern = re.compile(re.escape(text), re.IGNORECASE)
        if not text.isascii() or "\x00" in text:
            return [i for i, d in docs.items() if isinstance(d.get("name"), str) and pattern.search(d["name"])]
        hits: list[str] = []
        needle = text.lower()
        at = self._blob.find(needle)
        while at != -1:
            index = bisect.bisect_right(self._starts, at) - 1
            hits.append(self._ids[index])
            following = self._starts[index + 1] if index + 1 < len(self._starts) else len(self._blob)
            at = self._blob.find(needle, following)
        hits.extend(i for i in self._other if pattern.search(docs[i]["name"]))
        if self._other:
            hits.sort(key=self._order.__getitem__)
        return hits


class Store:
    def __init__(self, clock: Clock = utcnow) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.users: dict[str, User] = {}
        self.roles: dict[str, dict[str, Any]] = {}
        self.permissions: dict[str, dict[str, Any]] = {}
        self.rooms: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[tuple[str, str], dict[str, Any]] = {}  # (rid, uid) -> sub
        self.messages: dict[str, list[dict[str, Any]]] = {}  # rid -> messages in ts order
        self._message_index: dict[str, dict[str, Any]] = {}  # _id -> message (same object)
        self.integrations: dict[str, dict[str, Any]] = {}
        self.integration_history: dict[str, dict[str, Any]] = {}  # _id -> entry, in insertion order
        # Indexes over the dicts above, kept by the methods that change them (a workspace of
        # 10,000 users and 1,000 rooms must not be scanned on every message or lookup).
        self._users_by_name: dict[str, User] = {}
        self._rooms_by_name: dict[str, dict[str, Any]] = {}
        self._room_subs: dict[str, dict[str, dict[str, Any]]] = {}  # rid -> uid -> sub
        self._user_subs: dict[str, dict[str, dict[str, Any]]] = {}  # uid -> rid -> sub
        self._integration_names = IntegrationNameIndex()
        self.settings: dict[str, Any] = {
            "Message_AllowUnrecognizedSlashCommand": False,
            "Message_MaxAllowedSize": 5000,
            "DirectMesssage_maxUsers": 8,  # sic: Rocket.Chat's setting id has the triple s
            "Threads_enabled": True,
            "UI_Use_Real_Name": False,
            "API_Enable_Rate_Limiter": True,
            "API_Enable_Rate_Limiter_Limit_Calls_Default": 10,
            "API_Enable_Rate_Limiter_Limit_Time_Default": 60000,
            "API_Default_Count": 50,
            "API_Upper_Count_Limit": 100,
            "API_Allow_Infinite_Count": True,
            "Site_Name": "Rocket.Chat Sandbox",
            "Site_Url": "http://127.0.0.1:3000",
        }
        self._listeners: list[Listener] = []
        now = self.clock()
        for role_id, (scope, description, protected) in DEFAULT_ROLES.items():
            self.roles[role_id] = {
                "_id": role_id,
                "name": role_id,
                "scope": scope,
                "description": description,
                "protected": protected,
                "mandatory2fa": False,
                "_updatedAt": now,
            }
        for perm_id, roles in DEFAULT_PERMISSIONS.items():
            self.permissions[perm_id] = {"_id": perm_id, "roles": list(roles), "_updatedAt": now}

    # --- events ----------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    # --- users and tokens ------------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        *,
        password: str | None = None,
        roles: Iterable[str] = ("user",),
        name: str | None = None,
        email: str | None = None,
        user_type: str = "user",
        user_id: str | None = None,
    ) -> User:
        with self.lock:
            if self.find_user(username) is not None:
                raise MeteorError("error-field-unavailable", f"{username} is already in use :(")
            user = User(
                _id=user_id or meteor_id(),
                username=username,
                name=name if name is not None else username.capitalize(),
                roles=list(roles),
                password_digest=password_digest(password) if password is not None else None,
                emails=[{"address": email or f"{username}@example.org", "verified": True}],
                created_at=self.clock(),
                type=user_type,
            )
            self.users[user._id] = user
            self._users_by_name[user.username] = user
            return user

    def find_user(self, id_or_username: str) -> User | None:
        """By `_id` or `username` (exact), like Rocket.Chat's `@x` channel entries resolve."""
        with self.lock:
            user = self.users.get(id_or_username)
            if user is not None:
                return user
            return self._users_by_name.get(id_or_username)

    def find_user_by_email(self, email: str) -> User | None:
        with self.lock:
            wanted = email.lower()
            for user in self.users.values():
                if any(e.get("address", "").lower() == wanted for e in user.emails):
                    return user
            return None

    def create_login_token(
        self, user_id: str, *, kind: Literal["resume", "personalAccessToken"] = "resume", name: str | None = None
    ) -> str:
        """Create a token usable as `X-Auth-Token` and as a DDP `{resume}` token; returns it."""
        with self.lock:
            user = self.users[user_id]
            token = login_token()
            entry: dict[str, Any] = {"when": self.clock(), "type": kind}
            if name is not None:
                entry["name"] = name
                entry["bypassTwoFactor"] = True
            user.login_tokens[hash_login_token(token)] = entry
            return token

    def revoke_login_token(self, user_id: str, token: str) -> bool:
        with self.lock:
            user = self.users.get(user_id)
            return user is not None and user.login_tokens.pop(hash_login_token(token), None) is not None

    def revoke_all_tokens(self, user_id: str) -> None:
        with self.lock:
            self.users[user_id].login_tokens.clear()

    def user_by_token(self, user_id: str, token: str) -> User | None:
        """REST auth: `X-User-Id` and `X-Auth-Token` must belong together (contract §1.1)."""
        with self.lock:
            user = self.users.get(user_id)
            if user is None or not user.active or hash_login_token(token) not in user.login_tokens:
                return None
            return user

    def user_by_resume_token(self, token: str) -> User | None:
        """DDP `{resume: token}`: the token alone identifies the user."""
        with self.lock:
            hashed = hash_login_token(token)
            for user in self.users.values():
                if user.active and hashed in user.login_tokens:
                    return user
            return None

    def check_password(self, user: User, *, plaintext: str | None = None, digest: str | None = None) -> bool:
        if user.password_digest is None or not user.active:
            return False
        if plaintext is not None:
            return password_digest(plaintext) == user.password_digest
        return digest is not None and digest.lower() == user.password_digest

    # --- roles and permissions (contract §3.2) -------------------------------------------------------

    def user_roles(self, user_id: str, scope: str | None = None) -> set[str]:
        """Global roles, plus the subscription's roles only when a room scope is given."""
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                return set()
            roles = set(user.roles)
            if scope is not None:
                sub = self.subscriptions.get((scope, user_id))
                if sub is not None:
                    roles.update(sub.get("roles") or [])
            return roles

    def has_permission(self, user_id: str, permission: str, scope: str | None = None) -> bool:
        with self.lock:
            doc = self.permissions.get(permission)
            if doc is None:
                return False
            return bool(self.user_roles(user_id, scope) & set(doc["roles"]))

    def has_all_permissions(self, user_id: str, permissions: Iterable[str], scope: str | None = None) -> bool:
        return all(self.has_permission(user_id, p, scope) for p in permissions)

    def has_any_permission(self, user_id: str, permissions: Iterable[str], scope: str | None = None) -> bool:
        return any(self.has_permission(user_id, p, scope) for p in permissions)

    def set_permission_roles(self, permission: str, roles: Iterable[str]) -> dict[str, Any]:
        """Change which roles hold a permission; emits `permissions-changed` like the real server."""
        with self.lock:
            now = self.clock()
            doc = self.permissions.get(permission)
            action: Literal["inserted", "updated"] = "updated"
            if doc is None:
                doc = {"_id": permission}
                self.permissions[permission] = doc
                action = "inserted"
            doc["roles"] = list(dict.fromkeys(roles))
            doc["_updatedAt"] = now
            self._emit(PermissionEvent(action, copied(doc)))
            return copied(doc)

    def create_role(self, role_id: str, *, scope: str = "Users", description: str = "") -> dict[str, Any]:
        with self.lock:
            role = {
                "_id": role_id,
                "name": role_id,
                "scope": scope,
                "description": description,
                "protected": False,
                "mandatory2fa": False,
                "_updatedAt": self.clock(),
            }
            self.roles[role_id] = role
            return copied(role)

    def set_user_roles(self, user_id: str, roles: Iterable[str]) -> list[str]:
        """Replace a user's global roles; emits one `roles-change` per added/removed role."""
        with self.lock:
            user = self.users[user_id]
            new = list(dict.fromkeys(roles))
            for role in new:
                if role not in self.roles:
                    self.create_role(role)
            added = [r for r in new if r not in user.roles]
            removed = [r for r in user.roles if r not in new]
            user.roles = new
            user.updated_at = self.clock()
            for kind, role_ids in (("added", added), ("removed", removed)):
                for role_id in role_ids:
                    self._emit(
                        RoleChangeEvent({"type": kind, "_id": role_id, "u": {**user.brief(), "name": user.name}})
                    )
            return list(new)

    def set_user_active(self, user_id: str, active: bool) -> None:
        """Activate or deactivate an account. Deactivating logs it out everywhere (its login
        tokens are removed, as Rocket.Chat's `setUserActiveStatus` does); its messages stay."""
        with self.lock:
            user = self.users[user_id]
            user.active = active
            if not active:
                user.login_tokens.clear()
            user.updated_at = self.clock()

    def rename_user(self, user_id: str, username: str) -> None:
        """Give an account another username, as an admin's `users.update` or the user's own
        change does (`saveUserIdentity`): the account and its `_id` stay, the old name is free
        for anyone from then on. Like Rocket.Chat, the name is rewritten where it was copied: the
        author (`u`) and editor of the user's stored messages, the `u` of their subscriptions, the
        `usernames` of their direct rooms and the names of the other members' subscriptions to
        them (a DM's subscription is named after the other members). Not modelled: the name in
        other messages' mentions and text. Nothing is streamed. A name in use (in any case, as
        Rocket.Chat's availability check) → `error-field-unavailable`."""
        with self.lock:
            user = self.users[user_id]
            old = user.username
            if any(u.username.lower() == username.lower() for u in self.users.values() if u is not user):
                raise MeteorError("error-field-unavailable", f"{username} is already in use :(")
            del self._users_by_name[old]
            user.username = username
            user.updated_at = self.clock()
            self._users_by_name[username] = user
            for message in self._message_index.values():
                for key in ("u", "editedBy"):
                    who = message.get(key)
                    if isinstance(who, dict) and who.get("_id") == user_id:
                        who["username"] = username
            for rid, sub in self._user_subs.get(user_id, {}).items():
                sub["u"]["username"] = username
                room = self.rooms[rid]
                if room["t"] != "d":
                    continue
                room["usernames"] = [username if name == old else name for name in room["usernames"]]
                for other, peer_sub in self._room_subs.get(rid, {}).items():
                    if other != user_id:
                        names = peer_sub["name"].split(", ")
                        peer_sub["name"] = ", ".join(username if name == old else name for name in names)

    # --- rooms and subscriptions ------------------------------------------------------------------

    def create_room(
        self,
        name: str,
        room_type: Literal["c", "p"] = "c",
        *,
        members: Iterable[str] = (),
        owner: str | None = None,
        room_id: str | None = None,
        read_only: bool = False,
    ) -> dict[str, Any]:
        """Create a public channel or private group; `members` are user ids or usernames."""
        with self.lock:
            if self.room_by_name(name) is not None:
                raise MeteorError("error-duplicate-channel-name", f"A channel with name '{name}' exists")
            now = self.clock()
            owner_user = self.find_user(owner) if owner else None
            room: dict[str, Any] = {
                "_id": room_id or meteor_id(),
                "t": room_type,
                "name": name,
                "fname": name,
                "ts": now,
                "_updatedAt": now,
                "usersCount": 0,
                "msgs": 0,
                "default": False,
                "ro": read_only,
                "sysMes": True,
            }
            if owner_user is not None:
                room["u"] = owner_user.brief()
            self.rooms[room["_id"]] = room
            self._rooms_by_name[name] = room
            self.messages[room["_id"]] = []
            for member in members:
                user = self.find_user(member)
                if user is None:
                    raise MeteorError("error-invalid-user", "Invalid user")
                roles = ["owner"] if owner_user is not None and user._id == owner_user._id else []
                self._subscribe(room, user, roles=roles, notify=False)
            return copied(room)

    def create_direct(self, user_a: str, user_b: str, *others: str) -> dict[str, Any]:
        """A direct-message room (`createDirectRoom`, contract §8 gotcha 25); members are user ids
        or usernames. Two users: the room id is both user ids sorted and joined, as in Rocket.Chat.
        Three or more (a group DM): a random id, and the existing group DM of exactly those users
        when there is one (`findOneDirectRoomContainingAllUserIDs`). Members never change after
        creation: Rocket.Chat refuses to add users to a direct room."""
        with self.lock:
            found = [self.find_user(member) for member in (user_a, user_b, *others)]
            if any(user is None for user in found):
                raise MeteorError("error-invalid-user", "Invalid user")
            members = list({user._id: user for user in found if user is not None}.values())
            uids = sorted(user._id for user in members)
            rid = "".join(uids) if len(uids) <= 2 else self._group_direct_id(uids)
            if rid in self.rooms:
                return copied(self.rooms[rid])
            now = self.clock()
            # `usernames` in display order (name, else username), `uids` sorted, as Rocket.Chat stores them.
            shown = sorted(members, key=lambda user: (user.name or user.username).casefold())
            room: dict[str, Any] = {
                "_id": rid,
                "t": "d",
                "usernames": [user.username for user in shown],
                "uids": uids,
                "ts": now,
                "_updatedAt": now,
                "usersCount": len(uids),
                "msgs": 0,
            }
            self.rooms[rid] = room
            self.messages[rid] = []
            for member in members:
                if (rid, member._id) not in self.subscriptions:
                    peers = [user for user in shown if user._id != member._id] or [member]
                    self._subscribe(room, member, display=peers, notify=True)
            return copied(room)

    def _group_direct_id(self, uids: list[str]) -> str:
        """The id of the group DM of exactly these users, or a new random one."""
        for rid in self._user_subs.get(uids[0], {}):
            room = self.rooms[rid]
            if room["t"] == "d" and room.get("uids") == uids:
                return rid
        return meteor_id()

    def room_by_name(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self._rooms_by_name.get(name)

    def find_room(self, id_or_name: str) -> dict[str, Any] | None:
        """By `_id` or `name`, like Rocket.Chat's `#x` channel entries resolve (a live reference)."""
        with self.lock:
            return self.rooms.get(id_or_name) or self.room_by_name(id_or_name)

    def _subscribe(
        self,
        room: dict[str, Any],
        user: User,
        *,
        roles: list[str] | None = None,
        display: list[User] | None = None,
        notify: bool,
    ) -> dict[str, Any]:
        now = self.clock()
        sub: dict[str, Any] = {
            "_id": meteor_id(),
            "rid": room["_id"],
            "u": user.brief(),
            "t": room["t"],
            # A DM's subscription is named after the other members (`getName`/`getFname`).
            "name": ", ".join(u.username for u in display) if display else room["name"],
            "fname": ", ".join(u.name or u.username for u in display) if display else room.get("fname", room["name"]),
            "ts": now,
            "ls": now,
            "lr": now,
            "open": True,
            "alert": False,
            "unread": 0,
            "userMentions": 0,
            "groupMentions": 0,
            "_updatedAt": now,
        }
        if roles:
            sub["roles"] = list(roles)
        self.subscriptions[(room["_id"], user._id)] = sub
        self._room_subs.setdefault(room["_id"], {})[user._id] = sub
        self._user_subs.setdefault(user._id, {})[room["_id"]] = sub
        room["usersCount"] = len(self._room_subs[room["_id"]])
        if notify:
            self._emit(SubscriptionEvent(user._id, "inserted", copied(sub)))
            self._emit(RoomEvent(user._id, "inserted", copied(room)))
        return sub

    def add_member(self, room_id: str, user: str, *, added_by: str | None = None) -> dict[str, Any]:
        """Add a user to a channel/group: subscription + `uj`/`au` system message + user events."""
        with self.lock:
            room = self.find_room(room_id)
            member = self.find_user(user)
            if room is None or member is None:
                raise MeteorError("error-invalid-room" if room is None else "error-invalid-user", "Invalid")
            if room["t"] == "d":
                # `addUsersToRoom`: a DM's members are fixed when it is created.
                raise MeteorError("error-cant-invite-for-direct-room", "Can't invite user to direct rooms")
            if (room["_id"], member._id) in self.subscriptions:
                return copied(self.subscriptions[(room["_id"], member._id)])
            sub = self._subscribe(room, member, notify=True)
            actor = self.find_user(added_by) if added_by else None
            if actor is None or actor._id == member._id:
                self._system_message(room, "uj", member.username, member)
            else:
                self._system_message(room, "au", member.username, actor)
            return copied(sub)

    def remove_member(self, room_id: str, user: str) -> None:
        with self.lock:
            room = self.find_room(room_id)
            member = self.find_user(user)
            if room is None or member is None:
                raise MeteorError("error-invalid-room", "Invalid room")
            sub = self.subscriptions.pop((room["_id"], member._id), None)
            if sub is None:
                return
            self._room_subs[room["_id"]].pop(member._id, None)
            self._user_subs[member._id].pop(room["_id"], None)
            room["usersCount"] = len(self._room_subs[room["_id"]])
            self._system_message(room, "ul", member.username, member)
            self._emit(
                SubscriptionEvent(
                    member._id, "removed", {"_id": sub["_id"], "u": sub["u"], "rid": sub["rid"], "t": sub["t"]}
                )
            )
            self._emit(RoomEvent(member._id, "removed", {"_id": room["_id"]}))

    def subscription(self, room_id: str, user_id: str) -> dict[str, Any] | None:
        with self.lock:
            sub = self.subscriptions.get((room_id, user_id))
            return copied(sub) if sub is not None else None

    def is_member(self, room_id: str, user_id: str) -> bool:
        with self.lock:
            return (room_id, user_id) in self.subscriptions

    def user_subscriptions(self, user_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copied(s) for s in self._user_subs.get(user_id, {}).values()]

    def user_rooms(self, user_id: str, *, updated_after: datetime | None = None) -> list[dict[str, Any]]:
        """The rooms the user is subscribed to; with `updated_after`, only those whose `_updatedAt`
        is later (`findBySubscriptionUserIdUpdatedAfter`: `$gt`). Only those are copied."""
        with self.lock:
            rooms = (self.rooms[rid] for rid in self._user_subs.get(user_id, {}))
            if updated_after is not None:
                rooms = (room for room in rooms if room["_updatedAt"] > updated_after)
            return [copied(room) for room in rooms]

    def room_members(self, room_id: str) -> list[str]:
        with self.lock:
            return list(self._room_subs.get(room_id, {}))

    def can_access_room(self, user_id: str, room_id: str) -> bool:
        """Rocket.Chat's canAccessRoom, simplified to what the sandbox models: members always;
        public channels also for users with `view-c-room`."""
        with self.lock:
            room = self.rooms.get(room_id)
            if room is None:
                return False
            if (room_id, user_id) in self.subscriptions:
                return True
            return room["t"] == "c" and self.has_permission(user_id, "view-c-room")

    def accessible_room_ids(self, user_id: str) -> list[str]:
        with self.lock:
            return [rid for rid in self.rooms if self.can_access_room(user_id, rid)]

    # --- messages ---------------------------------------------------------------------------------

    def _extract_mentions(self, text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Server-side mention extraction: a regex over the raw text (contract §5.4)."""
        mentions: list[dict[str, Any]] = []
        seen: set[str] = set()
        for match in _USER_MENTION.finditer(text):
            name = match.group(1)
            if name in seen:
                continue
            seen.add(name)
            if name in ("all", "here"):
                mentions.append({"_id": name, "username": name})
                continue
            user = self.find_user(name)
            if user is not None and user.username == name:
                entry: dict[str, Any] = {"_id": user._id, "username": user.username, "type": "user"}
                if self.settings.get("UI_Use_Real_Name"):
                    entry["name"] = user.name
                mentions.append(entry)
        channels: list[dict[str, Any]] = []
        for match in _CHANNEL_MENTION.finditer(text):
            room = self.room_by_name(match.group(1))
            if room is not None and all(c["_id"] != room["_id"] for c in channels):
                channels.append({"_id": room["_id"], "name": room["name"]})
        return mentions, channels

    def _author(self, user: User) -> dict[str, Any]:
        author = user.brief()
        if self.settings.get("UI_Use_Real_Name"):
            author["name"] = user.name
        return author

    def send_message(
        self,
        user_id: str,
        room_id: str,
        text: str = "",
        *,
        tmid: str | None = None,
        tshow: bool = False,
        message_id: str | None = None,
        alias: str | None = None,
        emoji: str | None = None,
        avatar: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        bot: dict[str, Any] | None = None,
        custom_fields: dict[str, Any] | None = None,
        check_access: bool = True,
    ) -> dict[str, Any]:
        """Store a user message with Rocket.Chat's `executeSendMessage` rules (contract §4.7)."""
        with self.lock:
            user = self.users.get(user_id)
            room = self.rooms.get(room_id)
            if user is None:
                raise MeteorError("error-invalid-user", "Invalid user", {"method": "sendMessage"})
            if room is None:
                raise MeteorError("error-invalid-room", "Invalid room", {"method": "sendMessage"})
            if not text and not attachments:
                raise MeteorError("error-invalid-message", "Message cannot be empty", {"method": "sendMessage"})
            if len(text) > int(self.settings.get("Message_MaxAllowedSize", 5000)):
                raise MeteorError(
                    "error-message-size-exceeded", "Message size exceeds the allowed size", {"method": "sendMessage"}
                )
            if tshow and not tmid:
                raise MeteorError("error-invalid-params", "tshow provided but missing tmid", {"method": "sendMessage"})
            # A non-member may post into a public channel it can access (the client auto-joins);
            # the server refuses a post into a room the user cannot access.
            if check_access and not self.can_access_room(user_id, room_id):
                raise MeteorError("error-not-allowed", "Not allowed", {"method": "sendMessage"})
            if check_access and room.get("ro") and not self.has_permission(user_id, "post-readonly", room_id):
                raise MeteorError("error-not-allowed", "Not allowed", {"method": "sendMessage"})
            if (alias or avatar) and not self.has_permission(user_id, "message-impersonate", room_id):
                raise MeteorError("error-action-not-allowed", "Not enough permission", {"method": "sendMessage"})
            parent: dict[str, Any] | None = None
            if tmid is not None:
                if not self.settings.get("Threads_enabled", True):
                    raise MeteorError("error-not-allowed", "not-allowed", {"method": "sendMessage"})
                parent = self._message_index.get(tmid)
                if parent is None or parent["rid"] != room_id:
                    raise MeteorError("error-invalid-message", "Invalid thread", {"method": "sendMessage"})
                if parent.get("tmid"):  # replying in a thread of a thread goes to the root
                    parent = self._message_index.get(parent["tmid"], parent)
            if message_id is not None and message_id in self._message_index:
                raise MeteorError("error-duplicate-message", "Message already exists", {"method": "sendMessage"})
            now = self.clock()
            mentions, channels = self._extract_mentions(text)
            for att in attachments or []:
                description = att.get("description")
                if isinstance(description, str):
                    more, _ = self._extract_mentions(description)
                    mentions.extend(m for m in more if m not in mentions)
            message: dict[str, Any] = {
                "_id": message_id or meteor_id(),
                "rid": room_id,
                "msg": text,
                "ts": now,
                "u": self._author(user),
                "_updatedAt": now,
                "urls": [],
                "mentions": mentions,
                "channels": channels,
                "md": [{"type": "PARAGRAPH", "value": [{"type": "PLAIN_TEXT", "value": text}]}],
            }
            if parent is not None:
                message["tmid"] = parent["_id"]
                if tshow:
                    message["tshow"] = True
            for key, value in (("alias", alias), ("emoji", emoji), ("avatar", avatar)):
                if value:
                    message[key] = value
            if attachments:
                message["attachments"] = copied(attachments)
            if bot is not None:
                message["bot"] = copied(bot)
            if custom_fields:
                message["customFields"] = copied(custom_fields)
            self._insert(room, message)
            if parent is not None:
                parent["tcount"] = int(parent.get("tcount", 0)) + 1
                parent["tlm"] = now
                replies = parent.setdefault("replies", [])
                if user._id not in replies:
                    replies.append(user._id)
                parent["_updatedAt"] = now
                self._emit(MessageEvent(copied(parent), copied(room), inserted=False))
            return copied(message)

    def post_webhook_message(self, integration_id: str, text: str, *, room_id: str | None = None) -> dict[str, Any]:
        """A message as an incoming webhook posts it: `u` is the post-as user, `bot: {i: id}`.
        A disabled integration posts nothing, as its hook URL then answers 503."""
        with self.lock:
            integration = self.integrations.get(integration_id)
            if integration is None:
                raise MeteorError("error-invalid-integration", "Invalid integration")
            if integration.get("enabled") is not True:
                # `/hooks/<id>/<token>` of a disabled integration answers 503 "Service Unavailable"
                # and posts nothing (Rocket.Chat's executeIntegrationRest checks `enabled !== true`).
                raise MeteorError("error-integration-disabled", "Service Unavailable")
            poster = self.find_user(integration.get("userId") or integration.get("username") or "")
            if poster is None:
                raise MeteorError("error-invalid-user", "Invalid user")
            if room_id is None:
                channels = integration.get("channel") or []
                if not channels:
                    raise MeteorError("error-invalid-channel", "Invalid channel")
                target = channels[0]
                if target.startswith("@"):
                    room = self.create_direct(poster._id, target[1:])
                else:
                    found = self.find_room(target.lstrip("#"))
                    if found is None:
                        raise MeteorError("error-invalid-room", "Invalid room")
                    room = found
                room_id = room["_id"]
            return self.send_message(
                poster._id,
                room_id,
                text,
                alias=integration.get("alias") or None,
                emoji=integration.get("emoji") or None,
                avatar=integration.get("avatar") or None,
                bot={"i": integration_id},
                check_access=False,
            )

    def _system_message(self, room: dict[str, Any], kind: str, text: str, user: User) -> dict[str, Any]:
        now = self.clock()
        message: dict[str, Any] = {
            "_id": meteor_id(),
            "rid": room["_id"],
            "t": kind,
            "msg": text,
            "ts": now,
            "u": self._author(user),
            "_updatedAt": now,
            "groupable": False,
        }
        self._insert(room, message)
        return message

    def post_system_message(self, room_id: str, kind: str, text: str, user: str) -> dict[str, Any]:
        with self.lock:
            room = self.find_room(room_id)
            author = self.find_user(user)
            if room is None or author is None:
                raise MeteorError("error-invalid-room", "Invalid room")
            return copied(self._system_message(room, kind, text, author))

    def _insert(self, room: dict[str, Any], message: dict[str, Any]) -> None:
        """Store a new message and update its room as Rocket.Chat's `afterSaveMessage` does: every
        new message counts in `msgs` and writes the room, so the room's `_updatedAt` is read from
        the clock after the message's (never older; `rooms.get?updatedSince=` finds the room); a
        reply shown only in its thread leaves `lastMessage`/`lm` alone (`notifyUsersOnMessage`)."""
        self.messages.setdefault(room["_id"], []).append(message)
        self._message_index[message["_id"]] = message
        room["msgs"] = int(room.get("msgs", 0)) + 1
        room["_updatedAt"] = max(self.clock(), message["_updatedAt"])
        if not message.get("t") and (not message.get("tmid") or message.get("tshow")):
            room["lastMessage"] = message
            room["lm"] = message["ts"]
        shared = copied(room)  # events are read-only: one copy for both
        self._emit(MessageEvent(copied(message), shared, inserted=True))
        if not message.get("t"):
            self._emit(RoomChangedEvent(shared))

    def edit_message(self, message_id: str, text: str, *, editor: str | None = None) -> dict[str, Any]:
        """Edit in place: same `_id`, new `msg`, `editedAt`/`editedBy`, re-delivered on the streams."""
        with self.lock:
            message = self._message_index.get(message_id)
            if message is None:
                raise MeteorError("error-action-not-allowed", "Not allowed")
            author = self.find_user(editor) if editor else self.users.get(message["u"]["_id"])
            if author is None:
                raise MeteorError("error-invalid-user", "Invalid user")
            now = self.clock()
            mentions, channels = self._extract_mentions(text)
            message.update(
                msg=text,
                editedAt=now,
                editedBy=author.brief(),
                _updatedAt=now,
                mentions=mentions,
                channels=channels,
                md=[{"type": "PARAGRAPH", "value": [{"type": "PLAIN_TEXT", "value": text}]}],
            )
            room = self.rooms[message["rid"]]
            last = room.get("lastMessage")
            if isinstance(last, dict) and last.get("_id") == message["_id"]:
                # Only an edit of the room's last message writes the room (`setLastMessageById`);
                # editing an older message leaves the room's `_updatedAt` as it was.
                room["lastMessage"] = message
                room["_updatedAt"] = max(self.clock(), now)
            self._emit(MessageEvent(copied(message), copied(room), inserted=False))
            return copied(message)

    def react(self, message_id: str, emoji: str, user: str) -> dict[str, Any]:
        """Add a reaction: a re-delivery of the same `_id` without `editedAt` changing (§5.2)."""
        with self.lock:
            message = self._message_index.get(message_id)
            reactor = self.find_user(user)
            if message is None or reactor is None:
                raise MeteorError("error-not-allowed", "Not allowed")
            reactions = message.setdefault("reactions", {})
            usernames = reactions.setdefault(emoji, {"usernames": []})["usernames"]
            if reactor.username not in usernames:
                usernames.append(reactor.username)
            message["_updatedAt"] = self.clock()
            room = self.rooms[message["rid"]]
            self._emit(MessageEvent(copied(message), copied(room), inserted=False))
            return copied(message)

    def delete_message(self, message_id: str) -> None:
        with self.lock:
            message = self._message_index.pop(message_id, None)
            if message is None:
                return
            self.messages[message["rid"]].remove(message)
            self._emit(DeleteMessageEvent(message["rid"], message_id))

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        with self.lock:
            message = self._message_index.get(message_id)
            return copied(message) if message is not None else None

    def room_messages(self, room_id: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """Messages of a room in `ts` order; with `since`, those updated after it."""
        with self.lock:
            found = self.messages.get(room_id, [])
            if since is not None:
                found = [m for m in found if m["_updatedAt"] > since]
            return [copied(m) for m in found]

    # --- integrations (raw storage; endpoint semantics live in sandbox.integrations) ----------------

    def insert_integration(self, document: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            doc = copied(document)
            doc.setdefault("_id", object_id())
            self.integrations[doc["_id"]] = doc
            self._integration_names.changed()
            return copied(doc)

    def get_integration(self, integration_id: str) -> dict[str, Any] | None:
        with self.lock:
            doc = self.integrations.get(integration_id)
            return copied(doc) if doc is not None else None

    def update_integration(
        self, integration_id: str, set_fields: dict[str, Any], unset_fields: Iterable[str] = ()
    ) -> dict[str, Any]:
        """A MongoDB-style `$set`/`$unset` on a stored document. A `None` in `set_fields` is
        stored as null, the way `ignoreUndefined: false` stores `undefined` (contract §2.4.4)."""
        with self.lock:
            doc = self.integrations[integration_id]
            if ("name" in set_fields and set_fields["name"] != doc.get("name")) or "name" in unset_fields:
                self._integration_names.changed()
            for key, value in set_fields.items():
                doc[key] = copied(value)
            for key in unset_fields:
                doc.pop(key, None)
            return copied(doc)

    def delete_integration(self, integration_id: str) -> dict[str, Any] | None:
        """Remove the document and, as `deleteOutgoingIntegration` does
        (`IntegrationHistory.removeByIntegrationId`), its call history."""
        with self.lock:
            self._integration_names.changed()
            found = self.integrations.pop(integration_id, None)
            if found is not None:
                self.clear_integration_history(integration_id)
            return found

    def list_integrations(self) -> list[dict[str, Any]]:
        with self.lock:
            return [copied(d) for d in self.integrations.values()]

    def find_integrations(self, *, name: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Copies of the integrations whose name contains `name` (case-insensitively, as the
        `integrations.list?name=` regex does) and whose type is `kind`, in storage order.
        Only the matches are copied, and the name search does not scan every document."""
        with self.lock:
            if name:
                found = [self.integrations[i] for i in self._integration_names.search(self.integrations, name)]
            else:
                found = list(self.integrations.values())
            return [copied(d) for d in found if kind is None or d.get("type") == kind]

    # --- integration history (`rocketchat_integration_history`; semantics in sandbox.integration_history)

    def insert_integration_history(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            doc = copied(entry)
            doc.setdefault("_id", meteor_id())
            self.integration_history[doc["_id"]] = doc
            return copied(doc)

    def find_integration_history(self, integration_id: str) -> list[dict[str, Any]]:
        """Copies of the entries whose `integration._id` is `integration_id`, in insertion order."""
        with self.lock:
            return [copied(doc) for doc in self.integration_history.values() if _history_of(doc, integration_id)]

    def clear_integration_history(self, integration_id: str) -> int:
        """`IntegrationHistory.removeByIntegrationId`: how many entries were removed."""
        with self.lock:
            gone = [key for key, doc in self.integration_history.items() if _history_of(doc, integration_id)]
            for key in gone:
                del self.integration_history[key]
            return len(gone)

    # --- settings -------------------------------------------------------------------------------

    def set_setting(self, setting_id: str, value: Any) -> None:
        with self.lock:
            self.settings[setting_id] = value

    def get_setting(self, setting_id: str, default: Any = None) -> Any:
        with self.lock:
            return self.settings.get(setting_id, default)

    # --- time ----------------------------------------------------------------------------------

    def token_expires(self, when: datetime, days: int = 90) -> datetime:
        """`Accounts_LoginExpiration` default of 90 days (contract §4.4)."""
        return when + timedelta(days=days)


def _history_of(entry: dict[str, Any], integration_id: str) -> bool:
    """Whether a call history entry is about that integration (its `integration._id`)."""
    integration = entry.get("integration")
    return isinstance(integration, dict) and integration.get("_id") == integration_id
