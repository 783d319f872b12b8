"""Properties of the converters: generated commands parse to what was meant; anything else is a UsageError."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from bot.errors import UsageError
from commands.args import (
    DEFAULT_MAX_DURATION,
    parse_assignments,
    parse_disable_args,
    parse_duration,
    parse_extend_args,
    parse_list_filters,
    parse_minutes,
    parse_set_args,
    parse_target,
)
from commands.parser import Token, normalize, tokenize

T = TypeVar("T")


def attempt(call: Callable[[], T]) -> tuple[T | None, UsageError | None]:
    """The result, or the UsageError; any other exception escapes and fails the test."""
    try:
        return call(), None
    except UsageError as exc:
        return None, exc


def _tokens_or_empty(text: str) -> list[Token]:
    tokens, _ = attempt(lambda: tokenize(text))
    return tokens or []


UNIT_SPELLINGS = {
    "d": ["d", "day", "days", " d", " days"],
    "h": ["h", "hr", "hrs", "hour", "hours", " h", " hours", "H"],
    "m": ["m", "min", "mins", "minute", "minutes", " min", " minutes", "M"],
    "s": ["s", "sec", "secs", "second", "seconds", " s", " seconds"],
}
UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


@st.composite
def written_durations(draw: st.DrawFn) -> tuple[str, timedelta]:
    """A duration as a person might write it (`1h30m`, `2 hours, 15 min`, `1 d and 3 hours`), with its value."""
    amounts = {
        "d": draw(st.integers(0, 7)),
        "h": draw(st.integers(0, 30)),
        "m": draw(st.integers(0, 120)),
        "s": draw(st.integers(0, 200)),
    }
    used = [unit for unit, amount in amounts.items() if amount]
    assume(used)
    separator = draw(st.sampled_from(["", " ", ", ", " and ", " + "]))
    parts = [f"{amounts[unit]}{draw(st.sampled_from(UNIT_SPELLINGS[unit]))}" for unit in used]
    total = timedelta(seconds=sum(amounts[unit] * UNIT_SECONDS[unit] for unit in used))
    assume(total <= DEFAULT_MAX_DURATION)
    if separator == "" and any(part[-1].isdigit() or " " in part for part in parts):
        separator = " "
    return separator.join(parts), total


@given(written_durations())
def test_written_durations_parse_to_their_value(written: tuple[str, timedelta]) -> None:
    text, expected = written
    assert parse_duration(text) == expected


@given(st.integers(1, 7 * 24 * 10).map(lambda tenths: tenths / 10))
def test_decimal_hours(hours: float) -> None:
    text = f"{hours:g}h"
    assert parse_duration(text) == timedelta(hours=round(hours * 10) / 10)


@given(st.text(max_size=40) | st.from_regex(r"[0-9a-z., +-]{0,20}", fullmatch=True))
@example("9" * 5000 + "d")
@example("1." + "0" * 5000 + "1h")
@example("1h" * 2000)
def test_any_text_is_a_duration_in_range_or_a_usage_error(text: str) -> None:
    value, error = attempt(lambda: parse_duration(text))
    if error is None:
        assert value is not None
        assert timedelta(seconds=1) <= value <= DEFAULT_MAX_DURATION
    else:
        assert error.command == "disable"
        assert error.problem


@given(st.integers(min_value=DEFAULT_MAX_DURATION // timedelta(minutes=1) + 1, max_value=10**15))
def test_anything_beyond_the_maximum_says_the_maximum(minutes: int) -> None:
    with pytest.raises(UsageError, match="7 d"):
        parse_duration(f"{minutes}m")


# Names a person could give an integration, typed inside double quotes.
name_char = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Cf", "Zs", "Zl", "Zp"), exclude_characters='"“”„‟″«»〝〞＂'
)
names = (
    st.lists(st.text(alphabet=name_char, min_size=1, max_size=10), min_size=1, max_size=4)
    .map(" ".join)
    .map(lambda name: unicodedata.normalize("NFC", name))
    .filter(lambda name: normalize(name) == name)
)
reason_words = st.lists(st.from_regex(r"[A-Za-z][a-z']{0,8}", fullmatch=True), min_size=1, max_size=5)


@given(
    name=names,
    duration=st.one_of(st.none(), written_durations()),
    reason=st.one_of(st.none(), reason_words),
    separator=st.sampled_from(["because", "--", "—", "Because"]),
    kind=st.sampled_from(["", "incoming ", "outgoing ", "out "]),
)
def test_generated_disable_commands_parse_to_what_was_meant(
    name: str,
    duration: tuple[str, timedelta] | None,
    reason: list[str] | None,
    separator: str,
    kind: str,
) -> None:
    text = f'{kind}"{name}"'
    if duration is not None:
        text += f" for {duration[0]}"
    if reason is not None:
        text += f" {separator} {' '.join(reason)}"
    parsed = parse_disable_args(tokenize(text))
    assert parsed.target.query == name
    assert parsed.target.kind == {"": None, "incoming ": "incoming", "outgoing ": "outgoing", "out ": "outgoing"}[kind]
    assert parsed.duration == (duration[1] if duration else None)
    assert parsed.reason == (" ".join(reason) if reason else None)


field_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
values = st.text(alphabet=name_char, min_size=1, max_size=15).filter(lambda value: normalize(value) == value)


@given(field=field_names, value=values, op=st.sampled_from(["", "+", "-"]))
def test_quoted_assignment_values_round_trip(field: str, value: str, op: str) -> None:
    (assignment,) = parse_assignments(tokenize(f'{field}={op}"{value}"'))
    assert assignment.field == field.lower()
    assert assignment.raw_field == field
    assert assignment.value == value
    assert assignment.op == {"": "set", "+": "add", "-": "remove"}[op]


tokens = st.lists(
    st.builds(Token, st.text(max_size=12), st.booleans()) | st.sampled_from([Token("for"), Token("--"), Token("=")]),
    max_size=8,
)
CONVERTERS: list[Callable[[list[Token]], Any]] = [
    lambda t: parse_target(t, command="show", stop_words={"for", "--"}),
    parse_list_filters,
    parse_disable_args,
    parse_extend_args,
    parse_set_args,
    parse_assignments,
    parse_minutes,
]


@given(st.sampled_from(CONVERTERS), tokens | st.text(max_size=60).map(_tokens_or_empty))
def test_converters_return_or_raise_usage_error_only(convert: Callable[[list[Token]], Any], args: list[Token]) -> None:
    _, error = attempt(lambda: convert(args))
    assert error is None or error.problem
