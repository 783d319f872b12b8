"""`BOT_STATE_PREPARE`: on PostgreSQL the statements a connection runs often are prepared (parsed
and planned once per connection: about a third of the server's CPU per statement), unless turned
off for a transaction-pooling PgBouncer that does not keep track of prepared statements."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from bot.config import Settings
from bot.errors import StateUnavailable
from bot.state.postgres import LOCK_POOL, PREPARE_THRESHOLD, PostgresDatabase
from bot.state.store import StateStore

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("prepare", [True, False])
async def test_claims_are_prepared_unless_turned_off(postgres_url: str, prepare: bool) -> None:
    store = await StateStore.connect(postgres_url, prepare=prepare)
    try:
        for i in range(8):  # one connection: nothing runs concurrently
            assert await store.claim_messages([(f"m{prepare}{i}", "R", NOW)], NOW) == {f"m{prepare}{i}"}
        rows = await store.database.rows(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'WITH wanted %'"
        )
        assert (rows[0][0] > 0) is prepare
    finally:
        await store.close()


def test_the_setting_is_on_by_default_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETCHAT_URL", "https://chat.example.org")
    monkeypatch.setenv("ROCKETCHAT_USER_ID", "bot")
    monkeypatch.setenv("ROCKETCHAT_AUTH_TOKEN", "token")
    assert Settings().bot_state_prepare is True
    monkeypatch.setenv("BOT_STATE_PREPARE", "false")
    assert Settings().bot_state_prepare is False


async def test_a_batch_whose_statement_grows_with_it_is_not_kept_prepared(postgres_url: str) -> None:
    """A batch of claims is one statement whose text grows with the batch (seven values a row, up to
    500 rows): each size is a statement of its own. Prepared once run often enough, every size
    the bursts happened to have was kept by the server on each connection (up to psycopg's 100 a
    connection, about 0.75 MB each for 500 rows: 46 MB of one server process's memory measured
    with every statement prepared at its first run)."""
    store = await StateStore.connect(postgres_url)
    try:
        for burst in range(PREPARE_THRESHOLD + 1):  # bursts whose batches have the same sizes
            for size in range(13, 20):
                claims = [(f"m{burst}-{size}-{i}", "R", NOW) for i in range(size)]
                assert len(await store.claim_messages(claims, NOW)) == size
        database = store.database
        assert isinstance(database, PostgresDatabase)
        kept = [
            (
                await database.rows(
                    "SELECT count(*) FROM pg_prepared_statements"
                    " WHERE statement LIKE 'WITH wanted %' AND cardinality(parameter_types) > 14"
                )
            )[0][0]
            for _connection in range(database._statements.get_stats()["pool_size"])  # each in turn
        ]
        assert kept == [0] * len(kept)
        # One a single command's claim is still prepared (it is run often).
        for run in range(PREPARE_THRESHOLD + 1):
            assert await store.claim_messages([(f"single-{run}", "R", NOW)], NOW) == {f"single-{run}"}
        singles = [
            (
                await database.rows(
                    "SELECT count(*) FROM pg_prepared_statements"
                    " WHERE statement LIKE 'WITH wanted %' AND cardinality(parameter_types) = 7"
                )
            )[0][0]
            for _connection in range(database._statements.get_stats()["pool_size"])
        ]
        assert sum(singles) >= 1
    finally:
        await store.close()


async def test_locks_released_with_and_without_a_write_one_after_another_keep_working(postgres_url: str) -> None:
    """A lock released without a write ended its transaction with ROLLBACK, which makes psycopg
    forget the statements it prepared and send DEALLOCATE ALL before the connection's next one.
    In a pipeline that DEALLOCATE ALL went after the next lock's BEGIN, prepared in it on its first
    run: the connection's lock after next failed ("prepared statement … does not exist"), as a bug
    (a traceback, not "can't record commands"), for every lock taken that way."""
    store = await StateStore.connect(postgres_url)
    database = store.database
    assert isinstance(database, PostgresDatabase)
    try:
        for turn in range(3):  # a pool hands its connections out in turn: each is used in each turn
            for _connection in range(LOCK_POOL):
                async with database.locks.hold("integration") as held:
                    if turn == 1:
                        await held.writing()
                        held.written(f"2026-12-07T12:00:0{turn}.000Z")
        rows = await database.rows("SELECT pending, updated_at FROM integration_writes")
        assert rows == [(False, "2026-12-07T12:00:01.000Z")]
    finally:
        await store.close()


async def test_a_lock_the_server_gave_up_waiting_for_leaves_its_connection_working(postgres_url: str) -> None:
    """A lock transaction's statements after its advisory lock wait for a row `lock_timeout` at
    most (bot/state/postgres.py, "Stalled replicas"): here its release's record of the write, behind
    another transaction that holds the integration's row. The statement fails, its transaction is
    then in error, and ending it (whatever the command) is a ROLLBACK, with what that does to
    psycopg's prepared statements (above). The connection is not used again: the next locks work."""
    admin = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    try:
        store = await StateStore.connect(postgres_url, lock_timeout=0.2)
        database = store.database
        assert isinstance(database, PostgresDatabase)
        try:
            for _connection in range(LOCK_POOL):  # each lock connection prepares its statements
                for _run in range(PREPARE_THRESHOLD):
                    async with database.locks.hold("integration"):
                        pass

            async def written() -> None:
                async with database.locks.hold("integration") as held:
                    await held.writing(journaled=True)
                    held.written("2026-12-07T12:00:00.000Z")

            await admin.execute("BEGIN")
            await admin.execute("INSERT INTO integration_writes (integration_id, pending) VALUES ('integration', true)")
            with pytest.raises(StateUnavailable):
                await written()
            await admin.execute("ROLLBACK")
            for turn in range(3):
                for _connection in range(LOCK_POOL):
                    async with database.locks.hold("integration") as held:
                        if turn == 1:
                            await held.writing()
                            held.written("2026-12-07T12:00:01.000Z")
            rows = await database.rows("SELECT pending, updated_at FROM integration_writes")
            assert rows == [(False, "2026-12-07T12:00:01.000Z")]
        finally:
            await store.close()
    finally:
        await admin.close()


async def test_a_batch_that_fails_on_the_server_leaves_no_connection_that_fails_later(postgres_url: str) -> None:
    """A batch runs in one pipeline: a statement the server rejects makes it skip the rest. When one
    of those skipped ran there twice, at its `PREPARE_THRESHOLD`-th run on the connection, psycopg
    took it as prepared while the server had never seen it: every later run of it on that connection
    failed with "prepared statement does not exist" (not a database outage: a bug's traceback),
    for as long as the pool kept the connection (an hour)."""
    database = PostgresDatabase(postgres_url, statement_timeout=2.0)
    await database._open(within=10)
    try:
        statement = ("SELECT ?::int + 1", (1,))
        for _ in range(PREPARE_THRESHOLD - 1):  # one connection: nothing runs concurrently
            assert await database.rows(*statement) == [(2,)]
        with pytest.raises(psycopg.errors.DivisionByZero):
            await database.batch_rows([("SELECT 1 / 0", ()), statement, statement])
        for _ in range(PREPARE_THRESHOLD + 1):
            assert await database.rows(*statement) == [(2,)]
    finally:
        await database.close()
