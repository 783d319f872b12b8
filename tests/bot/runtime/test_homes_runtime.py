"""The runtime's side of homes (bot/runtime/homes.py), in-process: the commands a replica leaves to
their caller's home, claimed by it after the backup delay, keep the promises every command keeps:
a stored cursor never passes a command not claimed yet, and one caller's commands are claimed in
the order they were sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from settings_support import offline_settings

from bot.errors import StateUnavailable
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.realtime import RealtimeState
from bot.runtime.bot import Bot
from bot.runtime.catchup import CursorBook
from bot.runtime.homes import BACKUP_DELAY, Homes
from bot.runtime.intake import Accepted
from bot.state.store import StateStore
from commands.parser import extract_invocation

OTHER = "another-replica"


@dataclass
class Harness:
    bot: Bot
    state: StateStore
    taken: list[str] = field(default_factory=list)
    failing: list[bool] = field(default_factory=lambda: [False])
    # When set, the next claim waits for it (a slow statement); `claiming` is set meanwhile.
    gate: asyncio.Event | None = None
    claiming: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0

    def caller(self, *, mine: bool) -> str:
        """A caller whose home is this replica (`mine`) or the other one."""
        assert self.bot.homes is not None
        return next(u for u in (f"user-{n}" for n in range(1000)) if self.bot.homes.mine(u) is mine)

    def command(self, user_id: str, room_id: str = "room") -> ChatMessage:
        self.sent += 1
        at = datetime.now(UTC) + timedelta(milliseconds=self.sent)
        return ChatMessage(
            id=f"cmd-{self.sent}",
            room_id=room_id,
            text="!integration list",
            ts=at,
            updated_at=at,
            user_id=user_id,
            username=user_id,
            room_participant=True,
        )

    async def claim_due(self) -> None:
        """What `_keep_homes` does once the backup delay has passed."""
        await self.bot._claim_left(asyncio.get_running_loop().time() + BACKUP_DELAY + 1)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = offline_settings(tmp_path)
    state = await StateStore.open(tmp_path / "s.sqlite3")
    bot = Bot(settings)
    h = Harness(bot, state)
    bot.state = state
    bot.cursors = CursorBook(state)
    bot.cursors.held = False
    bot.homes = Homes(state.owner)
    bot.homes.update([state.owner, OTHER])

    async def prepare(_messages: Any) -> None:
        return None

    bot.intake = SimpleNamespace(  # type: ignore[assignment]
        bot_user_id="bot",
        prepare=prepare,
        accept=lambda m: Accepted(m, extract_invocation(m.text, bot_username="bot")) if m.text[0] == "!" else None,
    )
    bot.services = SimpleNamespace(rights=SimpleNamespace(moment=lambda: 0.0))  # type: ignore[assignment]
    bot._read_ahead = lambda *_: {}  # type: ignore[method-assign,assignment]
    bot._take = lambda accepted, *_: h.taken.append(accepted.message.id)  # type: ignore[method-assign,assignment]
    claim = bot._claim

    async def failing_claim(*args: Any) -> set[str]:
        if h.gate is not None:
            gate, h.gate = h.gate, None
            h.claiming.set()
            await gate.wait()
        if h.failing[0]:
            raise StateUnavailable("test", "the database restarted")
        return await claim(*args)

    bot._claim = failing_claim  # type: ignore[method-assign]
    try:
        yield h
    finally:
        await state.close()


async def _cursor_kept_until_claimed(h: Harness, command: ChatMessage, *, then: ChatMessage) -> None:
    """The database is back: a flush before the claim is retried stores no cursor past `command`;
    once it is claimed, the room's cursor is `then`'s."""
    h.failing[0] = False
    await h.bot.cursors.flush()  # type: ignore[union-attr]
    stored = (await h.state.cursors()).get("room")
    assert stored is None or stored < command.updated_at
    await h.bot._claim_waiting()
    assert h.taken == [command.id]
    await h.bot.cursors.flush()  # type: ignore[union-attr]
    assert (await h.state.cursors())["room"] == then.updated_at


async def test_a_cursor_is_not_stored_past_a_left_command_whose_backup_claim_failed(h: Harness) -> None:
    """Was: the command left to its home advanced its room's cursor as it was admitted; once its
    backup claim failed (the database away), the room was let go, and the next flush stored the
    cursor past a command claimed by nobody (lost if this replica died before claiming it)."""
    left = h.command(h.caller(mine=False))
    await h.bot._admit_all([left], "stream")
    assert left.id in h.bot._left
    h.failing[0] = True
    await h.claim_due()
    assert left.id in h.bot._waiting_claims
    await _cursor_kept_until_claimed(h, left, then=left)


async def test_a_cursor_is_not_stored_past_a_command_waiting_for_its_claim(h: Harness) -> None:
    """A command whose claim failed, then another message of its room admitted: the room's
    cursor stays before the command until its claim is committed."""
    h.bot.homes = None  # one replica
    waiting = h.command("someone")
    h.failing[0] = True
    await h.bot._admit_all([waiting], "stream")
    assert waiting.id in h.bot._waiting_claims
    chatter = h.command("someone").model_copy(update={"text": "thanks"})
    await h.bot._admit_all([chatter], "stream")
    await _cursor_kept_until_claimed(h, waiting, then=chatter)


async def test_a_callers_commands_are_claimed_in_order_when_their_home_goes_away(h: Harness) -> None:
    """Was: a command left to a home that then dropped off the list waited for its backup delay,
    while the same caller's next one, sent after it, was claimed (and run) at once."""
    caller = h.caller(mine=False)
    first = h.command(caller)
    await h.bot._admit_all([first], "stream")
    assert first.id in h.bot._left
    assert h.bot.homes is not None
    h.bot.homes.update([h.state.owner])  # the home stopped saying it runs
    second = h.command(caller)
    await h.bot._admit_all([second], "stream")
    # Not later than the first: claimed with it.
    assert h.bot._left[second.id].due == h.bot._left[first.id].due
    await h.claim_due()
    assert h.taken == [first.id, second.id]
    assert h.bot._left.empty()
    third = h.command(caller)  # nothing of theirs left here any more: claimed at once
    await h.bot._admit_all([third], "stream")
    assert h.taken == [first.id, second.id, third.id]


async def test_a_callers_next_command_is_not_claimed_before_the_backup_claim_in_flight(h: Harness) -> None:
    """The backup claim of a caller's command is slow; meanwhile their next one arrives, at their
    home: it is claimed after it, not beside it."""
    caller = h.caller(mine=False)
    first = h.command(caller)
    await h.bot._admit_all([first], "stream")
    assert h.bot.homes is not None
    h.bot.homes.update([h.state.owner])
    h.gate = gate = asyncio.Event()
    claiming = asyncio.create_task(h.claim_due())
    await asyncio.wait_for(h.claiming.wait(), timeout=5)
    second = h.command(caller)
    await h.bot._admit_all([second], "stream")
    gate.set()
    await claiming
    await h.claim_due()
    assert h.taken == [first.id, second.id]
    assert h.bot._left.empty()


async def test_a_left_command_is_forgotten_when_its_answer_comes(h: Harness) -> None:
    left = h.command(h.caller(mine=False))
    await h.bot._admit_all([left], "stream")
    assert h.state is not None
    answer = h.command("bot").model_copy(update={"id": h.state.message_ids.answer(left.id)[0], "text": "Done"})
    await h.bot._admit_all([answer], "stream")
    assert h.bot._left.empty()
    await h.claim_due()
    assert h.taken == []
    await h.bot.cursors.flush()  # type: ignore[union-attr]
    assert (await h.state.cursors())["room"] == answer.updated_at


async def test_a_message_at_the_answers_id_by_someone_else_does_not_cancel_the_backup_claim(h: Harness) -> None:
    """Anyone may post with a chosen `_id` (contract §8 gotcha 26); the answer's is secret, but
    whoever learnt the key must still not be able to make the other replicas forget a command
    whose home died before claiming it: only the bot's own message is its answer."""
    left = h.command(h.caller(mine=False))
    await h.bot._admit_all([left], "stream")
    squatter = h.command("mallory").model_copy(update={"id": h.state.message_ids.answer(left.id)[0], "text": "ok"})
    await h.bot._admit_all([squatter], "stream")
    await h.claim_due()
    assert h.taken == [left.id]


async def test_a_stopping_replica_is_off_the_list_even_with_its_last_look_in_flight(tmp_path: Path) -> None:
    """Was: `leave` ran beside the heartbeat still in flight, which the server commits whatever the
    client does: the row came back, and the others left the stopped replica's callers' commands to
    it (a backup delay each) until it aged off their lists."""
    listed: set[str] = {"other"}
    in_flight = asyncio.Event()

    async def replicas(alive: float, **_: Any) -> list[str]:
        in_flight.set()
        try:
            await asyncio.sleep(0.2)
        finally:
            listed.add("me")  # the server had it: committed, though the client was cancelled
        return sorted(listed)

    async def leave() -> None:
        listed.discard("me")

    async def nothing() -> None:
        return None

    state = SimpleNamespace(
        owner="me", shared=True, replicas=replicas, leave=leave, release_claims=nothing, close=nothing
    )
    settings = offline_settings(tmp_path)
    bot = Bot(settings)
    bot.state = state  # type: ignore[assignment]
    bot.cursors = CursorBook(state)  # type: ignore[arg-type]
    bot._state_open = True
    homes = asyncio.create_task(bot._keep_homes(), name="homes")
    await asyncio.wait_for(in_flight.wait(), timeout=5)
    await bot.shutdown([homes])
    assert listed == {"other"}


async def test_a_command_listed_twice_in_a_batch_is_left_once(h: Harness) -> None:
    """A command and its re-delivery in one batch: once claimed, nothing of its caller's is
    counted as left here any more (their next command, at their home now, is claimed at once)."""
    caller = h.caller(mine=False)
    left = h.command(caller)
    await h.bot._admit_all(
        [left, left.model_copy(update={"updated_at": left.updated_at + timedelta(seconds=1)})], "stream"
    )
    await h.claim_due()
    assert h.taken == [left.id]
    assert h.bot._left.empty()


@pytest.mark.parametrize("behind", [False, True])
async def test_a_home_behind_by_more_than_the_backup_delay_stops_reading_ahead(h: Harness, behind: bool) -> None:
    """A home that loses its callers' commands to the others' backup claims (it heard them more
    than `BACKUP_DELAY` after they were posted: it is behind) stops reading ahead for a while, as
    a replica racing for commands does: each of those reads is thrown away, on the replica that is
    behind already. A loss on time is a moment the lists disagreed: reads ahead go on."""
    caller = h.caller(mine=True)
    command = h.command(caller)
    if behind:
        posted = datetime.now(UTC) - timedelta(seconds=BACKUP_DELAY + 2)
        command = command.model_copy(update={"ts": posted, "updated_at": posted})
    # Another replica claimed it first (its backup claim, or a moment the lists disagreed).
    other = await StateStore.open(h.bot.settings.bot_state_db)
    try:
        assert await other.claim_messages([(command.id, command.room_id, command.ts)], datetime.now(UTC))
    finally:
        await other.close()
    assert h.bot.read_ahead.active()
    await h.bot._admit_all([command], "stream")
    assert h.taken == []
    assert h.bot.read_ahead.active() is not behind


async def test_a_replica_that_does_not_hear_commands_is_nobodys_home(postgres_url: str, tmp_path: Path) -> None:
    """Was: a replica whose realtime session was down (Rocket.Chat dropped it, its reconnection
    backing off) went on saying it ran: it stayed the home of a share of the callers, and every
    command of theirs waited the backup delay before another replica claimed it, for as long as
    the session was down. It is now off the list while it does not hear commands, back once it
    does."""
    me = await StateStore.connect(postgres_url, owner="me")
    other = await StateStore.connect(postgres_url, owner="other")
    bot = Bot(offline_settings(tmp_path))
    bot.state = me
    realtime = SimpleNamespace(state=RealtimeState.READY)
    bot.realtime = realtime  # type: ignore[assignment]
    homes = asyncio.create_task(bot._keep_homes(), name="homes")
    try:
        assert await _until_listed(other, "me", True)
        realtime.state = RealtimeState.CONNECTING  # the session dropped; reconnecting
        assert await _until_listed(other, "me", False)
        for _ in range(100):  # its own list read in the same statement: it claims what it hears at once
            if bot.homes is not None and not bot.homes.shared():
                break
            await asyncio.sleep(0.05)
        assert bot.homes is not None and bot.homes.mine("anyone")
        realtime.state = RealtimeState.READY
        assert await _until_listed(other, "me", True)
    finally:
        homes.cancel()
        await asyncio.gather(homes, return_exceptions=True)
        await me.close()
        await other.close()


async def test_a_replica_whose_clock_is_off_the_databases_says_so_once_and_when_it_is_back(
    postgres_url: str, tmp_path: Path
) -> None:
    """Leases are stored on each replica's own clock: a host whose clock is ~20 s behind the
    others' has its running commands taken over (and run a second time) while nothing said why.
    The replica now compares its clock with the database server's at each look: a warning when
    they differ by more than `CLOCK_TOLERANCE`, once; a line when they agree again; the offset as
    a metric."""
    state = await StateStore.connect(postgres_url, owner="skewed")
    offset = [timedelta(seconds=-30)]
    bot = Bot(offline_settings(tmp_path), clock=lambda: datetime.now(UTC) + offset[0])
    bot.state = state
    bot.realtime = SimpleNamespace(state=RealtimeState.READY)  # type: ignore[assignment]
    with structlog.testing.capture_logs() as captured:
        homes = asyncio.create_task(bot._keep_homes(), name="homes")
        try:
            for _ in range(100):
                if any(e["event"] == "clock.out_of_sync" for e in captured):
                    break
                await asyncio.sleep(0.05)
            assert 29 < bot.metrics.clock_offset._value.get() < 31  # the database's clock is ahead by 30 s
            offset[0] = timedelta(0)  # synchronised (NTP stepped it)
            for _ in range(100):
                if any(e["event"] == "clock.in_sync" for e in captured):
                    break
                await asyncio.sleep(0.1)
        finally:
            homes.cancel()
            await asyncio.gather(homes, return_exceptions=True)
            await state.close()
    said = [e for e in captured if e["event"].startswith("clock.")]
    assert [e["event"] for e in said] == ["clock.out_of_sync", "clock.in_sync"]  # once each, not at every look
    assert said[0]["log_level"] == "warning" and said[0]["offset_seconds"] == pytest.approx(30, abs=1)
    assert abs(bot.metrics.clock_offset._value.get()) < 1


async def _until_listed(state: StateStore, owner: str, listed: bool) -> bool:
    for _ in range(100):
        if (owner in await state.replicas(6.0)) is listed:
            return True
        await asyncio.sleep(0.1)
    return False
