"""Issue 12 §3 end to end: nobody can pre-empt, forge or cancel the bot's messages through their ids.

`_id` on `chat.sendMessage` is chosen by the client, and any user may post with any unused id
(contract §8, gotcha 26). The bot used to derive the ids of its answers, audit-room lines and
timer notices from public values (a hash of the command's id, of the audit row's number, of the
timer's number) and to take `error-duplicate-message` as "already posted". A user who posted
first with such an id made the answer (and a `set` confirm code), the audit line or the notice
vanish; a fake answer posted while the bot was down made catch-up skip the real command.

The attacker here is `owen`, an ordinary user, posting through the server's normal send rules.
`public_id` is what he computes: the old derivation. Tests that need the bot's real ids read its
key from the state file, as someone who has a copy of it would (bot/rocketchat/message_ids.py).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, unique_name
from incident_support import World, incident_world, wait_audit_line

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-message-ids")]

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
ANSWER_TIMEOUT = 10.0


def public_id(seed: str) -> str:
    """The ids the bot derived from public values before issue 12 (what an attacker computes)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:17])


def public_answer_id(command_id: str) -> str:
    return public_id(f"integrations-bot-reply:{command_id}")


def meteor_id() -> str:
    """The id a client picks for its own message (Meteor's `Random.id()`)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(17))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with incident_world(tmp_path_factory.mktemp("message-ids")) as running:
        control = running.control
        # Owen's own private room: the bot can neither read nor post there.
        control.create_room("owen-den", room_type="p", members=["owen"], owner="owen")
        yield running


def fresh_room(world: World) -> str:
    """A room of the test's own (admin, owen and the bot), so every bot message in it is counted."""
    name = unique_name("ids").replace(" ", "-")
    world.control.create_room(name, members=["admin", "owen", BOT_USERNAME], owner="admin")
    return name


def bot_messages(world: World, room: str) -> list[dict[str, Any]]:
    return [m for m in world.control.messages(room) if m["u"]["username"] == BOT_USERNAME]


def first_bot_message(world: World, room: str, *, timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
    return world.control.wait_for_message(room, lambda m: m["u"]["username"] == BOT_USERNAME, timeout=timeout)


@pytest.mark.parametrize("where", ["general", "owen-den"], ids=["a-room-the-bot-reads", "a-room-the-bot-cannot-read"])
def test_an_answer_and_its_confirm_code_cannot_be_taken_first_from_another_room(world: World, where: str) -> None:
    room = fresh_room(world)
    created = world.control.create_incoming_integration(unique_name("Preempt"), channel="#general", alias="before")
    command_id = meteor_id()
    # Owen raced the bot: he saw the command and posted first with the id its answer would take.
    world.control.post_message("owen", where, "nothing to see here", message_id=public_answer_id(command_id))
    world.control.post_message("admin", room, f"!integration set {created['_id']} alias=mine", message_id=command_id)

    preview = first_bot_message(world, room)
    code = re.search(r"confirm ([A-Z0-9]{4})", preview["msg"])
    assert "alias: `before` → `mine`" in preview["msg"] and code is not None, preview["msg"]
    applied = world.chat.command("admin", room, f"!integration confirm {code.group(1)}")
    assert applied["msg"].startswith("✅ Changed"), applied["msg"]
    assert world.control.integration(created["_id"])["alias"] == "mine"
    assert [m["_id"] for m in bot_messages(world, room)] == [preview["_id"], applied["_id"]]  # each once


def test_a_fake_answer_posted_while_the_bot_is_down_does_not_cancel_the_command(world: World) -> None:
    room = fresh_room(world)
    hook = world.control.create_incoming_integration(unique_name("Fake answer"), channel=f"#{room}")
    assert world.bot.terminate() == 0
    command = world.chat.post("admin", room, f"!integration disable {hook['_id']}")
    fake = f"✅ Disabled {hook['name']}."
    world.control.post_message("owen", room, fake, message_id=public_answer_id(command["_id"]))
    world.start()

    answer = first_bot_message(world, room)
    assert "Disabled" in answer["msg"], answer["msg"]
    assert world.control.integration(hook["_id"])["enabled"] is False  # the real command ran
    assert len(bot_messages(world, room)) == 1


def test_an_audit_line_cannot_be_taken_first(world: World) -> None:
    # Audit rows are numbered 1, 2, 3, ...: the public ids of their lines are all known in advance.
    for number in range(1, 100):
        world.control.post_message("owen", "owen-den", "mine", message_id=public_id(f"integrations-bot:audit-{number}"))
    hook = world.control.create_incoming_integration(unique_name("Audited"), channel="#general")
    world.command("admin", f"disable {hook['_id']} because audited")
    line = wait_audit_line(world.control, lambda text: hook["name"] in text and "audited" in text)
    assert "disabled" in line


def test_a_timer_notice_cannot_be_taken_first(world: World) -> None:
    # Timers are numbered too; a notice's public id was its number and how the timer ended.
    for number in range(1, 30):
        for kind in ("re-enabled", "overridden", "failed"):
            taken = public_id(f"integrations-bot:timer-{number}-{kind}")
            world.control.post_message("owen", "owen-den", "mine", message_id=taken)
    room = fresh_room(world)
    hook = world.control.create_incoming_integration(unique_name("Timed"), channel="#general")
    world.chat.command("admin", room, f"!integration disable {hook['_id']} for 1s")
    notice = world.control.wait_for_message(
        room, lambda m: m["u"]["username"] == BOT_USERNAME and "is back on" in (m.get("msg") or ""), timeout=15.0
    )
    assert hook["name"] in notice["msg"]
    assert world.control.integration(hook["_id"])["enabled"] is True


# --- someone who has the key (a copy of the state file): ids are no longer a surprise, and still
# nothing can be suppressed or cancelled: only the bot's own message counts as posted


def test_with_the_key_an_answer_taken_first_takes_the_next_id_and_appears_once(world: World) -> None:
    room = fresh_room(world)
    command_id = meteor_id()
    chain = world.chat.answer_ids({"_id": command_id})
    mark = world.bot.mark()
    world.control.post_message("owen", "owen-den", "nothing to see here", message_id=chain[0])
    command = world.control.post_message("admin", room, "!integration help", message_id=command_id)

    answer = world.chat.reply_to(command)
    assert answer["_id"] == chain[1] and "integration" in answer["msg"]
    world.bot.wait_for_log("message_id.taken", after=mark, where=lambda e: e.get("message_id") == chain[0])
    world.chat.command("admin", room, "!integration help")  # the bot is done with the first command
    assert [m["_id"] for m in bot_messages(world, room)].count(chain[1]) == 1


def test_with_the_key_fake_answers_at_every_id_do_not_cancel_the_command(world: World) -> None:
    room = fresh_room(world)
    hook = world.control.create_incoming_integration(unique_name("Keyed fake"), channel=f"#{room}")
    assert world.bot.terminate() == 0
    command = world.chat.post("admin", room, f"!integration disable {hook['_id']}")
    for answer_id in world.chat.answer_ids(command):
        world.control.post_message("owen", room, f"✅ Disabled {hook['name']}.", message_id=answer_id)
    world.start()

    answer = first_bot_message(world, room)  # at an id of its own choosing: every derived one is held
    assert "Disabled" in answer["msg"], answer["msg"]
    assert world.control.integration(hook["_id"])["enabled"] is False
    world.bot.wait_for_log("message_id.chain_taken")
    assert len(bot_messages(world, room)) == 1


def test_a_lost_state_file_does_not_run_an_answered_command_again(world: World) -> None:
    """A new state file gets the same key (derived from the bot's credential): the first catch-up
    pass recognises the answer already in the room and leaves its command alone."""
    room = fresh_room(world)
    hook = world.control.create_incoming_integration(unique_name("Lost state"), channel=f"#{room}")
    command = world.chat.post("admin", room, f"!integration disable {hook['_id']}")
    assert "Disabled" in world.chat.reply_to(command)["msg"]
    world.control.update_integration(hook["_id"], {"enabled": True})  # on again, by hand
    assert world.bot.terminate() == 0
    state = Path(world.env["BOT_STATE_DB"])
    for path in (state, state.with_name(state.name + "-wal"), state.with_name(state.name + "-shm")):
        path.unlink(missing_ok=True)
    world.start()
    world.bot.wait_for_log("catchup.already_answered", where=lambda e: e.get("message_id") == command["_id"])
    assert world.control.integration(hook["_id"])["enabled"] is True  # not disabled a second time
    assert len(bot_messages(world, room)) == 1
