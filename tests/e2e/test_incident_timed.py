"""Issue 4 end to end: timed disables come back on time, carefully, and are listed, extended, ended.

One sandbox and one real bot process for the module (`xdist_group`); each test makes its own
integrations. Durations are a few seconds; the tests wait for the bot's notices, never sleep.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, unique_name
from incident_support import ROOM, World, audit_lines, buttons, incident_world, stable, wait_audit_line

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-incident-timed")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with incident_world(tmp_path_factory.mktemp("incident-timed")) as running:
        yield running


def hook(world: World, *, created_by: str = "admin", **fields: Any) -> dict[str, Any]:
    """An incoming webhook with optional fields set, posting to the incident room."""
    return world.control.create_incoming_integration(
        unique_name("Hook"),
        channel=f"#{ROOM}",
        created_by=created_by,
        alias="pager",
        emoji=":bell:",
        avatar="https://example.org/pager.png",
        script="class Script { process_incoming_request({ request }) { return { content: request.content }; } }",
        script_enabled=True,
        **fields,
    )


def test_a_timed_disable_comes_back_on_time_losing_nothing(world: World) -> None:
    original = hook(world)
    reply = world.command("admin", f"disable {original['_id']} for 2s because flapping")
    text = reply["msg"]
    assert "Disabled" in text and re.search(r"until \d\d:\d\d UTC, in \d s", text), text
    assert "flapping" in text
    assert world.control.integration(original["_id"])["enabled"] is False
    assert set(buttons(reply)) == {"Re-enable now", "Extend 1 h"}

    notice = world.notice(lambda m: "is back on" in m and original["name"] in m)
    assert "disable by admin ended" in notice["msg"]
    back = world.control.integration(original["_id"])
    assert stable(back) == stable(original)  # every field as before, enabled again
    assert back["_updatedBy"]["username"] == BOT_USERNAME

    wait_audit_line(world.control, lambda line: original["name"] in line and "turned" in line and "back on" in line)
    lines = [line for line in audit_lines(world.control) if original["name"] in line]
    assert any("admin disabled" in line and "flapping" in line for line in lines), lines


def test_the_end_of_a_timed_disable_is_told_in_the_thread_it_came_from(world: World) -> None:
    original = hook(world)
    parent = world.chat.post("owen", ROOM, "webhook flapping again?")
    reply = world.command("admin", f"disable {original['_id']} for 1s", tmid=parent["_id"])
    assert reply.get("tmid") == parent["_id"]
    notice = world.notice(lambda m: "is back on" in m and original["name"] in m)
    assert notice.get("tmid") == parent["_id"]


def test_a_change_made_by_hand_in_between_is_not_overwritten_and_is_reported(world: World) -> None:
    original = hook(world)
    world.command("admin", f"disable {original['_id']} for 2s -- noisy deploy")
    world.manual_update(original["_id"], {"alias": "changed by hand"})  # still disabled
    before_due = world.control.integration(original["_id"])

    notice = world.notice(lambda m: "was due back on" in m and original["name"] in m)
    assert "changed after I disabled it" in notice["msg"] and "alias" in notice["msg"]
    assert "admin" in notice["msg"]  # who changed it
    assert world.control.integration(original["_id"]) == before_due  # nothing written by the bot

    history = world.command("admin", f"history {original['_id']}")["msg"]
    assert "left" in history and "as it was" in history, history


def test_a_notice_in_the_room_does_not_name_a_private_room_the_integration_now_posts_to(world: World) -> None:
    original = hook(world)
    world.command("admin", f"disable {original['_id']} for 2s")
    world.manual_update(original["_id"], {"channel": [*original["channel"], "#platform-team"]})
    notice = world.notice(lambda m: "was due back on" in m and original["name"] in m)["msg"]
    assert "channel" in notice and "platform-team" not in notice, notice


def test_reenabled_by_hand_then_due_is_left_alone(world: World) -> None:
    original = hook(world)
    world.command("admin", f"disable {original['_id']} for 2s")
    world.manual_update(original["_id"], {"enabled": True, "emoji": ":fire:"})
    by_hand = world.control.integration(original["_id"])
    notice = world.notice(lambda m: "was due back on" in m and original["name"] in m)
    assert "enabled" in notice["msg"] and "emoji" in notice["msg"]
    assert world.control.integration(original["_id"]) == by_hand


def test_enable_ends_a_timed_disable_early_and_says_so(world: World) -> None:
    original = hook(world)
    world.command("admin", f"disable {original['_id']} for 1h")
    assert original["name"] in world.command("admin", "snoozed")["msg"]
    reply = world.command("admin", f"enable {original['_id']}")["msg"]
    assert "Enabled" in reply and "timed disable" in reply and "cancelled" in reply
    assert original["name"] not in world.command("admin", "snoozed")["msg"]
    assert world.control.integration(original["_id"])["enabled"] is True


def test_snoozed_shows_who_why_until_when_and_only_what_the_caller_can_see(world: World) -> None:
    admins = hook(world)
    owens = hook(world, created_by="owen")
    world.command("admin", f"disable {admins['_id']} for 30m because db migration")
    world.command("owen", f"disable {owens['_id']} for 20m because my own noise")

    listing = world.command("admin", "snoozed")["msg"]
    line = next(line for line in listing.splitlines() if admins["name"] in line)
    assert "until" in line and "by admin" in line and "db migration" in line and "here" in line
    assert owens["name"] in listing  # admin may see everything

    own_view = world.command("owen", "snoozed")
    assert owens["name"] in own_view["msg"] and admins["name"] not in own_view["msg"]
    assert all(admins["_id"] not in command for command in buttons(own_view).values())

    refused = world.command("alice", "snoozed")["msg"]
    assert "can't" in refused and admins["name"] not in refused and owens["name"] not in refused

    annotated = world.command("admin", "list incoming disabled")["msg"]
    assert any(admins["name"] in line and "until" in line for line in annotated.splitlines()), annotated
    assert world.command("admin", "list snoozed")["msg"] == world.command("admin", "snoozed")["msg"]


def test_extend_moves_the_end_and_respects_the_permission_rules(world: World) -> None:
    original = hook(world)
    first = world.command("admin", f"disable {original['_id']} for 30m")["msg"]
    extended = world.command("admin", f"extend {original['_id']} 1h")
    assert "stays disabled" in extended["msg"] and "extended by 1 h" in extended["msg"]
    assert re.search(r"in 1 h 30 min", extended["msg"]), (first, extended["msg"])
    assert set(buttons(extended)) == {"Re-enable now", "Extend 1 h"}

    denied = world.command("owen", f"extend {original['_id']} 1h")["msg"]
    assert "can't" in denied or "don't" in denied or "can’t" in denied, denied
    too_long = world.command("admin", f"extend {original['_id']} 7d")["msg"]
    assert "longer than" in too_long
    nothing = world.command("admin", "extend Guggy 1h")["msg"]
    assert "no timed disable" in nothing or "integrations are named" in nothing


def test_buttons_post_commands_that_work_for_the_clicker_with_the_clickers_rights(world: World) -> None:
    original = hook(world)
    reply = world.command("admin", f"disable {original['_id']} for 30m")
    actions = buttons(reply)

    # alice taps "Re-enable now": her rights apply, and she has none.
    refused = world.chat.command("alice", ROOM, actions["Re-enable now"])["msg"]
    assert "can't" in refused or "need" in refused
    assert world.control.integration(original["_id"])["enabled"] is False

    extended = world.chat.command("admin", ROOM, actions["Extend 1 h"])["msg"]
    assert "stays disabled" in extended and "1 h 30 min" in extended

    reenabled = world.chat.command("admin", ROOM, actions["Re-enable now"])["msg"]
    assert "Enabled" in reenabled and "cancelled" in reenabled
    assert stable(world.control.integration(original["_id"])) == stable(original)


def test_disable_for_again_retimes_and_plain_disable_makes_it_permanent(world: World) -> None:
    original = hook(world)
    world.command("admin", f"disable {original['_id']} for 30m")
    retimed = world.command("admin", f"disable {original['_id']} for 2h")["msg"]
    assert "was already disabled" in retimed and "in 2 h" in retimed
    permanent = world.command("admin", f"disable {original['_id']}")["msg"]
    assert "stays disabled" in permanent and "won't turn it back on" in permanent
    assert original["name"] not in world.command("admin", "snoozed")["msg"]
    assert world.control.integration(original["_id"])["enabled"] is False


def test_a_timed_disable_of_something_already_off_does_not_schedule_turning_it_on(world: World) -> None:
    original = hook(world, enabled=False)
    reply = world.command("admin", f"disable {original['_id']} for 1s")["msg"]
    assert "already disabled" in reply and "won't turn it" in reply
    assert original["name"] not in world.command("admin", "snoozed")["msg"]


def test_durations_are_checked_against_the_maximum(world: World) -> None:
    original = hook(world)
    reply = world.command("admin", f"disable {original['_id']} for 8d")["msg"]
    assert "longest allowed is 7 d" in reply
    assert world.control.integration(original["_id"])["enabled"] is True
