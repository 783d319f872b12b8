"""Bulk disables (`disable all in #room …`, `disable all matching "x*" …`) in the state database
(the `bulk_groups` table of migration 8, `bot/state/sqlite.py` and `bot/state/postgres.py`), on
either backend.

A group is one row per command (unique by the command's message id, so a command resumed after a
restart finds its group instead of making a second one). Its members are not listed here: each
member keeps its own timer row (`timers.group_id`) and audit rows (`audit.group_id`), so the
careful per-integration re-enable, the settling after a restart and several replicas work for
each member exactly as for a single timed disable. `snoozed`, `history`, `undo`, `extend` and
`enable all in …` gather the members back through those columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bot.state.database import Database
from bot.state.database import read_time_or_none as _dt
from bot.state.database import stored_time as _ts

_COLUMNS: Final = (
    "id, created_at, actor_id, actor_username, selector, target_room_id, glob, kind, reason, due_at,"
    " room_id, thread_id, message_id"
)


_UPPER: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER: Final = str.maketrans(_UPPER, _UPPER.lower())


@dataclass(frozen=True)
class GroupDraft:
    """What a bulk disable knows before it switches anything off."""

    created_at: datetime
    actor_id: str
    actor_username: str
    selector: str  # as the bot repeats it: `in #alerts`, `matching "jenkins*"`
    message_id: str
    target_room_id: str | None = None  # `in #room`: the room's id
    glob: str | None = None  # `matching "…"`: the pattern
    kind: str | None = None  # `incoming` / `outgoing` when the command named one
    reason: str | None = None
    due_at: datetime | None = None  # a timed one: when its members come back on
    room_id: str | None = None  # where the command was given (its answers and notices go there)
    thread_id: str | None = None


@dataclass(frozen=True)
class BulkGroup(GroupDraft):
    id: int = 0


class GroupStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, draft: GroupDraft) -> BulkGroup:
        """The group of the command `draft.message_id`: a new row, or the one that command made
        already (resumed after a restart)."""
        await self._db.count(
            f"INSERT INTO bulk_groups ({_COLUMNS.removeprefix('id, ')})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                _ts(draft.created_at),
                draft.actor_id,
                draft.actor_username,
                draft.selector,
                draft.target_room_id,
                draft.glob,
                draft.kind,
                draft.reason,
                _ts(draft.due_at) if draft.due_at is not None else None,
                draft.room_id,
                draft.thread_id,
                draft.message_id,
            ),
        )
        found = await self.for_message(draft.message_id)
        assert found is not None
        return found

    async def get(self, group_id: int) -> BulkGroup | None:
        rows = await self._select("WHERE id = ?", (group_id,))
        return rows[0] if rows else None

    async def many(self, group_ids: list[int]) -> dict[int, BulkGroup]:
        if not group_ids:
            return {}
        marks = ", ".join("?" for _ in group_ids)
        return {group.id: group for group in await self._select(f"WHERE id IN ({marks})", tuple(group_ids))}

    async def for_message(self, message_id: str) -> BulkGroup | None:
        rows = await self._select("WHERE message_id = ?", (message_id,))
        return rows[0] if rows else None

    async def set_due(self, group_id: int, due_at: datetime) -> None:
        """The group's members now come back on at `due_at` (`extend` of the group)."""
        await self._db.count("UPDATE bulk_groups SET due_at = ? WHERE id = ?", (_ts(due_at), group_id))

    async def recent(
        self, *, target_room_id: str | None = None, glob: str | None = None, limit: int = 20
    ) -> list[BulkGroup]:
        """Newest first: groups of that room (by id) or that pattern (as typed, ASCII letters in any
        case). Filtered in SQL: any number of other patterns' groups never pushes one out of reach."""
        if target_room_id is not None:
            return await self._select(
                "WHERE target_room_id = ? ORDER BY created_at DESC, id DESC LIMIT ?", (target_room_id, limit)
            )
        return await self._select(
            f"WHERE glob IS NOT NULL AND {self._ascii_lower('glob')} = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            ((glob or "").translate(_ASCII_LOWER), limit),
        )

    def _ascii_lower(self, column: str) -> str:
        """`column` with A-Z folded to a-z and nothing else, the same on both backends (SQLite's
        `lower` folds ASCII only; PostgreSQL's folds by locale, so `translate` there)."""
        if self._db.kind == "postgresql":
            return f"translate({column}, '{_UPPER}', '{_UPPER.lower()}')"
        return f"lower({column})"

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[BulkGroup]:
        rows = await self._db.rows(f"SELECT {_COLUMNS} FROM bulk_groups {where}", params)  # noqa: S608
        return [_group(row) for row in rows]


def _group(row: Any) -> BulkGroup:
    created = _dt(row[1])
    assert created is not None
    return BulkGroup(
        id=int(row[0]),
        created_at=created,
        actor_id=str(row[2]),
        actor_username=str(row[3]),
        selector=str(row[4]),
        target_room_id=row[5],
        glob=row[6],
        kind=row[7],
        reason=row[8],
        due_at=_dt(row[9]),
        room_id=row[10],
        thread_id=row[11],
        message_id=str(row[12]),
    )


__all__ = ["BulkGroup", "GroupDraft", "GroupStore"]
