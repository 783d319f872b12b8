"""The rooms the bot is in, by id: to name the room a change came from, and to find the audit room.

The names come from the bot's own subscriptions (`subscriptions.get`), cached briefly. Naming a
room to a caller is a disclosure, so `where` names it only when the caller is a member (or it is
the room being talked in); otherwise it says "another room" — a private group's name stays private.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bot.errors import UpstreamError
from bot.integrations.authz import CallerRights
from bot.rocketchat.rest import RestClient

# One unknown room triggers a fresh read of the bot's rooms at most this often (seconds).
MIN_RELOAD: Final = 5.0


@dataclass(frozen=True)
class RoomLabel:
    room_id: str
    name: str | None
    type: str | None  # "c" channel, "p" private group, "d" direct message, ...


class RoomDirectory:
    def __init__(self, rest: RestClient, *, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._rest = rest
        self._ttl = ttl
        self._clock = clock
        self._rooms: dict[str, RoomLabel] | None = None
        self._loaded_at = 0.0
        self._missed: dict[str, float] = {}  # unknown room id → when that last caused a re-read

    async def rooms(self) -> dict[str, RoomLabel]:
        """room id → label for every room the bot is subscribed to (raises `UpstreamError`)."""
        if self._rooms is None or self._clock() - self._loaded_at > self._ttl:
            delta = await self._rest.subscriptions_get()
            found: dict[str, RoomLabel] = {}
            for sub in delta.update:
                rid = sub.get("rid")
                if isinstance(rid, str):
                    name = sub.get("name")
                    kind = sub.get("t")
                    found[rid] = RoomLabel(
                        rid, name if isinstance(name, str) else None, kind if isinstance(kind, str) else None
                    )
            self._rooms, self._loaded_at = found, self._clock()
        return self._rooms

    def forget(self) -> None:
        self._rooms = None

    async def find(self, name_or_id: str) -> str | None:
        """The id of the bot's room named `name_or_id` (`#ops`, `ops`, or an id)."""
        wanted = name_or_id.strip()
        rooms = await self.rooms()
        if wanted in rooms:
            return wanted
        bare = wanted.removeprefix("#")
        for label in rooms.values():
            if label.name == bare and label.type != "d":
                return label.room_id
        return None

    async def where(self, room_id: str | None, *, rights: CallerRights | None, here: str | None = None) -> str | None:
        """`here`, `in #ops`, `in a direct message`, `in another room`; None without a room.

        `rights` None means "for the audit room" (its readers are trusted to see room names)."""
        if room_id is None:
            return None
        if room_id == here:
            return "here"
        try:
            label = (await self.rooms()).get(room_id)
            if label is None and self._clock() - self._missed.get(room_id, -MIN_RELOAD) >= MIN_RELOAD:
                # The bot may have joined it since the names were read (a room it left stays unknown).
                self._missed[room_id] = self._clock()
                self.forget()
                label = (await self.rooms()).get(room_id)
        except UpstreamError:  # a name is a nicety; never fail a reply for it
            label = None
        if label is not None and label.type == "d":
            return "in a direct message"
        member = rights is None or (rights.room_ids is not None and room_id in rights.room_ids)
        # A private group is named only to trusted readers (the audit room): an answer is read by
        # everyone in the room it is posted in, who need not be in that group.
        told = rights is None or (label is not None and label.type != "p")
        if label is not None and label.name and member and told:
            return f"in #{label.name}"
        return "in another room"
