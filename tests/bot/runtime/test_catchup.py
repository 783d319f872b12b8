"""Catch-up: the staleness rule, cursor handling, and a pass over the sandbox's rooms."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import World, call, world

from bot.errors import ServerRejected, StateUnavailable
from bot.rocketchat.ejson import decode_date
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.models import Delta
from bot.rocketchat.rest import RestClient
from bot.runtime.catchup import CLAIM_RETENTION, CatchUp, CursorBook, Room, member_rooms
from bot.runtime.metrics import Metrics
from bot.runtime.staleness import CATCHUP_HORIZON, Freshness, first_delivery, freshness, stale_reply
from bot.state.store import StateStore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TWO_MIN = timedelta(minutes=2)


# --- the staleness rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), Freshness.FRESH),
        (timedelta(seconds=119), Freshness.FRESH),
        (TWO_MIN, Freshness.FRESH),
        (TWO_MIN + timedelta(milliseconds=1), Freshness.STALE),
        (timedelta(hours=23), Freshness.STALE),
        (CATCHUP_HORIZON + timedelta(seconds=1), Freshness.TOO_OLD),
        (timedelta(seconds=-30), Freshness.FRESH),  # the server's clock a little ahead of ours
    ],
)
def test_freshness_by_age(age: timedelta, expected: Freshness) -> None:
    assert freshness(NOW - age, NOW, TWO_MIN) is expected


@given(
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=30)),
)
def test_an_older_command_is_never_treated_better_than_a_younger_one(
    younger: timedelta, extra: timedelta, stale_age: timedelta
) -> None:
    order = [Freshness.FRESH, Freshness.STALE, Freshness.TOO_OLD]
    a = freshness(NOW - younger, NOW, stale_age)
    b = freshness(NOW - younger - extra, NOW, stale_age)
    assert order.index(a) <= order.index(b)


def test_claims_outlive_the_horizon_so_an_old_redelivery_never_finds_its_claim_pruned() -> None:
    assert CLAIM_RETENTION > CATCHUP_HORIZON


def test_the_stale_answer_says_how_old_and_what_the_limit_is() -> None:
    reply = stale_reply(NOW - timedelta(minutes=7), NOW, TWO_MIN)
    assert reply.outcome == "stale"
    assert "7 min ago" in reply.text and "2 min" in reply.text and "did not run" in reply.text


def live_catchup(
    rest: RestClient,
    state: StateStore,
    admit: Any,
    *,
    book: CursorBook | None = None,
    stale_age: timedelta = TWO_MIN,
    **options: Any,
) -> CatchUp:
    """A catch-up against a real sandbox, on the real clock (`options`: `sleep`, `before_pass`)."""
    return CatchUp(
        rest,
        state,
        book or CursorBook(state),
        admit,
        clock=lambda: datetime.now(UTC),
        stale_age=stale_age,
        metrics=Metrics(),
        **options,
    )


# --- where a pass starts ----------------------------------------------------------------------------


def catchup_for(state: Any = None, rest: Any = None, admit: Any = None) -> CatchUp:
    async def ignore(_m: ChatMessage, _o: str) -> None:
        return None

    return CatchUp(
        rest, state, CursorBook(state), admit or ignore, clock=lambda: NOW, stale_age=TWO_MIN, metrics=Metrics()
    )


def test_since_is_the_cursor_bounded_by_the_horizon() -> None:
    catchup = catchup_for()
    cursor = NOW - timedelta(minutes=30)
    joined = NOW - timedelta(days=2)
    assert catchup.since(cursor, joined, NOW, fresh_db=False) == cursor
    assert catchup.since(NOW - timedelta(days=3), joined, NOW, fresh_db=False) == NOW - CATCHUP_HORIZON


def test_since_for_a_room_without_cursor_is_when_the_bot_joined_it() -> None:
    catchup = catchup_for()
    joined = NOW - timedelta(hours=1)
    assert catchup.since(None, joined, NOW, fresh_db=False) == joined
    assert catchup.since(None, None, NOW, fresh_db=False) == NOW - CATCHUP_HORIZON


def test_a_fresh_state_file_looks_back_only_the_stale_age() -> None:
    """A first start (or a new state file) runs what was just sent and answers no history."""
    catchup = catchup_for()
    assert catchup.since(None, NOW - timedelta(days=30), NOW, fresh_db=True) == NOW - TWO_MIN


# --- cursors -------------------------------------------------------------------------------------


async def test_cursors_are_not_stored_while_held_and_only_move_forward(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    book = CursorBook(state)
    assert book.held  # from the start until a catch-up pass completes
    book.seen("R1", NOW)
    book.seen("R1", NOW - timedelta(seconds=5))
    await book.flush()
    assert await state.cursors() == {}
    await book.release()
    assert await state.cursors() == {"R1": NOW}

    book.hold()  # a drop: nothing stored until the next pass completes
    book.seen("R1", NOW + timedelta(seconds=10))
    book.seen("R2", NOW)
    await book.flush()
    assert await state.cursors() == {"R1": NOW}
    await book.release()
    assert await state.cursors() == {"R1": NOW + timedelta(seconds=10), "R2": NOW}

    book.seen("R1", NOW - timedelta(hours=1))  # an old re-delivery never moves a cursor back
    await book.flush()
    assert (await state.cursors())["R1"] == NOW + timedelta(seconds=10)
    await state.close()


# --- a pass against the sandbox -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_world() -> Iterator[World]:
    with world() as w:
        w.control.create_room("lobby", members=["admin", "alice"], owner="admin")
        yield w


class Admitted:
    def __init__(self) -> None:
        self.messages: list[tuple[ChatMessage, str]] = []

    async def __call__(self, message: ChatMessage, origin: str) -> None:
        self.messages.append((message, origin))

    def texts(self) -> list[str]:
        return [m.text for m, _ in self.messages]


async def test_member_rooms_are_the_bots_subscriptions_dms_included(sandbox_world: World) -> None:
    async with sandbox_world.rest() as rest:
        rooms = await member_rooms(rest)
    by_type: dict[str | None, set[str]] = {}
    for room in rooms.values():
        by_type.setdefault(room.type, set()).add(room.name or "")
    assert {"general", "ops", "alerts"} <= by_type["c"]
    assert "lobby" not in by_type["c"]  # a public channel the bot is not in
    assert by_type["p"] == {"platform-team"}
    assert len(by_type["d"]) == 3
    assert all(room.joined is not None for room in rooms.values())


async def test_a_pass_finds_what_was_posted_since_the_cursors_in_every_member_room(
    sandbox_world: World, tmp_path: Path
) -> None:
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "s.db")
    admitted = Admitted()
    async with sandbox_world.rest() as rest:
        # Cursors at "now" for every room: only what comes after counts.
        now = datetime.now(UTC)
        for room in await member_rooms(rest):
            await state.advance_cursor(room, now - timedelta(milliseconds=1))
        parent = await call(control.post_message, "alice", "ops", "a thread starter")
        posted = [
            await call(control.post_message, "admin", "general", "!integration list"),
            await call(control.post_message, "alice", "ops", "!integration help", tmid=parent["_id"]),
            await call(control.post_message, "alice", "platform-team", "!integration list incoming"),
            await call(control.post_message, "owen", sandbox_world.seed["rooms"]["dm:integrations-bot:owen"], "help"),
            await call(control.post_message, "alice", "lobby", "!integration list"),  # not a member
        ]
        await live_catchup(rest, state, admitted).pass_once()
    found = {m.id: m for m, origin in admitted.messages if origin == "catch-up"}
    assert posted[4]["_id"] not in found
    for message in posted[:4]:
        assert message["_id"] in found, message["msg"]
    assert parent["_id"] in found  # every message is admitted; the intake decides what is a command
    dm = found[posted[3]["_id"]]
    assert dm.room_type == "d" and dm.room_participant is True
    assert found[posted[1]["_id"]].thread_id == parent["_id"]
    assert found[posted[2]["_id"]].room_type == "p"
    times = [m.ts for m, _ in admitted.messages]
    per_room: dict[str, list[datetime]] = {}
    for message, _ in admitted.messages:
        per_room.setdefault(message.room_id, []).append(message.ts)
    assert all(ts == sorted(ts) for ts in per_room.values()) and times
    await state.close()


async def test_a_command_already_answered_is_not_run_again_when_the_state_file_lost_its_claims(
    sandbox_world: World, tmp_path: Path
) -> None:
    """The state file was restored from an older copy (its key, none of the recent claims): the
    answers in the room, at ids derived from the commands' with that key, say what ran."""
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "restored.db")
    admitted = Admitted()
    answered = await call(control.post_message, "admin", "alerts", "!integration disable Guggy")
    in_thread = await call(control.post_message, "admin", "alerts", "!integration help", tmid=answered["_id"])
    for command, attempt in ((answered, 0), (in_thread, 2)):  # the last id of a chain counts as well
        answer_id = state.message_ids.answer(command["_id"])[attempt]
        tmid = command.get("tmid")
        await call(control.post_message, "integrations-bot", "alerts", "Done.", tmid=tmid, message_id=answer_id)
    unanswered = await call(control.post_message, "admin", "alerts", "!integration enable Guggy")
    async with sandbox_world.rest() as rest:
        await live_catchup(rest, state, admitted).pass_once()
    ids = {m.id for m, _ in admitted.messages}
    assert unanswered["_id"] in ids
    assert answered["_id"] not in ids and in_thread["_id"] not in ids
    await state.close()


@pytest.mark.parametrize(
    ("author", "room", "in_thread"),
    [
        ("owen", "alerts", False),  # a user posted fake answers with the command's answer ids
        ("integrations-bot", "ops", False),  # the bot's messages with those ids, in another room
        ("integrations-bot", "alerts", True),  # ... in the command's room, but in a thread
    ],
    ids=["by-a-user", "in-another-room", "in-another-thread"],
)
async def test_only_the_bots_own_answer_in_the_commands_room_and_thread_says_it_ran(
    sandbox_world: World, tmp_path: Path, author: str, room: str, in_thread: bool
) -> None:
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "s.db")
    admitted = Admitted()
    command = await call(control.post_message, "admin", "alerts", "!integration disable Guggy")
    thread = (await call(control.post_message, "admin", room, "a thread"))["_id"] if in_thread else None
    for answer_id in state.message_ids.answer(command["_id"]):
        await call(control.post_message, author, room, "✅ Disabled Guggy.", tmid=thread, message_id=answer_id)
    async with sandbox_world.rest() as rest:
        await live_catchup(rest, state, admitted).pass_once()
    assert command["_id"] in {m.id for m, _ in admitted.messages}
    await state.close()


async def until_passes(catchup: CatchUp, count: int) -> None:
    for _ in range(1000):
        if catchup.passes >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {catchup.passes} of {count} passes completed")


async def test_a_failed_pass_is_retried_and_cursors_stay_held_until_one_completes(
    sandbox_world: World, tmp_path: Path
) -> None:
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "s.db")
    sleeps: list[float] = []
    admitted = Admitted()

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with sandbox_world.rest(max_attempts=1) as rest:
        book = CursorBook(state)
        catchup = live_catchup(rest, state, admitted, book=book, sleep=no_sleep)
        message = await call(control.post_message, "admin", "general", "!integration help")
        book.seen("GENERAL", decode_date(message["_updatedAt"]) or NOW)
        await call(control.fail_next, "subscriptions.get", 2, "500")
        worker = asyncio.create_task(catchup.run())
        catchup.request()
        for _ in range(500):
            if catchup.passes:
                break
            await asyncio.sleep(0.01)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert catchup.passes == 1
    assert sleeps == [1.0, 2.0]  # backoff between the failed attempts
    assert message["_id"] in [m.id for m, _ in admitted.messages]
    assert "GENERAL" in await state.cursors()  # released after the pass completed
    await state.close()


async def test_a_drop_during_a_pass_keeps_cursors_held_and_runs_another_pass(
    sandbox_world: World, tmp_path: Path
) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    book = CursorBook(state)
    passes = 0
    catchup: CatchUp

    async def admit(message: ChatMessage, _origin: str) -> None:
        book.seen(message.room_id, message.updated_at)

    async def interrupt_first_pass(_rooms: Any) -> None:
        nonlocal passes
        passes += 1
        if passes == 1:
            catchup.interrupted()  # the session dropped while this pass ran
            assert book.held

    async with sandbox_world.rest() as rest:
        catchup = live_catchup(
            rest, state, admit, book=book, stale_age=timedelta(days=1), before_pass=interrupt_first_pass
        )
        await call(sandbox_world.control.post_message, "admin", "general", "something to see")
        worker = asyncio.create_task(catchup.run())
        catchup.request()
        await until_passes(catchup, 2)
        # The second pass began while still disconnected: it ran what it found, but the stream is
        # not back, so the cursors stay held until a pass after the next `Connected`.
        assert passes == 2 and book.held
        assert await state.cursors() == {}
        catchup.request()  # reconnected
        await until_passes(catchup, 3)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert passes == 3 and not book.held
    assert "GENERAL" in await state.cursors()
    await state.close()


async def test_a_pass_begun_while_disconnected_does_not_release_the_cursors_past_a_command_nobody_saw(
    sandbox_world: World, tmp_path: Path
) -> None:
    """The chaos test's open failure (issue 12 §5: commands of one room, posted within 1.6 s, never
    claimed, their room's cursor past them). The session drops during a pass; that pass ends and
    another starts at once, still disconnected, and completes before the reconnect: it released
    the cursors. A command posted after that pass read its room and before the new session was
    subscribed is seen by neither. After the reconnect, the stream admits a later message of that
    room and the periodic flush stores its cursor before the new pass reads the cursors (it first
    lists the rooms over REST): the pass starts past the command, which nobody runs, ever."""
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "s.db")
    book = CursorBook(state)
    admitted = Admitted()
    begun = 0
    catchup: CatchUp

    async def admit(message: ChatMessage, origin: str) -> None:
        await admitted(message, origin)
        book.seen(message.room_id, message.updated_at)  # as the runtime does, once claimed

    async def before_pass(_rooms: Any) -> None:
        nonlocal begun
        begun += 1
        if begun == 1:
            catchup.interrupted()  # the session dropped while this pass ran
        elif begun == 3:
            # Reconnected. While this pass lists the rooms, the new session streams a later message
            # of #general (admitted) and the runtime's periodic flush runs.
            later = await call(control.post_message, "alice", "general", "a message after the reconnect")
            message = ChatMessage.from_document(later, {"roomParticipant": True, "roomType": "c"})
            assert message is not None
            await admit(message, "stream")
            await book.flush()

    async with sandbox_world.rest() as rest:
        now = datetime.now(UTC)
        for room in await member_rooms(rest):  # the bot had been running: every room has a cursor
            await state.advance_cursor(room, now - timedelta(milliseconds=1))
        catchup = live_catchup(rest, state, admit, book=book, before_pass=before_pass)
        await book.release()  # steady state: connected, caught up
        worker = asyncio.create_task(catchup.run())
        catchup.request()
        await until_passes(catchup, 2)  # the interrupted pass, then one begun while disconnected
        missed = await call(control.post_message, "admin", "general", "!integration help")  # stream down
        catchup.request()  # the new session is ready
        await until_passes(catchup, 3)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert begun == 3
    assert missed["_id"] in {m.id for m, _ in admitted.messages}, "the pass after the reconnect skipped it"
    await state.close()


def test_room_from_a_subscription_document() -> None:
    room = Room.from_subscription({"rid": "R1", "t": "d", "name": "alice", "ts": "2026-11-24T12:00:00.000Z"})
    assert room is not None and room.joined == NOW
    assert room.meta() == {"roomParticipant": True, "roomType": "d"}  # DMs carry no roomName
    assert Room.from_subscription({"t": "c"}) is None
    channel = Room.from_subscription({"rid": "R2", "t": "c", "name": "ops"})
    assert channel is not None and channel.meta()["roomName"] == "ops"


async def test_a_room_a_pass_could_not_read_keeps_its_cursor_until_a_pass_reads_it(
    sandbox_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (found while hunting the chaos failure): a room whose `chat.syncMessages` was refused
    (`catchup.room_skipped`) was skipped, yet the pass released every cursor; a later message of
    that room on the stream then stored its cursor past the commands the pass never read, and no
    later pass fetched them. Now that room's cursor stays until a pass reads the room again."""
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "s.db")
    admitted = Admitted()
    async with sandbox_world.rest(max_attempts=1) as rest:
        book = CursorBook(state)
        catchup = live_catchup(rest, state, admitted, book=book)
        missed = await call(control.post_message, "alice", "ops", "!integration list")
        room_id = missed["rid"]
        sync = rest.chat_sync_messages

        async def refused_once(room: str, since: datetime) -> Any:
            if room == room_id:
                monkeypatch.setattr(rest, "chat_sync_messages", sync)
                raise ServerRejected("chat.syncMessages", 400, "error-not-allowed")
            return await sync(room, since)

        monkeypatch.setattr(rest, "chat_sync_messages", refused_once)
        await catchup.pass_once()
        assert missed["_id"] not in [m.id for m, _ in admitted.messages]  # skipped: refused
        later = await call(control.post_message, "alice", "ops", "hello again")
        book.seen(room_id, decode_date(later["_updatedAt"]) or NOW)  # the stream admits a later message
        await book.release()
        assert room_id not in await state.cursors()  # not stored past the command nobody read
        await catchup.pass_once()  # the next pass (the next reconnect) reads the room again
        await book.flush()
    assert missed["_id"] in [m.id for m, _ in admitted.messages]
    assert room_id in await state.cursors()  # and then the cursor moves on
    await state.close()


async def test_the_worker_lives_on_when_the_state_database_fails_as_cursors_are_released(
    sandbox_world: World, tmp_path: Path
) -> None:
    """Was: the database going away just as a pass released its cursors ended the catch-up worker,
    and with it the bot (a replica exited with status 1 at a PostgreSQL restart)."""
    control = sandbox_world.control
    state = await StateStore.open(tmp_path / "s.db")
    admitted = Admitted()
    original = state.advance_cursors
    failures: list[str] = []

    async def advance_cursors(seen: dict[str, datetime]) -> None:
        if not failures:
            failures.append("down")
            raise StateUnavailable("test database", "connection lost")
        await original(seen)

    state.advance_cursors = advance_cursors  # type: ignore[method-assign]
    async with sandbox_world.rest(max_attempts=1) as rest:
        book = CursorBook(state)
        catchup = live_catchup(rest, state, admitted, book=book)
        first = await call(control.post_message, "admin", "general", "!integration help")
        book.seen("GENERAL", decode_date(first["_updatedAt"]) or NOW)
        worker = asyncio.create_task(catchup.run())
        catchup.request()
        for _ in range(500):
            if catchup.passes == 1:
                break
            await asyncio.sleep(0.01)
        assert catchup.passes == 1 and failures == ["down"]
        second = await call(control.post_message, "admin", "general", "!integration list")
        catchup.request()  # the next pass (the database is back)
        for _ in range(500):
            if catchup.passes == 2:
                break
            await asyncio.sleep(0.01)
        assert not worker.done(), worker
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert catchup.passes == 2
    assert second["_id"] in [m.id for m, _ in admitted.messages]
    await state.close()


# --- which rooms a pass reads --------------------------------------------------------------------------


async def test_a_pass_asks_only_the_rooms_with_activity_a_dozen_calls_in_two_thousand_rooms(tmp_path: Path) -> None:
    """Was: every pass asked `chat.syncMessages` for every member room (2,007 calls here, one per
    room, on every reconnect). Now one `rooms.get?updatedSince=` tells which rooms were written."""
    calls: list[str] = []
    with world() as w:
        store = w.server.store
        bulk = [store.create_room(f"bulk-{i}", members=["integrations-bot", "alice"])["_id"] for i in range(2000)]
        state = await StateStore.open(tmp_path / "s.db")
        admitted = Admitted()
        async with w.rest(on_request=lambda record: calls.append(record.endpoint)) as rest:
            catchup = live_catchup(rest, state, admitted)
            await catchup.pass_once()  # after the start
            first = len(calls)
            calls.clear()
            # The drop: ten rooms get a command each (one in a thread), nobody hears them.
            starter = await call(w.control.post_message, "alice", bulk[0], "a thread starter, heard on the stream")
            await catchup.pass_once()  # the starter's room was written since: read once more
            calls.clear()
            posted = [
                await call(w.control.post_message, "alice", bulk[0], "!integration list", tmid=starter["_id"]),
                *[await call(w.control.post_message, "alice", room, "!integration list") for room in bulk[1:10]],
            ]
            await catchup.pass_once()  # after the reconnect
        await state.close()
    assert first < 20, first
    assert sorted(calls) == ["chat.syncMessages"] * 10 + ["rooms.get", "subscriptions.get"]
    found = {m.id for m, _ in admitted.messages}
    assert {m["_id"] for m in posted} <= found


class ScriptedServer:
    """What `CatchUp` asks of the REST client, answered from a script: one member room `R`."""

    user_id = "BOT"

    def __init__(self, joined: datetime) -> None:
        self.joined = joined
        self.written = joined  # the room's `_updatedAt`
        self.refuse_rooms_get = False
        self.calls: list[str] = []

    async def subscriptions_get(self) -> Delta:
        self.calls.append("subscriptions.get")
        return Delta(update=({"rid": "R", "t": "c", "name": "r", "ts": self.joined.isoformat()},))

    async def rooms_get(self, updated_since: datetime) -> Delta:
        self.calls.append("rooms.get")
        if self.refuse_rooms_get:
            raise ServerRejected("rooms.get", 400, "error-updatedSince-param-invalid")
        written = self.written > updated_since
        return Delta(update=({"_id": "R", "t": "c", "_updatedAt": self.written.isoformat()},) if written else ())

    async def chat_sync_messages(self, room_id: str, since: datetime) -> dict[str, Any]:
        self.calls.append("chat.syncMessages")
        return {"updated": [], "deleted": []}


async def scripted_pass(server: ScriptedServer, state: StateStore, catchup: CatchUp | None = None) -> CatchUp:
    catchup = catchup or catchup_for(state, server)
    server.calls.clear()
    await catchup.pass_once()
    return catchup


async def test_a_room_written_only_just_after_its_cursor_is_read_once_then_only_when_written_again(
    tmp_path: Path,
) -> None:
    """Rocket.Chat writes a room a moment after its newest message, so the room's `_updatedAt` is a
    little newer than the cursor that message left: read once, then not again until written."""
    state = await StateStore.open(tmp_path / "s.db")
    server = ScriptedServer(joined=NOW - timedelta(days=2))
    cursor = NOW - timedelta(minutes=5)
    await state.advance_cursor("R", cursor)
    server.written = cursor + timedelta(milliseconds=3)
    catchup = await scripted_pass(server, state)
    assert server.calls == ["subscriptions.get", "rooms.get", "chat.syncMessages"]  # not read by this process yet
    await scripted_pass(server, state, catchup)
    assert server.calls == ["subscriptions.get", "rooms.get"]
    server.written += timedelta(seconds=1)  # a message during a drop
    await scripted_pass(server, state, catchup)
    assert server.calls == ["subscriptions.get", "rooms.get", "chat.syncMessages"]
    await state.close()


async def test_a_room_without_a_cursor_is_read_only_when_written_after_the_bot_joined(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    await state.advance_cursor("ELSEWHERE", NOW - timedelta(minutes=1))  # not a fresh state file
    server = ScriptedServer(joined=NOW - timedelta(hours=1))
    server.written = server.joined - timedelta(minutes=1)  # history from before the bot came
    await scripted_pass(server, state)
    assert server.calls == ["subscriptions.get", "rooms.get"]
    server.written = server.joined + timedelta(minutes=1)
    await scripted_pass(server, state)
    assert server.calls == ["subscriptions.get", "rooms.get", "chat.syncMessages"]
    await state.close()


async def test_when_rooms_get_is_refused_every_member_room_is_read(tmp_path: Path) -> None:
    state = await StateStore.open(tmp_path / "s.db")
    server = ScriptedServer(joined=NOW - timedelta(hours=1))
    server.refuse_rooms_get = True
    await scripted_pass(server, state)
    assert server.calls == ["subscriptions.get", "rooms.get", "chat.syncMessages"]
    await state.close()


def _delivered(**extra: Any) -> Any:
    """The contract's example of a new message's event (ts …123, `_updatedAt` …150), and `extra`."""
    document = {
        "_id": "k2Hb7Pq9Z8mXyW3Lt",
        "rid": "GENERAL",
        "msg": "/integration disable Guggy",
        "ts": {"$date": 1717600000123},
        "u": {"_id": "aBcD1234", "username": "alice"},
        "_updatedAt": {"$date": 1717600000150},
        **extra,
    }
    return ChatMessage.from_stream_args([document, {"roomParticipant": True, "roomType": "c"}])


def test_a_first_delivery_is_told_from_a_re_delivery_as_rocket_chat_stamps_them() -> None:
    """Was `_updatedAt == ts`, which a real server's first delivery never has (stamped ms apart):
    a bot whose host clock is off, finding every new command stale, never said why."""
    assert first_delivery(_delivered())
    assert not first_delivery(_delivered(editedAt={"$date": 1717600100000}, _updatedAt={"$date": 1717600100000}))
    assert not first_delivery(_delivered(_updatedAt={"$date": 1717600600000}))  # a reaction 10 min later
