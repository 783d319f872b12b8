"""A timed disable left alone (changed by someone) or given up (refused for good) when it is due,
with the state database failing as its ending is recorded, or another replica ending the same
row at the same moment: after the scheduler's retry, one audit row and one notice, never an audit
row for an ending that did not happen (bot/incident/timers.py `_skip`, `_fail`).

On the replicas' rig (tests/bot/incident/test_timer_replicas.py), on SQLite and PostgreSQL. The
database's failure is made where each backend makes it: on PostgreSQL by the server, a trigger
failing the audit row's insert once as a row lock waited for too long fails (SQLSTATE 55P03, the
store's `StateBusy`); on SQLite by its connection, once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.errors import IntegrationNotFound, StateUnavailable
from bot.incident.scheduler import RetryPolicy
from bot.state.sqlite import SqliteDatabase
from bot.state.timer_states import TimerState
from tests.bot.incident.test_timer_replicas import Cluster, Replica, cluster_on, timed_disable

ENDINGS = {"overridden": "re-enable-skipped", "failed": "re-enable-failed"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    where = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else str(tmp_path / "state.sqlite3")
    )
    async with cluster_on(request.param, where) as found:
        yield found


class _FailingConnection:
    """A SQLite connection whose insert of an audit row of `action` fails once, as a database
    gone away fails a statement."""

    def __init__(self, real: sqlite3.Connection, action: str) -> None:
        self.real = real
        self.action = action
        self.failed = False

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if not self.failed and sql.startswith("INSERT INTO audit") and self.action in params:
            self.failed = True
            raise StateUnavailable("test database", "the database went away")
        return self.real.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@asynccontextmanager
async def audit_row_fails_once(cluster: Cluster, replica: Replica, action: str) -> AsyncIterator[None]:
    """The next insert of an audit row of `action` fails (the statements of its transaction undone)."""
    if cluster.backend == "postgresql":
        async with await psycopg.AsyncConnection.connect(cluster.where, autocommit=True) as conn:
            # A sequence: not undone with the failing transaction, so it fails only once.
            await conn.execute("CREATE SEQUENCE audit_fails")
            await conn.execute(
                "CREATE FUNCTION audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF nextval('audit_fails') = 1 THEN"
                " RAISE EXCEPTION 'the row stayed locked' USING ERRCODE = '55P03'; END IF;"
                " RETURN NEW; END $$"
            )
            await conn.execute(
                "CREATE TRIGGER audit_fails BEFORE INSERT ON audit FOR EACH ROW"
                f" WHEN (NEW.action = '{action}') EXECUTE FUNCTION audit_fails()"
            )
        yield
        return
    database = replica.state.database
    assert isinstance(database, SqliteDatabase)
    real = database._db
    database._db = _FailingConnection(real, action)  # type: ignore[assignment]
    try:
        yield
    finally:
        database._db = real


def ending_of(cluster: Cluster, hook: str, kind: str) -> None:
    """What makes the due timer end as `kind`."""
    if kind == "overridden":
        cluster.sandbox.update_integration(hook, {"alias": "by hand", "_updatedAt": datetime.now(UTC)})
    else:  # nobody may write it any more, the bot included: refused for good
        cluster.sandbox.set_permission_roles("manage-incoming-integrations", [])
        cluster.sandbox.set_permission_roles("manage-own-incoming-integrations", [])


@pytest.mark.parametrize("kind", ["overridden", "failed"])
async def test_an_ending_whose_audit_row_fails_is_recorded_and_told_once_when_tried_again(
    cluster: Cluster, kind: str
) -> None:
    """Was: the row was ended first, then its audit row failed: the scheduler (which retries on
    `StateUnavailable`) found the row ended and did nothing: no audit row, no notice, for good."""
    a = await cluster.replica()
    timer = await timed_disable(cluster, through=a)
    ending_of(cluster, timer.integration_id, kind)
    cluster.advance_to(timer.due_at)
    async with audit_row_fails_once(cluster, a, ENDINGS[kind]):
        await a.scheduler.run_due()  # fails: put aside for a retry
        assert await cluster.endings(a.state) == [] and cluster.notices() == []
        cluster.advance_to(timer.due_at + RetryPolicy().longest)
        await a.scheduler.run_due()  # the retry

    assert await cluster.endings(a.state) == [ENDINGS[kind]]
    (notice,) = cluster.notices()
    assert "was due back on" in notice["msg"] if kind == "overridden" else "could not turn" in notice["msg"]
    ended = await a.state.timers.get(timer.id)
    assert ended is not None and ended.state is TimerState(kind)
    assert cluster.doc(timer.integration_id)["enabled"] is False
    assert cluster.updates() == 0


async def test_a_row_another_replica_ends_first_gets_no_audit_row_of_the_ending_that_did_not_happen(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finds the integration deleted (read before its lock: no lock held) while B ends the same
    row early: B's ending stands, A records nothing and tells nothing."""
    a, b = await cluster.replica(), await cluster.replica()
    timer = await timed_disable(cluster, through=a)
    cluster.sandbox.delete_integration(timer.integration_id)
    cluster.advance_to(timer.due_at)

    @asynccontextmanager
    async def ended_by_b_meanwhile(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        assert await b.timers.end_early(timer, "disabled for good") is not None
        raise IntegrationNotFound(timer.integration_id)
        yield  # pragma: no cover

    monkeypatch.setattr(a.timers._integrations, "editing", ended_by_b_meanwhile)
    assert await a.timers.expire(timer) is None

    assert await cluster.endings(a.state) == [] and cluster.notices() == []
    ended = await a.state.timers.get(timer.id)
    assert ended is not None and ended.state is TimerState.CANCELLED and ended.end_note == "disabled for good"
