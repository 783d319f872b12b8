"""Issue 12 §4: one caller's flood does not starve everyone else, and nothing is lost.

Before: 400 `list`/`noisy` from one user in a few seconds made an admin's `disable` wait behind
all of them. Now each caller's commands take turns in their own lane (bot/runtime/fairness.py): a few run
at once, changes first, and beyond the lane's bound a command is answered "busy" instead of run.
Asserted by order of the stored answers, not by time; and every command is answered exactly once,
also when the bot is stopped (kill -9, SIGTERM) in the middle of a flood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, Chat, running_workspace, unique_name
from incident_support import ROOM as INCIDENT_ROOM
from incident_support import incident_world

from sandbox.control import SandboxControl

pytestmark = pytest.mark.e2e

ROOM = "ops"
FLOOD = 400
FLOOD_TIMEOUT = 240.0  # a functional deadline for the whole flood to be answered


def flood(chat: Chat, room: str, count: int) -> list[dict[str, Any]]:
    return [chat.post("owen", room, "!integration list" if n % 2 else "!integration noisy 5") for n in range(count)]


def bot_messages(control: SandboxControl, room: str) -> list[dict[str, Any]]:
    return [m for m in control.messages(room) if m["u"]["username"] == BOT_USERNAME]


def answer_id(chat: Chat, command: dict[str, Any]) -> str:
    """The id the bot's answer to `command` has: the first of its chain (nobody else posts here)."""
    return chat.answer_ids(command)[0]


def wait_answered(chat: Chat, room: str, commands: list[dict[str, Any]]) -> None:
    control = chat.control
    wanted = {answer_id(chat, c) for c in commands}
    control.wait_for_message(
        room, lambda _m: wanted <= {m["_id"] for m in bot_messages(control, room)}, timeout=FLOOD_TIMEOUT
    )


def assert_each_answered_once(chat: Chat, room: str, commands: list[dict[str, Any]]) -> None:
    answers = [m["_id"] for m in bot_messages(chat.control, room)]
    assert len(answers) == len(set(answers))
    assert {answer_id(chat, c) for c in commands} <= set(answers)


def test_an_admins_disable_is_answered_before_most_of_a_flood(tmp_path: Path) -> None:
    with running_workspace(tmp_path) as ws:
        hook = ws.control.create_incoming_integration(unique_name("Flood victim"), channel="#general")
        commands = flood(ws.chat, ROOM, FLOOD)
        disable = ws.chat.post("admin", ROOM, f"!integration disable {hook['_id']}")
        answer = ws.chat.reply_to(disable, timeout=FLOOD_TIMEOUT)
        assert answer["msg"].startswith("🔴 Disabled"), answer["msg"]
        assert ws.control.integration(hook["_id"])["enabled"] is False
        wait_answered(ws.chat, ROOM, commands)

        order = [m["_id"] for m in bot_messages(ws.control, ROOM)]
        admin_at = order.index(answer["_id"])
        before_admin = sum(1 for c in commands if order.index(answer_id(ws.chat, c)) < admin_at)
        assert before_admin < FLOOD // 4, f"{before_admin} of the flood's answers came before the admin's"
        assert_each_answered_once(ws.chat, ROOM, [*commands, disable])
        texts = [m["msg"] for m in bot_messages(ws.control, ROOM) if m["_id"] != answer["_id"]]
        busy = [t for t in texts if t.startswith("⏳ I did not run this command")]
        assert busy, "a flood beyond the lane's bound is answered busy"
        assert len(busy) < FLOOD


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_a_flood_cut_short_by_a_stop_is_still_answered_once_each(tmp_path: Path, stop: str) -> None:
    with incident_world(tmp_path) as world:
        commands = flood(world.chat, INCIDENT_ROOM, 150)
        world.control.wait_for_message(INCIDENT_ROOM, lambda m: m["u"]["username"] == BOT_USERNAME, timeout=30)
        # mid-flood: some answered, some running, the rest waiting in the lane
        if stop == "kill -9":
            world.kill()
        else:
            assert world.bot.terminate() == 0
        world.start()
        started = world.bot.wait_for_log("bot.starting")
        assert started["unfinished"] > 0  # claimed, not answered: the lane's waiting commands among them
        wait_answered(world.chat, INCIDENT_ROOM, commands)
        assert_each_answered_once(world.chat, INCIDENT_ROOM, commands)
