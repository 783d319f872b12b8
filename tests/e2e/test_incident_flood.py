"""Issue 16 end to end: the flood guard. An integration posting 25 messages into a room within a
few seconds gets exactly one notice there (its name, buttons that post normal commands), and
nothing is written; "Quiet for today" is refused to whoever can't manage the integration; ignored
rooms and people's own floods get nothing. With BOT_FLOOD_ACTION=disable: one lossless timed
disable by the bot ("flood guard"), turned back on when due.

The messages go through the sandbox's webhook path (`bot: {i: <id>}`, posted as the integration's
user); forged ones through DDP `sendMessage`, which lets any user set `bot` on a message
(contract §4.7). Whether the bot handled a flood, and how, is read from its `flood.seen` log events; the
tests wait for them (and for the notices), never sleep, except to let a quiet period pass.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, unique_name
from incident_support import (
    PREFIX,
    World,
    audit_lines,
    buttons,
    incident_world,
    stable,
    wait_audit_line,
    wait_past,
)

from bot.rocketchat.ejson import decode_date
from tests.sandbox.ddp_test_client import DDPClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-incident-flood")]

QUIET = timedelta(seconds=4)
IGNORED_ROOM = "flood-ignored"
_rooms = itertools.count(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = {"BOT_FLOOD_QUIET": "4s", "BOT_FLOOD_IGNORE_ROOMS": f"#{IGNORED_ROOM}"}
    with incident_world(tmp_path_factory.mktemp("incident-flood"), **settings) as running:
        running.control.create_room(IGNORED_ROOM, members=["admin", "owen", BOT_USERNAME], owner="admin")
        yield running


def new_room(world: World) -> str:
    name = f"flood-{next(_rooms)}"
    world.control.create_room(name, members=["admin", "owen", "alice", BOT_USERNAME], owner="admin")
    return name


def webhook(world: World, room: str, created_by: str = "admin") -> dict[str, Any]:
    return world.control.create_incoming_integration(unique_name("Hook"), channel=f"#{room}", created_by=created_by)


def signed(integration: dict[str, Any]) -> str:
    """What its messages are signed with in the room: its alias, else the user it posts as."""
    return str(integration.get("alias") or integration["username"])


def flooded(world: World, integration: dict[str, Any], room: str) -> dict[str, Any]:
    """The flood notice about `integration` in `room`, once the bot has posted it."""
    return world.notice(lambda m: "🌊" in m and f"`{signed(integration)}`" in m, room=room)


def flood(world: World, integration: dict[str, Any], room: str, count: int = 25) -> None:
    for n in range(count):
        world.control.post_webhook_message(integration["_id"], f"alert {n}", room=room)


def flood_events(world: World, integration: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e for e in world.bot.logs() if e.get("event") == "flood.seen" and e.get("integration_id") == integration["_id"]
    ]


def handled(world: World, integration: dict[str, Any], outcome: str, *, after: int = 0) -> dict[str, Any]:
    return world.bot.wait_for_log(
        "flood.seen",
        after=after,
        where=lambda e: e.get("integration_id") == integration["_id"] and e.get("outcome") == outcome,
        timeout=15,
    )


def is_notice(message: dict[str, Any]) -> bool:
    return bool(message["u"]["username"] == BOT_USERNAME and "🌊" in (message.get("msg") or ""))


def notices(world: World, room: str) -> list[dict[str, Any]]:
    return [m for m in world.control.messages(room) if is_notice(m)]


def posted_at(message: dict[str, Any]) -> datetime:
    when = decode_date(message["ts"])
    assert when is not None
    return when


def settle(world: World, room: str) -> None:
    """Every message posted in `room` so far has reached the bot: its answer to a later command
    came (the stream delivers a room's messages in order)."""
    world.chat.command("alice", room, f"{PREFIX} help quiet")


def test_25_webhook_messages_make_one_notice_and_no_write(world: World) -> None:
    room = new_room(world)
    hook = webhook(world, room)
    flood(world, hook, room)
    notice = flooded(world, hook, room)
    assert "posted 20 messages here in the last minute" in notice["msg"], notice["msg"]
    # Named as the room sees its messages, not by its name (not on them, and not everyone's to
    # know, contract §5.1); its id is only in the buttons.
    assert hook["name"] not in notice["msg"] and hook["_id"] not in notice["msg"]
    assert buttons(notice) == {
        "Disable for 1 h": f"{PREFIX} disable {hook['_id']} for 1h because flood",
        "Quiet for today": f"{PREFIX} quiet {hook['_id']}",
    }
    settle(world, room)
    assert len(notices(world, room)) == 1
    assert [e["outcome"] for e in flood_events(world, hook)] == ["noticed"]
    assert world.control.integration(hook["_id"]) == hook  # nothing written
    assert not any(hook["name"] in line for line in audit_lines(world.control))


def test_the_disable_button_is_a_timed_disable_by_whoever_taps_it(world: World) -> None:
    room = new_room(world)
    hook = webhook(world, room)
    flood(world, hook, room)
    notice = flooded(world, hook, room)
    refused = world.chat.command("alice", room, buttons(notice)["Disable for 1 h"])["msg"]
    assert "can't" in refused or "can’t" in refused, refused
    assert world.control.integration(hook["_id"])["enabled"] is True
    answer = world.chat.command("admin", room, buttons(notice)["Disable for 1 h"])["msg"]
    assert "Disabled" in answer and "in 1 h" in answer and "flood" in answer
    assert hook["name"] in world.command("admin", "snoozed")["msg"]


def test_quiet_for_today_is_for_those_who_may_change_it_and_holds_later_floods(world: World) -> None:
    room = new_room(world)
    hook = webhook(world, room)
    flood(world, hook, room)
    notice = flooded(world, hook, room)
    quiet = buttons(notice)["Quiet for today"]
    refused = world.chat.command("owen", room, quiet)["msg"]  # neither an admin nor its owner
    assert "can't" in refused or "can’t" in refused, refused
    assert hook["name"] not in refused
    answer = world.chat.command("admin", room, quiet)["msg"]
    assert "No flood notices" in answer and "00:00 UTC" in answer, answer

    wait_past(posted_at(notice) + QUIET)  # the notice's quiet period ends
    mark = world.bot.mark()
    flood(world, hook, room)
    handled(world, hook, "quiet", after=mark)
    settle(world, room)
    assert len(notices(world, room)) == 1


def test_after_the_quiet_period_a_new_flood_gets_a_new_notice(world: World) -> None:
    room = new_room(world)
    hook = webhook(world, room)
    flood(world, hook, room)
    first = flooded(world, hook, room)
    wait_past(posted_at(first) + QUIET)
    mark = world.bot.mark()
    flood(world, hook, room)
    second = world.control.wait_for_message(room, lambda m: is_notice(m) and m["_id"] != first["_id"], timeout=15)
    assert f"`{signed(hook)}`" in second["msg"]
    handled(world, hook, "noticed", after=mark)
    assert [e["outcome"] for e in flood_events(world, hook)] == ["noticed", "noticed"]


def test_an_ignored_room_and_people_flooding_get_no_notice(world: World) -> None:
    hook = webhook(world, IGNORED_ROOM)
    mark = world.bot.mark()
    flood(world, hook, IGNORED_ROOM)
    handled(world, hook, "ignored room", after=mark)
    room = new_room(world)
    for n in range(25):
        world.chat.post("alice", room, f"spam {n}")
    settle(world, IGNORED_ROOM)
    settle(world, room)
    assert notices(world, IGNORED_ROOM) == [] and notices(world, room) == []
    assert not [e for e in world.bot.logs() if e.get("event") == "flood.seen" and e.get("room_id") == room]


@pytest.fixture(scope="module")
def disabling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = {"BOT_FLOOD_ACTION": "disable", "BOT_FLOOD_DISABLE_FOR": "6s"}
    with incident_world(tmp_path_factory.mktemp("incident-flood-disable"), **settings) as running:
        yield running


def test_flood_action_disable_is_one_lossless_timed_disable_reenabled_when_due(disabling: World) -> None:
    world = disabling
    room = new_room(world)
    hook = world.control.create_incoming_integration(
        unique_name("Hook"),
        channel=f"#{room}",
        created_by="admin",
        alias="pager",
        emoji=":bell:",
        script="class Script { process_incoming_request({ request }) { return { content: request.content }; } }",
        script_enabled=True,
    )
    flood(world, hook, room, 20)
    notice = flooded(world, hook, room)
    assert "so I disabled it until" in notice["msg"] and "flood guard" in notice["msg"], notice["msg"]
    assert buttons(notice) == {"Re-enable now": f"{PREFIX} enable {hook['_id']}"}
    off = world.control.integration(hook["_id"])
    assert off["enabled"] is False and stable({**off, "enabled": True}) == stable(hook)
    assert off["_updatedBy"]["username"] == BOT_USERNAME
    snoozed = world.command("admin", "snoozed")["msg"]
    line = next(line for line in snoozed.splitlines() if hook["name"] in line)
    assert f"by {BOT_USERNAME}" in line and "flood guard" in line, snoozed
    wait_audit_line(world.control, lambda text: hook["name"] in text and "flood guard" in text)

    back = world.notice(lambda m: "is back on" in m and "`pager` (a webhook)" in m, room=room)
    assert hook["name"] not in back["msg"]
    assert f"disable by {BOT_USERNAME} ended" in back["msg"]
    assert stable(world.control.integration(hook["_id"])) == stable(hook)
    assert [e["outcome"] for e in flood_events(world, hook)] == ["disabled"]


def forge(world: World, user: str, room: str, integration: dict[str, Any], count: int) -> None:
    """`count` messages posted by `user` over DDP with the integration's id in `bot.i`."""

    async def send() -> None:
        async with DDPClient.open(world.server.url) as client:
            await client.connect()
            await client.login(world.token(user))
            for n in range(count):
                message = {"rid": world.control.room_id(room), "msg": f"forged {n}", "bot": {"i": integration["_id"]}}
                frame = await client.call("sendMessage", message)
                assert frame.get("result", {}).get("bot") == {"i": integration["_id"]}, frame

    asyncio.run(send())


def test_forged_messages_neither_get_a_webhook_disabled_nor_hide_its_real_flood(disabling: World) -> None:
    """Was: 19 messages alice forged with Grafana's id in `bot.i`, plus one genuine Grafana
    message, made a flood that passed the author check (the last author was Grafana's user), and
    the bot disabled Grafana; 20 forged ones muted Grafana's count, so its real storm right after
    got no notice for the quiet period."""
    world = disabling
    room = new_room(world)
    hook = webhook(world, room)
    forge(world, "alice", room, hook, 19)
    world.control.post_webhook_message(hook["_id"], "genuine 0", room=room)
    settle(world, room)
    mark = world.bot.mark()
    forge(world, "alice", room, hook, 1)  # alice's 20th: a flood of her own, rejected
    handled(world, hook, "not posted by it", after=mark)
    forge(world, "alice", room, hook, 30)  # not counted any more
    settle(world, room)
    assert world.control.integration(hook["_id"])["enabled"] is True
    assert notices(world, room) == []

    flood(world, hook, room, 19)  # with the genuine one above: 20 of its own in the window
    notice = flooded(world, hook, room)
    assert "so I disabled it until" in notice["msg"] and "flood guard" in notice["msg"], notice["msg"]
    assert world.control.integration(hook["_id"])["enabled"] is False
    handled(world, hook, "disabled")  # logged once the notice is posted
    assert [e["outcome"] for e in flood_events(world, hook)] == ["not posted by it", "disabled"]


def test_noisy_counts_only_what_the_webhook_posted_not_what_was_forged(world: World) -> None:
    """Was: `noisy` counted every message carrying a webhook's id in `bot.i`: 15 that alice
    forged made the admin's `noisy` blame the webhook for them, with a button to disable it."""
    room = new_room(world)
    hook = webhook(world, room)
    forged_only = webhook(world, room)
    forge(world, "alice", room, hook, 15)
    forge(world, "alice", room, forged_only, 15)
    flood(world, hook, room, 2)
    settle(world, room)
    answer = world.command("admin", "noisy 5", room=room)
    assert f"• 2 messages · 🟢 `{hook['name']}`" in answer["msg"], answer["msg"]
    assert forged_only["name"] not in answer["msg"] and "15 messages" not in answer["msg"], answer["msg"]
    assert all(forged_only["_id"] not in command for command in buttons(answer).values()), buttons(answer)
