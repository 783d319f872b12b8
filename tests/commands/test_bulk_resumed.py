"""A bulk disable interrupted after a member's write landed (kill -9), then resumed by the restart:
it carries on with the same group, records each member once, and answers what it did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from set_harness import Harness, open_journaled_harness

from commands import changes


class Killed(BaseException):
    """Stands for kill -9 right after the first member's write landed, before its audit row."""


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await open_journaled_harness()
    try:
        yield harness
    finally:
        await harness.close()


async def _twice(h: Harness, monkeypatch: pytest.MonkeyPatch, text: str) -> Any:
    message, invocation = h.message("admin", "ops", text)

    async def killed(*args: Any, **kwargs: Any) -> int:
        raise Killed

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    confirmations = h.services.state.confirmations
    monkeypatch.setattr(changes, "record", killed)
    # A killed process runs no `finally`: its taken confirmation is not released either.
    monkeypatch.setattr(confirmations, "release", nothing)
    with pytest.raises(Killed):
        await h.run_claimed(message, invocation)
    monkeypatch.undo()  # `record` and `release` as they are
    return await h.run_claimed(message, invocation, resumed=True)


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


async def _members_off_once(h: Harness) -> None:
    assert h.doc(ids(h, "grafana"))["enabled"] is False
    assert h.doc(ids(h, "deploy-announcer"))["enabled"] is False
    rows = [r for r in await h.services.state.history() if r.action == "disable"]
    assert sorted(r.integration_name for r in rows) == ["Deploy announcer", "Grafana"]
    assert len({r.group_id for r in rows}) == 1
    toolkit = h.services.incident
    assert toolkit is not None
    await toolkit.timers.recover()  # what the restart does first: settles rows left `scheduled`
    active = await toolkit.timers.active()
    assert sorted(t.integration_name for t in active) == ["Deploy announcer", "Grafana"]
    assert len({t.due_at for t in active}) == 1


async def test_a_resumed_bulk_disable_with_yes_finishes_and_answers_every_member(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await _twice(h, monkeypatch, "!integration disable all in #alerts for 30m --yes")
    assert reply.outcome == "changed", reply.text
    assert "Switched off 2 of 2" in reply.text
    await _members_off_once(h)


async def test_a_resumed_bulk_confirmation_carries_on_instead_of_waiting_for_itself(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    preview = await h.say("admin", "ops", "!integration disable all in #alerts for 30m")
    assert preview.outcome == "preview"
    reply = await _twice(h, monkeypatch, "!integration yes")
    assert reply.outcome == "changed", reply.text
    assert "Switched off 2 of 2" in reply.text
    assert not [r for r in await h.services.state.history() if r.action == "set"]
    await _members_off_once(h)


async def test_a_bulk_confirmation_resumed_after_it_was_applied_is_not_answered_nothing_changed(
    h: Harness,
) -> None:
    """The `yes` applied the bulk disable (the preview marked applied), then its process died
    before its answer was stored (Rocket.Chat slow to take it, say: the answer is retried until
    it is). Was: resumed, it looked for a change still waiting, found none, and answered "You have
    no change waiting for confirmation in this room; nothing was changed" although both members
    were switched off (and, had its author previewed another change meanwhile, applied that one,
    unconfirmed)."""
    preview = await h.say("admin", "ops", "!integration disable all in #alerts for 30m")
    assert preview.outcome == "preview"
    message, invocation = h.message("admin", "ops", "!integration yes")
    first = await h.run_claimed(message, invocation)  # applied; its answer is never posted
    assert first.outcome == "changed", first.text
    h.services.followups.abandon(first.afterwards)  # the process died before running them
    reply = await h.run_claimed(message, invocation, resumed=True)
    assert "nothing was changed" not in reply.text, reply.text
    assert reply.outcome == "changed", reply.text
    await _members_off_once(h)


async def test_a_bulk_confirmation_resumed_after_it_was_applied_answers_its_own_preview_not_a_later_one(
    h: Harness,
) -> None:
    """The `yes` applied the bulk disable of #alerts, then its process died before its answer was
    stored. While its lease ran out, its author (no answer yet) previewed and confirmed a bulk
    disable of #ops through another replica, answered at once. The resumed first `yes` must
    answer what it did (#alerts), and leave the #ops one to its own group. Was: it took the
    caller's most recently applied bulk preview, the #ops one, and re-applied its members under
    its own group (`undo` and `enable all` of the #alerts group then acted on #ops' integrations)
    and answered about #ops."""
    preview = await h.say("admin", "ops", "!integration disable all in #alerts for 30m")
    assert preview.outcome == "preview", preview.text
    message, invocation = h.message("admin", "ops", "!integration yes")
    first = await h.run_claimed(message, invocation)  # applied; its answer is never posted
    assert first.outcome == "changed", first.text
    h.services.followups.abandon(first.afterwards)  # the process died before running them
    h.clock.advance(timedelta(seconds=10))
    other = await h.say("admin", "ops", "!integration disable all in #ops for 1h")
    assert other.outcome == "preview", other.text
    second, second_invocation = h.message("admin", "ops", "!integration yes")
    confirmed_at = h.clock()
    answered = await h.run_claimed(second, second_invocation)
    assert answered.outcome == "changed", answered.text
    assert "Jenkins" in answered.text, answered.text
    h.clock.advance(timedelta(seconds=20))  # the first `yes`'s lease ran out: taken over
    reply = await h.run_claimed(message, invocation, resumed=True)
    assert reply.outcome == "changed", reply.text
    assert "Grafana" in reply.text, reply.text
    assert "Jenkins" not in reply.text, reply.text
    jenkins = [r for r in await h.services.state.history() if r.integration_name.startswith("Jenkins")]
    assert len({r.group_id for r in jenkins}) == 1  # the #ops group's alone
    toolkit = h.services.incident
    assert toolkit is not None
    await toolkit.timers.recover()
    [timer] = [t for t in await toolkit.timers.active() if t.integration_name.startswith("Jenkins")]
    assert timer.due_at == confirmed_at + timedelta(hours=1)  # back on when its own `yes` said
