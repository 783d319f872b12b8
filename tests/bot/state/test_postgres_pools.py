"""The PostgreSQL pools: after a database restart, when closed mid-check, and in a burst of changes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg
import pytest
import structlog

from bot.errors import StateUnavailable
from bot.integrations.locks import Held
from bot.state import postgres
from bot.state.postgres import FRESH, LOCK_POOL, LOCK_WAIT, PostgresDatabase
from bot.state.store import StateStore
from tests.postgres_support import PostgresServer


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[PostgresDatabase]:
    """A database with the statements' time-out short (0.5 s): what waits longer than that waits
    for a lock connection, not for a statement."""
    opened = PostgresDatabase(postgres_url, statement_timeout=0.5)
    await opened._open(within=10)
    await opened._migrate()
    yield opened
    await opened.close()


async def test_after_a_database_restart_the_next_lock_works_within_a_second_or_so(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """Every idle connection is broken by a restart. psycopg_pool checks the one it is about to hand
    out, and after a failed check waits (1 s, then longer) before trying the next: with a pool's
    worth of broken connections the next lock waited past its 5 s and its command was answered
    "can't record commands" well after the database was back. That was so after any burst that
    had grown the lock pool (one connection was kept when idle, and it then grew on demand)."""
    state = await StateStore.connect(postgres_url)
    database = state.database
    assert isinstance(database, PostgresDatabase)
    try:

        async def change(number: int) -> None:
            async with database.locks.hold(f"before-{number}"):
                await asyncio.sleep(0.02)

        await asyncio.gather(*(change(number) for number in range(LOCK_POOL)))  # a burst: every connection used
        await asyncio.sleep(FRESH)  # (one used within FRESH of the restart is not checked: its statement fails)
        postgres_server.restart()
        started = time.monotonic()
        async with database.locks.hold("after"):
            pass
        assert time.monotonic() - started < 3.0
        assert await database.rows("SELECT 1") == [(1,)]
    finally:
        await state.close()


async def _backends(url: str) -> int:
    """Server processes of `url`'s database, other than the asking one."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def test_closing_the_store_while_its_pools_are_checked_leaves_no_connection_open(postgres_url: str) -> None:
    """A failed check has both pools check their idle connections (`PostgresDatabase._check`):
    psycopg_pool takes them all out of the pool and checks them one by one. Cancelled then (the
    store closing), it neither closes nor returns the one it is checking: that server process
    stayed open as long as the bot ran."""
    state = await StateStore.connect(postgres_url)
    database = state.database
    assert isinstance(database, PostgresDatabase)
    broken = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    await broken.close()
    with pytest.raises(psycopg.OperationalError):
        await database._check(broken)  # what a pool does with the connection it is about to hand out
    pool = database._statements
    # One turn of the loop at a time: the check is a few round trips long, and `close` must come
    # while it has the statements' connections out of their pool.
    while pool.get_stats()["pool_available"]:  # noqa: ASYNC110
        await asyncio.sleep(0)
    await state.close()
    assert await until_async(lambda: _backends(postgres_url), lambda left: left == 0)


async def until_async(read: Callable[[], Awaitable[int]], holds: Callable[[int], bool]) -> bool:
    """Whether `read()` comes to satisfy `holds` within 5 s (a server's processes end a moment after their client)."""
    deadline = time.monotonic() + 5
    while not holds(value := await read()):
        if time.monotonic() > deadline:
            return holds(value)
        await asyncio.sleep(0.05)
    return True


async def test_changes_queued_behind_busy_locks_wait_for_a_connection_instead_of_failing(
    database: PostgresDatabase,
) -> None:
    """More changes at once than the lock pool has connections, each holding its lock across a slow
    Rocket.Chat write: the last ones wait longer than a statement may for their connection. They
    waited `statement_timeout` and failed with "can't record commands" while the database was
    fine (a review measured 46 of 150 concurrent changes failing with 200 ms writes behind the
    REST client's 4 connections). A change now waits up to `LOCK_WAIT` for its connection."""

    async def change(number: int) -> None:
        async with database.locks.hold(f"integration-{number}"):
            await asyncio.sleep(0.3)  # the slow write the lock is held for

    waves = 4  # the last wave waits 0.9 s for a connection
    await asyncio.gather(*(change(number) for number in range(waves * LOCK_POOL)))  # none fails


async def test_a_burst_longer_than_the_lock_wait_is_queued_not_failed_while_the_database_answers(
    database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of changes, each holding its lock across a slow Rocket.Chat write: those behind the
    lock pool's connections wait their turn for longer than `LOCK_WAIT`. They were answered "can't
    record commands" then, with the database fine (~600 concurrent changes with 200 ms writes).
    While every connection is held by a change of this process, waiting is queueing: the change
    goes on waiting. Here `LOCK_WAIT` is 0.5 s and the last wave waits 0.9 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)

    async def change(number: int) -> None:
        async with database.locks.hold(f"integration-{number}"):
            await asyncio.sleep(0.3)  # the slow write the lock is held for

    await asyncio.gather(*(change(number) for number in range(4 * LOCK_POOL)))  # none fails


async def test_a_burst_of_short_writes_many_times_the_pool_is_queued_not_failed(
    database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of many more changes than lock connections, with short writes: waits ending every
    moment, connections handed back every moment. A change whose wait ended while a connection
    was on its way from one holder to the next (handed to a waiter that had not run yet, or
    going back through the pool for one whose wait had just ended) counted fewer than every
    connection held here, and was answered "can't record commands" with the database fine
    (most of them, measured: ~850 of 1,500 with `LOCK_WAIT` 0.3 s and 10–30 ms writes; 1,282
    before changes queued at all). Connections handed out or back during the wait are a queue
    that moves. Here `LOCK_WAIT` is 0.3 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.3)
    pace = random.Random(1)

    async def change(number: int) -> None:
        await asyncio.sleep(pace.random() * 0.3)  # arriving over the first 0.3 s
        async with database.locks.hold(f"integration-{number}"):
            await asyncio.sleep(0.01 + pace.random() * 0.02)  # the write the lock is held for

    await asyncio.gather(*(change(number) for number in range(1000)))  # none fails


async def test_a_change_still_fails_after_the_lock_wait_when_the_database_is_away(
    postgres_url: str, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queueing behind busy locks waits on; a database away does not: with no connection held by
    a change, a change waiting for one is answered "can't record commands" after `LOCK_WAIT`."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 1.0)
    state = await StateStore.connect(postgres_url)
    try:
        await asyncio.sleep(FRESH)
        postgres_server.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StateUnavailable):
                async with state.database.locks.hold("during"):
                    pass
            assert time.monotonic() - started < 1.0 + 3.0
        finally:
            postgres_server.start()
    finally:
        await state.close()


async def test_a_change_waiting_for_a_lock_connection_through_an_outage_gets_one_once_the_database_is_back(
    postgres_url: str, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A change waits up to `LOCK_WAIT` (30 s) for a lock connection. When the database went away
    while it waited, psycopg_pool gave up reconnecting after its `reconnect_timeout` (5 s) and tried
    again only for the next change asking for a connection: the waiting one got none once the
    database was back, and was answered "can't record commands" at the end of its 30 s while the
    database had been back for long (measured: back at 8 s, statements working at 8.1 s, the change
    answered at 30.1 s)."""
    state = await StateStore.connect(postgres_url)
    database = state.database
    assert isinstance(database, PostgresDatabase)
    pool = database._lock_pool
    try:
        async with database.locks.hold("before"):
            pass
        await asyncio.sleep(FRESH)  # (one used within FRESH of the outage is not checked: its statement fails)
        postgres_server.stop()

        async def change() -> float:
            async with database.locks.hold("during"):
                return time.monotonic()

        waiting = asyncio.create_task(change())
        # An outage longer than that: the lock pool gave up reconnecting while the change waited.
        deadline = time.monotonic() + LOCK_WAIT / 2
        while not any("reconnection attempt in pool 'locks' failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline and not waiting.done()
            await asyncio.sleep(0.1)
        assert pool.get_stats()["requests_waiting"] == 1
        postgres_server.start()
        back = time.monotonic()
        held = await waiting  # raised StateUnavailable at LOCK_WAIT
        # Within psycopg_pool's reconnection back-off (1, 2, 4 s between attempts) of the database.
        assert held - back < 6.0
    finally:
        await state.close()


async def test_a_change_fails_in_bounded_time_when_every_lock_connection_waits_on_a_stalled_replica(
    database: PostgresDatabase, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica stalled (frozen, or cut off from the database while its server sessions
    live on) holding the locks of `LOCK_POOL` integrations: this replica's changes of those
    integrations take every lock connection and wait on the database for those locks, and the
    queue moves no more. A change of any other integration must not wait on without an answer for
    as long as the stall lasts: it fails once nothing was handed back for longer than a holder may
    hold its lock (`LOCK_HELD_MAX`; a replica's holder, here or elsewhere, may write that long).
    Here `LOCK_WAIT` is 0.5 s and `LOCK_HELD_MAX` 1.5 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)
    monkeypatch.setattr(postgres, "LOCK_HELD_MAX", 1.5)
    stalled = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    try:
        await stalled.execute("BEGIN")
        for number in range(LOCK_POOL):
            await stalled.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (postgres._INTEGRATION_LOCK + f"stalled-{number}",),
            )
        entered = 0

        async def blocked(number: int) -> None:
            nonlocal entered
            async with database.locks.hold(f"stalled-{number}"):
                entered += 1

        async def another() -> None:
            async with database.locks.hold("another"):
                pass

        waiting = [asyncio.create_task(blocked(number)) for number in range(LOCK_POOL)]
        try:
            async with asyncio.timeout(10):  # every lock connection is out, waiting on the server
                while await _waiting_for_locks(postgres_url) < LOCK_POOL:  # noqa: ASYNC110 (the server's state)
                    await asyncio.sleep(0.02)
            started = time.monotonic()
            with pytest.raises(StateUnavailable):  # hung, it fails at the test's own bound (TimeoutError)
                await asyncio.wait_for(another(), 1.5 + 5.0)
            assert time.monotonic() - started < 1.5 + 0.5 * 2 + 1.0
            assert entered == 0  # still stalled: none of them had its lock
        finally:
            await stalled.execute("COMMIT")  # the stalled replica goes on: they all get theirs
            await asyncio.gather(*waiting)
        assert entered == LOCK_POOL
    finally:
        await stalled.close()


async def test_a_change_waits_on_past_the_lock_wait_behind_holders_each_slower_than_it(
    database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lock connection held here by a change writing for longer than `LOCK_WAIT` (Rocket.Chat
    slow to answer, or rate-limiting: a wait of up to 60 s): none is handed back during a whole
    wait, yet the holders have their locks and are writing. The change behind them waits its
    turn, as behind faster ones. Here `LOCK_WAIT` is 0.5 s and the writes take 1.2 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)

    async def slow_write(_number: int, _held: Held) -> None:
        await asyncio.sleep(1.2)  # the slow write the lock is held for

    holders, go = await _every_connection_held(database, slow_write, prefix="slow")
    go.set()
    async with database.locks.hold("behind"):  # waited ~1.2 s: not failed
        pass
    await asyncio.gather(*holders)


async def test_a_change_fails_after_the_lock_wait_when_the_database_stops_answering_every_holder(
    database: PostgresDatabase, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lock connection held here, and the database stops answering them (its processes
    frozen: a storage stall holds every COMMIT, a paused server): the holders' releases hang,
    none ends. A change waiting behind them waited on without an answer for as long as that
    lasted, taking it for a queue behind REST writes; it is answered "can't record commands"
    after `LOCK_WAIT`, as when the database does not answer. Here `LOCK_WAIT` is 0.5 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)
    holders, go = await _every_connection_held(database, _nothing)
    async with _frozen(postgres_url, "state = 'idle in transaction'") as frozen:
        assert len(frozen) == LOCK_POOL
        go.set()  # their releases are sent, and not answered
        started = time.monotonic()
        with pytest.raises(StateUnavailable):  # hung, it fails at the test's own bound (TimeoutError)
            await asyncio.wait_for(_another(database), 0.5 + 5.0)
        assert time.monotonic() - started < 0.5 * 3 + 1.0
        assert not any(task.done() for task in holders)
    await asyncio.gather(*holders)


async def test_a_change_behind_holders_the_database_stopped_answering_in_their_writes_fails_in_bounded_time(
    database: PostgresDatabase, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lock connection held here by a change inside its block, storing its pending mark when
    the database stops answering (its processes frozen): none of them ends while that lasts.
    Holders in their blocks are taken for writes to Rocket.Chat (which end within their time-outs
    and rate limits' waits), so the change behind them waits on, but no longer than a holder can
    take (`LOCK_HELD_MAX`); it waited on without an answer for as long as the database did not
    answer. Here `LOCK_WAIT` is 0.5 s and `LOCK_HELD_MAX` 1.5 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)
    monkeypatch.setattr(postgres, "LOCK_HELD_MAX", 1.5)

    async def pending_mark(_number: int, held: Held) -> None:
        await held.writing()  # its pending mark, a statement of its own under the lock

    holders, go = await _every_connection_held(database, pending_mark)
    async with _frozen(postgres_url, "pid <> pg_backend_pid()"):
        go.set()
        started = time.monotonic()
        with pytest.raises(StateUnavailable):  # hung, it fails at the test's own bound (TimeoutError)
            await asyncio.wait_for(_another(database), 1.5 + 5.0)
        assert time.monotonic() - started < 1.5 + 0.5 * 2 + 1.0
        assert not any(task.done() for task in holders)
    await asyncio.gather(*holders)


async def _nothing(_number: int, _held: Held) -> None:
    return None


async def _another(database: PostgresDatabase) -> None:
    """A change of an integration nobody else is changing."""
    async with database.locks.hold("another"):
        pass


async def _every_connection_held(
    database: PostgresDatabase, then: Callable[[int, Held], Awaitable[None]], *, prefix: str = "frozen"
) -> tuple[list[asyncio.Task[None]], asyncio.Event]:
    """`LOCK_POOL` holders of as many integrations (`<prefix>-<number>`), every one holding its
    lock (and so a lock connection) on return; each does `then(number, held)` under its lock once
    the event returned is set."""
    holding = 0
    all_holding, go = asyncio.Event(), asyncio.Event()

    async def holder(number: int) -> None:
        nonlocal holding
        async with database.locks.hold(f"{prefix}-{number}") as held:
            holding += 1
            if holding == LOCK_POOL:
                all_holding.set()
            await go.wait()
            await then(number, held)

    holders = [asyncio.create_task(holder(number)) for number in range(LOCK_POOL)]
    await all_holding.wait()
    return holders, go


@asynccontextmanager
async def _frozen(url: str, which: str) -> AsyncIterator[list[int]]:
    """The server processes of `url`'s database that match `which` (a condition on
    `pg_stat_activity`), stopped (SIGSTOP) for the block: they answer nothing meanwhile."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cursor = await admin.execute(f"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND {which}")
        pids = [int(row[0]) for row in await cursor.fetchall()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def _waiting_for_locks(url: str) -> int:
    """Advisory locks asked for on `url`'s database and not granted yet."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def test_a_change_queued_past_the_lock_wait_keeps_its_place_in_the_queue(
    database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lock connection held by a slow write; a change queues for one, then others behind it.
    Its wait outlasts `LOCK_WAIT` and goes on (the queue is a queue): it must still be served
    before the changes that queued after it. Was: each `LOCK_WAIT`, its wait ended and began again
    at the back of the pool's queue, behind every change that came since: in a long burst, the
    first to ask was answered last (and again behind the newcomers every `LOCK_WAIT`). Here
    `LOCK_WAIT` is 0.5 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)
    releases = [asyncio.Event() for _ in range(LOCK_POOL)]
    served: list[str] = []

    async def until_released(number: int, _held: Held) -> None:
        await releases[number].wait()

    one_served = asyncio.Event()

    async def change(name: str) -> None:
        async with database.locks.hold(name):
            served.append(name)
            one_served.set()

    holders, go = await _every_connection_held(database, until_released, prefix="slow")
    go.set()
    with structlog.testing.capture_logs() as captured:
        first = asyncio.create_task(change("first"))
        await asyncio.sleep(0.3)  # the others come later, within its first `LOCK_WAIT`
        later = [asyncio.create_task(change(f"later-{number}")) for number in range(3)]
        async with asyncio.timeout(5):
            while not any(e.get("event") == "state.lock_queued" for e in captured):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the first one's wait went past `LOCK_WAIT`
    releases[0].set()  # one connection handed back: the queue's first change has it
    await one_served.wait()
    for release in releases:
        release.set()
    await asyncio.gather(first, *later, *holders)
    assert served[0] == "first", served


async def test_a_change_behind_lock_connections_waiting_on_another_replicas_slow_writes_waits_its_turn(
    database: PostgresDatabase, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica (alive, not stalled) holds the locks of `LOCK_POOL` integrations, each
    across a write Rocket.Chat is slow to answer (a rate limit's wait of up to 60 s): this
    replica's changes of those integrations take every lock connection and wait on the database
    for those locks, which come one after the other. A change of any other integration here is
    behind a queue that moves, with the database fine; it must not be answered "can't record
    commands". Here `LOCK_WAIT` is 0.5 s and the other replica's writes take 1.2 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)
    here = database
    other = PostgresDatabase(postgres_url, statement_timeout=0.5)
    await other._open(within=10)
    try:

        async def slow_write(_number: int, _held: Held) -> None:
            await asyncio.sleep(1.2)  # the other replica's slow write

        async def behind(number: int) -> None:  # this replica's changes of the same integrations
            async with here.locks.hold(f"shared-{number}"):
                pass

        theirs, go = await _every_connection_held(other, slow_write, prefix="shared")
        go.set()
        ours = [asyncio.create_task(behind(number)) for number in range(LOCK_POOL)]
        async with asyncio.timeout(10):  # every lock connection here waits on the server
            while await _waiting_for_locks(postgres_url) < LOCK_POOL:  # noqa: ASYNC110 (the server's state)
                await asyncio.sleep(0.02)
        async with here.locks.hold("another"):  # waited ~1 s: its turn, not a failure
            pass
        await asyncio.gather(*theirs, *ours)
    finally:
        await other.close()
