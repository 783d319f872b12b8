"""A member of a timed `disable all … for` group whose timer a command ends (an `enable`, a plain
`disable`, both now under the member's lock): the group's "back on" notice, posted once no member
is pending any more, must still come for the members that came back on before it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from set_harness import Harness


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
