"""A member of a timed `disable all … for` group whose timer a command ends (an `enable`, a plain
`disable`, both now under the member's lock): the group's "back on" notice, posted once no member
is pending any more, must still come for the members that came back on before it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from set_harness import Harness

from bot.state.store import AuditRecord


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


@pytest.mark.parametrize("command", ["enable", "disable"])
async def test_the_group_notice_comes_when_the_last_pending_member_is_ended_by_a_command(
    h: Harness, command: str
) -> None:
    """Grafana was extended on its own, so the Deploy announcer came back on first, when the
    group's end came: its notice waits for Grafana (one notice for the group). Then Grafana's
    timer is ended by a command (switched on, or switched on by hand and disabled for good).
    Was: an ending by a command posted nothing, so the room never heard that the Deploy
    announcer was back on."""
    toolkit = h.with_incident_toolkit()
    timers = toolkit.timers
    group = await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    assert group.outcome == "changed", group.text
    longer = await h.say("admin", "ops", f"!integration extend {ids(h, 'grafana')} 3h")
    assert longer.outcome == "changed", longer.text
    h.clock.advance(timedelta(minutes=31))
    [announcer] = [t for t in await timers.active() if t.integration_name == "Deploy announcer"]
    expiry = await timers.expire(announcer)
    assert expiry is not None and expiry.kind == "re-enabled"
    assert not [m for m in h.control.messages("ops") if "back on" in str(m.get("msg"))]  # Grafana is pending

    if command == "disable":
        h.control.update_integration(ids(h, "grafana"), {"enabled": True})  # by hand, in Rocket.Chat
    ended = await h.say("admin", "ops", f"!integration {command} {ids(h, 'grafana')}")
    assert ended.outcome == "changed", ended.text
    assert await timers.active() == []

    notices = [str(m["msg"]) for m in h.control.messages("ops") if "back on" in str(m.get("msg"))]
    assert len(notices) == 1 and notices[0].startswith("🟢 1 integration is back on"), notices
    assert "Deploy announcer" in notices[0] and "Grafana" not in notices[0], notices
    assert "the 30 min bulk disable by admin ended" in notices[0], notices


async def test_a_member_switched_on_by_enable_all_is_not_announced_back_on_by_a_timer_falling_due(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`enable all` switches Grafana on; its timer of the group falls due right after the member's
    lock is free, before the member's audit row is written. Was: the timer was ended only with
    that row, so the scheduler took the enable's write for its own re-enable: the member was
    "back on" by the timer (named in the group's "back on: the 30 min bulk disable … ended" notice)
    while the answer said its timed disable was cancelled (as a single `enable` did before it
    ended its timer under the lock)."""
    toolkit = h.with_incident_toolkit()
    timers = toolkit.timers
    group = await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    assert group.outcome == "changed", group.text
    running = {timer.integration_id: timer for timer in await timers.active()}
    state = h.services.state
    real = state.record
    fired: list[str | None] = []

    async def due_first(entry: AuditRecord) -> int:
        if not fired and entry.action == "enable":
            h.clock.advance(timedelta(minutes=31))
            expiry = await timers.expire(running[entry.integration_id])  # the scheduler's, when due
            fired.append(None if expiry is None else expiry.kind)
        return await real(entry)

    monkeypatch.setattr(state, "record", due_first)
    reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert fired == [None] and reply.outcome == "changed", (fired, reply.text)
    assert await timers.active() == []
    assert not [m for m in h.control.messages("ops") if "back on" in str(m.get("msg"))]
