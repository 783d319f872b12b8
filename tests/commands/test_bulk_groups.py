"""`enable all …` and `extend all …` on a group: each member is acted on only as the group left
it, decided under the member's lock on what it is now."""

from __future__ import annotations

from datetime import timedelta

from set_harness import Harness

from bot.state.timer_states import TimedDisable


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


async def test_extend_all_never_shortens_a_longer_end_set_meanwhile(h: Harness) -> None:
    """Was: `extend all` computed each member's new end from the timer it read before taking the
    member's lock, and applied it to the fresh row: someone's `extend Grafana 3h` landing in
    between was cut back to 30 min + 1 h."""
    toolkit = h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    timers = toolkit.timers
    original = timers.pending_for
    raced: list[str] = []

    async def racing(integration_id: str) -> TimedDisable | None:
        current = await original(integration_id)
        if not raced and current is not None and current.integration_name == "Grafana":
            raced.append(integration_id)  # another user's `extend Grafana 3h`, just before the lock
            await timers.extend(current, h.clock.now + timedelta(hours=3))
            current = await original(integration_id)
        return current

    timers.pending_for = racing  # type: ignore[method-assign]
    try:
        reply = await h.say("admin", "ops", "!integration extend all in #alerts 1h")
    finally:
        timers.pending_for = original  # type: ignore[method-assign]
    assert raced and reply.outcome == "changed", reply.text
    dues = {t.integration_name: t.due_at - h.clock.now for t in await timers.active()}
    assert dues == {"Grafana": timedelta(hours=4), "Deploy announcer": timedelta(minutes=90)}


async def test_extend_all_skips_a_member_switched_on_meanwhile(h: Harness) -> None:
    """Was: `extend all` extended a member's timer without looking at the member: one switched on
    by hand meanwhile (its timer not yet settled) got a later end, as single `extend` refuses."""
    toolkit = h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    h.control.update_integration(ids(h, "grafana"), {"enabled": True})  # by hand, in Rocket.Chat
    before = {t.integration_name: t.due_at for t in await toolkit.timers.active()}
    reply = await h.say("admin", "ops", "!integration extend all in #alerts 1h")
    after = {t.integration_name: t.due_at for t in await toolkit.timers.active()}
    assert after.get("Grafana") in (None, before["Grafana"]), reply.text
    assert after["Deploy announcer"] == h.clock.now + timedelta(minutes=90)
    not_extended = reply.text.split("Not extended:")[1]
    assert "`Grafana` (incoming)" in not_extended and "on again" in not_extended, reply.text


async def test_the_group_end_follows_only_the_members_extended(h: Harness) -> None:
    """Was: `extend all` set the group's end from every running member, extended or not: a member
    left out (switched on meanwhile, with a long end of its own) moved the group's end to a time
    no member is off until."""
    toolkit = h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    longer = await h.say("admin", "ops", f"!integration extend {ids(h, 'grafana')} 3h")
    assert longer.outcome == "changed", longer.text
    h.control.update_integration(ids(h, "grafana"), {"enabled": True})  # by hand: not extended below
    reply = await h.say("admin", "ops", "!integration extend all in #alerts 1h")
    assert reply.text.startswith("⏰ Extended 1 of 2"), reply.text
    (group_id,) = {t.group_id for t in await toolkit.timers.active()}
    assert group_id is not None
    group = await h.services.state.groups.get(group_id)
    assert group is not None and group.due_at == h.clock.now + timedelta(minutes=90)


async def test_a_member_the_caller_may_not_change_does_not_make_extend_all_refuse(h: Harness) -> None:
    """Was: the maximum check of `extend all` counted members the caller may not change, so owen's
    `extend all` was refused for the end of one he may not change (and the refusal told that end)."""
    h.with_incident_toolkit()
    made = h.control.create_incoming_integration("Owen private hook", channel="#platform-team", created_by="owen")
    h.control.create_incoming_integration("Owen public hook", channel="#ops", created_by="owen")
    group = await h.say("admin", "ops", '!integration disable all matching "owen*" for 30m --yes')
    assert group.text.startswith("🔌 Switched off 2 of 2"), group.text
    private = str(made["_id"])
    longer = await h.say("admin", "ops", f"!integration extend {private} 6d")
    assert longer.outcome == "changed", longer.text
    reply = await h.say("owen", "ops", '!integration extend all matching "owen*" 1d')
    assert reply.outcome == "changed", reply.text
    assert reply.text.startswith("⏰ Extended 1 of 2"), reply.text
    assert "1 more member is left as it is (you may not change it)" in reply.text
    assert "6 d" not in reply.text and "Owen private hook" not in reply.text


async def test_extend_all_beyond_the_maximum_shows_the_bulk_usage(h: Harness) -> None:
    """Was: `extend all in #alerts 7d` over the maximum answered with the single `extend` usage."""
    h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    reply = await h.say("admin", "ops", "!integration extend all in #alerts 7d")
    assert reply.outcome == "usage", reply.text
    assert "longer than the 7 d allowed" in reply.text
    assert "Usage:" not in reply.text, reply.text  # not the single `extend <name|id> …` usage
