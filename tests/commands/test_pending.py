"""Pending confirmations: they belong to the caller and room that asked, and expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands import pending
from commands.pending import CODE_ALPHABET, CODE_LENGTH, PendingChanges, Status

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=2)


def add(store: PendingChanges, *, user: str = "u1", room: str = "r1", at: datetime = T0) -> str:
    change = store.add(
        user_id=user,
        room_id=room,
        integration_id="i1",
        snapshot={"_id": "i1"},
        updates={"alias": "x"},
        now=at,
        ttl=TTL,
    )
    return change.code


def test_codes_are_short_and_unambiguous() -> None:
    store = PendingChanges()
    # 200 callers, so that none of the codes is dropped for its caller's newer one: all are live.
    codes = {add(store, user=f"u{n}") for n in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set(CODE_ALPHABET) & set("01OIL")


def test_a_new_code_is_never_one_still_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter("AAAA" + "AAAA" + "BBBB")  # the second draw repeats the first code
    monkeypatch.setattr(pending.secrets, "choice", lambda _alphabet: next(drawn))
    store = PendingChanges()
    assert [add(store, user="u1"), add(store, user="u2")] == ["AAAA", "BBBB"]


def test_the_owner_takes_it_once_in_the_same_room_case_insensitively() -> None:
    store = PendingChanges()
    code = add(store)
    taken = store.take(code.lower(), user_id="u1", room_id="r1", now=T0 + timedelta(seconds=5))
    assert taken.status is Status.OK
    assert taken.change is not None and taken.change.updates == {"alias": "x"}
    # While its confirmation writes it, it is being applied (to its owner only); then it is gone.
    assert store.take(code, user_id="u1", room_id="r1", now=T0).status is Status.APPLYING
    assert store.take(code, user_id="u2", room_id="r1", now=T0).status is Status.FOREIGN
    store.release(taken.change)
    assert store.take(code, user_id="u1", room_id="r1", now=T0).status is Status.UNKNOWN


def test_someone_else_or_another_room_gets_nothing_and_leaves_it_for_the_owner() -> None:
    store = PendingChanges()
    code = add(store)
    assert store.take(code, user_id="u2", room_id="r1", now=T0).status is Status.FOREIGN
    assert store.take(code, user_id="u1", room_id="r2", now=T0).status is Status.FOREIGN
    assert store.take(code, user_id="u1", room_id="r1", now=T0).status is Status.OK


def test_an_expired_one_is_reported_as_expired_then_forgotten() -> None:
    store = PendingChanges(remember=timedelta(hours=1))
    code = add(store)
    assert store.take(code, user_id="u1", room_id="r1", now=T0 + TTL).status is Status.EXPIRED
    assert store.take(code, user_id="u1", room_id="r1", now=T0 + TTL + timedelta(hours=1)).status is Status.UNKNOWN
    assert len(store) == 0


def test_yes_takes_the_callers_latest_in_this_room() -> None:
    store = PendingChanges()
    add(store, at=T0)
    latest = add(store, at=T0 + timedelta(seconds=1))
    add(store, room="r2", at=T0 + timedelta(seconds=2))
    add(store, user="u2", at=T0 + timedelta(seconds=3))
    taken = store.take_latest(user_id="u1", room_id="r1", now=T0 + timedelta(seconds=4))
    assert taken.change is not None and taken.change.code == latest
    assert store.take_latest(user_id="u3", room_id="r1", now=T0).status is Status.NOTHING


def test_yes_on_an_expired_latest_says_expired() -> None:
    store = PendingChanges()
    add(store)
    assert store.take_latest(user_id="u1", room_id="r1", now=T0 + TTL).status is Status.EXPIRED


def test_one_caller_cannot_pile_up_pending_changes() -> None:
    store = PendingChanges(per_caller=3)
    codes = [add(store, at=T0 + timedelta(seconds=i)) for i in range(5)]
    assert len(store) == 3
    assert store.take(codes[0], user_id="u1", room_id="r1", now=T0).status is Status.UNKNOWN
    assert store.take(codes[4], user_id="u1", room_id="r1", now=T0).status is Status.OK


def test_a_pending_change_never_shows_its_documents_in_a_repr() -> None:
    store = PendingChanges()
    change = store.add(
        user_id="u1",
        room_id="r1",
        integration_id="i1",
        snapshot={"token": "very-secret-token"},
        updates={"token": "new-secret-token"},
        now=T0,
        ttl=TTL,
    )
    assert "secret" not in repr(change)


def test_an_applied_one_is_reported_as_applied_to_its_owner_then_forgotten() -> None:
    store = PendingChanges(remember=timedelta(hours=1))
    code = add(store)
    taken = store.take(code, user_id="u1", room_id="r1", now=T0)
    assert taken.change is not None
    store.applied(taken.change, now=T0 + timedelta(seconds=1))
    again = store.take(code, user_id="u1", room_id="r1", now=T0 + timedelta(minutes=5))
    assert again.status is Status.APPLIED and again.applied_at == T0 + timedelta(seconds=1)
    assert store.take(code, user_id="u2", room_id="r1", now=T0).status is Status.FOREIGN
    later = T0 + timedelta(seconds=1) + timedelta(hours=1)
    assert store.take(code, user_id="u1", room_id="r1", now=later).status is Status.UNKNOWN
