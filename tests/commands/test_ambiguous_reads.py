"""Issue 13, item 4: `show Guggy` and `history Guggy` on a name two integrations share answered
"…, so I changed nothing", which reads as if something had been about to change. A read asks which
one is meant, with the candidates; a command that changes things still says it changed nothing."""

from __future__ import annotations

import pytest
from set_harness import Harness


@pytest.mark.parametrize("command", ["show Guggy", "history Guggy", "info Guggy", "log Guggy"])
async def test_a_read_on_a_shared_name_asks_which_one(h: Harness, command: str) -> None:
    reply = await h.say("admin", "general", f"!integration {command}")
    assert reply.outcome == "ambiguous", reply.text
    assert "changed nothing" not in reply.text, reply.text
    assert "which one do you mean?" in reply.text, reply.text
    for label in ("guggy-incoming", "guggy-outgoing"):
        assert h.seeded["integrations"][label]["id"] in reply.text, reply.text


@pytest.mark.parametrize("command", ["disable Guggy", "enable Guggy", "set Guggy emoji=:tada:"])
async def test_a_change_on_a_shared_name_still_says_it_changed_nothing(h: Harness, command: str) -> None:
    reply = await h.say("admin", "general", f"!integration {command}")
    assert reply.outcome == "ambiguous", reply.text
    assert "changed nothing" in reply.text, reply.text
    assert h.writes() == 0
