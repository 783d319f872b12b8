"""`disable all in #room …` / `disable all matching "glob" …`: the arguments, and the name glob."""

from __future__ import annotations

import fnmatch
import re
import time
from datetime import timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_args_properties import reason_words, written_durations

from bot.errors import UsageError
from bot.normalize import name_glob, name_key
from commands.args import is_bulk, parse_bulk_args, parse_bulk_enable, parse_bulk_extend, parse_disable_args
from commands.parser import Token, tokenize


def test_the_room_form_with_everything() -> None:
    parsed = parse_bulk_args(tokenize("all in #alerts outgoing for 30m because paging storm"))
    assert (parsed.room, parsed.glob, parsed.kind) == ("alerts", None, "outgoing")
    assert parsed.duration == timedelta(minutes=30)
    assert parsed.reason == "paging storm"


def test_curly_quotes_from_a_phone_around_the_glob() -> None:
    parsed = parse_bulk_args(tokenize("all matching “jenkins*” for 1 hour — flapping"))
    assert parsed.glob == "jenkins*"
    assert parsed.duration == timedelta(hours=1)
    assert parsed.reason == "flapping"


def test_a_room_without_the_hash_and_a_reason_without_a_keyword() -> None:
    parsed = parse_bulk_args(tokenize("all in alerts noisy since noon"))
    assert parsed.room == "alerts"
    assert parsed.duration is None
    assert parsed.reason == "noisy since noon"


@pytest.mark.parametrize("text", ['"all" in #alerts', "all", "all the things", '"all in #alerts"', "Guggy"])
def test_only_an_unquoted_all_followed_by_in_or_matching_is_bulk(text: str) -> None:
    assert not is_bulk(tokenize(text))
    parse_disable_args(tokenize(text))  # still a single disable


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("all in", "which room"),
        ("all matching", "which names"),
        ("all in #", "name one room"),
        ('all matching ""', "pattern is empty"),
        ("all in #alerts for", "duration"),
        ("all in #alerts for 30m for 1h", "one duration"),
        ("all in #alerts because", "add the reason"),
        ("all in #alerts for 30d", "longest allowed"),
    ],
)
def test_unusable_bulk_arguments_say_why(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_bulk_args(tokenize(text))


# A room name ends in a letter or digit here: punctuation at the very end of a message is a phone's
# autocorrect and dropped (commands/parser.py), so `#ops.` names `ops`.
room_names = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True)
globs = st.from_regex(r"[A-Za-z0-9*? ._-]{1,20}", fullmatch=True).filter(lambda g: g.strip() and '"' not in g)


@given(
    room=room_names,
    hash_sign=st.booleans(),
    kind=st.sampled_from(["", "incoming ", "outgoing ", "out "]),
    duration=st.one_of(st.none(), written_durations()),
    reason=st.one_of(st.none(), reason_words),
    separator=st.sampled_from(["because", "--", "—"]),
)
def test_generated_room_commands_parse_to_what_was_meant(
    room: str,
    hash_sign: bool,
    kind: str,
    duration: tuple[str, timedelta] | None,
    reason: list[str] | None,
    separator: str,
) -> None:
    text = f"all in {'#' if hash_sign else ''}{room} {kind}"
    if duration is not None:
        text += f" for {duration[0]}"
    if reason is not None:
        text += f" {separator} {' '.join(reason)}"
    parsed = parse_bulk_args(tokenize(text))
    assert parsed.room == room
    assert parsed.glob is None
    assert parsed.kind == {"": None, "incoming ": "incoming", "outgoing ": "outgoing", "out ": "outgoing"}[kind]
    assert parsed.duration == (duration[1] if duration else None)
    assert parsed.reason == (" ".join(reason) if reason else None)


@given(glob=globs, curly=st.booleans(), duration=st.one_of(st.none(), written_durations()))
def test_generated_glob_commands_keep_the_glob_as_typed(
    glob: str, curly: bool, duration: tuple[str, timedelta] | None
) -> None:
    opening, closing = ("“", "”") if curly else ('"', '"')
    text = f"all matching {opening}{glob}{closing}"
    if duration is not None:
        text += f" for {duration[0]}"
    parsed = parse_bulk_args(tokenize(text))
    assert parsed.glob == " ".join(glob.split())
    assert parsed.duration == (duration[1] if duration else None)


@given(
    st.lists(st.sampled_from([Token("all"), Token("in"), Token("matching"), Token("for"), Token("#x")]))
    | st.text(max_size=60).map(lambda t: [Token(w) for w in t.split()])
)
def test_any_bulk_arguments_parse_or_are_a_usage_error(tokens: list[Token]) -> None:
    if not is_bulk(tokens):
        return
    try:
        parsed = parse_bulk_args(tokens)
    except UsageError as exc:
        assert exc.problem  # noqa: PT017
    else:
        assert (parsed.room is None) != (parsed.glob is None)


@given(
    st.lists(
        st.sampled_from([Token("all"), Token("in"), Token("matching"), Token("by"), Token("1h"), Token("#x")]),
        max_size=8,
    )
    | st.text(max_size=60).map(lambda t: [Token(w) for w in t.split()])
)
def test_enable_all_and_extend_all_parse_or_are_a_usage_error(tokens: list[Token]) -> None:
    if not is_bulk(tokens):
        return
    for convert in (parse_bulk_enable, parse_bulk_extend):
        try:
            parsed = convert(tokens)
        except UsageError as exc:
            assert exc.problem  # noqa: PT017
        else:
            assert (parsed.room is None) != (parsed.glob is None)


@given(room=room_names, kind=st.sampled_from(["", " incoming", " out"]), by=st.sampled_from(["", " by", " for"]))
@example(room="alerts", kind="", by="")
def test_generated_extend_all_commands_parse_to_what_was_meant(room: str, kind: str, by: str) -> None:
    parsed = parse_bulk_extend(tokenize(f"all in #{room}{kind}{by} 1 hour 30 min"))
    assert parsed.room == room
    assert parsed.kind == {"": None, " incoming": "incoming", " out": "outgoing"}[kind]
    assert parsed.duration == timedelta(minutes=90)
    enabled = parse_bulk_enable(tokenize(f"all in #{room}{kind}"))
    assert (enabled.room, enabled.kind, enabled.duration) == (room, parsed.kind, None)


def test_enable_all_takes_nothing_after_the_selector() -> None:
    with pytest.raises(UsageError, match="unexpected"):
        parse_bulk_enable(tokenize("all in #alerts for 30m"))
    with pytest.raises(UsageError, match="for how long"):
        parse_bulk_extend(tokenize("all in #alerts"))


# --- the glob -----------------------------------------------------------------------------------

ascii_names = st.from_regex(r"[A-Za-z0-9 ._-]{0,20}", fullmatch=True)
ascii_globs = st.from_regex(r"[A-Za-z0-9*? ._-]{0,12}", fullmatch=True)


@given(pattern=ascii_globs, name=ascii_names)
@example(pattern="jenkins*", name="Jenkins builds")
@example(pattern="*", name="")
@example(pattern="a?c", name="abc")
def test_the_glob_agrees_with_fnmatch_case_insensitively(pattern: str, name: str) -> None:
    folded_pattern, folded_name = name_key(pattern), name_key(name)
    # fnmatch's `[` classes are not globs here; these strategies never produce `[`.
    expected = re.fullmatch(fnmatch.translate(folded_pattern), folded_name, re.DOTALL) is not None
    assert name_glob(pattern)(name) == expected


@given(name=st.text(max_size=30))
def test_a_name_matches_itself_and_star(name: str) -> None:
    literal = name.replace("*", "").replace("?", "")
    assert name_glob(literal)(literal)
    assert name_glob("*")(name)


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("jenkins*", "Jenkins builds"),
        ("JENKINS*", "jenkins"),
        ("jenkins*", "Ｊｅｎｋｉｎｓ builds"),  # full-width letters: the same name
        ("jenkins*", "Jen\u200bkins builds"),  # an invisible character inside
        ("*builds", "Jenkins  builds"),  # runs of spaces
        ("Ｊenkins*", "jenkins"),  # a look-alike in the pattern
    ],
)
def test_look_alikes_match_as_names_are_compared(pattern: str, name: str) -> None:
    assert name_glob(pattern)(name)


def test_a_hostile_pattern_does_not_backtrack_for_long() -> None:
    started = time.monotonic()
    assert not name_glob("*a" * 30 + "*b")("a" * 5000)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("command", ["disable", "enable", "extend"])
def test_an_empty_room_names_the_bulk_command(command: str) -> None:
    """Was: `disable all in #` answered with the single `disable` usage (the problem named
    `disable`, not `disable all`)."""
    tail = [Token("1h")] if command == "extend" else []
    parse = {"disable": parse_bulk_args, "enable": parse_bulk_enable, "extend": parse_bulk_extend}[command]
    with pytest.raises(UsageError) as raised:
        parse([Token("all"), Token("in"), Token("#"), *tail])
    assert raised.value.command == f"{command} all"


@pytest.mark.parametrize("second", ["outgoing", "incoming", "webhook-outgoing", "OUTGOING"])
def test_two_kinds_are_refused_not_taken_as_a_reason(second: str) -> None:
    """Was: `disable all in #alerts incoming outgoing` switched off the incoming ones only, with
    the reason "outgoing"."""
    tokens = [Token(w) for w in ("all", "in", "#alerts", "incoming", second)]
    with pytest.raises(UsageError) as raised:
        parse_bulk_args(tokens)
    assert raised.value.command == "disable all"
    assert "one kind" in raised.value.problem
    reason = parse_bulk_args([*tokens[:4], Token("because"), Token(second)])
    assert (reason.kind, reason.reason) == ("incoming", second)
    assert parse_bulk_args([*tokens[:4], Token("in"), Token("a")]).reason == "in a"
