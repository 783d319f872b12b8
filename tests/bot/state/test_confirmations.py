"""Pending confirmations in the state store, on both backends: they belong to the caller and room
that asked, expire, are taken once (also by two replicas at once), and are seen by every process
on the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.state import confirmations
from bot.state.confirmations import APPLYING_BOUND, CODE_ALPHABET, CODE_LENGTH, ConfirmationStore, Status
from bot.state.store import StateStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Opens one more StateStore on the test's state (tests/bot/state/conftest.py `open_store`).
Opener = Callable[..., Awaitable[StateStore]]
TTL = timedelta(minutes=2)


@pytest.fixture
async def store(open_store: Opener) -> ConfirmationStore:
    return (await open_store()).confirmations


async def add(store: ConfirmationStore, *, user: str = "u1", room: str = "r1", at: datetime = T0) -> str:
    change = await store.add(
        user_id=user,
        room_id=room,
        integration_id="i1",
        snapshot={"_id": "i1", "alias": "old"},
        updates={"alias": "x"},
        now=at,
        ttl=TTL,
    )
    return change.code


async def test_codes_are_short_and_unambiguous(store: ConfirmationStore) -> None:
    # 200 callers, so that none of the codes is dropped for its caller's newer one: all are live.
    codes = {await add(store, user=f"u{n}") for n in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set(CODE_ALPHABET) & set("01OIL")
    assert await store.waiting() == 200


async def test_a_new_code_is_never_one_in_use(store: ConfirmationStore, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter("AAAA" + "AAAA" + "BBBB" + "AAAA" + "BBBB" + "CCCC")
    monkeypatch.setattr(confirmations.secrets, "choice", lambda _alphabet: next(drawn))
    assert [await add(store, user="u1"), await add(store, user="u2")] == ["AAAA", "BBBB"]
    # A code taken (being applied) or applied is in use as well.
    taken = await store.take("AAAA", user_id="u1", room_id="r1", now=T0)
    assert taken.change is not None
    await store.applied(taken.change, now=T0)
    assert await add(store, user="u3") == "CCCC"


async def test_the_owner_takes_it_once_in_the_same_room_case_insensitively(store: ConfirmationStore) -> None:
    code = await add(store)
    taken = await store.take(code.lower(), user_id="u1", room_id="r1", now=T0 + timedelta(seconds=5))
    assert taken.status is Status.OK
    assert taken.change is not None and taken.change.updates == {"alias": "x"}
    assert taken.change.snapshot == {"_id": "i1", "alias": "old"}
    # While its confirmation writes it, it is being applied (to its owner only); then it is gone.
    assert (await store.take(code, user_id="u1", room_id="r1", now=T0)).status is Status.APPLYING
    assert (await store.take(code, user_id="u2", room_id="r1", now=T0)).status is Status.FOREIGN
    assert (await store.take_latest(user_id="u1", room_id="r1", now=T0)).status is Status.NOTHING
    await store.release(taken.change)
    assert (await store.take(code, user_id="u1", room_id="r1", now=T0)).status is Status.UNKNOWN


async def test_an_unknown_code_is_unknown(store: ConfirmationStore) -> None:
    assert (await store.take("ZZZZ", user_id="u1", room_id="r1", now=T0)).status is Status.UNKNOWN


async def test_someone_else_or_another_room_gets_nothing_and_leaves_it_for_the_owner(
    store: ConfirmationStore,
) -> None:
    code = await add(store)
    assert (await store.take(code, user_id="u2", room_id="r1", now=T0)).status is Status.FOREIGN
    assert (await store.take(code, user_id="u1", room_id="r2", now=T0)).status is Status.FOREIGN
    assert (await store.take(code, user_id="u1", room_id="r1", now=T0)).status is Status.OK


async def test_an_expired_one_is_reported_as_expired_then_forgotten(store: ConfirmationStore) -> None:
    code = await add(store)
    assert (await store.take(code, user_id="u1", room_id="r1", now=T0 + TTL)).status is Status.EXPIRED
    assert (await store.take(code, user_id="u2", room_id="r1", now=T0 + TTL)).status is Status.FOREIGN
    later = T0 + TTL + timedelta(hours=1)
    assert (await store.take(code, user_id="u1", room_id="r1", now=later)).status is Status.UNKNOWN
    assert await store.waiting() == 1  # not pruned yet, but forgotten all the same
    assert await store.prune(later) == 1
    assert await store.waiting() == 0


async def test_adding_prunes_what_is_past_remembering(store: ConfirmationStore) -> None:
    await add(store, user="u1")
    await add(store, user="u2", at=T0 + TTL + timedelta(hours=1))
    assert await store.waiting() == 1


async def test_yes_takes_the_callers_latest_in_this_room(store: ConfirmationStore) -> None:
    await add(store, at=T0)
    latest = await add(store, at=T0 + timedelta(seconds=1))
    await add(store, room="r2", at=T0 + timedelta(seconds=2))
    await add(store, user="u2", at=T0 + timedelta(seconds=3))
    taken = await store.take_latest(user_id="u1", room_id="r1", now=T0 + timedelta(seconds=4))
    assert taken.status is Status.OK and taken.change is not None and taken.change.code == latest
    assert (await store.take_latest(user_id="u3", room_id="r1", now=T0)).status is Status.NOTHING


async def test_a_resumed_yes_finds_the_change_it_was_applying_and_nobody_else_does(store: ConfirmationStore) -> None:
    code = await add(store, at=T0)
    first = await store.take_latest(user_id="u1", room_id="r1", now=T0 + timedelta(seconds=1))
    assert first.status is Status.OK  # taken; the process then dies while applying it
    later = T0 + timedelta(seconds=2)
    assert (await store.take_latest(user_id="u1", room_id="r1", now=later)).status is Status.NOTHING
    resumed = await store.take_latest(user_id="u1", room_id="r1", now=later, resuming=True)
    assert resumed.status is Status.APPLYING and resumed.change is not None and resumed.change.code == code
    other = await store.take_latest(user_id="u2", room_id="r1", now=later, resuming=True)
    assert other.status is Status.NOTHING


async def test_a_resumed_yes_finds_the_change_it_was_applying_before_one_previewed_since(
    store: ConfirmationStore,
) -> None:
    """Its process died while applying; before its lease ran out, the caller previewed another
    change in that room. The resumed `yes` is answered with the change it took, not the newer one."""
    code = await add(store, at=T0)
    assert (await store.take_latest(user_id="u1", room_id="r1", now=T0 + timedelta(seconds=1))).status is Status.OK
    newer = await add(store, at=T0 + timedelta(seconds=20))
    later = T0 + timedelta(seconds=40)
    resumed = await store.take_latest(user_id="u1", room_id="r1", now=later, resuming=True)
    assert resumed.status is Status.APPLYING and resumed.change is not None and resumed.change.code == code
    # The newer one still waits for its own confirmation.
    fresh = await store.take_latest(user_id="u1", room_id="r1", now=later)
    assert fresh.status is Status.OK and fresh.change is not None and fresh.change.code == newer


async def test_a_resumed_bulk_yes_finds_its_bulk_preview_applied_and_never_another_change(
    store: ConfirmationStore,
) -> None:
    """Applied before its process died (its answer not stored yet): the resumed bulk `yes` is
    handed its own preview, applied, not a newer `set` preview nor "nothing waiting"."""
    bulk = await store.add(
        user_id="u1",
        room_id="r1",
        integration_id=confirmations.BULK_TARGET,
        snapshot={"members": []},
        updates={"args": []},
        now=T0,
        ttl=TTL,
    )
    taken = await store.take_latest(user_id="u1", room_id="r1", now=T0 + timedelta(seconds=1))
    assert taken.status is Status.OK and taken.change is not None and taken.change.code == bulk.code
    await store.applied(taken.change, now=T0 + timedelta(seconds=2))
    await add(store, at=T0 + timedelta(seconds=20))  # a `set` previewed meanwhile
    later = T0 + timedelta(seconds=40)
    resumed = await store.take_latest(
        user_id="u1", room_id="r1", now=later, resuming=True, begun=T0 + timedelta(seconds=1)
    )
    assert resumed.status is Status.APPLIED and resumed.change is not None and resumed.change.code == bulk.code


async def test_yes_on_an_expired_latest_says_expired(store: ConfirmationStore) -> None:
    await add(store)
    assert (await store.take_latest(user_id="u1", room_id="r1", now=T0 + TTL)).status is Status.EXPIRED
    later = T0 + TTL + timedelta(hours=1)
    assert (await store.take_latest(user_id="u1", room_id="r1", now=later)).status is Status.NOTHING


async def test_one_caller_cannot_pile_up_pending_changes(open_store: Opener) -> None:
    store = ConfirmationStore((await open_store()).database, per_caller=3)
    codes = [await add(store, at=T0 + timedelta(seconds=i)) for i in range(5)]
    await add(store, user="u2")  # someone else's do not count
    assert await store.waiting() == 4
    assert (await store.take(codes[0], user_id="u1", room_id="r1", now=T0)).status is Status.UNKNOWN
    assert (await store.take(codes[1], user_id="u1", room_id="r1", now=T0)).status is Status.UNKNOWN
    assert (await store.take(codes[2], user_id="u1", room_id="r1", now=T0)).status is Status.OK
    assert (await store.take(codes[4], user_id="u1", room_id="r1", now=T0)).status is Status.OK


async def test_a_pending_change_never_shows_its_documents_in_a_repr(store: ConfirmationStore) -> None:
    change = await store.add(
        user_id="u1",
        room_id="r1",
        integration_id="i1",
        snapshot={"token": "very-secret-token"},
        updates={"token": "new-secret-token"},
        now=T0,
        ttl=TTL,
    )
    taken = await store.take(change.code, user_id="u1", room_id="r1", now=T0)
    assert "secret" not in repr(change) and "secret" not in repr(taken)


async def test_an_applied_one_is_reported_as_applied_to_its_owner_then_forgotten(store: ConfirmationStore) -> None:
    code = await add(store)
    taken = await store.take(code, user_id="u1", room_id="r1", now=T0)
    assert taken.change is not None
    await store.applied(taken.change, now=T0 + timedelta(seconds=1))
    await store.release(taken.change)  # what a confirmation does last, applied or not
    again = await store.take(code, user_id="u1", room_id="r1", now=T0 + timedelta(minutes=5))
    assert again.status is Status.APPLIED and again.applied_at == T0 + timedelta(seconds=1)
    assert again.change is not None and again.change.snapshot == {"_id": "i1", "alias": "old"}
    assert (await store.take(code, user_id="u2", room_id="r1", now=T0)).status is Status.FOREIGN
    later = T0 + timedelta(seconds=1) + timedelta(hours=1)
    assert (await store.take(code, user_id="u1", room_id="r1", now=later)).status is Status.UNKNOWN
    assert await store.prune(later) == 1


async def test_a_take_whose_confirmation_died_is_being_applied_only_for_a_while(open_store: Opener) -> None:
    """The process that took it was killed mid-write: its row stays `applying`. Within the bound
    that is "being applied"; after it, the owner may take it again while it has not expired
    (confirm.py writes it only onto the very document it was previewed on)."""
    store = ConfirmationStore((await open_store()).database, applying_for=timedelta(seconds=30))
    code = await store.add(
        user_id="u1", room_id="r1", integration_id="i1", snapshot={}, updates={}, now=T0, ttl=timedelta(minutes=10)
    )
    dead = await store.take(code.code, user_id="u1", room_id="r1", now=T0)
    assert dead.change is not None
    soon = T0 + timedelta(seconds=29)
    assert (await store.take(code.code, user_id="u1", room_id="r1", now=soon)).status is Status.APPLYING
    after = T0 + timedelta(seconds=31)
    assert (await store.take(code.code, user_id="u2", room_id="r1", now=after)).status is Status.FOREIGN
    again = await store.take_latest(user_id="u1", room_id="r1", now=after)
    assert again.status is Status.OK and again.change is not None
    # The dead take, released late (it was only slow), does not forget the new one's.
    await store.release(dead.change)
    assert (await store.take(code.code, user_id="u1", room_id="r1", now=after)).status is Status.APPLYING
    await store.release(again.change)
    assert (await store.take(code.code, user_id="u1", room_id="r1", now=after)).status is Status.UNKNOWN


async def test_a_take_whose_confirmation_died_expires_like_a_waiting_one(open_store: Opener) -> None:
    store = (await open_store()).confirmations
    code = await add(store)
    assert (await store.take(code, user_id="u1", room_id="r1", now=T0)).status is Status.OK
    past_bound = T0 + APPLYING_BOUND + timedelta(seconds=1)
    assert (await store.take(code, user_id="u1", room_id="r1", now=past_bound)).status is Status.EXPIRED
    forgotten = T0 + TTL + timedelta(hours=1)
    assert (await store.take(code, user_id="u1", room_id="r1", now=forgotten)).status is Status.UNKNOWN
    assert await store.prune(forgotten) == 1


async def test_a_preview_from_one_process_is_confirmed_through_another_and_survives_a_restart(
    open_store: Opener,
) -> None:
    first = await open_store()
    code = await add(first.confirmations)
    await first.close()
    second, third = await open_store(), await open_store()
    taken = await second.confirmations.take(code, user_id="u1", room_id="r1", now=T0)
    assert taken.status is Status.OK and taken.change is not None
    assert (await third.confirmations.take(code, user_id="u1", room_id="r1", now=T0)).status is Status.APPLYING
    await second.confirmations.applied(taken.change, now=T0)
    assert (await third.confirmations.take(code, user_id="u1", room_id="r1", now=T0)).status is Status.APPLIED


async def test_two_replicas_taking_the_same_codes_at_once_get_each_exactly_once(open_store: Opener) -> None:
    """Two stores (two connection pools, like two replicas) confirm the same codes concurrently,
    by code and by `yes`: each change is handed out exactly once."""
    replicas = [(await open_store()).confirmations, (await open_store()).confirmations]
    codes = [await add(replicas[0], user=f"u{n}") for n in range(20)]

    async def confirm(store: ConfirmationStore, n: int, code: str) -> Status:
        if n % 2:
            return (await store.take_latest(user_id=f"u{n}", room_id="r1", now=T0)).status
        return (await store.take(code, user_id=f"u{n}", room_id="r1", now=T0)).status

    attempts = [confirm(store, n, code) for n, code in enumerate(codes) for store in replicas for _ in range(2)]
    results = await asyncio.gather(*attempts)
    per_code = [results[n * 4 : n * 4 + 4] for n in range(len(codes))]
    for statuses in per_code:
        assert statuses.count(Status.OK) == 1, statuses
        assert set(statuses) <= {Status.OK, Status.APPLYING, Status.NOTHING}, statuses
