"""The timed disable a plain `enable`/`disable` follows is looked up under its lock, at once with its
write (commands/changes.py `apply_seeing_timer`): that lookup failing (the state database
stumbling) never costs the answer or the audit row of a write that landed; the timer is then
looked up again with the record, after the answer, as it used to be."""

from __future__ import annotations

from typing import Any

import pytest
from set_harness import Harness


def _hook(h: Harness) -> dict[str, Any]:
    return h.control.create_incoming_integration("Flaky lookup", channel="#ops", created_by="admin")


async def test_a_disable_whose_timer_lookup_fails_is_answered_and_audited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(h)
    calls = h.first_timer_lookup_fails(monkeypatch)
    reply = await h.say("admin", "ops", f"!integration disable {hook['_id']}")
    assert reply.outcome == "changed", reply.text
    assert "Disabled" in reply.text
    assert calls == [hook["_id"]]
    assert not h.doc(hook["_id"])["enabled"]
    rows = await h.services.state.history(integration_ids=[hook["_id"]])
    assert [row.action for row in rows] == ["disable"]


async def test_an_enable_whose_timer_lookup_fails_still_ends_the_timed_disable(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(h)
    toolkit = h.with_incident_toolkit()
    timed = await h.say("admin", "ops", f"!integration disable {hook['_id']} for 30m")
    assert timed.outcome == "changed", timed.text
    assert len(await toolkit.timers.active()) == 1
    h.first_timer_lookup_fails(monkeypatch)
    reply = await h.say("admin", "ops", f"!integration enable {hook['_id']}")
    assert reply.outcome == "changed", reply.text
    assert h.doc(hook["_id"])["enabled"]
    assert await toolkit.timers.active() == []  # ended with the record, looked up again then
    rows = await h.services.state.history(integration_ids=[hook["_id"]])
    assert [row.action for row in rows] == ["enable", "disable"]


async def test_a_disable_of_a_timed_one_whose_lookup_fails_still_makes_it_permanent(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(h)
    toolkit = h.with_incident_toolkit()
    await h.say("admin", "ops", f"!integration disable {hook['_id']} for 30m")
    h.first_timer_lookup_fails(monkeypatch)
    reply = await h.say("admin", "ops", f"!integration disable {hook['_id']}")
    assert "stays disabled" in reply.text, reply.text
    assert await toolkit.timers.active() == []
