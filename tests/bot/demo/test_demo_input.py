"""What a line typed into the demo chat does: chat text goes out as typed, `:` lines drive the demo."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.demo.script_lines import (
    FLOOD_DEFAULT,
    FLOOD_MAX,
    META_COMMANDS,
    Flood,
    Invalid,
    Quit,
    Send,
    Show,
    Skip,
    SwitchRoom,
    SwitchUser,
    Thread,
    help_lines,
    parse_line,
)


@pytest.mark.parametrize(
    "line",
    ["/integration disable Guggy", "!integration list", "@integrations-bot help", "help", "show 'Jenkins builds'"],
)
def test_chat_lines_are_sent_exactly_as_typed(line: str) -> None:
    assert parse_line(line + "\n") == Send(line)


@given(st.text(min_size=1).filter(lambda t: t.strip() and not t.strip().startswith(":") and "\n" not in t))
def test_every_line_not_starting_with_a_colon_is_sent_and_waits_for_an_answer(text: str) -> None:
    assert parse_line(text) == Send(text.strip(), expect_answer=True)


def test_a_double_colon_sends_a_line_that_starts_with_one() -> None:
    assert parse_line("::-) hello") == Send(":-) hello")


@pytest.mark.parametrize(
    ("line", "action"),
    [
        (":user admin", SwitchUser("admin")),
        (":user @owen", SwitchUser("owen")),
        (":u alice", SwitchUser("alice")),
        (":room general", SwitchRoom("general")),
        (":room #ops", SwitchRoom("ops")),
        (":dm", SwitchRoom(None)),
        (":thread", Thread(True)),
        (":thread on", Thread(True)),
        (":thread off", Thread(False)),
        (":say hello all", Send("hello all", expect_answer=False)),
        (":users", Show("users")),
        (":rooms", Show("rooms")),
        (":integrations", Show("integrations")),
        (":help", Show("help")),
        (":quit", Quit()),
        (":q", Quit()),
        ("  :ROOM general  ", SwitchRoom("general")),
        ("", Skip()),
        ("   ", Skip()),
    ],
)
def test_meta_commands(line: str, action: object) -> None:
    assert parse_line(line) == action


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (":user", "needs a name"),
        (":room", "needs a name"),
        (":thread sideways", "off"),
        (":say", "needs the text"),
        (":users admin", "takes no argument"),
        (":frobnicate", ":help"),
    ],
)
def test_unusable_meta_commands_say_what_to_type(line: str, words: str) -> None:
    action = parse_line(line)
    assert isinstance(action, Invalid)
    assert words in action.problem


def test_comments_are_skipped_only_in_scripts() -> None:
    assert parse_line("# setup", script=True) == Skip()
    assert parse_line("# not a comment in a chat") == Send("# not a comment in a chat")


def test_help_names_every_meta_command() -> None:
    text = "\n".join(help_lines())
    for name in META_COMMANDS:
        assert f":{name}" in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (":flood Grafana", Flood("Grafana", FLOOD_DEFAULT)),
        (":flood Grafana 5", Flood("Grafana", 5)),
        (":flood Jenkins builds 3", Flood("Jenkins builds", 3)),
        (':flood "Jenkins builds"', Flood("Jenkins builds", FLOOD_DEFAULT)),
        (":flood \u201cJenkins builds\u201d 2", Flood("Jenkins builds", 2)),  # a phone's curly quotes
        (":flood 42", Flood("42", FLOOD_DEFAULT)),  # a name that is a number (or an id) stays a name
    ],
)
def test_flood_takes_a_name_with_spaces_and_an_optional_count(line: str, expected: Flood) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", [":flood", f":flood Grafana {FLOOD_MAX + 1}", ":flood Grafana 0", ':flood "" 3'])
def test_flood_without_a_name_or_with_a_count_out_of_range_says_what_to_type(line: str) -> None:
    action = parse_line(line)
    assert isinstance(action, Invalid) and ":flood" in action.problem
