"""One writer at a time per integration: the lock every read-modify-write of an integration takes.

The problem
-----------
`integrations.update` is a full replacement with no compare-and-set (contract §2.4): the bot
reads the whole integration, changes a field and writes the whole document back. Two such
read-modify-writes of one integration that interleave lose a change silently: `set Race alias=x`
reads (enabled), `disable Race` writes (disabled), then the `set` writes its document back,
`enabled: true` included. Both are answered with success.

The rule
--------
Every read-modify-write of one integration made by the bot (commands, timed re-enables, `undo`,
the resumption of an interrupted command) holds that integration's lock from the read its body is
built from until the write is settled and verified (`IntegrationService.editing`). A command that
read the document *before* taking the lock (a name is resolved through `integrations.list`,
whose pages carry complete documents) may write from that read only if nobody held the lock
since the read began; otherwise it reads again under the lock. That is what the read mark is
for: `mark()` is taken just before a read, and `Held.untouched_since(mark)` says whether any
holder released the lock after it (a holder that was busy while the read ran releases after the
mark too, so a read that could have seen half of someone's change is never trusted).

Writes made outside the bot (the admin UI, another tool) cannot be serialised by anyone: they
are what the verification after each write and the comparisons of `undo` and the timers catch.

Backends
--------
`IntegrationLocks` is the interface. `LocalIntegrationLocks` serves one process (an
`asyncio.Lock` per integration id, created on demand and dropped when nobody holds or waits for
it). A store shared by several processes backs the same interface with a database lock held for
the same span (e.g. an advisory lock per integration id); its `untouched_since` may simply
answer False, which costs a re-read and is always safe.

The lock is re-entrant for the task that holds it, so code that already edits an integration can
call helpers that take the lock again without deadlocking (such a nested hold never trusts an
earlier read: its holder may have written since); another task always waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

ReadMark = int


class Held(Protocol):
    """A lock on one integration, held by the current task."""

    @property
    def integration_id(self) -> str: ...

    def untouched_since(self, mark: ReadMark, updated_at: str | None = None) -> bool:
        """Whether no other holder released this integration's lock after `mark` was taken
        (so a document whose read began at `mark` is still the latest the bot wrote or saw).
        `updated_at`: that document's `_updatedAt`, which a lock shared by several processes
        compares with the last write the bot made through any of them."""
        ...

    async def writing(self, *, journaled: bool = False) -> None:
        """A write of this integration is about to be sent (before it is sent). `journaled`: the
        holder's command has recorded (or is recording) a write intent for it, which a lock shared
        by several processes counts as "a write may be in flight" (see `IntegrationLocks.hold`),
        so nothing else needs to be stored first."""
        ...

    def written(self, updated_at: str | None) -> None:
        """The write was stored and verified; `updated_at` is the stored document's `_updatedAt`."""
        ...

    def commit_with(self, sql: str, params: Sequence[Any]) -> bool:
        """Have a statement of the state store committed with the lock's release, in the same
        round trip (before the holder's block ends, so before any answer), if this lock can:
        True. False when it cannot (a process's own lock): the caller runs it itself."""
        ...

    @property
    def timer_pending(self) -> bool | None:
        """Whether a timed disable of this integration was pending (`scheduled` or `active`) as the
        lock was taken, when the lock read that with it (a lock shared by several processes, in its
        own round trip); None when it did not: look it up. A timer becomes pending only under this
        lock, so False holds for the whole hold (until the holder sets one itself)."""
        ...


class IntegrationLocks(Protocol):
    def mark(self) -> ReadMark:
        """A mark to take just before reading an integration (see `Held.untouched_since`)."""
        ...

    def hold(
        self, integration_id: str, *, writer: str | None = None, owner: str | None = None
    ) -> AbstractAsyncContextManager[Held]:
        """Hold the integration's lock for the block; waits while another task holds it.
        `writer`: the message id of the command holding it, whose own write intents do not make
        its reads untrusted (every other command's unverified intent does: its write may have
        landed unrecorded). `owner`: this process's name on that command's claim; a lock shared
        by several processes then refuses the holder's write (`Held.writing` raises
        `ClaimTakenOver`) when the claim was no longer this process's as the lock was taken."""
        ...

    def held(self, integration_id: str) -> Held | None:
        """The current task's hold of the integration's lock (None if it holds none)."""
        ...


@dataclass
class _Lock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: asyncio.Task[object] | None = None
    depth: int = 0
    users: int = 0  # holding or waiting: the entry is dropped when it falls to zero


@dataclass(frozen=True)
class _LocalHeld:
    integration_id: str
    _released: dict[str, int]
    # Taken again by its holder, which may have written since any read it was handed: never
    # trust an earlier read then (a re-read under the lock costs one GET).
    _reentered: bool = False

    def untouched_since(self, mark: ReadMark, updated_at: str | None = None) -> bool:
        return not self._reentered and self._released.get(self.integration_id, 0) <= mark

    async def writing(self, *, journaled: bool = False) -> None:
        return None  # one process: its own lock says everything

    def written(self, updated_at: str | None) -> None:
        return None

    def commit_with(self, sql: str, params: Sequence[Any]) -> bool:
        return False

    @property
    def timer_pending(self) -> bool | None:
        return None


class LocalIntegrationLocks:
    """The locks of one process (see the module docstring)."""

    def __init__(self) -> None:
        self._locks: dict[str, _Lock] = {}
        # Integration id → the mark at which its lock was last released. One int per
        # integration ever written through this process: bounded by the workspace's size.
        self._released: dict[str, int] = {}
        self._clock = 0

    def mark(self) -> ReadMark:
        return self._clock

    def locked(self, integration_id: str) -> bool:
        """Whether some task holds the integration's lock right now (for tests and diagnostics)."""
        entry = self._locks.get(integration_id)
        return entry is not None and entry.owner is not None

    def held(self, integration_id: str) -> Held | None:
        if not self.holding(integration_id):
            return None
        return _LocalHeld(integration_id, self._released, _reentered=True)

    def holding(self, integration_id: str) -> bool:
        """Whether the current task holds the integration's lock (taking it again re-enters)."""
        entry = self._locks.get(integration_id)
        return entry is not None and entry.owner is not None and entry.owner is asyncio.current_task()

    def hold(
        self, integration_id: str, *, writer: str | None = None, owner: str | None = None
    ) -> AbstractAsyncContextManager[Held]:
        return self._hold(integration_id)

    @asynccontextmanager
    async def _hold(self, integration_id: str) -> AsyncIterator[Held]:
        me = asyncio.current_task()
        entry = self._locks.get(integration_id)
        if entry is not None and me is not None and entry.owner is me:
            entry.depth += 1
            try:
                yield _LocalHeld(integration_id, self._released, _reentered=True)
            finally:
                entry.depth -= 1
            return
        if entry is None:
            entry = self._locks[integration_id] = _Lock()
        entry.users += 1
        try:
            async with entry.lock:
                entry.owner, entry.depth = me, 1
                try:
                    yield _LocalHeld(integration_id, self._released)
                finally:
                    entry.owner, entry.depth = None, 0
                    self._clock += 1
                    self._released[integration_id] = self._clock
        finally:
            entry.users -= 1
            if entry.users == 0 and self._locks.get(integration_id) is entry:
                del self._locks[integration_id]


__all__ = ["Held", "IntegrationLocks", "LocalIntegrationLocks", "ReadMark"]
