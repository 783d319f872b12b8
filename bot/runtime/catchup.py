"""Catch-up: commands posted while the bot was disconnected or restarting are found and run once.

Theory of operation
-------------------
The realtime stream only delivers what happens while a session is subscribed. Whatever was
posted during a drop or a restart is fetched over REST, asking only the rooms that had activity:
1. `subscriptions.get` lists the rooms the bot is a member of (DMs included) and when it joined
   each one;
2. `rooms.get?updatedSince=<the oldest start of any room>` returns those of them written since
   (Rocket.Chat's `findBySubscriptionUserIdUpdatedAfter`: the caller's subscribed rooms whose
   `_updatedAt` is later, `$gt`);
3. `chat.syncMessages` returns the messages updated since the room's start, for each room read.
Every message found goes through the same admission path as a streamed one (intake → claim →
run), so a message seen both ways is still run once: the claim in the state database decides.
A bot in 10,000 rooms of which 10 had activity makes 12 calls per reconnect, not 10,001.

Which rooms are read: those whose `_updatedAt` is later than their start (below) and than the
room's `_updatedAt` when this process last read it (`_written`), plus the rooms a pass could not
read (`frozen`). Why that loses no command (Rocket.Chat's `afterSaveMessage`,
`notifyUsersOnMessage`): every new message writes its room after the message is stored (`msgs`,
and `lastMessage`/`lm` unless it is a reply shown only in its thread), and every write of a room
sets its `_updatedAt` to the server's clock. So a message posted after a room's start leaves the
room's `_updatedAt` after that start, and a message posted after this process read the room
leaves it after the `_updatedAt` the read saw; a room with neither was read up to its newest
message already (the read saw every message stored before its `rooms.get`) or had nothing since
its start. What a room's `_updatedAt` does not show: an edit (only an edit of the room's last
message writes the room), a reaction or a thread counter on an older message. Those are
re-deliveries of a message the bot has already judged (the cursor invariant below), and an
edited message never runs anyway (`bot.runtime.intake`), so skipping them loses nothing.
Why the second condition: the room is written a moment *after* its newest message, so its
`_updatedAt` is usually newer than the cursor that message left; without it every room the bot
has read or heard on the stream would look active again at the next reconnect. Those times are
kept in memory: after a restart the first pass reads each room written since its cursor once.
If `rooms.get` is refused, the pass reads every member room as before. Assumes the server's clock
does not go back (several Rocket.Chat instances whose clocks disagree can hide a room's newest
write, as they can already hide a message from a cursor).

Cursors (`CursorBook`) are the newest `_updatedAt` seen per room, in the server's clock, stored
in the state database. The one invariant that makes them safe: *a stored cursor never passes a
message that was not yet admitted*. Hence:
- a message advances its room's cursor only after its claim is committed;
- from a drop (`Disconnected`) or the start of the process until a catch-up pass has completed
  after the next `Connected`, cursor advances are held in memory and not stored. A pass reads
  the stored cursors, so it starts where the last complete view ended; the stream covers
  everything after `Connected` (the realtime client emits it once every subscription is ready),
  and the pass covers everything before. A crash in between restarts from the stored cursors.
  Only a pass *begun* while connected (after a `Connected`, with no drop since) releases them.
  A pass begun while disconnected (the one that follows a pass a drop interrupted, or a retry)
  still runs what it finds, but what is posted after it read a room is on no stream: had it
  released the cursors, the stream of the next session could move a room's stored cursor past
  such a command (the periodic flush) before the next pass read the cursors, and that pass
  would never fetch it (the chaos test's three commands of one room, never claimed).
Cursors are written in batches (`flush`): a cursor that lags only makes the next pass fetch
messages again, which the claims turn away.

How far back (`since`): a room's cursor, but never further back than `CATCHUP_HORIZON`; for a
room without a cursor, the time the bot joined it (subscription `ts`); on a fresh state database
(no cursors at all: first start, or a new file) only `BOT_STALE_COMMAND_AGE` back, so a new
deployment does not answer history.

Staleness (`freshness`), the same rule for every path (stream, catch-up, recovery), by the
command's own timestamp:
- younger than `BOT_STALE_COMMAND_AGE` (default 2 min): run;
- older, but within `CATCHUP_HORIZON` (24 h): not run; the caller is told once (it is claimed
  like any command);
- older than the horizon: ignored silently, never claimed. Claims are kept for `CLAIM_RETENTION`
  (7 days, longer than the horizon), so a re-delivery of an old command (a reaction, a thread
  reply) can never find its claim pruned and run again.
The age uses the bot's clock against the server's timestamps: keep the host's clock synced (NTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bot import logs
from bot.errors import RateLimited, ServerRejected, StateUnavailable, Unavailable
from bot.rocketchat.ejson import decode_date
from bot.rocketchat.message_ids import author_id, own_among
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient
from bot.runtime.metrics import Metrics
from bot.runtime.staleness import CATCHUP_HORIZON
from bot.state.store import StateStore

log = logs.get_logger("integrations_bot.catchup")

CLAIM_RETENTION: Final = timedelta(days=7)
# Retry a failed pass after 1, 2, 4, ... seconds, at most this long.
RETRY_MAX: Final = 30.0


@dataclass(frozen=True)
class Room:
    """A room the bot is a member of, from `subscriptions.get`."""

    id: str
    type: str | None
    name: str | None
    joined: datetime | None

    @classmethod
    def from_subscription(cls, doc: Mapping[str, Any]) -> Room | None:
        rid = doc.get("rid")
        if not isinstance(rid, str) or not rid:
            return None
        kind, name = doc.get("t"), doc.get("name")
        return cls(
            rid,
            kind if isinstance(kind, str) else None,
            name if isinstance(name, str) else None,
            decode_date(doc.get("ts")),
        )

    def meta(self) -> dict[str, Any]:
        """The `__my_messages__` meta a streamed message of this room would carry."""
        meta: dict[str, Any] = {"roomParticipant": True}
        if self.type is not None:
            meta["roomType"] = self.type
        if self.name is not None and self.type != "d":
            meta["roomName"] = self.name
        return meta


async def member_rooms(rest: RestClient) -> dict[str, Room]:
    rooms: dict[str, Room] = {}
    for doc in (await rest.subscriptions_get()).update:
        room = Room.from_subscription(doc)
        if room is not None and doc.get("archived") is not True:
            rooms[room.id] = room
    return rooms


class CursorBook:
    """Per-room cursors: buffered in memory, stored by `flush()`, held while a catch-up is due."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._pending: dict[str, datetime] = {}
        self.held = True  # from the start of the process until the first catch-up completes
        # Rooms a pass could not read (`catchup.room_skipped`): what was posted there since their
        # stored cursor is on no stream and in no pass yet, so their cursors stay where they are
        # until a pass reads them again, whatever the stream admits there meanwhile.
        self.frozen: set[str] = set()
        # Rooms with a command another replica was left to claim (bot/runtime/homes.py), or whose
        # claim failed and waits for the database (`Bot._claim_waiting`): what was admitted there
        # since is stored once that command's claim is known to be committed.
        self._kept: dict[str, set[str]] = {}

    def keep(self, room_id: str, message_id: str) -> None:
        self._kept.setdefault(room_id, set()).add(message_id)

    def let_go(self, room_id: str, message_id: str) -> None:
        kept = self._kept.get(room_id)
        if kept is not None:
            kept.discard(message_id)
            if not kept:
                del self._kept[room_id]

    def freeze(self, room_id: str) -> None:
        self.frozen.add(room_id)

    def thaw(self, room_id: str) -> None:
        self.frozen.discard(room_id)

    def seen(self, room_id: str, when: datetime) -> None:
        """A message of this room was admitted (its claim, if any, is committed)."""
        known = self._pending.get(room_id)
        if known is None or when > known:
            self._pending[room_id] = when

    def hold(self) -> None:
        self.held = True

    async def release(self) -> None:
        self.held = False
        await self.flush()

    async def flush(self) -> None:
        if self.held or not self._pending:
            return
        stay = self.frozen | self._kept.keys()
        pending = {room_id: when for room_id, when in self._pending.items() if room_id not in stay}
        self._pending = {room_id: when for room_id, when in self._pending.items() if room_id in stay}
        if not pending:
            return
        try:
            await self._state.advance_cursors(pending)
        except StateUnavailable:
            for room_id, when in pending.items():  # stored by a later flush
                self.seen(room_id, when)
            raise
        log.debug("catchup.cursors_stored", rooms={room_id: when.isoformat() for room_id, when in pending.items()})


Admit = Callable[[ChatMessage, str], Awaitable[None]]
BeforePass = Callable[[Mapping[str, Room]], Awaitable[None]]


class CatchUp:
    """The catch-up worker: `request()` on every `Connected`, `interrupted()` on every drop."""

    def __init__(
        self,
        rest: RestClient,
        state: StateStore,
        cursors: CursorBook,
        admit: Admit,
        *,
        clock: Callable[[], datetime],
        stale_age: timedelta,
        metrics: Metrics,
        before_pass: BeforePass | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rest = rest
        self._state = state
        self.cursors = cursors
        self._admit = admit
        self._clock = clock
        self._stale_age = stale_age
        self._metrics = metrics
        self._before_pass = before_pass
        self._sleep = sleep
        self._wanted = asyncio.Event()
        self._generation = 0
        self._connected = False  # between a `Connected` and the next drop
        # Per room, its `_updatedAt` when a pass of this process last read it (module docstring).
        self._written: dict[str, datetime] = {}
        self.passes = 0

    def request(self) -> None:
        """A session became ready: catch up on everything since the stored cursors."""
        self._generation += 1
        self._connected = True
        self._wanted.set()

    def again(self) -> None:
        """Pass once more (the state database is back after an outage: commands seen meanwhile
        were neither claimed nor answered, or their notice could not be posted). Cursors are
        released only as `run` decides: this changes nothing about the session."""
        self._wanted.set()

    def interrupted(self) -> None:
        """The session dropped: stop storing cursors until a pass after the next `Connected`."""
        self._generation += 1
        self._connected = False
        self.cursors.hold()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            generation, connected = self._generation, self._connected
            try:
                await self.pass_once()
            except (Unavailable, RateLimited, ServerRejected, StateUnavailable) as exc:
                failures += 1
                delay = min(RETRY_MAX, 2.0 ** (failures - 1))
                if isinstance(exc, RateLimited) and exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, RETRY_MAX))
                self._metrics.catchup_passes.labels(outcome="failed").inc()
                log.warning("catchup.failed", error=str(exc), retry_in=delay)
                await self._sleep(delay)
                self._wanted.set()
                continue
            failures = 0
            self.passes += 1
            self._metrics.catchup_passes.labels(outcome="ok").inc()
            if generation != self._generation:
                self._wanted.set()  # the session dropped or reconnected meanwhile: once more
                cursors = "held: the session dropped or reconnected during the pass, once more"
            elif connected:
                try:
                    await self.cursors.release()
                    cursors = "released"
                except StateUnavailable as exc:  # released: the periodic flush stores them once it is back
                    cursors = f"released, not stored yet ({exc})"
            else:  # held until the pass that the next `Connected` requests (module docstring)
                cursors = "held: begun while disconnected"
            log.info("catchup.cursors", cursors=cursors)

    async def pass_once(self) -> None:
        """One pass over the member rooms with activity; raises on a failure that should be retried."""
        rooms = await member_rooms(self._rest)
        if self._before_pass is not None:
            await self._before_pass(rooms)
        stored = await self._state.cursors()
        now = self._clock()
        starts = {
            room.id: self.since(stored.get(room.id), room.joined, now, fresh_db=not stored) for room in rooms.values()
        }
        found = 0
        wanted = await self._active(rooms, starts)
        for room_id, written in wanted.items():
            room = rooms[room_id]
            try:
                result = await self._rest.chat_sync_messages(room.id, starts[room.id])
            except ServerRejected as exc:
                # e.g. removed from the room since subscriptions.get: nothing to catch up there
                log.warning("catchup.room_skipped", room_id=room.id, error=str(exc))
                self.cursors.freeze(room.id)
                continue
            self.cursors.thaw(room.id)
            documents = result.get("updated") or []
            # The bot's own messages of the window: only these can be answers (`_answered`).
            mine = {str(doc.get("_id")): doc for doc in documents if author_id(doc) == self._rest.user_id}
            messages = [ChatMessage.from_document(doc, room.meta()) for doc in documents]
            for message in sorted((m for m in messages if m is not None), key=lambda m: (m.ts, m.id)):
                if mine and self._answered(mine, message):
                    # Answered already (by this bot, before its state file lost the claim: restored
                    # from an older copy, say): the answer's ids are derived from the command's, so
                    # it is in the same window; only the bot's own message in this room counts.
                    log.info("catchup.already_answered", message_id=message.id, room_id=room.id)
                    continue
                found += 1
                await self._admit(message, "catch-up")
            if written is not None:  # every message stored before it is admitted now
                self._written[room.id] = written
        log.info("catchup.done", rooms=len(rooms), read=len(wanted), messages=found)

    async def _active(self, rooms: Mapping[str, Room], starts: Mapping[str, datetime]) -> dict[str, datetime | None]:
        """The member rooms to read (module docstring), in `rooms` order, each with its `_updatedAt`
        as `rooms.get` gave it (None: not known)."""
        if not rooms:
            return {}
        try:
            delta = await self._rest.rooms_get(min(starts.values()))
        except ServerRejected as exc:
            log.warning("catchup.rooms_get_refused", error=str(exc), reading="every member room")
            return dict.fromkeys(rooms)
        written: dict[str, datetime | None] = {}
        for doc in delta.update:
            room_id = doc.get("_id")
            if isinstance(room_id, str) and room_id in rooms:
                written[room_id] = decode_date(doc.get("_updatedAt"))
        wanted: dict[str, datetime | None] = {}
        for room_id in rooms:
            when = written.get(room_id)
            if room_id in self.cursors.frozen:
                wanted[room_id] = when  # not read since a pass skipped it: read it whatever it says
            elif room_id not in written:
                continue  # not written since the oldest start, so not since its own
            elif when is None:
                wanted[room_id] = None  # no readable `_updatedAt`: read it to be safe
            elif when > starts[room_id] and (room_id not in self._written or when > self._written[room_id]):
                wanted[room_id] = when
        return wanted

    def _answered(self, mine: Mapping[str, Mapping[str, Any]], message: ChatMessage) -> bool:
        # The answer (or the notice, at the same ids, that it was not run: its claim could not be
        # recorded while the state database was unavailable).
        chain = self._state.message_ids.answer(message.id)
        found = own_among(mine, chain, user_id=self._rest.user_id, room_id=message.room_id, thread_id=message.thread_id)
        return found is not None

    def since(self, cursor: datetime | None, joined: datetime | None, now: datetime, *, fresh_db: bool) -> datetime:
        floor = now - (self._stale_age if fresh_db else max(CATCHUP_HORIZON, self._stale_age))
        start = cursor if cursor is not None else joined
        return max(floor, start) if start is not None else floor


__all__ = [
    "CATCHUP_HORIZON",
    "CLAIM_RETENTION",
    "CatchUp",
    "CursorBook",
    "Room",
    "member_rooms",
]
