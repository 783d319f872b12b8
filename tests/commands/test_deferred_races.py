"""Book-keeping a command does after its answer, or after a crash, outside the integration's lock,
against another person's timer command (found in review).

Within one process a command waits for the pending book-keeping of the same integration
(`Followups.settled`); a second replica does not: here the other person's command goes through
another harness on the same state store (its own follow-ups, as another replica has), or runs while
the first command waits to be resumed after a kill -9. The timer a change follows is the one pending
when it was written, as that change would have left it: never one another command set, took over or
re-based since.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from set_harness import Harness, Killed, open_journaled_harness

from bot.errors import Unavailable
from bot.incident.toolkit import IncidentToolkit
from bot.rocketchat.models import Integration
from bot.state.timer_states import TimedDisable, TimerState
from commands.reply import Reply


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_journaled_harness()
    harness.control.create_user("bo", roles=["user", "admin"])
    harness.seeded["users"]["bo"] = {"userId": harness.control.user("bo")["_id"]}
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def other(h: Harness) -> AsyncIterator[Harness]:
    """Another replica on the same state: its own follow-ups, its own timer service."""
    replica = h.replica(h.services.state)
    toolkit: IncidentToolkit = replica.with_incident_toolkit()
    try:
        yield replica
    finally:
        await toolkit.aclose()


def toolkit(h: Harness) -> IncidentToolkit:
    assert h.services.incident is not None
    return h.services.incident


async def pending(h: Harness, integration_id: str) -> TimedDisable | None:
    return await toolkit(h).timers.pending_for(integration_id)


def hook(h: Harness, name: str) -> str:
    return str(h.control.create_incoming_integration(name, channel="#general", alias="old")["_id"])


async def answered(h: Harness, user: str, text: str) -> Reply:
    """The answer, its book-keeping not run yet (on its way, slowly)."""
    message, invocation = h.message(user, "ops", text)
    return await h.dispatcher.dispatch(message, invocation)


async def due_back_on(h: Harness, timer: TimedDisable) -> str | None:
    """What the scheduler does with `timer` once it is due."""
    h.clock.advance(timer.due_at - h.clock.now + timedelta(seconds=1))
    expiry = await toolkit(h).timers.expire(timer)
    return None if expiry is None else expiry.kind


async def test_an_enable_answered_leaves_its_timer_to_a_timed_disable_made_through_another_replica(
    h: Harness, other: Harness
) -> None:
    """ann's enable ends the 1 h disable; her answer is on its way, its book-keeping (the audit row)
    still to come. bo's `disable … for 2h` through another replica switches it off again with a
    timer of its own. Was (when the ending came after the answer, and bo took that row over): ann's
    book-keeping found the row moved on, followed it and ended bo's timer: it stayed off for good."""
    x = hook(h, "Raced hook")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    enable = await answered(h, "admin", f"!integration enable {x}")
    assert enable.outcome == "changed" and h.doc(x)["enabled"] is True
    timed = await other.say("bo", "ops", f"!integration disable {x} for 2h")
    assert timed.outcome == "changed" and "in 2 h" in timed.text, timed.text
    await h.services.followups.run(enable.afterwards)

    left = await pending(h, x)
    assert left is not None and left.state is TimerState.ACTIVE, left
    assert left.due_at == h.clock.now + timedelta(hours=2)
    assert h.doc(x)["enabled"] is False
    assert await due_back_on(h, left) == "re-enabled"
    assert h.doc(x)["enabled"] is True


async def test_a_plain_disable_after_an_enable_answered_elsewhere_stays_off_whichever_is_recorded_first(
    h: Harness, other: Harness
) -> None:
    """ann's enable (answered, its book-keeping to come) and bo's plain `disable` through another
    replica, which saw ann's timer still pending: bo's book-keeping runs first. A disable without a
    duration is for good: the timer must not be left re-based on bo's disable, to switch it back on
    when due."""
    x = hook(h, "Raced plain")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    enable = await answered(h, "admin", f"!integration enable {x}")
    plain = await answered(other, "bo", f"!integration disable {x}")
    assert plain.outcome == "changed", plain.text
    await other.services.followups.run(plain.afterwards)
    await h.services.followups.run(enable.afterwards)

    assert await pending(h, x) is None
    assert h.doc(x)["enabled"] is False


async def test_a_plain_disable_of_one_switched_on_by_hand_while_timed_is_for_good(h: Harness) -> None:
    """Was: the running timer was re-based on the disable, and switched it back on when due,
    though the answer said it was disabled (for good: "To turn it back on: enable")."""
    x = hook(h, "Hand enabled")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    timer = await pending(h, x)
    assert timer is not None
    h.control.update_integration(x, {"enabled": True})  # by hand, in Rocket.Chat
    reply = await h.say("bo", "ops", f"!integration disable {x}")
    assert reply.outcome == "changed" and "To turn it back on" in reply.text, reply.text

    assert await pending(h, x) is None
    ended = await toolkit(h).timers.store.get(timer.id)
    assert ended is not None and ended.state is TimerState.CANCELLED
    assert await due_back_on(h, timer) is None
    assert h.doc(x)["enabled"] is False


@pytest.mark.parametrize("command", ["disable", "enable"])
async def test_a_change_that_ends_a_timer_ends_it_before_an_extend_elsewhere_can_keep_it(
    h: Harness, other: Harness, command: str
) -> None:
    """Switched on by hand while timed (the `disable`), or still off (the `enable`): the change ends
    the running timer. Its answer is on its way, its book-keeping to come, when bo's `extend … 1h`
    through another replica finds the timer still running. Was: the timer was ended only by that
    book-keeping, which then found it moved on by a later command and left it: a plain disable
    (for good) came back on when due, or an enabled one kept a running timer."""
    x = hook(h, f"Ended by {command}")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    timer = await pending(h, x)
    assert timer is not None
    if command == "disable":
        h.control.update_integration(x, {"enabled": True})  # by hand, in Rocket.Chat
    change = await answered(h, "admin", f"!integration {command} {x}")
    assert change.outcome == "changed", change.text
    extend = await other.say("bo", "ops", f"!integration extend {x} 1h")
    await h.services.followups.run(change.afterwards)

    assert extend.outcome != "changed", extend.text
    assert await pending(h, x) is None
    ended = await toolkit(h).timers.store.get(timer.id)
    assert ended is not None and ended.state is TimerState.CANCELLED
    assert await due_back_on(h, timer) is None
    assert h.doc(x)["enabled"] is (command == "enable")


async def test_a_timer_falling_due_while_an_enables_book_keeping_is_pending_is_ended_already(h: Harness) -> None:
    """The 1 h disable falls due just after ann's enable was answered, before its book-keeping ran.
    Was: the timer was still running, and the scheduler took the enable's write for its own
    re-enable and announced "back on: the disable … ended", as if nobody had enabled it."""
    x = hook(h, "Due meanwhile")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    timer = await pending(h, x)
    assert timer is not None
    enable = await answered(h, "admin", f"!integration enable {x}")
    assert enable.outcome == "changed", enable.text
    assert await due_back_on(h, timer) is None
    await h.services.followups.run(enable.afterwards)

    ended = await toolkit(h).timers.store.get(timer.id)
    assert ended is not None and ended.state is TimerState.CANCELLED
    assert [r.action for r in await h.services.state.history(integration_ids=[x])][:2] == ["enable", "disable"]


async def test_history_through_another_replica_waits_for_the_audit_row_of_an_answer_given(
    h: Harness, other: Harness
) -> None:
    """ann's disable is answered; its audit row is book-keeping still to come in her replica. bo,
    whose commands another replica runs, asks for the history at once. Was: only the book-keeping
    of bo's own replica was waited for, and the history lacked the change ann had been told of."""
    x = hook(h, "Recorded elsewhere")
    message, invocation = h.message("admin", "ops", f"!integration disable {x}")
    disable = await h.run_claimed(message, invocation)
    assert disable.outcome == "changed", disable.text
    history = asyncio.create_task(other.say("bo", "ops", f"!integration history {x}"))
    await asyncio.sleep(0.2)
    assert not history.done(), history.result().text
    await h.services.followups.run(disable.afterwards)
    reply = await history
    assert "disable" in reply.text and "admin" in reply.text, reply.text


def seeded(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


async def enable_all_after_selection(h: Harness, meanwhile: Callable[[str], Awaitable[None]]) -> tuple[Reply, str]:
    """`disable all in #alerts for 30m`, then `enable all in #alerts`, with `meanwhile(grafana's id)`
    run once between the members' selection (the first read of the group) and their turns (a
    member's ending reads the group again): its answer, and Grafana's id."""
    timers = toolkit(h).timers
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    grafana = seeded(h, "grafana")
    original = timers.store.in_group
    done: list[bool] = []

    async def selected_then(group_id: int) -> list[TimedDisable]:
        members = await original(group_id)
        if not done:
            done.append(True)
            await meanwhile(grafana)
        return members

    timers.store.in_group = selected_then  # type: ignore[method-assign]
    try:
        reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    finally:
        timers.store.in_group = original  # type: ignore[method-assign]
    return reply, grafana


async def test_an_enable_all_ends_a_members_timer_extended_between_its_selection_and_its_write(h: Harness) -> None:
    """The members are selected from their timers as read first; someone's `extend Grafana 1h`
    lands before Grafana's turn. Its timer as pending under its lock is the one its enable ends
    (an ending follows only the timer as it was seen: the one read first had moved on)."""
    timers = toolkit(h).timers
    extended: list[TimedDisable] = []

    async def extend(grafana: str) -> None:
        running = await timers.pending_for(grafana)
        assert running is not None
        extended.append(running)
        await timers.extend(running, running.due_at + timedelta(hours=1))

    reply, grafana = await enable_all_after_selection(h, extend)
    assert extended and reply.outcome == "changed", reply.text
    assert h.doc(grafana)["enabled"] is True
    assert await pending(h, grafana) is None


async def test_an_enable_all_leaves_a_member_whose_group_timer_ended_and_another_was_set(h: Harness) -> None:
    """Between the selection and Grafana's turn, bo switched it on and off again for 2 h (through
    another replica, say). Was: `enable all` switched it on, against bo's later disable, and left
    bo's timer running on an integration that was on. It is no longer the group's to switch on."""

    async def retimed(grafana: str) -> None:
        assert (await h.say("bo", "ops", f"!integration enable {grafana}")).outcome == "changed"
        assert (await h.say("bo", "ops", f"!integration disable {grafana} for 2h")).outcome == "changed"

    reply, grafana = await enable_all_after_selection(h, retimed)
    assert "Left off" in reply.text and "`Grafana`" in reply.text.split("Left off")[1], reply.text
    assert h.doc(grafana)["enabled"] is False
    bos = await pending(h, grafana)
    assert bos is not None and bos.actor_username == "bo" and bos.state is TimerState.ACTIVE


async def test_an_enable_of_one_already_on_says_it_dropped_the_timer_only_if_it_did(
    h: Harness, other: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Switched on by hand while timed: `enable` drops the timer. Was: dropped once the lock was
    free: bo's `disable … for 2h` through another replica could take that row over first; the drop
    then failed, and the answer still said it was dropped."""
    x = hook(h, "Already on")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    seen = await pending(h, x)
    assert seen is not None
    h.control.update_integration(x, {"enabled": True})  # by hand, in Rocket.Chat
    service = h.services.integrations
    editing = service.editing
    raced: list[Reply] = []

    @asynccontextmanager
    async def then_bo(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with editing(*args, **kwargs) as edit:
            yield edit
        if not raced:  # the lock is free: bo's command through the other replica
            raced.append(await other.say("bo", "ops", f"!integration disable {x} for 2h"))

    monkeypatch.setattr(service, "editing", then_bo)
    reply = await h.say("admin", "ops", f"!integration enable {x}")
    monkeypatch.undo()
    assert raced and raced[0].outcome == "changed", raced
    ended = await toolkit(h).timers.store.get(seen.id)
    assert ended is not None
    assert ("dropped its timed disable" in reply.text) == (ended.state is TimerState.CANCELLED), (reply.text, ended)
    assert h.doc(x)["enabled"] is False
    bos = await pending(h, x)
    assert bos is not None and bos.state is TimerState.ACTIVE and bos.due_at == h.clock.now + timedelta(hours=2)


async def _interrupted(h: Harness, monkeypatch: pytest.MonkeyPatch, text: str) -> tuple[Any, Any]:
    """`text` run until its write landed, then killed before its audit row (a `set`/`undo`, which
    record under the lock) or before its book-keeping after the answer (an `enable`)."""
    message, invocation = h.message("admin", "ops", text)
    await h.run_killed_at_record(monkeypatch, message, invocation)
    return message, invocation


async def _resume(h: Harness, message: Any, invocation: Any) -> Reply:
    reply = await h.run_claimed(message, invocation, resumed=True)  # the restart resumes it
    await h.services.followups.run(reply.afterwards)
    return reply


async def _timed_by_bo_meanwhile(h: Harness, x: str) -> TimedDisable:
    """While the command waits to be resumed: bo switches it on, then off for 2 h."""
    assert (await h.say("bo", "ops", f"!integration enable {x}")).outcome == "changed"
    assert (await h.say("bo", "ops", f"!integration disable {x} for 2h")).outcome == "changed"
    timer = await pending(h, x)
    assert timer is not None and timer.state is TimerState.ACTIVE
    return timer


async def _kept(h: Harness, x: str, bos: TimedDisable) -> None:
    now = await toolkit(h).timers.store.get(bos.id)
    assert now is not None and now.state is TimerState.ACTIVE
    reference = now.disabled_document or {}
    assert reference.get("_updatedAt") == h.doc(x)["_updatedAt"], "re-based on a document older than bo's"
    assert await due_back_on(h, now) == "re-enabled"  # bo was told: back on in 2 h
    assert h.doc(x)["enabled"] is True


async def test_a_resumed_set_leaves_a_timed_disable_set_since_by_someone_else(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's `set … --yes` on a snoozed integration wrote, then the process died before its audit
    row. Before it was resumed, bo switched it on and off again for 2 h. Was: the resumed set
    re-based bo's timer on the document ann's set had produced (older than bo's), and when due the
    bot took bo's own disable for somebody else's change and left it off for good."""
    x = hook(h, "Resumed set")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    message, invocation = await _interrupted(h, monkeypatch, f"!integration set {x} alias=new --yes")
    assert h.doc(x)["alias"] == "new"
    bos = await _timed_by_bo_meanwhile(h, x)
    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed", reply.text
    assert [r.action for r in await h.services.state.history(integration_ids=[x])][:1] == ["set"]
    await _kept(h, x, bos)


async def test_a_resumed_set_still_re_bases_its_own_timer(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody changed it meanwhile: the resumed set's audit row re-bases the timer that was pending
    when it wrote, as it would have without the crash (else the bot takes the set for somebody
    else's change when it is due)."""
    x = hook(h, "Resumed own")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    message, invocation = await _interrupted(h, monkeypatch, f"!integration set {x} alias=new --yes")
    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed", reply.text
    timer = await pending(h, x)
    assert timer is not None and (timer.disabled_document or {}).get("_updatedAt") == h.doc(x)["_updatedAt"]
    assert await due_back_on(h, timer) == "re-enabled"
    assert h.doc(x)["alias"] == "new" and h.doc(x)["enabled"] is True


async def test_a_resumed_enable_leaves_a_timed_disable_set_since_by_someone_else(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's enable was answered; the process died before its book-keeping. bo switched it off for
    2 h before it was resumed. Was: the resumed enable ended the timer pending at its resumption,
    bo's: it stayed off for good."""
    x = hook(h, "Resumed enable")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    message, invocation = await _interrupted(h, monkeypatch, f"!integration enable {x}")
    assert h.doc(x)["enabled"] is True
    assert (await h.say("bo", "ops", f"!integration disable {x} for 2h")).outcome == "changed"
    bos = await pending(h, x)
    assert bos is not None
    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed", reply.text
    ann = h.control.user("admin")["_id"]
    assert [r.action for r in await h.services.state.history(integration_ids=[x], actor_id=ann)][:1] == ["enable"]
    await _kept(h, x, bos)


async def test_a_resumed_undo_leaves_a_timed_disable_set_since_by_someone_else(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann undid her `set` on a snoozed integration; the process died before the undo's audit row;
    bo switched it on and off for 2 h before it was resumed. Was: the resumed undo re-based bo's
    timer on the undo's (older) document: left off for good when due."""
    x = hook(h, "Resumed undo")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    assert (await h.say("admin", "ops", f"!integration set {x} alias=new --yes")).outcome == "changed"
    message, invocation = await _interrupted(h, monkeypatch, "!integration undo")
    assert h.doc(x)["alias"] == "old"
    bos = await _timed_by_bo_meanwhile(h, x)
    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed", reply.text
    await _kept(h, x, bos)


async def test_an_enable_all_counts_a_member_switched_on_meanwhile_as_already_on(h: Harness) -> None:
    """Between the selection and Grafana's turn, bo switched it on (its group timer ended): on
    already, not "left off"."""

    async def enabled(grafana: str) -> None:
        assert (await h.say("bo", "ops", f"!integration enable {grafana}")).outcome == "changed"

    reply, grafana = await enable_all_after_selection(h, enabled)
    assert "Left off" not in reply.text and "`Grafana`" in reply.text.split("Already on")[1], reply.text
    assert h.doc(grafana)["enabled"] is True
    assert await pending(h, grafana) is None


async def test_an_enable_all_through_another_replica_right_after_a_disable_all_answered_finds_every_member(
    h: Harness, other: Harness
) -> None:
    """ann's `disable all in #alerts` (no duration) is answered; bo, who read the answer, says
    `enable all in #alerts` through another replica. The members of such a group are known by their
    audit rows alone. Was: recorded after the answer, they were not there yet: "Nothing to switch
    back on", and the integrations stayed off."""
    off = await answered(h, "admin", "!integration disable all in #alerts --yes")
    assert off.outcome == "changed", off.text
    on = await other.say("bo", "ops", "!integration enable all in #alerts")
    await h.services.followups.run(off.afterwards)
    assert on.outcome == "changed", on.text
    assert h.doc(seeded(h, "grafana"))["enabled"] is True
    assert h.doc(seeded(h, "deploy-announcer"))["enabled"] is True


async def test_a_timed_disable_taking_a_timer_over_still_gets_one_if_that_timer_ends_under_it(
    h: Harness, other: Harness
) -> None:
    """bo's `disable … for 2h` through another replica finds it on with ann's timer still pending
    (her enable's book-keeping to come) and takes that row over; ann's book-keeping, which holds no
    lock, ends the row while bo's command is writing. Was: bo's disable was written, then the
    command answered "the timed disable changed meanwhile; try again" and it stayed off for good
    (a second try: "already disabled, and not by me")."""
    x = hook(h, "Ended under it")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    enable = await answered(h, "admin", f"!integration enable {x}")
    timers = toolkit(other).timers
    original = timers.pending_for
    ended: list[bool] = []

    async def then_anns_bookkeeping(integration_id: str) -> TimedDisable | None:
        seen = await original(integration_id)
        if not ended:
            ended.append(True)
            await h.services.followups.run(enable.afterwards)
        return seen

    timers.pending_for = then_anns_bookkeeping  # type: ignore[method-assign]
    try:
        timed = await other.say("bo", "ops", f"!integration disable {x} for 2h")
    finally:
        timers.pending_for = original  # type: ignore[method-assign]
    assert ended and timed.outcome == "changed" and "in 2 h" in timed.text, timed.text
    assert h.doc(x)["enabled"] is False
    bos = await pending(h, x)
    assert bos is not None and bos.state is TimerState.ACTIVE and bos.due_at == h.clock.now + timedelta(hours=2)
    assert await due_back_on(h, bos) == "re-enabled"


async def test_a_resumed_timed_disable_that_took_a_running_timer_over_is_recorded_and_comes_back_on(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Switched on by hand while timed; ann's `disable … for 2h` takes the running timer over,
    writes, and the process dies before its audit row. Was: resumed, it found it off with a timer
    running and took its own write for an earlier disable: it only re-timed the row, recorded no
    `disable`, and left the row's reference on the old disable, so when due the bot took ann's
    disable for somebody else's change and left it off for good."""
    x = hook(h, "Resumed takeover")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    h.control.update_integration(x, {"enabled": True})  # by hand, in Rocket.Chat
    message, invocation = await _interrupted(h, monkeypatch, f"!integration disable {x} for 2h")
    assert h.doc(x)["enabled"] is False
    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed", reply.text
    ann = h.control.user("admin")["_id"]
    rows = await h.services.state.history(integration_ids=[x], actor_id=ann)
    assert [r.action for r in rows][:1] == ["disable"] and rows[0].message_id == message.id, rows
    timer = await pending(h, x)
    assert timer is not None and timer.state is TimerState.ACTIVE
    assert timer.due_at == h.clock.now + timedelta(hours=2)
    assert await due_back_on(h, timer) == "re-enabled"
    assert h.doc(x)["enabled"] is True


async def test_a_resumed_timed_disable_switched_on_since_leaves_no_timer_running(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's `disable … for 1h` wrote, then the process died before its audit row and timer were
    settled; bo switched it on before it was resumed. Was: the resumed command confirmed its timer
    on the document it had written: answered "disabled until …" and listed as snoozed while it was
    on, and when due the bot reported bo's enable as a change made behind its back."""
    x = hook(h, "Resumed on since")
    message, invocation = await _interrupted(h, monkeypatch, f"!integration disable {x} for 1h")
    assert h.doc(x)["enabled"] is False
    assert (await h.say("bo", "ops", f"!integration enable {x}")).outcome == "changed"
    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed", reply.text
    assert "in 1 h" not in reply.text, reply.text
    ann = h.control.user("admin")["_id"]
    assert [r.action for r in await h.services.state.history(integration_ids=[x], actor_id=ann)][:1] == ["disable"]
    assert await pending(h, x) is None
    assert h.doc(x)["enabled"] is True


async def test_an_enable_whose_timer_lookup_failed_leaves_a_timed_disable_made_through_another_replica(
    h: Harness, other: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's enable: the lookup of its timer under the lock fails (the state database stumbles);
    the write lands and is answered. bo's `disable … for 2h` through another replica takes the
    row over before ann's book-keeping runs. Was: that book-keeping looked up the timer pending
    then, without the lock, found bo's and ended it: it stayed off for good."""
    x = hook(h, "Lookup failed")
    assert (await h.say("admin", "ops", f"!integration disable {x} for 1h")).outcome == "changed"
    calls = h.first_timer_lookup_fails(monkeypatch)
    enable = await answered(h, "admin", f"!integration enable {x}")
    assert enable.outcome == "changed" and calls, enable.text
    timed = await other.say("bo", "ops", f"!integration disable {x} for 2h")
    assert timed.outcome == "changed", timed.text
    await h.services.followups.run(enable.afterwards)
    ann = h.control.user("admin")["_id"]
    assert [r.action for r in await h.services.state.history(integration_ids=[x], actor_id=ann)][:1] == ["enable"]

    bos = await pending(h, x)
    assert bos is not None and bos.state is TimerState.ACTIVE and bos.due_at == h.clock.now + timedelta(hours=2)
    assert await due_back_on(h, bos) == "re-enabled"
    assert h.doc(x)["enabled"] is True


async def test_a_resumed_set_whose_integration_cannot_be_read_again_is_answered_as_done_and_recorded(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's `set … --yes` wrote, then the process died before its audit row. Resumed, the journal
    finds its write landed; Rocket.Chat then fails the next read (rate-limiting the recovery's
    burst, say). Was: the command answered "nothing was changed" about a write that landed, and its
    audit row was never recorded."""
    x = hook(h, "Resumed unreadable")
    message, invocation = await _interrupted(h, monkeypatch, f"!integration set {x} alias=new --yes")
    assert h.doc(x)["alias"] == "new"
    service = h.services.integrations
    editing = service.editing

    @asynccontextmanager
    async def unreadable_once_replayed(target: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if isinstance(target, Integration):  # the journal's own look passes a document, and works
            raise Unavailable("integrations.get", "Rocket.Chat is not answering")
        async with editing(target, *args, **kwargs) as edit:
            yield edit

    monkeypatch.setattr(service, "editing", unreadable_once_replayed)
    reply = await _resume(h, message, invocation)
    monkeypatch.undo()
    assert reply.outcome == "changed" and "nothing was changed" not in reply.text.lower(), reply.text
    assert [r.action for r in await h.services.state.history(integration_ids=[x])][:1] == ["set"]


@pytest.mark.parametrize("killed_at", [1, 2])
async def test_a_resumed_group_undo_undoes_and_records_every_member_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch, killed_at: int
) -> None:
    """ann's `undo` of her `disable all in #alerts` is killed after a member's write, before that
    member's audit row (the first member's, or the second's once the first was recorded). Was:
    resumed, the member it had switched on already was "changed since … Nothing was changed" and
    its undo was never recorded; or, with a member's undo recorded, "your last change was already
    an undo" and the other member stayed off."""
    assert (await h.say("admin", "ops", "!integration disable all in #alerts --yes")).outcome == "changed"
    members = [seeded(h, "grafana"), seeded(h, "deploy-announcer")]
    message, invocation = h.message("admin", "ops", "!integration undo")
    assert await h.run_killed_at_record(monkeypatch, message, invocation, at=killed_at) is None
    assert sum(h.doc(m)["enabled"] for m in members) == killed_at

    reply = await _resume(h, message, invocation)
    assert reply.outcome == "changed" and "for 2 of 2" in reply.text, reply.text
    assert all(h.doc(m)["enabled"] for m in members)
    undos = [r for r in await h.services.state.history(integration_ids=members) if r.action == "undo"]
    assert sorted(r.integration_id for r in undos) == sorted(members)


async def test_a_timed_disable_never_written_is_not_revived_by_a_plain_disable_made_meanwhile(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ann's `disable … for 1h` dies (kill -9) after setting up its timer, before its write; its
    replica comes back too late to run it ("I did not run this command": its claim is closed).
    Meanwhile bo's plain `disable` through another replica switched it off for good (the timer
    being set up is not running: nothing of it to end). Was: the restart's settling of the row
    found the integration off, took that for ann's disable and confirmed her timer on bo's
    document: it came back on an hour later, against bo's answer and ann's."""
    x = hook(h, "Never written")
    timers = toolkit(h).timers
    real = timers.schedule

    async def killed(*args: Any, **kwargs: Any) -> TimedDisable | None:
        await real(*args, **kwargs)
        raise Killed

    message, invocation = h.message("admin", "ops", f"!integration disable {x} for 1h")
    monkeypatch.setattr(timers, "schedule", killed)
    with pytest.raises(Killed):
        await h.run_claimed(message, invocation)
    monkeypatch.setattr(timers, "schedule", real)
    assert h.doc(x)["enabled"] is True
    plain = await h.say("bo", "ops", f"!integration disable {x}")
    assert plain.outcome == "changed", plain.text
    assert await h.services.state.finish_message(message.id, "interrupted: too old")  # the recovery's

    assert await timers.recover() == 0
    assert [t for t in await timers.active() if t.integration_id == x] == []
    assert await pending(h, x) is None
    assert h.doc(x)["enabled"] is False
