"""The caller's Rocket.Chat rights, evaluated exactly as the server would (contract §2.2–§2.6, §3).

Why the bot evaluates rights itself: its REST calls run with the *bot's* credentials (an admin-
level account), so the server checks the bot, never the person who typed the command. Every
rule the server would apply to that person must therefore be re-applied here, and nothing more
lenient or stricter:

* Integration permissions are global-role only: a user's `users.roles` against each permission
  document's `roles`; room roles never count (§3.2).
* Changing an integration is an either/or fallback: `manage-<type>-integrations` → any;
  else `manage-own-<type>-integrations` → only if `_createdBy._id` is the caller (§2.4.3/§2.4.5).
* Listing shows, with both "all" permissions, everything; else with both "own" permissions only
  the caller's own integrations — even when one "all" permission is also held (a server quirk);
  else the union per permission (§2.2). Reading one by id (`integrations.get`) uses the update
  rule instead (§2.3), so a caller may read by id what the list hides.
* Channel rules (§2.4.3 step 6, §2.4.5 steps 3 and 6), see `channel_rule`.
* An inactive (deactivated) account may do nothing: Rocket.Chat refuses every call it makes.

Whether to re-check room membership for the caller: the server runs the membership check on
*every* update, with the channels in the body, even when they are the stored ones unchanged.
A member-only caller who has since left a room, or any caller without both permissions on an
integration that posts to `@someone` (the quirk: a user id is never a room the caller belongs
to), is refused by Rocket.Chat itself. Skipping the check would make the bot a way around that
rule, so the bot re-applies it to the caller (contract §3.2: "the bot must reproduce them for
the caller"). The rooms come from `users.info?includeUserRooms=true`; when the server does not
include them (the bot lacks `view-other-user-channels`) the rule fails closed and says why.

Which room a `#x` entry names: Rocket.Chat looks it up as `{$or: [{_id: x}, {name: x}]}`, both
when the integration is saved and again each time the webhook posts (contract §8 gotcha 23). When
`x` is one room's id and another room's name, either may be the one meant, and anybody may create
a public room *named* after a private room's id. So the membership rule holds only when the caller
is a member (by room id) of *every* room `x` can mean (`RoomMeaning`, looked up fresh by
`room_meanings` for each write); a room the bot cannot identify fails closed.

The decision functions are pure (no I/O) and return a `Decision`; `RightsCache` does the I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bot import logs
from bot.errors import BotLacksPermission, ServerRejected
from bot.rocketchat.models import INCOMING, OUTGOING, Integration, PermissionsSnapshot, UserInfo
from bot.rocketchat.rest import RestClient
from bot.tasks import background, observed

log = logs.get_logger("bot.authz")  # the `logger` operators filter on: kept when the module moved

MANAGE_INCOMING: Final = "manage-incoming-integrations"
MANAGE_OWN_INCOMING: Final = "manage-own-incoming-integrations"
MANAGE_OUTGOING: Final = "manage-outgoing-integrations"
MANAGE_OWN_OUTGOING: Final = "manage-own-outgoing-integrations"
INTEGRATION_PERMISSIONS: Final = (MANAGE_INCOMING, MANAGE_OWN_INCOMING, MANAGE_OUTGOING, MANAGE_OWN_OUTGOING)

# integration type -> (the "all" permission, the "own" permission)
TYPE_PERMISSIONS: Final[Mapping[str, tuple[str, str]]] = {
    INCOMING: (MANAGE_INCOMING, MANAGE_OWN_INCOMING),
    OUTGOING: (MANAGE_OUTGOING, MANAGE_OWN_OUTGOING),
}

# Outgoing events that do not use `channel` (§2.1 table); only manage-outgoing may change them.
CHANNELLESS_EVENTS: Final = frozenset({"roomArchived", "roomCreated", "userCreated"})
# Scopes that need manage-outgoing (compared case-sensitively, as the server's permission check does).
PRIVILEGED_SCOPES: Final = frozenset({"all_private_groups", "all_direct_messages"})
PUBLIC_SCOPE: Final = "all_public_channels"

Document = Mapping[str, Any] | Integration


# --- the permission table -----------------------------------------------------------------------


class PermissionTable:
    """Permission id → roles holding it, from `permissions.listAll` plus realtime changes."""

    def __init__(self, roles_by_permission: Mapping[str, Iterable[str]] | None = None) -> None:
        self._roles: dict[str, frozenset[str]] = {}
        self.loaded = roles_by_permission is not None
        for permission, roles in (roles_by_permission or {}).items():
            self._roles[permission] = frozenset(roles)

    def replace(self, snapshot: PermissionsSnapshot) -> bool:
        """Load a full `permissions.listAll` answer (no `updatedSince`); whether anything changed."""
        roles = {doc.id: frozenset(doc.roles) for doc in snapshot.update}
        changed = not self.loaded or roles != self._roles
        self._roles = roles
        self.loaded = True
        return changed

    def apply_delta(self, snapshot: PermissionsSnapshot) -> None:
        """Apply a `permissions.listAll?updatedSince=` answer: changed documents and removals."""
        for doc in snapshot.update:
            self._roles[doc.id] = frozenset(doc.roles)
        for permission in snapshot.remove:
            self._roles.pop(permission, None)

    def apply_event(self, args: Sequence[Any]) -> str | None:
        """Apply a `permissions-changed` event's raw `args` (`[action, doc]`, §3.4).

        Returns the permission id that changed, or None when the payload is not understood
        (then nothing changes; the caller may reload the table).
        """
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], Mapping):
            return None
        action, doc = args[0], args[1]
        permission = doc.get("_id")
        if not isinstance(permission, str):
            return None
        if action == "removed":
            self._roles.pop(permission, None)
            return permission
        roles = doc.get("roles")
        if isinstance(roles, list):
            self._roles[permission] = frozenset(str(r) for r in roles)
            return permission
        return None  # e.g. a "changed" without roles: nothing we can apply

    def roles_for(self, permission: str) -> frozenset[str]:
        return self._roles.get(permission, frozenset())

    def permissions_of(self, roles: Iterable[str]) -> frozenset[str]:
        held = frozenset(roles)
        return frozenset(p for p, holders in self._roles.items() if held & holders)


# --- the caller's rights ------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomMeaning:
    """Every room a `#x` channel entry can mean: the room whose id is `x` and the room named `x`.

    `ids` are their room ids; `unidentified` is set when a room named `x` exists whose id the
    bot could not learn (a private group neither the bot nor the caller is in)."""

    ids: frozenset[str] = frozenset()
    unidentified: bool = False


# Bare `x` of a `#x` entry → what it can mean (see `room_meanings`).
RoomMeanings = Mapping[str, RoomMeaning]


@dataclass(frozen=True)
class CallerRights:
    """A caller's global roles and the permissions they grant, at one moment.

    `room_ids` are the rooms the caller is subscribed to, `room_ids_by_name` the same by name
    (channels and groups only: a direct message's subscription is named after the other user, a
    livechat one after the visitor);
    None when the server did not tell the bot. `active` is False for a deactivated account,
    which holds no permission at all. `user_type` is the account's `type` (`user`, `bot`,
    `app`, ...; contract §3.3), None when the server left it out.
    """

    user_id: str
    username: str | None
    roles: frozenset[str]
    permissions: frozenset[str]
    room_ids: frozenset[str] | None = None
    room_ids_by_name: Mapping[str, str] | None = None
    active: bool = True
    user_type: str | None = None
    # Public channels among `room_ids_by_name`: names anyone in a room may read in an answer (a
    # private group's name is told only inside it: an answer is read by everyone in its room).
    channel_names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, user: UserInfo, table: PermissionTable) -> CallerRights:
        if user.roles is None:
            raise BotLacksPermission("view-full-other-user-info", "read the caller's roles (users.info)")
        roles = frozenset(user.roles)
        room_ids = by_name = None
        channels: frozenset[str] = frozenset()
        if user.rooms is not None:
            room_ids = frozenset(r.rid for r in user.rooms)
            # Channels and groups only: a DM's subscription is named after the other user, a
            # livechat one after the visitor (who types that name), neither is the room's name.
            by_name = {r.name: r.rid for r in user.rooms if r.name and r.t in ("c", "p")}
            channels = frozenset(r.name for r in user.rooms if r.name and r.t == "c")
        # Rocket.Chat refuses everything a deactivated account asks; an absent flag means active.
        active = user.active is not False
        permissions = table.permissions_of(roles) if active else frozenset()
        return cls(user.id, user.username, roles, permissions, room_ids, by_name, active, user.type, channels)

    def has(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_room(self, entry: str) -> bool:
        """Whether a channel entry may be named to this caller in a reply: anything but a `#room`
        they are not subscribed to (by id or name). For what the bot says, not for what it allows
        (that is `is_member`)."""
        if not entry.startswith("#"):
            return True
        name = entry[1:]
        in_rooms = self.room_ids is not None and name in self.room_ids
        return in_rooms or (self.room_ids_by_name is not None and name in self.room_ids_by_name)

    def is_member(self, entry: str, rooms: RoomMeanings) -> bool | None:
        """Whether the caller is subscribed to every room a `#x`/`@x` channel entry can mean.

        `#x` names a room by `_id` or by name (`rooms`, from `room_meanings`): the caller must be
        a member of each. `@x` names a *user*, and the server looks for a subscription to a room
        whose id is that user's id — which never exists, so it is False. None when the caller's
        rooms are unknown.
        """
        if entry.startswith("@"):
            return False
        if self.room_ids is None:
            return None
        meaning = rooms.get(entry[1:] if entry.startswith("#") else entry)
        if meaning is None or meaning.unidentified or not meaning.ids:
            return False
        return meaning.ids <= self.room_ids


@dataclass(frozen=True)
class Decision:
    allowed: bool
    missing: tuple[str, ...] = ()
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def _fields(doc: Document) -> tuple[str, str | None, Mapping[str, Any]]:
    """(type, creator id, raw document)."""
    if isinstance(doc, Integration):
        return doc.type, doc.created_by_id, doc.document
    created_by = doc.get("_createdBy")
    creator = created_by.get("_id") if isinstance(created_by, Mapping) else None
    return str(doc.get("type") or ""), creator if isinstance(creator, str) else None, doc


def _own_rule(rights: CallerRights, doc: Document, action: str) -> Decision:
    kind, creator, _raw = _fields(doc)
    if kind not in TYPE_PERMISSIONS:
        return Decision(False, (), f"unknown integration type {kind!r}")
    perm_all, perm_own = TYPE_PERMISSIONS[kind]
    if rights.has(perm_all):
        return Decision(True, (), f"{perm_all} allows {action} of any {kind}")
    own = creator is not None and creator == rights.user_id
    if own and rights.has(perm_own):
        return Decision(True, (), f"{perm_own} allows {action} of your own {kind}")
    if own:
        return Decision(False, (perm_own, perm_all), f"{action} of your own {kind} needs {perm_own} or {perm_all}")
    if rights.has(perm_own):
        return Decision(False, (perm_all,), f"someone else created it; {action} needs {perm_all}")
    return Decision(False, (perm_all,), f"{action} of a {kind} needs {perm_all}")


def may_update(rights: CallerRights, doc: Document) -> Decision:
    """The server's permission rule for changing this integration (§3.2), without channel rules."""
    return _own_rule(rights, doc, "changing")


def may_view(rights: CallerRights, doc: Document) -> Decision:
    """The `integrations.get` rule (§2.3): the same either/or fallback as updating."""
    return _own_rule(rights, doc, "reading")


def may_list(rights: CallerRights) -> Decision:
    """`integrations.list` needs any one of the four integration permissions (§2.2)."""
    if any(rights.has(p) for p in INTEGRATION_PERMISSIONS):
        return Decision(True)
    return Decision(False, INTEGRATION_PERMISSIONS, "listing integrations needs one of the integration permissions")


def visible_in_list(rights: CallerRights, doc: Document) -> bool:
    """Whether `integrations.list` would show this document to the caller (§2.2, with its quirk)."""
    kind, creator, _raw = _fields(doc)
    own = creator is not None and creator == rights.user_id
    all_in, all_out = rights.has(MANAGE_INCOMING), rights.has(MANAGE_OUTGOING)
    own_in, own_out = rights.has(MANAGE_OWN_INCOMING), rights.has(MANAGE_OWN_OUTGOING)
    if all_in and all_out:
        return True
    if own_in and own_out:
        return own  # even with one "all" permission: the server's query only keeps own ones
    return (
        (kind == OUTGOING and all_out)
        or (kind == INCOMING and all_in)
        or (kind == OUTGOING and own_out and own)
        or (kind == INCOMING and own_in and own)
    )


def needs_membership(rights: CallerRights, doc: Document) -> bool:
    """Whether the channel rule checks the caller's membership for this type (not both permissions)."""
    kind, _creator, _raw = _fields(doc)
    if kind not in TYPE_PERMISSIONS:
        return False
    perm_all, perm_own = TYPE_PERMISSIONS[kind]
    return not (rights.has(perm_all) and rights.has(perm_own))


def room_entries(doc: Document) -> list[str]:
    """The bare `x` of every `#x` channel entry of `doc`."""
    _kind, _creator, raw = _fields(doc)
    channels = raw.get("channel")
    entries = [str(c).strip() for c in channels] if isinstance(channels, list) else []
    return [entry[1:] for entry in entries if entry.startswith("#") and len(entry) > 1]


_ROOM_EXISTS: Final = frozenset({"not-allowed", "Not Allowed", "error-room-archived"})


class RoomMemo:
    """What the `#x` entries met so far mean, for one command of one caller: `room_meanings`
    looks each distinct entry up once however many integrations carry it (a preview of
    `disable all in #room` over 50 members of one room asks `rooms.info` twice, not 100 times).

    Only for a check made once per command (a preview, a selection): a check that must see the
    rooms as they are at the moment of a write (under the integration's lock) passes none. The
    meaning of `#x` depends on the caller (`room_ids_by_name`), so a memo serves the rights it was
    made for and no others. Failed lookups are not remembered: the next entry asks again."""

    def __init__(self, rights: CallerRights) -> None:
        self.rights = rights
        self._meanings: dict[str, RoomMeaning] = {}

    def get(self, rights: CallerRights, entry: str) -> RoomMeaning | None:
        self._check(rights)
        return self._meanings.get(entry)

    def put(self, rights: CallerRights, entry: str, meaning: RoomMeaning) -> None:
        self._check(rights)
        self._meanings[entry] = meaning

    def _check(self, rights: CallerRights) -> None:
        if rights is not self.rights:
            raise ValueError("a RoomMemo serves the rights it was made for only")


async def room_meanings(
    rest: RestClient, rights: CallerRights, doc: Document, memo: RoomMemo | None = None
) -> dict[str, RoomMeaning]:
    """What each `#x` entry of `doc` can mean, looked up now with the bot's account (only when the
    membership rule applies to this caller; otherwise nothing is looked up), or taken from `memo`
    when this command looked that entry up already (`RoomMemo`).

    `rooms.info` by id and by name, as Rocket.Chat resolves `x` both ways. A room the bot may not
    open still exists (`not-allowed`, or archived): by id its id is `x`; by name its id is known
    only when the caller is subscribed to a room of that name (names are unique), else it is
    unidentified and the rule fails closed. Other failures propagate (a check not made never passes).
    """
    if not needs_membership(rights, doc) or rights.room_ids is None:
        return {}
    meanings: dict[str, RoomMeaning] = {}
    for name in dict.fromkeys(room_entries(doc)):
        known = memo.get(rights, name) if memo is not None else None
        if known is not None:
            meanings[name] = known
            continue
        ids: set[str] = set()
        unidentified = False
        for lookup in ({"room_id": name}, {"room_name": name}):
            try:
                room = await rest.rooms_info(**lookup)
            except ServerRejected as exc:
                if exc.error_type == "error-room-not-found":
                    continue
                if exc.error_type not in _ROOM_EXISTS and exc.error not in _ROOM_EXISTS:
                    raise
                if "room_id" in lookup:
                    ids.add(name)
                elif rights.room_ids_by_name is not None and name in rights.room_ids_by_name:
                    ids.add(rights.room_ids_by_name[name])
                else:
                    unidentified = True
                continue
            room_id = room.get("_id")
            if isinstance(room_id, str):
                ids.add(room_id)
            else:
                unidentified = True
        meanings[name] = RoomMeaning(frozenset(ids), unidentified)
        if memo is not None:
            memo.put(rights, name, meanings[name])
    return meanings


def channel_rule(rights: CallerRights, doc: Document, rooms: RoomMeanings) -> Decision:
    """The channel checks an update runs for the caller, on the channels being written.

    Incoming (§2.4.3 step 6): every `#`/`@` entry needs the caller's membership unless the caller
    holds BOTH incoming permissions. Outgoing (§2.4.5): an event without channels needs
    manage-outgoing; the `all_private_groups`/`all_direct_messages` scopes need manage-outgoing;
    `#`/`@` entries need membership unless the caller holds BOTH outgoing permissions.
    Entries the server rejects for everyone (bad syntax, unknown rooms) are the server's to
    report on the bot's own call. `rooms` says what each `#x` can mean (`room_meanings`).
    """
    kind, _creator, raw = _fields(doc)
    if kind not in TYPE_PERMISSIONS:
        return Decision(False, (), f"unknown integration type {kind!r}")
    perm_all, perm_own = TYPE_PERMISSIONS[kind]
    channels = raw.get("channel")
    entries = [str(c).strip() for c in channels] if isinstance(channels, list) else []
    if kind == OUTGOING:
        event = raw.get("event")
        if event in CHANNELLESS_EVENTS:
            if rights.has(MANAGE_OUTGOING):
                return Decision(True)
            return Decision(
                False, (MANAGE_OUTGOING,), f"an outgoing {event} integration can only be changed with {MANAGE_OUTGOING}"
            )
        for entry in entries:
            if entry in PRIVILEGED_SCOPES and not rights.has(MANAGE_OUTGOING):
                return Decision(False, (MANAGE_OUTGOING,), f"the {entry} scope needs {MANAGE_OUTGOING}")
    bypass = rights.has(perm_all) and rights.has(perm_own)
    if bypass:
        return Decision(True)
    lacking = tuple(p for p in (perm_all, perm_own) if not rights.has(p))
    for entry in entries:
        if not entry.startswith(("#", "@")):
            continue
        member = rights.is_member(entry, rooms)
        if member is None:
            return Decision(
                False,
                lacking,
                f"it posts to {entry}: Rocket.Chat requires membership of every channel unless you have both "
                f"{perm_all} and {perm_own}, and the bot cannot see your rooms (it lacks view-other-user-channels)",
            )
        if not member:
            why = "a direct-message target" if entry.startswith("@") else "a room you are not a member of"
            return Decision(
                False,
                lacking,
                f"it posts to {entry}, {why}; Rocket.Chat only allows that with both {perm_all} and {perm_own}",
            )
    return Decision(True)


def may_write(rights: CallerRights, doc: Document, rooms: RoomMeanings) -> Decision:
    """Everything the server would check before storing `doc` as the caller's update:
    the permission fallback first, then the channel rules for the channels in `doc`."""
    decision = may_update(rights, doc)
    return decision if not decision.allowed else channel_rule(rights, doc, rooms)


# --- the cache ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    rights: CallerRights
    expires: float


@dataclass(frozen=True)
class _FreshRead:
    """The latest `users.info` read fresh for a caller (`RightsCache.get(fresh=True)`)."""

    key: tuple[str, int, int]  # the user and the invalidation generations it began under
    began: float
    read: asyncio.Task[CallerRights]


# A fresh read of a caller's rights is shared by their other commands that arrived before it
# began, for at most this many seconds (a command that waited longer in its lane reads again).
SHARED_READ_AGE: Final = 1.0
FRESH_READS_KEPT: Final = 256  # callers whose latest fresh read is remembered before old ones are dropped


class RightsCache:
    """Callers' rights with a short TTL, dropped as soon as Rocket.Chat announces a change.

    `permissions-changed` updates the table and drops every entry; `roles-change` drops the
    named user (or everyone when no user is named). A fetch that overlaps an invalidation is
    returned but not cached, so a change always takes effect on the next command.

    Concurrent misses for the same user share one `users.info` call (a burst of commands from
    one person would otherwise fetch the same rights once per command), but only misses under
    the same invalidation generations: a command that starts after an invalidation never joins
    a fetch that began before it. With `ttl=0` (no caching) every call fetches, and so does every
    `fresh` call: Rocket.Chat announces role and permission changes, but not a room membership
    ended or an account deactivated, so a command that changes something reads them itself.

    Announcements heard are the only thing keeping the table and the cache current, so when some
    may have been missed (the realtime session dropped, or its subscriptions became ready after
    the table was read: `unheard`), nothing cached counts any more and the table is read again
    before the next decision; if that read fails, the decision fails (nothing is allowed on a
    table that may have missed a permission taken away). Once the announcements stop for good (a
    subscription to them ended: `deafened`), nothing is cached and every decision reads the table.
    """

    def __init__(
        self,
        rest: RestClient,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        table: PermissionTable | None = None,
    ) -> None:
        self._rest = rest
        self._ttl = ttl
        self._clock = clock
        self.table = table if table is not None else PermissionTable()
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self._user_generation: dict[str, int] = {}
        self._fetching: dict[tuple[str, int, int], asyncio.Future[CallerRights]] = {}
        self._fresh: dict[str, _FreshRead] = {}
        # `unheard` counts the moments announcements may have been missed; `_read_at` is that count
        # when the table in use began to be read: behind it, the table is read again before deciding.
        self._unheard = 0
        self._read_at = 0
        self._loading: asyncio.Task[None] | None = None
        self._deaf = False  # `deafened`: every decision reads the table again

    async def load_permissions(self) -> None:
        """(Re)load the whole permission table, e.g. at start and after a realtime reconnect."""
        unheard = self._unheard
        if self.table.replace(await self._rest.permissions_list_all()):
            self.invalidate_all()  # rights worked out with the table as it was no longer count
        self._read_at = max(self._read_at, unheard)

    def unheard(self) -> None:
        """Rocket.Chat's announcements may have been missed: the realtime session dropped, or was
        (re)established after the table was read. Every cached caller is dropped, and the table is
        read again before the next decision (`get`): a permission taken from a role meanwhile must
        not count, not even once, on this replica, for a command that changes something either
        (a fresh read of the caller's roles is judged with this table)."""
        self._unheard += 1
        self.invalidate_all()

    def deafened(self) -> None:
        """Announcements will not come any more (a subscription to them ended, and is not made
        again): from now on nothing is cached, and every decision reads the table again first."""
        self._deaf = True
        self._ttl = 0.0
        self.unheard()

    def current(self) -> bool:
        """Whether the permission table may be used as it is (loaded, and nothing missed since)."""
        return self.table.loaded and self._read_at == self._unheard

    async def refresh(self) -> None:
        """Make the table current (`current`) as of this call: one load shared by every decision
        waiting for it, begun again if announcements were missed (`unheard`) before it began. A
        load that fails raises: no decision rests on a table that may have missed a change."""
        wanted = self._unheard
        while not self.table.loaded or self._read_at < wanted:
            if self._loading is None or self._loading.done():
                self._loading = background(self.load_permissions())
            # Shielded: one waiter being cancelled (its command stopped) must not cancel the others'.
            await asyncio.shield(self._loading)

    def moment(self) -> float:
        """Now, on this cache's clock: what a command notes when it arrives (`get(since=…)`)."""
        return self._clock()

    async def get(self, user_id: str, *, fresh: bool = False, since: float | None = None) -> CallerRights:
        """The caller's rights; `fresh=True` reads them from Rocket.Chat now (and caches that),
        for a command about to change something: a room left or a role cut a moment ago counts.

        `since` (with `fresh`): when the command arrived (`moment()`). A read for the same caller
        begun at or after that moment, and at most `SHARED_READ_AGE` seconds ago, is as fresh as
        one begun now and is shared instead (done or in flight, under the same invalidation
        generations): a burst of commands from one person reads their rights once, not once per
        command, and each command is still judged on rights read after it was sent."""
        if self._deaf:
            self.unheard()  # nothing tells of a change any more: the table as it is now
        if not self.current():
            await self.refresh()
        entry = self._entries.get(user_id)
        if entry is not None and self._clock() < entry.expires and not fresh:
            return entry.rights
        key = self._key(user_id)
        if fresh:
            # Shielded: one waiter being cancelled (its command stopped) must not cancel the others'.
            return await asyncio.shield(self._fresh_read(key, since))
        if self._ttl <= 0:
            return await self._fetch(key)
        fetching = self._fetching.get(key)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch(key))
            self._fetching[key] = fetching
            fetching.add_done_callback(lambda done: self._fetched(key, done))
        # Shielded: one waiter being cancelled (its command stopped) must not cancel the others'.
        return await asyncio.shield(fetching)

    def begin_fresh(self, user_id: str, since: float) -> asyncio.Future[CallerRights]:
        """`get(user_id, fresh=True, since=since)`, begun now with no task of its own in between:
        its request goes out at the loop's next turn (the reads ahead of a claim, sent before the
        claim's statement: bot/runtime/read_ahead.py). Cancelling the future returned cancels no
        one else's wait for that read."""
        if self._deaf or not self.current():
            return background(self.get(user_id, fresh=True, since=since))
        return observed(asyncio.shield(self._fresh_read(self._key(user_id), since)))

    def _key(self, user_id: str) -> tuple[str, int, int]:
        return user_id, self._generation, self._user_generation.get(user_id, 0)

    def _fresh_read(self, key: tuple[str, int, int], since: float | None) -> asyncio.Task[CallerRights]:
        """The read a fresh `get` waits for: one begun since `since` and recently enough, or a new one."""
        now = self._clock()
        latest = self._fresh.get(key[0])
        if (
            since is not None
            and latest is not None
            and latest.key == key
            and latest.began >= max(since, now - SHARED_READ_AGE)
            and not (latest.read.done() and (latest.read.cancelled() or latest.read.exception() is not None))
        ):
            return latest.read
        read = background(self._fetch(key))
        # Kept in the order they began (a caller's new read moves to the end), so the reads too old
        # to be shared are dropped from the front, each once, rather than the whole map rebuilt.
        self._fresh.pop(key[0], None)
        while len(self._fresh) >= FRESH_READS_KEPT:
            oldest = next(iter(self._fresh))
            if self._fresh[oldest].began >= now - SHARED_READ_AGE:
                break
            del self._fresh[oldest]
        self._fresh[key[0]] = _FreshRead(key, now, read)
        return read

    def known(self, user_id: str) -> CallerRights | None:
        """The caller's rights as cached now (None when not, or no longer): no read, no decision
        that changes anything may rest on them (`get(fresh=True)` for that)."""
        entry = self._entries.get(user_id)
        return entry.rights if entry is not None and self._clock() < entry.expires else None

    def stamp(self, user_id: str) -> tuple[int, int]:
        """Where the announced changes stand for `user_id`: a later stamp differs once Rocket.Chat
        announced a change of their roles or of the permissions (rights read before it are old)."""
        return self._generation, self._user_generation.get(user_id, 0)

    def _fetched(self, key: tuple[str, int, int], done: asyncio.Future[CallerRights]) -> None:
        if self._fetching.get(key) is done:
            del self._fetching[key]
        if not done.cancelled():
            done.exception()  # observed here too, so a failure nobody waits for any more is not logged as lost

    async def _fetch(self, key: tuple[str, int, int]) -> CallerRights:
        """Fetch and, unless invalidated since `key`'s generations were read, cache."""
        user_id, generation, user_generation = key
        user = await self._rest.users_info(user_id=user_id, include_rooms=True)
        rights = CallerRights.of(user, self.table)
        unchanged = generation == self._generation and user_generation == self._user_generation.get(user_id, 0)
        if unchanged and self._ttl > 0:
            self._entries[user_id] = _Entry(rights, self._clock() + self._ttl)
        return rights

    def invalidate(self, user_id: str) -> None:
        self._entries.pop(user_id, None)
        self._user_generation[user_id] = self._user_generation.get(user_id, 0) + 1

    def invalidate_all(self) -> None:
        self._entries.clear()
        self._generation += 1

    def on_permissions_changed(self, args: Sequence[Any]) -> None:
        """Realtime `stream-notify-logged` / `permissions-changed` with its raw `args`."""
        changed = self.table.apply_event(args)
        if changed is None:
            # A payload we cannot apply: reload the whole table before the next decision.
            self.table.loaded = False
        log.info("authz.permissions_changed", permission=changed)
        self.invalidate_all()

    def on_roles_change(self, args: Sequence[Any]) -> None:
        """Realtime `stream-notify-logged` / `roles-change`: `[{type, _id, u?, scope?}]`."""
        payload = args[0] if args and isinstance(args[0], Mapping) else None
        user = payload.get("u") if payload is not None else None
        user_id = user.get("_id") if isinstance(user, Mapping) else None
        if isinstance(user_id, str):
            self.invalidate(user_id)
        else:
            self.invalidate_all()

    def on_role_event(self, args: Sequence[Any]) -> None:
        """Realtime `stream-roles` / `roles` (a role inserted/changed/removed): drop everything."""
        self.invalidate_all()
