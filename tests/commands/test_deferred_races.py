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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from set_harness import Harness, open_harness

from bot.incident.toolkit import IncidentToolkit
from bot.runtime.journal import JournaledIntegrationService
from bot.state.timer_states import TimedDisable, TimerState
from commands.reply import Reply


class Killed(BaseException):
    """Stands for kill -9 right after the write landed, before its audit row."""


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_harness()
    services = harness.services
    services.integrations = JournaledIntegrationService(services.rest, services.state, harness.clock)
    harness.with_incident_toolkit()
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
    """ann's enable ends the 1 h disable; her answer is on its way, its book-keeping (ending the
    timer) still to come. bo's `disable … for 2h` through another replica finds it on with that
    timer still pending and takes the row over (switched off again, a new end). Was: ann's
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


def seeded(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


async def test_an_enable_all_ends_a_members_timer_extended_between_its_selection_and_its_write(h: Harness) -> None:
    """The members are selected from their timers as read first; someone's `extend Grafana 1h`
    lands before Grafana's turn. Its timer as pending under its lock is the one its enable ends
    (an ending follows only the timer as it was seen: the one read first had moved on)."""
    timers = toolkit(h).timers
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    grafana = seeded(h, "grafana")
    original = timers.store.in_group

    async def extended_meanwhile(group_id: int) -> list[TimedDisable]:
        members = await original(group_id)
        running = await timers.pending_for(grafana)
        assert running is not None
        await timers.extend(running, running.due_at + timedelta(hours=1))
        return members

    timers.store.in_group = extended_meanwhile  # type: ignore[method-assign]
    try:
        reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    finally:
        timers.store.in_group = original  # type: ignore[method-assign]
    assert reply.outcome == "changed", reply.text
    assert h.doc(grafana)["enabled"] is True
    assert await pending(h, grafana) is None


async def test_an_enable_all_leaves_a_member_whose_group_timer_ended_and_another_was_set(h: Harness) -> None:
    """Between the selection and Grafana's turn, bo switched it on and off again for 2 h (through
    another replica, say). Was: `enable all` switched it on, against bo's later disable, and left
    bo's timer running on an integration that was on. It is no longer the group's to switch on."""
    timers = toolkit(h).timers
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    grafana = seeded(h, "grafana")
    original = timers.store.in_group
    done: list[bool] = []

    async def retimed_meanwhile(group_id: int) -> list[TimedDisable]:
        members = await original(group_id)
        if not done:
            done.append(True)
            assert (await h.say("bo", "ops", f"!integration enable {grafana}")).outcome == "changed"
            assert (await h.say("bo", "ops", f"!integration disable {grafana} for 2h")).outcome == "changed"
        return members

    timers.store.in_group = retimed_meanwhile  # type: ignore[method-assign]
    try:
        reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    finally:
        timers.store.in_group = original  # type: ignore[method-assign]
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
