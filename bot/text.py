"""Safe text back into chat: mention- and markdown-proof echoes, small markdown helpers, human times.

Why mention-proofing is done here and not with markdown: Rocket.Chat extracts mentions with a
regex over the raw message text (contract §5.4). `@all`, `@here`, `@user` or `#channel` at the
start of a line, after whitespace or after `>` is a mention — inside code spans and fenced blocks
too. So every `@`/`#` in such a position gets a zero-width space (U+200B) right after it: the
character after the sigil is then outside the name class and the pattern cannot match, while the
text still reads the same. A sigil already followed by U+200B is left alone, so neutralising is
idempotent and safe to apply at several layers.

Free user text (a reason, a username, a value shown outside a code span) must not render as
anything but text either: the clients draw a message from the tree Rocket.Chat's message parser
makes of it, where `[the runbook](https://evil.example)`, `<url|text>`, a bare `evil.example/login`,
an e-mail address or `+15551234567` become links, and `*`, `_`, `~`, backticks, `>`, `#`, `- `,
`1. `, `||`, `$` or `\\(` (KaTeX) and `<t:…>` become formatting. `neutralize_markdown` breaks each
the way mentions are broken, with a zero-width space where the syntax needs two characters to
touch (`](`, `://`, a dot inside a host name, `<x`, `||`, `+1`, a block marker at the start of a
line, every `@`/`#`), and with a look-alike for the emphasis, code and KaTeX characters, whose
pairs no invisible mark can part (`∗ ˍ ∼ ˋ ＄`), and for `[` (`［`): a `[` outside code spans opens
a link label that any later `](https://…)` of the message closes, even one inside a name's code
span lines below, so an echo never holds one. The echo reads the same; tests/commands/
test_markdown.py checks it against Rocket.Chat's own parser, alone and next to other echoes and
names on the same or later lines. Values the bot shows in code spans (`code`, `quote_name`) are
left alone but for a zero-width space inside `](` (so that no `[` of the bot's own text could pair
with it): nothing renders inside a code span, and they stay copyable (a name typed back is read
without invisible characters, bot/normalize.py).

The helpers below that render user-supplied text (`quote_name`, `code`, `bold`, `bullet_list`,
`safe_text`) all neutralise mentions themselves; composing them stays safe. `safe_markup` is for
a sentence the bot composed (an error with its code spans): mention-proof, its markdown kept.

An echo should also never read as a command: a leading `/` (a slash command to the clients) or
`!` (our `!integration` prefix) becomes its full-width twin, which looks alike but is neither.

A stored value that people copy back into a command (`show`'s `!guggy`, `#general`, `rocket.cat`)
must not be changed by any of that: `verbatim` shows it in code spans, where the parser renders
nothing, and splits the spans where the server's mention pattern could match: a span ends before
every `@`/`#` that follows whitespace or `>`, and the next one starts with it, so a backtick
precedes the sigil (`` `ping ``@all` `` shows `ping @all` and pages nobody). A backtick, which no
code span can hold, goes between spans with a backslash before it, the parser's escape for a
plain backtick. Copied from the rendered message, the value comes back character for character.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

__all__ = [
    "ZWSP",
    "ago",
    "bold",
    "bullet_list",
    "code",
    "human_duration",
    "human_until",
    "neutralize_command",
    "neutralize_markdown",
    "neutralize_mentions",
    "plural",
    "quote_name",
    "safe_markup",
    "safe_text",
    "single_line",
    "truncate",
    "verbatim",
]

ZWSP = "\u200b"
_SIGILS = "@#"
_COMMAND_STARTS = {"/": "／", "!": "！"}  # the look-alikes are the point
# Backticks end a code span; a modifier grave accent looks the same and does not.
_BACKTICK_LOOKALIKE = "ˋ"
_ASTERISK_LOOKALIKE = "∗"
_BRACKET_LOOKALIKE = "［"
# Characters whose pairs make emphasis, code or KaTeX: no invisible mark between them stops the
# parser, a look-alike does.
# `|` too: in `<src|label>` the parser links any src with a dot in it, zero-width spaces or not
# (`<​.​www|[>` is a link), and a lookalike bar is the one way to keep it text.
# `[` too: it opens a link label that any later `](https://…)` in the message closes, even one
# inside a code span lines below (a name echoed exactly) or after a blank line, and no mark next to
# it stops that; without a `[` outside code spans, no echo can make a `[label](url)` link.
_LOOKALIKES = {
    "`": _BACKTICK_LOOKALIKE,
    "*": _ASTERISK_LOOKALIKE,
    "_": "ˍ",
    "~": "∼",
    "$": "＄",
    "|": "∣",
    "[": _BRACKET_LOOKALIKE,
}
# A line starting with one of these may be a quote or a list (ordered, unordered, tasks).
_BLOCK_STARTS = frozenset(">-+0123456789")
_LINE_BREAKS = "\n\r"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _invisible_or_space(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cc", "Cf")


def _starts_mention(previous: str | None) -> bool:
    """Whether a sigil after `previous` could begin a mention for the server.

    Deliberately wider than the server's `^|\\s|>`: any control, format or separator character
    counts too, so a different regex engine's idea of whitespace cannot slip through.
    """
    return previous is None or previous == ">" or _invisible_or_space(previous)


def neutralize_mentions(text: str) -> str:
    """`text` with a zero-width space after every `@`/`#` that could start a mention; idempotent."""
    out: list[str] = []
    previous: str | None = None
    for index, char in enumerate(text):
        out.append(char)
        if char in _SIGILS and _starts_mention(previous) and text[index + 1 : index + 2] != ZWSP:
            out.append(ZWSP)
            previous = ZWSP
        else:
            previous = char
    return "".join(out)


def neutralize_command(text: str) -> str:
    """`text` with a leading `/` or `!` swapped for its full-width look-alike.

    "Leading" looks past spaces and invisible characters, since the parser drops those too.
    """
    for index, char in enumerate(text):
        if _invisible_or_space(char):
            continue
        if char in _COMMAND_STARTS:
            return text[:index] + _COMMAND_STARTS[char] + text[index + 1 :]
        break
    return text


def _dropped_by_single_line(char: str) -> bool:
    """Controls and invisible formatting characters that `single_line` takes away."""
    category = unicodedata.category(char)
    return (category == "Cc" and not char.isspace()) or (category == "Cf" and char not in "\u200b\u200c\u200d")


def _visible_after(text: str, index: int) -> str:
    """The two characters after `text[index]` once `single_line` has dropped what it drops: a
    marker pair split only by a control character (`|` ESC `|`) is a pair on one line."""
    found: list[str] = []
    for position in range(index + 1, len(text)):  # by index: no copy of the rest per character
        char = text[position]
        if not _dropped_by_single_line(char):
            found.append(char)
            if len(found) == 2:
                break
    return "".join(found)


def _breaks_after(char: str, rest: str) -> bool:
    """Whether markdown needs `char` to touch the start of `rest` (a zero-width space goes between)."""
    following = rest[:1]
    if not following or following == ZWSP:
        return False
    if char in _SIGILS or char == "<":  # mentions, colors (`color:#f00`); `<url|text>`, `<t:…>`
        return True
    if char == ".":  # a dot inside a host name: bare links, e-mail addresses, IP addresses
        return not following.isspace()
    if char == ":":
        return rest.startswith("//")
    if char == "]":
        return following == "("
    if char == "|":
        return following == "|"
    if char == "\\":
        return following in "(["
    if char == "+":  # telephone links
        return following.isdigit() or following == "("
    return False


def _after_localhost(char: str) -> bool:
    """Whether `char` right after `localhost` could carry on a link (see `neutralize_markdown`):
    anything but a letter, a digit, a space or the zero-width space that already breaks it."""
    return not (char.isalnum() or char.isspace() or char == ZWSP)


def neutralize_markdown(text: str) -> str:
    """`text` that Rocket.Chat's message parser reads as plain text only (see the module
    docstring); idempotent, and it reads the same."""
    out: list[str] = []
    line_start = True
    for index, char in enumerate(text):
        if line_start and char in _BLOCK_STARTS:
            out.append(ZWSP)
        if _after_localhost(char) and text[max(0, index - 9) : index].lower() == "localhost":
            # The parser links `localhost` when a dot follows it (`localhost.`), or punctuation
            # and a dot later in the word (`localhost#www.`, `localhost?x.`, `localhost(.`).
            out.append(ZWSP)
        out.append(_LOOKALIKES.get(char, char))
        if _breaks_after(char, _visible_after(text, index)):
            out.append(ZWSP)
        # Still the start of a line after spaces and invisible characters (single_line may take
        # them away), but not after a zero-width space: that already keeps a marker off the start.
        line_start = char in _LINE_BREAKS or (line_start and char != ZWSP and _invisible_or_space(char))
    return "".join(out)


def safe_text(text: str) -> str:
    """Free user text echoed (a reason, a username, a value outside a code span): mention-proof,
    never read as a command, never rendered as a link or formatting."""
    return neutralize_command(neutralize_mentions(neutralize_markdown(text)))


def safe_markup(text: str) -> str:
    """A sentence the bot composed, whose user parts are already rendered safely (`code`,
    `quote_name`): mention-proof and never read as a command; its own markdown is kept."""
    return neutralize_command(neutralize_mentions(text))


def single_line(text: str) -> str:
    """`text` on one line: line breaks, tabs and other spacing become single spaces; controls and
    invisible formatting characters (bidi overrides could reorder the reply around it) are dropped,
    but for the joiners and the zero-width space that neutralised text relies on."""
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zs", "Zl", "Zp"):
            if out and out[-1] != " ":
                out.append(" ")
        elif _dropped_by_single_line(char):
            continue
        else:
            out.append(char)
    return "".join(out).strip(" ")


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in `…` when cut; never splits an accent or
    an emoji sequence from its base."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return text
    cut = limit - 1
    while cut > 0 and (
        unicodedata.category(text[cut]).startswith("M")
        or text[cut] in "\u200d\ufe0e\ufe0f"
        or text[cut - 1] == "\u200d"
    ):
        cut -= 1
    return text[:cut].rstrip() + "…"


def _code_span(text: str, limit: int | None) -> str:
    """`text` on one line in a code span, mention-proof as a whole: a sigil right after the opening
    backtick cannot start a mention, so a value such as `#ops` stays exactly as stored."""
    flat = single_line(text).replace("`", _BACKTICK_LOOKALIKE)
    if limit is not None:
        flat = truncate(flat, limit)
    # The parser ends a link label opened before the span at a `](` inside it (see `_LOOKALIKES`):
    # echoes hold no such `[`, and a zero-width space keeps the bot's own text from ever pairing
    # with one. Copied back, the name is still found: typed names are read without it (normalize).
    flat = flat.replace("](", f"]{ZWSP}(")
    return neutralize_mentions(f"`{flat}`") if flat else '""'


_LINE_BREAK_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# Bidi controls would reorder the reply around the value (as in `single_line`).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def verbatim(value: str) -> str:
    """A stored value shown exactly (see the module docstring): code spans split before every
    `@`/`#` that could start a mention, backticks escaped between them. What no inline code can
    hold is not kept: a line break, tab or other control character shows as a space, a bidi
    control is dropped. An empty value shows as `""`."""
    out: list[str] = []
    span: list[str] = []

    def close() -> None:
        if span:
            out.append(f"`{''.join(span)}`")
            span.clear()

    previous: str | None = None
    for typed in value:
        if typed in _BIDI_CONTROLS:
            continue
        char = " " if unicodedata.category(typed) in _LINE_BREAK_CATEGORIES else typed
        if char == "`":
            close()
            out.append("\\`")
        else:
            if char in _SIGILS and previous is not None and _starts_mention(previous):
                close()  # the next span's backtick comes right before the sigil
            span.append(char)
        previous = char
    close()
    return "".join(out) or '""'


def quote_name(name: str, *, limit: int = 60) -> str:
    """A user-supplied name shown inline: one line, at most `limit` characters, in a code span
    (backticks inside replaced by a look-alike), mention-proof. An empty name shows as `""`."""
    return _code_span(name, limit)


def code(text: str) -> str:
    """`text` as an inline code span (one line, backticks inside replaced, mention-proof)."""
    return _code_span(text, None)


def bold(text: str) -> str:
    """`text` in bold (Rocket.Chat: `*…*`), one line, asterisks inside replaced, mention-proof."""
    inner = neutralize_mentions(single_line(text).replace("`", _BACKTICK_LOOKALIKE).replace("*", _ASTERISK_LOOKALIKE))
    return f"*{inner}*" if inner else ""


def bullet_list(items: Iterable[str], *, limit: int | None = None) -> str:
    """One `• item` line per item (each on one line, mention-proof). With `limit`, the rest is
    summarised as `• … and N more`. Items may already contain `code()`/`bold()` markup."""
    lines = [f"• {neutralize_mentions(single_line(item))}" for item in items]
    if limit is not None and len(lines) > limit:
        hidden = len(lines) - limit
        lines = [*lines[:limit], f"• … and {hidden} more"]
    return "\n".join(lines)


def plural(count: int, word: str, plural_form: str | None = None) -> str:
    """`1 integration`, `2 integrations`, `0 entries`; pass `plural_form` for irregular words."""
    if count == 1:
        return f"{count} {word}"
    if plural_form is None:
        if word.endswith(("s", "x", "z", "ch", "sh")):
            plural_form = word + "es"
        elif len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
            plural_form = word[:-1] + "ies"
        else:
            plural_form = word + "s"
    return f"{count} {plural_form}"


# --- times --------------------------------------------------------------------------------------

_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


def _largest_unit(seconds: int) -> int:
    for index, (_, size) in enumerate(_UNITS):
        if seconds >= size:
            return index
    return len(_UNITS) - 1


def human_duration(delta: timedelta) -> str:
    """`30 min`, `1 h 30 min`, `2 d`, `45 s`: the largest unit and the next one, rounded to it."""
    micros = delta // timedelta(microseconds=1)
    if micros < 0:
        return "-" + human_duration(-delta)
    seconds = (micros + 500_000) // 1_000_000
    # Round to the smaller of the two units shown; rounding may carry into a larger unit
    # (23 h 59 min 40 s → 24 h → 1 d), so settle until stable (at most a few rounds).
    for _ in range(len(_UNITS)):
        index = _largest_unit(seconds)
        step = _UNITS[index + 1][1] if index + 1 < len(_UNITS) else 1
        rounded = (seconds + step // 2) // step * step
        if rounded == seconds:
            break
        seconds = rounded
    index = _largest_unit(seconds)
    name, size = _UNITS[index]
    parts = [f"{seconds // size} {name}"]
    if index + 1 < len(_UNITS):
        next_name, next_size = _UNITS[index + 1]
        remainder = seconds % size // next_size
        if remainder:
            parts.append(f"{remainder} {next_name}")
    return " ".join(parts)


def _utc(when: datetime) -> datetime:
    """Aware datetimes converted to UTC; naive ones are taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _relative(delta: timedelta) -> str:
    if abs(delta) < timedelta(seconds=0.5):
        return "now"
    if delta > timedelta(0):
        return f"in {human_duration(delta)}"
    return f"{human_duration(-delta)} ago"


def human_until(when: datetime, now: datetime) -> str:
    """`until 14:35 UTC, in 30 min`; the date is added when `when` is not on `now`'s day (UTC),
    the year when it is not in `now`'s year."""
    end, current = _utc(when), _utc(now)
    clock = f"{end:%H:%M}"
    if end.date() != current.date():
        day = f"{end.day} {_MONTHS[end.month - 1]}"
        if end.year != current.year:
            day += f" {end.year}"
        clock = f"{day} {clock}"
    return f"until {clock} UTC, {_relative(end - current)}"


def ago(when: datetime, now: datetime) -> str:
    """`5 min ago`, `just now`; a future `when` reads `in 5 min`."""
    relative = _relative(_utc(when) - _utc(now))
    return "just now" if relative == "now" else relative
