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
