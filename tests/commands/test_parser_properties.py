"""Properties of the parser over arbitrary input: it never fails in a way the dispatcher cannot answer."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TypeVar

from hypothesis import assume, example, given
from hypothesis import strategies as st

from bot.errors import UsageError
from commands.parser import TRAILING_PUNCTUATION, Invocation, extract_invocation, normalize, tokenize

BOT = "integrations-bot"
T = TypeVar("T")


def attempt(call: Callable[[], T]) -> tuple[T | None, UsageError | None]:
    """The result, or the UsageError; any other exception escapes and fails the test."""
    try:
        return call(), None
    except UsageError as exc:
        return None, exc


# Characters that stress the edge: every kind of quote, dash, space and invisible, plus emoji.
TRICKY = (
    "\"'“”„‟″«»‘’‚‛′‹›—–―‐‑−-=+:,.!?…@#>/\\`*_~"
    "\u00a0\u202f\u2007\u2009\u3000\u200b\u200c\u200d\u2060\ufeff\u202e\u00ad"
    "\t\n\r\x00\x07\x1b\x7f\x85\u2028\u2029"
    "é\u0301👍🏽🚀\ufe0f👨\u200d👩"
)
tricky_text = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8"), max_size=60)
any_text = st.text(max_size=80) | tricky_text

ADDRESSES = ["", "/integration ", "!Integration ", "/integrations: ", "@integrations-bot ", "@integrations-bot, "]
addressing = st.sampled_from([*ADDRESSES, "/integration", "@integrations-bot"])
# Followed by a command word.
command_addressing = st.sampled_from(ADDRESSES)


@given(any_text)
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(any_text)
def test_normalized_text_has_only_plain_single_spaces(text: str) -> None:
    result = normalize(text)
    assert result == result.strip(" ")
    assert "  " not in result
    for char in result:
        assert char == " " or not (char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cc"))
    for gone in "“”‘’—–\u00a0\u200b\ufeff":
        assert gone not in result
    assert unicodedata.is_normalized("NFC", result)


@given(prefix=addressing, body=any_text, direct=st.booleans(), mentions=st.sampled_from([(), (BOT,), ("alice",)]))
@example(prefix="/integration ", body='"', direct=False, mentions=())
@example(prefix="", body="\u200b/integration x", direct=False, mentions=())
def test_extract_invocation_returns_none_an_invocation_or_a_usage_error(
    prefix: str, body: str, direct: bool, mentions: tuple[str, ...]
) -> None:
    text = prefix + body
    result, error = attempt(lambda: extract_invocation(text, bot_username=BOT, is_direct=direct, mentions=mentions))
    if error is not None:
        assert "unbalanced quote" in error.problem
        return
    if result is None:
        return
    assert isinstance(result, Invocation)
    assert result.raw == text
    assert result.command == result.command.lower()
    assert result.command == result.command.strip()
    assert all(token.value or token.quoted for token in result.args)


@given(any_text)
def test_tokenize_returns_tokens_or_usage_error(text: str) -> None:
    tokens, error = attempt(lambda: tokenize(text))
    if error is not None:
        assert '"' in normalize(text)
        assert "unbalanced quote" in error.problem
        return
    assert tokens is not None
    # Without quotes, tokenizing is splitting the normalised text (less trailing punctuation).
    normalized = normalize(text)
    if '"' not in normalized and "'" not in normalized:
        expected = normalized.split(" ") if normalized else []
        if expected:
            last = expected[-1].rstrip(TRAILING_PUNCTUATION)
            expected = expected[:-1] + ([last] if last else [])
        assert [t.value for t in tokens] == expected


@given(any_text)
def test_plain_chat_without_prefix_or_mention_is_never_a_command(body: str) -> None:
    stripped = normalize(body)
    assume(not stripped.lower().startswith(("/integration", "!integration", "@integrations-bot")))
    assume(not body.lstrip().lower().startswith("@integrations-bot"))
    assert extract_invocation(body, bot_username=BOT) is None


# A name a person could give an integration: words of visible characters without double quotes.
name_char = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Cf", "Zs", "Zl", "Zp"), exclude_characters='"“”„‟″«»〝〞＂'
)
names = (
    st.lists(st.text(alphabet=name_char, min_size=1, max_size=12), min_size=1, max_size=4)
    .map(" ".join)
    .map(lambda name: unicodedata.normalize("NFC", name))
)


@given(name=names, prefix=command_addressing, command=st.sampled_from(["enable", "Disable", "show", "SET"]))
@example(name="Noisy hook", prefix="/integration ", command="enable")
@example(name="it's", prefix="", command="show")
@example(name="ends with a dot.", prefix="/integration ", command="show")
def test_a_quoted_name_comes_back_exactly(name: str, prefix: str, command: str) -> None:
    assume(normalize(name) == name)
    text = f'{prefix}{command} "{name}"'
    result = extract_invocation(text, bot_username=BOT, is_direct=True)
    assert result is not None
    assert result.command == command.lower()
    assert [(t.value, t.quoted) for t in result.args] == [(name, True)]


# Commands as typed on a laptop, and the same commands as a phone keyboard mangles them.
ASCII_COMMANDS = [
    'disable "Noisy hook" for 30m because flapping',
    "disable Guggy -- spam",
    "disable Guggy spamming the channel",
    'enable "Noisy hook"',
    "list outgoing disabled alerts",
    'set Guggy channel="#alerts team" alias=bot',
    "set Deploys triggerWords +deploy -build",
    "show incoming Guggy",
    "extend Guggy 1h30m",
]


def _phone(text: str, data: st.DataObject) -> str:
    """Curly quotes, em-dash for `--`, odd spaces, autocapitalised first word, trailing full stop."""
    out: list[str] = []
    opening = True
    for char in text:
        if char == '"':
            out.append(data.draw(st.sampled_from(["“", "„", "«"] if opening else ["”", "‟", "»"])))
            opening = not opening
        elif char == " ":
            out.append(data.draw(st.sampled_from([" ", "\u00a0", "\u202f", "  ", " \u200b"])))
        else:
            out.append(char)
    phone = "".join(out).replace("--", data.draw(st.sampled_from(["—", "–", "--"])))
    phone = phone[0].upper() + phone[1:]
    return phone + data.draw(st.sampled_from(["", ".", "!", "…", " "]))


@given(command=st.sampled_from(ASCII_COMMANDS), prefix=command_addressing, data=st.data())
def test_phone_typing_parses_like_ascii(command: str, prefix: str, data: st.DataObject) -> None:
    ascii_form = extract_invocation(prefix + command, bot_username=BOT, is_direct=True)
    phone_form = extract_invocation(prefix + _phone(command, data), bot_username=BOT, is_direct=True)
    assert ascii_form is not None
    assert phone_form is not None
    assert phone_form.command == ascii_form.command
    assert [(t.value, t.quoted) for t in phone_form.args] == [(t.value, t.quoted) for t in ascii_form.args]
