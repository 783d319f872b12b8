"""The flood guard: one notice when an integration floods a room, optionally a timed disable.

Theory of operation
-------------------
Every streamed webhook message (`bot.i`, contract §5.1) that the noisy window takes as new (a
re-delivery of an edited or reacted-to message is not new) reaches `FloodCounter.count`, which
is O(1) and does no I/O: per integration, room and author, a ring of the arrival times of the
last `threshold` messages. The author is in the key because anyone can put any `bot.i` on a
message (DDP `sendMessage`, contract §4.7), while a real webhook message is posted as the
integration's `userId`: forged messages make a count of their own, which can complete, or mute,
only itself, never the integration's. Once the integration has been read, its user is known for
KNOWN_FOR: messages of another author are not counted at all (no REST call for them), and its
own counts are kept apart from those not verified yet. When the ring is full and its oldest
entry is within `window`, that is a flood: this count alone is muted locally for `quiet` (no
further work for it, whatever the storm) and `FloodGuard` handles it in a task of its own, off
the message path:

1. the room is one of BOT_FLOOD_IGNORE_ROOMS (a name or an id) → nothing (muted for a day);
2. the integration is read once (the only REST call, the name for the notice) and the user it
   posts as is learnt; a flood whose author is not that user was not posted by it → nothing
   (only the forger's own count stays muted);
3. the shared store decides (`FloodStore.claim`, an upsert on (integration, room)): only the
   process that moves the quiet period on posts the notice, so several replicas, each seeing
   every message, post one; a "quiet for today" (`quiet` command) holds it too;
4. BOT_FLOOD_ACTION=disable: the winner switches the integration off through
   `TimerService.disable_by_bot`, a normal timed disable (actor: the bot, reason "flood guard");
5. the notice, in the room, at an id derived from the key and the claim's time (a retry stores
   it once), with buttons that post normal commands as whoever taps them.

What the notice shows: the integration as the room already sees it, its messages' signature
(its alias, else the user it posts as; contract §5.1), not its name: the name is not on its
messages, and only those who may view integrations learn it (`noisy` does not name an
integration to whoever can't see it either). No channels, no owner. The buttons carry its id
(a command needs one name it exactly), which grants nothing by itself: a tapped button is a
command checked against the tapper's own rights, and a refusal names nothing.

Memory is bounded: at most `max_keys` verified counts and `max_keys` others (least recently
used dropped first), of which at most PER_AUTHOR per author (one user's many forged keys push
out their own first: pushing out others' takes max_keys / PER_AUTHOR accounts), each ring at
most `threshold` times; at most `max_keys` known users; at most MAX_HANDLING floods handled at
once (a flood beyond that is counted again, not muted unreported).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot import logs
from bot.clock import Clock
from bot.config import Settings
from bot.errors import BotError, StateUnavailable
from bot.incident.noise import WebhookPost
from bot.incident.timers import TimerService, webhook_label
from bot.integrations.room_names import RoomDirectory
from bot.integrations.service import read_integration
from bot.rocketchat import message_ids
from bot.rocketchat.message_ids import MessageIds, Purpose
from bot.rocketchat.models import Integration
from bot.rocketchat.rest import RestClient
from bot.state.flood_store import FloodStore
from bot.text import human_duration, human_until, neutralize_mentions

log = logs.get_logger("integrations_bot.flood")

MAX_KEYS: Final = 10_000
# Counts of messages whose author is not yet known to be the integration's user: at most this
# many per author (anyone can put any `bot.i` on a message, contract §4.7).
PER_AUTHOR: Final = 256
# How long the user an integration posts as, once read, is taken as known without asking again.
KNOWN_FOR: Final = timedelta(minutes=10)
MAX_HANDLING: Final = 64
IGNORED_FOR: Final = timedelta(days=1)
REASON: Final = "flood guard"
MARK: Final = "🌊"

Key = tuple[str, str, str]  # integration id, room id, author id


@dataclass(frozen=True)
class Flood:
    integration_id: str
    room_id: str
    author_id: str
    count: int
    at: datetime

    @property
    def key(self) -> Key:
        return (self.integration_id, self.room_id, self.author_id)


class _Count:
    __slots__ = ("muted", "ring")

    def __init__(self, threshold: int) -> None:
        self.ring: deque[datetime] = deque(maxlen=threshold)
        self.muted: datetime | None = None


class FloodCounter:
    """Counting only: pure, O(1) per message, bounded. `threshold` 0 counts nothing.

    A count is per integration, room and author: messages forged by someone else (any `bot.i`
    can be set on a message) count apart and can only ever complete, or mute, their own count.
    Once the user an integration posts as is known (`learn`, after the guard read it), a message
    of another author is not counted at all, and the integration's own counts are kept apart
    ("verified"), out of reach of anyone else's. Counts not verified yet are bounded per author
    (`per_author`), so one user's many forged keys push out only their own."""

    def __init__(
        self,
        *,
        threshold: int,
        window: timedelta,
        quiet: timedelta,
        max_keys: int = MAX_KEYS,
        per_author: int = PER_AUTHOR,
        known_for: timedelta = KNOWN_FOR,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.quiet = quiet
        self.max_keys = max_keys
        self.per_author = per_author
        self.known_for = known_for
        self._verified: OrderedDict[Key, _Count] = OrderedDict()
        self._unverified: OrderedDict[Key, _Count] = OrderedDict()
        self._by_author: dict[str, OrderedDict[Key, None]] = {}
        # integration id → (the user it posts as, None when there is no such integration; until when known)
        self._posters: OrderedDict[str, tuple[str | None, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified) + len(self._unverified)

    def count(self, post: WebhookPost, author_id: str, now: datetime) -> Flood | None:
        """One new webhook message; a `Flood` when it makes `threshold` within `window`."""
        if self.threshold <= 0 or post.ts < now - self.window:
            return None  # off, or an old message a catch-up pass found
        known, poster = self._poster(post.integration_id, now)
        if known and poster != author_id:
            return None  # not posted by it (or no such integration): no count, no mute
        key = (post.integration_id, post.room_id, author_id)
        entry = self._verified_entry(key) if known else self._unverified_entry(key)
        if entry.muted is not None:
            if entry.muted > now:
                return None
            entry.muted = None
        ring = entry.ring
        ring.append(now)
        if len(ring) < self.threshold or ring[0] < now - self.window:
            return None
        ring.clear()
        # Only this author's count is muted: the guard handles this flood, whatever the storm.
        entry.muted = now + self.quiet
        return Flood(post.integration_id, post.room_id, author_id, self.threshold, now)

    def learn(self, integration_id: str, poster: str | None, now: datetime) -> None:
        """The user `integration_id` posts as (None: no such integration), as just read."""
        self._posters[integration_id] = (poster, now + self.known_for)
        self._posters.move_to_end(integration_id)
        if len(self._posters) > self.max_keys:
            self._posters.popitem(last=False)

    def mute(self, key: Key, until: datetime) -> None:
        """No flood reported for `key` before `until` (without asking anyone)."""
        entry = self._verified.get(key) or self._unverified.get(key)
        if entry is not None:
            entry.muted = until

    def unmute(self, key: Key) -> None:
        """`key` may report a flood again (when its flood could not be handled)."""
        self.mute(key, datetime.min.replace(tzinfo=UTC))

    def _poster(self, integration_id: str, now: datetime) -> tuple[bool, str | None]:
        entry = self._posters.get(integration_id)
        if entry is None:
            return False, None
        poster, until = entry
        if until <= now:
            del self._posters[integration_id]
            return False, None
        return True, poster

    def _verified_entry(self, key: Key) -> _Count:
        entry = self._verified.get(key)
        if entry is not None:
            self._verified.move_to_end(key)
            return entry
        entry = self._drop_unverified(key) or _Count(self.threshold)
        self._verified[key] = entry
        if len(self._verified) > self.max_keys:
            self._verified.popitem(last=False)
        return entry

    def _unverified_entry(self, key: Key) -> _Count:
        author = key[2]
        mine = self._by_author.setdefault(author, OrderedDict())
        entry = self._unverified.get(key)
        if entry is not None:
            self._unverified.move_to_end(key)
            mine.move_to_end(key)
            return entry
        entry = self._unverified[key] = _Count(self.threshold)
        mine[key] = None
        if len(mine) > self.per_author:
            self._drop_unverified(next(iter(mine)))  # the author's own least recently used
        if len(self._unverified) > self.max_keys:
            self._drop_unverified(next(iter(self._unverified)))
        return entry

    def _drop_unverified(self, key: Key) -> _Count | None:
        entry = self._unverified.pop(key, None)
        mine = self._by_author.get(key[2])
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._by_author[key[2]]
        return entry


def within(window: timedelta) -> str:
    return "in the last minute" if window == timedelta(minutes=1) else f"in the last {human_duration(window)}"


def command_prefix(settings: Settings) -> str:
    """The prefix buttons use: the first `!` one (every client sends it as a plain message)."""
    bang = [p for p in settings.prefixes if p.startswith("!")]
    return bang[0] if bang else settings.prefixes[0]


def _buttons(buttons: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Message buttons (contract §6.3): each posts its command as the user who taps it."""
    actions = [{"type": "button", "text": text, "msg": msg, "msg_in_chat_window": True} for text, msg in buttons]
    return [{"button_alignment": "horizontal", "actions": actions}]


class FloodGuard:
    def __init__(
        self,
        *,
        settings: Settings,
        rest: RestClient,
        store: FloodStore,
        timers: TimerService,
        rooms: RoomDirectory,
        ids: Callable[[], MessageIds],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.counter = FloodCounter(
            threshold=settings.bot_flood_threshold, window=settings.bot_flood_window, quiet=settings.bot_flood_quiet
        )
        self._rest = rest
        self._store = store
        self._timers = timers
        self._rooms = rooms
        self._ids = ids
        self._clock = clock
        self._prefix = command_prefix(settings)
        self._tasks: set[asyncio.Task[str]] = set()

    def observe(self, post: WebhookPost, author_id: str) -> None:
        """A new webhook message (cheap, never raises, no I/O): counted; a flood is handled apart."""
        flood = self.counter.count(post, author_id, self._clock.now())
        if flood is None:
            return
        if len(self._tasks) >= MAX_HANDLING:
            # Not handled: counted again from the next message rather than muted unreported.
            self.counter.unmute(flood.key)
            log.warning("flood.dropped", integration_id=flood.integration_id, room_id=flood.room_id)
            return
        task = asyncio.create_task(self.handle(flood), name=f"flood-{flood.integration_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, flood: Flood) -> str:
        """Decide and act on one flood; returns what happened (for logs and tests)."""
        try:
            outcome = await self._handle(flood)
        except (BotError, StateUnavailable) as exc:
            outcome = "failed"
            log.warning("flood.failed", integration_id=flood.integration_id, room_id=flood.room_id, error=str(exc))
        except Exception:  # a bug must not end as an unretrieved task exception
            outcome = "failed"
            log.exception("flood.crashed", integration_id=flood.integration_id, room_id=flood.room_id)
        log.info("flood.seen", integration_id=flood.integration_id, room_id=flood.room_id, outcome=outcome)
        return outcome

    async def _handle(self, flood: Flood) -> str:
        if await self._ignored(flood.room_id):
            self.counter.mute(flood.key, flood.at + IGNORED_FOR)
            return "ignored room"
        document = await read_integration(self._rest, flood.integration_id)
        poster = document.get("userId") if document is not None else None
        # Known from now on: another author's messages for it are not even counted.
        self.counter.learn(flood.integration_id, poster if isinstance(poster, str) else None, flood.at)
        if document is None:
            return "not an integration"
        integration = Integration.of(document)
        if poster != flood.author_id:
            return "not posted by it"
        settings = self.settings
        quiet_until = flood.at + settings.bot_flood_quiet
        if not await self._store.claim(flood.integration_id, flood.room_id, flood.at, quiet_until):
            return "quiet"
        disabled_until: datetime | None = None
        if settings.bot_flood_action == "disable" and integration.enabled:
            until = flood.at + settings.bot_flood_disable_for
            try:
                timer = await self._timers.disable_by_bot(
                    document,
                    until=until,
                    reason=REASON,
                    room_id=flood.room_id,
                    key=f"flood-{flood.integration_id}-{flood.room_id}-{flood.at.timestamp()}",
                )
            except BotError as exc:
                log.warning("flood.disable_failed", integration_id=flood.integration_id, error=str(exc))
                timer = None
            disabled_until = timer.due_at if timer is not None else None
        text, buttons = self.notice(integration, flood, disabled_until)
        await message_ids.post(
            self._rest,
            self._ids().chain(Purpose.FLOOD_NOTICE, flood.integration_id, flood.room_id, flood.at.isoformat()),
            flood.room_id,
            neutralize_mentions(text),
            attachments=_buttons(buttons),
        )
        return "disabled" if disabled_until is not None else "noticed"

    def notice(
        self, integration: Integration, flood: Flood, disabled_until: datetime | None
    ) -> tuple[str, list[tuple[str, str]]]:
        """The notice's text and buttons (text, command)."""
        settings = self.settings
        label, window = webhook_label(integration.document), within(settings.bot_flood_window)
        head = f"{MARK} {label} posted {flood.count} messages here {window}"
        if disabled_until is not None:
            text = f"{head}, so I disabled it {human_until(disabled_until, flood.at)} ({REASON})."
            return text, [("Re-enable now", f"{self._prefix} enable {integration.id}")]
        span = settings.bot_flood_disable_for
        amount = human_duration(span).replace(" ", "")
        quiet = human_duration(settings.bot_flood_quiet)
        text = f"{head}. (At most one such notice per {quiet}.)"
        disable = f"{self._prefix} disable {integration.id} for {amount} because flood"
        return text, [
            (f"Disable for {human_duration(span)}", disable),
            ("Quiet for today", f"{self._prefix} quiet {integration.id}"),
        ]

    async def _ignored(self, room_id: str) -> bool:
        entries = self.settings.flood_ignore_rooms
        if not entries:
            return False
        if room_id in entries:
            return True
        for entry in entries:
            with contextlib.suppress(BotError):
                if await self._rooms.find(entry) == room_id:
                    return True
        return False

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
