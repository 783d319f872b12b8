"""Echoed user text never renders as a link or formatting (issue 12 §4), checked with the parser
Rocket.Chat's clients render with (tests/markdown_oracle.py), and still reads the same."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.rocketchat.message_size import DEFAULT_LIMIT, fit
from bot.rocketchat.models import Integration
from bot.text import ZWSP, code, neutralize_mentions, quote_name, safe_markup, safe_text, single_line, verbatim
from commands.show import describe
from tests.bot.test_text import server_mentions
from tests.commands.set_harness import Harness
from tests.commands.test_show_describe import NOW, outgoing_document
from tests.markdown_oracle import MessageParser, formatting

MARKUP = [
    "[", "]", "(", ")", "](", "![", "<", ">", "|", "||", "*", "**", "_", "__", "~", "~~", "`", "```",
    "#", "## ", "- ", "- [ ] ", "1. ", "+", "$", "$$", "\\", "\\(", "\\[", ":", "://", "https://", "http://",
    "www.", ".", "evil.com", "evil.example/login", "a@b.com", "mailto:", "+1234567", "color:#ff0000",
    "<t:1630360800>", "127.0.0.1", "localhost", "http://localhost:3000/x", ":smile:", "> ", "@all", "@", "#ops",
    "\n", "\r", " ", "\t", "x", "ab", "12", "é", "(@all)",
]  # fmt: skip
pieces = st.sampled_from(MARKUP) | st.text(max_size=3)
user_texts = st.lists(pieces, max_size=20).map("".join) | st.text(max_size=40)

# Look-alikes and invisible marks the neutralising may use: reading the echo back through them
# gives the user's text.
READ_BACK = str.maketrans(
    {"ˋ": "`", "∗": "*", "ˍ": "_", "∼": "~", "＄": "$", "∣": "|", "［": "[", "／": "/", "！": "!", ZWSP: None}
)


@pytest.fixture(scope="module")
def parser() -> Iterator[MessageParser]:
    running = MessageParser()
    yield running
    running.close()


def test_the_oracle_sees_what_the_issue_reports(parser: MessageParser) -> None:
    assert "LINK" in formatting(parser.parse("because [the runbook](https://evil.example)"))
    assert "BOLD" in formatting(parser.parse("*urgent*"))


@settings(max_examples=300, deadline=None)  # a round trip to the node parser: timing is the machine's load
@given(user_texts)
@example("[the runbook](https://evil.example)")
@example("<https://evil.example|the runbook>")
@example("see evil.com/login or www.evil.com or http://localhost:3000 or 10.0.0.1")
@example("write to a@b.com or call +15551234567")
@example("*bold* _italic_ ~strike~ `code` ```block```")
@example("> quoted\n# heading\n- item\n1. item\n- [ ] task\n||spoiler||\n$x$ \\(y\\) \\[z\\]")
@example("(@all) color:#ff0000 <t:1630360800>")
@example(" - [")  # a list once single_line takes the space away
@example("\x1f>0")  # a quote once single_line drops the control character
@example("restarted on localhost.")  # the parser links `localhost` before a dot
@example("localhost#www.")  # and before punctuation with a dot later in the word
@example("localhost?x.y")
@example("localhost(.")
@example("localhost!.")
@example("|\x1b||\x1b|")  # a spoiler once single_line drops the control characters between the bars
@example("<t:1630360800>[|www.<t:1630360800>")  # reversed: `<.www|[>`, a link whatever comes after `<`
def test_no_echo_renders_as_a_link_or_formatting(parser: MessageParser, text: str) -> None:
    echo = safe_text(text)
    assert formatting(parser.parse(echo)) == set()
    # ... nor next to other echoes, inside a sentence of the bot's
    sentence = f"Reason: {echo} (by {safe_text(text[::-1])})"
    assert formatting(parser.parse(sentence)) == set()
    # single_line (bullet lists, audit lines) keeps the zero-width spaces that break the syntax
    assert formatting(parser.parse(single_line(echo))) == set()


# Where a host name begins a link: every piece after it, then every piece again, is read (the
# random texts above found `localhost#www.` once in many runs; this finds such a pair every run).
LINK_STARTS = ["localhost", "www.", "127.0.0.1", "evil.com"]


def test_no_echo_of_a_host_followed_by_any_two_pieces_renders(parser: MessageParser) -> None:
    rendered = [
        text
        for text in (start + one + two for start in LINK_STARTS for one in MARKUP for two in MARKUP)
        if formatting(parser.parse(safe_text(text) or "x"))
    ]
    assert rendered == []


@given(user_texts)
def test_an_echo_reads_as_the_user_wrote_it(text: str) -> None:
    echo = safe_text(text)
    assert echo.translate(READ_BACK) == text.translate(READ_BACK)
    assert safe_text(echo) == echo
    assert neutralize_mentions(echo) == echo


def test_values_in_code_spans_are_left_exact_and_do_not_render(parser: MessageParser) -> None:
    value = "https://hooks.example.org/a_b*c~d"
    assert code(value) == f"`{value}`"
    assert code("#ops") == "`#ops`"  # right after the backtick a sigil is no mention (contract §5.4)
    assert formatting(parser.parse(code(value))) == {"INLINE_CODE"}


def test_markup_the_bot_composes_is_kept(parser: MessageParser) -> None:
    composed = f"{quote_name('Guggy')} is not a field name; usage: `set <name> field=value`"
    assert safe_markup(composed) == composed
    assert formatting(parser.parse(safe_markup(composed))) == {"INLINE_CODE"}


# --- values shown exactly (`verbatim`, issue 13 item 7) ---------------------------------------------

VALUE_PARTS = [*MARKUP, "`", "``", "\\", "\\`", "!guggy", "/integration", "@here", " @all", ">@all", "#general"]
values = st.lists(st.sampled_from(VALUE_PARTS) | st.text(max_size=3), max_size=12).map("".join) | st.text(max_size=30)
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def as_shown(value: str) -> str:
    """What `verbatim` promises to keep: everything but line breaks and controls (one space
    each) and bidi controls (dropped)."""
    kept = (char for char in value if char not in _BIDI)
    return "".join(" " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in kept) or '""'


def rendered_text(tree: Any) -> str:
    """The text a reader sees (and copies) in a tree of code spans and plain text."""
    if isinstance(tree, list):
        return "".join(rendered_text(node) for node in tree)
    if tree.get("type") in ("PLAIN_TEXT", "INLINE_CODE", "PARAGRAPH"):
        inner = tree["value"]
        return inner if isinstance(inner, str) else rendered_text(inner)
    raise AssertionError(f"unexpected node {tree}")


# Text before a value in a reply, and how it reads.
BEFORE = {"": "", "alias: ": "alias: ", "channel: `#ops`, ": "channel: #ops, "}


@settings(max_examples=300, deadline=None)  # a round trip to the node parser: timing is the machine's load
@given(values, st.sampled_from(sorted(BEFORE)))
@example("!guggy", "alias: ")
@example("ping @all and #general", "alias: ")
@example("a`b``c", "")
@example("`", "")
@example("x`", "channel: `#ops`, ")
@example(" @all", "")
@example("a>@here", "")
@example("a\\`b", "")
@example("line\n@all", "")
def test_a_verbatim_value_copies_back_exactly_and_pages_nobody(parser: MessageParser, value: str, before: str) -> None:
    shown = verbatim(value)
    alone, twice = before + shown, f"{before}{shown}, {shown}"
    for text in (alone, twice):
        tree = parser.parse(text)
        assert formatting(tree) <= {"INLINE_CODE"}, (text, tree)
        assert server_mentions(text) == []
    assert rendered_text(parser.parse(alone)) == BEFORE[before] + as_shown(value)
    assert rendered_text(parser.parse(twice)) == f"{BEFORE[before]}{as_shown(value)}, {as_shown(value)}"
    assert neutralize_mentions(shown) == shown  # the runtime's last pass over the reply keeps it


def test_verbatim_drops_every_bidi_mark() -> None:
    """Was: the Arabic letter mark (U+061C), a right-to-left mark like U+200F, was kept in the code
    span while U+200E/U+200F were dropped; it reorders what follows it on the reader's screen."""
    for mark in _BIDI:
        assert verbatim(f"a{mark}b") == "`ab`", repr(mark)


def test_verbatim_keeps_what_safe_text_would_change() -> None:
    assert verbatim("!guggy") == "`!guggy`"
    assert verbatim("rocket.cat") == "`rocket.cat`"
    assert verbatim("all_public_channels") == "`all_public_channels`"
    assert verbatim("ping @all") == "`ping ``@all`"
    assert verbatim("a`b") == "`a`\\``b`"


# --- a long answer cut to the server's limit (bot/rocketchat/message_size.py) -------------------------


def test_a_long_shown_value_cut_to_fit_renders_no_link(parser: MessageParser) -> None:
    """Was: a stored value with a backtick, then a markdown link, then enough words that `show`'s
    answer is longer than Message_MaxAllowedSize rendered the link in the bot's answer. `verbatim`
    writes the backtick between code spans as `\\``; cutting the long line, `fit` counted that
    escaped backtick as the start of a code span, so it cut at a space *inside* the next span and
    left that span open: everything before the cut rendered as markdown."""
    alias = "`[Log in again](https://evil.example/login) " + "please " * 800
    answer = describe(Integration.of(outgoing_document(alias=alias)), NOW)
    sent = fit(answer, DEFAULT_LIMIT)
    assert sent != answer  # cut to the limit
    assert formatting(parser.parse(sent)) <= {"INLINE_CODE"}, sent[:300]


@settings(max_examples=200, deadline=None)  # a round trip to the node parser: timing is the machine's load
@given(st.lists(values, min_size=1, max_size=6), st.integers(min_value=40, max_value=400))
@example(["`[x](https://evil.example) a b c d e f g h"], 60)
def test_a_line_of_verbatim_values_cut_to_fit_renders_nothing(
    parser: MessageParser, parts: list[str], limit: int
) -> None:
    line = "• trigger words: " + ", ".join(verbatim(v) for v in parts) + " w" * limit
    sent = fit(f"head\n{line}\ntail", limit)
    assert formatting(parser.parse(sent)) <= {"INLINE_CODE"}, sent


def test_show_renders_no_link_for_an_avatar_or_a_webhook_address(parser: MessageParser) -> None:
    """Was: `show` wrote the avatar's and the outgoing URLs' scheme and host as plain text
    (`avatar: https://login-rocketchat.com/…`), which Rocket.Chat renders as a link in the bot's
    answer; every other value is in a code span, as `set`'s preview shows these two."""
    doc = outgoing_document(avatar="https://login-rocketchat.com/a.png", urls=["https://login-rocketchat.com/h"])
    text = describe(Integration.of(doc), NOW)
    assert formatting(parser.parse(text)) <= {"INLINE_CODE"}, text
    assert "avatar: `https://login-rocketchat.com/…`" in text.splitlines()


def test_show_does_not_crash_on_a_stored_address_with_a_bad_port() -> None:
    """Was: an avatar or URL stored (through the API, which does not check them) with a port that
    is no number, `http://evil.example:x/a.png`, made `show` crash ("Something went wrong") for
    everyone who looked at that integration, and `set` and `history` with it. Such an address is
    shown as `***`, as `failing` shows it: what reads as its host and port may be a user name and
    the start of a password cut short (`https://deploy:s3cr#t@host`)."""
    doc = outgoing_document(avatar="http://evil.example:x/a.png", urls=["https://hooks.example:99999/h"])
    lines = describe(Integration.of(doc), NOW).splitlines()
    assert "avatar: `***`" in lines
    assert "urls: `***`" in lines


# --- echoes next to each other: a reason on one line, a name on a later one --------------------------

# How the bot's answers put echoes and names together: on one line, on the next line of a list,
# after a blank line.
JOINS = [" ", " · here\n• owen disabled ", "\n\n", " (", ") — ", ", ", "\n"]
# How a piece of user text is shown: a reason (`safe_text`), a name (`quote_name`), a value.
SHOWN_AS = {"echo": safe_text, "name": quote_name, "code": code, "verbatim": verbatim}


@settings(max_examples=300, deadline=None)  # a round trip to the node parser: timing is the machine's load
@given(
    st.lists(st.tuples(st.sampled_from(sorted(SHOWN_AS)), user_texts), min_size=2, max_size=4),
    st.lists(st.sampled_from(JOINS), min_size=3, max_size=3),
)
@example([("echo", "see [the runbook"), ("name", "Docs](https://evil.example)")], [" · here\n• owen disabled "])
@example([("echo", "see [the runbook"), ("name", "Docs](https://evil.example)")], ["\n\n"])
@example([("echo", "see [the runbook"), ("code", "](https://evil.example)")], [" "])
@example([("echo", "see <"), ("name", "https://evil.example|x>")], [" "])
def test_echoes_and_names_together_render_nothing(
    parser: MessageParser, pieces: list[tuple[str, str]], joins: list[str]
) -> None:
    """Was: each piece was safe on its own, but a `[` left in a reason opened a link label that a
    `](https://…)` inside a later line's code span closed. Echoes, names and values in any order,
    on one line or across lines, render as plain text and code spans only."""
    shown = [SHOWN_AS[how](text) for how, text in pieces]
    message = shown[0] + "".join(join + part for join, part in zip(joins * 2, shown[1:], strict=False))
    assert formatting(parser.parse(message)) <= {"INLINE_CODE"}, message


# Where a link may begin in one piece and end in another: each piece of user text as a reason,
# then each as (part of) a name in a later line, and the other way round.
LINK_ENDS = ["](https://evil.example)", "](evil.example)", "](http://localhost:3000/x)", "|https://evil.example>"]


def test_no_reason_then_name_of_any_two_pieces_renders_a_link(parser: MessageParser) -> None:
    rendered = []
    for one in MARKUP:
        for end in LINK_ENDS:
            for join in (" · here\n• owen disabled ", "\n\n"):
                reason, name = safe_text(f"see {one}the runbook"), quote_name(f"Docs{end}")
                for message in (reason + join + name, name + join + reason, reason + join + code(f"{one}x{end}")):
                    if formatting(parser.parse(message)) - {"INLINE_CODE"}:
                        rendered.append(message)
    assert rendered == []


async def test_a_reason_and_an_integration_name_cannot_make_history_render_a_link(
    h: Harness, parser: MessageParser
) -> None:
    """Was: owen (own integrations only) names his webhook `Docs](https://evil.example)` and
    disables it twice, the second time "because see [the runbook". Each part was echoed safely
    on its own (the name in a code span, the reason with `](`, `://` and the host's dot broken),
    but the `[` left in the reason opened a link label that Rocket.Chat's parser closed at the
    `](https://…)` inside the next line's code span: everyone who ran `history` saw a link to
    evil.example in the bot's own message."""
    h.with_incident_toolkit()
    made = h.control.create_incoming_integration("Docs](https://evil.example)", channel="#ops", created_by="owen")
    for command in ("disable", "enable", "disable"):
        reason = " because see [the runbook" if command == "disable" else ""
        reply = await h.say("owen", "ops", f"!integration {command} {made['_id']}{reason}")
        assert reply.outcome == "changed", reply.text
    history = await h.say("admin", "ops", "!integration history")
    assert formatting(parser.parse(history.text)) <= {"INLINE_CODE"}, history.text


async def test_a_name_with_a_link_end_copied_from_its_code_span_finds_it(h: Harness, parser: MessageParser) -> None:
    """The zero-width space a name's code span gets inside `](` is copied with the name; typed
    back, the name is still found (commands are read without invisible characters)."""
    made = h.control.create_incoming_integration("Docs](https://evil.example)", channel="#ops", created_by="owen")
    listed = await h.say("admin", "ops", "!integration list Docs")
    shown = quote_name("Docs](https://evil.example)")
    assert shown in listed.text, listed.text
    copied = rendered_text(parser.parse(shown))
    assert copied == f"Docs]{ZWSP}(https://evil.example)"
    for typed in (copied, f'"{copied}"'):
        reply = await h.say("admin", "ops", f"!integration show {typed}")
        assert reply.outcome == "ok", reply.text
        assert made["_id"] in reply.text
