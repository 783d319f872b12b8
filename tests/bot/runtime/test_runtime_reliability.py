"""The running bot (in-process) against the sandbox: catch-up at start and after drops, exactly once
across re-deliveries, reconnects and restarts, answers retried until stored, fatal auth failures,
and resuming a command a stop interrupted without applying it twice."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from reliability_support import BOT, ShiftedClock, World, call, running_bot, settings_for, until, world

from bot.errors import AuthFailed, StateUnavailable
from bot.integrations import wording
from bot.integrations.authz import MANAGE_OWN_INCOMING
from bot.rocketchat.message_ids import random_id
from bot.rocketchat.realtime import RealtimeState, SubscriptionEnded
from bot.runtime import bot as runtime
from bot.runtime.bot import Bot
from bot.state.store import StateStore, read_message_ids
from commands import replies
from sandbox.seed import OWNER_ROLE

REPLY_TIMEOUT = 15.0


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        yield fresh


def answer_ids(tmp_path: Path, command: dict[str, Any]) -> tuple[str, ...]:
    """The ids of the bot's answer to `command`, by the key in the bot's state file."""
    return read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])


async def answer_to(
    w: World,
    tmp_path: Path,
    command: dict[str, Any],
    timeout: float = REPLY_TIMEOUT,  # noqa: ASYNC109
) -> dict[str, Any]:
    wanted = answer_ids(tmp_path, command)
    room = command["rid"]
    return await call(
        w.control.wait_for_message, room, lambda m: m["_id"] in wanted and m["u"]["username"] == BOT, timeout
    )


def bot_messages(w: World, room: str) -> list[dict[str, Any]]:
    return [m for m in w.control.messages(room) if m["u"]["username"] == "integrations-bot"]


def pending_answers(bot: Bot) -> float | None:
    return bot.metrics.registry.get_sample_value("integrations_bot_replies_pending")


async def audit_rows(tmp_path: Path, integration_id: str) -> list[Any]:
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        return await state.history(integration_ids=[integration_id], limit=100)
    finally:
        await state.close()


async def hook(w: World, name: str, room: str = "#ops") -> dict[str, Any]:
    return await call(
        w.control.create_incoming_integration, name, channel=room, alias="a-" + name, emoji=":ghost:", created_by="owen"
    )


async def test_commands_sent_while_the_bot_was_down_run_once_at_start_and_stale_ones_are_answered(
    w: World, tmp_path: Path
) -> None:
    control = w.control
    fresh_hook = await hook(w, "down-fresh")
    stale_hook = await hook(w, "down-stale")
    settings = settings_for(w, tmp_path)
    async with running_bot(settings):
        pass  # a first run: the state file now has cursors
    fresh = await call(control.post_message, "admin", "ops", "!integration disable down-fresh")
    dm = w.seed["rooms"]["dm:admin:integrations-bot"]
    in_dm = await call(control.post_message, "admin", dm, "list incoming")

    async with running_bot(settings):
        answer = await answer_to(w, tmp_path, fresh)
        assert "Disabled" in answer["msg"]
        assert "integrations" in (await answer_to(w, tmp_path, in_dm))["msg"]
    assert (await call(control.integration, fresh_hook["_id"]))["enabled"] is False

    stale = await call(control.post_message, "admin", "ops", "!integration disable down-stale")
    async with running_bot(settings, clock=ShiftedClock(timedelta(minutes=5))):  # five minutes later
        answer = await answer_to(w, tmp_path, stale)
        assert "did not run" in answer["msg"] and "5 min ago" in answer["msg"]
    assert (await call(control.integration, stale_hook["_id"]))["enabled"] is True

    before = len(bot_messages(w, "ops"))
    async with running_bot(settings) as (bot, _):
        await until(lambda: bot.catchup is not None and bot.catchup.passes >= 1, what="a catch-up pass")
    assert len(bot_messages(w, "ops")) == before  # a restart answers nothing twice
    assert [r.message_id for r in await audit_rows(tmp_path, fresh_hook["_id"])] == [fresh["_id"]]
    assert await audit_rows(tmp_path, stale_hook["_id"]) == []


async def test_a_command_sent_while_disconnected_is_run_once_after_the_reconnect(w: World, tmp_path: Path) -> None:
    control = w.control
    target = await hook(w, "while-away")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        await call(control.refuse_connections, 30)
        await call(control.drop_connections)
        await until(lambda: not bot.probe().logged_in, what="the drop")
        command = await call(control.post_message, "owen", "ops", "!integration disable while-away")
        await call(control.react, command["_id"], ":eyes:", "alice")  # a re-delivery once it reconnects
        await call(control.refuse_connections, 0)
        answer = await answer_to(w, tmp_path, command, timeout=30)
        assert "Disabled" in answer["msg"]
        # Another drop: the next pass sees the command again, and does not run it again.
        passes = bot.catchup.passes if bot.catchup else 0
        await call(control.drop_connections)
        await until(lambda: bot.catchup is not None and bot.catchup.passes > passes, timeout=20, what="a pass")
    rows = await audit_rows(tmp_path, target["_id"])
    assert [r.message_id for r in rows] == [command["_id"]]
    assert [m["_id"] for m in bot_messages(w, "ops")].count(answer_ids(tmp_path, command)[0]) == 1
    assert sum(1 for m in bot_messages(w, "ops")) == 1


def failed_calls(bot: Bot, endpoint: str) -> float:
    """REST calls to `endpoint` that did not succeed (each counted once, after its retries)."""
    return sum(
        sample.value
        for family in bot.metrics.rest_errors.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("endpoint") == endpoint
    )


async def test_a_permission_taken_from_a_role_while_disconnected_counts_though_the_reload_failed(
    w: World, tmp_path: Path
) -> None:
    """Was: the table of permissions was read again only by a background task after the
    reconnect, and kept as it was when that read failed (Rocket.Chat back, but not yet answering
    everything): a permission taken from a role while the bot was away still counted, for a
    change too (the caller's roles are read fresh, but judged with that table), until the next
    reconnect. Now no right counts until the table is read again: the command reads it."""
    control = w.control
    target = await hook(w, "revoked-away")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        await call(control.refuse_connections, 30)
        await call(control.drop_connections)
        await until(lambda: not bot.probe().logged_in, what="the drop")
        await call(control.set_role_permissions, OWNER_ROLE, [])  # announced to nobody: the bot is away
        await call(control.fail_next, "permissions.listAll", 100)
        await call(control.refuse_connections, 0)
        await until(lambda: failed_calls(bot, "permissions.listAll") >= 1, timeout=30, what="the failed reload")
        await call(control.clear_faults)
        command = await call(control.post_message, "owen", "ops", "!integration disable revoked-away")
        answer = await answer_to(w, tmp_path, command, timeout=30)
    assert "Disabled" not in answer["msg"] and "manage-own-incoming-integrations" in answer["msg"], answer["msg"]
    assert (await call(control.integration, target["_id"]))["enabled"] is True
    assert await audit_rows(tmp_path, target["_id"]) == []


async def test_a_replica_whose_rights_subscription_ended_reads_the_permissions_for_each_decision(
    w: World, tmp_path: Path
) -> None:
    """Was: Rocket.Chat ending the `stream-notify-logged` subscription was only logged; the
    replica kept trusting a permission table nothing updated any more (until it restarted), so a
    permission taken from a role later still allowed changes there."""
    control = w.control
    target = await hook(w, "unannounced")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        assert bot.realtime is not None and bot.services is not None
        rights = bot.services.rights
        await until(rights.current, what="the permissions read once subscribed")
        ended = next(s for s in bot.realtime.subscriptions if s.name == "stream-notify-logged")
        await bot._on_event(SubscriptionEnded(ended, "nosub", "the server stopped it"))
        store = w.server.store
        with store.lock:  # taken away with no announcement (this replica hears none any more)
            doc = store.permissions[MANAGE_OWN_INCOMING]
            doc["roles"] = [role for role in doc["roles"] if role != OWNER_ROLE]
        command = await call(control.post_message, "owen", "ops", "!integration disable unannounced")
        answer = await answer_to(w, tmp_path, command)
    assert "Disabled" not in answer["msg"] and "can't find" in answer["msg"], answer["msg"]  # hidden, as by the server
    assert (await call(control.integration, target["_id"]))["enabled"] is True
    assert await audit_rows(tmp_path, target["_id"]) == []


def disconnects(bot: Bot) -> float:
    return bot.metrics.registry.get_sample_value("integrations_bot_realtime_disconnects_total") or 0.0


async def test_a_command_missed_by_the_stream_is_run_when_a_pass_completed_while_disconnected(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chaos test's open failure (issue 12 section 5), forced: commands of one room never
    claimed. A drop during a pass; the next pass begins at once, still disconnected, and completes
    before the reconnect (held back here by a rate-limited login). A command posted then is on no
    stream. After the reconnect, while the new pass lists the rooms, the stream admits a later
    message of that room and the periodic flush runs: the cursor it stored must not let the pass
    start past the command (it did: the command was never answered)."""
    monkeypatch.setattr(runtime, "CURSOR_FLUSH_INTERVAL", 0.05)  # the periodic flush, often
    control = w.control
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        assert bot.catchup is not None and bot.realtime is not None
        catchup, realtime = bot.catchup, bot.realtime
        await until(lambda: catchup.passes >= 1, what="the first pass")
        begun: list[float] = []  # per pass: the drops the bot had seen when it began
        completed: list[tuple[float, bool]] = []  # and whether it began connected, once completed
        pass_once = catchup.pass_once

        async def observed() -> None:
            drops, connected = disconnects(bot), realtime.state is RealtimeState.READY
            begun.append(drops)
            await pass_once()
            completed.append((drops, connected))

        catchup.pass_once = observed  # type: ignore[method-assign]
        # A pass takes a while: every pass asks `rooms.get` once (it reads only rooms with activity).
        await call(control.set_latency, 1.0, "rooms.get")
        base = disconnects(bot)
        await call(control.drop_connections)
        await until(lambda: disconnects(bot) == base + 1 and bot.probe().subscriptions_ready, what="the reconnect")
        await until(lambda: begun, what="the pass after the reconnect")
        await asyncio.sleep(0.3)
        # The next reconnect's login is rate-limited (one failed session, then 6 s of waiting);
        # the drop comes while that pass runs.
        await call(control.fail_next, "ddp:login", 1, "429", retry_after=6.0)
        await call(control.drop_connections)
        await until(
            lambda: any(drops == base + 3 and not connected for drops, connected in completed),
            timeout=15,
            what="a pass begun after the failed login, completed while disconnected",
        )
        assert not bot.probe().subscriptions_ready, "reconnected too early: the window was not forced"
        missed = await call(control.post_message, "admin", "general", "!integration help")  # on no stream
        await call(control.set_latency, 1.5, "subscriptions.get")  # the next pass lists the rooms slowly
        await until(lambda: bot.probe().subscriptions_ready, timeout=20, what="the second reconnect")
        await call(control.post_message, "alice", "general", "a later message, on the new session's stream")
        answer = await answer_to(w, tmp_path, missed, timeout=20)
        assert answer["msg"]


async def test_an_answer_that_cannot_be_posted_is_retried_until_it_is(w: World, tmp_path: Path) -> None:
    control = w.control
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        await call(control.fail_next, "chat.sendMessage", 4, "500")  # more than one call's retries
        command = await call(control.post_message, "admin", "general", "!integration help")
        assert (await answer_to(w, tmp_path, command))["msg"]
        await until(lambda: pending_answers(bot) == 0, what="no pending answer")
    assert [m["_id"] for m in bot_messages(w, "general")] == [answer_ids(tmp_path, command)[0]]
    state = await StateStore.open(tmp_path / "state.sqlite3")
    assert await state.message_status(command["_id"]) == "done"
    await state.close()


async def test_a_command_stopped_mid_answer_is_resumed_at_the_next_start_without_a_second_write(
    w: World, tmp_path: Path
) -> None:
    control = w.control
    target = await hook(w, "interrupted")
    settings = settings_for(w, tmp_path, bot_shutdown_grace=0.2)
    async with running_bot(settings) as (bot, _):
        await call(control.fail_next, "chat.sendMessage", 1000, "500")  # Rocket.Chat cannot store answers
        command = await call(control.post_message, "owen", "ops", "!integration disable interrupted because flaky")
        await until(lambda: pending_answers(bot) == 1, what="an answer waiting to be retried")
    assert (await call(control.integration, target["_id"]))["enabled"] is False
    assert bot_messages(w, "ops") == []
    await call(control.clear_faults)
    writes = control.counters().rest.get("integrations.update", 0)

    async with running_bot(settings) as (bot, _):
        answer = await answer_to(w, tmp_path, command)
        assert "Disabled" in answer["msg"] and "flaky" in answer["msg"]
    assert control.counters().rest.get("integrations.update", 0) == writes  # not written again
    rows = await audit_rows(tmp_path, target["_id"])
    assert [(r.message_id, r.reason, r.before["enabled"], r.after["enabled"]) for r in rows] == [
        (command["_id"], "flaky", True, False)
    ]


async def test_a_refused_rest_token_stops_the_bot_once_with_exit_status_1(w: World, tmp_path: Path) -> None:
    control = w.control
    settings = settings_for(w, tmp_path)
    with structlog.testing.capture_logs() as captured:
        main = asyncio.create_task(runtime._main(settings))
        await until(lambda: any(e["event"] == "bot.ready" for e in captured), timeout=15, what="ready")
        # Revoked only once the start-up catch-up pass is over: revoked during it, the pass's own
        # REST calls meet the 401 first and the bot stops before the command ever reaches it.
        await until(lambda: any(e["event"] == "catchup.done" for e in captured), timeout=15, what="caught up")
        w.server.store.revoke_all_tokens(w.creds()["userId"])
        command = await call(control.post_message, "admin", "general", "!integration list")
        code = await asyncio.wait_for(main, 20)
    assert code == 1
    assert [e["event"] for e in captured if e["log_level"] == "error" and e["event"].startswith("bot.")] == [
        "bot.auth_failed"
    ]
    assert sum(1 for e in captured if e["event"] == "bot.auth_failed") == 1
    assert not any(m["_id"] in answer_ids(tmp_path, command) for m in control.messages("general"))
    # The command is not lost: it stays unfinished for the next start (with valid credentials).
    state = await StateStore.open(tmp_path / "state.sqlite3")
    assert await state.unfinished_messages() == [command["_id"]]
    await state.close()


async def test_a_refused_realtime_resume_stops_the_bot_instead_of_looping(w: World, tmp_path: Path) -> None:
    control = w.control
    bot = Bot(settings_for(w, tmp_path))
    task = asyncio.create_task(bot.run())
    await asyncio.wait_for(bot.ready.wait(), 15)
    await until(lambda: bot.catchup is not None and bot.catchup.passes >= 1, what="the first pass")  # REST is idle
    w.server.store.revoke_all_tokens(w.creds()["userId"])
    logins = control.counters().ddp_methods.get("login", 0)
    await call(control.drop_connections)
    with pytest.raises(AuthFailed) as refused:
        await asyncio.wait_for(task, 20)
    assert refused.value.endpoint == "ddp:login"
    assert control.counters().ddp_methods.get("login", 0) == logins + 1  # one refused attempt, no loop


async def test_a_change_is_recorded_while_its_answer_waits_for_rocketchat(w: World, tmp_path: Path) -> None:
    # The audit row follows the first attempt to answer, not the answer's eventual success.
    control = w.control
    target = await hook(w, "answer-outage")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        await call(control.fail_next, "chat.sendMessage", 1000, "500")
        command = await call(control.post_message, "owen", "ops", "!integration disable answer-outage because noisy")
        await until(lambda: pending_answers(bot) == 1, what="an answer waiting to be retried")
        rows = await audit_rows(tmp_path, target["_id"])
        assert [(r.message_id, r.action, r.reason) for r in rows] == [(command["_id"], "disable", "noisy")]
        await call(control.clear_faults)
        assert "Disabled" in (await answer_to(w, tmp_path, command, timeout=60))["msg"]
    assert len(await audit_rows(tmp_path, target["_id"])) == 1


async def test_a_commands_log_lines_are_written_after_its_answer_is_handed_over(w: World, tmp_path: Path) -> None:
    control = w.control
    target = await hook(w, "slow-answer")
    await call(control.record_requests, ["chat.sendMessage"])
    await call(control.set_latency, 1.0, "chat.sendMessage")

    def lines_of(command_id: str) -> list[str]:
        return [e["event"] for e in captured if e.get("message_id") == command_id and e["event"] != "reply.retry"]

    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings_for(w, tmp_path)) as (bot, _):
            # After the first catch-up pass: a pass still running could admit the command before
            # the stream does, and its `catchup.command` line is written at admission, at once.
            await until(lambda: bot.catchup is not None and bot.catchup.passes >= 1, what="the first pass")
            command = await call(control.post_message, "owen", "ops", "!integration disable slow-answer")
            wanted = answer_ids(tmp_path, command)

            def answer_arrived() -> bool:
                sent = control.recorded_requests("chat.sendMessage")
                return any(body["message"].get("_id") in wanted for body in sent)

            await until(answer_arrived, what="the answer at the server")
            # The server holds the answer for a second: the write is done, its lines are not out.
            assert not (await call(control.integration, target["_id"]))["enabled"]
            assert lines_of(command["_id"]) == []
            assert "Disabled" in (await answer_to(w, tmp_path, command))["msg"]
            await until(lambda: "command" in lines_of(command["_id"]), what="the command's log line")
    assert lines_of(command["_id"]) == ["integration.updated", "command"]
    updated = next(e for e in captured if e["event"] == "integration.updated")
    assert updated["integration_id"] == target["_id"] and updated["command"] == "disable"


def fail_once(store: StateStore, method: str) -> list[str]:
    """Make `store.<method>` raise StateUnavailable at its first call (the database going away
    right then); returns the calls seen so far, by the first argument."""
    original = getattr(store, method)
    calls: list[str] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        if len(calls) == 1:
            raise StateUnavailable("test database", "connection lost")
        return await original(*args, **kwargs)

    setattr(store, method, flaky)
    return calls


async def test_a_change_whose_audit_row_cannot_be_stored_is_not_answered_not_run(w: World, tmp_path: Path) -> None:
    """Was: the database failed after the write had landed (here: at the audit row), and the caller
    was told "I did not run this one; nothing was changed" although the integration had changed.
    Now the command is left to the recovery sweep once the database answers: the journal finds
    the write landed, so it is answered as changed, with its audit row, and not written again."""
    control = w.control
    target = await hook(w, "audit-outage")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        assert bot.state is not None
        fail_once(bot.state, "record")
        command = await call(control.post_message, "owen", "ops", '!integration set audit-outage alias="after" --yes')
        answer = await answer_to(w, tmp_path, command)
        assert answer["msg"].startswith("✅ Changed"), answer["msg"]
        await until(lambda: len(bot_messages(w, "ops")) == 1, what="one answer")
    assert (await call(control.integration, target["_id"]))["alias"] == "after"
    assert control.counters().rest.get("integrations.update", 0) == 1
    rows = await audit_rows(tmp_path, target["_id"])
    assert [(r.message_id, r.after["alias"]) for r in rows if r.after] == [(command["_id"], "after")]


async def test_a_claim_that_cannot_be_finished_after_the_answer_is_finished_later(w: World, tmp_path: Path) -> None:
    """Was: the database failing as an answered command's claim was finished raised out of the
    command's task, and the claim stayed 'claimed' for good (its owner renewing its lease)."""
    control = w.control
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        state = bot.state
        assert state is not None
        calls = fail_once(state, "finish_message")
        command = await call(control.post_message, "admin", "general", "!integration help")
        await answer_to(w, tmp_path, command)
        await until(lambda: len(calls) >= 2, what="the claim finished once the database answered")
        assert await state.message_status(command["_id"]) == "done"
    assert len([m for m in bot_messages(w, "general") if m["_id"] in answer_ids(tmp_path, command)]) == 1


async def test_a_command_claimed_in_trouble_is_not_run_while_its_answer_cannot_be_looked_up(
    w: World, tmp_path: Path
) -> None:
    """Was: a command claimed after its claim had failed (the database away, while another replica
    may have answered it "I did not run this one; nothing was changed") looked for that answer
    first, and when the look-up itself failed (Rocket.Chat erring) ran anyway: a command its author
    was told had changed nothing changed the integration. Now it is not run then: its claim, no
    longer renewed, is decided by the recovery once Rocket.Chat answers (closed, not run)."""
    control = w.control
    target = await hook(w, "troubled-lookup")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        assert bot.state is not None
        ready = asyncio.Event()
        original = bot.state.claim_messages
        refused: list[object] = []

        async def away_until_ready(*args: Any, **kwargs: Any) -> Any:
            if not ready.is_set():
                refused.append(args)
                raise StateUnavailable("test database", "connection lost")
            return await original(*args, **kwargs)

        bot.state.claim_messages = away_until_ready  # type: ignore[method-assign]
        command = await call(control.post_message, "owen", "ops", "!integration disable troubled-lookup")
        await until(lambda: refused, what="the command's claim refused")
        # Meanwhile another replica, which could not claim it either, told the author so.
        notice = await call(
            control.post_message,
            BOT,
            "ops",
            "⏳ I can't record commands right now, so I did not run this one; nothing was changed.",
            message_id=answer_ids(tmp_path, command)[0],
        )
        control.fail_next("chat.getMessage", times=1000)  # and Rocket.Chat errs when asked for it
        ready.set()
        await until(lambda: control.counters().rest.get("chat.getMessage", 0) > 0, what="the answer looked up")
        control.clear_faults()
        decided = lambda: bot_claim_status(tmp_path, command["_id"]) == "done"  # noqa: E731
        await until(decided, what="the command decided by the recovery", timeout=30)
    assert (await call(control.integration, target["_id"]))["enabled"] is True
    assert control.counters().rest.get("integrations.update", 0) == 0
    assert [m["_id"] for m in bot_messages(w, "ops")] == [notice["_id"]]


def bot_claim_status(tmp_path: Path, message_id: str) -> str | None:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        row = db.execute("SELECT status FROM processed_messages WHERE message_id = ?", (message_id,)).fetchone()
    return str(row[0]) if row else None


async def test_an_answer_that_finds_a_not_run_notice_at_its_id_is_written_over_it(w: World, tmp_path: Path) -> None:
    """Was: a replica cut off from the shared database told the author "I did not run this one;
    nothing was changed" (at the ids of the command's answer) while another replica, slower than
    the notice's wait, ran the command: its answer found the notice at its id, took it for its
    own, and the author was left told that nothing had changed. The answer now replaces it."""
    control = w.control
    target = await hook(w, "notice-replaced")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        assert bot.state is not None
        command_id = random_id()
        notice = await call(
            control.post_message, BOT, "ops", replies.UNRECORDED, message_id=bot.state.message_ids.answer(command_id)[0]
        )
        await call(control.post_message, "owen", "ops", "!integration disable notice-replaced", message_id=command_id)
        edited = await until(
            lambda: [m for m in bot_messages(w, "ops") if m["_id"] == notice["_id"] and "Disabled" in m["msg"]],
            what="the notice replaced by the answer",
        )
    assert edited[0]["msg"].startswith(f"{wording.DISABLED_MARK} Disabled"), edited[0]["msg"]
    assert "editedAt" in edited[0]
    assert [m["_id"] for m in bot_messages(w, "ops")] == [notice["_id"]]
    assert (await call(control.integration, target["_id"]))["enabled"] is False


def command_rows(tmp_path: Path, message_id: str) -> int:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM audit WHERE message_id = ?", (message_id,)).fetchone()[0])


async def test_the_claim_of_an_answer_written_over_a_not_run_notice_closes_once_the_notice_is_gone(
    w: World, tmp_path: Path
) -> None:
    """The audit row comes right after the answer; the claim's close only once the notice found at
    the answer's ids is written over: a crash in between leaves the command to a restart, which
    answers it over the notice, instead of a closed claim under "nothing was changed"."""
    control = w.control
    await hook(w, "notice-slow")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        assert bot.state is not None
        command_id = random_id()
        notice = await call(
            control.post_message, BOT, "ops", replies.UNRECORDED, message_id=bot.state.message_ids.answer(command_id)[0]
        )
        await call(control.set_latency, 1.5, "chat.update")  # writing over the notice takes a while
        await call(control.post_message, "owen", "ops", "!integration disable notice-slow", message_id=command_id)
        await until(lambda: command_rows(tmp_path, command_id) == 1, what="the audit row")
        assert bot_claim_status(tmp_path, command_id) == "claimed"
        await until(
            lambda: [m for m in bot_messages(w, "ops") if m["_id"] == notice["_id"] and "Disabled" in m["msg"]],
            what="the notice replaced by the answer",
        )
        await until(lambda: bot_claim_status(tmp_path, command_id) == "done", what="the claim closed")


def claim_lease(tmp_path: Path, message_id: str) -> float | None:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        row = db.execute("SELECT lease_until FROM processed_messages WHERE message_id = ?", (message_id,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


async def test_a_command_still_running_while_the_bot_drains_keeps_its_claim_renewed(w: World, tmp_path: Path) -> None:
    """Was: stopping (SIGTERM) cancelled the renewal of claims before the drain: a command still
    running then lost its lease after `BOT_CLAIM_LEASE` and another replica could take it over and
    start it again (stopped before its write since, but run twice up to there). Its claim is now
    renewed until the drain ends, and the command finishes and is answered."""
    control = w.control
    target = await hook(w, "draining")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3, bot_shutdown_grace=10)) as (bot, task):
        control.set_latency(4.0, "integrations.update")  # the write is in flight when the stop comes
        command = await call(control.post_message, "owen", "ops", "!integration disable draining")
        await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "claimed", what="the command claimed")
        leased = claim_lease(tmp_path, command["_id"])
        assert leased is not None
        bot.stop()
        renewed = lambda: (claim_lease(tmp_path, command["_id"]) or 0.0) > leased + 0.5  # noqa: E731
        await until(renewed, timeout=8, what="the claim renewed while the bot drains")
        await asyncio.wait_for(asyncio.shield(task), 15)
    assert bot_claim_status(tmp_path, command["_id"]) == "done"
    assert (await call(control.integration, target["_id"]))["enabled"] is False


async def test_a_running_commands_claim_is_renewed_while_a_take_over_waits_for_rocket_chat(
    w: World, tmp_path: Path
) -> None:
    """Was: the claims' keeper decided the claims it took over (a dead replica's) itself, between
    two renewals, with a REST call or more per command: while Rocket.Chat was slow to answer those
    (each call may wait out its time-outs and retries, 40 s and more), the leases of this process's
    own running commands were not renewed, ran out, and another replica took them over and ran them
    a second time beside the first. Renewals now go on while such a decision waits."""
    control = w.control
    await hook(w, "renewed-meanwhile")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        await call(control.set_latency, 4.0, "integrations.update")  # the command runs for a while
        command = await call(control.post_message, "owen", "ops", "!integration disable renewed-meanwhile")
        await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "claimed", what="the command claimed")
        # A replica died with a command unfinished; deciding it asks Rocket.Chat, which does not
        # answer in time (each attempt times out: 15 s with the retries).
        await call(control.set_latency, 6.0, "chat.getMessage")
        with sqlite3.connect(tmp_path / "state.sqlite3") as db:
            db.execute(
                "INSERT INTO processed_messages (message_id, room_id, message_ts, claimed_at, status, owner,"
                " lease_until) VALUES ('orphan', ?, 0, 0, 'claimed', 'a-dead-replica', 0)",
                (command["rid"],),
            )
        taken = lambda: claim_owner(tmp_path, "orphan") != "a-dead-replica"  # noqa: E731
        await until(taken, what="the dead replica's claim taken over")
        leased = claim_lease(tmp_path, command["_id"])
        assert leased is not None
        renewed = lambda: (claim_lease(tmp_path, command["_id"]) or 0.0) > leased + 0.5  # noqa: E731
        await until(renewed, timeout=3, what="the running command's claim renewed")
        answer = await answer_to(w, tmp_path, command)
        assert "Disabled" in answer["msg"]
        # The claim being decided is renewed too: taken over once, not again each lease.
        assert bot.metrics.registry.get_sample_value("integrations_bot_claim_takeovers_total") == 1


def claim_owner(tmp_path: Path, message_id: str) -> str | None:
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        row = db.execute("SELECT owner FROM processed_messages WHERE message_id = ?", (message_id,)).fetchone()
    return str(row[0]) if row and row[0] is not None else None


async def test_a_command_taken_over_while_its_replica_could_not_renew_its_claim_is_answered_by_the_other_only(
    w: World, tmp_path: Path
) -> None:
    """Was: a replica that could not renew its claims for longer than the lease (paused, or cut
    off from the database) lost a `yes` to another replica, which took the change and applied it;
    going on, the first found no change waiting and answered "You have no change waiting for
    confirmation in this room; nothing was changed" at the answer's ids, first, so the real answer
    was never shown. Only writes checked the claim. Now a command whose replica's renewals lapsed
    since it was claimed looks at its claim before answering, and says nothing if it is not its own.
    (The pause: the renewal statement of its claims' keeper does not come back meanwhile.)"""
    control = w.control
    await hook(w, "taken-yes")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        state = bot.state
        assert state is not None
        preview = await call(control.post_message, "owen", "ops", '!integration set taken-yes alias="new"')
        assert "confirm" in (await answer_to(w, tmp_path, preview))["msg"]
        renew, thawed = state.renew_claims, asyncio.Event()

        async def paused(*args: Any, **kwargs: Any) -> int:
            await thawed.wait()
            return await renew(*args, **kwargs)

        state.renew_claims = paused  # type: ignore[method-assign]  # this replica renews nothing (paused)
        await call(control.set_latency, 4.0, "users.info")  # the confirmation's rights come slowly
        with structlog.testing.capture_logs() as captured:
            command = await call(control.post_message, "owen", "ops", "!integration yes")
            await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "claimed", what="the yes claimed")
            # Its lease ran out: another replica took the command over, and the change with it.
            with sqlite3.connect(tmp_path / "state.sqlite3") as db:
                db.execute(
                    "UPDATE processed_messages SET owner = 'another-replica' WHERE message_id = ?", (command["_id"],)
                )
                db.execute("UPDATE confirmations SET status = 'applying', applied_at = applied_at")
                db.execute("UPDATE confirmations SET applied_at = created_at")
            mine = command["_id"]
            ended = lambda: [e for e in captured if e.get("message_id") == mine and e["event"] == "command.taken_over"]  # noqa: E731
            await until(ended, what="the yes stopped", timeout=15)
        thawed.set()
        await call(control.set_latency, 0, "users.info")
    assert not [m for m in control.messages("ops") if m["_id"] in answer_ids(tmp_path, command)]


async def test_a_running_commands_claim_is_renewed_while_book_keeping_left_by_an_outage_waits_for_rocket_chat(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `disable` answered while the state database was away (its timer look-up and its audit row
    failed) leaves its book-keeping to the claims' keeper (`_settle`). Recorded once the database
    answers again, it looks under the integration's lock at the integration, in Rocket.Chat
    (`record_resumed`): while Rocket.Chat was slow to answer that (each attempt timing out, 15 s
    with the retries), the keeper renewed no claim, and the lease of a command running meanwhile
    ran out (another replica would take it over and run it a second time beside the first)."""
    from bot.state.timer_store import TimerStore

    control = w.control
    first = await hook(w, "settled-later")
    await hook(w, "renewed-meanwhile")
    failing = [True]
    finishing, pending_for = StateStore.record_finishing, TimerStore.pending_for

    async def record_finishing(self: StateStore, *args: Any, **kwargs: Any) -> Any:
        if failing[0]:
            raise StateUnavailable("test", "the database restarted")
        return await finishing(self, *args, **kwargs)

    async def timer_pending_for(self: TimerStore, *args: Any, **kwargs: Any) -> Any:
        if failing[0]:
            raise StateUnavailable("test", "the database restarted")
        return await pending_for(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, "record_finishing", record_finishing)
    monkeypatch.setattr(TimerStore, "pending_for", timer_pending_for)
    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)):
            unsettled = await call(control.post_message, "owen", "ops", f"!integration disable {first['_id']}")
            await until(lambda: any(e.get("event") == "command.unsettled" for e in captured), what="unsettled")
            # The next command runs for a while (its look-up, then its write: 4 s each).
            await call(control.set_latency, 4.0, "integrations.list")
            await call(control.set_latency, 4.0, "integrations.update")
            command = await call(control.post_message, "owen", "ops", "!integration disable renewed-meanwhile")
            await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "claimed", what="the command claimed")
            # The database answers again; the book-keeping's look at the integration is not
            # answered in time (each attempt times out).
            await call(control.set_latency, 6.0, "integrations.get")
            failing[0] = False
            # Until it is answered, the running command's lease never runs out.
            while bot_claim_status(tmp_path, command["_id"]) == "claimed":
                lease = claim_lease(tmp_path, command["_id"])
                assert lease is not None
                assert lease > time.time(), "the running command's lease ran out"
                await asyncio.sleep(0.1)  # observing the stored lease, not synchronising
            answer = await answer_to(w, tmp_path, command)
            assert "Disabled" in answer["msg"]
            await call(control.set_latency, 0.0, "integrations.get")
            await until(lambda: bot_claim_status(tmp_path, unsettled["_id"]) == "done", timeout=30, what="settled")


async def test_a_change_taken_over_and_closed_on_a_not_run_notice_is_answered_by_the_replica_that_ran_it(
    w: World, tmp_path: Path
) -> None:
    """A replica ran a `disable` (the integration switched off) while its renewals lapsed (paused,
    or cut off from the database). Meanwhile another replica, cut off from the database, posted
    the "I can't record commands right now, so I did not run this one" notice at the answer's ids,
    and the replica that took the claim over found that notice there and closed the claim
    ("answered before the restart"). Was: the first replica, seeing the claim another's, said
    nothing, and the author was left told nothing was changed when it was (outbound.py: the real
    answer writes over that notice). Once the other has closed the claim, the first answers: its
    answer is stored once at the answer's ids, over a notice only."""
    control = w.control
    target = await hook(w, "ran-here")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        state, rest = bot.state, bot.rest
        assert state is not None and rest is not None
        renew, thawed = state.renew_claims, asyncio.Event()

        async def paused(*args: Any, **kwargs: Any) -> int:
            await thawed.wait()
            return await renew(*args, **kwargs)

        state.renew_claims = paused  # type: ignore[method-assign]  # this replica renews nothing (paused)
        await call(control.set_latency, 4.0, "integrations.update")  # the command runs for a while
        command = await call(control.post_message, "owen", "ops", "!integration disable ran-here")
        await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "claimed", what="the command claimed")
        # A replica cut off from the database posted the notice; the one that took the claim over
        # found it and closed the claim.
        notice = await rest.chat_send_message(
            command["rid"], replies.UNRECORDED, message_id=answer_ids(tmp_path, command)[0]
        )
        with sqlite3.connect(tmp_path / "state.sqlite3") as db:
            db.execute(
                "UPDATE processed_messages SET owner = 'another-replica', status = 'done',"
                " outcome = 'recovered: answered before the restart' WHERE message_id = ?",
                (command["_id"],),
            )
        await until(
            lambda: "Disabled" in str(control.message(notice["_id"]).get("msg")), what="the answer over the notice"
        )
        thawed.set()
        await call(control.set_latency, 0, "integrations.update")
    assert (await call(control.integration, target["_id"]))["enabled"] is False


async def test_a_claim_whose_commit_answer_was_lost_runs_its_command_at_once(w: World, tmp_path: Path) -> None:
    """Was: the claim's statement committed, but its reply was lost (the connection broke right
    then); the claim tried once more and found the command claimed already, by this process, so
    it took it for another's claim. The command ran only when its lease ran out and it was taken
    over: a lease (half a minute by default) late. Now the second try knows its own first one."""
    control = w.control
    target = await hook(w, "claim-reply-lost")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=120)) as (bot, _):
        state = bot.state
        assert state is not None
        original = state.claim_messages
        tries: list[int] = []

        async def committed_then_lost(*args: Any, **kwargs: Any) -> Any:
            tries.append(len(tries))
            taken = await original(*args, **kwargs)
            if len(tries) == 1:
                raise StateUnavailable("test database", "server closed the connection unexpectedly")
            return taken

        state.claim_messages = committed_then_lost  # type: ignore[method-assign]
        command = await call(control.post_message, "owen", "ops", "!integration disable claim-reply-lost")
        answer = await answer_to(w, tmp_path, command)
        assert answer["msg"].startswith(f"{wording.DISABLED_MARK} Disabled"), answer["msg"]
        assert tries[:2] == [0, 1]  # the first try failed as its reply was lost; the second found it
        await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "done", what="the claim finished")
    assert [m["_id"] for m in bot_messages(w, "ops")] == [answer["_id"]]
    assert (await call(control.integration, target["_id"]))["enabled"] is False
    assert control.counters().rest.get("integrations.update", 0) == 1


async def test_a_claim_committed_unanswered_before_the_database_went_away_runs_once_it_is_back(
    w: World, tmp_path: Path
) -> None:
    """The same, with the database away for the claim's second try: the command waits for it
    (`_claim_waiting`), and is run once it is back, not a lease later."""
    control = w.control
    target = await hook(w, "claim-reply-lost-away")
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=120)) as (bot, _):
        state = bot.state
        assert state is not None
        original = state.claim_messages
        tries: list[int] = []

        async def committed_then_away(*args: Any, **kwargs: Any) -> Any:
            tries.append(len(tries))
            if len(tries) == 2:
                raise StateUnavailable("test database", "connection refused")
            taken = await original(*args, **kwargs)
            if len(tries) == 1:
                raise StateUnavailable("test database", "server closed the connection unexpectedly")
            return taken

        state.claim_messages = committed_then_away  # type: ignore[method-assign]
        command = await call(control.post_message, "owen", "ops", "!integration disable claim-reply-lost-away")
        answer = await answer_to(w, tmp_path, command)
        assert answer["msg"].startswith(f"{wording.DISABLED_MARK} Disabled"), answer["msg"]
        await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "done", what="the claim finished")
    assert [m["_id"] for m in bot_messages(w, "ops")] == [answer["_id"]]
    assert (await call(control.integration, target["_id"]))["enabled"] is False
    assert control.counters().rest.get("integrations.update", 0) == 1


async def test_a_command_running_after_a_late_claim_is_not_run_again_by_a_redelivery_that_waits_for_its_claim(
    w: World, tmp_path: Path
) -> None:
    """Was: the moments of the claims that failed were kept for every waiting command until none
    waited. A command whose first claim committed unanswered ran once claimed again; another
    command's claim failing meanwhile kept that moment remembered. A re-delivery of the command,
    running still, whose claim failed too, then waited for its claim, and its next try found the
    first claim, made at a remembered moment, and ran it a second time: the timed disable was
    re-timed by its own command (a second audit row)."""
    control = w.control
    target = await hook(w, "late-claim-redelivered")
    command_id = random_id()
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=120)) as (bot, _):
        state, rest = bot.state, bot.rest
        assert state is not None and rest is not None
        chain = set(state.message_ids.answer(command_id))
        original = state.claim_messages
        phase = ["committed, reply lost"]
        count = {"with command": 0, "other failed": 0}
        other_failed, back = asyncio.Event(), asyncio.Event()
        returned: set[str] = set()

        async def scripted(claims: list[tuple[str, str, Any]], now: Any, **options: Any) -> set[str]:
            ids = {message_id for message_id, *_ in claims}
            if command_id in ids:
                count["with command"] += 1
            if phase[0] == "committed, reply lost" and command_id in ids:
                await original(claims, now, **options)  # the first try commits, its reply lost
                phase[0] = "away"
                raise StateUnavailable("test database", "server closed the connection unexpectedly")
            if phase[0] == "away" and command_id in ids and count["with command"] == 3:
                # The keeper's try of the waiting claim: another command's claim fails meanwhile.
                await call(control.post_message, "alice", "ops", "!integration help")
                await other_failed.wait()
                taken = await original(claims, now, **options)
                phase[0], count["with command"] = "away again", 0
                return taken
            if phase[0] == "away again" and command_id in ids and count["with command"] == 2:
                phase[0] = "back"  # the re-delivery's claim failed twice: it waits for its claim
            elif phase[0] == "back":
                taken = await original(claims, now, **options)
                if command_id in ids:
                    returned.update(taken)
                    back.set()
                return taken
            if command_id not in ids:
                count["other failed"] += 1
                if count["other failed"] == 2:
                    other_failed.set()
            raise StateUnavailable("test database", "connection refused")

        state.claim_messages = scripted  # type: ignore[method-assign]
        answer = HeldAnswer(rest, chain)
        command = await call(
            control.post_message,
            "owen",
            "ops",
            "!integration disable late-claim-redelivered for 1h",
            message_id=command_id,
        )
        await asyncio.wait_for(answer.posting.wait(), REPLY_TIMEOUT)  # run once claimed again; its answer held
        lookups = control.counters().rest.get("chat.getMessage", 0)
        await call(control.react, command_id, ":eyes:", "alice")  # a re-delivery, while it runs
        await asyncio.wait_for(back.wait(), REPLY_TIMEOUT)
        await answer.released(w, tmp_path, bot, command, again=command_id in returned, lookups=lookups)
    await disabled_once(tmp_path, w, target, command_id, chain)


async def test_a_late_claim_taken_over_by_its_own_process_is_not_run_again_once_its_claim_works(
    w: World, tmp_path: Path
) -> None:
    """A command whose first claim committed unanswered, and whose claim then failed for longer
    than its lease: the keeper took its expired claim over (this process's own) and the recovery
    ran it. Was: once claims worked again, the waiting command found that claim, made at a moment
    of its own failed tries, and ran a second time (its timed disable re-timed by itself). A try
    older than the lease is not remembered: its claim has run out and is the recovery's."""
    control = w.control
    target = await hook(w, "late-claim-taken-over")
    command_id = random_id()
    async with running_bot(settings_for(w, tmp_path, bot_claim_lease=3)) as (bot, _):
        state, rest = bot.state, bot.rest
        assert state is not None and rest is not None
        chain = set(state.message_ids.answer(command_id))
        original = state.claim_messages
        phase = ["committed, reply lost"]
        back = asyncio.Event()
        returned: set[str] = set()

        async def scripted(claims: list[tuple[str, str, Any]], now: Any, **options: Any) -> set[str]:
            ids = {message_id for message_id, *_ in claims}
            if phase[0] == "committed, reply lost" and command_id in ids:
                await original(claims, now, **options)  # the first try commits, its reply lost
                phase[0] = "away"
                raise StateUnavailable("test database", "server closed the connection unexpectedly")
            if phase[0] == "away":
                raise StateUnavailable("test database", "connection refused")
            taken = await original(claims, now, **options)
            if command_id in ids:
                returned.update(taken)
                back.set()
            return taken

        state.claim_messages = scripted  # type: ignore[method-assign]
        answer = HeldAnswer(rest, chain)
        command = await call(
            control.post_message,
            "owen",
            "ops",
            "!integration disable late-claim-taken-over for 1h",
            message_id=command_id,
        )
        await asyncio.wait_for(answer.posting.wait(), REPLY_TIMEOUT)  # taken over and run; its answer held
        lookups = control.counters().rest.get("chat.getMessage", 0)
        phase[0] = "back"
        await asyncio.wait_for(back.wait(), REPLY_TIMEOUT)
        await answer.released(w, tmp_path, bot, command, again=command_id in returned, lookups=lookups)
    await disabled_once(tmp_path, w, target, command_id, chain)


class HeldAnswer:
    """The bot's answer to one command (an id of `chain`), held as it is posted until `released`."""

    def __init__(self, rest: Any, chain: set[str]) -> None:
        self.posting, self._release = asyncio.Event(), asyncio.Event()
        send = rest.chat_send_message

        async def held(*args: Any, **kwargs: Any) -> dict[str, Any]:
            if kwargs.get("message_id") in chain:
                self.posting.set()
                await self._release.wait()
            return await send(*args, **kwargs)

        rest.chat_send_message = held

    async def released(
        self, w: World, tmp_path: Path, bot: Bot, command: dict[str, Any], *, again: bool, lookups: int
    ) -> None:
        """Let the answer go, once a second run of the command (`again`: its claim was returned to
        it a second time) has looked for an answer (`lookups`: `chat.getMessage` calls before),
        and wait until every command is over."""
        if again:
            await until(
                lambda: w.control.counters().rest.get("chat.getMessage", 0) >= lookups + 3,
                what="the second run's look for an answer",
            )
        self._release.set()
        await answer_to(w, tmp_path, command)
        await until(lambda: bot_claim_status(tmp_path, command["_id"]) == "done", what="the claim finished")
        await until(lambda: not bot._running, what="every command over")


async def disabled_once(tmp_path: Path, w: World, target: dict[str, Any], command_id: str, chain: set[str]) -> None:
    """The command's timed disable was made once (one audit row) and answered once."""
    rows = [r for r in await audit_rows(tmp_path, target["_id"]) if r.message_id == command_id]
    assert [r.action for r in rows] == ["disable"]
    assert len([m for m in bot_messages(w, "ops") if m["_id"] in chain]) == 1


async def test_quiet_reads_its_callers_rights_fresh(w: World, tmp_path: Path) -> None:
    """`quiet` changes what the bot does (no flood notices about an integration in a room until
    midnight), so it is judged on rights read for it, as a change is. Was: rights cached by an
    earlier command (up to `BOT_RIGHTS_CACHE_SECONDS`) served, so an account deactivated since
    (which Rocket.Chat does not announce) could still silence the flood guard."""
    control = w.control
    target = await hook(w, "quiet-fresh")
    async with running_bot(settings_for(w, tmp_path)) as (bot, _):
        listed = await call(control.post_message, "owen", "ops", "!integration list")
        await answer_to(w, tmp_path, listed)  # owen's rights are cached now
        await call(control.set_user_active, "owen", False)  # not announced
        command = await call(control.post_message, "owen", "ops", "!integration quiet quiet-fresh")
        answer = await answer_to(w, tmp_path, command)
        assert bot.state is not None
        quiet = await bot.state.floods.quiet_until(target["_id"], command["rid"])
    assert "deactivated" in answer["msg"], answer["msg"]
    assert quiet is None
