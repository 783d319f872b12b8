"""Changes waiting for their caller's confirmation (`set` → `confirm <code>` / `yes`), in the
state database (the `confirmations` table of migration 6, `bot/state/sqlite.py` and
`bot/state/postgres.py`), so a preview shown by one replica can be confirmed through any
replica, and a restart keeps them.

A pending change belongs to the caller AND the room that asked. `take` hands it out only to
them and only before it expires; a foreign attempt leaves it in place (the owner may still
confirm), an expired one is reported as expired for a while (`remember`) and then forgotten.

A row's life: `waiting` (added by `set`) → `applying` (taken by a confirmation, which writes it)
→ `applied` (remembered for `remember`, so the second click of a double click is answered
"already applied"), or deleted by `release` when the confirmation did not apply it (stale,
refused: its code is then unknown, and `set` must be run again).

Taking is one `UPDATE … WHERE status = 'waiting' … RETURNING`: of two confirmations racing each
other (a double click, or the same code typed into two replicas at once) exactly one gets the
change; PostgreSQL re-checks the WHERE of the second after the first commits, SQLite has one
writer. While a taken change is being written, its code confirmed again is answered "being
applied" (`Status.APPLYING`) rather than "unknown".

A confirmation whose process died while applying (kill -9, node loss) leaves its row
`applying`. That is bounded: an `applying` row taken more than `applying_for` ago (default
`APPLYING_BOUND`, far longer than any write takes) counts as not taken any more, so it can be
taken again while it has not expired (and is expired, then forgotten, after that). Taking it
again is safe: a confirmation applies a change only if the integration is still exactly the
document it was previewed on (commands/confirm.py), so a change the dead process did write is
answered "changed since the preview", never written twice. `applied_at` holds, while a row is
`applying`, when it was taken: that is what the bound counts from, and what `release` checks so
that it deletes only the take it made.

Expired rows are deleted by `prune` (run by every `add`): waiting ones `remember` after they
expired, applied ones `remember` after they were applied.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from bot.state.database import Database
from bot.state.database import read_time as _dt
from bot.state.database import stored_time as _ts

# No 0/O, 1/I/L: codes are read off a phone screen and typed again.
CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH: Final = 4
# The `integration_id` of a stored bulk preview (`disable all …`, commands/bulk.py): its snapshot
# holds the members' documents, its updates what the command asked for. Never an integration id.
BULK_TARGET: Final = "*bulk*"
# How long a taken change counts as being applied (its confirmation's process may have died).
APPLYING_BOUND: Final = timedelta(minutes=5)
# Codes drawn before giving up on finding a free one (31^4 codes; only a full table collides).
_DRAWS: Final = 100

_COLUMNS: Final = (
    "code, user_id, room_id, integration_id, snapshot_json, updates_json, created_at, expires_at, status, applied_at"
)


class Status(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such code (never issued, already used, or forgotten)
    FOREIGN = "foreign"  # someone else's, or asked for in another room
    EXPIRED = "expired"
    NOTHING = "nothing"  # `yes` without any pending change of the caller in this room
    APPLIED = "applied"  # taken and applied already (`ConfirmationStore.applied`)
    APPLYING = "applying"  # taken by a confirmation that is writing it now


@dataclass(frozen=True)
class PendingChange:
    """A previewed change: the document it was planned against and the document-form changes."""

    code: str
    user_id: str
    room_id: str
    integration_id: str
    snapshot: Mapping[str, Any] = field(repr=False)
    updates: Mapping[str, Any] = field(repr=False)
    created: datetime
    expires: datetime
    # When it was taken (for the confirmation that took it: `release` deletes only that take).
    taken_at: datetime | None = None

    @property
    def bulk(self) -> bool:
        """Whether this is a bulk preview (`BULK_TARGET`) rather than one integration's change."""
        return self.integration_id == BULK_TARGET

    def asked_by(self, user_id: str, room_id: str) -> bool:
        """Whether this caller asked for it in this room (only they may confirm it there)."""
        return self.user_id == user_id and self.room_id == room_id


@dataclass(frozen=True)
class Taken:
    status: Status
    change: PendingChange | None = None
    # For `Status.APPLIED`: when it was applied.
    applied_at: datetime | None = None


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class ConfirmationStore:
    """Pending confirmations on either backend (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        *,
        remember: timedelta = timedelta(hours=1),
        per_caller: int = 20,
        applying_for: timedelta = APPLYING_BOUND,
    ) -> None:
        self._db = database
        self._remember = remember
        self._per_caller = per_caller
        self._applying_for = applying_for

    async def add(
        self,
        *,
        user_id: str,
        room_id: str,
        integration_id: str,
        snapshot: Mapping[str, Any],
        updates: Mapping[str, Any],
        now: datetime,
        ttl: timedelta,
    ) -> PendingChange:
        """Record a change waiting for its confirmation, under a new code. The caller's oldest
        waiting ones beyond `per_caller` are dropped."""
        await self.prune(now)
        # Keep the caller's newest `per_caller - 1`, making room for this one.
        await self._db.count(
            "DELETE FROM confirmations WHERE user_id = ? AND status = 'waiting' AND code NOT IN"
            " (SELECT code FROM confirmations WHERE user_id = ? AND status = 'waiting'"
            " ORDER BY created_at DESC, code DESC LIMIT ?)",
            (user_id, user_id, max(0, self._per_caller - 1)),
        )
        snapshot_json, updates_json = json.dumps(dict(snapshot)), json.dumps(dict(updates))
        expires = now + ttl
        for _ in range(_DRAWS):
            code = new_code()
            # A code in use (waiting, applying or applied) is the primary key: draw again.
            rows = await self._db.rows(
                f"INSERT INTO confirmations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'waiting', NULL)"  # noqa: S608
                " ON CONFLICT DO NOTHING RETURNING code",
                (code, user_id, room_id, integration_id, snapshot_json, updates_json, _ts(now), _ts(expires)),
            )
            if rows:
                return PendingChange(
                    code, user_id, room_id, integration_id, dict(snapshot), dict(updates), now, expires
                )
        raise RuntimeError(f"no free confirmation code after {_DRAWS} draws")

    async def take(self, code: str, *, user_id: str, room_id: str, now: datetime) -> Taken:
        """The change with `code` if it is the caller's, from this room, and not expired: it is
        then `applying` (theirs to write), and nobody else gets it."""
        wanted = code.strip().upper()
        stale = _ts(now - self._applying_for)
        rows = await self._db.rows(
            "UPDATE confirmations SET status = 'applying', applied_at = ?"  # noqa: S608
            " WHERE code = ? AND user_id = ? AND room_id = ? AND expires_at > ?"
            " AND (status = 'waiting' OR (status = 'applying' AND applied_at <= ?))"
            f" RETURNING {_COLUMNS}",
            (_ts(now), wanted, user_id, room_id, _ts(now), stale),
        )
        if rows:
            return Taken(Status.OK, _change(rows[0]))
        rows = await self._db.rows(f"SELECT {_COLUMNS} FROM confirmations WHERE code = ?", (wanted,))  # noqa: S608
        if not rows:
            return Taken(Status.UNKNOWN)
        change, status, at = _change(rows[0]), str(rows[0][8]), rows[0][9]
        forget = now - self._remember
        if status == "applied":
            if _dt(at) <= forget:
                return Taken(Status.UNKNOWN)
            return (
                Taken(Status.APPLIED, change, _dt(at)) if change.asked_by(user_id, room_id) else Taken(Status.FOREIGN)
            )
        if status == "applying" and float(at) > stale:
            return Taken(Status.APPLYING, change) if change.asked_by(user_id, room_id) else Taken(Status.FOREIGN)
        # Waiting (or taken by a confirmation that is gone): not taken above, so foreign or expired.
        if change.expires <= forget:
            return Taken(Status.UNKNOWN)
        if not change.asked_by(user_id, room_id):
            return Taken(Status.FOREIGN)
        return Taken(Status.EXPIRED)

    async def take_latest(
        self, *, user_id: str, room_id: str, now: datetime, resuming: bool = False, begun: datetime | None = None
    ) -> Taken:
        """`yes`: the caller's most recent change asked for in this room and not yet taken; with
        `resuming` (this very `yes` is being resumed after a crash) the one being applied first,
        which is then answered `Status.APPLYING` with its change, for the resumed command to
        finish: the change its first run took, not one the caller previewed since (while it
        waited for its lease to run out) and never confirmed. `begun` (a bulk confirmation resumed,
        its group begun then): only the caller's bulk previews taken (being applied, or applied
        already when it died before its answer) and made by then, the newest: the one it took, the
        caller's newest waiting one when it did. One previewed and confirmed by another `yes` while
        this one waited to be taken over is younger than its group (newer in being applied or
        applied, it was taken instead, and its members re-applied under this group)."""
        if begun is not None:
            rows = await self._db.rows(
                "SELECT code FROM confirmations WHERE user_id = ? AND room_id = ? AND integration_id = ?"
                " AND created_at <= ? AND (status = 'applying' OR (status = 'applied' AND applied_at > ?))"
                " ORDER BY created_at DESC, code DESC LIMIT 1",
                (user_id, room_id, BULK_TARGET, _ts(begun), _ts(now - self._remember)),
            )
            if not rows:
                return Taken(Status.NOTHING)
            return await self.take(str(rows[0][0]), user_id=user_id, room_id=room_id, now=now)
        taken = " OR status = 'applying'" if resuming else ""
        first = "CASE WHEN status = 'applying' THEN 0 ELSE 1 END, " if resuming else ""
        rows = await self._db.rows(
            "SELECT code FROM confirmations WHERE user_id = ? AND room_id = ? AND expires_at > ?"  # noqa: S608
            f" AND (status = 'waiting' OR (status = 'applying' AND applied_at <= ?){taken})"
            f" ORDER BY {first}created_at DESC, code DESC LIMIT 1",
            (user_id, room_id, _ts(now - self._remember), _ts(now - self._applying_for)),
        )
        if not rows:
            return Taken(Status.NOTHING)
        return await self.take(str(rows[0][0]), user_id=user_id, room_id=room_id, now=now)

    async def applied(self, change: PendingChange, *, now: datetime) -> None:
        """`change` (taken) was applied: its code confirmed again says so, for a while."""
        await self._db.count(
            "UPDATE confirmations SET status = 'applied', applied_at = ? WHERE code = ?", (_ts(now), change.code)
        )

    async def release(self, change: PendingChange) -> None:
        """The confirmation that took `change` is done: unless it was applied, it is forgotten
        (no longer "being applied"; its code is unknown from now on)."""
        if change.taken_at is None:
            return
        await self._db.count(
            "DELETE FROM confirmations WHERE code = ? AND status = 'applying' AND abs(applied_at - ?) < 0.000001",
            (change.code, _ts(change.taken_at)),
        )

    async def waiting(self) -> int:
        """How many changes wait for their confirmation (expired ones not yet pruned included)."""
        rows = await self._db.rows("SELECT count(*) FROM confirmations WHERE status = 'waiting'")
        return int(rows[0][0])

    async def prune(self, now: datetime) -> int:
        """Forget what is past remembering: waiting (or abandoned) ones `remember` after they
        expired, applied ones `remember` after they were applied."""
        forget = _ts(now - self._remember)
        return await self._db.count(
            "DELETE FROM confirmations WHERE (status = 'waiting' AND expires_at <= ?)"
            " OR (status = 'applying' AND expires_at <= ? AND applied_at <= ?)"
            " OR (status = 'applied' AND applied_at <= ?)",
            (forget, forget, _ts(now - self._applying_for), forget),
        )


def _change(row: Sequence[Any]) -> PendingChange:
    return PendingChange(
        code=str(row[0]),
        user_id=str(row[1]),
        room_id=str(row[2]),
        integration_id=str(row[3]),
        snapshot=json.loads(row[4]),
        updates=json.loads(row[5]),
        created=_dt(row[6]),
        expires=_dt(row[7]),
        taken_at=_dt(row[9]) if str(row[8]) == "applying" and row[9] is not None else None,
    )


__all__ = [
    "APPLYING_BOUND",
    "BULK_TARGET",
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "ConfirmationStore",
    "PendingChange",
    "Status",
    "Taken",
]
