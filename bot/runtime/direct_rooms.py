"""Who is in the bot's direct-message rooms: is a DM the caller and the bot, and nobody else?

Rocket.Chat's direct-message rooms (`t: "d"`) may have more than two members (group DMs,
contract §8 gotcha 25), and a streamed message only says `roomType: "d"`. In a DM with the bot
alone, whatever the caller types is for the bot (no prefix, a bare `yes`); in a group DM people
talk to each other, so there the bot needs its prefix as in any room.

The members come from the room document (`rooms.info`: `uids`, or `usernames` on DMs made
before `uids` existed), looked up the first time a DM is needed and kept: a DM never gains
members (Rocket.Chat refuses to add anyone to a direct room, `error-cant-invite-for-direct-room`);
it may lose one when a user is deleted, which at worst makes the bot ask for the prefix where it
need not. Not known (not looked up yet, or the lookup failed) counts as "not alone": fail closed.

`learn` is the only I/O (one `rooms.info` per DM room not seen before); everything else is a
dict lookup, so the intake stays synchronous.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from bot import logs
from bot.errors import ServerRejected
from bot.rocketchat.rest import RestClient

log = logs.get_logger("bot.direct_rooms")  # the `logger` operators filter on: kept when the module moved

# DM rooms remembered; beyond that the longest-known is forgotten (and looked up again if needed).
CAPACITY: Final = 10_000


@dataclass(frozen=True)
class DirectRoom:
    """The members of a direct-message room, by id (`uids`) or else by username; None: not said."""

    uids: frozenset[str] | None = None
    usernames: frozenset[str] | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DirectRoom:
        """From a room document; a room that is not a DM, or names no members, has none."""
        if document.get("t") != "d":
            return cls()
        return cls(_names(document.get("uids")), _names(document.get("usernames")))

    def only(self, user_id: str, username: str, bot_user_id: str, bot_username: str) -> bool:
        """Whether the members are exactly this user and the bot."""
        if user_id == bot_user_id:
            return False
        if self.uids is not None:
            return self.uids == {user_id, bot_user_id}
        if self.usernames is not None:
            return self.usernames == {username, bot_username}
        return False


def _names(value: Any) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return frozenset(value)


class DirectRooms:
    """The members of the DM rooms the bot has met, learned once per room."""

    def __init__(self, rest: RestClient, *, capacity: int = CAPACITY) -> None:
        self._rest = rest
        self._capacity = capacity
        self._rooms: dict[str, DirectRoom] = {}

    def get(self, room_id: str) -> DirectRoom | None:
        return self._rooms.get(room_id)

    async def learn(self, room_ids: Iterable[str]) -> None:
        """Look up the rooms not known yet, together. A room the server will not describe (a 4xx)
        is kept as one without known members; any other failure (Rocket.Chat unavailable, rate
        limited) is raised once every lookup has ended, and that room stays unknown."""
        wanted = [room_id for room_id in dict.fromkeys(room_ids) if room_id not in self._rooms]
        if not wanted:
            return
        results = await asyncio.gather(*(self._look_up(room_id) for room_id in wanted), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _look_up(self, room_id: str) -> None:
        try:
            room = DirectRoom.from_document(await self._rest.rooms_info(room_id=room_id))
        except ServerRejected as exc:
            log.warning("intake.dm_unreadable", room_id=room_id, error=str(exc))
            room = DirectRoom()
        self._rooms[room_id] = room
        if len(self._rooms) > self._capacity:
            del self._rooms[next(iter(self._rooms))]
