"""Issue 12 §4: replies longer than the server's `Message_MaxAllowedSize` are fitted, not lost.

Before: a `set` of 900 trigger words was previewed and applied, and both answers were refused by
Rocket.Chat (`error-message-size-exceeded`), so the caller saw nothing although the change was
written. Now every message the bot posts is cut to the limit it learned from the server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from e2e_support import SHARED_GROUP, Workspace, running_workspace, unique_name

from sandbox.control import SandboxControl

pytestmark = pytest.mark.e2e

ROOM = "ops"
WORDS = [f"w{n:03d}" for n in range(900)]
MORE_WORDS = re.compile(r"…and (\d+) more words")


def words_left_out(text: str) -> int:
    found = MORE_WORDS.search(text)
    assert found is not None, text
    return int(found.group(1))


def shown_words(text: str) -> int:
    return len(re.findall(r"`w\d{3}`", text))


@pytest.mark.xdist_group(SHARED_GROUP)
def test_a_set_of_900_trigger_words_is_previewed_applied_and_both_answers_arrive(workspace: Workspace) -> None:
    created = workspace.control.create_outgoing_integration(
        unique_name("Many words"),
        channel="#general",
        urls=["https://hooks.example.org/w"],
        trigger_words=["!one"],
        token="many-words-token-33cc44",
    )
    command = f"!integration set {created['_id']} triggerWords={','.join(WORDS)}"
    assert len(command) < 5000  # the caller's own message is within the limit

    preview = workspace.chat.command("admin", ROOM, command)["msg"]
    assert len(preview) <= 5000
    assert preview.startswith("✏️ Change")
    assert shown_words(preview) + words_left_out(preview) == len(WORDS)
    code = re.search(r"confirm ([A-Z0-9]{4})", preview)
    assert code is not None, preview  # the last line, how to apply it, is kept

    applied = workspace.chat.command("admin", ROOM, f"!integration confirm {code.group(1)}")["msg"]
    assert len(applied) <= 5000
    assert applied.startswith("✅ Changed")
    assert shown_words(applied) + words_left_out(applied) == len(WORDS)
    assert workspace.control.integration(created["_id"])["triggerWords"] == WORDS


def test_the_limit_is_learned_from_the_server(tmp_path: Path) -> None:
    def small_messages(control: SandboxControl) -> None:
        control.set_setting("Message_MaxAllowedSize", 300)

    with running_workspace(tmp_path, before_start=small_messages) as ws:
        answer = ws.chat.command("admin", ROOM, "!integration help")["msg"]
    assert len(answer) <= 300
    assert re.search(r"…and \d+ more lines", answer), answer
