"""The reads a command that changes integrations needs (its caller's rights, fresh, and the
integration it names) begin while its claim is in flight (bot/runtime/read_ahead.py), through the
running bot (in-process) against the sandbox, with a claim held back by the test: they are
requested before the claim is committed; a lost or failed claim cancels them; after a lost claim
nothing is read ahead for a while; a turn that starts too late, or after Rocket.Chat announced a
change of the caller's roles, reads the rights again, so a right revoked meanwhile is honoured."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reliability_support import BOT, World, call, running_bot, settings_for, until, world

from bot.errors import StateUnavailable, UpstreamError
from bot.integrations import authz
from bot.integrations.authz import CallerRights
from bot.rocketchat.message_ids import random_id
from bot.runtime import read_ahead
from bot.runtime.bot import Bot
from bot.runtime.intake import Accepted
from bot.runtime.read_ahead import EarlyReads, ReadAhead
from bot.runtime.staleness import Freshness
from bot.state.store import read_message_ids

TIMEOUT = 15.0


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


class HeldClaim:
    """The bot's claims of the commands posted through `post` wait until `release` is set, then
    go on as `outcome` says: "won" (as usual), "lost" (another replica claimed them first) or
    "failed" (the database away, as long as `failing` is set). `begun`: the reads the bot began
    for each of those commands before its claim (None: none)."""

    def __init__(self, bot: Bot, outcome: str = "won") -> None:
        assert bot.state is not None
        self.bot = bot
        self.outcome = outcome
        self.ids: set[str] = set()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.failing = outcome == "failed"
        self.begun: dict[str, EarlyReads | None] = {}  # at the first admission of each
        self.admissions: list[tuple[str, EarlyReads | None]] = []  # every admission, re-deliveries included
        state = bot.state
        original = state.claim_messages

        async def claim(claims: list[tuple[str, str, datetime]], now: datetime, **options: Any) -> set[str]:
            held = [c for c in claims if c[0] in self.ids]
            if not held:
                return await original(claims, now, **options)
            self.entered.set()
            await self.release.wait()
            if self.failing:
                raise StateUnavailable("test database", "connection lost")
            if self.outcome == "lost":  # another replica's claim, committed first, and its command done
                await original(held, now)
                for message_id, *_ in held:
                    await state.finish_message(message_id, "done by another replica")
            return await original(claims, now, **options)

        state.claim_messages = claim  # type: ignore[method-assign]
        begin = bot._read_ahead

        def observed(
            wanted: list[tuple[Accepted, Freshness]], first: set[str], arrived: float
        ) -> dict[str, EarlyReads]:
            began = begin(wanted, first, arrived)
            for accepted, _ in wanted:
                if accepted.message.id in self.ids:
                    self.begun.setdefault(accepted.message.id, began.get(accepted.message.id))
                    self.admissions.append((accepted.message.id, began.get(accepted.message.id)))
            return began

        bot._read_ahead = observed  # type: ignore[method-assign]

    async def post(self, w: World, user: str, text: str) -> dict[str, Any]:
        message_id = random_id()
        self.ids.add(message_id)
        self.entered.clear()
        self.release.clear()
        return await call(w.control.post_message, user, "ops", text, message_id=message_id)


async def requested(w: World, endpoint: str, at_least: int = 1) -> int:
    """Wait until the sandbox has received `endpoint` at least `at_least` times (since the reset)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        seen = (await call(w.control.counters)).rest.get(endpoint, 0)
        if seen >= at_least:
            return seen
        if loop.time() > deadline:
            raise TimeoutError(f"{endpoint} requested {seen} times, not {at_least}")
        await asyncio.sleep(0.02)


async def count(w: World, endpoint: str) -> int:
    return (await call(w.control.counters)).rest.get(endpoint, 0)


async def answer_to(w: World, tmp_path: Path, command: dict[str, Any]) -> str:
    wanted = read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])
    found = await call(
        w.control.wait_for_message,
        "ops",
        lambda m: m["_id"] in wanted and m["u"]["username"] == BOT,
        TIMEOUT,
    )
    return str(found["msg"])


async def hook(w: World, name: str, created_by: str = "admin") -> dict[str, Any]:
    return await call(w.control.create_incoming_integration, name, channel="#ops", created_by=created_by)


async def enabled(w: World, target: dict[str, Any]) -> bool:
    return bool((await call(w.control.integration, target["_id"]))["enabled"])


async def warmed(w: World, tmp_path: Path, held: HeldClaim, user: str) -> None:
    """A first command of `user`: their rights are cached (the lookup is read ahead only then)."""
    await hook(w, f"warm-{user}", created_by=user)
    command = await held.post(w, user, "!integration disable warm-" + user)
    held.release.set()
    assert "Disabled" in await answer_to(w, tmp_path, command)
    await call(w.control.reset_counters)


async def test_the_rights_and_the_lookup_are_requested_before_the_claim_is_committed(w: World, tmp_path: Path) -> None:
    target = await hook(w, "ahead")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        await warmed(w, tmp_path, held, "admin")
        command = await held.post(w, "admin", "!integration disable ahead")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        # The claim is not committed yet, and both reads are on their way.
        await requested(w, "users.info")
        await requested(w, "integrations.list")
        assert await enabled(w, target)
        held.release.set()
        assert "Disabled" in await answer_to(w, tmp_path, command)
        # The command used them: neither read again at its turn.
        assert await count(w, "users.info") == 1
        assert await count(w, "integrations.list") == 1
        assert bot.read_ahead.held == 0
    assert not await enabled(w, target)


async def test_the_reads_ahead_are_sent_before_the_claim_is(w: World, tmp_path: Path) -> None:
    """The claim's statement takes a few hundred µs of the bot to build and send: the reads,
    which take longer to come back, go out first (measured: they began 0.3–0.5 ms sooner)."""
    await hook(w, "first-out")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        await warmed(w, tmp_path, held, "admin")
        assert bot.rest is not None and bot.state is not None
        events: list[str] = []
        http = bot.rest._http
        send = http.send
        claim = bot.state.claim_messages

        async def sending(request: Any, **options: Any) -> Any:
            events.append(request.url.path.rsplit("/", 1)[-1])
            return await send(request, **options)

        async def claiming(claims: list[tuple[str, str, datetime]], now: datetime, **options: Any) -> set[str]:
            events.append("claim")
            return await claim(claims, now, **options)

        http.send = sending  # type: ignore[method-assign]
        bot.state.claim_messages = claiming  # type: ignore[method-assign]
        command = await held.post(w, "admin", "!integration disable first-out")
        held.release.set()
        assert "Disabled" in await answer_to(w, tmp_path, command)
        assert held.begun[command["_id"]] is not None
        assert "claim" in events
        before_claim = set(events[: events.index("claim")])
        assert {"users.info", "integrations.list"} <= before_claim, events


async def test_a_lost_claim_cancels_the_reads_and_nothing_is_read_ahead_for_a_while(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = await hook(w, "lost")
    later = await hook(w, "later")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        await warmed(w, tmp_path, held, "admin")
        await call(w.control.set_latency, 5.0, "users.info")  # the rights read still in flight when lost
        held.outcome = "lost"
        command = await held.post(w, "admin", "!integration disable lost")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        await requested(w, "users.info")
        begun = held.begun[command["_id"]]
        assert begun is not None
        held.release.set()
        await until(begun.rights.done, what="the reads cancelled")
        assert begun.rights.cancelled()
        assert begun.lookup is not None and begun.lookup.read.done()
        assert not bot.read_ahead.active()
        await call(w.control.clear_faults)

        # The next command, within the pause, is read at its turn, after its claim, as without reading ahead.
        held.outcome = "won"
        await call(w.control.reset_counters)
        command2 = await held.post(w, "admin", "!integration disable later")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        assert held.begun[command2["_id"]] is None
        held.release.set()
        assert "Disabled" in await answer_to(w, tmp_path, command2)
        assert await count(w, "users.info") == 1

        # The lost command was not run here: not answered by this replica, its integration untouched.
        assert await enabled(w, lost)
        answers = read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])
        assert not any(m["_id"] in answers for m in await call(w.control.messages, "ops"))

        # Once the pause is over, reads begin before the claim again.
        monkeypatch.setattr(read_ahead, "PAUSE_AFTER_LOSS", 0.0)
        assert bot.read_ahead.active()
        await call(w.control.reset_counters)
        again = await hook(w, "again")
        command3 = await held.post(w, "admin", "!integration disable again")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        await requested(w, "users.info")
        assert held.begun[command3["_id"]] is not None
        held.release.set()
        assert "Disabled" in await answer_to(w, tmp_path, command3)
        assert not await enabled(w, again)
    assert not await enabled(w, later)


def duplicates(bot: Bot) -> float:
    found = bot.metrics.registry.get_sample_value("integrations_bot_duplicate_deliveries_total", {"origin": "stream"})
    return found or 0.0


async def test_a_re_delivery_is_not_read_ahead_and_its_lost_claim_does_not_pause_reading_ahead(
    w: World, tmp_path: Path
) -> None:
    target = await hook(w, "re-delivered")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        command = await held.post(w, "admin", "!integration disable re-delivered")
        held.release.set()
        assert "Disabled" in await answer_to(w, tmp_path, command)
        assert held.begun[command["_id"]] is not None
        assert duplicates(bot) == 0
        await call(w.control.react, command["_id"], ":eyes:", "alice")  # the same message, delivered again
        await until(lambda: duplicates(bot) == 1, what="the re-delivery seen, its claim lost")
        # Read ahead at its first admission only (later ones: the re-delivery, a catch-up pass's find).
        mine = [began for message_id, began in held.admissions if message_id == command["_id"]]
        assert len(mine) >= 2 and mine[0] is held.begun[command["_id"]] and mine[1:] == [None] * (len(mine) - 1)
        assert bot.read_ahead.active()
    assert not await enabled(w, target)


async def test_a_failed_claim_cancels_the_reads_and_the_command_runs_once_claimed(w: World, tmp_path: Path) -> None:
    target = await hook(w, "failed-claim")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot, "failed")
        await call(w.control.set_latency, 5.0, "users.info")
        command = await held.post(w, "admin", "!integration disable failed-claim")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        await requested(w, "users.info")
        begun = held.begun[command["_id"]]
        assert begun is not None
        held.release.set()  # and fails
        await until(begun.rights.done, what="the reads cancelled")
        assert begun.rights.cancelled()
        await call(w.control.clear_faults)
        held.failing = False  # the database is back: the command is claimed, then run
        assert "Disabled" in await answer_to(w, tmp_path, command)
        assert bot.read_ahead.held == 0
    assert not await enabled(w, target)


async def test_a_turn_that_starts_too_late_reads_the_rights_again_and_honours_a_revocation(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_ahead, "RIGHTS_MAX_AGE", 0.3)
    monkeypatch.setattr(authz, "SHARED_READ_AGE", 0.3)  # the same bound for a read shared at the turn
    kept = await hook(w, "kept-late", created_by="owen")
    late = await hook(w, "late", created_by="owen")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        await warmed(w, tmp_path, held, "owen")
        loop = asyncio.get_running_loop()

        # Late, rights unchanged: read twice (ahead, then at the turn), and the command runs.
        command = await held.post(w, "owen", "!integration disable late")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        await requested(w, "users.info")
        since = loop.time()
        await until(lambda: loop.time() - since > 0.4, what="past the bound")
        held.release.set()
        assert "Disabled" in await answer_to(w, tmp_path, command)
        assert await count(w, "users.info") == 2

        # Late, and the account deactivated meanwhile (Rocket.Chat announces no such change).
        await call(w.control.reset_counters)
        command = await held.post(w, "owen", "!integration disable kept-late")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        begun = held.begun[command["_id"]]
        assert begun is not None
        rights = await asyncio.wait_for(asyncio.shield(begun.rights), TIMEOUT)
        assert rights.active  # read ahead before the deactivation
        await call(w.control.set_user_active, "owen", False)
        since = loop.time()
        await until(lambda: loop.time() - since > 0.4, what="past the bound")
        held.release.set()
        assert "Disabled" not in await answer_to(w, tmp_path, command)
        assert await count(w, "users.info") == 2
    assert not await enabled(w, late)
    assert await enabled(w, kept)


async def test_a_role_change_announced_after_the_read_ahead_is_honoured_within_the_bound(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_ahead, "RIGHTS_MAX_AGE", 60.0)  # only the announcement can make it read again
    kept = await hook(w, "kept-role", created_by="owen")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        await warmed(w, tmp_path, held, "owen")
        assert bot.services is not None
        rights_cache = bot.services.rights
        owen = w.creds("owen")["userId"]
        # The command's turn starts once the test says so (as if it waited in its caller's lane).
        turn = asyncio.Event()
        command_of = bot._command

        async def later(accepted: Accepted, **options: Any) -> None:
            await turn.wait()
            await command_of(accepted, **options)

        bot._command = later  # type: ignore[method-assign]
        command = await held.post(w, "owen", "!integration disable kept-role")
        held.release.set()
        await until(lambda: bot.read_ahead.held == 1, what="the reads held for its turn")
        begun = held.begun[command["_id"]]
        assert begun is not None
        rights = await asyncio.wait_for(asyncio.shield(begun.rights), TIMEOUT)
        assert rights.has("manage-own-incoming-integrations")
        stamp = rights_cache.stamp(owen)
        await call(w.control.set_user_roles, "owen", ["user"])
        await until(lambda: rights_cache.stamp(owen) != stamp, what="the roles-change announced")
        turn.set()
        answer = await answer_to(w, tmp_path, command)
        assert "Disabled" not in answer
        assert await count(w, "users.info") == 2
    assert await enabled(w, kept)


async def test_a_failed_rights_read_ahead_fails_the_command_as_a_failed_read_at_its_turn(
    w: World, tmp_path: Path
) -> None:
    target = await hook(w, "unreadable")
    async with running_bot(settings_for(w, tmp_path, bot_rights_cache_seconds=0)) as (bot, _):
        held = HeldClaim(bot)
        await call(w.control.reset_counters)
        await call(w.control.fail_next, "users.info", 3, "500")  # every attempt of one read
        command = await held.post(w, "admin", "!integration disable unreadable")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)
        begun = held.begun[command["_id"]]
        assert begun is not None
        with pytest.raises(UpstreamError):
            await asyncio.wait_for(asyncio.shield(begun.rights), TIMEOUT)
        held.release.set()
        answer = await answer_to(w, tmp_path, command)
        assert "Disabled" not in answer
        assert await count(w, "users.info") == 3  # not read again at its turn
    assert await enabled(w, target)


# --- ReadAhead alone ---------------------------------------------------------------------------


def reads(started: float, stamp: tuple[int, int] = (0, 0)) -> EarlyReads:
    future: asyncio.Future[CallerRights] = asyncio.get_running_loop().create_future()
    return EarlyReads(started, stamp, asyncio.ensure_future(_wait(future)), None)


async def _wait(future: asyncio.Future[CallerRights]) -> CallerRights:
    return await future


async def test_held_reads_serve_a_turn_within_the_bound_with_the_stamp_unchanged() -> None:
    ahead = ReadAhead()
    now = asyncio.get_running_loop().time()
    young, old, changed = reads(now), reads(now - read_ahead.RIGHTS_MAX_AGE - 0.1), reads(now)
    ahead.hold("young", young)
    ahead.hold("old", old)
    ahead.hold("changed", changed)
    assert ahead.take("young", lambda: (0, 0)) is young
    assert ahead.take("old", lambda: (0, 0)) is None
    assert ahead.take("changed", lambda: (0, 1)) is None
    await asyncio.sleep(0)  # the cancellations land
    assert not young.rights.cancelled() and old.rights.cancelled() and changed.rights.cancelled()
    assert ahead.held == 0
    young.cancel()


async def test_held_reads_are_dropped_once_too_old_or_when_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_ahead, "RIGHTS_MAX_AGE", 0.05)
    ahead = ReadAhead()
    loop = asyncio.get_running_loop()
    expiring, stopping = reads(loop.time()), reads(loop.time() + 3600)
    ahead.hold("expiring", expiring)
    ahead.hold("stopping", stopping)
    await until(expiring.rights.cancelled, what="the expiry")
    assert ahead.held == 1
    ahead.clear()
    await until(stopping.rights.cancelled, what="the clear")
    assert ahead.held == 0


async def test_a_lost_claim_pauses_reading_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_ahead, "PAUSE_AFTER_LOSS", 0.05)
    ahead = ReadAhead()
    assert ahead.active()
    ahead.lost()
    assert not ahead.active()
    await until(ahead.active, what="the pause over")


def test_the_last_commands_seen_are_remembered_to_tell_re_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_ahead, "SIGHTINGS_KEPT", 3)
    ahead = ReadAhead()
    assert ahead.first_sight("a")
    ahead.sighted(["a", "b", "c"])
    assert not ahead.first_sight("a")
    ahead.sighted(["a", "d"])  # "a" seen again: kept; "b", the oldest, forgotten
    assert [ahead.first_sight(m) for m in "abcd"] == [False, True, False, False]


async def test_a_burst_from_one_caller_shares_a_fresh_read_of_their_rights(w: World, tmp_path: Path) -> None:
    """Commands of one person queued together: each is judged on rights read after it arrived,
    and a read begun for one of them after the others arrived serves those too (four commands,
    two `users.info` here: one read ahead for the first, one for the three queued behind it)."""
    hooks = [await hook(w, f"burst-{i}", created_by="owen") for i in range(4)]
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        held = HeldClaim(bot)
        await warmed(w, tmp_path, held, "owen")
        first = await held.post(w, "owen", "!integration disable burst-0")
        await asyncio.wait_for(held.entered.wait(), TIMEOUT)  # its claim held: the others queue behind it
        queued = []
        for i in range(1, 4):
            queued.append(await call(w.control.post_message, "owen", "ops", f"!integration disable burst-{i}"))
        assert bot.realtime is not None
        await until(lambda: bot.realtime is not None and bot.realtime._events.qsize() >= 3, what="all queued")
        held.release.set()
        for command in [first, *queued]:
            assert "Disabled" in await answer_to(w, tmp_path, command)
        assert await count(w, "users.info") == 2
    assert [await enabled(w, h) for h in hooks] == [False] * 4
