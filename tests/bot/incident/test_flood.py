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
    return WebhookPost(f"m{n}", room, integration, at, "poster")


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
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 5)), min_size=1, max_size=400))
def test_memory_stays_bounded_whatever_the_storm(keys: list[tuple[int, int, int]]) -> None:
    guard = FloodCounter(threshold=3, window=WINDOW, quiet=QUIET, max_keys=16, per_author=4)
    for n, (integration, room, author) in enumerate(keys):
        at = T0 + timedelta(milliseconds=n)
        if n % 7 == 0:
            guard.learn(f"i{integration}", f"u{author}", at)
        guard.count(post(n, at, integration=f"i{integration}", room=f"r{room}"), f"u{author}", at)
        assert len(guard._verified) <= 16 and len(guard._unverified) <= 16 and len(guard._posters) <= 16
        assert all(len(keys) <= 4 for keys in guard._by_author.values())
        assert sum(map(len, guard._by_author.values())) == len(guard._unverified)
        assert all(len(entry.ring) <= 3 for entry in [*guard._verified.values(), *guard._unverified.values()])


def test_forged_messages_do_not_complete_the_integrations_count() -> None:
    """Was: 19 messages forged by alice with Grafana's `bot.i` plus one genuine Grafana message
    made a flood reported with Grafana's user as its author, so the guard's author check passed
    (and BOT_FLOOD_ACTION=disable switched Grafana off)."""
    guard = counter()
    for n in range(19):
        assert guard.count(post(n, T0, integration="grafana", room="alerts"), "alice", T0) is None
    assert guard.count(post(99, T0, integration="grafana", room="alerts"), "grafana-user", T0) is None
    genuine = [post(100 + n, T0, integration="grafana", room="alerts") for n in range(19)]
    floods = [guard.count(p, "grafana-user", T0) for p in genuine]
    assert [f is not None for f in floods] == [False] * 18 + [True]  # its own 20th message


def test_a_forged_flood_mutes_only_the_forger_not_a_real_storm() -> None:
    """Was: 20 forged messages muted Grafana's (integration, room) for the quiet period before the
    author check rejected them, so a real storm right after went unreported for 30 minutes."""
    guard = counter()
    forged = [guard.count(post(n, T0, integration="grafana", room="alerts"), "alice", T0) for n in range(20)]
    assert forged[-1] is not None and forged[-1].author_id == "alice"  # the guard rejects it
    later = T0 + timedelta(seconds=5)
    real = [
        guard.count(post(100 + n, later, integration="grafana", room="alerts"), "grafana-user", later)
        for n in range(500)
    ]
    reported = [f for f in real if f is not None]
    assert len(reported) == 1 and reported[0].author_id == "grafana-user" and real[19] is reported[0]
    # The forger's own count stays muted: no more work for it.
    assert guard.count(post(999, later, integration="grafana", room="alerts"), "alice", later) is None


def test_once_the_integrations_user_is_known_other_authors_are_not_counted() -> None:
    guard = counter(threshold=3)
    guard.learn("grafana", "grafana-user", T0)
    guard.learn("gone", None, T0)  # no such integration
    for n in range(50):
        assert guard.count(post(n, T0, integration="grafana"), "alice", T0) is None
        assert guard.count(post(n, T0, integration="gone"), "alice", T0) is None
    assert len(guard) == 0
    assert [guard.count(post(n, T0, integration="grafana"), "grafana-user", T0) is not None for n in range(3)] == [
        False,
        False,
        True,
    ]
    # Known for a while only (its user may change): then counted, and checked, again.
    later = T0 + timedelta(minutes=11)
    assert [guard.count(post(n, later, integration="gone"), "alice", later) is not None for n in range(3)] == [
        False,
        False,
        True,
    ]


def test_one_authors_many_keys_do_not_push_out_anyone_elses_count() -> None:
    """Was: 10,000 forged keys (random `bot.i`) pushed every genuine count out of the LRU."""
    guard = FloodCounter(threshold=3, window=WINDOW, quiet=QUIET, max_keys=100, per_author=10)
    guard.learn("grafana", "grafana-user", T0)
    assert guard.count(post(1, T0, integration="grafana"), "grafana-user", T0) is None  # verified
    assert guard.count(post(2, T0, integration="pager"), "pager-user", T0) is None  # not yet
    for n in range(5000):
        guard.count(post(n, T0, integration=f"forged-{n}", room=f"r{n % 7}"), "mallory", T0)
    assert len(guard._by_author["mallory"]) == 10
    for name in ("grafana", "pager"):
        hits = [guard.count(post(n, T0, integration=name), f"{name}-user", T0) is not None for n in range(2)]
        assert hits == [False, True], name  # their counts were kept


def test_the_window_reads_as_people_say_it() -> None:
    assert within(timedelta(minutes=1)) == "in the last minute"
    assert within(timedelta(minutes=5)) == "in the last 5 min"
