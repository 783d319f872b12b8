"""`enable all …` and `extend all …` on a group: each member is acted on only as the group left
it, decided under the member's lock on what it is now."""

from __future__ import annotations

from set_harness import Harness


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


def enabled(h: Harness, label: str) -> bool:
    return bool(h.doc(ids(h, label))["enabled"])


async def test_an_untimed_group_already_switched_on_is_used_up(h: Harness) -> None:
    """Was: after `enable all in #alerts` had switched the group back on, owen switched his Deploy
    announcer off on purpose ("leaking secrets"); the old "Re-enable all now" button (`enable all
    in #alerts`) took the group's audit rows again and switched it back on."""
    h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    first = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert first.outcome == "changed", first.text
    off = await h.say("owen", "ops", f"!integration disable {ids(h, 'deploy-announcer')} because leaking secrets")
    assert off.outcome == "changed", off.text
    again = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert again.outcome == "unchanged", again.text
    assert again.text.startswith("Nothing to switch back on"), again.text
    assert not enabled(h, "deploy-announcer")


async def test_an_untimed_member_changed_since_the_group_is_left_off(h: Harness) -> None:
    """Was: `enable all` switched on every member of the latest group without a duration, whatever
    happened to it since: owen's own later off-and-on-and-off again (a deliberate disable made
    outside the group) was undone. Now a member is switched on only if it is still exactly as the
    group's disable left it (compared under its lock, as `undo` compares)."""
    h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    deploy = ids(h, "deploy-announcer")
    await h.say("owen", "ops", f"!integration enable {deploy}")
    await h.say("owen", "ops", f"!integration disable {deploy} because leaking secrets")
    reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert reply.outcome == "changed", reply.text
    lines = reply.text.splitlines()
    assert "`Grafana` (incoming)" in reply.text.split("Left off")[0]
    left = lines[lines.index("Left off (changed since the group switched them off):") + 1 :]
    assert left[:1] == ["• `Deploy announcer` (outgoing)"], reply.text
    assert enabled(h, "grafana")
    assert not enabled(h, "deploy-announcer")
