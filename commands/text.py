"""Safe text back into chat: mention-proof echoes, small markdown helpers, human times.

Why mention-proofing is done here and not with markdown: Rocket.Chat extracts mentions with a
regex over the raw message text (contract §5.4). `@all`, `@here`, `@user` or `#channel` at the
start of a line, after whitespace or after `>` is a mention — inside code spans and fenced blocks
too. So every `@`/`#` in such a position gets a zero-width space (U+200B) right after it: the
character after the sigil is then outside the name class and the pattern cannot match, while the
text still reads the same. A sigil already followed by U+200B is left alone, so neutralising is
idempotent and safe to apply at several layers.

The helpers below that render user-supplied text (`quote_name`, `code`, `bold`, `bullet_list`,
`safe_text`) all neutralise mentions themselves; composing them stays safe.

An echo should also never read as a command: a leading `/` (a slash command to the clients) or
`!` (our `!integration` prefix) becomes its full-width twin, which looks alike but is neither.
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
    "neutralize_mentions",
    "plural",
    "quote_name",
    "safe_text",
    "single_line",
    "truncate",
]

ZWSP = "\u200b"
_SIGILS = "@#"
_COMMAND_STARTS = {"/": "／", "!": "！"}  # the look-alikes are the point
# Backticks end a code span; a modifier grave accent looks the same and does not.
_BACKTICK_LOOKALIKE = "ˋ"
_ASTERISK_LOOKALIKE = "∗"
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


def safe_text(text: str) -> str:
    """User text echoed as is (a reason, a value): mention-proof and never read as a command."""
    return neutralize_command(neutralize_mentions(text))


def single_line(text: str) -> str:
    """`text` on one line: line breaks, tabs and other spacing become single spaces; controls and
    invisible formatting characters (bidi overrides could reorder the reply around it) are dropped."""
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zs", "Zl", "Zp"):
            if out and out[-1] != " ":
                out.append(" ")
        elif category == "Cc" or (category == "Cf" and char not in "\u200c\u200d"):
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


def _inline(text: str, limit: int | None) -> str:
    flat = single_line(text).replace("`", _BACKTICK_LOOKALIKE)
    if limit is not None:
        flat = truncate(flat, limit)
    return neutralize_mentions(flat)


def quote_name(name: str, *, limit: int = 60) -> str:
    """A user-supplied name shown inline: one line, at most `limit` characters, in a code span
    (backticks inside replaced by a look-alike), mention-proof. An empty name shows as `""`."""
    inner = _inline(name, limit)
    return f"`{inner}`" if inner else '""'


def code(text: str) -> str:
    """`text` as an inline code span (one line, backticks inside replaced, mention-proof)."""
    inner = _inline(text, None)
    return f"`{inner}`" if inner else '""'


def bold(text: str) -> str:
    """`text` in bold (Rocket.Chat: `*…*`), one line, asterisks inside replaced, mention-proof."""
    inner = _inline(text, None).replace("*", _ASTERISK_LOOKALIKE)
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
