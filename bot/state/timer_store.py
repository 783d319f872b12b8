"""Timed disables in the state database (the `timers` table of migration 3, `bot/state/sqlite.py`
and `bot/state/postgres.py`), on either backend.

Every transition is one compare-and-set UPDATE on the row's `revision`: the scheduler expiring a
timer and a command ending it early may race, and exactly one of them wins; the loser gets None
and does nothing further. The UPDATE returns the row it made (RETURNING), so a stored transition
is never taken for a failed one by a read after it; an ending that must be stored with its audit
row runs the same UPDATE with that row's insert, conditional on it, in one transaction
(`transition_statement`, `made_by`: `StateStore.end_timer`). At most one timed disable per
integration is pending at a time (a partial unique index), so two `disable X for …` commands
racing cannot both schedule one.

An extension (`extend`, `extend all`, a `disable X for …` that re-times a running one) records,
in the same UPDATE as the new end, which command set it and to what (`extensions_json`, migration
10): the command writes no Rocket.Chat document, so the write journal (bot/runtime/journal.py)
knows nothing of it, and a command resumed after a crash between this UPDATE and its audit row
would otherwise extend a second time. It finds its own extension on the row instead
(`TimedDisable.extended_by`). The latest `EXTENSIONS_KEPT` are kept, so another command extending
the same timer meanwhile (someone clicking "Extend 1 h" while the first one got no answer) does not
hide the first one's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bot.rocketchat.ejson import decode_date
from bot.state.database import Database, read_time
from bot.state.database import read_time_or_none as _dt
from bot.state.database import stored_time as _ts
from bot.state.timer_states import PENDING, TimedDisable, TimerEvent, TimerState, next_state

_COLUMNS: Final = (
    "id, revision, state, integration_id, integration_name, integration_type, created_at, due_at, actor_id,"
    " actor_username, reason, room_id, thread_id, message_id, audit_id, disabled_updated_at, disabled_json,"
    " ended_at, end_note, group_id, extensions_json"
)
# How many extensions a timer remembers (the latest ones): far more than can happen while a command
# waits to be resumed.
EXTENSIONS_KEPT: Final = 32
_PENDING_SQL: Final = "(" + ", ".join(f"'{state.value}'" for state in sorted(PENDING)) + ")"


def updated_at_of(document: Mapping[str, Any]) -> str | None:
    """A document's `_updatedAt` as ISO text (REST gives ISO strings, DDP `{"$date": ms}`)."""
    when = decode_date(document.get("_updatedAt"))
    return when.isoformat() if when is not None else None


@dataclass(frozen=True)
class TimerDraft:
    """What a `disable … for …` command knows before it writes anything."""

    integration_id: str
    integration_name: str
    integration_type: str
    created_at: datetime
    due_at: datetime
    actor_id: str
    actor_username: str
    reason: str | None = None
    room_id: str | None = None
    thread_id: str | None = None
    message_id: str | None = None
    # A member of a bulk disable (bot/state/group_store.py).
    group_id: int | None = None


class TimerStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def schedule(self, draft: TimerDraft) -> TimedDisable | None:
        """Record a timed disable in state `scheduled`; None when one is already pending for
        this integration (the partial unique index refuses a second)."""
        rows = await self._db.rows(
            "INSERT INTO timers (state, integration_id, integration_name, integration_type, created_at, due_at,"
            " actor_id, actor_username, reason, room_id, thread_id, message_id, group_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (
                TimerState.SCHEDULED.value,
                draft.integration_id,
                draft.integration_name,
                draft.integration_type,
                _ts(draft.created_at),
                _ts(draft.due_at),
                draft.actor_id,
                draft.actor_username,
                draft.reason,
                draft.room_id,
                draft.thread_id,
                draft.message_id,
                draft.group_id,
            ),
        )
        if not rows:
            return None
        found = await self.get(int(rows[0][0]))
        assert found is not None
        return found

    async def get(self, timer_id: int) -> TimedDisable | None:
        rows = await self._select("WHERE id = ?", (timer_id,))
        return rows[0] if rows else None

    async def pending_for(self, integration_id: str) -> TimedDisable | None:
        rows = await self._select(f"WHERE integration_id = ? AND state IN {_PENDING_SQL}", (integration_id,))
        return rows[0] if rows else None

    async def has_extension_by(self, message_id: str) -> bool:
        """Whether the command `message_id` extended a timed disable that is still pending (the
        recovery of a stale command asks: it did something, so it is resumed to say so)."""
        needle = json.dumps(message_id)
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = await self._select(
            f"WHERE state IN {_PENDING_SQL} AND extensions_json LIKE ? ESCAPE '\\'",
            (pattern,),
        )
        return any(timer.extended_by(message_id) is not None for timer in rows)

    async def pending(self, state: TimerState | None = None) -> list[TimedDisable]:
        """Pending timed disables (or only those in `state`), soonest due first."""
        if state is not None:
            return await self._select("WHERE state = ? ORDER BY due_at, id", (state.value,))
        return await self._select(f"WHERE state IN {_PENDING_SQL} ORDER BY due_at, id", ())

    async def in_group(self, group_id: int) -> list[TimedDisable]:
        """Every timer of a bulk disable's members (pending or not), oldest first."""
        return await self._select("WHERE group_id = ? ORDER BY id", (group_id,))

    async def ended(self, *, limit: int = 20) -> list[TimedDisable]:
        """Finished timed disables, most recently ended first."""
        return await self._select(
            f"WHERE state NOT IN {_PENDING_SQL} ORDER BY ended_at DESC, id DESC LIMIT ?", (limit,)
        )

    async def transition(
        self,
        timer: TimedDisable,
        event: TimerEvent,
        *,
        at: datetime,
        note: str | None = None,
        due_at: datetime | None = None,
        document: Mapping[str, Any] | None = None,
        audit_id: int | None = None,
        by: str | None = None,
    ) -> TimedDisable | None:
        """Apply `event` to the row as `timer` last saw it. None when the row moved on meanwhile
        (another transition won); `IllegalTransition` when the table does not allow it. An
        extension made for a command names it (`by`, its message id): recorded with the new end.
        One statement, which returns the row as it made it: a transition that was stored is never
        reported as failed by a read after it."""
        rows = await self._db.rows(
            *self.transition_statement(
                timer, event, at=at, note=note, due_at=due_at, document=document, audit_id=audit_id, by=by
            )
        )
        return timer_of(rows[0]) if rows else None

    def transition_statement(
        self,
        timer: TimedDisable,
        event: TimerEvent,
        *,
        at: datetime,
        note: str | None = None,
        due_at: datetime | None = None,
        document: Mapping[str, Any] | None = None,
        audit_id: int | None = None,
        by: str | None = None,
    ) -> tuple[str, tuple[Any, ...]]:
        """The compare-and-set UPDATE of `transition` (for a caller that runs it with other
        statements, `StateStore.end_timer`): it returns the row as changed (`timer_of`), or no
        row when the row moved on meanwhile."""
        target = next_state(timer.state, event)
        sets: dict[str, Any] = {"state": target.value}
        if event in (TimerEvent.CONFIRMED, TimerEvent.REBASED):
            if document is None:
                raise ValueError(f"{event.value} needs the document the disable produced")
            sets["disabled_json"] = json.dumps(dict(document))
            sets["disabled_updated_at"] = updated_at_of(document)
        if audit_id is not None:
            sets["audit_id"] = audit_id
        if event is TimerEvent.EXTENDED:
            if due_at is None:
                raise ValueError("extending needs the new due time")
            sets["due_at"] = _ts(due_at)
            if by is not None:
                # Computed from the row as read: the compare-and-set on `revision` makes it exact.
                kept = [(message_id, due) for message_id, due in timer.extensions if message_id != by]
                kept = [*kept, (by, due_at)][-EXTENSIONS_KEPT:]
                sets["extensions_json"] = json.dumps([[message_id, _ts(due)] for message_id, due in kept])
        if target not in PENDING:
            sets["ended_at"] = _ts(at)
            sets["end_note"] = note
        assignments = ", ".join(f"{column} = ?" for column in sets)
        return (
            f"UPDATE timers SET {assignments}, revision = revision + 1 WHERE id = ? AND revision = ?"  # noqa: S608
            f" RETURNING {_COLUMNS}",
            (*sets.values(), timer.id, timer.revision),
        )

    async def _select(self, where: str, params: tuple[Any, ...]) -> list[TimedDisable]:
        rows = await self._db.rows(f"SELECT {_COLUMNS} FROM timers {where}", params)  # noqa: S608
        return [timer_of(row) for row in rows]


def made_by(timer: TimedDisable, event: TimerEvent) -> tuple[str, tuple[Any, ...]]:
    """An SQL condition (with its parameters): the row of `timer` is as `event`, applied to it by
    `transition_statement`, made it (the next revision, in the event's state). A statement run
    after that UPDATE in the same transaction is made conditional on it winning."""
    return (
        "EXISTS (SELECT 1 FROM timers WHERE id = ? AND revision = ? AND state = ?)",
        (timer.id, timer.revision + 1, next_state(timer.state, event).value),
    )


def timer_of(row: Any) -> TimedDisable:
    """A timer from a row of `_COLUMNS` (a select's, or `transition_statement`'s)."""
    created, due = _dt(row[6]), _dt(row[7])
    assert created is not None and due is not None
    return TimedDisable(
        id=int(row[0]),
        revision=int(row[1]),
        state=TimerState(row[2]),
        integration_id=str(row[3]),
        integration_name=str(row[4]),
        integration_type=str(row[5]),
        created_at=created,
        due_at=due,
        actor_id=str(row[8]),
        actor_username=str(row[9]),
        reason=row[10],
        room_id=row[11],
        thread_id=row[12],
        message_id=row[13],
        audit_id=int(row[14]) if row[14] is not None else None,
        disabled_updated_at=row[15],
        disabled_document=json.loads(row[16]) if row[16] else None,
        ended_at=_dt(row[17]),
        end_note=row[18],
        group_id=int(row[19]) if row[19] is not None else None,
        extensions=_extensions(row[20]),
    )


def _extensions(value: Any) -> tuple[tuple[str, datetime], ...]:
    if not value:
        return ()
    return tuple((str(message_id), read_time(due)) for message_id, due in json.loads(value))
