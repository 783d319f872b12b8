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


async def test_a_refusal_quotes_the_name_in_backticks_like_every_reply(h: Harness) -> None:
    """Was: "You can't change integration 'Quote *probe*'" (Python's quotes, and the name's
    markdown neutralised into look-alikes); names are quoted one way in every reply: a code span."""
    h.control.create_room("quote-probe-room", members=["admin"], owner="admin")
    h.control.create_incoming_integration("Quote *probe*", channel="#quote-probe-room", created_by="owen")
    reply = await h.say("owen", "general", '!integration disable "Quote *probe*"')
    assert reply.outcome == "denied", reply.text
    assert reply.text.startswith("⛔ You can't change `Quote *probe*`: "), reply.text


async def test_an_unbalanced_quote_is_pointed_at_in_backticks(h: Harness) -> None:
    reply = await h.say("admin", "general", '!integration disable "Noisy hook for 1h')
    assert 'unbalanced quote near `"Noisy`' in reply.text, reply.text
