"""Every message the bot posts fits the server's `Message_MaxAllowedSize` (bot/rocketchat/message_size.py).

A reply longer than the limit is refused by Rocket.Chat (`error-message-size-exceeded`), so the
caller would get no answer at all; fitting keeps the head of the reply, cuts at a line (or, for
one very long line, a word) and says how much was left out.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.rocketchat.message_size import DEFAULT_LIMIT, fit, length, limit_from
from bot.text import ZWSP, code, neutralize_mentions

MORE_LINES = re.compile(r"^…and (\d+) more lines?$")
MORE_WORDS = re.compile(r" …and (\d+) more words?$")

WORDS = st.sampled_from(["a", "word", "`code span`", "`x`,", "@all", f"@{ZWSP}here", f"#{ZWSP}ops", "é", "🎉", "•"])
LINES = st.lists(WORDS, max_size=60).map(" ".join) | st.text(max_size=80).map(lambda t: t.replace("\n", " "))
TEXTS = st.lists(LINES, min_size=1, max_size=40).map("\n".join)
LIMITS = st.integers(min_value=1, max_value=600)


def accounted(text: str, fitted: str) -> tuple[int, int]:
    """(lines of `text` shown whole or in part, lines the marker says were left out)."""
    shown, left_out = 0, 0
    for line in fitted.split("\n"):
        found = MORE_LINES.match(line)
        if found:
            left_out += int(found.group(1))
        else:
            shown += 1
    return shown, left_out


@given(TEXTS, LIMITS)
def test_a_fitted_message_never_exceeds_the_limit(text: str, limit: int) -> None:
    assert length(fit(text, limit)) <= limit


@given(TEXTS, st.integers(min_value=0, max_value=50))
def test_a_message_within_the_limit_is_left_alone(text: str, spare: int) -> None:
    assert fit(text, length(text) + spare) == text


@given(TEXTS, st.integers(min_value=120, max_value=600))
@example("\n".join(f"• line {n}" for n in range(200)), 300)
def test_the_head_is_kept_and_every_line_is_accounted_for(text: str, limit: int) -> None:
    fitted = fit(text, limit)
    if fitted == text:
        return
    lines, out = text.split("\n"), fitted.split("\n")
    shown, left_out = accounted(text, fitted)
    assert shown + left_out == len(lines)
    first = MORE_WORDS.sub("", out[0])
    if not MORE_LINES.match(first):
        assert lines[0].startswith(first)


def spans_closed(line: str) -> bool:
    """Whether every code span opened in `line` is closed, as Rocket.Chat's message parser reads
    backticks: outside a span one after a backslash is a plain backtick (`text.verbatim` writes a
    stored backtick so), inside one a backslash is plain."""
    in_code = False
    for index, char in enumerate(line):
        if char == "`" and (in_code or line[index - 1 : index] != "\\"):
            in_code = not in_code
    return not in_code


@given(TEXTS, st.integers(min_value=60, max_value=600))
@example("head\n" + "a \\` b " + " ".join(["w"] * 200) + "\ntail", 120)
@example("head\n" + "\\``x y` " + " ".join(["w"] * 200) + "\ntail", 120)
def test_no_code_span_or_neutralised_mention_is_cut_in_half(text: str, limit: int) -> None:
    fitted = fit(text, limit)
    for shown in fitted.split("\n"):
        kept = MORE_WORDS.sub("", shown)
        # every shown line is a whole input line or a prefix of one ending before a space outside code
        assert spans_closed(kept) or kept in text.split("\n")
    if neutralize_mentions(text) == text:
        assert neutralize_mentions(fitted) == fitted


def test_one_very_long_line_is_cut_between_words_and_says_how_many_are_left_out() -> None:
    words = ", ".join(code(f"w{n:03d}") for n in range(900))
    text = f"✏️ Change `Jenkins`?\n• triggerWords: (none) → {words}\nTo apply it, reply `!integration confirm K7Q2`."
    fitted = fit(text, 1000)
    assert length(fitted) <= 1000
    head, cut, tail = fitted.split("\n")
    assert head == "✏️ Change `Jenkins`?"
    assert tail == "To apply it, reply `!integration confirm K7Q2`."
    found = MORE_WORDS.search(cut)
    assert found is not None
    kept = cut[: found.start()]
    assert kept.endswith(",") and kept.count("`") % 2 == 0
    assert len(kept.split(" ")) + int(found.group(1)) == len(text.split("\n")[1].split(" "))


def test_length_counts_what_rocket_chat_counts_at_most() -> None:
    # JavaScript's `length` (UTF-16 code units) is the largest of the server's measures.
    assert length("abc") == 3
    assert length("🎉") == 2
    assert length(f"@{ZWSP}all") == 5


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"Message_MaxAllowedSize": 8000}, 8000),
        ({"Message_MaxAllowedSize": "8000"}, DEFAULT_LIMIT),
        ({"Message_MaxAllowedSize": 0}, DEFAULT_LIMIT),
        ({"Message_MaxAllowedSize": True}, DEFAULT_LIMIT),
        ({}, DEFAULT_LIMIT),
    ],
)
def test_the_limit_is_the_public_setting_or_5000(values: dict[str, object], expected: int) -> None:
    assert limit_from(values) == expected
