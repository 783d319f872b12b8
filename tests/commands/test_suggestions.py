"""Issue 13, item 3: "did you mean". An unknown integration name was answered with "I can't find
… Try `list`", an unknown command word with the whole list of commands; now each answer names the
closest names the caller can see (never one they cannot see, never one that does not exist), at
most three, in backticks, with the type when two share a name and the ids of look-alikes."""

from __future__ import annotations

import re

import pytest
from set_harness import Harness

SUGGESTED = re.compile(r"Did you mean (.*)\?")


def plain(text: str) -> str:
    """A reply without the zero-width spaces that keep its `#room`s from being mentions."""
    return text.replace("\u200b", "")


def suggestions(text: str) -> str:
    """The "Did you mean …?" part of a reply ("" when there is none)."""
    found = SUGGESTED.search(plain(text))
    return found.group(1) if found else ""


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("Gugy", "`Guggy`"),
        ("Alertmanger", "`Alertmanager`"),
        ('"Jenkin builds"', "`Jenkins builds`"),
        ("JenkinsBuilds", "`Jenkins builds`"),
        ('"deploy  announcr"', "`Deploy announcer`"),
    ],
)
async def test_a_mistyped_name_is_answered_with_the_closest_visible_names(h: Harness, typed: str, meant: str) -> None:
    reply = await h.say("admin", "general", f"!integration show {typed}")
    assert reply.outcome == "not-found", reply.text
    assert meant in suggestions(reply.text), reply.text


async def test_two_suggestions_sharing_a_name_carry_their_type(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration show Gugy")
    said = suggestions(reply.text)
    assert "`Guggy` (incoming)" in said and "`Guggy` (outgoing)" in said, reply.text


async def test_a_mistyped_name_in_a_disable_with_a_reason_is_suggested_too(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration disable Alertmanger spamming the channel")
    assert "`Alertmanager`" in suggestions(reply.text), reply.text
    assert h.writes() == 0


async def test_names_the_caller_cannot_see_are_never_suggested(h: Harness) -> None:
    # owen holds only the two "own" permissions: his list shows what he created, not admin's Guggy.
    reply = await h.say("owen", "ops", "!integration show Gugy")
    assert reply.outcome == "not-found", reply.text
    assert "Guggy" not in reply.text and "Did you mean" not in reply.text, reply.text
    reply = await h.say("owen", "ops", '!integration show "Jenkin builds"')
    assert "`Jenkins builds`" in suggestions(reply.text), reply.text


async def test_nothing_close_means_no_suggestion(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration show Zebra")
    assert reply.outcome == "not-found" and "Did you mean" not in reply.text, reply.text


async def test_at_most_three_suggestions(h: Harness) -> None:
    for letter in "ABCDEF":
        h.control.create_incoming_integration(f"Pager {letter}", channel="#general")
    reply = await h.say("admin", "general", "!integration show Pager")
    assert suggestions(reply.text).count("`Pager ") == 3, reply.text


async def test_a_suggestion_with_a_look_alike_twin_shows_the_ids(h: Harness) -> None:
    real = h.control.create_incoming_integration("Pager", channel="#general")
    fake = h.control.create_incoming_integration("Pa\u200bger", channel="#general", created_by="owen")
    reply = await h.say("admin", "general", "!integration show Pagre")
    said = suggestions(reply.text)
    assert real["_id"] in said and fake["_id"] in said, reply.text


async def test_a_name_of_the_other_type_is_suggested_with_its_type(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration show outgoing Alertmanager")
    assert "`Alertmanager` (incoming)" in suggestions(reply.text), reply.text


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("disabel", "disable"), ("enabel", "enable"), ("hisotry", "history"), ("lsit", "list"), ("shwo", "show")],
)
async def test_a_mistyped_command_word_is_answered_with_the_closest_command(h: Harness, typed: str, meant: str) -> None:
    reply = await h.say("admin", "general", f"!integration {typed} Guggy")
    assert reply.outcome == "unknown", reply.text
    assert suggestions(reply.text) == f"`{meant}`", reply.text


async def test_an_unknown_command_word_far_from_every_command_gets_no_guess(h: Harness) -> None:
    reply = await h.say("admin", "general", "!integration xyzzy")
    assert reply.outcome == "unknown" and "Did you mean" not in reply.text, reply.text
