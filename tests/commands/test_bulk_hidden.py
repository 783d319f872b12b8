"""`disable all`, `enable all`, `extend all`: nothing a caller cannot see is named, given by id or
counted (a count of hidden integrations answers guesses at their names and rooms)."""

from __future__ import annotations

from set_harness import Harness


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


async def test_a_glob_count_does_not_tell_whether_a_hidden_name_matches(h: Harness) -> None:
    """Was: the preview counted matching integrations the caller cannot even see ("1 more matching
    integration that you may not change is left out"), so owen (manage-own only) could test any
    guess: `matching "grafana"` -> 1, `matching "grafanx"` -> 0 spelled out admin's hidden names."""
    right = await h.say("owen", "ops", '!integration disable all matching "grafana"')
    wrong = await h.say("owen", "ops", '!integration disable all matching "grafanx"')
    assert right.outcome == wrong.outcome == "unchanged", right.text
    assert right.text.replace("grafana", "?") == wrong.text.replace("grafanx", "?")
    for guess in ("gr*", "welcome*", "*"):
        reply = await h.say("owen", "ops", f'!integration disable all matching "{guess}"')
        assert "may not change" not in reply.text, (guess, reply.text)
    assert h.writes() == 0


async def test_a_room_count_does_not_tell_how_many_hidden_integrations_post_there(h: Harness) -> None:
    """Was: `disable all in #general` answered owen "3 more matching integrations that you may not
    change are left out": how many of admin's hidden integrations post into a room owen is in."""
    reply = await h.say("owen", "ops", "!integration disable all in #general")
    assert reply.outcome == "unchanged", reply.text
    assert "more matching" not in reply.text and "may not change" not in reply.text
    applied = await h.say("owen", "alerts", "!integration disable all in #alerts --yes")
    assert applied.outcome == "changed", applied.text
    assert "may not change" not in applied.text  # Grafana and Alertmanager are admin's: not counted
    for hidden in ("Grafana", "Alertmanager", ids(h, "grafana"), ids(h, "alertmanager")):
        assert hidden not in applied.text


async def test_what_the_caller_sees_but_may_not_change_is_still_counted(h: Harness) -> None:
    """Owen's own hook posting into a private group he is not in: he lists it, but the channel
    rule refuses him the change; the preview says so with a count (it is his to know)."""
    h.control.create_incoming_integration("Owen private hook", channel="#platform-team", created_by="owen")
    reply = await h.say("owen", "ops", '!integration disable all matching "owen private*"')
    assert reply.outcome == "unchanged", reply.text
    assert "1 more matching integration that you may not change is left out" in reply.text


async def _admins_timed_group(h: Harness, room: str = "alerts") -> None:
    h.with_incident_toolkit()
    reply = await h.say("admin", "ops", f"!integration disable all in #{room} for 30m --yes")
    assert reply.outcome == "changed", reply.text


async def test_enable_all_does_not_count_members_the_caller_cannot_see(h: Harness) -> None:
    """Was: `enable all` answered owen "1 more member is left as it is (you can't see it)": how
    many of admin's hidden integrations a group holds."""
    await _admins_timed_group(h)
    reply = await h.say("owen", "alerts", "!integration enable all in #alerts")
    assert reply.outcome == "changed", reply.text
    assert reply.text.startswith("🟢 Switched on 1 of 1 integration posting into"), reply.text
    assert "can't see" not in reply.text and "more member" not in reply.text
    assert not h.doc(ids(h, "grafana"))["enabled"]


async def test_a_group_of_hidden_members_only_is_as_no_group_to_enable_all_and_extend_all(h: Harness) -> None:
    """Was: a group whose members owen cannot see answered "Switched on 0 of 0 … 2 more members
    are left as they are" instead of the answer for no group at all."""
    await _admins_timed_group(h, "general")  # admin's Guggy hooks only: owen sees none of them
    enable = await h.say("owen", "ops", "!integration enable all in #general")
    assert enable.outcome == "unchanged", enable.text
    assert enable.text.startswith("Nothing to switch back on: no `disable all`"), enable.text
    extend = await h.say("owen", "ops", "!integration extend all in #general 1h")
    assert extend.outcome == "unchanged", extend.text
    assert extend.text.startswith("Nothing to extend: no timed `disable all`"), extend.text


async def test_extend_all_does_not_count_members_the_caller_cannot_see(h: Harness) -> None:
    """Was: `extend all` answered owen "1 more member is left as it is (you may not change it)" for
    admin's hidden Grafana."""
    await _admins_timed_group(h)
    reply = await h.say("owen", "alerts", "!integration extend all in #alerts 1h")
    assert reply.outcome == "changed", reply.text
    assert reply.text.startswith("⏰ Extended 1 of 1 integration posting into"), reply.text
    assert "more member" not in reply.text and "Grafana" not in reply.text


async def test_snoozed_buttons_do_not_name_a_private_group_to_a_non_member(h: Harness) -> None:
    """Was: `snoozed` said "in another room" for a group in the private #platform-team, but its
    "Re-enable all now" button read `enable all in #platform-team` to owen, who is not in it."""
    h.with_incident_toolkit()
    h.control.create_incoming_integration("Owen private hook", channel="#platform-team", created_by="owen")
    await h.say("admin", "platform-team", "!integration disable all in #platform-team for 1h --yes")
    seen = await h.say("owen", "ops", "!integration snoozed")
    assert "in another room" in seen.text, seen.text
    assert "platform-team" not in seen.text
    assert not any("platform-team" in button.command for button in seen.buttons), seen.buttons
    member = await h.say("admin", "platform-team", "!integration snoozed")  # a member still gets it
    assert any(b.command == "!integration enable all in #platform-team" for b in member.buttons), member.buttons
