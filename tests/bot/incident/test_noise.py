"""The noisy-webhook window: ranking, one count per message, bounded memory, knowing since when it
is complete, and reading a room back from REST."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from bot.incident.noise import NoiseWindow, WebhookPost, rank
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient
from sandbox.config import SandboxConfig
from sandbox.control import incoming_integration_document
from sandbox.rest import create_rest_app
from sandbox.store import Store

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def post(n: int, integration: str, *, room: str = "r1", minutes_ago: float = 1, author: str = "poster") -> WebhookPost:
    return WebhookPost(f"m{n}", room, integration, NOW - timedelta(minutes=minutes_ago), author)


def stream_message(
    message_id: str, integration: str | None, *, room: str = "r1", minutes_ago: float = 1
) -> ChatMessage:
    ts = NOW - timedelta(minutes=minutes_ago)
    doc: dict[str, Any] = {
        "_id": message_id,
        "rid": room,
        "msg": "alert",
        "ts": {"$date": int(ts.timestamp() * 1000)},
        "u": {"_id": "rocket.cat", "username": "rocket.cat"},
    }
    if integration is not None:
        doc["bot"] = {"i": integration}
    message = ChatMessage.from_document(doc)
    assert message is not None
    return message


def test_rank_counts_per_integration_most_first() -> None:
    posts = [post(1, "a"), post(2, "b"), post(3, "b"), post(4, "c", minutes_ago=90), post(5, "a", room="r2")]
    tallies = rank(posts, since=NOW - timedelta(minutes=60), rooms={"r1"})
    assert [(t.integration_id, t.count) for t in tallies] == [("b", 2), ("a", 1)]
    everywhere = rank(posts, since=NOW - timedelta(minutes=60))
    assert [(t.integration_id, t.count) for t in everywhere] == [("a", 2), ("b", 2)]  # a tie at the same time: by id
    assert {t.integration_id: t.rooms for t in everywhere}["a"] == {"r1", "r2"}


def test_rank_keeps_the_messages_of_each_author_apart() -> None:
    """Anyone can put an integration's `bot.i` on their messages (contract §4.7): what its own
    user posted is counted apart from what others did, for `noisy` to tell them apart."""
    posts = [post(1, "a"), post(2, "a", author="alice"), post(3, "a", author="alice"), post(4, "b")]
    tallies = rank(posts, since=NOW - timedelta(minutes=60))
    assert [(t.integration_id, t.author_id, t.count) for t in tallies] == [
        ("a", "alice", 2),
        ("a", "poster", 1),
        ("b", "poster", 1),
    ]
    window = NoiseWindow(now=lambda: NOW)
    window.observe(stream_message("m1", "hook"))
    window.observe(stream_message("m2", "hook").model_copy(update={"user_id": "alice"}))
    assert sorted((t.author_id, t.count) for t in window.tally(since=NOW - timedelta(hours=1))) == [
        ("alice", 1),
        ("rocket.cat", 1),
    ]


def test_ties_go_to_the_one_that_posted_last() -> None:
    posts = [post(1, "early", minutes_ago=10), post(2, "late", minutes_ago=2)]
    assert [t.integration_id for t in rank(posts, since=NOW - timedelta(hours=1))] == ["late", "early"]


posts_strategy = st.lists(
    st.builds(
        WebhookPost,
        message_id=st.sampled_from([f"m{n}" for n in range(30)]),
        room_id=st.sampled_from(["r1", "r2", "r3"]),
        integration_id=st.sampled_from(["a", "b", "c", "d"]),
        ts=st.integers(0, 120).map(lambda minutes: NOW - timedelta(minutes=minutes)),
        author_id=st.sampled_from(["poster", "forger"]),
    ),
    max_size=60,
)


@given(posts=posts_strategy, minutes=st.integers(1, 120), rooms=st.sets(st.sampled_from(["r1", "r2", "r3"])))
def test_rank_is_a_sorted_count_of_distinct_messages(posts: list[WebhookPost], minutes: int, rooms: set[str]) -> None:
    since = NOW - timedelta(minutes=minutes)
    first: dict[str, WebhookPost] = {}
    for p in posts:
        if p.ts >= since and p.room_id in rooms:
            first.setdefault(p.message_id, p)
    expected = Counter((p.integration_id, p.author_id) for p in first.values())
    tallies = rank(posts, since=since, rooms=rooms)
    assert {(t.integration_id, t.author_id): t.count for t in tallies} == dict(expected)
    assert [t.count for t in tallies] == sorted((t.count for t in tallies), reverse=True)
    assert sum(t.count for t in tallies) == len(first)


def test_the_window_counts_a_redelivered_message_once_and_ignores_people() -> None:
    window = NoiseWindow(now=lambda: NOW)
    window.observe(stream_message("m1", "hook"))
    window.observe(stream_message("m1", "hook"))  # a reaction re-delivers it
    window.observe(stream_message("m2", None))  # a person
    window.observe(stream_message("m3", "hook"))
    (tally,) = window.tally(since=NOW - timedelta(hours=1))
    assert (tally.integration_id, tally.count) == ("hook", 2)
    assert len(window) == 2


def test_the_window_is_bounded_and_knows_what_it_lost() -> None:
    window = NoiseWindow(now=lambda: NOW, max_posts=3, retention=timedelta(hours=1))
    start = window.started_at
    assert window.add(post(1, "a", minutes_ago=120)) is False  # older than the retention
    for n, minutes in enumerate((50, 40, 30, 20), start=2):
        window.add(post(n, "a", minutes_ago=minutes))
    assert len(window) == 3
    # The oldest (50 min ago) was dropped for room: the room is complete only from then on.
    assert window.complete_since("r1") == max(start, NOW - timedelta(minutes=50))
    assert window.covers("r1", NOW - timedelta(minutes=45)) is (start <= NOW - timedelta(minutes=45))
    assert window.complete_since("other") == start


def rest_document(message_id: str, minutes_ago: float, integration: str | None) -> dict[str, Any]:
    """A message as `chat.syncMessages` returns it (ISO dates)."""
    doc: dict[str, Any] = {
        "_id": message_id,
        "rid": "r1",
        "msg": "x",
        "ts": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "u": {"_id": "rocket.cat", "username": "rocket.cat"},
    }
    if integration is not None:
        doc["bot"] = {"i": integration}
    return doc


def test_a_backfill_merges_without_double_counting_and_extends_coverage() -> None:
    window = NoiseWindow(now=lambda: NOW)
    window.observe(stream_message("m1", "hook", minutes_ago=1))
    since = NOW - timedelta(minutes=60)
    assert not window.covers("r1", since)
    documents = [
        rest_document("m0", 30, "hook"),
        rest_document("m1", 1, "hook"),  # already seen on the stream
        rest_document("m9", 2, "gone"),  # deleted, listed in `deleted` too
        rest_document("p1", 0, None),  # a person
    ]
    assert window.merge("r1", since, documents, [{"_id": "m9"}]) == 2
    assert window.covers("r1", since)
    (tally,) = window.tally(since=since, rooms={"r1"})
    assert (tally.integration_id, tally.count) == ("hook", 2)


async def test_backfill_reads_the_room_from_rest() -> None:
    store = Store()
    app = create_rest_app(store, SandboxConfig())
    bot = store.create_user("integrations-bot", password="pw", roles=["bot", "admin"])
    store.create_user("rocket.cat", password="pw", roles=["bot"])
    store.create_user("admin", password="pw", roles=["admin"])
    room = store.create_room("alerts", "c", members=["integrations-bot"])
    hook = store.insert_integration(incoming_integration_document(store, "Pager", channel="#alerts"))
    for n in range(3):
        store.post_webhook_message(hook["_id"], f"alert {n}")
    window = NoiseWindow(now=lambda: datetime.now(UTC))
    async with RestClient(
        "http://sandbox.test",
        user_id=bot._id,
        auth_token=store.create_login_token(bot._id),
        transport=httpx.ASGITransport(app=app),
    ) as rest:
        added = await window.backfill(rest, room["_id"], datetime.now(UTC) - timedelta(minutes=5))
    assert added == 3
    (tally,) = window.tally(since=datetime.now(UTC) - timedelta(minutes=5), rooms={room["_id"]})
    assert (tally.integration_id, tally.count) == (hook["_id"], 3)
