"""An answered command's book-keeping: its audit row, then its claim's close, sent together (one
round trip on PostgreSQL). Through the running bot (in-process) against the sandbox: a claim is
never closed without the row, and when the two cannot be stored the claim stays open until they
are (a replica killed meanwhile leaves the row to the recovery of its command)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from reliability_support import World, call, running_bot, settings_for, until, world

from bot.errors import StateBusy, StateUnavailable
from bot.state.sqlite import SqliteDatabase
from bot.state.store import AuditRecord, StateStore


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


async def eventually(read: Callable[[], Awaitable[Any]], holds: Callable[[Any], bool], what: str) -> None:
    """Until what `read` returns `holds` (a functional deadline of 15 s)."""
    deadline = asyncio.get_running_loop().time() + 15.0
    while not holds(await read()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def closed(state: StateStore, message_id: str) -> None:
    await eventually(lambda: state.message_status(message_id), lambda status: status == "done", "the close")


@asynccontextmanager
async def answering(w: World, tmp_path: Path) -> AsyncIterator[tuple[StateStore, list[dict[str, Any]]]]:
    """The running bot's state store, and its log events as they come."""
    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _task):
            assert bot.state is not None
            yield bot.state, captured


async def disabled_unsettled(w: World, captured: list[dict[str, Any]], integration_id: str) -> dict[str, Any]:
    """`disable` of the integration, answered, its book-keeping waiting for the database."""
    message = await call(w.control.post_message, "admin", "ops", f"!integration disable {integration_id}")
    await until(lambda: any(e.get("event") == "command.unsettled" for e in captured), timeout=15)
    return message


async def test_a_claim_is_closed_with_its_audit_row_and_stays_open_while_that_fails(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await call(w.control.create_incoming_integration, "first", channel="#ops", created_by="admin")
    second = await call(w.control.create_incoming_integration, "second", channel="#ops", created_by="admin")
    failing = [False]
    original = StateStore.record_finishing

    async def record_finishing(self: StateStore, record: AuditRecord, outcome: str) -> Any:
        if failing[0]:
            raise StateUnavailable("test", "the database restarted")
        return await original(self, record, outcome)

    monkeypatch.setattr(StateStore, "record_finishing", record_finishing)
    async with answering(w, tmp_path) as (state, captured):
        done = await call(w.control.post_message, "admin", "ops", f"!integration disable {first['_id']}")
        await closed(state, done["_id"])
        assert [r.message_id for r in await state.history(integration_ids=[first["_id"]])] == [done["_id"]]

        failing[0] = True
        held = await disabled_unsettled(w, captured, second["_id"])
        assert await state.message_status(held["_id"]) == "claimed"
        assert await state.history(integration_ids=[second["_id"]]) == []
        failing[0] = False  # the database answers again: the row, then the close
        await closed(state, held["_id"])
        assert [r.message_id for r in await state.history(integration_ids=[second["_id"]])] == [held["_id"]]


async def test_a_row_held_by_a_stalled_replica_is_no_outage_and_the_claim_is_closed_once_it_is_free(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row and the close gave up waiting for a row another replica's open transaction holds
    (PostgreSQL's `lock_timeout`: `StateBusy`). The database answers: the bot stays ready, reports
    no outage, and closes the claim with its row at its next round, once the row is free."""
    target = await call(w.control.create_incoming_integration, "busy", channel="#ops", created_by="admin")
    failing = [True]
    closes: list[str] = []  # the closes tried while the row is held
    original, finish = StateStore.record_finishing, StateStore.finish_message

    async def record_finishing(self: StateStore, record: AuditRecord, outcome: str) -> Any:
        if failing[0]:
            raise StateBusy("test", "a row stayed locked by another transaction")
        return await original(self, record, outcome)

    async def finish_message(self: StateStore, message_id: str, outcome: str, **options: Any) -> bool:
        if failing[0]:
            closes.append(message_id)
            raise StateBusy("test", "a row stayed locked by another transaction")
        return await finish(self, message_id, outcome, **options)

    monkeypatch.setattr(StateStore, "record_finishing", record_finishing)
    monkeypatch.setattr(StateStore, "finish_message", finish_message)
    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _task):
            assert bot.state is not None
            held = await disabled_unsettled(w, captured, target["_id"])
            # Its close tried again at the next round (the claims keeper's), which fails alike.
            await until(lambda: len(closes) >= 2, timeout=15)
            assert await bot.state.message_status(held["_id"]) == "claimed"
            assert bot.probe().state_db_open
            assert not any(e.get("event") == "state.unavailable" for e in captured)
            failing[0] = False
            await closed(bot.state, held["_id"])
            assert [r.message_id for r in await bot.state.history(integration_ids=[target["_id"]])] == [held["_id"]]


@pytest.mark.parametrize("stored", [1, 2], ids=["the-row-alone", "the-row-and-the-close"])
async def test_a_round_trip_cut_short_leaves_the_claim_open_or_completes_it_later(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: int
) -> None:
    """The database lost part way through the row and the close (SQLite commits each statement on
    its own): with the row alone stored the claim stays open until the close is stored, the row
    kept once; with the row and the close but not the dropping of its write intents, those are
    dropped once the database answers. Never a claim closed without its row."""
    target = await call(w.control.create_incoming_integration, "cut", channel="#ops", created_by="admin")
    failing = [True]
    original = SqliteDatabase.batch_rows

    async def batch_rows(self: SqliteDatabase, statements: Any) -> Any:
        if failing[0] and statements and str(statements[0][0]).startswith("INSERT INTO audit"):
            await original(self, statements[:stored])
            raise StateUnavailable("test", "the database went away mid-way")
        return await original(self, statements)

    monkeypatch.setattr(SqliteDatabase, "batch_rows", batch_rows)
    async with answering(w, tmp_path) as (state, captured):
        held = await disabled_unsettled(w, captured, target["_id"])
        rows = await state.history(integration_ids=[target["_id"]])
        assert [r.message_id for r in rows] == [held["_id"]]
        assert await state.message_status(held["_id"]) == ("claimed" if stored == 1 else "done")
        assert await state.intents(held["_id"]) != []  # its journal, still to drop
        failing[0] = False
        await closed(state, held["_id"])
        await eventually(lambda: state.intents(held["_id"]), lambda intents: intents == [], "its journal dropped")
        assert [r.id for r in await state.history(integration_ids=[target["_id"]])] == [rows[0].id]
