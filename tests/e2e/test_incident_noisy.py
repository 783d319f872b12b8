"""Issue 4 end to end: `noisy` ranks the integrations that posted most, names only what the caller
may see, and its button disables the top one for an hour.

Each test posts in rooms of its own (the window is per room), through the sandbox's webhook
path (`bot: {i: <id>}` on the message, as Rocket.Chat stores it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, unique_name
from incident_support import PREFIX, World, buttons, incident_world

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-incident-noisy")]

_rooms = itertools.count(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with incident_world(tmp_path_factory.mktemp("incident-noisy")) as running:
        yield running


def new_room(world: World, members: tuple[str, ...] = ("admin", "owen", "alice")) -> str:
    name = f"noisy-{next(_rooms)}"
    world.control.create_room(name, members=[*members, BOT_USERNAME], owner="admin")
    return name


def webhook(world: World, room: str, created_by: str = "admin") -> dict[str, Any]:
    return world.control.create_incoming_integration(unique_name("Hook"), channel=f"#{room}", created_by=created_by)


def post(world: World, integration: dict[str, Any], room: str, count: int) -> list[dict[str, Any]]:
    return [world.control.post_webhook_message(integration["_id"], f"alert {n}", room=room) for n in range(count)]


def ranked(reply: str) -> list[str]:
    return [line for line in reply.splitlines() if line.startswith("•")]


def test_noisy_ranks_by_messages_and_offers_to_disable_the_top_one(world: World) -> None:
    room = new_room(world)
    loud, middle, quiet = webhook(world, room), webhook(world, room), webhook(world, room)
    post(world, quiet, room, 1)
    post(world, loud, room, 6)
    post(world, middle, room, 3)
    world.chat.post("alice", room, "what is going on?")  # people's messages are not counted

    reply = world.chat.command("admin", room, f"{PREFIX} noisy")
    lines = ranked(reply["msg"])
    assert len(lines) == 3
    for line, (count, integration) in zip(
        lines, [("6 messages", loud), ("3 messages", middle), ("1 message", quiet)], strict=True
    ):
        assert line.startswith(f"• {count} · ") and integration["name"] in line, reply["msg"]
    assert "10 messages" in reply["msg"]

    ((label, command),) = buttons(reply).items()
    assert label == f"Disable {loud['name']} for 1 h" and loud["_id"] in command
    answer = world.chat.command("admin", room, command)["msg"]  # the admin taps it
    assert "Disabled" in answer and "in 1 h" in answer and "noisy" in answer
    assert world.control.integration(loud["_id"])["enabled"] is False
    assert loud["name"] in world.chat.command("admin", room, f"{PREFIX} snoozed")["msg"]


def test_a_redelivered_webhook_message_counts_once(world: World) -> None:
    room = new_room(world)
    hook = webhook(world, room)
    messages = post(world, hook, room, 2)
    world.control.react(messages[0]["_id"], ":eyes:", "alice")  # the stream re-delivers it
    world.control.react(messages[0]["_id"], ":+1:", "owen")
    reply = world.chat.command("admin", room, f"{PREFIX} noisy 10")["msg"]
    assert "2 messages" in ranked(reply)[0]


def test_integrations_the_caller_cannot_see_are_counted_but_never_named(world: World) -> None:
    room = new_room(world)
    admins = webhook(world, room)
    owens = webhook(world, room, created_by="owen")
    post(world, admins, room, 4)
    post(world, owens, room, 2)

    reply = world.chat.command("owen", room, f"{PREFIX} noisy")
    lines = ranked(reply["msg"])
    assert "4 messages" in lines[0] and "can't see" in lines[0]
    assert admins["name"] not in reply["msg"] and admins["_id"] not in reply["msg"]
    assert owens["name"] in lines[1]
    (command,) = buttons(reply).values()
    assert owens["_id"] in command and admins["_id"] not in command  # the top one owen may change

    refused = world.chat.command("alice", room, f"{PREFIX} noisy")["msg"]
    assert "can't" in refused and owens["name"] not in refused


def test_noisy_all_counts_the_rooms_the_caller_shares_with_the_bot(world: World) -> None:
    world.control.create_user("roamer", roles=["admin"])
    world.control.create_user("wanderer", roles=["user", "own-integrations"])
    here, elsewhere = new_room(world, ("roamer", "wanderer")), new_room(world, ("roamer", "wanderer"))
    secret = new_room(world, ("roamer",))
    first, second, hidden = webhook(world, here), webhook(world, elsewhere), webhook(world, secret)
    post(world, first, here, 1)
    post(world, second, elsewhere, 3)
    post(world, hidden, secret, 5)

    only_here = ranked(world.chat.command("roamer", here, f"{PREFIX} noisy")["msg"])
    assert len(only_here) == 1 and first["name"] in only_here[0] and "1 message" in only_here[0]

    everywhere = ranked(world.chat.command("roamer", here, f"{PREFIX} noisy all 30")["msg"])
    assert [line.split(" · ")[0] for line in everywhere] == ["• 5 messages", "• 3 messages", "• 1 message"]
    assert [hook["name"] in line for hook, line in zip((hidden, second, first), everywhere, strict=True)] == [True] * 3

    # Activity in a room the wanderer is not in is not theirs to see, not even as a number.
    wanderer = ranked(world.chat.command("wanderer", here, f"{PREFIX} noisy all")["msg"])
    assert [line.split(" · ")[0] for line in wanderer] == ["• 3 messages", "• 1 message"]
    assert all("can't see" in line for line in wanderer)


def test_noisy_says_so_when_nothing_posted(world: World) -> None:
    room = new_room(world)
    assert "No integration posted" in world.chat.command("admin", room, f"{PREFIX} noisy 5")["msg"]
    assert "more than zero" in world.chat.command("admin", room, f"{PREFIX} noisy 0")["msg"]
    assert "longest allowed is 1 d" in world.chat.command("admin", room, f"{PREFIX} noisy 2d")["msg"]
