"""The bot's durable state, behind one class (`StateStore`) over a storage backend
(`bot/state/database.py`): a SQLite file for one process, or a PostgreSQL shared by replicas.

What lives here, and why it must survive restarts and `kill -9`:
- processed message ids: a command is claimed before it runs, so neither a stream re-delivery,
  a reconnect, a restart nor another replica runs it twice. A claim names its owner (the process
  that runs it) and a lease the owner renews while it runs (`renew_claims`); a claim whose lease
  ran out belongs to a process that died, and another takes it over (`take_over`) and decides,
  with the write journal, whether the command's write landed (bot/runtime/recovery.py);
- the audit trail: every change made through the bot, with the full document before and after,
  so `history` and `undo` work and the audit room can be re-fed;
- per-room cursors: the newest message time seen per room, so missed commands can be caught up;
- write intents: a change about to be written for a command, so a crash mid-write is resolved
  on restart without applying it twice (with the command's text, so that one whose message was
  edited before the restart is still answered and audited for what it said when it ran, and its
  author, so that another user's message posted since with its id is not taken for it);
- timed disables (`bot/state/timer_store.py` owns that table): what to turn back on, when, and the
  document the bot's disable produced, so a restart re-arms them and a manual change is noticed;
- the key of the bot's message ids (`secrets`, bot/rocketchat/message_ids.py): made when the store
  is first opened and kept, so an answer re-sent after a restart (or by another replica) has the
  same id and is stored once. The bot derives it from its own secret credential (`key_seed`), so
  a new store (the old one lost) gets the same key and a restart still recognises the answers
  already in the rooms; without a seed it is random. Whoever reads the store can compute the
  ids; keep it private (like the bot's credentials).

Times are stored as seconds since the epoch (float) on both backends; leases compare the
processes' own clocks, so keep the hosts' clocks synchronised (NTP), as staleness already needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bot.errors import ConfigError
from bot.integrations.locks import Held, IntegrationLocks
from bot.rocketchat.message_ids import KEY_BYTES, MessageIds, derive_key
from bot.state.confirmations import ConfirmationStore
from bot.state.database import Database, Row
from bot.state.database import read_time as _dt
from bot.state.database import stored_time as _ts
from bot.state.flood_store import FloodStore
from bot.state.group_store import GroupStore
from bot.state.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteDatabase
from bot.state.timer_states import TimedDisable, TimerEvent
from bot.state.timer_store import TimerStore, made_by, timer_of

MESSAGE_ID_KEY: Final = "message-ids"
# Messages claimed by one statement (4 parameters each, well below both backends' limits).
CLAIM_BATCH: Final = 500
# How long a claim stays its owner's without being renewed (the owner renews it every third of it).
DEFAULT_LEASE: Final = timedelta(seconds=30)
# Claims taken over by one statement.
TAKEOVER_BATCH: Final = 100


def read_message_ids(where: str | Path) -> MessageIds:
    """The message ids of the bot whose state is `where` (a SQLite file, or a PostgreSQL URL), read
    without changing anything: for tools beside a running bot (the end-to-end tests, the
    benchmark) that look for its answers. Raises ConfigError when the store has no key yet."""
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        from bot.state.postgres import read_key

        return MessageIds(read_key(where, MESSAGE_ID_KEY))
    uri = Path(where).resolve().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (MESSAGE_ID_KEY,)).fetchone()
    except sqlite3.Error as exc:
        raise ConfigError(f"BOT_STATE_DB: cannot read the message id key of {where}: {exc}") from None
    if row is None:
        raise ConfigError(f"BOT_STATE_DB: {where} has no message id key yet")
    return MessageIds(bytes(row[0]))


def replica_name() -> str:
    """This process's name as a claim's owner: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


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
    # A member's change in a bulk disable (bot/state/group_store.py).
    group_id: int | None = None


@dataclass(frozen=True)
class WriteIntent:
    """An integration write a command was about to send: the document read and the one intended."""

    message_id: str
    integration_id: str
    at: datetime
    before: dict[str, Any]
    intended: dict[str, Any]
    # The document the write was verified as (None until then): it landed, whatever came after.
    verified: dict[str, Any] | None = None
    # The command's text as the bot accepted it (None in rows of older releases): what a command
    # whose message was edited before its recovery said when it ran (bot/runtime/recovery.py).
    text: str | None = None
    # The user id of the command's author (None in rows of older releases): a message at its id
    # by anyone else (posted once it was deleted) is not that command (bot/runtime/recovery.py).
    author: str | None = None


@dataclass(frozen=True)
class ClaimedCommand:
    """What a command said, and who said it, as the bot claimed it: kept on its claim while it is
    unfinished (dropped when it is closed), so the recovery of a command killed mid-way knows it
    although its message was edited or deleted since, or another user posted at its id
    (bot/runtime/recovery.py), also for a command that stored no write intent (`extend`)."""

    text: str
    author_id: str
    author_username: str
    thread_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"text": self.text, "user_id": self.author_id, "username": self.author_username, "tmid": self.thread_id}
        )

    @classmethod
    def of_json(cls, value: Any) -> ClaimedCommand | None:
        """None for an empty column (a claim of an older release, or closed) or an unreadable one."""
        if not value:
            return None
        try:
            found = json.loads(value)
            text, user_id, username, tmid = found["text"], found["user_id"], found["username"], found.get("tmid")
        except (ValueError, TypeError, KeyError):
            return None
        if not (isinstance(text, str) and isinstance(user_id, str) and user_id and isinstance(username, str)):
            return None
        return cls(text, user_id, username, tmid if isinstance(tmid, str) and tmid else None)


_AUDIT_COLUMNS: Final = (
    "id, at, actor_id, actor_username, room_id, message_id, integration_id, integration_name,"
    " integration_type, action, reason, before_json, after_json, until_at, undoes, group_id"
)


# A command's write intent not verified stands for "a write may have landed unrecorded" to every
# holder of the integration's lock (bot/state/postgres.py, `SharedIntegrationLocks`); when the
# intent is dropped (its command closed), that trace moves to the integration's `pending` mark,
# which only a later verified write clears. (An intent whose write was never sent costs one
# re-read of that integration, once.)
_PENDING_FROM_INTENTS: Final = (
    "INSERT INTO integration_writes (integration_id, pending)"
    " SELECT DISTINCT integration_id, true FROM write_intents WHERE verified_json IS NULL"
)
_UPSERT_PENDING: Final = " ON CONFLICT (integration_id) DO UPDATE SET pending = true"
# The command (`message_id = ?`) is still claimed by this process (`owner = ?`): not taken over.
_CLAIM_IS_MINE: Final = (
    " EXISTS (SELECT 1 FROM processed_messages WHERE message_id = ? AND owner = ? AND status = 'claimed')"
)
# A write intent, stored only while the command's claim is this process's (`record_intent`).
_RECORD_INTENT: Final = (
    "INSERT INTO write_intents"
    " (message_id, integration_id, at, before_json, intended_json, command_text, command_author)"
    " SELECT ?, ?, ?, ?, ?, ?, ? WHERE" + _CLAIM_IS_MINE + " ON CONFLICT (message_id, integration_id) DO UPDATE SET"
    " at = excluded.at, before_json = excluded.before_json, intended_json = excluded.intended_json,"
    " verified_json = NULL, command_text = excluded.command_text, command_author = excluded.command_author"
)
# An intent whose write was never sent, dropped while the claim is this process's (`drop_intent`).
_DROP_UNSENT_INTENT: Final = (
    "DELETE FROM write_intents WHERE message_id = ? AND integration_id = ? AND verified_json IS NULL"  # noqa: S608 (constants)
    " AND" + _CLAIM_IS_MINE
)


def _audit_insert(record: AuditRecord, only_if: tuple[str, Sequence[Any]] | None = None) -> tuple[str, Sequence[Any]]:
    """The statement appending `record` (`StateStore.record`): its id, or no row if this command
    recorded the same action on the same integration already. `only_if`: an SQL condition (with
    its parameters) without which nothing is appended either."""
    values = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    condition: Sequence[Any] = ()
    if only_if is not None:
        values = f"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE {only_if[0]}"
        condition = only_if[1]
    return (
        "INSERT INTO audit (at, actor_id, actor_username, room_id, message_id, integration_id,"
        " integration_name, integration_type, action, reason, before_json, after_json, until_at, undoes,"
        f" group_id) {values} ON CONFLICT DO NOTHING RETURNING id",
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
            record.group_id,
            *condition,
        ),
    )


class StateStore:
    """The state, behind async methods. Open with `await StateStore.open(path)` (SQLite) or
    `await StateStore.connect(url)` (PostgreSQL)."""

    def __init__(self, database: Database, *, owner: str | None = None, lease: timedelta = DEFAULT_LEASE) -> None:
        self.database = database
        self.owner = owner if owner is not None else replica_name()
        self.lease = lease
        # The database server's clock (seconds since the epoch) at the last `replicas` look, on a
        # shared database: leases are stored on the replicas' own clocks (`claim_messages`).
        self.database_clock: float | None = None
        self.timers = TimerStore(database)
        self.confirmations = ConfirmationStore(database)
        self.floods = FloodStore(database)
        self.groups = GroupStore(database)
        self._message_ids: MessageIds | None = None
        # When the database server last started (seconds since the epoch), as the last claim saw it.
        self.server_started = 0.0

    @classmethod
    async def open(cls, path: str | Path, *, key_seed: bytes | None = None, **options: Any) -> StateStore:
        """Open (or create) a SQLite file. `key_seed`, a secret of the bot's (its token or
        password), is what a new store's message-id key is derived from; None makes a random one."""
        database = SqliteDatabase.open(path)
        return await cls._ready(database, key_seed, **options)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        key_seed: bytes | None = None,
        connect_timeout: float = 10.0,
        prepare: bool = True,
        lock_timeout: float | None = None,
        **options: Any,
    ) -> StateStore:
        """Connect to a PostgreSQL database (migrating it once, whoever starts first). `prepare`:
        whether the driver may prepare the statements it runs often (`BOT_STATE_PREPARE`).
        `lock_timeout`: how long a statement waits for a row another transaction holds
        (`bot/state/postgres.py`, `LOCK_TIMEOUT` unless given)."""
        from bot.state.postgres import LOCK_TIMEOUT, PostgresDatabase

        database = await PostgresDatabase.open(
            url,
            connect_timeout=connect_timeout,
            prepare=prepare,
            lock_timeout=LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
        )
        return await cls._ready(database, key_seed, **options)

    @classmethod
    async def _ready(cls, database: Database, key_seed: bytes | None, **options: Any) -> StateStore:
        store = cls(database, **options)
        try:
            store._message_ids = MessageIds(await store._ensure_message_id_key(key_seed))
        except BaseException:
            await database.close()
            raise
        return store

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return self.database.path if isinstance(self.database, SqliteDatabase) else None

    @property
    def locks(self) -> IntegrationLocks:
        return self.database.locks

    @property
    def shared(self) -> bool:
        return self.database.shared

    def describe(self) -> str:
        return self.database.describe()

    async def _ensure_message_id_key(self, seed: bytes | None) -> bytes:
        select = "SELECT value FROM secrets WHERE name = ?"
        rows = await self.database.rows(select, (MESSAGE_ID_KEY,))
        if not rows:
            # Insert unless present, then read again: of two processes opening a new store at
            # once, the first makes the key and both use it.
            await self.database.count(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (MESSAGE_ID_KEY, derive_key(seed) if seed else secrets.token_bytes(KEY_BYTES)),
            )
            rows = await self.database.rows(select, (MESSAGE_ID_KEY,))
        return bytes(rows[0][0])

    @property
    def message_ids(self) -> MessageIds:
        """The ids of the bot's messages, under this store's key (bot/rocketchat/message_ids.py)."""
        assert self._message_ids is not None, "opened with StateStore.open or StateStore.connect"
        return self._message_ids

    async def schema_version(self) -> int:
        return await self.database.schema_version()

    async def ping(self) -> None:
        await self.database.ping()

    async def close(self) -> None:
        await self.database.close()

    # --- processed messages --------------------------------------------------------------------

    async def claim_message(self, message_id: str, room_id: str, message_ts: datetime, now: datetime) -> bool:
        """Atomically mark a message as taken. False if it was seen before (re-delivery, restart,
        another replica)."""
        return message_id in await self.claim_messages([(message_id, room_id, message_ts)], now)

    async def claim_messages(
        self,
        claims: Sequence[tuple[str, str, datetime]],
        now: datetime,
        *,
        tried: Mapping[str, Collection[datetime]] | None = None,
        commands: Mapping[str, ClaimedCommand] | None = None,
    ) -> set[str]:
        """`claim_message` for many (message id, room id, message ts) at once: one statement and
        one commit per `CLAIM_BATCH`, so a burst of commands is not claimed one commit at a time.
        Returns the ids newly claimed (by this process, under a lease from `now`); an id listed
        twice is claimed (and returned) once. Notes when the database server last started
        (`server_started`): a command posted before that may have been answered "not run" by a
        replica whose claim failed while the database was away.
        `tried`: for a command, the moments (their `now`) of its own earlier tries that failed. One
        may have committed with its reply lost (the connection broke right then): a command claimed
        by this process at one of its own moments, unfinished, is returned too, or it would wait
        for its lease to run out, taken for another process's. A claim of it made at any other
        moment is not its tries': one of an earlier delivery, running here already (a re-delivery
        whose claim failed while it runs is not returned), or one taken over since (the recovery
        decides it).
        `commands`: what each command said and who said it, kept on its claim (`claimed_command`)."""
        taken: set[str] = set()
        lease_until = _ts(now + self.lease)
        said = commands or {}
        for start in range(0, len(claims), CLAIM_BATCH):
            chunk = claims[start : start + CLAIM_BATCH]
            rows_sql = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            # Those claimed already (as this statement's snapshot shows them) are left out before the
            # insert: its conflict check would wait for any transaction open on their row, such as
            # the close of a replica stopped between the statements of its pipeline (`finish_message`),
            # for as long as that one stays stopped, and this replica's intake with it.
            rows = await self.database.rows(
                "WITH wanted (message_id, room_id, message_ts, claimed_at, owner, lease_until, command_json)"  # noqa: S608
                f" AS (VALUES {rows_sql})"
                " INSERT INTO processed_messages"
                " (message_id, room_id, message_ts, claimed_at, status, owner, lease_until, command_json)"
                " SELECT message_id, room_id, message_ts, claimed_at, 'claimed', owner, lease_until, command_json"
                " FROM wanted"
                " WHERE NOT EXISTS (SELECT 1 FROM processed_messages AS seen WHERE seen.message_id = wanted.message_id)"
                f" ON CONFLICT DO NOTHING RETURNING message_id, {self.database.started_at}",
                [
                    value
                    for message_id, room_id, ts in chunk
                    for value in (
                        message_id,
                        room_id,
                        _ts(ts),
                        _ts(now),
                        self.owner,
                        lease_until,
                        said[message_id].to_json() if message_id in said else None,
                    )
                ],
            )
            taken.update(str(row[0]) for row in rows)
            self.server_started = max([self.server_started, *(float(row[1]) for row in rows)])
            if tried:
                taken.update(await self._claimed_at(tried, [m for m, _, _ in chunk if tried.get(m)]))
        return taken

    async def _claimed_at(self, tried: Mapping[str, Collection[datetime]], message_ids: Sequence[str]) -> set[str]:
        """Those of `message_ids` this process claimed at one of their own `tried` moments and has
        not finished (the moments are compared here: the statement's size does not grow with them)."""
        if not message_ids:
            return set()
        rows = await self.database.rows(
            "SELECT message_id, claimed_at FROM processed_messages WHERE owner = ? AND status = 'claimed'"  # noqa: S608
            f" AND message_id IN ({', '.join('?' * len(message_ids))})",
            (self.owner, *message_ids),
        )
        return {
            str(message_id)
            for message_id, claimed_at in rows
            if float(claimed_at) in {_ts(moment) for moment in tried.get(str(message_id), ())}
        }

    async def renew_claims(self, now: datetime, message_ids: Collection[str]) -> int:
        """Extend the lease of those of `message_ids` that are unfinished claims of this process
        (its commands still running or waiting: called every third of the lease). A claim left
        out (its command ended without finishing it) runs out and is taken over. Returns how
        many were renewed."""
        renewed = 0
        ids = sorted(message_ids)
        for start in range(0, len(ids), CLAIM_BATCH):
            chunk = ids[start : start + CLAIM_BATCH]
            renewed += await self.database.count(
                "UPDATE processed_messages SET lease_until = ?"  # noqa: S608
                f" WHERE owner = ? AND status = 'claimed' AND message_id IN ({', '.join('?' * len(chunk))})",
                (_ts(now + self.lease), self.owner, *chunk),
            )
        return renewed

    async def take_over(self, now: datetime, *, expired_only: bool | None = None, settled: float = 0.0) -> list[str]:
        """Take the unfinished claims of processes that are gone, oldest first: those whose lease
        ran out (on a shared database), or every claim not this process's own (`expired_only=False`:
        a SQLite file, whose previous process is known to be gone). The claims become this
        process's, under a fresh lease; two processes never take the same one. `settled`: take no
        expired claim while the database server has been up for less than that many seconds (by
        its own clock; not when that clock went back since it started).
        Every lease runs out while the database is away; its owners, alive, renew theirs as soon as
        it is back, and one that answered a command "not run" meanwhile closes it, so those are
        not theirs to lose to whoever looks first."""
        if expired_only is None:
            expired_only = self.shared
        # A negative uptime is no restart just now: the server's clock was stepped back since it
        # started (its start time is ahead of its clock), and would hold take-overs back that long.
        uptime = self.database.uptime
        condition = (
            f"(lease_until IS NULL OR lease_until < ?) AND ({uptime} >= {float(settled)!r} OR {uptime} < 0)"
            if expired_only
            else "(owner IS NULL OR owner != ?)"
        )
        taken: list[tuple[float, str]] = []
        while True:
            rows = await self.database.rows(
                "UPDATE processed_messages SET owner = ?, lease_until = ? WHERE message_id IN"  # noqa: S608
                f" (SELECT message_id FROM processed_messages WHERE status = 'claimed' AND {condition}"
                f" ORDER BY claimed_at LIMIT ?{self.database.skip_locked}) RETURNING message_id, claimed_at",
                (self.owner, _ts(now + self.lease), _ts(now) if expired_only else self.owner, TAKEOVER_BATCH),
            )
            taken.extend((float(row[1]), str(row[0])) for row in rows)
            if len(rows) < TAKEOVER_BATCH:
                return [message_id for _, message_id in sorted(taken)]

    async def release_claims(self) -> int:
        """A process stopping with commands unfinished: let another take them over at once."""
        return await self.database.count(
            "UPDATE processed_messages SET lease_until = 0 WHERE owner = ? AND status = 'claimed'", (self.owner,)
        )

    async def replicas(self, alive: float, *, present: bool = True) -> list[str]:
        """Say that this replica runs, and list the replicas that said so within `alive` seconds
        (this one first), on the database server's clock, so that hosts whose clocks disagree
        still agree on who is alive. Replicas gone for an hour are forgotten. A file's store is one
        process's: this one, without a statement. Not `present` (it does not hear commands now):
        off the list, and the others listed, without this one."""
        if not self.shared:
            return [self.owner] if present else []
        now = "WITH now AS (SELECT extract(epoch FROM clock_timestamp()) AS at),"
        said = (
            " seen AS (INSERT INTO replicas (owner, seen_at) SELECT ?, at FROM now"
            " ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at),"
            " gone AS (DELETE FROM replicas WHERE seen_at < (SELECT at FROM now) - 3600)"
            if present
            else " gone AS (DELETE FROM replicas WHERE owner = ? OR seen_at < (SELECT at FROM now) - 3600)"
        )
        # The others, and one row without an owner: the server's clock (`database_clock`).
        rows = await self.database.rows(
            now  # noqa: S608 (constant text)
            + said
            + " SELECT owner, NULL FROM replicas WHERE seen_at >= (SELECT at FROM now) - ? AND owner != ?"
            " UNION ALL SELECT NULL, at FROM now",
            (self.owner, alive, self.owner),
        )
        others = sorted(str(row[0]) for row in rows if row[0] is not None)
        self.database_clock = next((float(row[1]) for row in rows if row[0] is None), None)
        return [self.owner, *others] if present else others

    async def leave(self) -> None:
        """This replica stops: the others stop counting on it at their next look."""
        if self.shared:
            await self.database.count("DELETE FROM replicas WHERE owner = ?", (self.owner,))

    async def finish_message(self, message_id: str, outcome: str, *, ignored: bool = False) -> bool:
        """Close this process's claim, and drop its write intents (in one round trip). False when
        the claim is not (or no longer) this process's: a replica paused past its lease, whose
        claim another took over, must not close it while that one runs the command."""
        changed, _marked, _cleared = await self.database.batch(self._finishing(message_id, outcome, ignored=ignored))
        return changed == 1

    def _finishing(self, message_id: str, outcome: str, *, ignored: bool = False) -> list[tuple[str, Sequence[Any]]]:
        """The statements of `finish_message`, in order (the claim's close first)."""
        closed_here = (
            " EXISTS (SELECT 1 FROM processed_messages WHERE message_id = ? AND owner = ? AND status != 'claimed')"
        )
        return [
            (
                "UPDATE processed_messages SET status = ?, outcome = ?, command_json = NULL"
                " WHERE message_id = ? AND owner = ?",
                ("ignored" if ignored else "done", outcome, message_id, self.owner),
            ),
            # Its journal has served, once it is closed by this process (never under the
            # feet of a replica that took it over); a write it never verified leaves its
            # trace on the integration (`_PENDING_FROM_INTENTS`).
            (
                _PENDING_FROM_INTENTS + " AND message_id = ? AND" + closed_here + _UPSERT_PENDING,
                (message_id,) * 2 + (self.owner,),
            ),
            (
                "DELETE FROM write_intents WHERE message_id = ? AND" + closed_here,  # noqa: S608 (constants)
                (message_id, message_id, self.owner),
            ),
        ]

    async def claim_owner(self, message_id: str, *, open_only: bool = False) -> str | None:
        """The process that holds (or held, when it finished) the command's claim; None if unclaimed.
        `open_only`: the one holding it unfinished (None once it is finished)."""
        status = " AND status = 'claimed'" if open_only else ""
        rows = await self.database.rows(
            f"SELECT owner FROM processed_messages WHERE message_id = ?{status}",  # noqa: S608
            (message_id,),
        )
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    async def claimed_command(self, message_id: str) -> tuple[ClaimedCommand, str, datetime] | None:
        """What an unfinished command said and who said it, with its room id and its message's
        time, as its claim keeps them (`claim_messages`); None for a closed claim, or one an older
        release made."""
        rows = await self.database.rows(
            "SELECT command_json, room_id, message_ts FROM processed_messages"
            " WHERE message_id = ? AND status = 'claimed'",
            (message_id,),
        )
        if not rows:
            return None
        command, room_id, message_ts = ClaimedCommand.of_json(rows[0][0]), rows[0][1], _dt(rows[0][2])
        if command is None or not isinstance(room_id, str) or message_ts is None:
            return None
        return command, room_id, message_ts

    async def message_status(self, message_id: str) -> str | None:
        rows = await self.database.rows("SELECT status FROM processed_messages WHERE message_id = ?", (message_id,))
        return str(rows[0][0]) if rows else None

    async def unfinished_messages(self) -> list[str]:
        """Claimed but never finished (by anyone), oldest first."""
        rows = await self.database.rows(
            "SELECT message_id FROM processed_messages WHERE status = 'claimed' ORDER BY claimed_at"
        )
        return [str(row[0]) for row in rows]

    async def prune_messages(self, older_than: datetime) -> int:
        return await self.database.count(
            "DELETE FROM processed_messages WHERE claimed_at < ? AND status != 'claimed'", (_ts(older_than),)
        )

    # --- room cursors --------------------------------------------------------------------------

    async def advance_cursor(self, room_id: str, seen: datetime) -> None:
        await self.advance_cursors({room_id: seen})

    async def advance_cursors(self, seen: dict[str, datetime]) -> None:
        """Move rooms' cursors forward (never back), in one statement."""
        if not seen:
            return
        values = ", ".join(["(?, ?)"] * len(seen))
        await self.database.count(
            f"INSERT INTO room_cursors (room_id, last_seen) VALUES {values}"  # noqa: S608
            " ON CONFLICT (room_id) DO UPDATE SET"
            f" last_seen = {self.database.greatest}(room_cursors.last_seen, excluded.last_seen)",
            [value for room_id, when in sorted(seen.items()) for value in (room_id, _ts(when))],
        )

    async def cursors(self) -> dict[str, datetime]:
        rows = await self.database.rows("SELECT room_id, last_seen FROM room_cursors")
        return {str(room): _dt(float(seen)) for room, seen in rows}

    # --- write intents (bot.runtime.journal) ----------------------------------------------------------

    async def record_intent(self, intent: WriteIntent) -> bool:
        """Remember a write before it is sent (replacing an earlier attempt's for the same pair),
        if this process still holds the command's claim; False (nothing recorded, nothing may be
        written) when another process took the claim over meanwhile."""
        recorded = await self.database.count(
            _RECORD_INTENT,
            (
                intent.message_id,
                intent.integration_id,
                _ts(intent.at),
                json.dumps(intent.before),
                json.dumps(intent.intended),
                intent.text,
                intent.author,
                intent.message_id,
                self.owner,
            ),
        )
        return recorded == 1

    async def intents(self, message_id: str) -> list[WriteIntent]:
        rows = await self.database.rows(
            "SELECT message_id, integration_id, at, before_json, intended_json, verified_json, command_text,"
            " command_author FROM write_intents"
            " WHERE message_id = ? ORDER BY at",
            (message_id,),
        )
        return [
            WriteIntent(
                str(row[0]),
                str(row[1]),
                _dt(float(row[2])),
                json.loads(row[3]),
                json.loads(row[4]),
                json.loads(row[5]) if row[5] else None,
                str(row[6]) if row[6] is not None else None,
                str(row[7]) if row[7] is not None else None,
            )
            for row in rows
        ]

    async def recorded_write(self, integration_id: str) -> str | None:
        """The `_updatedAt` of the last verified write of this integration recorded under its lock
        through any replica (`integration_writes`), None when none is, or one may be pending."""
        rows = await self.database.rows(
            "SELECT updated_at FROM integration_writes WHERE integration_id = ? AND NOT pending", (integration_id,)
        )
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    async def verified_intent(
        self, message_id: str, integration_id: str, stored: dict[str, Any], *, held: Held | None = None
    ) -> None:
        """The command's write of the integration was stored and verified as `stored`. Under a
        lock `held` in the database, the mark is committed with the lock's release (one round
        trip fewer, and still before the command answers)."""
        sql = "UPDATE write_intents SET verified_json = ? WHERE message_id = ? AND integration_id = ?"
        params = (json.dumps(stored), message_id, integration_id)
        if held is None or not held.commit_with(sql, params):
            await self.database.count(sql, params)

    async def drop_intent(self, message_id: str, integration_id: str, *, held: Held | None = None) -> None:
        """The command's intent for the integration, stored before its lock was held, stands for
        no write (none was sent): dropped, unless a write of it was verified, or the claim is no
        longer this process's (the intent may be that of the process that took it over). Under a
        lock `held` in the database, with the lock's release."""
        sql = _DROP_UNSENT_INTENT
        params = (message_id, integration_id, message_id, self.owner)
        if held is None or not held.commit_with(sql, params):
            await self.database.count(sql, params)

    async def unrecorded_answers(self, now: datetime, *, besides: str) -> set[str]:
        """The commands (other than `besides`) whose write is verified, so answered or about to be,
        and whose audit row is not recorded yet: the book-keeping after an answer, in whichever
        process runs it, on a claim that is still live (a dead replica's waits for its lease to run
        out and its recovery, not for anyone reading the audit)."""
        rows = await self.database.rows(
            "SELECT DISTINCT w.message_id FROM write_intents w"
            " JOIN processed_messages p ON p.message_id = w.message_id"
            " WHERE w.verified_json IS NOT NULL AND w.message_id != ? AND p.status = 'claimed'"
            " AND p.lease_until >= ? AND NOT EXISTS (SELECT 1 FROM audit a"
            " WHERE a.message_id = w.message_id AND a.integration_id = w.integration_id)",
            (besides, _ts(now)),
        )
        return {str(row[0]) for row in rows}

    async def prune_intents(self) -> int:
        """Drop intents whose command is no longer unfinished (finished, or its claim pruned)."""
        unfinished = " message_id NOT IN (SELECT message_id FROM processed_messages WHERE status = 'claimed')"
        _marked, dropped = await self.database.batch(
            [
                (_PENDING_FROM_INTENTS + " AND" + unfinished + _UPSERT_PENDING, ()),
                ("DELETE FROM write_intents WHERE" + unfinished, ()),  # noqa: S608 (constants)
            ]
        )
        return dropped

    # --- audit ---------------------------------------------------------------------------------

    async def record(self, record: AuditRecord) -> int:
        """Append an audit row; returns its id. Idempotent per command: a command resumed after a
        crash (bot.runtime.journal) that records the same action on the same integration again gets the
        existing row's id instead of a second row (a unique index, migration 6)."""
        return await self._recorded_id(record, await self.database.rows(*_audit_insert(record)))

    async def record_finishing(self, record: AuditRecord, outcome: str) -> tuple[int, bool]:
        """`record`, then `finish_message` of the row's command with `outcome`, in one round trip:
        the row is stored first (a claim closed without it would leave it unwritten for good),
        and a row that fails stops the close (`Database.batch`). Returns the row's id and
        whether the claim was closed (False: not this process's any more)."""
        assert record.message_id is not None
        done = await self.database.batch_rows([_audit_insert(record), *self._finishing(record.message_id, outcome)])
        return await self._recorded_id(record, done[0][0]), done[1][1] == 1

    async def end_timer(
        self, timer: TimedDisable, event: TimerEvent, *, at: datetime, note: str, record: AuditRecord
    ) -> tuple[TimedDisable, AuditRecord] | None:
        """End `timer` with `event` (the compare-and-set of `TimerStore.transition`) and append
        `record`, the audit row of that ending, in one transaction (`Database.atomic_rows`): both
        are stored or neither. The row is appended only if this ending won, so None (the row
        moved on meanwhile: another replica or command ended it otherwise) leaves no audit row
        claiming an ending that did not happen; and a failure (`StateUnavailable`) leaves the
        timer as it was, to be ended again. Returns the ended timer and the stored row."""
        update = self.timers.transition_statement(timer, event, at=at, note=note)
        insert = _audit_insert(record, only_if=made_by(timer, event))
        (ended, _), (inserted, _) = await self.database.atomic_rows([update, insert])
        if not ended:
            return None
        return timer_of(ended[0]), replace(record, id=await self._recorded_id(record, inserted))

    async def _recorded_id(self, record: AuditRecord, rows: list[Row]) -> int:
        if not rows:  # this command recorded it already (resumed after a crash): that row's id
            rows = await self.database.rows(
                "SELECT id FROM audit WHERE message_id = ? AND integration_id = ? AND action = ? LIMIT 1",
                (record.message_id, record.integration_id, record.action),
            )
        return int(rows[0][0])

    async def recorded(self, message_id: str) -> bool:
        """Whether the command `message_id` has an audit row (an index lookup, migration 4)."""
        rows = await self.database.rows("SELECT 1 FROM audit WHERE message_id = ? LIMIT 1", (message_id,))
        return bool(rows)

    async def history(
        self,
        *,
        limit: int = 20,
        integration_ids: Sequence[str] | None = None,
        actor_id: str | None = None,
        group_id: int | None = None,
    ) -> list[AuditRecord]:
        """Newest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if group_id is not None:
            clauses.append("group_id = ?")
            params.append(group_id)
        if integration_ids is not None:
            if not integration_ids:
                return []
            clauses.append(f"integration_id IN ({', '.join('?' for _ in integration_ids)})")
            params.extend(integration_ids)
        if actor_id is not None:
            clauses.append("actor_id = ?")
            params.append(actor_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.database.rows(
            f"SELECT {_AUDIT_COLUMNS} FROM audit{where} ORDER BY at DESC, id DESC LIMIT ?",  # noqa: S608
            (*params, limit),
        )
        return [_audit(row) for row in rows]


def _audit(row: Sequence[Any]) -> AuditRecord:
    return AuditRecord(
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
        group_id=int(row[15]) if row[15] is not None else None,
    )


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AuditRecord",
    "ClaimedCommand",
    "StateStore",
    "WriteIntent",
    "read_message_ids",
    "replica_name",
]
