"""Commands cut by SIGKILL after their change and before their audit row, whose message was then
deleted or edited, or whose id another user took: what a fresh `integrations-bot run` makes of them.

The claim of a command keeps what it said and who said it while it is unfinished
(bot/state/store.py `ClaimedCommand`); the recovery (bot/runtime/recovery.py) knows the command
from there, also for `extend`, which stores no write intent:
- a deleted message whose change landed: the change is audited (`history` and `undo` know it) and
  its author told in its room, once. Was: closed as "message gone", no audit row, no answer;
- an edited `extend` whose new end was stored: answered as it ran, audited once, not extended
  again. Was: "I did not run it again: it was edited since" (the end had moved), no audit row;
- a deleted `extend` whose id another user then posted at: not resumed as theirs. Was: audited
  as the other user's extension (`history` named them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, REPLY_TIMEOUT
from replica_support import TAKEOVER_TIMEOUT, Replicas, killed_before_its_audit_row, running, wait_until

pytestmark = pytest.mark.e2e

PREFIX = "!integration"
AUDITED = "SELECT action, actor_username, reason FROM audit WHERE message_id = %s"
STATUS = "SELECT status FROM processed_messages WHERE message_id = %s"
DUE = "SELECT due_at FROM timers WHERE integration_id = %s AND state = 'active'"


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    with running(tmp_path, postgres_url) as replicas:
        yield replicas


def finished(replicas: Replicas, command: dict[str, Any]) -> None:
    wait_until(
        lambda: replicas.rows(STATUS, (command["_id"],)) not in ([], [("claimed",)]),
        TAKEOVER_TIMEOUT + REPLY_TIMEOUT,
        "the command's claim was never closed",
    )


def test_a_deleted_command_whose_write_landed_is_audited_and_answered(replicas: Replicas) -> None:
    (bot,) = replicas.start(1)
    control, chat = replicas.control, replicas.chat
    control.create_user("dora", roles=["user", "admin"])
    control.create_room("deleted", members=["dora", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Deleted hook", channel="#deleted")
    chat.command("dora", "deleted", f"{PREFIX} help")  # the key of the answers' ids exists
    control.fail_next("chat.sendMessage", 1000, "500")  # its answer cannot be stored before the kill
    command = killed_before_its_audit_row(
        replicas,
        bot,
        lambda: chat.post("dora", "deleted", f"{PREFIX} disable {hook['_id']} because it floods"),
        lambda: control.integration(hook["_id"])["enabled"] is False,
    )
    control.clear_faults()
    control.delete_message(command["_id"])
    writes = replicas.writes()[hook["_id"]]

    replicas.start(1)  # takes the claim over once its lease ran out
    finished(replicas, command)
    assert replicas.rows(AUDITED, (command["_id"],)) == [("disable", "dora", "it floods")]
    (answer,) = chat.answers_to(command)  # one answer, in the command's room
    assert answer["rid"] == command["rid"]
    assert answer["msg"].startswith("🗑️ Your message was deleted after I ran it"), answer["msg"]
    assert "Disabled" in answer["msg"], answer["msg"]
    assert replicas.writes()[hook["_id"]] == writes  # not written again
    history = chat.command("dora", "deleted", f"{PREFIX} history {hook['_id']}")["msg"]
    assert "disabled" in history and "it floods" in history, history


def _timed(replicas: Replicas, user: str, room: str, name: str) -> tuple[dict[str, Any], float]:
    control, chat = replicas.control, replicas.chat
    control.create_user(user, roles=["user", "admin"])
    control.create_room(room, members=[user, BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration(name, channel=f"#{room}")
    answer = chat.command(user, room, f"{PREFIX} disable {hook['_id']} for 30m")["msg"]
    assert "Disabled" in answer, answer
    ((due,),) = replicas.rows(DUE, (hook["_id"],))
    return hook, float(due)


def test_an_edited_extend_whose_new_end_was_stored_is_answered_as_it_ran(replicas: Replicas) -> None:
    (bot,) = replicas.start(1)
    control, chat = replicas.control, replicas.chat
    hook, before = _timed(replicas, "eddie", "extended-edited", "Edited extend hook")
    command = killed_before_its_audit_row(
        replicas,
        bot,
        lambda: chat.post("eddie", "extended-edited", f"{PREFIX} extend {hook['_id']} 1h"),
        lambda: float(replicas.rows(DUE, (hook["_id"],))[0][0]) != before,
    )
    assert not chat.has_reply(command)
    control.edit_message(command["_id"], f"{PREFIX} extend {hook['_id']} 5h")

    replicas.start(1)
    answer = chat.reply_to(command, timeout=TAKEOVER_TIMEOUT + REPLY_TIMEOUT)
    assert answer["msg"].startswith("✏️ Your message was edited after I ran it"), answer["msg"]
    assert "stays disabled" in answer["msg"] and "extended by 1 h" in answer["msg"], answer["msg"]
    finished(replicas, command)
    ((after,),) = replicas.rows(DUE, (hook["_id"],))
    assert float(after) == pytest.approx(before + 3600, abs=0.01)  # the hour it was given, not five
    assert replicas.rows(AUDITED, (command["_id"],)) == [("extend", "eddie", None)]
    assert len(chat.answers_to(command)) == 1


def test_another_users_message_at_the_id_of_a_killed_extend_is_not_resumed_as_theirs(replicas: Replicas) -> None:
    (bot,) = replicas.start(1)
    control, chat = replicas.control, replicas.chat
    hook, before = _timed(replicas, "edna", "extended-replaced", "Replaced extend hook")
    control.create_user("mallory", roles=["user", "admin"])
    control.add_member("extended-replaced", "mallory")
    said = f"{PREFIX} extend {hook['_id']} 1h"
    command = killed_before_its_audit_row(
        replicas,
        bot,
        lambda: chat.post("edna", "extended-replaced", said),
        lambda: float(replicas.rows(DUE, (hook["_id"],))[0][0]) != before,
    )
    control.delete_message(command["_id"])
    control.post_message("mallory", "extended-replaced", said, message_id=command["_id"])

    replicas.start(1)
    finished(replicas, command)
    assert replicas.rows(AUDITED, (command["_id"],)) == []  # nothing recorded as mallory's
    assert chat.answers_to(command) == []  # mallory is told nothing
    ((after,),) = replicas.rows(DUE, (hook["_id"],))
    assert float(after) == pytest.approx(before + 3600, abs=0.01)  # the extension that was made stays
