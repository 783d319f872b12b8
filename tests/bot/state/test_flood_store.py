"""The flood guard's notices in the state store, on both backends: one notice per integration and
room per quiet period, decided once among replicas flooding the same moment, and a "quiet for
today" that only lengthens the silence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bot.state.store import StateStore

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
QUIET = timedelta(minutes=30)
# Opens one more StateStore on the test's state (tests/bot/state/conftest.py `open_store`).
Opener = Callable[..., Awaitable[StateStore]]


async def test_one_notice_per_quiet_period_then_the_next_one(open_store: Opener) -> None:
    floods = (await open_store()).floods
    assert await floods.claim("i1", "r1", T0, T0 + QUIET) is True
    assert await floods.claim("i1", "r1", T0 + timedelta(minutes=5), T0 + timedelta(minutes=35)) is False
    # Another room or another integration is a notice of its own.
    assert await floods.claim("i1", "r2", T0, T0 + QUIET) is True
    assert await floods.claim("i2", "r1", T0, T0 + QUIET) is True
    later = T0 + QUIET
    assert await floods.claim("i1", "r1", later, later + QUIET) is True
    quiet = await floods.quiet_until("i1", "r1")
    assert quiet is not None and quiet.until == later + QUIET and quiet.by is None


async def test_replicas_flooded_at_once_post_one_notice(open_store: Opener) -> None:
    stores = [(await open_store(owner=f"replica-{n}")) for n in range(4)]
    won = await asyncio.gather(*(s.floods.claim("i1", "r1", T0, T0 + QUIET) for s in stores))
    assert sorted(won) == [False, False, False, True]


async def test_quiet_for_today_holds_later_notices_and_only_lengthens(open_store: Opener) -> None:
    floods = (await open_store()).floods
    end_of_day = datetime(2026, 12, 7, tzinfo=UTC)
    quiet = await floods.quiet("i1", "r1", end_of_day, "alice")
    assert quiet.until == end_of_day and quiet.by == "alice"
    assert await floods.claim("i1", "r1", T0 + timedelta(hours=3), T0 + timedelta(hours=3) + QUIET) is False
    # A shorter quiet asked later keeps the longer one (and who chose it).
    shorter = await floods.quiet("i1", "r1", T0 + timedelta(hours=1), "bob")
    assert shorter.until == end_of_day and shorter.by == "alice"
    assert await floods.claim("i1", "r1", end_of_day, end_of_day + QUIET) is True
    # A notice after a quiet period: quiet for today during it lengthens it.
    quiet = await floods.quiet("i1", "r1", datetime(2026, 12, 8, tzinfo=UTC), "bob")
    assert quiet.until == datetime(2026, 12, 8, tzinfo=UTC) and quiet.by == "bob"


async def test_quiet_periods_are_seen_by_every_process_and_pruned_when_over(open_store: Opener) -> None:
    first = await open_store(owner="a")
    await first.floods.claim("i1", "r1", T0, T0 + QUIET)
    await first.floods.quiet("i2", "r1", T0 + timedelta(hours=12), "alice")
    second = await open_store(owner="b")
    assert await second.floods.claim("i1", "r1", T0 + timedelta(minutes=1), T0 + QUIET) is False
    assert await second.floods.prune(T0 + QUIET + timedelta(seconds=1)) == 1
    assert await second.floods.quiet_until("i1", "r1") is None
    assert await second.floods.quiet_until("i2", "r1") is not None
