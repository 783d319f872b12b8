"""Replies built from user text never page anyone, never read as commands, and stay readable."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.text import (
    ZWSP,
    ago,
    bold,
    bullet_list,
    code,
    human_duration,
    human_until,
    neutralize_command,
    neutralize_mentions,
    plural,
    quote_name,
    safe_text,
    single_line,
    truncate,
)
from commands.parser import extract_invocation
from sandbox.store import Store

# Rocket.Chat's mention pattern (contract §5.4), re-implemented: start of line (multiline), or
# whitespace, or `>` right before `@`/`#`, then the default name class. "Whitespace" is the union
# of JavaScript's `\s` (the server's engine) and Python's.
JS_WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
SERVER_MENTION = re.compile(rf"(?:^|(?<=[\s{JS_WHITESPACE}>]))[@#][0-9a-zA-Z\-_.]+", re.MULTILINE)


def server_mentions(text: str) -> list[str]:
    # JavaScript's multiline `^` also starts a line after \r, U+2028 and U+2029 (covered by \s).
    return SERVER_MENTION.findall(text)


MENTION_PARTS = ["@all", "@here", "@alice", "#general", "@", "#", ">", " ", "\n", "\t", "\r", "\u00a0", "\u3000"]
ODD_PARTS = [
    "`",
    "```",
    "(",
    '"',
    "a",
    "x@y",
    "@alice@other.org",
    "@all:",
    "\u200b",
    "\u2028",
    "\x1c",
    "\u180e",
    "\ufeff",
]
mention_parts = st.sampled_from([*MENTION_PARTS, *ODD_PARTS])
texts = st.text() | st.lists(mention_parts | st.text(max_size=3), max_size=25).map("".join)


def test_the_test_pattern_finds_what_the_contract_lists() -> None:
    # Contract §5.4's verified results, so the property below tests against the right thing.
    assert server_mentions("`@all`") == []
    assert server_mentions("` @all`") == ["@all"]
    assert server_mentions("```\n@all\n```") == ["@all"]
    assert server_mentions("```@all```") == []
    assert server_mentions('(@all) "@all" a@b') == []
    assert server_mentions("> @all") == ["@all"]
    assert server_mentions("\t@here") == ["@here"]
    assert server_mentions("@all:") == ["@all"]
    assert server_mentions("[@alice](https://x)") == []


@given(texts)
@example("@all")
@example("```\n@all\n```")
@example("> @here and #general")
@example("@@all")
@example("\ufeff@all")
def test_neutralised_text_has_no_server_mention(text: str) -> None:
    assert server_mentions(neutralize_mentions(text)) == []


@given(texts)
def test_the_sandbox_server_extracts_no_mention_either(text: str) -> None:
    store = Store()
    store.create_user("alice")
    store.create_room("general")
    assert store._extract_mentions(neutralize_mentions(text)) == ([], [])


def test_the_sandbox_does_find_the_unneutralised_mentions() -> None:
    store = Store()
    store.create_user("alice")
    store.create_room("general")
    mentions, channels = store._extract_mentions("@alice @all #general")
    assert {m["username"] for m in mentions} == {"alice", "all"}
    assert [c["name"] for c in channels] == ["general"]


@given(texts)
def test_neutralising_is_idempotent_and_only_adds_zero_width_spaces(text: str) -> None:
    once = neutralize_mentions(text)
    assert neutralize_mentions(once) == once
    assert once.replace(ZWSP, "") == text.replace(ZWSP, "")


def test_neutralising_leaves_harmless_sigils_alone() -> None:
    assert neutralize_mentions("mail a@b.org, C# and x#1") == "mail a@b.org, C# and x#1"
    assert neutralize_mentions("hi @all") == f"hi @{ZWSP}all"


@given(texts)
@example("/integration disable Guggy")
@example("\u200b!integration disable Guggy")
@example("@integrations-bot disable Guggy")
@example(" \ufeff@integrations-bot: disable Guggy")
def test_an_echo_never_reads_as_a_command_to_the_bot(text: str) -> None:
    echo = safe_text(text)
    assert extract_invocation(echo, bot_username="integrations-bot") is None
    assert server_mentions(echo) == []


def test_neutralize_command_swaps_only_a_leading_sigil() -> None:
    assert neutralize_command("/integration x") == "／integration x"
    assert neutralize_command("  !integration x") == "  ！integration x"
    assert neutralize_command("say /integration x") == "say /integration x"
    assert neutralize_command("") == ""


# --- inline rendering ---------------------------------------------------------------------------


def test_quote_name_is_one_line_code_safe_and_mention_safe() -> None:
    assert quote_name("Guggy") == "`Guggy`"
    rendered = quote_name("a `tick` and @all\nsecond line")
    assert rendered.startswith("`") and rendered.endswith("`")
    assert rendered.count("`") == 2
    assert "\n" not in rendered
    assert server_mentions(rendered) == []
    assert rendered.replace(ZWSP, "") == "`a ˋtickˋ and @all second line`"


def test_quote_name_truncates_long_names() -> None:
    rendered = quote_name("x" * 500)
    assert len(rendered) == 62
    assert rendered.endswith("…`")
    assert quote_name("x" * 10, limit=5) == "`xxxx…`"


def test_quote_name_of_an_empty_name_is_visible() -> None:
    assert quote_name("") == '""'
    assert quote_name(" \n ") == '""'


def test_quote_name_drops_bidi_overrides_that_would_reorder_the_reply() -> None:
    assert quote_name("evil\u202eeman") == "`evileman`"


@given(st.text())
def test_inline_helpers_are_single_line_and_mention_safe(text: str) -> None:
    for rendered in (quote_name(text), code(text), bold(text)):
        assert "\n" not in rendered and "\r" not in rendered
        assert server_mentions(rendered) == []
    assert code(text).count("`") in (0, 2)
    assert len(quote_name(text)) <= 62


def test_code_bold_and_lists() -> None:
    assert code("/integration list") == "`/integration list`"
    assert bold("Disabled") == "*Disabled*"
    assert bold("a*b") == "*a∗b*"
    assert bold("") == ""
    assert bullet_list(["one", "two @all"]) == f"• one\n• two @{ZWSP}all"
    assert bullet_list([f"item {n}" for n in range(5)], limit=2) == "• item 0\n• item 1\n• … and 3 more"
    assert bullet_list([]) == ""
    assert bullet_list(["a\nb"]) == "• a b"


def test_single_line_and_truncate() -> None:
    assert single_line(" a\r\n b\tc \u2028 d ") == "a b c d"
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("ab  cdef", 4) == "ab…"
    # Never separate an accent or a joined emoji from its base.
    assert truncate("abe\u0301xyz", 4) == "ab…"
    assert truncate("a👨\u200d👩xyz", 4) == "a…"
    with pytest.raises(ValueError, match="limit"):
        truncate("x", 0)


@given(st.text(), st.integers(min_value=1, max_value=50))
def test_truncate_never_exceeds_the_limit(text: str, limit: int) -> None:
    result = truncate(text, limit)
    assert len(result) <= limit
    assert result == text or result.endswith("…")


@pytest.mark.parametrize(
    ("count", "word", "expected"),
    [(1, "integration", "1 integration"), (0, "integration", "0 integrations"), (2, "entry", "2 entries"),
     (3, "day", "3 days"), (2, "match", "2 matches"), (2, "status", "2 statuses")],
)  # fmt: skip
def test_plural(count: int, word: str, expected: str) -> None:
    assert plural(count, word) == expected


def test_plural_with_irregular_form() -> None:
    assert plural(2, "person", "people") == "2 people"
    assert plural(1, "person", "people") == "1 person"


# --- times --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "0 s"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(seconds=90), "1 min 30 s"),
        (timedelta(minutes=30), "30 min"),
        (timedelta(minutes=29, seconds=59, milliseconds=600), "30 min"),
        (timedelta(hours=1, minutes=30), "1 h 30 min"),
        (timedelta(hours=1, minutes=30, seconds=20), "1 h 30 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(hours=23, minutes=59, seconds=40), "1 d"),
        (timedelta(days=2), "2 d"),
        (timedelta(days=2, hours=3), "2 d 3 h"),
        (timedelta(days=7), "7 d"),
        (timedelta(minutes=-5), "-5 min"),
    ],
)
def test_human_duration(delta: timedelta, expected: str) -> None:
    assert human_duration(delta) == expected


NOW = datetime(2025, 6, 3, 14, 5, 10, tzinfo=UTC)


def test_human_until_today_tomorrow_and_next_year() -> None:
    assert human_until(NOW + timedelta(minutes=30), NOW) == "until 14:35 UTC, in 30 min"
    assert human_until(NOW + timedelta(hours=12), NOW) == "until 4 Jun 02:05 UTC, in 12 h"
    assert human_until(datetime(2026, 1, 2, 9, 0, tzinfo=UTC), NOW).startswith("until 2 Jan 2026 09:00 UTC, in ")
    assert human_until(NOW - timedelta(minutes=5), NOW) == "until 14:00 UTC, 5 min ago"
    assert human_until(NOW, NOW) == "until 14:05 UTC, now"


def test_human_until_shows_utc_whatever_zone_it_is_given() -> None:
    berlin = timezone(timedelta(hours=2))
    assert human_until((NOW + timedelta(minutes=30)).astimezone(berlin), NOW) == "until 14:35 UTC, in 30 min"
    assert human_until(datetime(2025, 6, 3, 14, 35), NOW) == "until 14:35 UTC, in 29 min 50 s"  # naive = UTC


def test_ago() -> None:
    assert ago(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert ago(NOW - timedelta(days=3, hours=1), NOW) == "3 d 1 h ago"
    assert ago(NOW, NOW) == "just now"
    assert ago(NOW + timedelta(minutes=5), NOW) == "in 5 min"


@given(st.integers(min_value=0, max_value=10 * 86_400))
def test_human_duration_is_the_truth_rounded_to_the_unit_below_the_largest(seconds: int) -> None:
    order = ["d", "h", "min", "s"]
    units = {"d": 86_400, "h": 3_600, "min": 60, "s": 1}
    parts = human_duration(timedelta(seconds=seconds)).split(" ")
    assert len(parts) in (2, 4)
    shown = sum(int(n) * units[u] for n, u in zip(parts[::2], parts[1::2], strict=True))
    largest = order.index(parts[1])
    below = units[order[largest + 1]] if largest + 1 < len(order) else 0
    assert abs(shown - seconds) <= below // 2
    if len(parts) == 4:
        assert order.index(parts[3]) == largest + 1
