"""The optional audit room (`BOT_AUDIT_ROOM`): one chat line per change made through the bot.

The database is the source of truth; the room is a convenience for humans. So posting never
fails a command: it runs in the background, a failure is logged (and the line stays in the
audit table for `history`), and each line's message ids are derived from its audit row id with
the state file's secret key (`MessageIds.audit_line`, bot/rocketchat/message_ids.py), so a retried post is
stored once and nobody can post a line's id first (row ids are public: 1, 2, 3, ...). The
setting names a room by name (`ops-audit`, `#ops-audit`) or by id; the bot must be a member (it
is looked up among the bot's subscriptions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from bot import logs
from bot.errors import BotError
from bot.incident.audit_lines import audit_room_line
from bot.integrations.room_names import RoomDirectory
from bot.rocketchat import message_ids
from bot.rocketchat.message_ids import MessageIds
from bot.rocketchat.rest import RestClient
from bot.state.store import AuditRecord
from bot.text import neutralize_mentions

log = logs.get_logger("integrations_bot.audit_room")


class AuditRoom:
    def __init__(
        self,
        rest: RestClient,
        target: str | None,
        rooms: RoomDirectory,
        *,
        ids: MessageIds,
        now: Callable[[], datetime],
    ) -> None:
        self._rest = rest
        self._ids = ids
        self.target = target
        self._rooms = rooms
        self._now = now
        self._room_id: str | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    @property
    def configured(self) -> bool:
        return self.target is not None

    def announce(self, record: AuditRecord) -> None:
        """Post the line for `record` in the background (no-op without an audit room)."""
        if self.target is None:
            return
        task = asyncio.create_task(self.post(record), name=f"audit-room-{record.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post(self, record: AuditRecord) -> bool:
        """Post now; True when the line is in the room. Never raises for a Rocket.Chat problem."""
        if self.target is None:
            return False
        assert record.id is not None, "a line is posted for a stored audit row"
        try:
            room_id = await self._resolve()
            if room_id is None:
                log.warning("audit_room.not_found", room=self.target, audit_id=record.id)
                return False
            where = await self._rooms.where(record.room_id, rights=None)
            line = audit_room_line(record, now=self._now(), where=where)
            await message_ids.post(self._rest, self._ids.audit_line(record.id), room_id, neutralize_mentions(line))
        except BotError as exc:
            self._room_id = None  # look it up again next time (renamed, bot removed, ...)
            log.error("audit_room.post_failed", room=self.target, audit_id=record.id, error=str(exc))
            return False
        return True

    async def _resolve(self) -> str | None:
        if self._room_id is None and self.target is not None:
            self._room_id = await self._rooms.find(self.target)
            if self._room_id is None:
                self._rooms.forget()  # maybe the bot was added a moment ago
                self._room_id = await self._rooms.find(self.target)
        return self._room_id

    async def drain(self, grace: float) -> None:
        """Give pending posts `grace` seconds (at shutdown), then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
