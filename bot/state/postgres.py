"""The PostgreSQL backend of the state store (`bot/state/store.py`): `BOT_STATE_URL`, shared by replicas.

Several `integrations-bot run` processes use one database and keep every promise one process
keeps (docs/architecture.md, "Several replicas"):
- a command is claimed once (a primary key; `INSERT … ON CONFLICT DO NOTHING`), by whichever
  replica's claim commits first; the claim carries its owner and a lease (`bot/state/store.py`);
- a read-modify-write of one integration holds that integration's lock in the database for its
  whole span (`SharedIntegrationLocks`: `pg_advisory_xact_lock` in a transaction of its own, so
  it is released by COMMIT/ROLLBACK or by the server when the connection dies; never a
  session-level lock, which a transaction-pooling PgBouncer would hand to the wrong client);
- migrations run once, whoever starts first: under a transaction-level advisory lock, each
  replica reads `schema_version` and applies what is missing; a newer schema is refused.

Driver: psycopg 3 with psycopg-pool. Two pools: one for statements (each its own autocommit
transaction: a claim, an audit row) and one for integration locks (a connection is held, idle in
its transaction, while the bot reads and writes the integration over REST). Keeping them apart
means a burst of held locks can never starve the statements their holders need. A connection is
checked before it is handed out (one empty round trip), so after a database restart the first
command does not fail on a connection the restart broke; the first check that fails has both
pools check all their idle connections at once (`PostgresDatabase._check`). The driver prepares
the statements a connection runs often (psycopg's `prepare_threshold`: parsed and planned once
per connection, not on every run; measured on a statement of the write journal: 83 → 27 µs of
server CPU and 72 → 44 µs of the bot's); a PgBouncer in transaction pooling mode in front needs version 1.21 or
later with `max_prepared_statements` set, or `BOT_STATE_PREPARE=false` (`prepare=False`).

Sizes. The lock pool has at most `LOCK_POOL` connections (it was 24). A lock is held across its
holder's REST write, and the REST client has `MAX_CONNECTIONS` (4): more holders at once only
keep transactions idle, waiting for it (and server processes busy on a shared machine). Within
one replica, commands for one integration wait for each other before they take a connection
(`LocalIntegrationLocks`), so the connections held are for as many different integrations; a
change waits its turn for one, and fails after `LOCK_WAIT` only if that queue does not move (the
database does not answer; `LOCK_HELD_MAX`).
Paired runs of the benchmark, medians: three replicas' throughput 0.79× the floor's with 24,
0.83× and 0.84× with 8 (two batches). Both pools keep one
connection when idle and grow on demand (a new server process each, 10–20 ms): opened whole at
start, the statements of three replicas went to twelve idle server processes each in turn, and
their p50 was ~0.1× the floor's slower (1.72× against 1.60× in paired runs). A statement carrying
many values (a batch whose text grows with it) is never prepared (`PREPARED_VALUES_MAX`).

When the database cannot be reached, every statement raises `StateUnavailable` after at most
`statement_timeout` seconds (waiting for a connection; a lock after `LOCK_WAIT`); the pools
reconnect by themselves.

Stalled replicas. A batch (`Database.batch`: closing a claim, its audit row, pruning the journal)
is one pipeline, each statement sent as it is run, and one implicit transaction until the
pipeline's Sync; so is a lock's release (its deferred statements, then COMMIT). A process stopped
between two of those statements (SIGSTOP, a frozen VM or container, a starved CPU) leaves that
transaction open on the server, with the row locks of the statements already sent, for as long as
it stays stopped (`idle_in_transaction_session_timeout` does not fire before the Sync). The rows
such a transaction can hold: its own claim (`processed_messages`), a new `audit` row (its unique
key), `integration_writes` rows (the pending mark; a verified write's record) and `write_intents`
rows. Timers, confirmations, bulk groups, flood notices, cursors and `replicas` are only ever
written by single statements, whose transaction the server ends by itself. What waits for those
rows, and what it does instead:
- the intake's claims and the claims keeper's renewals and take-overs never wait for them: a
  claim leaves out the commands claimed already (`StateStore.claim_messages`: `NOT EXISTS`
  against its snapshot before its insert); a take-over skips the claims locked (`SKIP LOCKED`);
  renewing and releasing claims only match rows whose committed version is the replica's own (a
  stalled close holds only its own replica's); `replicas` rows are written by single statements
  (tests/bot/state/test_postgres_stalled_batches.py);
- anything else waits at most `LOCK_TIMEOUT`: closing a claim or pruning the journal (both mark
  an integration's `integration_writes` row pending), a change's pending mark or its release's
  record of its write (the integration's lock held meanwhile: every replica's next change of it
  waited behind it), the audit row or write intent of a command another replica took over from
  a stalled one, pruning closed claims (a stalled re-close may hold one). The statements pool's
  sessions have that `lock_timeout`, and a lock transaction sets it (`SET LOCAL`) once its
  advisory lock is held. The statement then fails with `StateBusy` (SQLSTATE 55P03), a
  `StateUnavailable` that callers handle as any failed statement (a close left unsettled and
  tried again at the keeper's next round, a command answered "can't record", the hourly prune
  tried again at the next cursor flush), but that is no outage: readiness and the `state_up`
  metric stay (`bot/runtime/bot.py`).
The wait for another replica's advisory lock is not bounded so (`LOCK_HELD_MAX`), nor a
migration's (each replica waits for the one migrating first). Behind a PgBouncer in transaction
pooling mode a session's setting does not follow its client: set `lock_timeout` for the bot's
role there (`ALTER ROLE … SET lock_timeout = '5s'`); a lock transaction resets it to none for its
advisory lock's wait.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any, Final

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bot import logs
from bot.errors import ClaimTakenOver, ConfigError, StateBusy, StateUnavailable
from bot.integrations.locks import Held, IntegrationLocks, LocalIntegrationLocks, ReadMark
from bot.rocketchat.ejson import decode_date
from bot.rocketchat.rest import MAX_CONNECTIONS
from bot.state.database import Row
from bot.tasks import background

log = logs.get_logger("integrations_bot.state")

# The schema this release writes; versions as in bot/state/sqlite.py (the PostgreSQL backend
# begins at 6, the first version with owners and leases on claims). Entry N upgrades N-1 to N.
FIRST_VERSION: Final = 6
MIGRATIONS: Final[dict[int, str]] = {
    6: """
    CREATE TABLE processed_messages (
        message_id  text PRIMARY KEY,
        room_id     text NOT NULL,
        message_ts  double precision NOT NULL,
        claimed_at  double precision NOT NULL,
        status      text NOT NULL CHECK (status IN ('claimed', 'done', 'ignored')),
        outcome     text,
        owner       text,
        lease_until double precision
    );
    CREATE INDEX processed_messages_claimed_at ON processed_messages (claimed_at);
    CREATE INDEX processed_messages_unfinished ON processed_messages (lease_until) WHERE status = 'claimed';
    CREATE TABLE audit (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at               double precision NOT NULL,
        actor_id         text NOT NULL,
        actor_username   text NOT NULL,
        room_id          text,
        message_id       text,
        integration_id   text NOT NULL,
        integration_name text NOT NULL,
        integration_type text NOT NULL,
        action           text NOT NULL,
        reason           text,
        before_json      text,
        after_json       text,
        until_at         double precision,
        undoes           bigint
    );
    CREATE INDEX audit_integration ON audit (integration_id, at);
    CREATE INDEX audit_actor ON audit (actor_id, at);
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_message ON audit (message_id);
    CREATE UNIQUE INDEX audit_once ON audit (message_id, integration_id, action) WHERE message_id IS NOT NULL;
    CREATE TABLE room_cursors (
        room_id   text PRIMARY KEY,
        last_seen double precision NOT NULL
    );
    CREATE TABLE write_intents (
        message_id     text NOT NULL,
        integration_id text NOT NULL,
        at             double precision NOT NULL,
        before_json    text NOT NULL,
        intended_json  text NOT NULL,
        PRIMARY KEY (message_id, integration_id)
    );
    CREATE TABLE timers (
        id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        revision            integer NOT NULL DEFAULT 0,
        state               text NOT NULL
                            CHECK (state IN ('scheduled', 'active', 'expired', 'cancelled', 'overridden', 'failed')),
        integration_id      text NOT NULL,
        integration_name    text NOT NULL,
        integration_type    text NOT NULL,
        created_at          double precision NOT NULL,
        due_at              double precision NOT NULL,
        actor_id            text NOT NULL,
        actor_username      text NOT NULL,
        reason              text,
        room_id             text,
        thread_id           text,
        message_id          text,
        audit_id            bigint,
        disabled_updated_at text,
        disabled_json       text,
        ended_at            double precision,
        end_note            text
    );
    CREATE UNIQUE INDEX timers_one_pending ON timers (integration_id) WHERE state IN ('scheduled', 'active');
    CREATE INDEX timers_state_due ON timers (state, due_at);
    CREATE TABLE secrets (
        name  text PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE confirmations (
        code           text PRIMARY KEY,
        user_id        text NOT NULL,
        room_id        text NOT NULL,
        integration_id text NOT NULL,
        snapshot_json  text NOT NULL,
        updates_json   text NOT NULL,
        created_at     double precision NOT NULL,
        expires_at     double precision NOT NULL,
        status         text NOT NULL CHECK (status IN ('waiting', 'applying', 'applied')),
        applied_at     double precision
    );
    CREATE INDEX confirmations_caller ON confirmations (user_id, created_at)
    """,
    7: """
    CREATE TABLE integration_writes (
        integration_id text PRIMARY KEY,
        pending        boolean NOT NULL,
        updated_at     text
    );
    ALTER TABLE write_intents ADD COLUMN verified_json text
    """,
    8: """
    CREATE TABLE bulk_groups (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        created_at     double precision NOT NULL,
        actor_id       text NOT NULL,
        actor_username text NOT NULL,
        selector       text NOT NULL,
        target_room_id text,
        glob           text,
        kind           text,
        reason         text,
        due_at         double precision,
        room_id        text,
        thread_id      text,
        message_id     text NOT NULL
    );
    CREATE UNIQUE INDEX bulk_groups_message ON bulk_groups (message_id);
    CREATE INDEX bulk_groups_actor ON bulk_groups (actor_id, created_at);
    ALTER TABLE timers ADD COLUMN group_id bigint;
    CREATE INDEX timers_group ON timers (group_id) WHERE group_id IS NOT NULL;
    ALTER TABLE audit ADD COLUMN group_id bigint;
    CREATE INDEX audit_group ON audit (group_id) WHERE group_id IS NOT NULL
    """,
    9: """
    CREATE TABLE flood_notices (
        integration_id text NOT NULL,
        room_id        text NOT NULL,
        noticed_at     double precision,
        quiet_until    double precision NOT NULL,
        quieted_by     text,
        PRIMARY KEY (integration_id, room_id)
    );
    CREATE INDEX flood_notices_quiet ON flood_notices (quiet_until)
    """,
    10: """
    ALTER TABLE timers ADD COLUMN extensions_json text
    """,
    11: """
    CREATE TABLE replicas (
        owner   text PRIMARY KEY,
        seen_at double precision NOT NULL
    )
    """,
    12: """
    ALTER TABLE write_intents ADD COLUMN command_text text;
    ALTER TABLE write_intents ADD COLUMN command_author text
    """,
    13: """
    ALTER TABLE processed_messages ADD COLUMN command_json text
    """,
}
SCHEMA_VERSION: Final = max(MIGRATIONS)
# Keys of the transaction-level advisory locks (a namespace of this bot's: hashtextextended of it).
_MIGRATION_LOCK: Final = "integrations-bot:migrations"
_INTEGRATION_LOCK: Final = "integrations-bot:integration:"
# The release of a lock whose holder's write was verified: what the bot last wrote, through any replica.
_RECORD_WRITE: Final = (
    "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (%s, false, %s)"
    " ON CONFLICT (integration_id) DO UPDATE SET pending = false, updated_at = excluded.updated_at"
)
# What stands for that record when it cannot be stored in the lock's transaction (run before the
# release, or after a release that was lost): outside the lock, another replica may have written
# and recorded a later write meanwhile, which the record of this one must not replace.
_MARK_PENDING: Final = (
    "INSERT INTO integration_writes (integration_id, pending) VALUES (%s, true)"
    " ON CONFLICT (integration_id) DO UPDATE SET pending = true"
)
# Runs of one statement on one connection before the driver prepares it (psycopg's default).
PREPARE_THRESHOLD: Final = 5
# A statement carrying more values than this is never prepared. The store's fixed statements carry
# at most 15 (an audit row); those with more are batches whose text grows with them (a burst's
# claims, seven values a row up to 500 rows; lists of ids): each size is a statement of its own,
# seldom run often on one connection. Prepared (measured with every statement prepared at its
# first run), every size a burst had was kept by the server on each connection (up to psycopg's
# 100 a connection, about 0.75 MB each at 500 rows: 46 MB of one server process) and pushed the
# statements run often out of psycopg's cache.
PREPARED_VALUES_MAX: Final = 16
# Connections per pool (per replica; module docstring, "Sizes"). Statements are short; locks are
# held across REST calls.
STATEMENT_POOL: Final = 8
LOCK_POOL: Final = 2 * MAX_CONNECTIONS
# How long a change waits for a lock connection (seconds) before it is answered "can't record
# commands". Waiting for one is mostly waiting for the changes ahead of it, each holding its lock
# across a REST write (at most `LOCK_POOL` at once): a statement's timeout (`statement_timeout`,
# 5 s) there answered a burst's last changes that while the database was fine. A change that
# claimed its command before the database went away is answered after this long instead (after
# the last connection handed back). While connections are handed out or back meanwhile, the wait
# goes on past it (`SharedIntegrationLocks._connection`): that is a queue, however long.
LOCK_WAIT: Final = 30.0
# How long a queue for lock connections behind holders in their blocks may go without a connection
# handed out or back (seconds) before a change waiting in it fails as after `LOCK_WAIT`
# (`SharedIntegrationLocks._connection`). A REST call takes at most ~3 min (4 attempts of
# `BOT_REQUEST_TIMEOUT`, 10 s, their back-offs, two waits for a rate limit of up to 60 s); holders
# that hand nothing back for longer are waiting on a database that does not answer their statements.
# (A holder whose several calls are each rate-limited that long may exceed it: the changes behind it
# are then answered "can't record commands", as before they queued.)
LOCK_HELD_MAX: Final = 300.0
# How long a statement of the statements pool waits for a row lock (seconds; the session's
# `lock_timeout`, set as each connection opens) before it gives up with `StateBusy`; and a lock
# transaction's statements once its integration's lock is held (`SET LOCAL`: never the wait for
# the advisory lock itself, nor a migration's). Every transaction of the bot's that locks rows
# is a few statements sent back to back, so a row stays locked for milliseconds, unless the
# process that sent them stopped in the middle (module docstring, "Stalled replicas"). Under a
# third of the lease (`BOT_CLAIM_LEASE`, 30 s, renewed every 10 s), so that a keeper's statement
# that gave up still leaves its claims renewed in time by the next round; as long as a statement
# waits for a connection (`statement_timeout`, 5 s).
LOCK_TIMEOUT: Final = 5.0
# The pool's own bound on a request for a lock connection (seconds): none, in effect; the wait is
# bounded by `SharedIntegrationLocks._connection` (`LOCK_WAIT`, `LOCK_HELD_MAX`).
_QUEUED_FOR_EVER: Final = 1e6


def where_of(url: str) -> str:
    """`user@host:port/db` of a URL: what logs and answers may show (never the password)."""
    try:
        parts = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable BOT_STATE_URL)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = parts.get("user")
    return f"{f'{user}@' if user else ''}{host}:{port}/{parts.get('dbname') or user or ''}"


def _password_of(url: str) -> str | None:
    with suppress(psycopg.ProgrammingError):
        password = pg_conninfo.conninfo_to_dict(url).get("password")
        return str(password) if password else None
    return None


def _milliseconds(seconds: float) -> int:
    """A timeout as PostgreSQL's settings take it (whole milliseconds, at least 1: 0 is none)."""
    return max(1, round(seconds * 1000))


def _dialect(sql: str, cache: dict[str, str] = {}) -> str:  # noqa: B006 (a cache on purpose)
    """The store's SQL with psycopg's placeholders (`?` → `%s`); the statements hold no other `?` or `%`."""
    translated = cache.get(sql)
    if translated is None:
        translated = cache[sql] = sql.replace("?", "%s")
    return translated


def _prepare(params: Sequence[Any]) -> bool | None:
    """psycopg's `prepare` for a statement carrying `params`: False (never) for a batch
    (`PREPARED_VALUES_MAX`), None (the connection's `prepare_threshold`) otherwise."""
    return False if len(params) > PREPARED_VALUES_MAX else None


def _unavailable(where: str, exc: BaseException) -> StateUnavailable:
    """What a statement that failed for want of the database raises; from now on every pooled
    connection is checked before its next use (`_distrust_connections`). A row lock waited for
    past `LOCK_TIMEOUT` is `StateBusy`: the database answered, its connections are fine."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return StateBusy(where, "a row stayed locked by another transaction (another replica stalled mid-batch?)")
    _distrust_connections()
    if isinstance(exc, PoolTimeout):
        return StateUnavailable(where, "no connection to the database")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StateUnavailable(where, first)


# A connection handed back this recently is handed out again without the check's round trip (half
# the cost of a statement; measured by the benchmark). One that broke within that second (the
# database restarted) fails its statement: that command is answered "not run", the pool replaces
# the connection, and every other one is checked before its next use (`_distrust_connections`):
# a pool hands its idle connections out in turn, so the others used in that second are broken too.
FRESH: Final = 1.0
_returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


def _distrust_connections() -> None:
    """After a statement failed for want of the database: no pooled connection skips its check."""
    _returned.clear()


async def _check_unless_fresh(conn: psycopg.AsyncConnection[Any]) -> None:
    returned = _returned.get(conn)
    if returned is None or time.monotonic() - returned > FRESH:
        await AsyncConnectionPool.check_connection(conn)


@asynccontextmanager
async def _closed_on_error(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """Around a pipeline of a pooled connection: closed (the pool then discards it) if it raises.
    A statement the server rejects makes it skip the rest of the pipeline, and psycopg takes a
    statement skipped there twice, at its `prepare_threshold`-th run, as prepared while the server
    never saw it: every later run of it on that connection would fail ("prepared statement does
    not exist")."""
    try:
        yield
    except BaseException:
        with suppress(Exception):
            await conn.close()
        raise


# What "cannot use the database now" looks like; anything else (a constraint, a syntax error) is a bug.
_DOWN: Final = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class PostgresDatabase:
    """A PostgreSQL database behind two pools (see the module docstring)."""

    kind = "postgresql"
    shared = True
    greatest = "GREATEST"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    started_at = "extract(epoch FROM pg_postmaster_start_time())"
    uptime = "extract(epoch FROM now() - pg_postmaster_start_time())"

    def __init__(
        self, url: str, *, statement_timeout: float = 5.0, prepare: bool = True, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        self.where = where_of(url)
        self._url = url
        logs.register_secret(_password_of(url))
        options: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": PREPARE_THRESHOLD if prepare else None,
            # A server or network that goes silent (a node lost, a partition) is noticed within
            # about 30 s instead of the system's TCP default of hours: a held integration lock
            # then fails its holder's command instead of leaving every replica's waiting on it.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        }
        common: dict[str, Any] = {
            "kwargs": options,
            "open": False,
            "check": self._check,
            "timeout": statement_timeout,
            # A background reconnection backs off exponentially (1, 2, 4, … s): kept up for a long
            # outage, it would come back long after the database (measured: 19 s late after 40 s
            # down). Given up after 5 s instead, the next statement asks for a fresh connection,
            # so the bot is back within a second of the database (same measurement: 0.0 s); so
            # does a request still waiting then (a change waits up to `LOCK_WAIT`), at once
            # (`_reconnect_failed`): back within psycopg_pool's back-off (1, 2, 4 s) of the database.
            "reconnect_timeout": 5.0,
            "reconnect_failed": self._reconnect_failed,
        }
        self._lock_timeout = _milliseconds(lock_timeout)
        self._statements: AsyncConnectionPool = AsyncConnectionPool(
            url, min_size=1, max_size=STATEMENT_POOL, name="state", configure=self._configure, **common
        )
        self._lock_pool: AsyncConnectionPool = AsyncConnectionPool(
            url, min_size=1, max_size=LOCK_POOL, name="locks", **common
        )
        self._locks = SharedIntegrationLocks(self._lock_pool, self._statements, self.where, lock_timeout=lock_timeout)
        self._purging: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()  # checks of the pools under way (`_checking`)

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A new connection of the statements pool: no statement of it waits for a row lock longer
        than `LOCK_TIMEOUT` (module docstring, "Stalled replicas")."""
        await conn.execute(f"SET lock_timeout = {self._lock_timeout}")

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A pool's check of a connection it is about to hand out (`_check_unless_fresh`). One that
        fails means the database restarted or went away: every other idle connection is broken
        too, and is replaced now (`_purge`). psycopg_pool would otherwise find them one at a time,
        waiting 1 s, then 2 s, … after each failed check, so that with a pool's worth of them the
        next command waited past its timeout and was answered "can't record commands" while the
        database was back."""
        try:
            await _check_unless_fresh(conn)
        except Exception:
            _distrust_connections()
            if self._purging is None or self._purging.done():
                self._purging = self._checking(self._purge())
            raise

    def _reconnect_failed(self, pool: AsyncConnectionPool) -> None:
        """psycopg_pool gave up reconnecting (`reconnect_timeout`) and tries again only for the next
        request that has to wait: one waiting already (a change waits up to `LOCK_WAIT` for a lock
        connection) got none once the database was back, and failed at the end of its wait. While
        any waits, the pool tries again at once (`check` grows a pool with no idle connection)."""
        if not pool.closed and pool.get_stats().get("requests_waiting", 0):
            self._checking(pool.check())

    def _checking(self, check: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """`check` (of one pool or both) in the background, counted until it ends (`close` waits)."""
        task = background(check)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return task

    async def _purge(self) -> None:
        for pool in (self._statements, self._lock_pool):
            with suppress(Exception):
                await pool.check()

    @classmethod
    async def open(
        cls, url: str, *, connect_timeout: float = 10.0, prepare: bool = True, lock_timeout: float = LOCK_TIMEOUT
    ) -> PostgresDatabase:
        """Connect and migrate. `StateUnavailable` when the server cannot be reached within
        `connect_timeout`; `ConfigError` for a schema newer than this release. `lock_timeout`:
        `LOCK_TIMEOUT` (tests shorten it)."""
        try:
            pg_conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"BOT_STATE_URL is not a PostgreSQL URL ({type(exc).__name__})") from None
        database = cls(url, prepare=prepare, lock_timeout=lock_timeout)
        try:
            await database._open(within=connect_timeout)
            await database._migrate()
        except BaseException:
            await database.close()
            raise
        return database

    async def _open(self, *, within: float) -> None:
        try:
            await self._statements.open(wait=True, timeout=within)
            await self._lock_pool.open(wait=True, timeout=within)
        except _DOWN as exc:
            raise await self._why_not(exc, within) from None

    async def _why_not(self, exc: BaseException, within: float) -> StateUnavailable:
        """The pool only says it timed out: one direct attempt tells the operator why (a wrong
        password, an unknown database, a refused connection)."""
        if isinstance(exc, PoolTimeout):
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=max(1, int(within)))
            except psycopg.Error as direct:
                return _unavailable(self.where, direct)
            await conn.close()
        return _unavailable(self.where, exc)

    async def _migrate(self) -> None:
        try:
            async with self._statements.connection() as conn, conn.transaction():
                # Waits for the replica migrating first, however long it takes; and its DDL for
                # the transactions of the replicas already running (an upgrade one at a time).
                await conn.execute("SET LOCAL lock_timeout = 0")
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_MIGRATION_LOCK,))
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
                version = int(row[0]) if row is not None and row[0] is not None else 0
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"BOT_STATE_URL: the database {self.where} has schema version {version}, newer than "
                        f"this release supports ({SCHEMA_VERSION}); upgrade this replica to the release the others run"
                    )
                for number in sorted(n for n in MIGRATIONS if n > version):
                    for statement in (s.strip() for s in MIGRATIONS[number].split(";")):
                        if statement:
                            await conn.execute(statement.encode())
                    await conn.execute("DELETE FROM schema_version")
                    await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
                    log.info("state.migrated", where=self.where, version=number)
        except _DOWN as exc:
            raise _unavailable(self.where, exc) from None

    @property
    def locks(self) -> IntegrationLocks:
        return self._locks

    def describe(self) -> str:
        return f"PostgreSQL {self.where}"

    async def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[Row], int]:
        await self._locks.flush_deferred()
        try:
            cancels = _cancels()
            async with self._statements.connection() as conn:
                _still_running(cancels)
                cursor = await conn.execute(_dialect(sql), params if params else None, prepare=_prepare(params))
                rows = await cursor.fetchall() if cursor.description is not None else []
                _returned[conn] = time.monotonic()  # worked just now: no check when handed out soon
                return [tuple(row) for row in rows], cursor.rowcount
        except _DOWN as exc:
            raise _unavailable(self.where, exc) from None

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return (await self._execute(sql, params))[0]

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        return [changed for _rows, changed in await self.batch_rows(statements)]

    async def batch_rows(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        await self._locks.flush_deferred()
        try:
            cancels = _cancels()
            async with self._statements.connection() as conn:
                _still_running(cancels)
                async with _closed_on_error(conn), conn.pipeline():
                    cursors = [
                        await conn.execute(_dialect(sql), params or None, prepare=_prepare(params))
                        for sql, params in statements
                    ]
                _returned[conn] = time.monotonic()
                return [
                    (
                        [tuple(row) for row in await cursor.fetchall()] if cursor.description is not None else [],
                        cursor.rowcount,
                    )
                    for cursor in cursors
                ]
        except _DOWN as exc:
            raise _unavailable(self.where, exc) from None

    async def atomic_rows(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[Row], int]]:
        # A batch is one implicit transaction here already (one pipeline, one Sync).
        return await self.batch_rows(statements)

    async def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self._execute(sql, params))[1]

    async def schema_version(self) -> int:
        rows = await self.rows("SELECT max(version) FROM schema_version")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def ping(self) -> None:
        await self.rows("SELECT 1")

    async def close(self) -> None:
        await asyncio.gather(self._statements.close(), self._lock_pool.close(), return_exceptions=True)
        if checks := set(self._checks):
            # Let a check of the pools under way (`_purge`, `_reconnect_failed`) end rather than
            # cancel it: psycopg_pool's `check()` has every idle connection out of its pool
            # meanwhile, takes a cancellation for a failed check of the one it is checking, and
            # drops that one unclosed (its server process stayed open as long as the bot ran).
            # Ended, it hands each connection back to its closed pool, which closes it. Waited for
            # as long as a statement at most.
            await asyncio.wait(checks, timeout=self._statements.timeout)


class _SharedHeld:
    """A hold of an integration's shared lock, and what it tells about the bot's last write."""

    def __init__(
        self,
        integration_id: str,
        local: Held,
        last: tuple[bool, str | None] | None,
        mark_pending: Callable[[str], Awaitable[None]],
        *,
        intents_pending: bool = False,
        lost_claim: str | None = None,
        timer_pending: bool | None = None,
    ) -> None:
        self.integration_id = integration_id
        self.timer_pending = timer_pending
        self._local = local
        self._mark_pending = mark_pending
        self._last = last  # (pending, updated_at) of the bot's last write through any replica
        # Another command's write intent for it, not verified: its write may have landed unrecorded.
        self._intents_pending = intents_pending
        # The holder's command, when its claim was no longer this process's as the lock was taken.
        self._lost_claim = lost_claim
        self.wrote = False
        self.verified: str | None = None
        # Statements of the store committed with the release (`commit_with`), in order.
        self.deferred: list[tuple[str, Sequence[Any]]] = []

    def untouched_since(self, mark: ReadMark, updated_at: str | None = None) -> bool:
        """A read is trusted when no holder of this process released since it began, and it
        already shows the bot's last write through any replica: its `_updatedAt` is that write's
        (recorded by its holder, under this lock, once verified). A write that was sent and never
        verified (its holder died, the answer was lost) leaves `pending`: every later read is
        made again under the lock, as it always was (one GET). So does another command's write
        intent that is not verified: a command journals its write before sending it and marks
        the intent verified in the release of this lock, so an unverified one is a write that may
        have landed unrecorded (its holder died), or one about to be made by a command waiting for
        this lock (a re-read it costs, never a lost update)."""
        if not self._local.untouched_since(mark) or updated_at is None or self._intents_pending:
            return False
        if self._last is None:
            return True  # the bot never wrote it
        pending, last = self._last
        if pending or last is None:
            return False
        # The very write (equal stamps): a later stamp could come from another Rocket.Chat
        # instance whose clock runs ahead, and is read again rather than trusted.
        seen, written = decode_date(updated_at), decode_date(last)
        return seen is not None and written is not None and seen == written

    async def writing(self, *, journaled: bool = False) -> None:
        """Committed before the write is sent: a holder that dies after sending it leaves `pending`
        (or, `journaled`, its command's unverified write intent, which every other holder's lock
        read counts: no statement of its own then)."""
        if self._lost_claim is not None:
            # Paused past its lease (while it waited for the lock, say) and taken over: the
            # intent it stored before then must not carry its write (the other process runs it).
            raise ClaimTakenOver(self._lost_claim)
        if not journaled:
            await self._mark_pending(self.integration_id)
        self.wrote = True
        self.verified = None

    def written(self, updated_at: str | None) -> None:
        self.verified = updated_at

    def commit_with(self, sql: str, params: Sequence[Any]) -> bool:
        self.deferred.append((_dialect(sql), params))
        return True


class SharedIntegrationLocks:
    """`IntegrationLocks` across every process on the database: an advisory lock per integration
    id, taken inside a transaction held open for the lock's span. Within a process the local
    locks come first (re-entrance, and one database connection per integration being changed,
    not one per waiting task).

    The lock's statement also reads `integration_writes`: what the bot last wrote to this
    integration through any replica, so that a document read before the lock can be trusted
    when it already shows that write (`_SharedHeld.untouched_since`), sparing the re-read; and
    whether another command has an unverified write intent for it. A holder about to write
    must leave a trace committed before the write is sent: a command's is its write intent
    (`writing(journaled=True)`: journaled by the command, begun while the lock was being taken
    when it could be, so one wait for both), anything else's is the row's `pending` mark, in a
    statement of its own. Once the write is verified, the release records its `_updatedAt` and
    clears `pending` in the lock's transaction (also when the holder's block failed after it),
    together with the statements the holder asked to have committed with it (`commit_with`: the
    journal's verified mark), in one round trip. If
    that transaction is lost with its connection, those statements are run on their own before
    the holder's block ends, so they are stored before any answer, as if run where asked; the
    record becomes the `pending` mark then, stored first (the verified mark alone would clear the
    trace while the record still showed the write before; and the lock is free by then: another
    replica may have recorded a later write, which this record must not replace). So it does
    when the holder stores something else under the lock (`flush_deferred`)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        statements: AsyncConnectionPool,
        where: str,
        *,
        on_wait: Callable[[float], None] | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self._pool = pool
        self._lock_timeout = _milliseconds(lock_timeout)  # as the setting takes it
        self._statements = statements
        self._where = where
        self._local = LocalIntegrationLocks()
        self._holders: dict[str, tuple[asyncio.Task[Any] | None, _SharedHeld]] = {}
        self._taken = 0  # lock connections held by this process's holders
        self._locking = 0  # of those, the ones waiting on the server for their lock (held elsewhere)
        # When a lock connection was last handed out or back here (or a holder left its block).
        self._moved = time.monotonic()
        self.on_wait = on_wait

    def mark(self) -> ReadMark:
        return self._local.mark()

    def held(self, integration_id: str) -> Held | None:
        holder = self._holders.get(integration_id)
        if holder is None or holder[0] is not asyncio.current_task():
            return None
        return holder[1]

    def hold(
        self, integration_id: str, *, writer: str | None = None, owner: str | None = None
    ) -> AbstractAsyncContextManager[Held]:
        return self._hold(integration_id, writer, owner)

    @asynccontextmanager
    async def _hold(self, integration_id: str, writer: str | None, owner: str | None) -> AsyncIterator[Held]:
        if self._local.holding(integration_id):  # re-entered by its holder: already held in the database
            async with self._local.hold(integration_id) as held:
                yield held
            return
        async with self._local.hold(integration_id) as local:
            started = time.monotonic()
            cancels = _cancels()
            record: str | None = None
            deferred: list[tuple[str, Sequence[Any]]] = []
            failed = False  # the holder's block (or taking the lock) raised
            try:
                conn = await self._connection()
            except _DOWN as exc:
                raise _unavailable(self._where, exc) from None
            try:
                _still_running(cancels)
                self._locking += 1
                try:
                    # One round trip, three statements: the read must be a statement of its own,
                    # after the lock's (a statement's snapshot is taken when it starts, so a read
                    # in the lock's statement would miss what the last holder committed while this
                    # one waited, and trust a read older than that holder's write).
                    async with conn.pipeline():
                        await conn.execute("BEGIN")
                        # The advisory lock is waited for as long as its holder holds it (a
                        # session default, or one a PgBouncer carried over, must not cut that
                        # short); the statements after it wait for a row `LOCK_TIMEOUT` at most
                        # (the release's, behind a stalled replica's batch: module docstring).
                        await conn.execute("SET LOCAL lock_timeout = 0")
                        await conn.execute(
                            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                            (_INTEGRATION_LOCK + integration_id,),
                        )
                        await conn.execute(f"SET LOCAL lock_timeout = {self._lock_timeout}")
                        cursor = await conn.execute(
                            "SELECT (SELECT ARRAY[pending::text, updated_at] FROM integration_writes"
                            " WHERE integration_id = %s), EXISTS (SELECT 1 FROM write_intents"
                            " WHERE integration_id = %s AND verified_json IS NULL AND message_id IS DISTINCT FROM %s),"
                            " %s::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM processed_messages"
                            " WHERE message_id = %s AND owner = %s AND status = 'claimed'),"
                            " EXISTS (SELECT 1 FROM timers WHERE integration_id = %s"
                            " AND state IN ('scheduled', 'active'))",
                            (integration_id, integration_id, writer, owner, writer, owner, integration_id),
                        )
                    found = await cursor.fetchone()
                except _DOWN as exc:
                    raise _unavailable(self._where, exc) from None
                finally:
                    self._locking -= 1
                if self.on_wait is not None:
                    self.on_wait(time.monotonic() - started)
                last = found[0] if found is not None else None
                state = (last[0] == "true", last[1]) if last else None
                intents_pending = bool(found[1]) if found is not None else True
                lost_claim = writer if writer is not None and found is not None and found[2] else None
                held = _SharedHeld(
                    integration_id,
                    local,
                    state,
                    self._mark_pending,
                    intents_pending=intents_pending,
                    lost_claim=lost_claim,
                    timer_pending=bool(found[3]) if found is not None else None,
                )
                deferred = held.deferred  # filled by the holder (`commit_with`), also when it fails
                self._holders[integration_id] = (asyncio.current_task(), held)
                try:
                    yield held
                finally:
                    del self._holders[integration_id]
                    self._moved = time.monotonic()  # its connection is on its way back
                    # Also when the block failed after its write was verified: the verified mark
                    # (deferred) is committed with the release all the same, and clears the intent
                    # that stood for the write; without the record beside it, nothing would, and
                    # a read older than the write would be trusted by the next holder.
                    if held.wrote:
                        record = held.verified
            except BaseException:
                failed = True
                raise
            finally:
                # Ends the transaction, which releases the lock (with the verified write's record
                # and the deferred statements, in one round trip); a connection that broke
                # meanwhile released it on the server already, and the pool discards it.
                committed = False
                if record is not None:
                    # An upsert: a journaled write marked nothing pending before it was sent (its
                    # intent did), so this may be the integration's first row.
                    deferred.append((_RECORD_WRITE, (integration_id, record)))
                try:
                    # Never a ROLLBACK: it makes psycopg forget the statements it prepared on the
                    # connection and send DEALLOCATE ALL before the next statement, which in a
                    # pipeline goes after the next lock's BEGIN (with statements prepared at their
                    # first run, BEGIN was prepared there, and the lock after that failed:
                    # "prepared statement does not exist"), and re-prepare them all. A COMMIT
                    # with nothing to store releases the lock alike (the transaction wrote nothing
                    # else). A transaction in error (the server gave up a statement: a
                    # `lock_timeout`) would end as a ROLLBACK whatever is sent: its connection is
                    # closed instead, as below.
                    if conn.info.transaction_status != TransactionStatus.INERROR:
                        with suppress(*_DOWN):
                            async with conn.pipeline():
                                for sql, params in deferred:
                                    await conn.execute(sql, params if params else None)
                                await conn.execute("COMMIT")
                            committed = True
                            _returned[conn] = time.monotonic()
                finally:
                    if not committed:
                        # Cut short (cancelled, an error): its transaction may still hold the lock.
                        # Closed, the server ends it; the pool discards a closed connection.
                        _distrust_connections()
                        with suppress(Exception):
                            await conn.close()
                    self._taken -= 1
                    self._moved = time.monotonic()
                    await self._pool.putconn(conn)
                if deferred and not committed:
                    # The lock is free already: the record becomes the pending mark (first).
                    alone = [statement for statement in deferred if statement[0] != _RECORD_WRITE]
                    if record is not None:
                        alone.insert(0, (_MARK_PENDING, (integration_id,)))
                    await self._run_alone(alone, quietly=failed)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """A lock connection. Waiting `LOCK_WAIT` without one fails (`PoolTimeout`), unless the
        queue for them moves: then the wait is a queue behind other changes' REST writes, not the
        database, and it goes on (a burst of changes longer than `LOCK_WAIT` × the REST client's
        pace was answered "can't record commands" with the database fine). It moves when a
        connection was handed out or back here during the wait, or a holder left its block (its
        connection is on its way back). A count of those held here at the wait's end missed one
        on its way from a holder to the next, or back through the pool for a change whose wait
        had just ended: in a burst, most changes failed so. And while every connection is held by
        a holder here in its block (a write, a rate limit's wait), or waiting on the server for a
        lock another replica's holder holds across its own write, for no longer than a holder may
        (`LOCK_HELD_MAX`): failing after `LOCK_WAIT` there answered "can't record commands" with
        the database fine, behind another replica's slow writes. A replica that stalled holding
        those locks (frozen, or cut off while its server sessions live on) holds the change that
        long, not as long as the stall lasts. Otherwise (holders' releases the database does not
        answer) the change fails as when the database does not answer. In an outage, a change
        fails `LOCK_WAIT` after the last connection was handed back (at most twice that)."""
        # One request, kept in the pool's queue for the whole wait: ended and asked again each
        # `LOCK_WAIT`, it went to the back of the queue, behind every change that came since (in a
        # long burst, the first to ask was served last).
        getting = asyncio.ensure_future(self._pool.getconn(timeout=_QUEUED_FOR_EVER))
        try:
            while not (await asyncio.wait({getting}, timeout=LOCK_WAIT))[0]:
                quiet = time.monotonic() - self._moved
                full = self._taken >= self._pool.max_size
                busy = bool(self._holders) or self._locking > 0  # in their blocks, or behind others'
                if not (quiet < LOCK_WAIT or (full and busy and quiet < LOCK_HELD_MAX)):
                    raise PoolTimeout("no lock connection: the queue for them stopped moving")
                log.info("state.lock_queued", where=self._where, waited=LOCK_WAIT, held=self._taken)
        except BaseException:
            # Its end (cancelled, or failed here): a connection handed to it meanwhile goes back.
            if not getting.cancel() and not getting.cancelled() and getting.exception() is None:
                await self._pool.putconn(getting.result())
            raise
        conn = getting.result()
        self._taken += 1
        self._moved = time.monotonic()
        return conn

    async def flush_deferred(self) -> None:
        """Run now, each on its own, the statements deferred to the release of the current task's
        holds: a state write the holder makes under the lock (an audit row, a timer) is never
        stored before them (the journal's verified mark must not come after the audit row)."""
        task = asyncio.current_task()
        for holder, held in list(self._holders.values()):
            if holder is task and held.deferred:
                asked = list(held.deferred)
                held.deferred.clear()
                statements = list(asked)
                if held.wrote:
                    # The pending mark first: the verified mark alone would clear the intent that
                    # stands for the write while the record still showed the write before it (a
                    # kill before the release, and a read older than this write would be trusted).
                    # The record itself is stored by the release, in the lock's transaction.
                    statements.insert(0, (_MARK_PENDING, (held.integration_id,)))
                try:
                    await self._run_alone(statements, quietly=False)
                except StateUnavailable:
                    # Not stored (as far as anyone can tell): left to the release, as if never
                    # flushed. The holder's own statement is not run (this raises), and a holder
                    # that goes on without it must not lose them (the verified mark would then
                    # be missing beside the record of its write).
                    held.deferred[:0] = asked
                    raise

    async def _run_alone(self, statements: Sequence[tuple[str, Sequence[Any]]], *, quietly: bool) -> None:
        """Statements committed outside the lock's transaction (deferred ones whose release was lost,
        a pending mark), each on its own;
        `StateUnavailable` if they cannot be stored either (unless the block is already failing:
        its own error is the one to tell)."""
        try:
            cancels = _cancels()
            async with self._statements.connection() as conn:
                _still_running(cancels)
                async with _closed_on_error(conn), conn.pipeline():
                    for sql, params in statements:
                        await conn.execute(sql, params if params else None)
                _returned[conn] = time.monotonic()
        except _DOWN as exc:
            if not quietly:
                raise _unavailable(self._where, exc) from None
            log.warning("state.deferred_lost", where=self._where, statements=len(statements))

    async def _mark_pending(self, integration_id: str) -> None:
        await self._run_alone([(_MARK_PENDING, (integration_id,))], quietly=False)


def _cancels() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _still_running(cancels_before: int) -> None:
    """Raise `CancelledError` if the task was cancelled while it waited for a pooled connection.
    psycopg_pool waits with `asyncio.wait_for`, which on Python 3.11 drops a cancellation that
    arrives together with the connection (CPython gh-86296): the task would go on as if never
    cancelled (a scheduler stopped at shutdown went back to sleep, and the shutdown hung)."""
    if _cancels() > cancels_before:
        raise asyncio.CancelledError


def read_key(url: str, name: str) -> bytes:
    """A secret of the store (the message-id key), read without changing anything (tools)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT value FROM secrets WHERE name = %s", (name,)).fetchone()
    except psycopg.Error as exc:
        raise ConfigError(f"BOT_STATE_URL: cannot read the message id key of {where_of(url)}: {exc}") from None
    if row is None:
        raise ConfigError(f"BOT_STATE_URL: {where_of(url)} has no message id key yet")
    return bytes(row[0])


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresDatabase", "SharedIntegrationLocks", "read_key", "where_of"]
