"""Finding the integration a command names (commands/targets.py), and refusing in the command's terms."""

from __future__ import annotations

import pytest
from set_harness import Harness

EVERY = (
    "`manage-incoming-integrations`, `manage-own-incoming-integrations`, "
    "`manage-outgoing-integrations`, `manage-own-outgoing-integrations`"
)


@pytest.mark.parametrize(
    ("command", "action"),
    [
        ("disable Guggy", "disable integrations"),
        ("disable Guggy for 30m because spam", "disable integrations"),
        ("enable Guggy", "enable integrations"),
        ("show Guggy", "look at integrations"),
        ("set Guggy alias=x", "change integrations"),
        ("extend Guggy 1h", "extend timed disables of integrations"),
    ],
)
async def test_a_caller_without_rights_is_refused_in_terms_of_the_command(
    h: Harness, command: str, action: str
) -> None:
    """Was: alice's `disable Guggy` answered "You can't look up integrations" (the lookup inside);
    now the refusal is about what she asked for."""
    before = h.writes()
    reply = await h.say("alice", "general", f"!integration {command}")
    assert reply.outcome == "denied"
    assert reply.text == f"⛔ You can't {action}: you need one of {EVERY}."
    assert h.writes() == before


async def test_a_kind_narrows_the_refusal_to_that_kind_s_permissions(h: Harness) -> None:
    reply = await h.say("alice", "general", "!integration disable incoming Guggy")
    assert reply.text == (
        "⛔ You can't disable incoming integrations: you need `manage-incoming-integrations` or "
        "`manage-own-incoming-integrations`."
    )
