"""The caller's rights: permission table, decisions (against independent restatements of the
contract's rules, over every combination), channel rules and the rights cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import BotLacksPermission, ServerRejected
from bot.integrations.authz import (
    INTEGRATION_PERMISSIONS,
    MANAGE_INCOMING,
    MANAGE_OUTGOING,
    MANAGE_OWN_INCOMING,
    MANAGE_OWN_OUTGOING,
    SHARED_READ_AGE,
    CallerRights,
    PermissionTable,
    RightsCache,
    RoomMeaning,
    RoomMemo,
    channel_rule,
    may_list,
    may_update,
    may_view,
    may_write,
    room_meanings,
    visible_in_list,
)
from bot.rocketchat.models import PermissionDoc, PermissionsSnapshot, UserInfo, UserRoom
from bot.rocketchat.rest import RestClient

ME = "caller1"
OTHER = "someone2"
ROLES = ("admin", "user", "bot", "ops", "devs")
TYPES = ("webhook-incoming", "webhook-outgoing")


def rights_from(table: dict[str, list[str]], roles: list[str], *, rooms: list[UserRoom] | None = None) -> CallerRights:
    user = UserInfo.model_validate({"_id": ME, "username": "caller", "roles": roles, "rooms": rooms})
    return CallerRights.of(user, PermissionTable(table))


def rights_with(*permissions: str, rooms: list[UserRoom] | None = None) -> CallerRights:
    return rights_from({p: ["r"] for p in permissions}, ["r"], rooms=rooms)


def doc(kind: str = "webhook-incoming", creator: str = OTHER, **extra: Any) -> dict[str, Any]:
    return {"_id": "i1", "type": kind, "name": "Guggy", "enabled": True, "_createdBy": {"_id": creator}, **extra}


# --- independent restatements of the contract ----------------------------------------------------


def reference_may_update(table: dict[str, list[str]], roles: list[str], document: dict[str, Any]) -> bool:
    """Contract §3.2 pseudo-rule, verbatim."""

    def has(permission: str) -> bool:
        return any(role in table.get(permission, []) for role in roles)

    incoming = document["type"] == "webhook-incoming"
    perm_all = "manage-incoming-integrations" if incoming else "manage-outgoing-integrations"
    perm_own = "manage-own-incoming-integrations" if incoming else "manage-own-outgoing-integrations"
    return has(perm_all) or (has(perm_own) and document["_createdBy"]["_id"] == ME)


def reference_visible(table: dict[str, list[str]], roles: list[str], document: dict[str, Any]) -> bool:
    """Contract §2.2: build the server's Mongo-style query, then evaluate it on the document."""

    def has(permission: str) -> bool:
        return any(role in table.get(permission, []) for role in roles)

    if has("manage-outgoing-integrations") and has("manage-incoming-integrations"):
        query: list[dict[str, str]] = [{}]
    elif has("manage-own-outgoing-integrations") and has("manage-own-incoming-integrations"):
        query = [{"_createdBy._id": ME}]
    else:
        query = []
        if has("manage-outgoing-integrations"):
            query.append({"type": "webhook-outgoing"})
        if has("manage-incoming-integrations"):
            query.append({"type": "webhook-incoming"})
        if has("manage-own-outgoing-integrations"):
            query.append({"_createdBy._id": ME, "type": "webhook-outgoing"})
        if has("manage-own-incoming-integrations"):
            query.append({"_createdBy._id": ME, "type": "webhook-incoming"})
    flat = {"type": document["type"], "_createdBy._id": document["_createdBy"]["_id"]}
    return any(all(flat[k] == v for k, v in clause.items()) for clause in query)


# Few roles, so that random tables and role sets overlap often and every combination of the
# four permissions is reached; plus noise permissions that must not matter.
role_tables = st.fixed_dictionaries(
    {p: st.lists(st.sampled_from(ROLES[:3]), unique=True) for p in INTEGRATION_PERMISSIONS},
    optional={"view-c-room": st.lists(st.sampled_from(ROLES), unique=True)},
)
role_sets = st.lists(st.sampled_from(ROLES), unique=True, min_size=1)
documents = st.builds(doc, kind=st.sampled_from(TYPES), creator=st.sampled_from((ME, OTHER)))


@settings(max_examples=400)
@given(table=role_tables, roles=role_sets, document=documents)
def test_may_update_is_the_contracts_rule(
    table: dict[str, list[str]], roles: list[str], document: dict[str, Any]
) -> None:
    rights = rights_from(table, roles)
    decision = may_update(rights, document)
    assert decision.allowed == reference_may_update(table, roles, document)
    assert may_view(rights, document).allowed == decision.allowed  # integrations.get uses the same rule
    if not decision.allowed:
        kind = "incoming" if document["type"] == "webhook-incoming" else "outgoing"
        assert f"manage-{kind}-integrations" in decision.missing
        if document["_createdBy"]["_id"] == ME:
            assert f"manage-own-{kind}-integrations" in decision.missing
        else:
            assert decision.missing == (f"manage-{kind}-integrations",)


@settings(max_examples=400)
@given(table=role_tables, roles=role_sets, document=documents)
def test_visible_in_list_is_the_contracts_filter(
    table: dict[str, list[str]], roles: list[str], document: dict[str, Any]
) -> None:
    rights = rights_from(table, roles)
    assert visible_in_list(rights, document) == reference_visible(table, roles, document)
    if visible_in_list(rights, document):
        assert may_list(rights).allowed


@settings(max_examples=200)
@given(table=role_tables, roles=role_sets)
def test_may_list_needs_any_of_the_four(table: dict[str, list[str]], roles: list[str]) -> None:
    rights = rights_from(table, roles)
    expected = any(any(r in table.get(p, []) for r in roles) for p in INTEGRATION_PERMISSIONS)
    assert may_list(rights).allowed == expected


COMBINATIONS = [
    (frozenset(p for bit, p in enumerate(INTEGRATION_PERMISSIONS) if mask >> bit & 1), kind, creator)
    for mask in range(16)
    for kind in TYPES
    for creator in (ME, OTHER)
]


@pytest.mark.parametrize(("held", "kind", "creator"), COMBINATIONS)
def test_every_combination_of_the_four_permissions(held: frozenset[str], kind: str, creator: str) -> None:
    table = {p: ["r"] for p in held}
    rights = rights_from(table, ["r"])
    document = doc(kind, creator=creator)
    assert may_update(rights, document).allowed == reference_may_update(table, ["r"], document)
    assert visible_in_list(rights, document) == reference_visible(table, ["r"], document)
    assert may_list(rights).allowed == bool(held)


def test_list_quirk_both_own_permissions_hide_others_even_with_an_all_permission() -> None:
    rights = rights_with(MANAGE_INCOMING, MANAGE_OWN_INCOMING, MANAGE_OWN_OUTGOING)
    theirs = doc("webhook-incoming", creator=OTHER)
    assert not visible_in_list(rights, theirs)
    assert visible_in_list(rights, doc("webhook-incoming", creator=ME))
    # ... while the update and get rules still allow it.
    assert may_update(rights, theirs).allowed
    assert may_view(rights, theirs).allowed


def test_room_roles_never_count_only_global_roles() -> None:
    # A caller who is room owner everywhere but has only the `user` global role.
    rooms = [UserRoom(rid="R1", name="ops", t="c", roles=("owner", "admin"))]
    rights = rights_from({MANAGE_INCOMING: ["admin", "owner"]}, ["user"], rooms=rooms)
    assert not may_update(rights, doc()).allowed


def test_unknown_type_is_refused_without_guessing() -> None:
    rights = rights_with(*INTEGRATION_PERMISSIONS)
    decision = may_update(rights, doc("webhook-weird"))
    assert not decision.allowed and "unknown integration type" in decision.reason


def test_missing_roles_mean_the_bot_lacks_view_full_other_user_info() -> None:
    user = UserInfo.model_validate({"_id": ME, "username": "caller"})
    with pytest.raises(BotLacksPermission) as caught:
        CallerRights.of(user, PermissionTable({}))
    assert caught.value.permission == "view-full-other-user-info"
    assert "view-full-other-user-info" in str(caught.value)


def test_the_account_type_is_kept_for_who_may_talk_to_the_bot() -> None:
    table = PermissionTable({})
    bot = UserInfo.model_validate({"_id": ME, "username": "deploy", "roles": ["user"], "type": "bot"})
    assert CallerRights.of(bot, table).user_type == "bot"
    assert CallerRights.of(UserInfo.model_validate({"_id": ME, "roles": []}), table).user_type is None


# --- channel rules ---------------------------------------------------------------------------------

OPS = UserRoom(rid="R-ops", name="ops", t="c")
# What each `#x` of these tests can mean, as `room_meanings` would find it on the server.
ROOMS = {
    "ops": RoomMeaning(frozenset({"R-ops"})),
    "R-ops": RoomMeaning(frozenset({"R-ops"})),
    "dev": RoomMeaning(frozenset({"R-dev"})),
}


def test_incoming_channels_need_membership_unless_both_incoming_permissions() -> None:
    member = rights_with(MANAGE_OWN_INCOMING, rooms=[OPS])
    stranger = rights_with(MANAGE_OWN_INCOMING, rooms=[])
    mine = doc(creator=ME, channel=["#ops"])
    assert may_write(member, mine, ROOMS).allowed
    refused = may_write(stranger, mine, ROOMS)
    assert not refused.allowed and "#ops" in refused.reason
    assert refused.missing == (MANAGE_INCOMING,)
    # By room id as well as by name.
    assert may_write(member, doc(creator=ME, channel=["#R-ops"]), ROOMS).allowed
    # Only the "all" permission (not both) still needs membership: the server's quirk.
    only_all = rights_with(MANAGE_INCOMING, rooms=[])
    assert may_update(only_all, mine).allowed
    assert not may_write(only_all, mine, ROOMS).allowed
    both = rights_with(MANAGE_INCOMING, MANAGE_OWN_INCOMING, rooms=[])
    assert may_write(both, doc(channel=["#ops", "@alice"]), ROOMS).allowed


def test_incoming_direct_message_targets_always_fail_without_both_permissions() -> None:
    dm_member = rights_with(MANAGE_OWN_INCOMING, rooms=[OPS, UserRoom(rid="alice-id", name="alice", t="d")])
    decision = may_write(dm_member, doc(creator=ME, channel=["@alice"]), ROOMS)
    assert not decision.allowed and "@alice" in decision.reason


def test_unknown_rooms_fail_closed_and_say_why() -> None:
    rights = rights_with(MANAGE_OWN_INCOMING, rooms=None)
    decision = may_write(rights, doc(creator=ME, channel=["#ops"]), ROOMS)
    assert not decision.allowed and "view-other-user-channels" in decision.reason


def test_outgoing_channel_less_events_need_manage_outgoing() -> None:
    own_only = rights_with(MANAGE_OWN_OUTGOING, rooms=[])
    created = doc("webhook-outgoing", creator=ME, event="roomCreated", channel=[])
    assert may_update(own_only, created).allowed
    refused = may_write(own_only, created, ROOMS)
    assert not refused.allowed and refused.missing == (MANAGE_OUTGOING,)
    assert may_write(rights_with(MANAGE_OUTGOING, rooms=[]), created, ROOMS).allowed


def test_outgoing_scopes() -> None:
    both_own = rights_with(MANAGE_OWN_OUTGOING, rooms=[])
    public = doc("webhook-outgoing", creator=ME, event="sendMessage", channel=["all_public_channels"])
    assert may_write(both_own, public, ROOMS).allowed
    for scope in ("all_private_groups", "all_direct_messages"):
        scoped = doc("webhook-outgoing", creator=ME, event="sendMessage", channel=[scope])
        assert may_write(both_own, scoped, ROOMS).missing == (MANAGE_OUTGOING,)
        assert may_write(rights_with(MANAGE_OUTGOING, MANAGE_OWN_OUTGOING), scoped, ROOMS).allowed


# A private group `PRIV1d` and, created later by someone else, a public channel *named* `PRIV1d`.
LOOKALIKE = {"PRIV1d": RoomMeaning(frozenset({"PRIV1d", "R-fake"}))}


def test_a_room_named_after_another_rooms_id_needs_membership_of_both() -> None:
    own = doc(creator=ME, channel=["#PRIV1d"])
    in_fake_only = rights_with(MANAGE_OWN_INCOMING, rooms=[UserRoom(rid="R-fake", name="PRIV1d", t="c")])
    refused = may_write(in_fake_only, own, LOOKALIKE)
    assert not refused.allowed and "#PRIV1d" in refused.reason
    in_both = rights_with(
        MANAGE_OWN_INCOMING,
        rooms=[UserRoom(rid="R-fake", name="PRIV1d", t="c"), UserRoom(rid="PRIV1d", name="secret", t="p")],
    )
    assert may_write(in_both, own, LOOKALIKE).allowed
    # A room the bot could not identify fails closed, as does an entry nobody looked up.
    unknown = {"PRIV1d": RoomMeaning(frozenset({"R-fake"}), unidentified=True)}
    assert not may_write(in_both, own, unknown).allowed
    assert not may_write(in_both, own, {}).allowed


class RoomsServer:
    """`rooms.info` of a workspace: rooms by id and by name, some the bot may not open."""

    def __init__(self, rooms: list[dict[str, Any]], hidden: set[str]) -> None:
        self.rooms, self.hidden = rooms, hidden
        self.calls: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.calls.append(params)
        key, value = next(iter(params.items()))
        field = "_id" if key == "roomId" else "name"
        room = next((r for r in self.rooms if r.get(field) == value), None)
        if room is None:
            return httpx.Response(400, json={"success": False, "errorType": "error-room-not-found", "error": "x"})
        if room["_id"] in self.hidden:
            return httpx.Response(400, json={"success": False, "error": "Not Allowed", "errorType": "not-allowed"})
        return httpx.Response(200, json={"room": room, "success": True})


async def test_room_meanings_looks_every_entry_up_by_id_and_by_name() -> None:
    server = RoomsServer(
        [{"_id": "PRIV1d", "name": "secret", "t": "p"}, {"_id": "R-fake", "name": "PRIV1d", "t": "c"},
         {"_id": "R-ops", "name": "ops", "t": "c"}, {"_id": "R-hid", "name": "hidden", "t": "p"}],
        hidden={"PRIV1d", "R-hid"},
    )  # fmt: skip
    rest = RestClient("https://chat.example.org", user_id="bot", auth_token="t", transport=httpx.MockTransport(server))
    caller = rights_with(MANAGE_OWN_INCOMING, rooms=[OPS])
    document = doc(creator=ME, channel=["#PRIV1d", "#ops", "#hidden", "#nowhere", "@alice"])
    meanings = await room_meanings(rest, caller, document)
    assert meanings == {
        "PRIV1d": RoomMeaning(frozenset({"PRIV1d", "R-fake"})),  # the hidden one by id, the public one by name
        "ops": RoomMeaning(frozenset({"R-ops"})),
        "hidden": RoomMeaning(frozenset(), unidentified=True),  # exists, the bot can't tell its id
        "nowhere": RoomMeaning(frozenset()),
    }
    # Nothing is looked up for a caller the membership rule does not apply to.
    server.calls.clear()
    both = rights_with(MANAGE_INCOMING, MANAGE_OWN_INCOMING, rooms=[])
    assert await room_meanings(rest, both, document) == {} and server.calls == []


async def test_a_memo_gives_each_entry_the_meaning_a_fresh_lookup_gives_looking_it_up_once() -> None:
    """`RoomMemo` (one per command, e.g. a bulk preview): the same meanings as looked up per
    document, the hidden, look-alike and unidentified rooms included, each entry asked once."""
    server = RoomsServer(
        [{"_id": "PRIV1d", "name": "secret", "t": "p"}, {"_id": "R-fake", "name": "PRIV1d", "t": "c"},
         {"_id": "R-ops", "name": "ops", "t": "c"}, {"_id": "R-hid", "name": "hidden", "t": "p"}],
        hidden={"PRIV1d", "R-hid"},
    )  # fmt: skip
    rest = RestClient("https://chat.example.org", user_id="bot", auth_token="t", transport=httpx.MockTransport(server))
    caller = rights_with(MANAGE_OWN_INCOMING, rooms=[OPS])
    documents = [
        doc(creator=ME, channel=["#PRIV1d", "#ops"]),
        doc(creator=ME, channel=["#ops", "#hidden"]),
        doc(creator=ME, channel=["#hidden", "#nowhere", "#PRIV1d"]),
        doc(creator=ME, channel=["#ops"]),
    ]
    fresh = [await room_meanings(rest, caller, d) for d in documents]
    server.calls.clear()
    memo = RoomMemo(caller)
    assert [await room_meanings(rest, caller, d, memo) for d in documents] == fresh
    asked = [tuple(call.items()) for call in server.calls]
    assert len(asked) == 2 * 4 and len(set(asked)) == len(asked)  # 4 entries, by id and by name, once each
    # The meaning of `#x` depends on the caller's rooms: a memo serves only the rights it was made for.
    other = rights_with(MANAGE_OWN_INCOMING, rooms=[])
    with pytest.raises(ValueError, match="RoomMemo"):
        await room_meanings(rest, other, documents[0], memo)


@settings(max_examples=300)
@given(
    perms=st.sets(st.sampled_from(INTEGRATION_PERMISSIONS)),
    kind=st.sampled_from(TYPES),
    channels=st.lists(st.sampled_from(["#ops", "#R-ops", "#dev", "@alice", "all_public_channels"]), max_size=3),
    creator=st.sampled_from((ME, OTHER)),
)
def test_may_write_is_permission_rule_and_membership_rule(
    perms: set[str], kind: str, channels: list[str], creator: str
) -> None:
    rights = rights_with(*perms, rooms=[OPS])
    document = doc(kind, creator=creator, event="sendMessage", channel=channels)
    incoming = kind == "webhook-incoming"
    perm_all = MANAGE_INCOMING if incoming else MANAGE_OUTGOING
    perm_own = MANAGE_OWN_INCOMING if incoming else MANAGE_OWN_OUTGOING
    permitted = perm_all in perms or (perm_own in perms and creator == ME)
    bypass = perm_all in perms and perm_own in perms
    members_ok = bypass or all(c in ("#ops", "#R-ops") for c in channels if c[0] in "#@")
    assert may_write(rights, document, ROOMS).allowed == (permitted and members_ok)
    assert channel_rule(rights, document, ROOMS).allowed == members_ok


# --- the permission table ------------------------------------------------------------------------


def test_permission_table_follows_realtime_events() -> None:
    table = PermissionTable()
    table.replace(PermissionsSnapshot(update=(PermissionDoc(_id=MANAGE_INCOMING, roles=("admin",)),)))
    assert table.permissions_of(["ops"]) == frozenset()
    assert table.apply_event(["updated", {"_id": MANAGE_INCOMING, "roles": ["admin", "ops"]}]) == MANAGE_INCOMING
    assert table.permissions_of(["ops"]) == {MANAGE_INCOMING}
    assert table.apply_event(["inserted", {"_id": "new-perm", "roles": ["ops"]}]) == "new-perm"
    assert table.permissions_of(["ops"]) == {MANAGE_INCOMING, "new-perm"}
    assert table.apply_event(["removed", {"_id": MANAGE_INCOMING}]) == MANAGE_INCOMING
    assert table.permissions_of(["ops", "admin"]) == {"new-perm"}
    assert table.apply_event(["changed", {"_id": "new-perm"}]) is None  # no roles: nothing to apply
    assert table.apply_event(["garbage"]) is None
    table.apply_delta(PermissionsSnapshot(update=(PermissionDoc(_id="x", roles=("ops",)),), remove=("new-perm",)))
    assert table.permissions_of(["ops"]) == {"x"}


# --- the cache ----------------------------------------------------------------------------------


class FakeServer:
    """users.info and permissions.listAll over MockTransport, with mutable roles."""

    def __init__(self) -> None:
        self.roles: dict[str, list[str] | None] = {ME: ["user"]}
        self.permissions: dict[str, list[str]] = {MANAGE_INCOMING: ["admin"], MANAGE_OWN_INCOMING: ["admin"]}
        self.calls: list[str] = []
        self.during_users_info: Callable[[], None] | None = None
        self.refused: set[str] = set()  # endpoints answered with an error

    def __call__(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[1]
        self.calls.append(endpoint)
        if endpoint in self.refused:
            return httpx.Response(400, json={"success": False, "error": "refused"})
        if endpoint == "permissions.listAll":
            update = [{"_id": p, "roles": r} for p, r in self.permissions.items()]
            return httpx.Response(200, json={"update": update, "remove": [], "success": True})
        if endpoint == "users.info":
            uid = request.url.params["userId"]
            user: dict[str, Any] = {"_id": uid, "username": uid, "rooms": []}
            if self.roles.get(uid) is not None:
                user["roles"] = self.roles[uid]
            if self.during_users_info is not None:
                self.during_users_info()
            return httpx.Response(200, content=json.dumps({"user": user, "success": True}))
        return httpx.Response(404, json={"success": False, "error": "Resource not found"})


def cache_for(server: FakeServer, now: list[float], ttl: float = 60.0) -> RightsCache:
    rest = RestClient("https://chat.example.org", user_id="bot", auth_token="t", transport=httpx.MockTransport(server))
    return RightsCache(rest, ttl=ttl, clock=lambda: now[0])


async def test_cache_serves_within_ttl_and_refetches_after() -> None:
    server, now = FakeServer(), [0.0]
    cache = cache_for(server, now)
    first = await cache.get(ME)
    assert first.roles == {"user"} and not first.has(MANAGE_INCOMING)
    await cache.get(ME)
    assert server.calls == ["permissions.listAll", "users.info"]
    now[0] = 61.0
    await cache.get(ME)
    assert server.calls.count("users.info") == 2


async def test_role_change_takes_effect_on_the_next_command() -> None:
    server, now = FakeServer(), [0.0]
    cache = cache_for(server, now)
    assert not (await cache.get(ME)).has(MANAGE_INCOMING)
    server.roles[ME] = ["user", "admin"]
    cache.on_roles_change([{"type": "added", "_id": "admin", "u": {"_id": ME, "username": "caller"}}])
    assert (await cache.get(ME)).has(MANAGE_INCOMING)


async def test_permission_change_event_updates_the_table_and_every_cached_caller() -> None:
    server, now = FakeServer(), [0.0]
    cache = cache_for(server, now)
    assert not (await cache.get(ME)).has(MANAGE_INCOMING)
    cache.on_permissions_changed(["updated", {"_id": MANAGE_INCOMING, "roles": ["admin", "user"]}])
    assert (await cache.get(ME)).has(MANAGE_INCOMING)
    assert server.calls.count("permissions.listAll") == 1  # applied from the event, no reload


async def test_an_unreadable_permission_event_reloads_the_table() -> None:
    server, now = FakeServer(), [0.0]
    cache = cache_for(server, now)
    await cache.get(ME)
    server.permissions[MANAGE_INCOMING] = ["user"]
    cache.on_permissions_changed(["changed", {"_id": MANAGE_INCOMING}])
    assert (await cache.get(ME)).has(MANAGE_INCOMING)
    assert server.calls.count("permissions.listAll") == 2


async def test_changes_missed_while_unheard_count_before_the_next_decision() -> None:
    """Announcements missed (the realtime session dropped): a permission taken from a role
    meanwhile no longer counts, neither for rights read fresh nor for those cached."""
    server, now = FakeServer(), [0.0]
    server.permissions[MANAGE_INCOMING] = ["admin", "user"]
    cache = cache_for(server, now)
    assert (await cache.get(ME)).has(MANAGE_INCOMING)
    cache.unheard()
    server.permissions[MANAGE_INCOMING] = ["admin"]  # no event reaches this cache
    assert not (await cache.get(ME)).has(MANAGE_INCOMING)
    assert not (await cache.get(ME, fresh=True)).has(MANAGE_INCOMING)
    assert server.calls.count("permissions.listAll") == 2  # read again once, not per decision


async def test_a_failed_reload_after_missed_announcements_fails_the_decision_and_is_tried_again() -> None:
    server, now = FakeServer(), [0.0]
    server.permissions[MANAGE_INCOMING] = ["admin", "user"]
    cache = cache_for(server, now)
    assert (await cache.get(ME, fresh=True)).has(MANAGE_INCOMING)
    cache.unheard()
    server.permissions[MANAGE_INCOMING] = ["admin"]
    server.refused.add("permissions.listAll")
    with pytest.raises(ServerRejected):
        await cache.get(ME, fresh=True, since=cache.moment())
    with pytest.raises(ServerRejected):
        await cache.get(ME)  # nothing cached counts either
    server.refused.clear()
    assert not (await cache.get(ME, fresh=True)).has(MANAGE_INCOMING)


async def test_decisions_waiting_for_the_table_share_one_reload() -> None:
    server, now = FakeServer(), [0.0]
    server.roles.update({"u2": ["user"], "u3": ["admin"]})
    cache = cache_for(server, now)
    await cache.load_permissions()
    cache.unheard()
    await asyncio.gather(*(cache.get(user, fresh=True) for user in (ME, "u2", "u3")))
    assert server.calls.count("permissions.listAll") == 2


async def test_once_deafened_every_decision_reads_the_table() -> None:
    server, now = FakeServer(), [0.0]
    server.permissions[MANAGE_INCOMING] = ["admin", "user"]
    cache = cache_for(server, now)
    assert (await cache.get(ME)).has(MANAGE_INCOMING)
    cache.deafened()
    assert (await cache.get(ME)).has(MANAGE_INCOMING)
    server.permissions[MANAGE_INCOMING] = ["admin"]  # no event will ever say so
    assert not (await cache.get(ME)).has(MANAGE_INCOMING)
    assert not (await cache.get(ME, fresh=True)).has(MANAGE_INCOMING)
    assert server.calls.count("permissions.listAll") == 4


async def test_a_fetch_overlapping_an_invalidation_is_not_cached() -> None:
    server, now = FakeServer(), [0.0]
    cache = cache_for(server, now)
    # A roles-change for the caller arrives while users.info is in flight.
    server.during_users_info = lambda: cache.invalidate(ME)
    await cache.get(ME)
    server.during_users_info = None
    await cache.get(ME)
    assert server.calls.count("users.info") == 2


async def test_a_burst_of_commands_from_one_caller_looks_their_rights_up_once() -> None:
    server, now = FakeServer(), [0.0]
    cache = cache_for(server, now)
    await cache.load_permissions()
    found = await asyncio.gather(*(cache.get(ME) for _ in range(20)))
    assert server.calls.count("users.info") == 1
    assert all(rights == found[0] for rights in found)


async def test_a_lookup_started_after_a_role_change_does_not_join_an_earlier_one() -> None:
    server, now = FakeServer(), [0.0]
    release = asyncio.Event()
    arrived = [asyncio.Event(), asyncio.Event()]

    async def slow_users_info(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("users.info"):
            return server(request)
        answer = server(request)  # the roles as they are when the request arrives
        arrived[server.calls.count("users.info") - 1].set()
        await release.wait()
        return answer

    rest = RestClient(
        "https://chat.example.org", user_id="bot", auth_token="t", transport=httpx.MockTransport(slow_users_info)
    )
    cache = RightsCache(rest, ttl=60.0, clock=lambda: now[0])
    await cache.load_permissions()
    before = asyncio.create_task(cache.get(ME))
    await arrived[0].wait()
    server.roles[ME] = ["user", "admin"]
    cache.on_roles_change([{"type": "added", "_id": "admin", "u": {"_id": ME, "username": "caller"}}])
    after = asyncio.create_task(cache.get(ME))
    await arrived[1].wait()
    release.set()
    assert not (await before).has(MANAGE_INCOMING)
    assert (await after).has(MANAGE_INCOMING)
    assert (await cache.get(ME)).has(MANAGE_INCOMING)  # and what is cached is the newer answer


async def test_commands_that_arrived_before_a_fresh_read_began_share_it() -> None:
    """Ten commands of one caller in a burst: each is judged on rights read after it arrived,
    and one read serves them all (ten `users.info` before)."""
    server, now = FakeServer(), [100.0]
    cache = cache_for(server, now)
    await cache.load_permissions()
    arrived = cache.moment()
    now[0] += 0.01
    found = await asyncio.gather(*(cache.get(ME, fresh=True, since=arrived) for _ in range(10)))
    now[0] += 0.5
    found.append(await cache.get(ME, fresh=True, since=arrived))  # done, still recent: shared
    assert server.calls.count("users.info") == 1
    assert all(rights == found[0] for rights in found)


async def test_a_fresh_read_begun_before_a_command_arrived_or_too_long_ago_is_not_shared() -> None:
    server, now = FakeServer(), [100.0]
    cache = cache_for(server, now)
    await cache.load_permissions()
    await cache.get(ME, fresh=True, since=cache.moment())
    now[0] += 0.1
    server.roles[ME] = ["user", "admin"]  # a role given after that read (no event for it)
    arrived = cache.moment()
    assert (await cache.get(ME, fresh=True, since=arrived)).has(MANAGE_INCOMING)  # read again
    assert server.calls.count("users.info") == 2
    server.roles[ME] = ["user"]  # taken away again, announced by no event either
    now[0] += SHARED_READ_AGE + 0.1  # a command that arrived before the last read, but ran long after it
    assert not (await cache.get(ME, fresh=True, since=arrived)).has(MANAGE_INCOMING)
    assert server.calls.count("users.info") == 3
    assert not (await cache.get(ME, fresh=True)).has(MANAGE_INCOMING)  # no arrival: always its own read
    assert server.calls.count("users.info") == 4


async def test_a_fresh_read_is_not_shared_across_a_role_change() -> None:
    server, now = FakeServer(), [100.0]
    cache = cache_for(server, now)
    await cache.load_permissions()
    arrived = cache.moment()
    assert not (await cache.get(ME, fresh=True, since=arrived)).has(MANAGE_INCOMING)
    server.roles[ME] = ["user", "admin"]
    cache.on_roles_change([{"type": "added", "_id": "admin", "u": {"_id": ME, "username": "caller"}}])
    assert (await cache.get(ME, fresh=True, since=arrived)).has(MANAGE_INCOMING)


async def test_a_failed_fresh_read_is_not_shared() -> None:
    server, now = FakeServer(), [100.0]
    cache = cache_for(server, now)
    await cache.load_permissions()
    arrived = cache.moment()
    server.roles[ME] = None  # users.info without roles: the bot cannot judge
    with pytest.raises(BotLacksPermission):
        await cache.get(ME, fresh=True, since=arrived)
    server.roles[ME] = ["user"]
    assert (await cache.get(ME, fresh=True, since=arrived)).roles == {"user"}
    assert server.calls.count("users.info") == 2


async def test_cache_raises_when_the_bot_cannot_see_roles() -> None:
    server, now = FakeServer(), [0.0]
    server.roles[ME] = None
    cache = cache_for(server, now)
    with pytest.raises(BotLacksPermission):
        await cache.get(ME)


async def test_a_livechat_visitor_named_like_a_private_group_does_not_let_the_agent_in() -> None:
    """A livechat subscription (`t: "l"`) is named after the visitor, who types that name: it is
    not the room's name, so it never identifies a private group the bot cannot open."""
    server = RoomsServer([{"_id": "G-secret", "name": "secret-ops", "t": "p"}], hidden={"G-secret"})
    rest = RestClient("https://chat.example.org", user_id="bot", auth_token="t", transport=httpx.MockTransport(server))
    agent = rights_with(MANAGE_OWN_INCOMING, rooms=[UserRoom(rid="L-chat", name="secret-ops", t="l")])
    hook = doc(creator=ME, channel=["#secret-ops"])
    decision = may_write(agent, hook, await room_meanings(rest, agent, hook))
    assert not decision.allowed, decision
