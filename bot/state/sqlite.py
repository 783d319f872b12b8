"""The SQLite backend of the state store (`bot/state/store.py`): one file, `BOT_STATE_DB`, one process.

The embedded default: nothing to run beside the bot, and the demo's store. One process only: the
runtime takes an exclusive lock on the file first (`bot/state/owner.py`), so a second bot on the
same file refuses to start instead of answering commands twice.

Schema changes are numbered migrations recorded in `PRAGMA user_version`; an older file is
upgraded in order when opened, a newer one (from a later release) is refused with a clear error.
WAL journaling keeps readers and the single writer out of each other's way; every write is its
own committed transaction (but those of one `atomic_rows`: one BEGIN … COMMIT), so a killed
process loses at most the statement (or that transaction) in flight.

Statements run on the event loop's own thread, not in a worker thread (aiosqlite): every statement
here is a point lookup or a one-row write that SQLite finishes in 10–200 µs, and handing it to a
thread and back cost more than that (~0.15 ms per statement when idle, several times that under
load, where the worker thread and the loop fight over the GIL; measured with `make bench`: a
quarter of the bot's CPU in a burst of commands was that thread). The methods stay `async` so
callers do not depend on where the work happens. A statement with RETURNING is complete only
once its rows are fetched: `rows` always fetches them. The price: a write waits for another
process's write lock (up to `busy_timeout`) with the loop blocked; readers (`sqlite3` on the
file by hand) never block it under WAL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.integrations.locks import IntegrationLocks, LocalIntegrationLocks
from bot.state.database import Row

# Each entry upgrades the schema from version N to N+1 (list index N).
MIGRATIONS: tuple[str, ...] = (
    # 1: processed messages, audit trail, room cursors
    """
    CREATE TABLE processed_messages (
        message_id  TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        message_ts  REAL NOT NULL,
        claimed_at  REAL NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('claimed', 'done', 'ignored')),
        outcome     TEXT
    );
    CREATE INDEX processed_messages_claimed_at ON processed_messages (claimed_at);
    CREATE TABLE audit (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        at               REAL NOT NULL,
        actor_id         TEXT NOT NULL,
        actor_username   TEXT NOT NULL,
        room_id          TEXT,
        message_id       TEXT,
        integration_id   TEXT NOT NULL,
        integration_name TEXT NOT NULL,
        integration_type TEXT NOT NULL,
        action           TEXT NOT NULL,
        reason           TEXT,
        before_json      TEXT,
        after_json       TEXT
    );
    CREATE INDEX audit_integration ON audit (integration_id, at);
    CREATE INDEX audit_actor ON audit (actor_id, at);
    CREATE TABLE room_cursors (
        room_id   TEXT PRIMARY KEY,
        last_seen REAL NOT NULL
    );
    """,
    # 2: write intents: an integration write about to be sent for a command, so a restart after a
    # crash mid-write can tell whether it landed (bot.runtime.journal) instead of applying it twice
    """
    CREATE TABLE write_intents (
        message_id     TEXT NOT NULL,
        integration_id TEXT NOT NULL,
        at             REAL NOT NULL,
        before_json    TEXT NOT NULL,
        intended_json  TEXT NOT NULL,
        PRIMARY KEY (message_id, integration_id)
    );
    """,
    # 3: timed disables (bot/state/timer_store.py, lifecycle in bot/state/timer_states.py); audit rows say until
    # when a timed disable runs and which row an undo reverted
    """
    CREATE TABLE timers (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        revision            INTEGER NOT NULL DEFAULT 0,
        state               TEXT NOT NULL
                            CHECK (state IN ('scheduled', 'active', 'expired', 'cancelled', 'overridden', 'failed')),
        integration_id      TEXT NOT NULL,
        integration_name    TEXT NOT NULL,
        integration_type    TEXT NOT NULL,
        created_at          REAL NOT NULL,
        due_at              REAL NOT NULL,
        actor_id            TEXT NOT NULL,
        actor_username      TEXT NOT NULL,
        reason              TEXT,
        room_id             TEXT,
        thread_id           TEXT,
        message_id          TEXT,
        audit_id            INTEGER,
        disabled_updated_at TEXT,
        disabled_json       TEXT,
        ended_at            REAL,
        end_note            TEXT
    );
    CREATE UNIQUE INDEX timers_one_pending ON timers (integration_id) WHERE state IN ('scheduled', 'active');
    CREATE INDEX timers_state_due ON timers (state, due_at);
    ALTER TABLE audit ADD COLUMN until_at REAL;
    ALTER TABLE audit ADD COLUMN undoes INTEGER;
    CREATE INDEX audit_at ON audit (at)
    """,
    # 4: the audit row of a command is found by its message id (each new row checks that its
    # command has none yet, bot.runtime.journal); through audit_integration that was a scan of every row
    # of that integration, which grows with every change made to it
    """
    CREATE INDEX audit_message ON audit (message_id)
    """,
    # 5: secrets the bot makes for itself; the first is the key of its message ids
    # (bot/rocketchat/message_ids.py), made right after the migrations by `_ensure_message_id_key`
    """
    CREATE TABLE secrets (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    )
    """,
    # 6: several processes (the PostgreSQL backend starts here, bot/state/postgres.py): a claim
    # names its owner and a lease the owner renews while the command runs; one audit row per
    # command, integration and action is a unique index (it was a check before each insert); `set`
    # previews waiting for their `yes` live here, so any process can confirm them
    """
    ALTER TABLE processed_messages ADD COLUMN owner TEXT;
    ALTER TABLE processed_messages ADD COLUMN lease_until REAL;
    CREATE INDEX processed_messages_unfinished ON processed_messages (lease_until) WHERE status = 'claimed';
    CREATE UNIQUE INDEX audit_once ON audit (message_id, integration_id, action) WHERE message_id IS NOT NULL;
    CREATE TABLE confirmations (
        code           TEXT PRIMARY KEY,
        user_id        TEXT NOT NULL,
        room_id        TEXT NOT NULL,
        integration_id TEXT NOT NULL,
        snapshot_json  TEXT NOT NULL,
        updates_json   TEXT NOT NULL,
        created_at     REAL NOT NULL,
        expires_at     REAL NOT NULL,
        status         TEXT NOT NULL CHECK (status IN ('waiting', 'applying', 'applied')),
        applied_at     REAL
    );
    CREATE INDEX confirmations_caller ON confirmations (user_id, created_at)
    """,
    # 7: what the bot last wrote to each integration (used by several replicas on PostgreSQL to
    # trust a read made before the integration's lock; kept alike here, unused by one process)
    # and the document a command's write was verified as, so a command interrupted after it is
    # known to have written even once the integration has changed again (bot/runtime/journal.py)
    """
    CREATE TABLE integration_writes (
        integration_id TEXT PRIMARY KEY,
        pending        INTEGER NOT NULL,
        updated_at     TEXT
    );
    ALTER TABLE write_intents ADD COLUMN verified_json TEXT
    """,
    # 8: bulk disables (`disable all in #room`, `disable all matching "x*"`; bot/state/group_store.py):
    # one row per command, its members' timers and audit rows point at it
    """
    CREATE TABLE bulk_groups (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at     REAL NOT NULL,
        actor_id       TEXT NOT NULL,
        actor_username TEXT NOT NULL,
        selector       TEXT NOT NULL,
        target_room_id TEXT,
        glob           TEXT,
        kind           TEXT,
        reason         TEXT,
        due_at         REAL,
        room_id        TEXT,
        thread_id      TEXT,
        message_id     TEXT NOT NULL
    );
    CREATE UNIQUE INDEX bulk_groups_message ON bulk_groups (message_id);
    CREATE INDEX bulk_groups_actor ON bulk_groups (actor_id, created_at);
    ALTER TABLE timers ADD COLUMN group_id INTEGER;
    CREATE INDEX timers_group ON timers (group_id) WHERE group_id IS NOT NULL;
    ALTER TABLE audit ADD COLUMN group_id INTEGER;
    CREATE INDEX audit_group ON audit (group_id) WHERE group_id IS NOT NULL
    """,
    # 9: the flood guard's notices and quiet periods, one row per integration and room
    # (bot/state/flood_store.py): whoever moves `quiet_until` on posts the one notice
    """
    CREATE TABLE flood_notices (
        integration_id TEXT NOT NULL,
        room_id        TEXT NOT NULL,
        noticed_at     REAL,
        quiet_until    REAL NOT NULL,
        quieted_by     TEXT,
        PRIMARY KEY (integration_id, room_id)
    );
    CREATE INDEX flood_notices_quiet ON flood_notices (quiet_until)
    """,
    # 10: which commands extended (or re-timed) a timed disable, and the end each one set, written
    # in the same UPDATE as the new end (bot/state/timer_store.py): a command resumed after a crash
    # between that UPDATE and its audit row finds its extension there and does not extend again
    """
    ALTER TABLE timers ADD COLUMN extensions_json TEXT
    """,
    # 11: the replicas running on a shared database, each with when it last said so
    # (bot/runtime/homes.py); a file is one process's, so this table stays empty here, and both
    # backends keep one numbering of versions
    """
    CREATE TABLE replicas (
        owner   TEXT PRIMARY KEY,
        seen_at REAL NOT NULL
    )
    """,
    # 12: the text of the command a write intent is for, as the bot accepted it, and its author's
    # user id (bot/runtime/journal.py): a command whose write landed before a crash, and whose
    # message was edited before the restart looked at it, is answered (and audited) from what it
    # said when it ran; a message another user posted since with its id (once it was deleted) is
    # not that command (bot/runtime/recovery.py). Empty in the rows of older releases.
    """
    ALTER TABLE write_intents ADD COLUMN command_text TEXT;
    ALTER TABLE write_intents ADD COLUMN command_author TEXT
    """,
    # 13: what a command said and who said it (JSON: text, user id, username, thread id), kept on
    # its claim while it is unfinished and dropped when it is closed (bot/state/store.py
    # `ClaimedCommand`): the recovery of a command killed mid-way knows it although its message was
    # edited or deleted since, also when it stored no write intent (`extend`)
    """
    ALTER TABLE processed_messages ADD COLUMN command_json TEXT
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteDatabase:
    """One SQLite file (see the module docstring). Open with `SqliteDatabase.open(path)`."""

    kind = "sqlite"
    shared = False
    greatest = "MAX"
    skip_locked = ""
    started_at = "0"
    uptime = "1e15"

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._locks = LocalIntegrationLocks()

    @classmethod
    def open(cls, path: str | Path) -> SqliteDatabase:
        target = Path(path)
        try:
            if str(target) != ":memory:":
                target.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level=None): each statement is its own transaction unless a
            # BEGIN opens one. Used only from the loop's thread; not checked per call, so a test may
            # open the store in one event loop and use it from another on the same thread.
            connection = sqlite3.connect(str(target), isolation_level=None, check_same_thread=False)
        except Exception as exc:  # sqlite3.Error, OSError: translate at the boundary
            raise ConfigError(f"BOT_STATE_DB: cannot open {target}: {exc}") from None
        database = cls(connection, target)
        try:
            database._prepare()
        except Exception:
            connection.close()
            raise
        return database

    @property
    def locks(self) -> IntegrationLocks:
        return self._locks

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection (for tests that look at the file as it is)."""
        return self._db

    def describe(self) -> str:
        return f"SQLite file {self.path.resolve() if str(self.path) != ':memory:' else ':memory:'}"

    def _prepare(self) -> None:
        # WAL with synchronous=NORMAL: a commit is a write to the WAL file, without an fsync. A
        # committed claim, intent or audit row survives the process being killed (kill -9, OOM,
        # a crash: the data is in the OS's page cache), which is the failure this file guards
        # against; only an OS crash or power loss can lose the last commits (never corrupt).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._version()
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"BOT_STATE_DB: {self.path} has schema version {version}, newer than this release "
                f"supports ({SCHEMA_VERSION}); use a newer integrations-bot or another file"
            )
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._run_script(MIGRATIONS[number])
                self._db.execute(f"PRAGMA user_version={number + 1}")
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise

    def _run_script(self, script: str) -> None:
        # executescript() would COMMIT first; run the statements one by one inside our transaction.
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                self._db.execute(statement)

    def _version(self) -> int:
        row = self._db.execute("PRAGMA user_version").fetchone()
        return int(row[0]) if row else 0

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self._db.execute(sql, params).fetchall()]

    async def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        return [changed for _rows, changed in await self.batch_rows(statements)]

    async def batch_rows(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        return self._each(statements)

    async def atomic_rows(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            done = self._each(statements)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return done

    def _each(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        done: list[tuple[list[Row], int]] = []
        for sql, params in statements:
            cursor = self._db.execute(sql, params)
            rows = [tuple(row) for row in cursor.fetchall()] if cursor.description is not None else []
            done.append((rows, cursor.rowcount))
        return done

    async def schema_version(self) -> int:
        return self._version()

    async def ping(self) -> None:
        self._db.execute("SELECT 1").fetchall()

    async def close(self) -> None:
        self._db.close()


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteDatabase"]
