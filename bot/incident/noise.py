"""Which integrations posted the most, lately: the data behind `noisy`.

Theory of operation
-------------------
Every message an integration posts carries `bot: {"i": <integration id>}` and is written as the
user the integration posts as (`u`, its `userId`; contract §5.1). Anyone can put any `bot.i` on a
message of their own, though (DDP `sendMessage`, contract §4.7), so a post is kept with its author,
and is counted per integration *and author*: `noisy` (commands/noisy.py) shows only the count of
the integration's own user, as the flood guard (bot/incident/flood.py) counts only that user's.
The runtime hands every streamed message to `NoiseWindow.observe` before its intake filter drops
webhook messages; the window keeps, per message id (so the re-deliveries of an edited or
reacted-to message count once), who posted where and when. It is bounded in time (`retention`)
and size (`max_posts`, oldest dropped first), so a flood cannot exhaust memory.

The window knows since when it is complete for each room: since the bot started, or since an
earlier point a backfill fetched. When `noisy 60` asks for more than that (right after a
restart, or after a room's oldest posts were dropped), `backfill` reads the room's messages
from REST (`chat.syncMessages`, messages updated since the start of the span) and merges them.

`rank` is pure: given posts, a start time and the rooms that count, the (integration, author)
pairs by number of messages, most first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient

DEFAULT_RETENTION: Final = timedelta(hours=24)
DEFAULT_MAX_POSTS: Final = 50_000


@dataclass(frozen=True)
class WebhookPost:
    message_id: str
    room_id: str
    integration_id: str
    ts: datetime
    author_id: str  # who wrote it: the integration's user, or someone who set its `bot.i`


@dataclass(frozen=True)
class Tally:
    integration_id: str
    author_id: str
    count: int
    last: datetime
    rooms: frozenset[str]


def rank(posts: Iterable[WebhookPost], *, since: datetime, rooms: Collection[str] | None = None) -> list[Tally]:
    """Messages posted at or after `since` (in `rooms`, or anywhere for None) per integration and
    author: most first; ties go to the one that posted last, then to the ids (a stable order)."""
    counts: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], datetime] = {}
    where: dict[tuple[str, str], set[str]] = {}
    seen: set[str] = set()
    for post in posts:
        if post.ts < since or (rooms is not None and post.room_id not in rooms) or post.message_id in seen:
            continue
        seen.add(post.message_id)
        key = (post.integration_id, post.author_id)
        counts[key] = counts.get(key, 0) + 1
        last[key] = max(last.get(key, post.ts), post.ts)
        where.setdefault(key, set()).add(post.room_id)
    tallies = [Tally(i, a, counts[i, a], last[i, a], frozenset(where[i, a])) for i, a in counts]
    tallies.sort(key=lambda t: (-t.count, -t.last.timestamp(), t.integration_id, t.author_id))
    return tallies


def post_of(message: ChatMessage) -> WebhookPost | None:
    if message.bot_integration_id is None:
        return None
    return WebhookPost(message.id, message.room_id, message.bot_integration_id, message.ts, message.user_id)


class NoiseWindow:
    def __init__(
        self,
        *,
        now: Callable[[], datetime],
        retention: timedelta = DEFAULT_RETENTION,
        max_posts: int = DEFAULT_MAX_POSTS,
    ) -> None:
        self._now = now
        self.retention = retention
        self.max_posts = max_posts
        self.started_at = now()
        self._posts: dict[str, WebhookPost] = {}
        self._oldest: list[tuple[datetime, str]] = []  # heap of (ts, message id)
        self._complete_from: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._posts)

    def observe(self, message: ChatMessage) -> None:
        """A streamed message: remembered if an integration posted it (cheap; never raises)."""
        post = post_of(message)
        if post is not None:
            self.add(post)

    def add(self, post: WebhookPost) -> bool:
        """Remember one post; False if already known (a re-delivery) or too old to keep."""
        if post.message_id in self._posts or post.ts < self._now() - self.retention:
            return False
        self._posts[post.message_id] = post
        heapq.heappush(self._oldest, (post.ts, post.message_id))
        self._trim()
        return post.message_id in self._posts

    def forget(self, message_id: str) -> None:
        """A deleted message (from a backfill): no longer counted."""
        self._posts.pop(message_id, None)

    def complete_since(self, room_id: str) -> datetime:
        """From when on the window holds every webhook post of this room."""
        return self._complete_from.get(room_id, self.started_at)

    def covers(self, room_id: str, since: datetime) -> bool:
        return self.complete_since(room_id) <= since

    def tally(self, *, since: datetime, rooms: Collection[str] | None = None) -> list[Tally]:
        return rank(self._posts.values(), since=since, rooms=rooms)

    async def backfill(self, rest: RestClient, room_id: str, since: datetime) -> int:
        """Read the room's messages since `since` from REST and merge them; returns how many new
        webhook posts were added. Raises `UpstreamError` (the window is unchanged then)."""
        result = await rest.chat_sync_messages(room_id, since)
        added = self.merge(room_id, since, result.get("updated") or [], result.get("deleted") or [])
        return added

    def merge(self, room_id: str, since: datetime, updated: Iterable[Any], deleted: Iterable[Any]) -> int:
        """Merge one `chat.syncMessages` answer for `room_id` covering everything since `since`."""
        added = 0
        for document in updated:
            message = ChatMessage.from_document(document)
            post = post_of(message) if message is not None and message.room_id == room_id else None
            if post is not None and self.add(post):
                added += 1
        for document in deleted:
            if isinstance(document, dict) and isinstance(document.get("_id"), str):
                self.forget(document["_id"])
        floor = max(since, self._now() - self.retention)
        self._complete_from[room_id] = min(self.complete_since(room_id), floor)
        return added

    def _trim(self) -> None:
        cutoff = self._now() - self.retention
        while self._oldest and (len(self._posts) > self.max_posts or self._oldest[0][0] < cutoff):
            ts, message_id = heapq.heappop(self._oldest)
            post = self._posts.pop(message_id, None)
            if post is not None and len(self._posts) >= self.max_posts:
                # Dropped for room, not for age: this room is no longer complete before `ts`.
                self._complete_from[post.room_id] = max(self.complete_since(post.room_id), ts)
        if len(self._oldest) > 2 * self.max_posts:  # ids forgotten by `forget` linger in the heap
            self._oldest = [(post.ts, post.message_id) for post in self._posts.values()]
            heapq.heapify(self._oldest)
