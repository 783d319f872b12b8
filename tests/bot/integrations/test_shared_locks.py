"""Two replicas' IntegrationServices on one PostgreSQL (`SharedIntegrationLocks`): a document read
before the lock is trusted only when it already shows the bot's last write through any replica,
so the read-modify-write of one replica never overwrites another's change, and a read that is
current costs no second read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from test_integrations_service import ALL, FakeRocketChat, incoming, rights

from bot.integrations.service import IntegrationService
from bot.rocketchat.models import Integration
from bot.rocketchat.rest import RestClient
from bot.runtime.journal import CommandRun, JournaledIntegrationService, current_command
from bot.state.store import AuditRecord, StateStore, WriteIntent
from bot.state.timer_states import TimerEvent
from bot.state.timer_store import TimerDraft


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[StateStore, StateStore]]:
    a, b = await StateStore.connect(postgres_url), await StateStore.connect(postgres_url)
    yield a, b
    await a.close()
    await b.close()


def replica(server: FakeRocketChat, store: StateStore) -> IntegrationService:
    rest = RestClient(
        "https://chat.example.org", user_id="bot", auth_token="bot-token", transport=httpx.MockTransport(server)
    )
    return IntegrationService(rest, locks=store.locks)


async def edit_held(
    service: IntegrationService, changes: dict[str, Any], *, message_id: str | None = None
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """`service` (as command `message_id`, if given) holds Guggy's lock until the returned event is
    set, then applies `changes`: its task and that event, once the lock is held."""
    holding, go = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        if message_id is not None:
            current_command.set(CommandRun(message_id))
        async with service.editing(await service.resolve("Guggy", rights=rights(*ALL))) as edit:
            holding.set()
            await go.wait()
            await edit.apply(changes, rights=rights(*ALL))

    task = asyncio.create_task(hold())
    await holding.wait()
    return task, go


def disabling(service: IntegrationService, found: Integration, message_id: str) -> asyncio.Task[bool]:
    """Command `message_id` disabling `found` (read before the lock) through `service`: whether it wrote."""

    async def command() -> bool:
        current_command.set(CommandRun(message_id))
        return (await service.set_enabled(found, False, rights=rights(*ALL))).changed

    return asyncio.create_task(command())


async def test_a_read_made_before_another_replicas_write_is_read_again(stores: tuple[StateStore, StateStore]) -> None:
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one, two = replica(server, stores[0]), replica(server, stores[1])
    seen_by_two = await two.resolve("Guggy", rights=rights(*ALL))  # read before one's write
    await one.apply_changes(await one.resolve("Guggy", rights=rights(*ALL)), {"alias": "new"}, rights=rights(*ALL))
    gets = len(server.endpoint_calls("integrations.get"))
    outcome = await two.set_enabled(seen_by_two, False, rights=rights(*ALL))
    # Written from a fresh read: the alias the other replica wrote is kept.
    assert outcome.changed and server.docs["a"]["alias"] == "new" and server.docs["a"]["enabled"] is False
    assert len(server.endpoint_calls("integrations.get")) == gets + 1


async def test_a_read_that_shows_the_last_write_is_trusted_without_a_second_read(
    stores: tuple[StateStore, StateStore],
) -> None:
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one, two = replica(server, stores[0]), replica(server, stores[1])
    await one.apply_changes(await one.resolve("Guggy", rights=rights(*ALL)), {"alias": "new"}, rights=rights(*ALL))
    outcome = await two.set_enabled("Guggy", False, rights=rights(*ALL))  # read after it: current
    assert outcome.changed and server.docs["a"]["alias"] == "new"
    assert server.endpoint_calls("integrations.get") == []


async def test_a_write_never_verified_makes_every_later_read_be_made_again(
    stores: tuple[StateStore, StateStore],
) -> None:
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one, two = replica(server, stores[0]), replica(server, stores[1])

    def stored_but_answered_wrongly(body: dict[str, object]) -> httpx.Response:
        server.store_body(body)
        return httpx.Response(200, json={"integration": {**server.docs["a"], "alias": "garbled"}, "success": True})

    server.on_update = stored_but_answered_wrongly
    with pytest.raises(Exception, match="differs"):
        await one.apply_changes(await one.resolve("Guggy", rights=rights(*ALL)), {"alias": "x"}, rights=rights(*ALL))
    server.on_update = server.store_body
    await two.set_enabled("Guggy", False, rights=rights(*ALL))
    assert len(server.endpoint_calls("integrations.get")) == 1  # pending: not trusted


async def test_a_holder_sees_the_write_committed_while_it_waited_for_the_lock(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Was: the lock and the read of the bot's last write were one statement, whose snapshot is
    taken before the lock wait: a replica waiting while another wrote saw the old record, trusted
    its older read and wrote over the other's change (found by reading the code; shown here)."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)",
        ("i1", "2026-01-01T00:00:00.000Z"),
    )
    holding, go = asyncio.Event(), asyncio.Event()
    seen: list[bool] = []

    async def first() -> None:
        async with one.locks.hold("i1") as held:
            holding.set()
            await go.wait()
            await held.writing()
            held.written("2026-01-01T00:00:05.000Z")

    async def second() -> None:
        async with two.locks.hold("i1") as held:
            # A document read before the lock, showing the write before the first holder's.
            seen.append(held.untouched_since(two.locks.mark(), "2026-01-01T00:00:00.000Z"))

    writer = asyncio.create_task(first())
    await holding.wait()
    waiter = asyncio.create_task(second())
    await asyncio.sleep(0.3)  # the second replica is waiting for the lock now
    go.set()
    await asyncio.gather(writer, waiter)
    assert seen == [False]


# --- the journal's verified mark, committed with the lock's release -------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def _journaled_write(store: StateStore, message_id: str) -> None:
    await store.claim_messages([(message_id, "R", NOW)], NOW)
    await store.record_intent(WriteIntent(message_id, "i1", NOW, {"enabled": True}, {"enabled": False}))


async def test_a_verified_mark_is_stored_when_the_lock_is_released(stores: tuple[StateStore, StateStore]) -> None:
    one, two = stores
    await _journaled_write(one, "m1")
    async with one.locks.hold("i1") as held:
        await held.writing()
        await one.verified_intent("m1", "i1", {"enabled": False, "_updatedAt": "t1"}, held=held)
        held.written("t1")
    # Stored by the time the holder's block ended (before any answer), seen by every replica.
    [intent] = await two.intents("m1")
    assert intent.verified == {"enabled": False, "_updatedAt": "t1"}


async def test_a_verified_mark_survives_the_loss_of_the_locks_connection(
    stores: tuple[StateStore, StateStore], postgres_url: str
) -> None:
    one, two = stores
    await _journaled_write(one, "m2")
    async with one.locks.hold("i1") as held:
        await held.writing()
        await one.verified_intent("m2", "i1", {"enabled": False, "_updatedAt": "t2"}, held=held)
        held.written("t2")
        # The lock's connection dies (a proxy restarts, a backend is terminated) before the release.
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
            assert [row[0] for row in await cursor.fetchall()] == [True]
    [intent] = await two.intents("m2")
    assert intent.verified == {"enabled": False, "_updatedAt": "t2"}


async def test_a_verified_mark_is_stored_before_anything_else_the_holder_records(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Was: the mark waited for the lock's release even when the holder recorded more under the
    lock first (a timed disable's audit row and timer): a kill between that audit row and the
    release left a written, audited change whose journal said "never verified", judged
    "superseded" once someone changed the integration before the recovery came."""
    one, two = stores
    await _journaled_write(one, "m3")
    async with one.locks.hold("i1") as held:
        await held.writing()
        await one.verified_intent("m3", "i1", {"enabled": False, "_updatedAt": "t3"}, held=held)
        held.written("t3")
        await one.record(
            AuditRecord(
                at=NOW,
                actor_id="u",
                actor_username="alice",
                integration_id="i1",
                integration_name="Hook",
                integration_type="webhook-incoming",
                action="disable",
                message_id="m3",
            )
        )
        # Still holding the lock: the audit row is stored, and so is the mark (before it).
        [intent] = await two.intents("m3")
        assert intent.verified == {"enabled": False, "_updatedAt": "t3"}


# --- a command's write intent stands for "a write may be in flight" ----------------------------


async def test_another_commands_unverified_intent_makes_a_read_be_made_again(
    stores: tuple[StateStore, StateStore],
) -> None:
    """A journaled write marks nothing pending of its own: its intent, stored before the write is
    sent and marked verified in the lock's release, is what every other holder goes by."""
    one, two = stores
    await _journaled_write(one, "m4")  # its holder died after sending: the intent was never verified
    async with two.locks.hold("i1", writer="m5") as held:
        assert not held.untouched_since(two.locks.mark(), "t0")
    async with one.locks.hold("i1", writer="m4") as held:  # its own intent: no reason to distrust
        assert held.untouched_since(one.locks.mark(), "t0")


async def test_a_journaled_write_is_recorded_when_the_lock_is_released(stores: tuple[StateStore, StateStore]) -> None:
    one, two = stores
    await _journaled_write(one, "m6")
    async with one.locks.hold("i1", writer="m6") as held:
        await held.writing(journaled=True)
        await one.verified_intent("m6", "i1", {"enabled": False, "_updatedAt": "t6"}, held=held)
        held.written("2026-01-01T00:00:06.000Z")
    assert await two.database.rows(
        "SELECT pending, updated_at FROM integration_writes WHERE integration_id = 'i1'"
    ) == [(False, "2026-01-01T00:00:06.000Z")]
    async with two.locks.hold("i1", writer="m7") as held:
        assert held.untouched_since(two.locks.mark(), "2026-01-01T00:00:06.000Z")  # shows that write
        assert not held.untouched_since(two.locks.mark(), "2026-01-01T00:00:00.000Z")  # older than it


async def test_a_journaled_writes_record_survives_the_loss_of_the_locks_connection(
    stores: tuple[StateStore, StateStore], postgres_url: str
) -> None:
    """The verified mark is stored with a trace of the write even when the lock's connection is
    lost (the pending mark: test_shared_locks_races.py says why not the record): the mark alone
    would clear the intent that stood for the write while the record still showed the write
    before it, and a read older than this write would be trusted."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)",
        ("i1", "2026-01-01T00:00:00.000Z"),
    )
    await _journaled_write(one, "m8")
    async with one.locks.hold("i1", writer="m8") as held:
        await held.writing(journaled=True)
        await one.verified_intent("m8", "i1", {"enabled": False, "_updatedAt": "t8"}, held=held)
        held.written("2026-01-01T00:00:08.000Z")
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
            assert [row[0] for row in await cursor.fetchall()] == [True]
    async with two.locks.hold("i1", writer="m9") as held:
        assert not held.untouched_since(two.locks.mark(), "2026-01-01T00:00:00.000Z")


async def test_a_commands_intent_is_stored_while_it_waits_for_the_lock(stores: tuple[StateStore, StateStore]) -> None:
    """The intent's statement and the lock's are one wait, not two: the intent of a command that
    read its integration before the lock is stored while the lock is being taken. When the lock
    then shows that someone wrote meanwhile, it reads again and journals from that read: no
    change is lost and the journal describes the write actually sent."""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one = replica(server, stores[0])
    store = stores[1]
    rest = RestClient(
        "https://chat.example.org", user_id="bot", auth_token="bot-token", transport=httpx.MockTransport(server)
    )
    two = JournaledIntegrationService(rest, store, lambda: NOW)
    await store.claim_messages([("m10", "R", NOW)], NOW)
    found = await two.resolve("Guggy", rights=rights(*ALL))  # read before the lock
    writer, go = await edit_held(one, {"alias": "new"})
    running = disabling(two, found, "m10")
    for _ in range(500):  # up to 5 s
        if await store.intents("m10"):
            break
        await asyncio.sleep(0.01)
    [early] = await store.intents("m10")  # journaled from the read before the lock
    assert early.before.get("alias") != "new" and not running.done()  # still waiting for the lock
    go.set()
    assert await running and await writer is None
    assert server.docs["a"]["alias"] == "new" and server.docs["a"]["enabled"] is False
    [intent] = await store.intents("m10")
    assert intent.before["alias"] == "new" and intent.verified is not None


async def test_a_write_never_verified_leaves_its_trace_once_its_command_is_closed(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Its intent stood for it while the command ran; closing the command drops the intent, and
    the integration's pending mark takes its place: a read older than that write is still read
    again by every replica (the write was sent and may have landed)."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)",
        ("i1", "2026-01-01T00:00:00.000Z"),
    )
    await _journaled_write(one, "m11")
    async with one.locks.hold("i1", writer="m11") as held:
        await held.writing(journaled=True)  # sent; the answer did not match (never verified)
    assert await one.finish_message("m11", "failed: verification")
    assert await one.intents("m11") == []
    async with two.locks.hold("i1", writer="m12") as held:
        assert not held.untouched_since(two.locks.mark(), "2026-01-01T00:00:00.000Z")


async def test_the_lock_says_whether_a_timed_disable_is_pending_as_another_replica_left_it(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Read with the lock, in its round trip: a command switching the integration on or off then
    looks its timer up only when one is pending (set through any replica)."""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one = replica(server, stores[0])
    found = await one.resolve("Guggy", rights=rights(*ALL))

    async def pending_as_seen() -> bool | None:
        async with one.editing(found) as edit:
            return edit.timer_pending

    assert await pending_as_seen() is False
    draft = TimerDraft("a", "Guggy", "webhook-incoming", NOW, NOW + timedelta(hours=1), "u1", "alice")
    timer = await stores[1].timers.schedule(draft)  # the other replica sets one up
    assert timer is not None
    assert await pending_as_seen() is True
    await stores[1].timers.transition(timer, TimerEvent.ABORTED, at=NOW)
    assert await pending_as_seen() is False


async def test_a_journaled_write_keeps_its_trace_when_its_holder_fails_after_it(
    stores: tuple[StateStore, StateStore],
) -> None:
    """The holder's block raises once its write was verified (a state statement under the lock
    that failed, a timed disable whose timer moved meanwhile): the release still commits the
    verified mark (`commit_with`), which clears the intent that stood for the write. Was: the
    record of the write was left out then, and nothing else stood for it: another replica's read
    older than the write, showing the write before it, was trusted (and written over)."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)",
        ("i1", "2026-01-01T00:00:00.000Z"),
    )
    await _journaled_write(one, "m10")

    async def failing_after_its_write() -> None:
        async with one.locks.hold("i1", writer="m10") as held:
            await held.writing(journaled=True)
            await one.verified_intent("m10", "i1", {"enabled": False, "_updatedAt": "t10"}, held=held)
            held.written("2026-01-01T00:00:10.000Z")
            raise RuntimeError("failed after the write")

    with pytest.raises(RuntimeError):
        await failing_after_its_write()
    [intent] = await two.intents("m10")
    assert intent.verified == {"enabled": False, "_updatedAt": "t10"}  # the write landed: so the journal says
    async with two.locks.hold("i1", writer="m11") as held:
        assert not held.untouched_since(two.locks.mark(), "2026-01-01T00:00:00.000Z")  # older than it
