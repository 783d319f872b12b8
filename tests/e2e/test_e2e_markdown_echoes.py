"""Issue 12 §4: a reason echoed by the bot never renders as a link or formatting.

Before: `disable X because [the runbook](https://evil.example)` came back as a clickable link to
evil.example in the answer, in `history` and in `snoozed` (and in the audit room). The answers are
read with Rocket.Chat's own message parser (tests/markdown_oracle.py), the one the clients use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import SHARED_GROUP, Workspace, unique_name

from bot.text import ZWSP
from tests.markdown_oracle import MessageParser, formatting

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]

ROOM = "ops"
REASON = "[the runbook](https://evil.example) *now* _see_ evil.example/login"
# The bot's own markup around the reason: names and commands in code spans.
OWN_MARKUP = {"INLINE_CODE"}


@pytest.fixture(scope="module")
def parser() -> Iterator[MessageParser]:
    running = MessageParser()
    yield running
    running.close()


def assert_plain_reason(parser: MessageParser, text: str) -> None:
    assert formatting(parser.parse(text)) <= OWN_MARKUP, text
    read = text.replace(ZWSP, "").translate(str.maketrans("∗ˍ［", "*_["))
    assert "[the runbook](https://evil.example)" in read, text


def test_a_reason_with_a_link_and_emphasis_is_echoed_as_plain_text(workspace: Workspace, parser: MessageParser) -> None:
    hook = workspace.control.create_incoming_integration(unique_name("Runbook hook"), channel="#general")
    disabled = workspace.chat.command("admin", ROOM, f"!integration disable {hook['_id']} for 30m because {REASON}")
    assert workspace.control.integration(hook["_id"])["enabled"] is False
    assert_plain_reason(parser, disabled["msg"])
    assert_plain_reason(parser, workspace.chat.command("admin", ROOM, f"!integration history {hook['_id']}")["msg"])
    snoozed = workspace.chat.command("admin", ROOM, "!integration snoozed")["msg"]
    line = next(line for line in snoozed.split("\n") if "evil" in line)
    assert formatting(parser.parse(line)) <= OWN_MARKUP, line
    workspace.chat.command("admin", ROOM, f"!integration enable {hook['_id']}")


def test_a_reason_and_a_later_name_in_history_make_no_link(workspace: Workspace, parser: MessageParser) -> None:
    """Was: a webhook named `Docs](https://evil.example)`, disabled "because see [the runbook":
    the `[` of the reason and the `](https://…)` in the next line's code span made a link to
    evil.example in `history`, for everyone who read it."""
    hook = workspace.control.create_incoming_integration(
        unique_name("Docs") + "](https://evil.example)", channel="#general", created_by="owen"
    )
    for command in ("disable", "enable", "disable"):
        reason = " because see [the runbook" if command == "disable" else ""
        workspace.chat.command("owen", ROOM, f"!integration {command} {hook['_id']}{reason}")
    assert workspace.control.integration(hook["_id"])["enabled"] is False
    history = workspace.chat.command("admin", ROOM, f"!integration history {hook['_id']}")["msg"]
    assert "evil.example" in history and "the runbook" in history
    assert formatting(parser.parse(history)) <= OWN_MARKUP, history
    workspace.chat.command("admin", ROOM, f"!integration enable {hook['_id']}")
