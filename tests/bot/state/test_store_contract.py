"""The storage protocol's one test suite, run on both backends: a SQLite file and a real PostgreSQL.

Each test opens stores the way processes do: `opened()` is one more process on the same state
(on SQLite, run one after the other, as the file lock demands; on PostgreSQL, at the same time,
as replicas are). What one backend promises, the other must too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from bot.errors import ConfigError, StateUnavailable
from bot.state.sqlite import SCHEMA_VERSION
from bot.state.store import AuditRecord, ClaimedCommand, StateStore, WriteIntent
from bot.state.timer_states import TimerEvent, TimerState
from bot.state.timer_store import EXTENSIONS_KEPT, TimerDraft
from tests.postgres_support import PostgresServer

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)

Opener = Callable[..., Awaitable[StateStore]]


@pytest.fixture
def opened(open_store: Opener) -> Opener:
    """One more process's store on the same state (tests/bot/state/conftest.py)."""
    return open_store


def audit(n: int, *, integration: str = "i1", message: str | None = None, action: str = "disable") -> AuditRecord:
    return AuditRecord(
        at=NOW + timedelta(seconds=n),
        actor_id="u1",
        actor_username="alice",
        integration_id=integration,
        integration_name=f"hook {integration}",
        integration_type="webhook-incoming",
        action=action,
        room_id="GENERAL",
        message_id=message,
        reason=f"reason {n}",
        before={"enabled": True, "n": n},
        after={"enabled": False, "n": n},
        until=NOW + timedelta(hours=1) if n % 2 else None,
    )


async def test_a_message_is_claimed_by_one_process_only(opened: Opener) -> None:
    first = await opened(owner="a")
    assert await first.claim_message("m1", "GENERAL", NOW, NOW) is True
    assert await first.claim_message("m1", "GENERAL", NOW, NOW) is False
    second = await opened(owner="b")
    assert await second.claim_message("m1", "GENERAL", NOW, NOW) is False
    assert await second.message_status("m1") == "claimed"
    # Only its owner closes a claim (a replica whose claim was taken over must not).
    assert await second.finish_message("m1", "ok") is False
    assert await first.message_status("m1") == "claimed"
    assert await first.finish_message("m1", "ok") is True
    assert await first.message_status("m1") == "done"
    assert await first.unfinished_messages() == []


async def test_a_burst_is_claimed_once_each_even_listed_twice(opened: Opener) -> None:
    store = await opened()
    burst = [(f"m{n}", "GENERAL", NOW) for n in range(1200)]  # more than one statement's worth
    assert await store.claim_messages([("m0", "GENERAL", NOW)], NOW) == {"m0"}
    taken = await store.claim_messages([*burst, ("m7", "GENERAL", NOW)], NOW)
    assert taken == {f"m{n}" for n in range(1, 1200)}
    assert await store.claim_messages(burst[:3], NOW) == set()


async def test_a_second_try_of_a_claim_returns_what_its_first_committed_unanswered(opened: Opener) -> None:
    """The first try's commit went through, its reply lost: its claims are the process's to run."""
    mine, other = await opened(owner="a"), await opened(owner="b")
    assert await mine.claim_messages([("m1", "GENERAL", NOW), ("m2", "GENERAL", NOW)], NOW) == {"m1", "m2"}
    assert await other.claim_messages([("m3", "GENERAL", NOW)], NOW) == {"m3"}
    assert await mine.finish_message("m2", "done") is True
    heard = [(f"m{n}", "GENERAL", NOW) for n in range(1, 5)]
    later = NOW + timedelta(seconds=1)
    tries = {message_id: [NOW - LEASE, NOW] for message_id, *_ in heard}
    assert await mine.claim_messages(heard, later, tried=tries) == {"m1", "m4"}
    # Claimed at another moment: an earlier command of this process, running already.
    again = [("m1", "GENERAL", NOW), ("m5", "GENERAL", NOW)]
    assert await mine.claim_messages(again, later + LEASE, tried={"m1": [later], "m5": [later]}) == {"m5"}
    # Claimed at a moment another command's claim failed: not this command's try.
    assert await mine.claim_messages([("m1", "GENERAL", NOW)], later + LEASE, tried={"m6": [NOW]}) == set()


async def test_replicas_racing_for_the_same_commands_each_win_a_disjoint_share(opened: Opener) -> None:
    stores = [await opened(owner=f"r{n}") for n in range(3)]
    commands = [(f"m{n}", "GENERAL", NOW) for n in range(300)]
    won = await asyncio.gather(*(s.claim_messages(commands, NOW) for s in stores))
    assert sum(len(w) for w in won) == 300
    assert set().union(*won) == {m for m, _, _ in commands}


async def test_a_dead_owners_claims_are_taken_over_after_its_lease_and_only_once(opened: Opener) -> None:
    dead = await opened(owner="dead", lease=LEASE)
    await dead.claim_messages([("m1", "R", NOW), ("m2", "R", NOW + timedelta(seconds=1))], NOW)
    await dead.claim_messages([("m3", "R", NOW)], NOW + timedelta(seconds=20))
    await dead.finish_message("m2", "ok")
    alive = [await opened(owner="a", lease=LEASE), await opened(owner="b", lease=LEASE)]
    # Within the lease: nobody takes them (the owner may still be running them).
    assert await alive[0].take_over(NOW + timedelta(seconds=10), expired_only=True) == []
    later = NOW + timedelta(seconds=31)
    taken = await asyncio.gather(*(s.take_over(later, expired_only=True) for s in alive))
    assert sorted(taken[0] + taken[1]) == ["m1"]  # m2 is finished, m3's lease runs until +50 s
    # Renewed by its new owner, it is not taken again; m3 expires later.
    winner = alive[0] if taken[0] else alive[1]
    assert await winner.renew_claims(later + timedelta(seconds=25), ["m1", "m3"]) == 1  # m3 is not its own
    assert await alive[0].take_over(later + timedelta(seconds=30), expired_only=True) == ["m3"]


async def test_no_expired_claim_is_taken_over_while_the_database_has_just_started(opened: Opener) -> None:
    """Every lease runs out while the database is away; the replicas that hold them renew them as
    soon as it is back, and must not lose them first to whichever replica looks first (one that
    answered its command "not run" during the outage would see it run by another)."""
    dead = await opened(owner="dead", lease=LEASE)
    await dead.claim_messages([("m1", "R", NOW)], NOW)
    other = await opened(owner="other", lease=LEASE)
    later = NOW + timedelta(seconds=31)
    if other.shared:  # up for less than a billion seconds: a replica waits
        assert await other.take_over(later, expired_only=True, settled=1e9) == []
    # Up for as long as it has been by now (the tests' own server may have started a moment ago).
    [[uptime]] = await other.database.rows(f"SELECT {other.database.uptime}", ())
    assert await other.take_over(later, expired_only=True, settled=float(uptime)) == ["m1"]


async def test_expired_claims_are_taken_over_when_the_database_servers_clock_went_back_since_it_started(
    opened: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's clock was stepped back after it started (a host synchronising its clock late
    after boot): its start time is then ahead of its clock, and its uptime stays negative for as
    long as the step. That is no restart just now: a dead replica's commands are taken over as
    usual, not held back for the size of the step.
    Was: an uptime below the settling time, negative included, held every take-over back."""
    dead = await opened(owner="dead", lease=LEASE)
    await dead.claim_messages([("m1", "R", NOW)], NOW)
    other = await opened(owner="other", lease=LEASE)
    # What `extract(epoch FROM now() - pg_postmaster_start_time())` gives an hour after such a step.
    monkeypatch.setattr(other.database, "uptime", "(-3600.0)")
    later = NOW + timedelta(seconds=31)
    assert await other.take_over(later, expired_only=True, settled=5.0) == ["m1"]


async def test_only_the_claims_still_running_are_renewed(opened: Opener) -> None:
    owner = await opened(owner="owner", lease=LEASE)
    await owner.claim_messages([("running", "R", NOW), ("ended unfinished", "R", NOW)], NOW)
    later = NOW + timedelta(seconds=20)
    assert await owner.renew_claims(later, {"running", "finished elsewhere"}) == 1
    other = await opened(owner="other", lease=LEASE)
    # The command that ended without finishing its claim is settled by whoever takes it over.
    assert await other.take_over(NOW + timedelta(seconds=31), expired_only=True) == ["ended unfinished"]


async def test_replicas_say_they_run_and_leave_and_a_silent_one_drops_off_the_list(opened: Opener) -> None:
    a, b = await opened(owner="a"), await opened(owner="b")
    if not a.shared:  # a file is one process's: only this one, and nothing stored
        assert await a.replicas(6.0) == ["a"]
        await a.leave()
        assert await b.replicas(6.0) == ["b"]
        return
    assert await a.replicas(6.0) == ["a"]
    assert a.database_clock is not None and abs(a.database_clock - time.time()) < 1  # the server's clock, read
    assert await b.replicas(6.0) == ["b", "a"]  # this one first, then the others
    assert await a.replicas(6.0) == ["a", "b"]
    await b.leave()
    assert await a.replicas(6.0) == ["a"]
    await b.replicas(6.0)
    await asyncio.sleep(0.3)
    assert await a.replicas(0.2) == ["a"]  # b said nothing for longer than that
    assert await b.replicas(6.0) == ["b", "a"]


async def test_a_stopping_process_releases_its_claims_for_the_others(opened: Opener) -> None:
    stopping = await opened(owner="stopping", lease=LEASE)
    await stopping.claim_messages([("m1", "R", NOW)], NOW)
    assert await stopping.release_claims() == 1
    other = await opened(owner="other", lease=LEASE)
    assert await other.take_over(NOW + timedelta(seconds=1), expired_only=True) == ["m1"]


async def test_a_restart_on_one_file_takes_every_claim_its_predecessor_left(opened: Opener) -> None:
    before = await opened(owner="before")
    await before.claim_messages([("m2", "R", NOW)], NOW + timedelta(seconds=1))
    await before.claim_messages([("m1", "R", NOW)], NOW)
    after = await opened(owner="after")
    # Not expired yet, but the process before is known to be gone (the file lock says so).
    assert await after.take_over(NOW + timedelta(seconds=2), expired_only=False) == ["m1", "m2"]
    assert await after.take_over(NOW + timedelta(seconds=2), expired_only=False) == []


async def test_prune_keeps_unfinished_claims(opened: Opener) -> None:
    store = await opened()
    await store.claim_messages([("old-done", "R", NOW), ("old-open", "R", NOW)], NOW)
    await store.finish_message("old-done", "ok")
    assert await store.prune_messages(NOW + timedelta(days=8)) == 1
    assert await store.message_status("old-open") == "claimed"
    assert await store.message_status("old-done") is None


async def test_cursors_only_move_forward(opened: Opener) -> None:
    store = await opened()
    await store.advance_cursors({"a": NOW, "b": NOW})
    await store.advance_cursor("a", NOW - timedelta(minutes=1))
    await store.advance_cursor("b", NOW + timedelta(minutes=1))
    assert await store.cursors() == {"a": NOW, "b": NOW + timedelta(minutes=1)}


async def test_write_intents_are_replaced_and_dropped_when_their_command_finishes(opened: Opener) -> None:
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW), ("m2", "R", NOW)], NOW)
    first = WriteIntent("m1", "i1", NOW, {"enabled": True}, {"enabled": False})
    await store.record_intent(first)
    again = WriteIntent("m1", "i1", NOW + timedelta(seconds=1), {"enabled": True}, {"enabled": False, "x": 1})
    await store.record_intent(again)
    await store.record_intent(WriteIntent("m2", "i2", NOW, {}, {"a": "ü ✓"}))
    assert await store.intents("m1") == [again]
    # Finished by its owner, a command's journal has served: dropped with the claim's close.
    assert await store.finish_message("m2", "ok") is True
    assert await store.intents("m2") == []
    assert await store.intents("m1") == [again]
    # A replica whose claim was taken over closes nothing, and leaves the journal to the new owner.
    other = await opened(owner="b")
    assert await other.finish_message("m1", "ok") is False
    assert await other.intents("m1") == [again]
    # Nothing is recorded for a command whose claim is another process's (nothing may be written).
    assert await other.record_intent(WriteIntent("m1", "i9", NOW, {}, {})) is False
    assert await other.intents("m1") == [again]
    # What no unfinished command holds any more (closed by an older release, which kept its
    # intents) is pruned.
    await store.claim_messages([("m3", "R", NOW)], NOW)
    assert await store.record_intent(WriteIntent("m3", "i3", NOW, {}, {})) is True
    await store.database.count("UPDATE processed_messages SET status = 'done' WHERE message_id = 'm3'")
    assert await other.prune_intents() == 1
    assert await other.intents("m1") == [again]


async def test_a_write_intent_keeps_the_text_of_its_command(opened: Opener) -> None:
    """What the command said when it ran, read back by a restart after its message was edited
    (bot/runtime/recovery.py); a retry's intent replaces the text with its own."""
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW)], NOW)
    said = "!integration disable `Guggy ü` because it pages ✓"
    await store.record_intent(WriteIntent("m1", "i1", NOW, {"enabled": True}, {"enabled": False}, text=said))
    await store.record_intent(WriteIntent("m1", "i2", NOW, {"enabled": True}, {"enabled": False}))
    assert [(i.integration_id, i.text) for i in await store.intents("m1")] == [("i1", said), ("i2", None)]


async def test_a_write_intent_keeps_the_author_of_its_command(opened: Opener) -> None:
    """Whose command it is, read back by a restart (by another process): a message another user
    posted with its id since is not that command (bot/runtime/recovery.py). A retry's intent
    replaces it with its own."""
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW)], NOW)
    await store.record_intent(WriteIntent("m1", "i1", NOW, {"enabled": True}, {"enabled": False}, author="u-old"))
    await store.record_intent(WriteIntent("m1", "i1", NOW, {"enabled": True}, {"enabled": False}, author="u-admin"))
    await store.record_intent(WriteIntent("m1", "i2", NOW, {"enabled": True}, {"enabled": False}))
    other = await opened(owner="b")
    assert [(i.integration_id, i.author) for i in await other.intents("m1")] == [("i1", "u-admin"), ("i2", None)]


async def test_write_intents_of_the_version_before_their_text_are_kept_by_the_migration(opened: Opener) -> None:
    """A database at version 11 (no `command_text` nor `command_author`) with an unfinished
    command's intent: opened by this release, it is migrated, and the intent is read as one
    without a text or an author."""
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW)], NOW)
    await store.database.count("ALTER TABLE write_intents DROP COLUMN command_text")
    await store.database.count("ALTER TABLE write_intents DROP COLUMN command_author")
    await store.database.count("ALTER TABLE processed_messages DROP COLUMN command_json")
    await store.database.count(
        "INSERT INTO write_intents (message_id, integration_id, at, before_json, intended_json)"
        " VALUES ('m1', 'i1', 0, '{\"enabled\": true}', '{\"enabled\": false}')"
    )
    if store.database.kind == "sqlite":
        await store.database.count("PRAGMA user_version=11")
    else:
        await store.database.count("UPDATE schema_version SET version = 11")
    await store.close()
    again = await opened(owner="a")
    assert await again.schema_version() == SCHEMA_VERSION
    (intent,) = await again.intents("m1")
    assert (intent.integration_id, intent.intended, intent.text, intent.author) == (
        "i1",
        {"enabled": False},
        None,
        None,
    )
    assert await again.claimed_command("m1") is None  # an older release's claim kept nothing of it


async def test_a_claim_keeps_what_its_command_said_until_it_is_closed(opened: Opener) -> None:
    """Its text, author and thread, with its room and time: what the recovery of a command killed
    mid-way rebuilds it from when its message was deleted or edited since (bot/runtime/recovery.py).
    Dropped when the claim is closed; a claim taken over keeps it; none for a claim without one."""
    store = await opened(owner="a")
    said = ClaimedCommand("!integration extend Guggy 1h", "u1", "edna", thread_id="T1")
    posted = NOW - timedelta(seconds=3)
    claimed = await store.claim_messages([("m1", "R", posted), ("m2", "R", NOW)], NOW, commands={"m1": said})
    assert claimed == {"m1", "m2"}
    assert await store.claimed_command("m1") == (said, "R", posted)
    assert await store.claimed_command("m2") is None
    other = await opened(owner="b")
    assert await other.take_over(NOW + timedelta(minutes=5)) == ["m1", "m2"]
    assert await other.claimed_command("m1") == (said, "R", posted)
    assert await other.finish_message("m1", "done")
    assert await other.claimed_command("m1") is None
    assert await store.claimed_command("unknown") is None


async def test_answers_whose_audit_row_is_still_to_come_are_known_to_every_process(opened: Opener) -> None:
    """A verified write is answered (or about to be); its audit row comes after the answer, in the
    process that runs the command. Another process reading the audit waits for those rows."""
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW), ("m2", "R", NOW), ("m3", "R", NOW), ("m4", "R", NOW)], NOW)
    for message in ("m1", "m2", "m3", "m4"):
        await store.record_intent(WriteIntent(message, "i1", NOW, {"enabled": True}, {"enabled": False}))
    for message in ("m1", "m3", "m4"):  # m2's write is not verified: not answered yet
        await store.verified_intent(message, "i1", {"enabled": False})
    await store.record(audit(1, integration="i1", message="m3"))  # m3's book-keeping is done
    other = await opened(owner="b")
    assert await other.unrecorded_answers(NOW, besides="m4") == {"m1"}
    assert await other.unrecorded_answers(NOW, besides="x") == {"m1", "m4"}
    # A claim whose lease ran out (its replica died) is left to the recovery, not waited for.
    assert await other.unrecorded_answers(NOW + 2 * LEASE, besides="x") == set()
    assert await store.finish_message("m1", "ok") is True
    assert await other.unrecorded_answers(NOW, besides="m4") == set()


async def test_an_audit_row_and_its_commands_close_go_together_row_first(opened: Opener) -> None:
    """The book-keeping after an answer: the command's audit row, then its claim's close (with its
    write intents dropped), in one round trip."""
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW), ("m2", "R", NOW)], NOW)
    await store.record_intent(WriteIntent("m1", "i1", NOW, {"enabled": True}, {"enabled": False}))
    row_id, closed = await store.record_finishing(audit(1, integration="i1", message="m1"), "changed")
    assert closed is True and await store.message_status("m1") == "done"
    assert await store.intents("m1") == []
    assert [(r.id, r.message_id) for r in await store.history(integration_ids=["i1"])] == [(row_id, "m1")]
    # Recorded again (a resumed command): the same row.
    assert (await store.record_finishing(audit(1, integration="i1", message="m1"), "changed"))[0] == row_id
    # A claim that is another process's now is not closed; the row is recorded all the same.
    other = await opened(owner="b")
    other_id, closed = await other.record_finishing(audit(2, integration="i2", message="m2"), "changed")
    assert closed is False and await other.message_status("m2") == "claimed"
    assert [r.id for r in await other.history(integration_ids=["i2"])] == [other_id]


async def test_a_claim_whose_audit_row_cannot_be_stored_stays_open(opened: Opener) -> None:
    """The row and the close go together, row first: a row the database refuses (a value out of
    range) stops the close, its write intents kept, and the store goes on working."""
    store = await opened(owner="a")
    await store.claim_messages([("m1", "R", NOW)], NOW)
    await store.record_intent(WriteIntent("m1", "i1", NOW, {"enabled": True}, {"enabled": False}))
    refused = dataclasses.replace(audit(1, integration="i1", message="m1"), undoes=2**63)
    with pytest.raises(Exception, match=r"out of range|too large"):  # each backend in its own words
        await store.record_finishing(refused, "changed")
    assert await store.message_status("m1") == "claimed"
    assert len(await store.intents("m1")) == 1
    assert await store.history(integration_ids=["i1"]) == []
    row_id, closed = await store.record_finishing(audit(1, integration="i1", message="m1"), "changed")
    assert closed is True and await store.message_status("m1") == "done"
    assert [r.id for r in await store.history(integration_ids=["i1"])] == [row_id]


async def test_the_audit_trail_keeps_one_row_per_command_and_reads_newest_first(opened: Opener) -> None:
    store = await opened()
    ids = [await store.record(audit(n, integration=f"i{n % 2}", message=f"m{n}")) for n in range(4)]
    assert len(set(ids)) == 4
    # The same command recording the same action again (resumed after a crash): the same row.
    assert await store.record(audit(9, integration="i0", message="m0")) == ids[0]
    # Rows without a command (timer re-enables) are never merged.
    assert len({await store.record(audit(5, integration="i9")), await store.record(audit(5, integration="i9"))}) == 2
    assert await store.recorded("m3") is True
    assert await store.recorded("nope") is False
    rows = await store.history(integration_ids=["i1"], limit=10)
    assert [r.message_id for r in rows] == ["m3", "m1"]
    assert rows[0] == dataclasses.replace(audit(3, integration="i1", message="m3"), id=ids[3])
    assert await store.history(integration_ids=[]) == []
    assert len(await store.history(actor_id="u1", limit=3)) == 3


async def test_every_process_gets_the_same_message_id_key(opened: Opener) -> None:
    first = await opened(key_seed=b"the bot's token")
    second = await opened(key_seed=b"another seed is ignored: the key exists")
    assert first.message_ids.answer("m1") == second.message_ids.answer("m1")


async def test_one_pending_timer_per_integration_and_one_winner_per_transition(opened: Opener) -> None:
    a, b = await opened(owner="a"), await opened(owner="b")
    draft = TimerDraft("i1", "Guggy", "webhook-incoming", NOW, NOW + timedelta(minutes=30), "u1", "alice")
    scheduled = await a.timers.schedule(draft)
    assert scheduled is not None and scheduled.state is TimerState.SCHEDULED
    assert await b.timers.schedule(draft) is None
    document = {"_id": "i1", "enabled": False, "_updatedAt": "2026-12-06T12:00:01.000Z"}
    results = await asyncio.gather(
        a.timers.transition(scheduled, TimerEvent.CONFIRMED, at=NOW, document=document),
        b.timers.transition(scheduled, TimerEvent.ABORTED, at=NOW),
    )
    assert sum(r is not None for r in results) == 1
    assert (await b.timers.pending_for("i1") is None) == (results[1] is not None)


async def test_a_timers_ending_and_its_audit_row_are_stored_together_or_not_at_all(opened: Opener) -> None:
    """`end_timer`: a row the database refuses (a value out of range) undoes the ending too (on
    SQLite as well: one transaction); an ending that loses the compare-and-set appends no row."""
    a, b = await opened(owner="a"), await opened(owner="b")
    draft = TimerDraft("i1", "Guggy", "webhook-incoming", NOW, NOW + timedelta(minutes=30), "u1", "alice")
    scheduled = await a.timers.schedule(draft)
    assert scheduled is not None
    document = {"_id": "i1", "enabled": False, "_updatedAt": "2026-12-06T12:00:01.000Z"}
    active = await a.timers.transition(scheduled, TimerEvent.CONFIRMED, at=NOW, document=document)
    assert active is not None
    row = audit(1, integration="i1", message=f"timer-{active.id}", action="re-enable-skipped")
    later = NOW + timedelta(minutes=30)

    refused = dataclasses.replace(row, undoes=2**63)
    with pytest.raises(Exception, match=r"out of range|too large"):  # each backend in its own words
        await a.end_timer(active, TimerEvent.CHANGED_BY_OTHERS, at=later, note="it changed", record=refused)
    assert await b.timers.get(active.id) == active and await b.history() == []

    ended = await a.end_timer(active, TimerEvent.CHANGED_BY_OTHERS, at=later, note="it changed", record=row)
    assert ended is not None
    timer, stored = ended
    assert timer.state is TimerState.OVERRIDDEN and timer.end_note == "it changed" and timer.ended_at == later
    assert await b.timers.get(active.id) == timer
    assert await b.history() == [stored] and stored.id is not None and stored == dataclasses.replace(row, id=stored.id)

    # Another timer, ended otherwise first (another replica): no row for the ending that lost.
    again = await a.timers.schedule(draft)
    assert again is not None
    again = await a.timers.transition(again, TimerEvent.CONFIRMED, at=NOW, document=document)
    assert again is not None
    assert await b.timers.transition(again, TimerEvent.ENDED_EARLY, at=later, note="by hand") is not None
    lost = dataclasses.replace(row, message_id=f"timer-{again.id}", action="re-enable-failed")
    assert await a.end_timer(again, TimerEvent.GAVE_UP, at=later, note="refused", record=lost) is None
    assert await b.history() == [stored]


async def test_an_extension_records_the_command_that_set_the_end_in_the_same_transition(opened: Opener) -> None:
    """A command that extends a timer leaves its message id and the end it set on the row, so the
    same command resumed elsewhere (another replica, a restarted process) finds it done; an
    extension that loses the compare-and-set records nothing."""
    a, b = await opened(owner="a"), await opened(owner="b")
    draft = TimerDraft("i1", "Guggy", "webhook-incoming", NOW, NOW + timedelta(minutes=30), "u1", "alice")
    scheduled = await a.timers.schedule(draft)
    assert scheduled is not None
    document = {"_id": "i1", "enabled": False, "_updatedAt": "2026-12-06T12:00:01.000Z"}
    active = await a.timers.transition(scheduled, TimerEvent.CONFIRMED, at=NOW, document=document)
    assert active is not None and active.extended_by("m-extend") is None
    one_hour, two_hours = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    extended = await a.timers.transition(active, TimerEvent.EXTENDED, at=NOW, due_at=one_hour, by="m-extend")
    assert extended is not None and extended.due_at == one_hour
    # The loser of a race (it read the row before that extension) neither moves the end nor records itself.
    assert await b.timers.transition(active, TimerEvent.EXTENDED, at=NOW, due_at=two_hours, by="m-late") is None
    seen = await b.timers.pending_for("i1")
    assert seen is not None and seen.due_at == one_hour
    assert seen.extended_by("m-extend") == one_hour and seen.extended_by("m-late") is None
    # Someone else extends it meanwhile (a click on "Extend 1 h"): the first command's is still found.
    again = await b.timers.transition(seen, TimerEvent.EXTENDED, at=NOW, due_at=two_hours, by="m-click")
    assert again is not None
    read = await a.timers.get(again.id)
    assert read is not None and read.extended_by("m-extend") == one_hour and read.extended_by("m-click") == two_hours
    # A transition of another kind keeps them; an extension without a command (none today) adds none.
    rebased = await a.timers.transition(read, TimerEvent.REBASED, at=NOW, document=document)
    assert rebased is not None and rebased.extensions == read.extensions
    plain = await a.timers.transition(rebased, TimerEvent.EXTENDED, at=NOW, due_at=NOW + timedelta(hours=3))
    assert plain is not None and plain.extensions == read.extensions


@pytest.mark.parametrize("message_id", ["m-1", 'a%b_c\\d"e', "AbC"], ids=["plain", "like-wildcards", "case"])
async def test_whether_a_command_extended_a_running_timer_is_found_by_its_message_id(
    opened: Opener, message_id: str
) -> None:
    """Message ids are chosen by users: one made of LIKE's wildcards, quotes or backslashes, or
    differing only in case, matches no other command's extension."""
    a, b = await opened(owner="a"), await opened(owner="b")
    draft = TimerDraft("i1", "Guggy", "webhook-incoming", NOW, NOW + timedelta(minutes=30), "u1", "alice")
    timer = await a.timers.schedule(draft)
    assert timer is not None
    timer = await a.timers.transition(timer, TimerEvent.CONFIRMED, at=NOW, document={"enabled": False})
    assert timer is not None and not await b.timers.has_extension_by(message_id)
    lookalikes = ["m-1x", 'aXbYc\\d"e', "abc", "ABC"]
    timer = await a.timers.transition(
        timer, TimerEvent.EXTENDED, at=NOW, due_at=NOW + timedelta(hours=1), by=message_id
    )
    assert timer is not None and await b.timers.has_extension_by(message_id)
    assert [m for m in lookalikes if m != message_id and await b.timers.has_extension_by(m)] == []
    ended = await a.timers.transition(timer, TimerEvent.ENDED_EARLY, at=NOW, note="enabled")
    assert ended is not None and not await b.timers.has_extension_by(message_id)  # only running ones count


async def test_a_timer_remembers_its_latest_extensions(opened: Opener) -> None:
    store = await opened()
    draft = TimerDraft("i1", "Guggy", "webhook-incoming", NOW, NOW + timedelta(minutes=30), "u1", "alice")
    timer = await store.timers.schedule(draft)
    assert timer is not None
    timer = await store.timers.transition(timer, TimerEvent.CONFIRMED, at=NOW, document={"enabled": False})
    count = EXTENSIONS_KEPT + 5
    for n in range(count):
        assert timer is not None
        due = NOW + timedelta(minutes=31 + n)
        timer = await store.timers.transition(timer, TimerEvent.EXTENDED, at=NOW, due_at=due, by=f"m{n}")
    assert timer is not None and len(timer.extensions) == EXTENSIONS_KEPT
    assert timer.extended_by("m4") is None  # the oldest ones are forgotten
    assert timer.extended_by("m5") == NOW + timedelta(minutes=36)
    assert timer.extended_by(f"m{count - 1}") == timer.due_at


async def test_the_integration_lock_lets_one_writer_at_a_time(opened: Opener) -> None:
    stores = [await opened(owner="a"), await opened(owner="b")]
    inside: list[str] = []
    overlaps: list[int] = []

    async def write(store: StateStore, name: str) -> None:
        async with store.locks.hold("i1"):
            inside.append(name)
            overlaps.append(len(inside))
            await asyncio.sleep(0.05)
            inside.remove(name)

    if stores[0].shared:
        await asyncio.gather(*(write(s, f"w{n}") for n, s in enumerate(stores * 2)))
    else:  # one process per file: its tasks
        await asyncio.gather(*(write(stores[0], f"w{n}") for n in range(4)))
    assert overlaps == [1, 1, 1, 1]


# --- PostgreSQL only: what only a server can do ----------------------------------------------------


async def test_replicas_starting_at_once_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(StateStore.connect(postgres_url) for _ in range(4)))
    try:
        assert {await s.schema_version() for s in stores} == {SCHEMA_VERSION}
        assert len({s.message_ids.answer("m") for s in stores}) == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_database_from_a_newer_release_is_refused_clearly(postgres_url: str) -> None:
    store = await StateStore.connect(postgres_url)
    await store.database.count("UPDATE schema_version SET version = 99")
    await store.close()
    with pytest.raises(ConfigError, match=rf"schema version 99, newer than this release supports \({SCHEMA_VERSION}\)"):
        await StateStore.connect(postgres_url)


async def test_an_unreachable_database_is_unavailable_then_usable_again(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    store = await StateStore.connect(postgres_url)
    try:
        assert await store.claim_message("before", "R", NOW, NOW) is True
        postgres_server.stop()
        with pytest.raises(StateUnavailable) as caught:
            await store.claim_message("during", "R", NOW, NOW)
        assert postgres_server.password not in str(caught.value)
        postgres_server.start()
        # The pools reconnect by themselves: no new store, no restart of the bot.
        assert await store.claim_message("after", "R", NOW, NOW) is True
        assert await store.message_status("before") == "claimed"
        assert await store.message_status("during") is None
    finally:
        await store.close()


async def test_a_wrong_password_or_host_is_unavailable_not_a_crash(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    wrong = postgres_url.replace(f":{parts.password}@", f":{parts.password}x@", 1)
    with pytest.raises(StateUnavailable, match="password authentication failed") as caught:
        await StateStore.connect(wrong, connect_timeout=2)
    assert str(parts.password) not in str(caught.value)
