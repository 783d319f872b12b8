"""The flood guard's counting (bot/incident/flood.py): a flood is `threshold` new webhook messages
of one integration in one room within `window`; one report per quiet period; bounded memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.incident.flood import FloodCounter, within
from bot.incident.noise import WebhookPost

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
QUIET = timedelta(minutes=30)


def counter(threshold: int = 20, max_keys: int = 10_000) -> FloodCounter:
    return FloodCounter(threshold=threshold, window=WINDOW, quiet=QUIET, max_keys=max_keys)


def post(n: int, at: datetime, *, integration: str = "i1", room: str = "r1") -> WebhookPost:
    return WebhookPost(f"m{n}", room, integration, at)


def test_the_twentieth_message_within_a_minute_is_a_flood_reported_once() -> None:
    guard = counter()
    floods = [guard.count(post(n, T0 + timedelta(seconds=n)), "u1", T0 + timedelta(seconds=n)) for n in range(25)]
    reported = [f for f in floods if f is not None]
    assert len(reported) == 1 and floods[19] is reported[0]
    assert (reported[0].integration_id, reported[0].room_id, reported[0].author_id, reported[0].count) == (
        "i1",
        "r1",
        "u1",
        20,
    )


def test_messages_spread_wider_than_the_window_are_no_flood() -> None:
    guard = counter()
    for n in range(100):
        at = T0 + timedelta(seconds=4 * n)  # 15 a minute
        assert guard.count(post(n, at), "u1", at) is None


def test_after_the_quiet_period_a_new_flood_is_reported_again() -> None:
    guard = counter(threshold=3)
    times = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    assert [guard.count(post(n, t), "u1", t) is not None for n, t in enumerate(times)] == [False, False, True]
    later = T0 + QUIET + timedelta(seconds=3)
    assert guard.count(post(9, later), "u1", later) is None  # counting starts afresh
    again = [later + timedelta(seconds=s) for s in (1, 2)]
    assert [guard.count(post(10 + n, t), "u1", t) is not None for n, t in enumerate(again)] == [False, True]


def test_rooms_and_integrations_are_counted_apart() -> None:
    guard = counter(threshold=2)
    assert guard.count(post(1, T0, room="r1"), "u1", T0) is None
    assert guard.count(post(2, T0, room="r2"), "u1", T0) is None
    assert guard.count(post(3, T0, integration="i2"), "u2", T0) is None
    assert guard.count(post(4, T0, room="r1"), "u1", T0) is not None


def test_threshold_zero_is_off_and_old_messages_from_a_catch_up_do_not_count() -> None:
    off = counter(threshold=0)
    assert all(off.count(post(n, T0), "u1", T0) is None for n in range(100))
    assert len(off) == 0
    guard = counter(threshold=2)
    old = T0 - timedelta(minutes=5)
    assert guard.count(post(1, old), "u1", T0) is None and guard.count(post(2, old), "u1", T0) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=1, max_size=400))
def test_memory_stays_bounded_whatever_the_storm(keys: list[tuple[int, int]]) -> None:
    guard = counter(threshold=3, max_keys=16)
    for n, (integration, room) in enumerate(keys):
        at = T0 + timedelta(milliseconds=n)
        guard.count(post(n, at, integration=f"i{integration}", room=f"r{room}"), "u", at)
        assert len(guard._rings) <= 16 and len(guard._muted) <= 16
        assert all(len(ring) <= 3 for ring in guard._rings.values())


def test_the_window_reads_as_people_say_it() -> None:
    assert within(timedelta(minutes=1)) == "in the last minute"
    assert within(timedelta(minutes=5)) == "in the last 5 min"
