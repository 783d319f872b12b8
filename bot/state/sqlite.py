"""The bot's durable state in one SQLite file (`BOT_STATE_DB`), through the standard `sqlite3`.

What lives here, and why it must survive restarts and `kill -9`:
- processed message ids: a command is claimed before it runs, so neither a stream re-delivery,
  a reconnect nor a restart runs it twice;
- the audit trail: every change made through the bot, with the full document before and after,
  so `history` and `undo` work and the audit room can be re-fed;
- per-room cursors: the newest message time seen per room, so missed commands can be caught up;
- write intents: a change about to be written for a command, so a crash mid-write is resolved
  on restart without applying it twice;
- timed disables (`bot/state/timer_store.py` owns that table): what to turn back on, when, and the
  document the bot's disable produced, so a restart re-arms them and a manual change is noticed;
- the key of the bot's message ids (`secrets`, bot/rocketchat/message_ids.py): made when the file is first
  opened and kept, so an answer re-sent after a restart has the same id and is stored once. The
  bot derives it from its own secret credential (`key_seed`), so a new file (the old one lost)
  gets the same key and a restart still recognises the answers already in the rooms; without a
  seed it is random. Whoever reads the file can compute the ids; keep it private (like the
  bot's credentials).

Schema changes are numbered migrations recorded in `PRAGMA user_version`; an older file is
upgraded in order when opened, a newer one (from a later release) is refused with a clear error.
WAL journaling keeps readers and the single writer out of each other's way; every write is its
own committed transaction, so a killed process loses at most the statement in flight.

Statements run on the event loop's own thread, not in a worker thread (aiosqlite): every statement
here is a point lookup or a one-row write that SQLite finishes in 10–200 µs, and handing it to a
thread and back cost more than that (~0.15 ms per statement when idle, several times that under
load, where the worker thread and the loop fight over the GIL; measured with `make bench`: a
quarter of the bot's CPU in a burst of commands was that thread). The methods stay `async` so
callers do not depend on where the work happens. A statement with RETURNING is complete
only once its rows are fetched: always `.fetchall()` it. The price: a write waits for another process's
write lock (up to `busy_timeout`) with the loop blocked; only one bot may use a state file, and
readers (`history` by hand, `sqlite3` on the file) never block it under WAL.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.rocketchat.message_ids import KEY_BYTES, MessageIds, derive_key

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
)
MESSAGE_ID_KEY = "message-ids"
SCHEMA_VERSION = len(MIGRATIONS)
# Messages claimed by one statement (4 parameters each, well below SQLite's 32,766).
CLAIM_BATCH = 500


def read_message_ids(path: str | Path) -> MessageIds:
    """The message ids of the bot whose state file is `path`, read without changing the file: for
    tools beside a running bot (the end-to-end tests, the benchmark) that look for its answers.
    Raises ConfigError when the file does not exist or has no key yet (the bot has not opened it)."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (MESSAGE_ID_KEY,)).fetchone()
    except sqlite3.Error as exc:
        raise ConfigError(f"BOT_STATE_DB: cannot read the message id key of {path}: {exc}") from None
    if row is None:
        raise ConfigError(f"BOT_STATE_DB: {path} has no message id key yet")
    return MessageIds(bytes(row[0]))


def _ts(when: datetime) -> float:
    return when.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class AuditRecord:
    """One change made through the bot. `before`/`after` are full integration documents."""

    at: datetime
    actor_id: str
    actor_username: str
    integration_id: str
    integration_name: str
    integration_type: str
    action: str
    room_id: str | None = None
    message_id: str | None = None
    reason: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    id: int | None = None
    # A timed disable (or its extension): when the bot turns the integration back on.
    until: datetime | None = None
    # An undo: the id of the audit row it reverted.
    undoes: int | None = None


@dataclass(frozen=True)
class WriteIntent:
    """An integration write a command was about to send: the document read and the one intended."""

    message_id: str
    integration_id: str
    at: datetime
    before: dict[str, Any]
    intended: dict[str, Any]


class StateStore:
    """The state file, behind async methods (see the module docstring for why the statements
    themselves run synchronously). Open with `await StateStore.open(path)`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._message_ids: MessageIds | None = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection, for the stores of single tables kept in their own modules
        (`bot/state/timer_store.py`); they share this file, its migrations and its transactions."""
        return self._db

    @classmethod
    async def open(cls, path: str | Path, *, key_seed: bytes | None = None) -> StateStore:
        """Open (or create) the file. `key_seed`, a secret of the bot's (its token or password),
        is what a new file's message-id key is derived from; None makes a random one."""
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
        store = cls(connection, target)
        try:
            store._prepare(key_seed)
        except Exception:
            connection.close()
            raise
        return store

    def _prepare(self, key_seed: bytes | None) -> None:
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
        self._message_ids = MessageIds(self._ensure_message_id_key(key_seed))

    def _ensure_message_id_key(self, seed: bytes | None) -> bytes:
        select = "SELECT value FROM secrets WHERE name = ?"
        row = self._db.execute(select, (MESSAGE_ID_KEY,)).fetchone()
        if row is None:
            # INSERT OR IGNORE, then read again: of two processes opening a new file at once, the
            # first makes the key and both use it.
            self._db.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
                (MESSAGE_ID_KEY, derive_key(seed) if seed else secrets.token_bytes(KEY_BYTES)),
            )
            row = self._db.execute(select, (MESSAGE_ID_KEY,)).fetchone()
        return bytes(row[0])

    @property
    def message_ids(self) -> MessageIds:
        """The ids of the bot's messages, under this file's key (bot/rocketchat/message_ids.py)."""
        assert self._message_ids is not None, "opened with StateStore.open"
        return self._message_ids

    def _run_script(self, script: str) -> None:
        # executescript() would COMMIT first; run the statements one by one inside our transaction.
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                self._db.execute(statement)

    async def schema_version(self) -> int:
        return self._version()

    def _version(self) -> int:
        row = self._db.execute("PRAGMA user_version").fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        self._db.close()

    # --- processed messages --------------------------------------------------------------------

    async def claim_message(self, message_id: str, room_id: str, message_ts: datetime, now: datetime) -> bool:
        """Atomically mark a message as taken. False if it was seen before (re-delivery, restart)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO processed_messages (message_id, room_id, message_ts, claimed_at, status)"
            " VALUES (?, ?, ?, ?, 'claimed')",
            (message_id, room_id, _ts(message_ts), _ts(now)),
        )
        return cursor.rowcount == 1

    async def claim_messages(self, claims: Sequence[tuple[str, str, datetime]], now: datetime) -> set[str]:
        """`claim_message` for many (message id, room id, message ts) at once: one statement and
        one commit per `CLAIM_BATCH`, so a burst of commands is not claimed one commit at a time.
        Returns the ids newly claimed; an id listed twice is claimed (and returned) once."""
        taken: set[str] = set()
        for start in range(0, len(claims), CLAIM_BATCH):
            chunk = claims[start : start + CLAIM_BATCH]
            rows_sql = ", ".join(["(?, ?, ?, ?, 'claimed')"] * len(chunk))
            rows = self._db.execute(
                "INSERT OR IGNORE INTO processed_messages (message_id, room_id, message_ts, claimed_at, status)"  # noqa: S608
                f" VALUES {rows_sql} RETURNING message_id",
                [value for message_id, room_id, ts in chunk for value in (message_id, room_id, _ts(ts), _ts(now))],
            ).fetchall()
            taken.update(str(row[0]) for row in rows)
        return taken

    async def finish_message(self, message_id: str, outcome: str, *, ignored: bool = False) -> None:
        self._db.execute(
            "UPDATE processed_messages SET status = ?, outcome = ? WHERE message_id = ?",
            ("ignored" if ignored else "done", outcome, message_id),
        )

    async def message_status(self, message_id: str) -> str | None:
        row = self._db.execute("SELECT status FROM processed_messages WHERE message_id = ?", (message_id,)).fetchone()
        return str(row[0]) if row else None

    async def unfinished_messages(self) -> list[str]:
        """Claimed but never finished: the process died while running them."""
        rows = self._db.execute(
            "SELECT message_id FROM processed_messages WHERE status = 'claimed' ORDER BY claimed_at"
        ).fetchall()
        return [str(row[0]) for row in rows]

    async def prune_messages(self, older_than: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM processed_messages WHERE claimed_at < ? AND status != 'claimed'", (_ts(older_than),)
        )
        return cursor.rowcount

    # --- room cursors --------------------------------------------------------------------------

    async def advance_cursor(self, room_id: str, seen: datetime) -> None:
        self._db.execute(
            "INSERT INTO room_cursors (room_id, last_seen) VALUES (?, ?)"
            " ON CONFLICT (room_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
            (room_id, _ts(seen)),
        )

    async def cursors(self) -> dict[str, datetime]:
        rows = self._db.execute("SELECT room_id, last_seen FROM room_cursors").fetchall()
        return {str(room): _dt(float(seen)) for room, seen in rows}

    # --- write intents (bot.runtime.journal) ----------------------------------------------------------

    async def record_intent(self, intent: WriteIntent) -> None:
        """Remember a write before it is sent (replacing an earlier attempt's for the same pair)."""
        self._db.execute(
            "INSERT OR REPLACE INTO write_intents (message_id, integration_id, at, before_json, intended_json)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                intent.message_id,
                intent.integration_id,
                _ts(intent.at),
                json.dumps(intent.before),
                json.dumps(intent.intended),
            ),
        )

    async def intents(self, message_id: str) -> list[WriteIntent]:
        rows = self._db.execute(
            "SELECT message_id, integration_id, at, before_json, intended_json FROM write_intents"
            " WHERE message_id = ? ORDER BY at",
            (message_id,),
        ).fetchall()
        return [
            WriteIntent(str(row[0]), str(row[1]), _dt(float(row[2])), json.loads(row[3]), json.loads(row[4]))
            for row in rows
        ]

    async def clear_intents(self, message_id: str) -> None:
        self._db.execute("DELETE FROM write_intents WHERE message_id = ?", (message_id,))

    async def prune_intents(self) -> int:
        """Drop intents whose command is no longer unfinished (finished, or its claim pruned)."""
        cursor = self._db.execute(
            "DELETE FROM write_intents WHERE message_id NOT IN"
            " (SELECT message_id FROM processed_messages WHERE status = 'claimed')"
        )
        return cursor.rowcount

    # --- audit ---------------------------------------------------------------------------------

    async def record(self, record: AuditRecord) -> int:
        """Append an audit row; returns its id. Idempotent per command: a command resumed after a
        crash (bot.runtime.journal) that records the same action on the same integration again gets the
        existing row's id instead of a second row."""
        # One statement (one commit), on every command's path.
        existing = "SELECT id FROM audit WHERE message_id = ? AND integration_id = ? AND action = ?"
        key = (record.message_id, record.integration_id, record.action)
        unless = f" WHERE NOT EXISTS ({existing})" if record.message_id is not None else ""
        rows = self._db.execute(
            "INSERT INTO audit (at, actor_id, actor_username, room_id, message_id, integration_id,"
            " integration_name, integration_type, action, reason, before_json, after_json, until_at, undoes)"
            f" SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?{unless} RETURNING id",
            (
                _ts(record.at),
                record.actor_id,
                record.actor_username,
                record.room_id,
                record.message_id,
                record.integration_id,
                record.integration_name,
                record.integration_type,
                record.action,
                record.reason,
                json.dumps(record.before) if record.before is not None else None,
                json.dumps(record.after) if record.after is not None else None,
                _ts(record.until) if record.until is not None else None,
                record.undoes,
                *(key if unless else ()),
            ),
        ).fetchall()
        if not rows:  # this command recorded it already (resumed after a crash): that row's id
            rows = self._db.execute(existing + " LIMIT 1", key).fetchall()
        return int(next(iter(rows))[0])

    async def recorded(self, message_id: str) -> bool:
        """Whether the command `message_id` has an audit row (an index lookup, migration 4)."""
        row = self._db.execute("SELECT 1 FROM audit WHERE message_id = ? LIMIT 1", (message_id,)).fetchone()
        return row is not None

    async def history(
        self,
        *,
        limit: int = 20,
        integration_ids: Sequence[str] | None = None,
        actor_id: str | None = None,
    ) -> list[AuditRecord]:
        """Newest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if integration_ids is not None:
            if not integration_ids:
                return []
            clauses.append(f"integration_id IN ({', '.join('?' for _ in integration_ids)})")
            params.extend(integration_ids)
        if actor_id is not None:
            clauses.append("actor_id = ?")
            params.append(actor_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT id, at, actor_id, actor_username, room_id, message_id, integration_id, integration_name,"  # noqa: S608
            f" integration_type, action, reason, before_json, after_json, until_at, undoes FROM audit{where}"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [
            AuditRecord(
                id=int(row[0]),
                at=_dt(float(row[1])),
                actor_id=str(row[2]),
                actor_username=str(row[3]),
                room_id=row[4],
                message_id=row[5],
                integration_id=str(row[6]),
                integration_name=str(row[7]),
                integration_type=str(row[8]),
                action=str(row[9]),
                reason=row[10],
                before=json.loads(row[11]) if row[11] else None,
                after=json.loads(row[12]) if row[12] else None,
                until=_dt(float(row[13])) if row[13] is not None else None,
                undoes=int(row[14]) if row[14] is not None else None,
            )
            for row in rows
        ]
