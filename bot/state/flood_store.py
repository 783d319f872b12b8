"""The flood guard's notices in the state database (the `flood_notices` table of migration 9,
`bot/state/sqlite.py` and `bot/state/postgres.py`), on either backend.

One row per integration and room: when the last notice about it was posted there
(`noticed_at`) and until when no other one may be (`quiet_until`: the notice's quiet period, or
the end of the day someone chose "quiet for today"). `claim` is the one decision several replicas
share: an upsert that moves `quiet_until` only when it has passed, so of the replicas that saw the
same flood exactly one gets the row back and posts the notice (and, with BOT_FLOOD_ACTION=disable,
makes the one disable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.state.database import Database
from bot.state.database import read_time as _dt
from bot.state.database import stored_time as _ts


@dataclass(frozen=True)
class Quiet:
    """Until when no flood notice about an integration is posted in a room, and who chose it
    (None: the quiet period after a notice)."""

    until: datetime
    by: str | None


class FloodStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def claim(self, integration_id: str, room_id: str, now: datetime, until: datetime) -> bool:
        """Whether this process posts the notice about a flood seen `now`: True when no notice
        (and no "quiet for today") holds this integration and room any more, and `quiet_until`
        is now `until`; False when another process (or an earlier notice) got there first."""
        rows = await self._db.rows(
            "INSERT INTO flood_notices (integration_id, room_id, noticed_at, quiet_until, quieted_by)"
            " VALUES (?, ?, ?, ?, NULL) ON CONFLICT (integration_id, room_id) DO UPDATE SET"
            " noticed_at = excluded.noticed_at, quiet_until = excluded.quiet_until, quieted_by = NULL"
            " WHERE flood_notices.quiet_until <= ? RETURNING integration_id",
            (integration_id, room_id, _ts(now), _ts(until), _ts(now)),
        )
        return bool(rows)

    async def quiet(self, integration_id: str, room_id: str, until: datetime, by: str) -> Quiet:
        """No notice about this integration in this room until `until` (or later, if one already
        holds longer); returns what holds now."""
        rows = await self._db.rows(
            "INSERT INTO flood_notices (integration_id, room_id, noticed_at, quiet_until, quieted_by)"
            " VALUES (?, ?, NULL, ?, ?) ON CONFLICT (integration_id, room_id) DO UPDATE SET"
            " quiet_until = CASE WHEN flood_notices.quiet_until < excluded.quiet_until"
            " THEN excluded.quiet_until ELSE flood_notices.quiet_until END,"
            " quieted_by = CASE WHEN flood_notices.quiet_until < excluded.quiet_until"
            " THEN excluded.quieted_by ELSE flood_notices.quieted_by END"
            " RETURNING quiet_until, quieted_by",
            (integration_id, room_id, _ts(until), by),
        )
        return Quiet(_dt(rows[0][0]), rows[0][1])

    async def quiet_until(self, integration_id: str, room_id: str) -> Quiet | None:
        rows = await self._db.rows(
            "SELECT quiet_until, quieted_by FROM flood_notices WHERE integration_id = ? AND room_id = ?",
            (integration_id, room_id),
        )
        return Quiet(_dt(rows[0][0]), rows[0][1]) if rows else None

    async def prune(self, before: datetime) -> int:
        """Forget rows whose quiet period ended before `before`."""
        return await self._db.count("DELETE FROM flood_notices WHERE quiet_until < ?", (_ts(before),))
