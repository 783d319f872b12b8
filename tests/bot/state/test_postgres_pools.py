"""The PostgreSQL pools' sizes: a burst of changes finds its integration locks' connections open.

Before, the lock pool opened one connection at start and grew to 24 during a burst, one new
connection at a time (a new server process each, 10–20 ms apiece, with up to 63 commands waiting
in the benchmark's burst), and kept them idle for ten minutes after. Now its connections are
opened with the store, and there are as many as keep the REST client's connections busy.
"""

from __future__ import annotations

import asyncio
import time

from bot.state.postgres import FRESH, LOCK_POOL, PostgresDatabase
from bot.state.store import StateStore
from tests.postgres_support import PostgresServer


async def test_a_burst_of_changes_opens_no_new_connection_for_its_locks(postgres_url: str) -> None:
    state = await StateStore.connect(postgres_url)
    database = state.database
    assert isinstance(database, PostgresDatabase)
    pool = database._lock_pool
    try:
        assert pool.get_stats()["pool_size"] == LOCK_POOL  # open before the first command
        opened = pool.get_stats()["connections_num"]
        held = 0
        most = 0

        async def change(number: int) -> None:
            nonlocal held, most
            async with database.locks.hold(f"integration-{number}"):
                held += 1
                most = max(most, held)
                await asyncio.sleep(0.02)  # the REST write the lock is held for
                held -= 1

        await asyncio.gather(*(change(number) for number in range(5 * LOCK_POOL)))
        assert most == LOCK_POOL  # every connection used, the rest waited for one
        assert pool.get_stats()["connections_num"] == opened
    finally:
        await state.close()


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
