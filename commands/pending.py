"""Changes waiting for their caller's confirmation (`set` → `confirm <code>` / `yes`).

Kept in memory on purpose: a confirmation lives for BOT_CONFIRM_TIMEOUT (minutes), and a restart
that drops the waiting ones is safe, since nothing was written yet and the caller is told the
code is unknown and to run `set` again.

A pending change belongs to the caller AND the room that asked. `take` hands it out only to
them and only before it expires; a foreign attempt leaves it in place (the owner may still
confirm), an expired one is reported as expired for a while (`remember`) and then forgotten.
Taking is synchronous, so two confirmations racing each other (a double click on the button)
cannot both get it. While a taken change is being written, its code confirmed again (a second
click arriving meanwhile: a caller's commands run two at a time) is answered "being applied"
(`Status.APPLYING`) rather than "unknown"; the confirmation hands it back with `release` once it
is done, whatever happened. A change that was applied (`applied`) is remembered as such for the
same while, so its code confirmed again (the second click) is answered "already applied" rather
than "unknown"; a change taken but not applied (stale, refused) is forgotten as before.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

# No 0/O, 1/I/L: codes are read off a phone screen and typed again.
CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH: Final = 4


class Status(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such code (never issued, already used, or forgotten after a restart)
    FOREIGN = "foreign"  # someone else's, or asked for in another room
    EXPIRED = "expired"
    NOTHING = "nothing"  # `yes` without any pending change of the caller in this room
    APPLIED = "applied"  # taken and applied already (`PendingChanges.applied`)
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

    def asked_by(self, user_id: str, room_id: str) -> bool:
        """Whether this caller asked for it in this room (only they may confirm it there)."""
        return self.user_id == user_id and self.room_id == room_id


@dataclass(frozen=True)
class Taken:
    status: Status
    change: PendingChange | None = None
    # For `Status.APPLIED`: when it was applied.
    applied_at: datetime | None = None


class PendingChanges:
    def __init__(self, *, remember: timedelta = timedelta(hours=1), per_caller: int = 20) -> None:
        self._by_code: dict[str, PendingChange] = {}
        # Applied changes by code, with when: remembered for `remember` after they were applied.
        self._applied: dict[str, tuple[PendingChange, datetime]] = {}
        # Taken by a confirmation still writing them (until `release`).
        self._taken: dict[str, PendingChange] = {}
        self._remember = remember
        self._per_caller = per_caller

    def __len__(self) -> int:
        return len(self._by_code)

    def add(
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
        self._prune(now)
        mine = sorted((c for c in self._by_code.values() if c.user_id == user_id), key=lambda c: c.created)
        for old in mine[: max(0, len(mine) - self._per_caller + 1)]:
            del self._by_code[old.code]
        code = self._new_code()
        change = PendingChange(code, user_id, room_id, integration_id, dict(snapshot), dict(updates), now, now + ttl)
        self._by_code[code] = change
        return change

    def take(self, code: str, *, user_id: str, room_id: str, now: datetime) -> Taken:
        """The change with `code` if it is the caller's, from this room, and not expired."""
        self._prune(now)
        wanted = code.strip().upper()
        change = self._by_code.get(wanted)
        if change is None:
            # Taken already: being applied now, or applied (remembered for a while), or unknown.
            at: datetime | None = None
            if wanted in self._taken:
                status, change = Status.APPLYING, self._taken[wanted]
            elif wanted in self._applied:
                status = Status.APPLIED
                change, at = self._applied[wanted]
            else:
                return Taken(Status.UNKNOWN)
            return Taken(status, change, at) if change.asked_by(user_id, room_id) else Taken(Status.FOREIGN)
        if not change.asked_by(user_id, room_id):
            return Taken(Status.FOREIGN)
        if now >= change.expires:
            return Taken(Status.EXPIRED)
        del self._by_code[change.code]
        self._taken[change.code] = change
        return Taken(Status.OK, change)

    def take_latest(self, *, user_id: str, room_id: str, now: datetime) -> Taken:
        """`yes`: the caller's most recent change asked for in this room."""
        self._prune(now)
        mine = [c for c in self._by_code.values() if c.asked_by(user_id, room_id)]
        if not mine:
            return Taken(Status.NOTHING)
        latest = max(mine, key=lambda c: c.created)
        return self.take(latest.code, user_id=user_id, room_id=room_id, now=now)

    def applied(self, change: PendingChange, *, now: datetime) -> None:
        """`change` (taken) was applied: its code confirmed again says so, for a while."""
        self._taken.pop(change.code, None)
        self._applied[change.code] = (change, now)

    def release(self, change: PendingChange) -> None:
        """The confirmation that took `change` is done (applied or not): no longer "being applied"."""
        self._taken.pop(change.code, None)

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if code not in self._by_code and code not in self._applied and code not in self._taken:
                return code

    def _prune(self, now: datetime) -> None:
        for code in [c.code for c in self._by_code.values() if now >= c.expires + self._remember]:
            del self._by_code[code]
        for code in [code for code, (_, at) in self._applied.items() if now >= at + self._remember]:
            del self._applied[code]
