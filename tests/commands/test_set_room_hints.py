"""Issue 13, item 3: `set … channel=nowhere` answered "did you mean #nowhere?" although no such
room exists (and named a private room the caller is not in just as readily). A room typed without
its `#` is now suggested only when the caller is in a room of that name, else the closest rooms
the caller is in, else not at all."""

from __future__ import annotations

from set_harness import Harness


def plain(text: str) -> str:
    """A reply without the zero-width spaces that keep its `#room`s from being mentions."""
    return text.replace("\u200b", "")


async def test_a_bare_room_word_is_suggested_as_a_room_only_when_the_caller_is_in_that_room(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=nowhere")
    assert "#nowhere" not in plain(reply.text) and "`nowhere`" in reply.text, reply.text
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=alerts")
    assert "did you mean `#alerts`?" in plain(reply.text), reply.text
    assert h.writes() == 0


async def test_a_bare_room_word_suggests_the_closest_rooms_the_caller_is_in(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=alert")
    assert "did you mean `#alerts`?" in plain(reply.text), reply.text
    reply = await h.say("admin", "general", "!integration set outgoing Guggy targetRoom=genral")
    assert "did you mean `#general`?" in plain(reply.text), reply.text


async def test_a_room_the_caller_is_not_in_is_never_suggested(h: Harness) -> None:
    # owen is not in the private #platform-team; he must not even learn that it exists.
    reply = await h.say("owen", "ops", '!integration set "Jenkins builds" channel=platform-team')
    assert reply.outcome == "input" and "#platform-team" not in plain(reply.text), reply.text


async def test_a_room_that_does_not_exist_is_answered_with_the_closest_rooms_the_caller_is_in(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=#alert")
    assert "there is no room `#alert`" in plain(reply.text), reply.text
    assert "did you mean `#alerts`?" in plain(reply.text), reply.text
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=#nowhere")
    assert "did you mean" not in reply.text, reply.text
    reply = await h.say("owen", "ops", '!integration set "Jenkins builds" channel=#platform-tem')
    assert "there is no room" in reply.text and "platform-team" not in reply.text, reply.text
    assert h.writes() == 0


async def test_a_private_group_is_suggested_only_inside_it(h: Harness) -> None:
    """Review finding: admin is in the private #platform-team, but a hint posted in #general is
    read by everyone there, who need not be: a private group's name is suggested only inside it."""
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=#platform-tem")
    assert "there is no room" in reply.text and "platform-team" not in plain(reply.text), reply.text
    reply = await h.say("admin", "platform-team", "!integration set outgoing Guggy channel=#platform-tem")
    assert "did you mean `#platform-team`?" in plain(reply.text), reply.text
    reply = await h.say("admin", "general", "!integration set outgoing Guggy channel=#genral")
    assert "did you mean `#general`?" in plain(reply.text), reply.text  # a public channel: anyone may read it
    assert h.writes() == 0
