"""`disable all in #room` / `disable all matching "glob"`: selection, preview, confirmation, apply,
through the real command layer on the sandbox REST app (tests/commands/set_harness.py)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from set_harness import Harness

from bot.config import Settings
from bot.errors import ClaimTakenOver
from commands.reply import Reply


def ids(h: Harness, label: str) -> str:
    return str(h.seeded["integrations"][label]["id"])


def code_of(reply: Reply) -> str:
    found = re.search(r"confirm ([A-Z0-9]{4})", reply.text)
    assert found is not None, reply.text
    return found.group(1)


def section(reply: Reply, title: str) -> list[str]:
    """The bullet lines after the line starting with `title`."""
    lines = reply.text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(title)]
    if not starts:
        return []
    out = []
    for line in lines[starts[0] + 1 :]:
        if not line.startswith("• "):
            break
        out.append(line[2:])
    return out


def section_before_already(reply: Reply) -> list[str]:
    out = []
    for line in reply.text.splitlines()[1:]:
        if line.startswith("Already off") or not line.startswith(("• ", "Reason")):
            if out:
                break
            continue
        if line.startswith("• "):
            out.append(line[2:])
    return out


# `scriptCompiled` is what the server compiles from `script` on every save (not sent by the bot).
SERVER_MANAGED = ("_updatedAt", "_updatedBy", "scriptCompiled")


def stable(document: dict[str, object]) -> dict[str, object]:
    """As any save of the same data leaves it (tests/e2e/incident_support.py `stable`)."""
    return {
        k: v
        for k, v in document.items()
        if k not in SERVER_MANAGED and v is not None and not (k == "skipTranspile" and v is False)
    }


def enabled(h: Harness, label: str) -> bool:
    return bool(h.doc(ids(h, label))["enabled"])


async def test_the_preview_of_a_room_lists_what_would_switch_off_and_writes_nothing(h: Harness) -> None:
    reply = await h.say("admin", "ops", "!integration disable all in #alerts because paging storm")
    assert reply.outcome == "preview", reply.text
    assert f"(the room with id `{h.room('alerts')}`: channel entries `#alerts` or `#{h.room('alerts')}`;" in reply.text
    assert sorted(section_before_already(reply)) == ["`Deploy announcer` (outgoing)", "`Grafana` (incoming)"]
    assert section(reply, "Already off") == ["`Alertmanager` (incoming)"]
    assert "left out" not in reply.text
    assert "Reason: paging storm" in reply.text
    assert reply.buttons[0].command == f"!integration confirm {code_of(reply)}"
    assert h.writes() == 0


async def test_yes_switches_exactly_the_previewed_ones_off_losslessly_and_audits_each(h: Harness) -> None:
    before = {label: h.doc(ids(h, label)) for label in ("grafana", "deploy-announcer", "jenkins-builds")}
    await h.say("admin", "ops", "!integration disable all in #alerts -- paging storm")
    applied = await h.say("admin", "ops", "!integration yes")
    assert applied.outcome == "changed", applied.text
    assert applied.text.startswith("🔌 Switched off 2 of 2 integrations posting into `#alerts`")
    assert sorted(section(applied, "Switched off:")) == ["`Deploy announcer` (outgoing)", "`Grafana` (incoming)"]
    for label in ("grafana", "deploy-announcer"):
        after = h.doc(ids(h, label))
        assert after["enabled"] is False
        assert stable({**after, "enabled": True}) == stable(before[label])
    assert h.doc(ids(h, "jenkins-builds")) == before["jenkins-builds"]
    rows = await h.services.state.history(limit=10)
    assert sorted(r.integration_name for r in rows if r.action == "disable") == ["Deploy announcer", "Grafana"]
    assert {r.reason for r in rows if r.action == "disable"} == {"paging storm"}
    assert [(b.text, b.command) for b in applied.buttons] == [
        ("Re-enable all now", "!integration enable all in #alerts")
    ]
    again = await h.say("admin", "ops", "!integration yes")
    assert again.outcome == "none"


async def test_a_manage_own_caller_gets_only_their_own_and_nothing_of_the_others(h: Harness) -> None:
    reply = await h.say("owen", "alerts", "!integration disable all in #alerts --yes")
    assert reply.outcome == "changed", reply.text
    assert section(reply, "Switched off:") == ["`Deploy announcer` (outgoing)"]
    assert not enabled(h, "deploy-announcer")
    assert enabled(h, "grafana")
    preview = await h.say("owen", "alerts", "!integration disable all in #alerts")
    assert preview.outcome == "unchanged"
    assert "may not change" not in preview.text  # admin's hooks: not even counted
    for hidden in ("Grafana", "Alertmanager", ids(h, "grafana"), ids(h, "alertmanager")):
        assert hidden not in preview.text and hidden not in reply.text


async def test_a_glob_with_phone_quotes_matches_names_case_insensitively(h: Harness) -> None:
    reply = await h.say("admin", "ops", "!integration disable all matching “GUGG*” outgoing")
    assert reply.outcome == "preview", reply.text
    assert section_before_already(reply) == ["`Guggy` (outgoing)"]
    assert "old-guggy" not in reply.text  # `GUGG*` is anchored: `old-guggy` does not match
    applied = await h.say("admin", "ops", f"!integration confirm {code_of(reply)}")
    assert applied.outcome == "changed"
    assert not enabled(h, "guggy-outgoing")
    assert enabled(h, "guggy-incoming")


async def test_a_glob_lists_matching_ones_already_off_separately(h: Harness) -> None:
    reply = await h.say("admin", "ops", '!integration disable all matching "*guggy"')
    assert sorted(section_before_already(reply)) == ["`Guggy` (incoming)", "`Guggy` (outgoing)"]
    assert section(reply, "Already off") == ["`old-guggy` (outgoing)"]


async def test_a_room_named_after_another_rooms_id_is_resolved_as_the_caller_means_it(h: Harness) -> None:
    alerts = h.room("alerts")
    # A hostile user names a public room after #alerts' id; admin is not a member of it.
    h.control.create_room(alerts, members=["alice", "integrations-bot"], owner="alice")
    reply = await h.say("admin", "ops", f"!integration disable all in #{alerts}")
    assert reply.outcome == "preview", reply.text
    # admin is in #alerts (whose id that is), so that room is meant, and its integrations are listed.
    assert f"(the room with id `{alerts}`:" in reply.text
    assert sorted(section_before_already(reply)) == ["`Deploy announcer` (outgoing)", "`Grafana` (incoming)"]
    assert f"channel entries `#alerts` or `#{alerts}`; " in reply.text


async def test_an_entry_that_may_also_mean_the_hostile_room_is_flagged_in_the_preview(h: Harness) -> None:
    alerts = h.room("alerts")
    h.control.create_room(alerts, members=["alice", "integrations-bot"], owner="alice")
    by_id = h.control.create_incoming_integration("By id", channel=f"#{alerts}", created_by="admin")
    reply = await h.say("admin", "ops", "!integration disable all in #alerts incoming")
    lines = section_before_already(reply)
    assert "`By id` (incoming) ⚠️ its channel entry may also mean another room" in lines, reply.text
    assert "`Grafana` (incoming)" in lines  # `#alerts` names no other room
    assert h.doc(by_id["_id"])["enabled"] is True


async def test_a_private_group_the_caller_is_not_in_is_not_found(h: Harness) -> None:
    reply = await h.say("owen", "ops", "!integration disable all in #platform-team")
    assert reply.outcome == "input"
    assert "can't find a room" in reply.text
    assert h.writes() == 0


async def test_more_than_the_maximum_is_refused_before_anything_is_written(h: Harness) -> None:
    h.services.settings = Settings.model_validate({**h.services.settings.model_dump(), "bot_bulk_max": 1})
    reply = await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    assert reply.outcome == "input", reply.text
    assert "at most 1 per command" in reply.text
    assert h.writes() == 0


async def test_another_user_cannot_confirm_a_bulk_preview(h: Harness) -> None:
    preview = await h.say("admin", "ops", "!integration disable all in #alerts")
    stolen = await h.say("alice", "ops", f"!integration confirm {code_of(preview)}")
    assert stolen.outcome == "foreign"
    assert enabled(h, "grafana")


async def test_a_timed_bulk_disable_gives_each_member_its_timer(h: Harness) -> None:
    toolkit = h.with_incident_toolkit()
    reply = await h.say("admin", "ops", "!integration disable all in #alerts for 30m --yes")
    assert reply.outcome == "changed", reply.text
    active = await toolkit.timers.active()
    assert sorted(t.integration_name for t in active) == ["Deploy announcer", "Grafana"]
    assert {t.due_at for t in active} == {h.clock.now + timedelta(minutes=30)}


# --- the group: snoozed, history, undo, extend all, enable all -----------------------------------


async def _timed_group(h: Harness, text: str = "!integration disable all in #alerts for 30m -- paging storm") -> Reply:
    h.with_incident_toolkit()
    reply = await h.say("admin", "ops", f"{text} --yes")
    assert reply.outcome == "changed", reply.text
    return reply


async def test_a_timed_group_is_one_row_in_snoozed_with_its_members(h: Harness) -> None:
    reply = await _timed_group(h)
    assert {b.text: b.command for b in reply.buttons} == {
        "Re-enable all now": "!integration enable all in #alerts",
        "Extend all 1 h": "!integration extend all in #alerts 1h",
    }
    snoozed = await h.say("admin", "ops", "!integration snoozed")
    lines = [line for line in snoozed.text.splitlines() if line.startswith("• ")]
    assert len(lines) == 1, snoozed.text
    (line,) = lines
    assert "2 integrations in `#alerts`" in line
    assert "`Grafana` (incoming)" in line and "`Deploy announcer` (outgoing)" in line
    assert "by admin" in line and "paging storm" in line
    assert snoozed.buttons[0].command == "!integration enable all in #alerts"


async def test_snoozed_names_only_the_members_the_reader_can_see(h: Harness) -> None:
    await _timed_group(h)
    snoozed = await h.say("owen", "alerts", "!integration snoozed")
    (line,) = [line for line in snoozed.text.splitlines() if line.startswith("• ")]
    assert "1 integration in `#alerts`" in line and "Deploy announcer" in line
    assert "Grafana" not in snoozed.text


async def test_the_group_is_one_entry_in_history(h: Harness) -> None:
    await _timed_group(h)
    history = await h.say("admin", "ops", "!integration history")
    lines = [line for line in history.text.splitlines() if line.startswith("• ")]
    assert len(lines) == 1, history.text
    assert "admin disabled 2 integrations in `#alerts` (" in lines[0]
    assert "until" in lines[0] and "paging storm" in lines[0]


async def test_extend_all_moves_every_member_and_the_group(h: Harness) -> None:
    await _timed_group(h)
    toolkit = h.services.incident
    assert toolkit is not None
    reply = await h.say("admin", "ops", "!integration extend all in #alerts 1h")
    assert reply.outcome == "changed", reply.text
    assert reply.text.startswith("⏰ Extended 2 of 2 integrations posting into")
    due = h.clock.now + timedelta(minutes=90)
    assert {t.due_at for t in await toolkit.timers.active()} == {due}
    (group_id,) = {t.group_id for t in await toolkit.timers.active()}
    assert group_id is not None
    group = await h.services.state.groups.get(group_id)
    assert group is not None and group.due_at == due


async def test_extend_all_refuses_beyond_the_maximum_and_changes_nothing(h: Harness) -> None:
    await _timed_group(h)
    toolkit = h.services.incident
    assert toolkit is not None
    before = {t.due_at for t in await toolkit.timers.active()}
    reply = await h.say("admin", "ops", "!integration extend all in #alerts 7d")
    assert reply.outcome == "usage", reply.text
    assert {t.due_at for t in await toolkit.timers.active()} == before


async def test_enable_all_switches_the_group_back_on_and_ends_its_timers(h: Harness) -> None:
    await _timed_group(h)
    toolkit = h.services.incident
    assert toolkit is not None
    reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert reply.outcome == "changed", reply.text
    assert sorted(section(reply, "Switched on")) == ["`Deploy announcer` (outgoing)", "`Grafana` (incoming)"]
    assert enabled(h, "grafana") and enabled(h, "deploy-announcer")
    assert not enabled(h, "alertmanager")  # off before the group, not a member
    assert await toolkit.timers.active() == []
    again = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert again.outcome == "unchanged" and "Nothing to switch back on" in again.text


async def test_enable_all_by_a_manage_own_caller_leaves_the_others_off(h: Harness) -> None:
    await _timed_group(h)
    reply = await h.say("owen", "alerts", "!integration enable all in #alerts")
    assert section(reply, "Switched on") == ["`Deploy announcer` (outgoing)"], reply.text
    assert reply.text.startswith("🟢 Switched on 1 of 1 integration posting into"), reply.text
    assert "can't see" not in reply.text  # admin's Grafana is not even counted
    assert "Grafana" not in reply.text
    assert not enabled(h, "grafana")


async def test_undo_reverts_every_member_of_the_callers_last_bulk_disable(h: Harness) -> None:
    await _timed_group(h)
    toolkit = h.services.incident
    assert toolkit is not None
    reply = await h.say("admin", "ops", "!integration undo")
    assert reply.outcome == "changed", reply.text
    assert "for 2 of 2 integrations" in reply.text
    assert enabled(h, "grafana") and enabled(h, "deploy-announcer")
    assert await toolkit.timers.active() == []
    history = await h.say("admin", "ops", "!integration history")
    assert "admin undid a change of 2 integrations in `#alerts`" in history.text


async def test_undo_after_a_bulk_disable_and_a_later_set_reverts_the_set_only(h: Harness) -> None:
    await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    await h.say("admin", "ops", f"!integration set {ids(h, 'grafana')} alias=changed --yes")
    await h.say("owen", "ops", "!integration history")  # someone else's command in between changes nothing
    reply = await h.say("admin", "ops", "!integration undo")
    # The last change of admin is the `set`: undo reverts that one alone.
    assert "set" in reply.text and h.doc(ids(h, "grafana"))["alias"] == "Grafana"
    h.control.update_integration(ids(h, "deploy-announcer"), {"alias": "by hand"})
    reply = await h.say("admin", "ops", "!integration undo")
    assert reply.outcome == "unchanged", reply.text  # an undo is not undone


async def test_a_group_member_changed_by_hand_is_left_alone_by_the_group_undo(h: Harness) -> None:
    await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    h.control.update_integration(ids(h, "deploy-announcer"), {"alias": "by hand"})
    reply = await h.say("admin", "ops", "!integration undo")
    assert reply.outcome == "changed", reply.text
    assert "for 1 of 2 integrations" in reply.text
    (left,) = section(reply, "Left as they are")
    assert "Deploy announcer" in left and "changed since" in left
    assert enabled(h, "grafana") and not enabled(h, "deploy-announcer")


async def test_enable_all_after_a_bulk_disable_without_a_duration_switches_its_members_on(h: Harness) -> None:
    h.with_incident_toolkit()
    await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    await h.say("admin", "ops", f"!integration enable {ids(h, 'grafana')}")
    reply = await h.say("admin", "ops", "!integration enable all in #alerts")
    assert reply.outcome == "changed", reply.text
    assert section(reply, "Switched on:") == ["`Deploy announcer` (outgoing)"]
    assert section(reply, "Already on:") == ["`Grafana` (incoming)"]
    assert enabled(h, "deploy-announcer") and enabled(h, "grafana")
    assert not enabled(h, "alertmanager")  # it was off before: not a member
    history = await h.say("admin", "ops", "!integration history")
    assert "admin enabled `Deploy announcer` (outgoing)" in history.text


async def test_a_channel_entry_naming_the_room_by_id_is_matched_too(h: Harness) -> None:
    by_id = h.control.create_incoming_integration("By id", channel=f"#{h.room('alerts')}", created_by="admin")
    elsewhere = h.control.create_incoming_integration("Elsewhere", channel="#ops", created_by="admin")
    reply = await h.say("admin", "ops", "!integration disable all in #alerts incoming --yes")
    assert sorted(section(reply, "Switched off:")) == ["`By id` (incoming)", "`Grafana` (incoming)"], reply.text
    assert h.doc(by_id["_id"])["enabled"] is False
    assert h.doc(elsewhere["_id"])["enabled"] is True
    assert enabled(h, "deploy-announcer")  # outgoing: not asked for


async def test_a_command_taken_over_midway_stops_before_the_next_member(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process took the command over (this one was paused past its claim's lease): it
    writes no further member and answers nothing; the other one carries on (a resumed command)."""
    service = h.services.integrations
    real = service._before_write
    calls = 0

    async def before_write(current: Any, intended: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ClaimTakenOver("m1")
        await real(current, intended)

    monkeypatch.setattr(service, "_before_write", before_write)
    reply = await h.say("admin", "ops", "!integration disable all in #alerts --yes")
    assert reply.outcome == "taken-over", reply.text
    assert reply.text == ""
    assert h.writes() == 1


def room_lookups(h: Harness) -> int:
    return sum(1 for call in h.calls if call.endpoint == "rooms.info")


async def test_the_preview_looks_each_channel_entry_up_once_however_many_members_use_it(h: Harness) -> None:
    """Was: every member's right to be changed looked its `#room` entry up again (`rooms.info` by
    id and by name), so a preview over 50 members of one room sent about 100 identical GETs. Now
    each distinct entry is looked up once per command: the count does not grow with the members."""
    room = h.control.create_room("pager-duty", members=["owen", "integrations-bot"], owner="owen")
    h.control.create_incoming_integration("Pager 0", channel="#pager-duty", created_by="owen")
    h.calls.clear()
    one = await h.say("owen", "ops", "!integration disable all in #pager-duty")
    assert one.outcome == "preview", one.text
    with_one = room_lookups(h)
    for index in range(1, 8):
        h.control.create_incoming_integration(f"Pager {index}", channel="#pager-duty", created_by="owen")
    h.calls.clear()
    eight = await h.say("owen", "ops", "!integration disable all in #pager-duty")
    assert eight.outcome == "preview", eight.text
    assert "Switch off 8 integrations" in eight.text, eight.text
    assert room_lookups(h) == with_one
    # A second entry meaning the same room (`#<its id>`) is one more entry to look up, once.
    for index in range(3):
        h.control.create_incoming_integration(f"Pager by id {index}", channel=f"#{room['_id']}", created_by="owen")
    h.calls.clear()
    both = await h.say("owen", "ops", "!integration disable all in #pager-duty")
    assert "Switch off 11 integrations" in both.text, both.text
    assert room_lookups(h) == with_one + 2  # by id and by name, for the one new entry


async def test_a_room_that_comes_to_mean_another_one_after_the_preview_is_caught_when_applying(h: Harness) -> None:
    """The preview looks each entry up once; applying looks again for every member, under its
    lock: a private room created after the preview with the id `pager-duty` (Rocket.Chat reads
    `#pager-duty` as an id or a name) makes every member one the caller may no longer change."""
    h.control.create_room("pager-duty", members=["owen", "integrations-bot"], owner="owen")
    made = [
        h.control.create_incoming_integration(f"Pager {index}", channel="#pager-duty", created_by="owen")
        for index in range(3)
    ]
    preview = await h.say("owen", "ops", "!integration disable all in #pager-duty")
    assert "Switch off 3 integrations" in preview.text, preview.text
    h.control.create_room("hidden-pager", room_type="p", members=["alice"], owner="alice", room_id="pager-duty")
    applied = await h.say("owen", "ops", "!integration yes")
    assert applied.text.startswith("🔌 Switched off 0 of 3"), applied.text
    assert len(section(applied, "Failed (nothing changed on these):")) == 3, applied.text
    assert all(h.doc(hook["_id"])["enabled"] for hook in made)
    assert h.writes() == 0
