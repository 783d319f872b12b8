"""The store's indexes answer exactly what a scan of its dicts answers.

Reference answers are computed here the slow way (a regex over every name, a filter over every
subscription), after random sequences of the operations that change what the indexes cover.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.control import SandboxControl
from sandbox.store import MessageEvent, RoomChangedEvent, RoomEvent, Store

# Names and needles that exercise the ASCII fast path and everything it must hand to the regex:
# the Kelvin sign and long s (which IGNORECASE matches against ASCII k and s), NUL, accents.
_ALPHABET = st.sampled_from(list("aAbBkKsS -_.1\u212a\u017f\x00éÉ"))
names = st.text(_ALPHABET, min_size=0, max_size=8)
needles = st.text(_ALPHABET, min_size=1, max_size=3)


def _reference(store: Store, needle: str, kind: str | None = None) -> list[str]:
    pattern = re.compile(re.escape(needle), re.IGNORECASE)
    return [
        i
        for i, d in store.integrations.items()
        if isinstance(d.get("name"), str) and pattern.search(d["name"]) and (kind is None or d.get("type") == kind)
    ]


@settings(max_examples=150, deadline=None)
@given(
    initial=st.lists(names, max_size=12),
    renames=st.lists(st.tuples(st.integers(0, 20), names), max_size=4),
    deletions=st.lists(st.integers(0, 20), max_size=3),
    probes=st.lists(needles, min_size=1, max_size=5),
)
def test_name_search_matches_a_case_insensitive_regex_over_every_name(
    initial: list[str], renames: list[tuple[int, str]], deletions: list[int], probes: list[str]
) -> None:
    store = Store()
    ids = [
        store.insert_integration({"name": n, "type": "webhook-incoming" if k % 2 else "webhook-outgoing"})["_id"]
        for k, n in enumerate(initial)
    ]
    for needle in probes[:1]:
        assert [d["_id"] for d in store.find_integrations(name=needle)] == _reference(store, needle)
    for index, new_name in renames:
        if ids and index < len(ids) and ids[index] in store.integrations:
            store.update_integration(ids[index], {"name": new_name})
    for index in deletions:
        if ids and index < len(ids):
            store.delete_integration(ids[index])
    store.insert_integration({"name": 42, "type": "webhook-incoming"})  # not a text: never matches
    for needle in probes:
        assert [d["_id"] for d in store.find_integrations(name=needle)] == _reference(store, needle)
        found = store.find_integrations(name=needle, kind="webhook-incoming")
        assert [d["_id"] for d in found] == _reference(store, needle, "webhook-incoming")


def test_found_integrations_are_copies_and_no_filter_finds_all() -> None:
    store = Store()
    doc = store.insert_integration({"name": "Guggy", "type": "webhook-incoming", "channel": ["#general"]})
    found = store.find_integrations(name="GUG")
    found[0]["channel"].append("#changed")
    assert store.get_integration(doc["_id"]) == doc
    assert [d["_id"] for d in store.find_integrations()] == [doc["_id"]]
    store.update_integration(doc["_id"], {}, unset_fields=["name"])
    assert store.find_integrations(name="gug") == []


def _subscriptions_scan(store: Store) -> dict[str, Any]:
    return {
        "users": {uid: [s["_id"] for (_r, u), s in store.subscriptions.items() if u == uid] for uid in store.users},
        "members": {rid: [u for (r, u) in store.subscriptions if r == rid] for rid in store.rooms},
        "counts": {rid: sum(1 for (r, _u) in store.subscriptions if r == rid) for rid in store.rooms},
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 2)), max_size=25))
def test_membership_indexes_agree_with_the_subscriptions(operations: list[tuple[bool, int, int]]) -> None:
    store = Store()
    users = [store.create_user(f"user{n}")._id for n in range(4)]
    rooms = [store.create_room(f"room{n}")["_id"] for n in range(3)]
    for join, user, room in operations:
        if join:
            store.add_member(rooms[room], users[user])
        else:
            store.remove_member(rooms[room], users[user])
    expected = _subscriptions_scan(store)
    for uid in users:
        assert [s["_id"] for s in store.user_subscriptions(uid)] == expected["users"][uid]
        assert [r["_id"] for r in store.user_rooms(uid)] == [rid for (rid, u) in store.subscriptions if u == uid]
    for rid in rooms:
        assert store.room_members(rid) == expected["members"][rid]
        assert store.rooms[rid]["usersCount"] == expected["counts"][rid]


def test_users_and_rooms_are_found_by_id_or_name() -> None:
    store = Store()
    alice = store.create_user("alice")
    room = store.create_room("ops", members=["alice"])
    assert store.find_user("alice") is alice and store.find_user(alice._id) is alice
    assert store.find_user("nobody") is None
    assert store.room_by_name("ops") is store.rooms[room["_id"]]
    assert store.find_room(room["_id"]) is store.find_room("ops")
    assert store.room_by_name("nowhere") is None


def test_a_new_message_changes_its_room_once_whatever_the_members() -> None:
    store = Store()
    control = SandboxControl(store)
    for name in ("alice", "bob", "carol"):
        control.create_user(name)
    control.create_room("ops", members=["alice", "bob"])
    events: list[Any] = []
    store.add_listener(events.append)
    control.post_message("alice", "ops", "hello")
    [changed] = [e for e in events if isinstance(e, RoomChangedEvent)]
    assert not any(isinstance(e, RoomEvent) for e in events)
    message = next(e for e in events if isinstance(e, MessageEvent))
    assert changed.room == message.room
    assert changed.room["lastMessage"]["msg"] == "hello"
