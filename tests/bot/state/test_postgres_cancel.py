"""A statement waiting for a pooled PostgreSQL connection stops when its task is cancelled, even
when the cancellation arrives just as a connection is handed to it.

psycopg_pool waits for a connection with `asyncio.wait_for`, which on Python 3.11 returns the
result instead of raising when the cancellation and the result arrive together (CPython
gh-86296): the statement then ran, and the cancelled task went on as if nothing had happened (a
scheduler being stopped at shutdown went back to sleep, and the shutdown waited for it forever).
The test cancels at every step of the hand-over, so the moment is always hit.
"""

from __future__ import annotations

import asyncio

from bot.state.postgres import STATEMENT_POOL, PostgresDatabase
from bot.state.store import StateStore


async def test_a_statement_cancelled_while_a_connection_is_handed_to_it_is_cancelled(postgres_url: str) -> None:
    state = await StateStore.connect(postgres_url)
    database = state.database
    assert isinstance(database, PostgresDatabase)
    pool = database._statements
    ran: list[int] = []
    try:
        held = [await pool.getconn() for _ in range(STATEMENT_POOL)]  # every connection busy
        for steps in range(12):
            task = asyncio.create_task(database.rows("SELECT 1"))
            for _ in range(200):  # until it waits for a connection
                await asyncio.sleep(0)
                if pool.get_stats().get("requests_waiting", 0) or task.done():
                    break
            assert not task.done()
            await pool.putconn(held.pop())  # handed to the waiting statement...
            for _ in range(steps):
                await asyncio.sleep(0)
            finished_first = task.done()
            task.cancel()  # ...while its task is being cancelled
            await asyncio.wait({task})
            if not finished_first and not task.cancelled():
                ran.append(steps)
            held.append(await pool.getconn())
        for conn in held:
            await pool.putconn(conn)
    finally:
        await state.close()
    assert ran == []
