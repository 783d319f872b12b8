"""What `history`, `snoozed` and `noisy` say about integrations the caller can't see, and the
README saying the same (issue 13 item 8)."""

from __future__ import annotations

import re
from pathlib import Path

from set_harness import Harness

README = Path(__file__).resolve().parents[2] / "README.md"


async def two_timed_disables(h: Harness) -> tuple[str, str]:
    """admin's timed disable of admin's `Guggy` (owen can't see it) and owen's of his own one."""
    h.with_incident_toolkit()
    hidden = h.control.create_incoming_integration("Admin hook", channel="#general", created_by="admin")
    mine = h.control.create_incoming_integration("Owen hook", channel="#general", created_by="owen")
    for user, made in (("admin", hidden), ("owen", mine)):
        reply = await h.say(user, "general", f"!integration disable {made['_id']} for 30m because noisy")
        assert reply.outcome == "changed", reply.text
    return hidden["name"], mine["name"]


async def test_snoozed_leaves_out_what_the_caller_cannot_see(h: Harness) -> None:
    hidden, mine = await two_timed_disables(h)
    reply = await h.say("owen", "general", "!integration snoozed")
    assert reply.text.startswith("1 integration switched off for a while:"), reply.text
    assert mine in reply.text
    assert hidden not in reply.text and "can't see" not in reply.text
    assert hidden in (await h.say("admin", "general", "!integration snoozed")).text


async def test_history_leaves_out_what_the_caller_cannot_see(h: Harness) -> None:
    hidden, mine = await two_timed_disables(h)
    reply = await h.say("owen", "general", "!integration history")
    lines = [line for line in reply.text.splitlines() if line.startswith("• ")]
    assert len(lines) == 1 and mine in lines[0], reply.text
    assert hidden not in reply.text and "can't see" not in reply.text


def test_the_readme_says_what_the_commands_do() -> None:
    """Was: the README promised "an integration you can't see" lines from `snoozed` and `history`
    too, which leave such integrations out (as `list` does)."""
    text = " ".join(README.read_text().split())
    promise = re.search(r"\*\*Same rights as everything else\.\*\*(.*?)- \*\*Audit room", text)
    assert promise is not None
    said = promise.group(1)
    assert "`snoozed` and `history` leave out integrations the caller could not see" in said
    assert "`noisy` counts their messages" in said and '"an integration you can\'t see"' in said
