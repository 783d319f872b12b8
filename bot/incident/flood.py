"""The flood guard: one notice when an integration floods a room, optionally a timed disable.

Theory of operation
-------------------
Every streamed webhook message (`bot.i`, contract §5.1) that the noisy window takes as new (a
re-delivery of an edited or reacted-to message is not new) reaches `FloodCounter.count`, which
is O(1) and does no I/O: per integration and room, a ring of the arrival times of the last
`threshold` messages. When the ring is full and its oldest entry is within `window`, that is a
flood: the key is muted locally for `quiet` (no further work for it, whatever the storm) and
`FloodGuard` handles it in a task of its own, off the message path:

1. the room is one of BOT_FLOOD_IGNORE_ROOMS (a name or an id) → nothing (muted for a day);
2. the integration is read once (the only REST call, the name for the notice); a message whose
   author is not the user the integration posts as was not posted by it (a bot account can set
   any `bot` field, contract §5.1) → nothing;
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

Memory is bounded: at most `max_keys` rings and mutes (least recently used dropped first), each
ring at most `threshold` times, at most MAX_HANDLING floods handled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
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
MAX_HANDLING: Final = 64
IGNORED_FOR: Final = timedelta(days=1)
REASON: Final = "flood guard"
MARK: Final = "🌊"


@dataclass(frozen=True)
class Flood:
    integration_id: str
    room_id: str
    author_id: str
    count: int
    at: datetime


class FloodCounter:
    """Counting only: pure, O(1) per message, bounded. `threshold` 0 counts nothing."""

    def __init__(self, *, threshold: int, window: timedelta, quiet: timedelta, max_keys: int = MAX_KEYS) -> None:
        self.threshold = threshold
        self.window = window
        self.quiet = quiet
        self.max_keys = max_keys
        self._rings: OrderedDict[tuple[str, str], deque[datetime]] = OrderedDict()
        self._muted: OrderedDict[tuple[str, str], datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rings) + len(self._muted)

    def count(self, post: WebhookPost, author_id: str, now: datetime) -> Flood | None:
        """One new webhook message; a `Flood` when it makes `threshold` within `window`."""
        if self.threshold <= 0 or post.ts < now - self.window:
            return None  # off, or an old message a catch-up pass found
        key = (post.integration_id, post.room_id)
        muted = self._muted.get(key)
        if muted is not None:
            if muted > now:
                return None
            del self._muted[key]
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque(maxlen=self.threshold)
            if len(self._rings) > self.max_keys:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(key)
        ring.append(now)
        if len(ring) < self.threshold or ring[0] < now - self.window:
            return None
        del self._rings[key]
        self.mute(key, now + self.quiet)
        return Flood(post.integration_id, post.room_id, author_id, self.threshold, now)

    def mute(self, key: tuple[str, str], until: datetime) -> None:
        """No flood reported for `key` before `until` (without asking anyone)."""
        self._muted[key] = until
        self._muted.move_to_end(key)
        if len(self._muted) > self.max_keys:
            self._muted.popitem(last=False)


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
        key = (flood.integration_id, flood.room_id)
        if await self._ignored(flood.room_id):
            self.counter.mute(key, flood.at + IGNORED_FOR)
            return "ignored room"
        document = await read_integration(self._rest, flood.integration_id)
        if document is None:
            return "not an integration"
        integration = Integration.of(document)
        if document.get("userId") != flood.author_id:
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
