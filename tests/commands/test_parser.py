"""Examples: what a responder types on a phone, and what the bot makes of it."""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from bot.errors import UsageError
from commands.parser import Invocation, Token, extract_invocation, normalize, tokenize

BOT = "integrations-bot"


def invoke(text: str, **kwargs: object) -> Invocation | None:
    return extract_invocation(text, bot_username=BOT, **kwargs)  # type: ignore[arg-type]


def words(invocation: Invocation | None) -> tuple[str, list[tuple[str, bool]]]:
    assert invocation is not None
    return invocation.command, [(t.value, t.quoted) for t in invocation.args]


# --- normalize ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("“Noisy hook”", '"Noisy hook"'),
        ("„Noisy hook‟", '"Noisy hook"'),
        ("« Noisy hook »", '" Noisy hook "'),
        ("‘Noisy’ ‚x‛ 5′ 6″", "'Noisy' 'x' 5' 6\""),
        ("Guggy — spam", "Guggy -- spam"),
        ("Guggy – spam", "Guggy -- spam"),
        ("a\u00a0b\u202fc\u2007d\u3000e", "a b c d e"),
        ("in\u200bcoming\u2060\ufeff", "incoming"),
        ("  disable \n\t Guggy  ", "disable Guggy"),
        ("Cafe\u0301", "Café"),
        ("e\u200b\u0301", "é"),
        ("bell\x07 and\x00 null", "bell and null"),
        ("non\u2011breaking \u2212minus", "non-breaking -minus"),
        ("\u202eevil\u202c name", "evil name"),
    ],
)
def test_normalize_folds_phone_punctuation_and_spacing(typed: str, expected: str) -> None:
    assert normalize(typed) == expected


def test_normalize_keeps_emoji_sequences_and_joiners() -> None:
    family = "👨\u200d👩\u200d👧"
    assert normalize(f"alerts {family}") == f"alerts {family}"
    assert normalize("Deploy 🚀\ufe0f") == "Deploy 🚀\ufe0f"


def test_every_unicode_space_separator_becomes_a_plain_space() -> None:
    spaces = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp")]
    assert len(spaces) > 15
    for space in spaces:
        assert normalize(f"a{space}b") == "a b", hex(ord(space))


# --- tokenize -----------------------------------------------------------------------------------


def test_tokenize_keeps_double_quoted_names_whole() -> None:
    assert tokenize('enable "Noisy hook" now') == [
        Token("enable"),
        Token("Noisy hook", quoted=True),
        Token("now"),
    ]


def test_tokenize_single_quotes_group_but_apostrophes_do_not() -> None:
    assert [(t.value, t.quoted) for t in tokenize("show 'Noisy hook'")] == [("show", False), ("Noisy hook", True)]
    assert [t.value for t in tokenize("disable Guggy because it's spamming")] == [
        "disable",
        "Guggy",
        "because",
        "it's",
        "spamming",
    ]
    assert [t.value for t in tokenize("disable Guggy 'cause it broke")] == ["disable", "Guggy", "'cause", "it", "broke"]
    assert [t.value for t in tokenize("pause the users' hooks")] == ["pause", "the", "users'", "hooks"]
    assert [t.value for t in tokenize("reason 'don't do it' x")] == ["reason", "don't do it", "x"]


def test_tokenize_keeps_key_value_tokens_whole() -> None:
    tokens = tokenize('set Guggy channel="#alerts team" alias=bot')
    assert tokens[2] == Token("channel=#alerts team", quoted=True, typed='channel="#alerts team"')
    assert tokens[3] == Token("alias=bot", typed="alias=bot")


def test_tokenize_strips_trailing_autocorrect_punctuation_from_the_last_word_only() -> None:
    assert [t.value for t in tokenize("disable Guggy.")] == ["disable", "Guggy"]
    assert [t.value for t in tokenize("help?!")] == ["help"]
    assert [t.value for t in tokenize("list…")] == ["list"]
    assert [t.value for t in tokenize("disable v1.2 for 30m.")] == ["disable", "v1.2", "for", "30m"]
    assert [t.value for t in tokenize("show Guggy .")] == ["show", "Guggy"]
    assert tokenize("x Guggy.")[-1].typed == "Guggy"


def test_tokenize_keeps_punctuation_inside_quotes() -> None:
    assert tokenize('enable "Alert!"')[-1] == Token("Alert!", quoted=True)
    assert tokenize('enable "Noisy hook".')[-1].value == "Noisy hook"


def test_tokenize_quoted_empty_string_is_a_token() -> None:
    assert tokenize('show ""') == [Token("show"), Token("", quoted=True)]


@pytest.mark.parametrize("text", ['enable "Noisy hook', 'disable Guggy because the 5" screen', 'set a="b c'])
def test_unbalanced_double_quote_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        tokenize(text, command="enable")
    assert "unbalanced quote" in caught.value.problem
    assert caught.value.command == "enable"


@pytest.mark.parametrize(
    "text",
    [
        "set Guggy active=“ token=t0k3n-abcdefgh",
        'set Guggy token="t0k3n-abcdefgh',
        'set Guggy "token=t0k3n-abcdefgh',
        'set Guggy Token "t0k3n-abcdefgh',
    ],
)
def test_an_unbalanced_quote_never_quotes_a_secret_back(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        tokenize(text, command="set")
    assert "t0k3n" not in caught.value.problem
    assert "unbalanced quote" in caught.value.problem


def test_an_unbalanced_quote_quotes_the_word_it_opens() -> None:
    with pytest.raises(UsageError) as caught:
        tokenize('enable "Noisy hook', command="enable")
    assert 'near `"Noisy`' in caught.value.problem  # in a code span, as every reply quotes


# --- extract_invocation: addressing -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "/integration disable Guggy",
        "!integration disable Guggy",
        "/Integration disable Guggy",
        "!INTEGRATION disable Guggy",
        "/integrations disable Guggy",
        "/integration: disable Guggy",
        "  /integration   disable   Guggy  ",
        "@integrations-bot disable Guggy",
        "@integrations-bot: disable Guggy",
        "@integrations-bot, disable Guggy",
        "@integrations-bot:disable Guggy",
        "@Integrations-Bot disable Guggy",
        "@integrations-bot /integration disable Guggy",
        "/integration Disable Guggy.",
    ],
)
def test_addressed_forms_all_mean_the_same(text: str) -> None:
    assert words(invoke(text)) == ("disable", [("Guggy", False)])


def test_via_says_how_the_message_was_addressed() -> None:
    assert invoke("/integration list").via == "prefix"  # type: ignore[union-attr]
    assert invoke("@integrations-bot list").via == "mention"  # type: ignore[union-attr]
    assert invoke("@integrations-bot /integration list").via == "mention"  # type: ignore[union-attr]
    assert invoke("list", is_direct=True).via == "direct"  # type: ignore[union-attr]
    assert invoke("/integration list", is_direct=True).via == "prefix"  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["list", "/integration list", "@integrations-bot list", "/integration"])
def test_an_invocation_remembers_it_came_from_a_dm_with_the_bot_alone(text: str) -> None:
    # Replies suggest a bare `yes` only where a bare word reaches the bot (commands/set.py).
    assert invoke(text, is_direct=True).is_direct is True  # type: ignore[union-attr]
    if text != "list":
        assert invoke(text).is_direct is False  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "disable Guggy",
        "hello everyone",
        "/integrationsfoo disable Guggy",
        "/integration.disable Guggy",
        "/inte disable Guggy",
        "integration disable Guggy",
        "please /integration disable Guggy",
        "ask @integrations-bot to disable Guggy",
        "@integrations-bot.example disable Guggy",
        "@integrations-botx disable Guggy",
        "@alice disable Guggy",
        "> /integration disable Guggy",
        '"unbalanced quote in plain chat',
        "",
    ],
)
def test_plain_chat_is_not_for_the_bot(text: str) -> None:
    assert invoke(text) is None


def test_prefix_only_or_mention_only_asks_for_help() -> None:
    for text in ("/integration", "!integration?", "@integrations-bot", "@integrations-bot:", "/integrations."):
        invocation = invoke(text)
        assert invocation is not None
        assert (invocation.command, invocation.args) == ("", ())


def test_direct_messages_need_no_prefix_and_every_text_is_answered() -> None:
    assert words(invoke("Disable Guggy", is_direct=True)) == ("disable", [("Guggy", False)])
    assert words(invoke("thanks!", is_direct=True)) == ("thanks", [])
    assert words(invoke("integration list", is_direct=True)) == ("list", [])
    assert words(invoke("integrations", is_direct=True)) == ("", [])
    # Nothing typed (e.g. a file upload): nothing to answer.
    assert invoke("   ", is_direct=True) is None


def test_prefixes_are_configurable() -> None:
    prefixes = ("!hooks",)
    assert words(extract_invocation("!Hooks list", prefixes=prefixes, bot_username=BOT)) == ("list", [])
    assert extract_invocation("/integration list", prefixes=prefixes, bot_username=BOT) is None


def test_a_neutralised_mention_is_not_a_mention() -> None:
    # `@\u200bbot` is what the bot's own echo looks like; the server does not see a mention there.
    assert invoke("@\u200bintegrations-bot disable Guggy") is None


def test_server_mention_list_confirms_a_leading_mention() -> None:
    assert invoke("@integrations-bot list", mentions=("integrations-bot",)) is not None
    assert invoke("@integrations-bot list", mentions=("BOTID",), bot_user_id="BOTID") is not None
    assert invoke("@integrations-bot list", mentions=("alice",)) is None


def test_raw_is_the_message_as_received() -> None:
    text = "/integration disable “Noisy hook” — flapping."
    invocation = invoke(text)
    assert invocation is not None
    assert invocation.raw == text
    assert words(invocation) == ("disable", [("Noisy hook", True), ("--", False), ("flapping", False)])


def test_unbalanced_quote_addressed_to_the_bot_names_the_command() -> None:
    with pytest.raises(UsageError) as caught:
        invoke('/integration disable "Noisy hook')
    assert caught.value.command == "disable"
    assert "unbalanced quote" in str(caught.value)


def test_invocation_and_token_are_frozen() -> None:
    invocation = invoke("/integration list")
    with pytest.raises(AttributeError):
        invocation.command = "x"  # type: ignore[misc, union-attr]
    with pytest.raises(AttributeError):
        Token("x").value = "y"  # type: ignore[misc]


def test_token_keyword_check_ignores_case_but_not_quotes() -> None:
    assert Token("For").is_word("for")
    assert not Token("for", quoted=True).is_word("for")


def _lines_run(call: Callable[[], Any]) -> int:
    """How many lines of Python `call` runs: a measure of the work done that does not depend on
    the machine's speed (no timing)."""
    count = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


def test_a_message_of_quotes_after_equals_signs_is_parsed_in_linear_work() -> None:
    """`!integration list '='='=…` (Rocket.Chat's default 5000 characters): every `'` after a `=`
    searched the rest of the message for its closing quote, so parsing took quadratic work on the
    bot's event loop (about half a second per message here, before any rights check: anyone can
    send it, over and over; minutes with a larger Message_MaxAllowedSize). Parsing must cost about
    the same per character whatever the characters are."""

    def parse(text: str) -> Callable[[], Any]:
        return lambda: extract_invocation(text, bot_username="integrations-bot")

    plain = _lines_run(parse("!integration list " + "ab" * 2400))
    hostile = _lines_run(parse("!integration list " + "'=" * 2400))
    assert hostile < 4 * plain, (plain, hostile)
