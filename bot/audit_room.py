"""The optional audit room (`BOT_AUDIT_ROOM`): one chat line per change made through the bot.

The database is the source of truth; the room is a convenience for humans. So posting never
fails a command: it runs in the background, a failure is logged (and the line stays in the
audit table for `history`), and each line's message id is derived from its audit row id, so a
retried post is stored once. The setting names a room by name (`ops-audit`, `#ops-audit`) or by
id; the bot must be a member (it is looked up among the bot's subscriptions).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Final

from bot import logs
from bot.errors import BotError
from bot.rest import RestClient
from bot.room_names import RoomDirectory
from bot.state import AuditRecord
from commands.audit_lines import audit_room_line
from commands.text import neutralize_mentions

log = logs.get_logger("integrations_bot.audit_room")

_ID_ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


def derived_message_id(key: str) -> str:
    """A Meteor-style 17-character message id derived from `key`: posting the same thing twice
    (a retry, a restart) stores it once, because the server refuses a duplicate `_id`."""
    digest = hashlib.sha256(f"integrations-bot:{key}".encode()).digest()
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in digest[:17])


class AuditRoom:
    def __init__(
        self, rest: RestClient, target: str | None, rooms: RoomDirectory, *, now: Callable[[], datetime]
    ) -> None:
        self._rest = rest
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
        try:
            room_id = await self._resolve()
            if room_id is None:
                log.warning("audit_room.not_found", room=self.target, audit_id=record.id)
                return False
            where = await self._rooms.where(record.room_id, rights=None)
            line = audit_room_line(record, now=self._now(), where=where)
            await self._rest.chat_send_message(
                room_id, neutralize_mentions(line), message_id=derived_message_id(f"audit-{record.id}")
            )
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
