"""Issue 16 end to end: `disable all in #room` / `disable all matching "glob"`, previewed, then
applied member by member through the real bot process against the sandbox.

One sandbox and one real bot process for the module (`xdist_group`); each test makes its own room
and integrations. Durations are a few seconds; the tests wait for the bot's notices, never sleep.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, unique_name
from incident_support import PREFIX, ROOM, World, buttons, incident_world, stable, wait_audit_line, wait_past

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-bulk-disable")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with incident_world(tmp_path_factory.mktemp("bulk-disable")) as running:
        yield running


def room(world: World) -> str:
    """A room of its own for the test's integrations (admin, owen and the bot are members)."""
    name = f"bulk-{unique_name('r').replace(' ', '-')}"
    world.control.create_room(name, members=["admin", "owen", BOT_USERNAME], owner="admin")
    return name


def hook(world: World, where: str, *, created_by: str = "admin", **fields: Any) -> dict[str, Any]:
    return world.control.create_incoming_integration(
        unique_name("Pager"),
        channel=f"#{where}",
        created_by=created_by,
        alias="pager",
        emoji=":bell:",
        avatar="https://example.org/pager.png",
        **fields,
    )


def enabled(world: World, integration: dict[str, Any]) -> bool:
    return bool(world.control.integration(integration["_id"])["enabled"])


def bullets_after(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(title)), None)
    if start is None:
        return []
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("• "):
            break
        found.append(line[2:])
    return found


def test_a_timed_bulk_disable_after_yes_switches_exactly_those_and_back_on_when_due(world: World) -> None:
    where, elsewhere = room(world), room(world)
    mine = hook(world, where)
    owens = hook(world, where, created_by="owen")
    off = hook(world, where, enabled=False)
    other = hook(world, elsewhere)
    preview = world.command("admin", f"disable all in #{where} for 3s because paging storm")["msg"]
    assert "Switch off 2 integrations posting into" in preview, preview
    assert f"`#{where}`" in preview
    assert off["name"] in "\n".join(bullets_after(preview, "Already off"))
    assert other["name"] not in preview
    assert all(enabled(world, i) for i in (mine, owens, other))  # a preview writes nothing

    applied = world.command("admin", "yes")["msg"]
    assert "Switched off 2 of 2 integrations" in applied, applied
    assert sorted(bullets_after(applied, "Switched off:")) == sorted(f"`{i['name']}` (incoming)" for i in (mine, owens))
    assert not enabled(world, mine) and not enabled(world, owens)
    assert enabled(world, other) and not enabled(world, off)

    snoozed = world.command("admin", "snoozed")["msg"]
    (line,) = [line for line in snoozed.splitlines() if line.startswith("• ") and where in line]
    assert "2 integrations in" in line and mine["name"] in line and owens["name"] in line, snoozed

    notice = world.notice(lambda m: "back on" in m and mine["name"] in m)["msg"]
    assert notice.startswith("🟢 2 integrations are back on: the 3 s bulk disable by admin ended"), notice
    assert owens["name"] in notice
    for original in (mine, owens):
        back = world.control.integration(original["_id"])
        assert stable(back) == stable(original)  # losslessly back on
    assert not enabled(world, off)  # it was off before: the bot did not switch it on
    assert enabled(world, other)


def test_the_group_notice_comes_when_its_last_member_is_switched_on_by_a_command(world: World) -> None:
    """One member extended on its own stays off when the other comes back on (the group's notice
    waits for it); `enable` of that member then ends the last pending timer of the group: the
    notice names the member that came back on. Was: nothing was ever said about it."""
    where = room(world)
    back, kept = hook(world, where), hook(world, where)
    applied = world.command("admin", f"disable all in #{where} for 3s --yes")["msg"]
    assert "Switched off 2 of 2" in applied, applied
    longer = world.command("admin", f"extend {kept['_id']} 1h")["msg"]
    assert "⏰" in longer, longer
    wait_audit_line(world.control, lambda line: back["name"] in line and "turned" in line and "back on" in line)
    assert enabled(world, back) and not enabled(world, kept)
    enable = world.command("admin", f"enable {kept['_id']}")["msg"]
    assert "Enabled" in enable and "is cancelled" in enable, enable
    notice = world.notice(lambda m: "back on: the" in m and back["name"] in m)["msg"]
    assert notice.startswith("🟢 1 integration is back on: the 3 s bulk disable by admin ended"), notice
    assert kept["name"] not in notice


def test_the_button_confirms_and_a_restart_in_between_keeps_the_timers(world: World) -> None:
    where = room(world)
    first, second = hook(world, where), hook(world, where)
    preview = world.command("admin", f"disable all in #{where} for 4s -- maintenance")
    (command,) = [c for text, c in buttons(preview).items() if text.startswith("Switch off")]
    assert re.fullmatch(r"!integration confirm [A-Z0-9]{4}", command), command
    started = datetime.now(UTC)
    applied = world.chat.command("admin", ROOM, command)["msg"]
    assert "Switched off 2 of 2" in applied, applied
    world.kill()
    wait_past(started + timedelta(seconds=1))
    assert not enabled(world, first) and not enabled(world, second)
    world.start()
    notice = world.notice(lambda m: "back on" in m and first["name"] in m)["msg"]
    assert second["name"] in notice and "2 integrations are back on" in notice, notice
    for original in (first, second):
        assert stable(world.control.integration(original["_id"])) == stable(original)
    history = world.command("admin", f"history {first['_id']}")["msg"]
    assert "turned" in history and "back on" in history


def test_a_manage_own_caller_switches_only_their_own_and_learns_nothing_of_the_others(world: World) -> None:
    where = room(world)
    owens = hook(world, where, created_by="owen")
    admins = [hook(world, where), hook(world, where, enabled=False)]
    reply = world.command("owen", f"disable all in #{where} --yes")["msg"]
    assert bullets_after(reply, "Switched off:") == [f"`{owens['name']}` (incoming)"], reply
    assert not enabled(world, owens)
    assert enabled(world, admins[0])
    again = world.command("owen", f"disable all in #{where}")["msg"]
    assert "Nothing to switch off" in again and "may not change" not in again, again
    for hidden in admins:
        assert hidden["name"] not in reply + again and hidden["_id"] not in reply + again


def test_one_member_failing_leaves_the_others_done_and_is_reported(world: World) -> None:
    where = room(world)
    good, broken, also_good = hook(world, where), hook(world, where), hook(world, where)
    # Rocket.Chat answers 500 to every read of one integration (the bot reads each under its lock).
    world.control.fail_next("integrations.get", 1000, "500", concerning=broken["_id"])
    try:
        reply = world.chat.command("admin", ROOM, f"{PREFIX} disable all in #{where} --yes", timeout=60)["msg"]
    finally:
        world.control.clear_faults()
    assert "Switched off 2 of 3 integrations" in reply, reply
    assert sorted(bullets_after(reply, "Switched off:")) == sorted(
        f"`{i['name']}` (incoming)" for i in (good, also_good)
    )
    (failure,) = bullets_after(reply, "Failed")
    assert broken["name"] in failure and "not answering" in failure
    assert not enabled(world, good) and not enabled(world, also_good)
    assert enabled(world, broken)


def test_a_glob_typed_with_phone_quotes(world: World) -> None:
    where = room(world)
    stem = unique_name("Jenkins").replace(" ", "-")
    builds = world.control.create_incoming_integration(f"{stem} builds", channel=f"#{where}", created_by="admin")
    deploys = world.control.create_incoming_integration(f"{stem} deploys", channel=f"#{where}", created_by="admin")
    bystander = hook(world, where)
    preview = world.command("admin", f"disable all matching “{stem.upper()}*”")["msg"]
    assert "Switch off 2 integrations with names matching" in preview, preview
    applied = world.command("admin", "yes")["msg"]
    assert "Switched off 2 of 2" in applied, applied
    assert not enabled(world, builds) and not enabled(world, deploys)
    assert enabled(world, bystander)


def test_extend_all_enable_all_and_history_act_on_the_group(world: World) -> None:
    where = room(world)
    first, second = hook(world, where), hook(world, where)
    applied = world.command("admin", f"disable all in #{where} for 1h because deploy freeze --yes")
    assert set(buttons(applied)) == {"Re-enable all now", "Extend all 1 h"}, applied["msg"]
    extended = world.chat.command("admin", ROOM, buttons(applied)["Extend all 1 h"])["msg"]
    assert extended.startswith("⏰ Extended 2 of 2 integrations"), extended
    history = world.command("admin", "history")["msg"]
    assert f"admin extended the disable of 2 integrations in `#{where}`" in history, history
    assert f"admin disabled 2 integrations in `#{where}`" in history
    enabled_back = world.chat.command("admin", ROOM, buttons(applied)["Re-enable all now"])["msg"]
    assert "Switched on 2 of 2" in enabled_back, enabled_back
    for original in (first, second):
        assert stable(world.control.integration(original["_id"])) == stable(original)
    snoozed = world.command("admin", "snoozed")["msg"]
    assert where not in snoozed


def test_undo_reverts_the_whole_bulk_disable(world: World) -> None:
    where = room(world)
    first, second = hook(world, where), hook(world, where)
    world.command("owen", f"disable all in #{where} --yes")  # owen may change none of them
    assert enabled(world, first) and enabled(world, second)
    world.command("admin", f"disable all in #{where} --yes")
    undone = world.command("admin", "undo")["msg"]
    assert "for 2 of 2 integrations" in undone, undone
    for original in (first, second):
        assert stable(world.control.integration(original["_id"])) == stable(original)


def test_a_member_changed_by_hand_is_left_off_and_told_apart_from_the_group(world: World) -> None:
    where = room(world)
    kept, touched = hook(world, where), hook(world, where)
    world.command("admin", f"disable all in #{where} for 3s -- maintenance --yes")
    world.manual_update(touched["_id"], {"alias": "changed by hand"})  # still disabled
    by_hand = world.control.integration(touched["_id"])
    alone = world.notice(lambda m: "was due back on" in m and touched["name"] in m)["msg"]
    assert "changed after I disabled it" in alone and "alias" in alone
    together = world.notice(lambda m: "back on: the" in m and kept["name"] in m)["msg"]
    assert together.startswith("🟢 1 integration is back on"), together
    assert touched["name"] not in together
    assert stable(world.control.integration(kept["_id"])) == stable(kept)
    assert world.control.integration(touched["_id"]) == by_hand  # not overwritten


def test_a_member_whose_writes_answer_500_is_reported_and_the_group_still_comes_back(world: World) -> None:
    where = room(world)
    good, broken = hook(world, where), hook(world, where)
    # Every write of one integration is answered 500: the bot cannot tell whether it was stored,
    # so it looks, re-sends only what provably did not land, and finally says it can't tell.
    world.control.fail_next("integrations.update", 1000, "500", concerning=broken["_id"])
    try:
        reply = world.chat.command(
            "admin", ROOM, f"{PREFIX} disable all in #{where} for 2s -- flaky --yes", timeout=90
        )["msg"]
    finally:
        world.control.clear_faults()
    assert "Switched off 1 of 2 integrations" in reply, reply
    assert bullets_after(reply, "Switched off:") == [f"`{good['name']}` (incoming)"]
    (failure,) = bullets_after(reply, "Failed")
    assert broken["name"] in failure and "can't tell whether the change was stored" in failure, failure
    assert enabled(world, broken)  # none of its writes was stored
    notice = world.notice(lambda m: "back on: the" in m and good["name"] in m)["msg"]
    assert notice.startswith("🟢 1 integration is back on"), notice
    assert broken["name"] not in notice
    assert stable(world.control.integration(good["_id"])) == stable(good)


def test_a_glob_does_not_tell_owen_whether_a_hidden_name_matches(world: World) -> None:
    """Was: the preview counted matching integrations owen cannot see, so `disable all matching
    "<guess>"` answered yes (1 more … you may not change) or no (nothing) to any guess at the name
    of admin's hidden webhook."""
    where = room(world)
    hidden = hook(world, where)
    right = world.command("owen", f'disable all matching "{hidden["name"]}"')["msg"]
    wrong = world.command("owen", f'disable all matching "{hidden["name"]}x"')["msg"]
    assert right.replace(hidden["name"], "?") == wrong.replace(hidden["name"] + "x", "?"), (right, wrong)
    in_room = world.command("owen", f"disable all in #{where}")["msg"]
    assert "may not change" not in right + in_room and hidden["_id"] not in right + in_room, in_room
    assert enabled(world, hidden)


def test_an_old_re_enable_button_does_not_undo_a_deliberate_later_disable(world: World) -> None:
    """Was: after a `disable all` without a duration had been switched back on, owen switched his
    hook off on purpose; the bulk answer's old "Re-enable all now" button switched it on again."""
    where = room(world)
    owens, admins = hook(world, where, created_by="owen"), hook(world, where)
    applied = world.command("admin", f"disable all in #{where} --yes")
    button = buttons(applied)["Re-enable all now"]
    first = world.chat.command("admin", ROOM, button)["msg"]
    assert "Switched on 2 of 2" in first, first
    off = world.command("owen", f"disable {owens['_id']} because leaking secrets")["msg"]
    assert "Disabled" in off, off
    again = world.chat.command("admin", ROOM, button)["msg"]
    assert again.startswith("Nothing to switch back on"), again
    assert not enabled(world, owens)
    assert enabled(world, admins)


def test_a_preview_over_many_members_of_one_room_looks_the_room_up_once(world: World) -> None:
    """owen (own integrations only: the membership rule applies to him) previews twelve of his
    webhooks posting into one room. The `#room` entry is looked up once for the command (by id and
    by name, next to the lookups that find the room he means), not once per member (24 and more)."""
    where = room(world)
    made = [hook(world, where, created_by="owen") for _ in range(12)]
    before = world.control.counters().rest.get("rooms.info", 0)
    preview = world.command("owen", f"disable all in #{where}")["msg"]
    lookups = world.control.counters().rest.get("rooms.info", 0) - before
    assert "Switch off 12 integrations posting into" in preview, preview
    assert lookups < len(made), lookups  # a few for the command, none per member
    assert all(enabled(world, i) for i in made)
