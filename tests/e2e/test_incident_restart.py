"""Issue 4 end to end: timed disables live in the state file and survive the bot being killed.

Each test has its own sandbox and bot process (it kills the bot): SIGKILL, so nothing of a
graceful shutdown helps; the new process must find the timers in the database and re-arm them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e_support import unique_name
from incident_support import NOISE_ROOM, ROOM, World, incident_world, stable, wait_past

pytestmark = pytest.mark.e2e


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with incident_world(tmp_path) as running:
        yield running


def hook(world: World, **fields: Any) -> dict[str, Any]:
    return world.control.create_incoming_integration(
        unique_name("Hook"), channel=f"#{ROOM}", created_by="admin", alias="pager", emoji=":bell:", **fields
    )


def test_a_pending_reenable_is_rearmed_after_a_kill(world: World) -> None:
    original = hook(world)
    world.command("admin", f"disable {original['_id']} for 4s because maintenance")
    world.kill()
    world.start()
    notice = world.notice(lambda m: "is back on" in m and original["name"] in m)
    assert "disable by admin ended" in notice["msg"]
    assert stable(world.control.integration(original["_id"])) == stable(original)


def test_a_reenable_due_while_the_bot_was_down_happens_at_once_after_start(world: World) -> None:
    original = hook(world)
    started = datetime.now(UTC)
    world.command("admin", f"disable {original['_id']} for 1s")
    world.kill()
    wait_past(started + timedelta(seconds=1))
    assert world.control.integration(original["_id"])["enabled"] is False  # nobody turned it on meanwhile
    world.start()
    world.notice(lambda m: "is back on" in m and original["name"] in m)
    assert stable(world.control.integration(original["_id"])) == stable(original)
    history = world.command("admin", f"history {original['_id']}")["msg"]
    assert "turned" in history and "back on" in history


def test_a_manual_change_while_the_bot_was_down_is_still_not_overwritten(world: World) -> None:
    original = hook(world)
    started = datetime.now(UTC)
    world.command("admin", f"disable {original['_id']} for 1s")
    world.kill()
    world.manual_update(original["_id"], {"enabled": True, "alias": "back by hand"})
    by_hand = world.control.integration(original["_id"])
    wait_past(started + timedelta(seconds=1))
    world.start()
    notice = world.notice(lambda m: "was due back on" in m and original["name"] in m)
    assert "alias" in notice["msg"] and "enabled" in notice["msg"]
    assert world.control.integration(original["_id"]) == by_hand


def test_noisy_reads_back_what_was_posted_before_the_bot_started(world: World) -> None:
    chatty = world.control.create_incoming_integration(unique_name("Chatty"), channel=f"#{NOISE_ROOM}")
    quiet = world.control.create_incoming_integration(unique_name("Quiet"), channel=f"#{NOISE_ROOM}")
    world.kill()
    for n in range(4):
        world.control.post_webhook_message(chatty["_id"], f"alert {n}", room=NOISE_ROOM)
    world.control.post_webhook_message(quiet["_id"], "one alert", room=NOISE_ROOM)
    world.start()
    world.control.post_webhook_message(quiet["_id"], "another alert", room=NOISE_ROOM)
    reply = world.command("admin", "noisy 30", room=NOISE_ROOM)["msg"]
    lines = [line for line in reply.splitlines() if line.startswith("•")]
    assert chatty["name"] in lines[0] and "4 messages" in lines[0], reply
    assert quiet["name"] in lines[1] and "2 messages" in lines[1], reply


def test_an_unreachable_audit_room_never_fails_a_command(tmp_path: Path) -> None:
    with incident_world(tmp_path, BOT_AUDIT_ROOM="no-such-room") as world:
        original = hook(world)
        mark = world.bot.mark()
        reply = world.command("admin", f"disable {original['_id']} for 1h because audit room is gone")["msg"]
        assert "Disabled" in reply
        world.bot.wait_for_log("audit_room.not_found", after=mark)
        history = world.command("admin", f"history {original['_id']}")["msg"]
        assert "audit room is gone" in history  # the database is the source of truth
