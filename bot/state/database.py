"""The storage protocol: what a database must do for the state store (`bot/state/store.py`).

The store's statements are written once, in the SQL both backends speak (`?` placeholders,
`INSERT … ON CONFLICT DO NOTHING … RETURNING`, partial unique indexes); a backend runs them and
supplies the few words that differ. Two backends implement it:

- `bot/state/sqlite.py`: one file (`BOT_STATE_DB`), one process: the embedded default;
- `bot/state/postgres.py`: a PostgreSQL server (`BOT_STATE_URL`) shared by several replicas.

Each backend owns its schema and migrations (the DDL differs), numbered alike: version N means
the same tables and columns on both, so code that needs version N works on either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.integrations.locks import IntegrationLocks

Row = tuple[Any, ...]


def stored_time(when: datetime) -> float:
    """How every store keeps a time, on both backends: seconds since the epoch (a float)."""
    return when.timestamp()


def read_time(value: Any) -> datetime:
    """A time as `stored_time` kept it (UTC)."""
    return datetime.fromtimestamp(float(value), UTC)


def read_time_or_none(value: Any) -> datetime | None:
    """`read_time` of a column that may be empty."""
    return read_time(value) if value is not None else None


class Database(Protocol):
    @property
    def kind(self) -> str:
        """ "sqlite" or "postgresql"."""
        ...

    @property
    def shared(self) -> bool:
        """Whether other processes may use this database at the same time (claims are then
        leased, and only expired leases are taken over)."""
        ...

    @property
    def greatest(self) -> str:
        """The SQL function of the larger of two values (SQLite: MAX, PostgreSQL: GREATEST)."""
        ...

    @property
    def skip_locked(self) -> str:
        """What a sub-select that picks rows to take adds so that two processes never pick the
        same row (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite, one writer: nothing)."""
        ...

    @property
    def started_at(self) -> str:
        """An SQL expression: when the database server last started, in seconds since the epoch
        (PostgreSQL: its postmaster's start; SQLite, one process: 0). A claim returns it
        (`StateStore.server_started`)."""
        ...

    @property
    def uptime(self) -> str:
        """An SQL expression: seconds since the database server last started, on its own clock
        (PostgreSQL; SQLite, one process: a number larger than any grace period)."""
        ...

    @property
    def locks(self) -> IntegrationLocks:
        """The per-integration write lock of everyone using this database."""
        ...

    def describe(self) -> str:
        """Where the state lives, for logs and `check` (never a password)."""
        ...

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement (its own transaction) and return its rows (none for a write
        without RETURNING). Raises `StateUnavailable` when the database cannot be used."""
        ...

    async def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; the number of rows it changed."""
        ...

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run write statements in order, in one round trip; the rows each changed. A statement
        that fails stops the ones after it. On SQLite each statement commits on its own (those
        before a failure stay); on PostgreSQL the batch is one pipeline with one Sync, so one
        implicit transaction: a failure, or the connection lost before the Sync, undoes those
        before it too. A caller must be right either way (put first what the rest depends on).
        On PostgreSQL each statement is sent as it is run: a process stopped between two of them
        (SIGSTOP, a frozen VM or container) keeps that transaction, and the row locks of those
        before, open until it resumes. The claims keeper's and the intake's statements never wait
        for those rows (a claim leaves the commands claimed already out of its insert,
        `StateStore.claim_messages`; a take-over skips locked claims); any other waits at most the
        backend's `lock_timeout`, then raises `StateBusy` (bot/state/postgres.py, "Stalled replicas")."""
        ...

    async def batch_rows(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        """`batch`, with the rows each statement returned (none for a write without RETURNING)
        beside the rows it changed."""
        ...

    async def atomic_rows(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        """`batch_rows` in one transaction on either backend: a statement that fails undoes those
        before it, on SQLite too (there a BEGIN … COMMIT around them). For statements that must
        be stored together or not at all (`StateStore.end_timer`)."""
        ...

    async def schema_version(self) -> int: ...

    async def ping(self) -> None:
        """Raise `StateUnavailable` unless the database answers now (for `/readyz`)."""
        ...

    async def close(self) -> None: ...


__all__ = ["Database", "Row"]
