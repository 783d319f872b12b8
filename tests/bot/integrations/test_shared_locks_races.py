"""Races of the journaled write against the shared lock (second reading of "a command's write
intent stands for its pending mark"): a holder killed between two statements, a replica paused
past its lease while it waited for the lock, an intent stored before the lock for a write that
was then never sent."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from test_integrations_service import ALL, FakeRocketChat, incoming, rights
from test_shared_locks import NOW, _journaled_write, disabling, edit_held, replica, stores

from bot.errors import ClaimTakenOver, StateUnavailable, VerificationFailed
from bot.integrations import service as service_module
from bot.rocketchat.models import Integration
from bot.rocketchat.rest import RestClient
from bot.runtime.journal import CommandRun, JournaledIntegrationService, Judgement, current_command, judge
from bot.state import postgres
from bot.state.postgres import LOCK_POOL
from bot.state.store import AuditRecord, StateStore

__all__ = ["stores"]  # the fixture, shared with test_shared_locks

T0 = "2026-01-01T00:00:00.000Z"
T1 = "2026-01-01T00:00:01.000Z"


def journaled(server: FakeRocketChat, store: StateStore) -> JournaledIntegrationService:
    rest = RestClient(
        "https://chat.example.org", user_id="bot", auth_token="bot-token", transport=httpx.MockTransport(server)
    )
    return JournaledIntegrationService(rest, store, lambda: NOW)


async def _kill_the_locks_connection(postgres_url: str) -> None:
    """What a kill -9 of the holder does to its lock: the server ends the lock's transaction."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        )
        assert [row[0] for row in await cursor.fetchall()] == [True]


async def _intent_left_behind(service: JournaledIntegrationService, found: Integration, message_id: str) -> None:
    """The early intent of command `message_id`'s disable of `found`, as `editing` begins it, and
    nothing after it: its command goes no further (killed, or failing with the database)."""

    async def begun() -> None:
        current_command.set(CommandRun(message_id))
        early = service._journal_early(found, {"enabled": False}, rights(*ALL))
        assert early is not None
        await early.task

    await asyncio.create_task(begun())


async def _wait_for_intent(store: StateStore, message_id: str) -> None:
    for _ in range(500):  # up to 5 s
        if await store.intents(message_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no intent of {message_id} was stored")


async def test_a_holder_killed_after_recording_under_the_lock_leaves_its_write_known(
    stores: tuple[StateStore, StateStore], postgres_url: str
) -> None:
    """A timed disable (or an undo) records its audit row under the lock, after its write: the
    journal's verified mark is stored first (`flush_deferred`). A kill -9 between that audit row
    and the lock's release must still leave a trace of the write for every other replica: a
    document read before the write (showing T0) is read again, not written back over it.
    Was: the mark was stored alone, the record only with the release: the intent no longer
    stood for the write and the record still showed T0 (found by reading the code; shown here)."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)", ("i1", T0)
    )
    await _journaled_write(one, "m40")
    recorded = asyncio.Event()

    async def holder() -> None:
        async with one.locks.hold("i1", writer="m40") as held:
            await held.writing(journaled=True)
            await one.verified_intent("m40", "i1", {"enabled": False, "_updatedAt": T1}, held=held)
            held.written(T1)
            await one.record(
                AuditRecord(
                    at=NOW,
                    actor_id="u",
                    actor_username="alice",
                    integration_id="i1",
                    integration_name="Hook",
                    integration_type="webhook-incoming",
                    action="disable",
                    message_id="m40",
                )
            )
            recorded.set()
            await asyncio.Event().wait()  # killed here: it never runs again

    task = asyncio.create_task(holder())
    try:
        await recorded.wait()
        await _kill_the_locks_connection(postgres_url)
        async with two.locks.hold("i1", writer="m41") as held:
            assert not held.untouched_since(two.locks.mark(), T0)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def test_a_replica_whose_claim_was_taken_over_while_it_waited_for_the_lock_does_not_write(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Replica one journals its disable while the lock is taken (held by replica two, which writes
    nothing); replica one is then paused past its lease and two takes the command over. When one
    gets the lock it must stop (`ClaimTakenOver`), as it did when the intent was stored under the
    lock: the command is two's to run now.
    Was: the claim was checked only when the intent was stored, before the lock wait (found by
    reading the code; shown here)."""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    store_one, store_two = stores
    one = journaled(server, store_one)
    await store_one.claim_messages([("m42", "R", NOW)], NOW)
    found = await one.resolve("Guggy", rights=rights(*ALL))  # read before the lock
    holding, go = asyncio.Event(), asyncio.Event()

    async def other_holder() -> None:
        async with store_two.locks.hold("a"):
            holding.set()
            await go.wait()

    async def command() -> bool:
        current_command.set(CommandRun("m42"))
        return (await one.set_enabled(found, False, rights=rights(*ALL))).changed

    blocker = asyncio.create_task(other_holder())
    await holding.wait()
    running = asyncio.create_task(command())
    await _wait_for_intent(store_one, "m42")
    assert await store_two.take_over(NOW + timedelta(hours=1)) == ["m42"]  # one's lease ran out
    go.set()
    await blocker
    with pytest.raises(ClaimTakenOver):
        await running
    assert server.docs["a"]["enabled"] is True and server.endpoint_calls("integrations.update") == []


async def test_an_early_intent_of_a_write_never_sent_is_not_taken_for_a_landed_write(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Replica two's `disable` journals its write while replica one holds the lock and disables the
    same integration; under the lock two finds it already disabled and sends nothing ("already
    disabled"). Interrupted before its claim is closed (kill -9 after the answer), the recovery
    must not find a write of it that landed: resumed, it would answer and audit one's disable as
    its own. Was: the intent was kept (found by reading the code; shown here)."""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one = replica(server, stores[0])
    store = stores[1]
    two = journaled(server, store)
    await store.claim_messages([("m43", "R", NOW)], NOW)
    found = await two.resolve("Guggy", rights=rights(*ALL))  # read before the lock
    writer, go = await edit_held(one, {"enabled": False})
    running = disabling(two, found, "m43")
    await _wait_for_intent(store, "m43")
    go.set()
    await writer
    assert await running is False  # already disabled: nothing sent
    assert len(server.endpoint_calls("integrations.update")) == 1  # one's write only
    assert not await two.landed("m43")


async def test_a_command_stopped_while_it_waited_for_the_lock_is_run_when_resumed(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Replica two's `disable` waits for the lock, held by replica one which changes the alias;
    two is stopped (cancelled at a shutdown past its grace period) before it gets the lock: it
    never sent anything. Resumed, the command must disable the integration (keeping the alias),
    not answer that someone else changed it and give up.
    Was: the intent stored while the lock was taken was kept and judged "superseded" (found by
    reading the code; shown here)."""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one = replica(server, stores[0])
    store = stores[1]
    two = journaled(server, store)
    await store.claim_messages([("m44", "R", NOW)], NOW)
    found = await two.resolve("Guggy", rights=rights(*ALL))  # read before the lock
    writer, go = await edit_held(one, {"alias": "new"})
    running = disabling(two, found, "m44")
    await _wait_for_intent(store, "m44")
    running.cancel()  # stopped while it waits for the lock
    with contextlib.suppress(asyncio.CancelledError):
        await running
    go.set()
    await writer
    assert await _resumed(two, "m44")
    assert server.docs["a"]["enabled"] is False and server.docs["a"]["alias"] == "new"


async def _resumed(service: JournaledIntegrationService, message_id: str) -> bool:
    async def run() -> bool:
        current_command.set(CommandRun(message_id, recovering=True))
        return (await service.set_enabled("Guggy", False, rights=rights(*ALL))).changed

    try:
        return await asyncio.create_task(run())
    except VerificationFailed as exc:
        raise AssertionError("the resumed command refused to write") from exc


async def test_a_command_killed_while_it_waited_for_the_lock_writes_nothing_when_resumed_after_a_change(
    stores: tuple[StateStore, StateStore],
) -> None:
    """As above, but replica two is killed (kill -9) while it waits: its intent, stored while the
    lock was being taken, is all that is left of it, and nothing tells whether its write was sent.
    Someone changed the integration since: resumed, the command writes nothing over that change
    and is answered that the integration was changed meanwhile (as for an intent stored just
    before a write whose sender died): the caller looks and decides, nothing is overridden.
    (Before intents were stored ahead of the lock, nothing was left of it and it simply ran; the
    README says so under "Several replicas".)"""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one = replica(server, stores[0])
    store = stores[1]
    two = journaled(server, store)
    await store.claim_messages([("m48", "R", NOW)], NOW)
    found = await two.resolve("Guggy", rights=rights(*ALL))  # read before the lock

    await _intent_left_behind(two, found, "m48")  # stored; then the process dies waiting for the lock
    await one.apply_changes("Guggy", {"alias": "new"}, rights=rights(*ALL))
    writes = len(server.endpoint_calls("integrations.update"))
    with pytest.raises(AssertionError, match="refused to write"):
        await _resumed(two, "m48")
    assert len(server.endpoint_calls("integrations.update")) == writes
    assert server.docs["a"]["enabled"] is True and server.docs["a"]["alias"] == "new"


async def test_a_release_stored_late_never_records_its_write_over_a_later_one(
    stores: tuple[StateStore, StateStore], postgres_url: str
) -> None:
    """Replica one's release is lost with its connection: the lock is free at once, its statements
    are stored on their own a moment later. Replica two writes meanwhile (one's unverified intent
    made it read again) and records its write. One's late statements must not record one's write
    (T1) over two's (T2): a document read between the two writes, showing T1, would be trusted
    and written back over two's change.
    Was: the late statements recorded T1 (found by reading the code; shown here)."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)", ("i1", T0)
    )
    await _journaled_write(one, "m45")
    await _journaled_write(two, "m46")
    t2 = "2026-01-01T00:00:02.000Z"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        # Holds one's late statements back (its verified mark waits for this row) until two is done.
        await admin.execute("BEGIN")
        await admin.execute("SELECT 1 FROM write_intents WHERE message_id = 'm45' FOR UPDATE")

        async def first() -> None:
            async with one.locks.hold("i1", writer="m45") as held:
                await held.writing(journaled=True)
                await one.verified_intent("m45", "i1", {"enabled": False, "_updatedAt": T1}, held=held)
                held.written(T1)
                await _kill_the_locks_connection(postgres_url)  # a proxy restarts, say

        async def second() -> None:
            async with two.locks.hold("i1", writer="m46") as held:
                assert not held.untouched_since(two.locks.mark(), T0)  # one's intent: read again
                await held.writing(journaled=True)
                await two.verified_intent("m46", "i1", {"enabled": False, "alias": "x", "_updatedAt": t2}, held=held)
                held.written(t2)

        async def waiting(count: int, done: asyncio.Task[None] | None = None) -> None:
            for _ in range(500):  # up to 5 s: until that many statements wait for a row
                cursor = await admin.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                row = await cursor.fetchone()
                if (row is not None and row[0] >= count) or (done is not None and done.done()):
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("nothing came to wait")

        late = asyncio.create_task(first())
        await waiting(1)  # one's late statements
        other = asyncio.create_task(second())
        await waiting(2, other)  # two's release, done or waiting for one's late statements
        await admin.execute("ROLLBACK")
        await asyncio.gather(late, other)
    async with two.locks.hold("i1", writer="m47") as held:
        assert not held.untouched_since(two.locks.mark(), T1)  # read between the two writes


async def test_on_sqlite_an_early_intent_of_a_write_never_sent_is_dropped(tmp_path: Path) -> None:
    """One process on SQLite: the same, with two commands of one process (one waits for the
    other's lock)."""
    store = await StateStore.open(tmp_path / "state.db")
    try:
        server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
        service = journaled(server, store)
        await store.claim_messages([("m50", "R", NOW), ("m51", "R", NOW)], NOW)
        found = await service.resolve("Guggy", rights=rights(*ALL))  # read before the lock
        writer, go = await edit_held(service, {"enabled": False}, message_id="m50")
        running = disabling(service, found, "m51")
        await _wait_for_intent(store, "m51")
        go.set()
        await writer
        assert await running is False
        assert not await service.landed("m51") and await service.landed("m50")
    finally:
        await store.close()


async def test_an_intent_never_sent_is_not_taken_for_the_same_change_made_by_someone_else(
    stores: tuple[StateStore, StateStore],
) -> None:
    """Replica two's `disable` stores its intent, then fails before its write is sent (the database
    restarting: its lock's connection is lost, and so is the statement that would drop the
    intent); it answers "not run". Its claim runs out meanwhile. The person sends `disable` again,
    through replica one, which disables the integration. Resumed, two's command found the
    integration as it intended and took one's write for its own: it answered "Disabled" over its
    "not run" and audited a second disable (found by the three-replica chaos test). One's verified
    write is recorded under the lock with its `_updatedAt`: an intent not verified cannot be the
    write that produced that document. Resumed, the command is run as new: already disabled."""
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    one = replica(server, stores[0])
    store = stores[1]
    two = journaled(server, store)
    await store.claim_messages([("m49", "R", NOW)], NOW)
    found = await two.resolve("Guggy", rights=rights(*ALL))

    await _intent_left_behind(two, found, "m49")  # stored; the lock and the drop then fail with the database
    assert (await one.set_enabled("Guggy", False, rights=rights(*ALL))).changed
    writes = len(server.endpoint_calls("integrations.update"))
    assert not await two.landed("m49")
    assert await _resumed(two, "m49") is False  # already disabled: nothing of its own to report
    assert len(server.endpoint_calls("integrations.update")) == writes


async def test_a_command_cancelled_as_it_begins_its_edit_leaves_no_intent(tmp_path: Path) -> None:
    """A command stopped (shutdown, `stop`) right as its edit begins, before the lock is asked
    for: the intent begun with the lock (`planned`) is for a write never sent, and must not be
    left stored (a resumed command would judge it as a write that may have landed, and every
    other holder would take it for one).
    Was: the edit yielded once before its clean-up was in place; cancelled there, the intent was
    stored after the command had stopped, and never dropped (found by reading the code)."""
    store = await StateStore.open(tmp_path / "state.db")
    try:
        server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
        service = journaled(server, store)
        await store.claim_messages([("m61", "R", NOW)], NOW)
        found = await service.resolve("Guggy", rights=rights(*ALL))  # read before the lock
        entered = asyncio.Event()

        async def command() -> None:
            current_command.set(CommandRun("m61"))
            async with service.editing(found, planned={"enabled": False}, rights=rights(*ALL)):
                entered.set()

        task = asyncio.create_task(command())
        await asyncio.sleep(0)  # the command runs up to its first wait, inside `editing`
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not entered.is_set()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:  # whatever the command left running (its intent's statement) ends first
            await asyncio.wait(others, timeout=5)
        assert await store.intents("m61") == []
        assert not await service.landed("m61")
    finally:
        await store.close()


async def test_a_verified_mark_whose_flush_failed_is_committed_with_the_release(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `enable` (or a plain `disable`) ends the running timer under the lock, after its write,
    and goes on when that fails (`changes.apply_seeing_timer`: the record after the answer tries
    again). That statement first stores the journal's verified mark (`flush_deferred`); when the
    database fails it there, the mark must still be committed with the lock's release, together
    with the record of the write: a command killed after its answer, before its audit row, must be
    known to have written. Was: the mark was dropped while the record was committed, so the
    journal judged the write "not landed" (the document is the recorded write, and a verified
    mark is stored with its record): resumed, the disable answered "already disabled" and its
    audit row was never written (found by reading the code; shown here)."""
    one, two = stores
    await one.database.count(
        "INSERT INTO integration_writes (integration_id, pending, updated_at) VALUES (?, false, ?)", ("i1", T0)
    )
    await _journaled_write(one, "m45")
    pool = one.locks._statements
    real = pool.connection
    failures = [psycopg.OperationalError("server closed the connection unexpectedly")]

    def stumbling(*args: object, **kwargs: object) -> contextlib.AbstractAsyncContextManager[object]:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)  # type: ignore[arg-type]

    async with one.locks.hold("i1", writer="m45") as held:
        await held.writing(journaled=True)
        stored = {"enabled": False, "_updatedAt": T1}
        await one.verified_intent("m45", "i1", stored, held=held)
        held.written(T1)
        monkeypatch.setattr(pool, "connection", stumbling)
        with pytest.raises(StateUnavailable):  # the timer's ending: suppressed by its caller
            await one.timers.pending_for("i1")
        assert failures == []
    [intent] = await two.intents("m45")
    assert intent.verified == stored
    assert judge(intent, stored, await two.recorded_write("i1")) is Judgement.LANDED


async def test_a_read_made_before_a_long_wait_for_a_lock_connection_is_read_again(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change whose document was read before its lock (a name resolved through
    `integrations.list`) waits its turn for a lock connection behind this replica's busy ones, for
    longer than `LOCK_WAIT` (a burst). Someone edits the integration in Rocket.Chat's admin UI
    meanwhile: the bot never wrote it, so nothing of the bot's tells that read is stale. Trusted,
    the read was written back over the edit (it failed after `LOCK_WAIT` before such a change
    waited on; one made within it has the same race, for as long as the wait was): it is read
    again once it waited longer than `READ_TRUSTED_WAIT`. Here `LOCK_WAIT` and `READ_TRUSTED_WAIT`
    are 0.5 s and the change waits about 1 s."""
    monkeypatch.setattr(postgres, "LOCK_WAIT", 0.5)
    monkeypatch.setattr(service_module, "READ_TRUSTED_WAIT", 0.5)
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    service = replica(server, stores[0])
    locks = stores[0].locks
    holding = 0
    all_holding, finish = asyncio.Event(), asyncio.Event()

    async def busy(number: int) -> None:
        nonlocal holding
        async with locks.hold(f"busy-{number}"):
            holding += 1
            if holding == LOCK_POOL:
                all_holding.set()
            await finish.wait()

    holders = [asyncio.create_task(busy(number)) for number in range(LOCK_POOL)]
    try:
        await all_holding.wait()
        found = await service.resolve("Guggy", rights=rights(*ALL))
        change = asyncio.create_task(service.set_enabled(found, False, rights=rights(*ALL)))
        await asyncio.sleep(2 * postgres.LOCK_WAIT)  # the wait: the change is still queued
        assert not change.done()
        # The admin UI's edit, while the change waits.
        server.docs["a"]["alias"] = "edited in the admin UI"
        server.docs["a"]["_updatedAt"] = "2025-06-01T00:00:00.000Z"
        finish.set()
        assert (await change).changed
    finally:
        finish.set()
        await asyncio.gather(*holders)
    assert server.docs["a"]["enabled"] is False
    assert server.docs["a"]["alias"] == "edited in the admin UI"


async def test_a_read_made_long_before_the_lock_is_read_again_though_the_lock_was_free(
    stores: tuple[StateStore, StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change resolved its integration (`integrations.list`), then took longer than
    `READ_TRUSTED_WAIT` before it asked for the lock: its caller's rights read slowly
    (`users.info` retried, or rate-limited for up to 60 s), a timer looked up while the state
    database was slow. The lock is then free at once. Someone edited the integration in
    Rocket.Chat's admin UI meanwhile: the read must be as stale as after a long wait for the lock,
    and read again (was: only the wait for the lock was measured, and the read made before it was
    written back over the edit). Here `READ_TRUSTED_WAIT` is 0.2 s and the pause 0.4 s."""
    monkeypatch.setattr(service_module, "READ_TRUSTED_WAIT", 0.2)
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    service = replica(server, stores[0])
    found = await service.resolve("Guggy", rights=rights(*ALL))
    await asyncio.sleep(0.4)  # the command's other steps, before its lock (time passing, not a wait for an event)
    server.docs["a"]["alias"] = "edited in the admin UI"
    server.docs["a"]["_updatedAt"] = "2025-06-01T00:00:00.000Z"
    assert (await service.set_enabled(found, False, rights=rights(*ALL))).changed
    assert server.docs["a"]["enabled"] is False
    assert server.docs["a"]["alias"] == "edited in the admin UI"
