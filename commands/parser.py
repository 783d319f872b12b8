"""From a chat message to an `Invocation`: is it for the bot, and which words did the caller type?

Theory of operation. Responders type commands on phones, so the edge is liberal (style point 10):

1. `normalize` folds what phone keyboards produce into plain ASCII punctuation: curly quotes become
   straight quotes, em/en dashes become `--` (iOS turns a typed `--` into `—`), every Unicode space
   becomes a plain space, invisible formatting characters disappear, runs of spaces collapse, and the
   text is NFC-composed. It is idempotent, so any layer may call it again.
2. `tokenize` splits on spaces, keeping double-quoted segments whole (shell-like, so `key="a b"` stays
   one token) and single-quoted segments whole when the quote clearly opens and closes a segment (an
   apostrophe in `it's` is not a quote). Autocorrect punctuation at the very end of the message
   (`disable Guggy.`) is dropped. An unbalanced double quote is the only way to fail: a `UsageError`.
3. `extract_invocation` decides whether the message is addressed to the bot at all: a configured
   prefix (`/integration`, `!integration`, any case, also the plural slip `/integrations`), a mention
   of the bot at the very start (the way Rocket.Chat itself would extract it, contract §5.4), or a
   direct message with the bot alone. Anything else is plain chat and yields None. For addressed text it
   returns an `Invocation` or raises `UsageError`; never anything else, so the dispatcher can answer
   every message meant for it and stay silent otherwise.

The converters that turn the tokens into typed arguments live in `commands.args`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bot.errors import UsageError
from bot.normalize import normalize
from bot.text import quote_name

__all__ = [
    "DEFAULT_PREFIXES",
    "TRAILING_PUNCTUATION",
    "Invocation",
    "Token",
    "Via",
    "extract_invocation",
    "normalize",
    "tokenize",
]

DEFAULT_PREFIXES: tuple[str, ...] = ("/integration", "!integration")

# What phone autocorrect and sentence habits append to the last word: `disable Guggy.`
TRAILING_PUNCTUATION = ".!?…,"

Via = Literal["prefix", "mention", "direct"]

# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One word of a command.

    `value` is the word with its quotes removed; `quoted` is True when any part of it was inside
    quotes (a quoted word is never a keyword: `"for"` is a name, `for` is a stop word); `typed` is
    the word as typed after normalisation, quotes included (`channel="#a b"`), which is what a
    converter needs to tell `field="+x"` (set a literal) from `field=+x` (add to a list).
    """

    value: str
    quoted: bool = False
    typed: str = ""

    def __post_init__(self) -> None:
        if not self.typed:
            object.__setattr__(self, "typed", f'"{self.value}"' if self.quoted else self.value)

    def is_word(self, *words: str) -> bool:
        """Whether this is one of `words` as an unquoted keyword (case-insensitive)."""
        return not self.quoted and self.value.lower() in words


# A closing single quote may be followed by the end, a space or trailing punctuation.
_SINGLE_CLOSERS = frozenset(" " + TRAILING_PUNCTUATION + ":;")
# A `'` that may close a single-quoted segment.
_SINGLE_CLOSER = re.compile("'(?=[" + re.escape("".join(sorted(_SINGLE_CLOSERS))) + "]|\\Z)")


def _single_closers(text: str) -> list[int]:
    """Every index of a `'` that may close a single-quoted segment, in order: found once per
    message, so that however many quotes open a segment (`'='='=…`), finding their ends stays
    linear (searching the rest of the message from each one was quadratic, on the event loop, for
    anyone who can send a message)."""
    return [match.start() for match in _SINGLE_CLOSER.finditer(text)]


def _single_quote_end(closers: list[int], start: int) -> int:
    """Index of the `'` closing a segment opened at `start` (`closers`: `_single_closers` of the
    text), or -1 when it is an apostrophe."""
    found = bisect_right(closers, start)
    return closers[found] if found < len(closers) else -1


def _unbalanced(before: str, rest: str) -> str:
    """The error for an unclosed `"`, quoting only the word it opens, and nothing that may be a secret."""
    word = rest.split(" ", 1)[0]
    field = " ".join(before.split(" ")[-2:])  # `token=` or `token ` just before the quote
    near = "" if _SECRET_WORD.search(field + word) else f" near {quote_name(word, limit=30)}"
    return f'unbalanced quote{near}: close it with a second " or leave it out (names with spaces go in "double quotes")'


# A value typed next to one of these words (a webhook token, a password) is never quoted back.
_SECRET_WORD: Final = re.compile(r"(?i)token|secret|password")


def tokenize(text: str, *, command: str = "") -> list[Token]:
    """Split a command into tokens (see the module docstring). `command` names the command in errors."""
    source = normalize(text)
    closers = _single_closers(source)
    tokens: list[Token] = []
    last_tail = 0  # where the unquoted tail of the last token begins, within its value
    index, length = 0, len(source)
    while index < length:
        if source[index] == " ":
            index += 1
            continue
        start = index
        parts: list[str] = []
        quoted = False
        size = tail = 0  # length of the value so far; start of its unquoted tail
        while index < length and source[index] != " ":
            char = source[index]
            if char == '"':
                end = source.find('"', index + 1)
                if end == -1:
                    raise UsageError(command, _unbalanced(source[:index], source[index:]))
                segment = source[index + 1 : end].strip(" ")
                parts.append(segment)
                quoted = True
                index = end + 1
                size = tail = size + len(segment)
            elif (
                char == "'"
                and (index == start or source[index - 1] == "=")
                and (end := _single_quote_end(closers, index)) != -1
            ):
                segment = source[index + 1 : end].strip(" ")
                parts.append(segment)
                quoted = True
                index = end + 1
                size = tail = size + len(segment)
            else:
                parts.append(char)
                size += 1
                index += 1
        tokens.append(Token("".join(parts), quoted, source[start:index]))
        last_tail = tail
    if tokens:
        last = tokens[-1]
        kept, tail_text = last.value[:last_tail], last.value[last_tail:]
        stripped = tail_text.rstrip(TRAILING_PUNCTUATION)
        if stripped != tail_text:
            if kept or stripped or last.quoted:
                typed = last.typed[: len(last.typed) - (len(tail_text) - len(stripped))]
                tokens[-1] = Token(kept + stripped, last.quoted, typed)
            else:
                tokens.pop()
    return tokens


# --- addressing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """A message addressed to the bot.

    `command` is the lower-cased first word ("" when only the prefix or mention was typed, which
    the dispatcher answers with help); `args` are the remaining tokens; `raw` is the message text
    exactly as received; `via` says how it was addressed. `is_direct`: it came from a DM with the
    bot alone, where commands need no prefix, so a reply may suggest a bare `yes`.
    """

    command: str
    args: tuple[Token, ...]
    raw: str
    via: Via
    is_direct: bool = False


# Rocket.Chat's default username class (contract §5.4); `.` ends a mention only before a space.
_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")
_AFTER_PREFIX = re.compile(r"[:,;.!?…]*(?: |$)")
_FIRST_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _after_leading_mention(
    text: str, bot_username: str, bot_user_id: str | None, mentions: Sequence[str]
) -> str | None:
    """The text after a leading `@bot` mention (and `:`/`,`), or None when it does not start so.

    Checked on the raw text, the way the server extracts mentions: `@\u200bbot` (a neutralised
    echo) is not a mention. When the server's mention list is known and lacks the bot, a lookalike
    at the start is not one either.
    """
    body = text.lstrip()
    name = bot_username.lstrip("@")
    if not name or not body.startswith("@"):
        return None
    candidate = body[1 : 1 + len(name)]
    if candidate.lower() != name.lower():
        return None
    rest = body[1 + len(name) :]
    if rest:
        following = rest[0]
        if following in _NAME_CHARS:
            return None
        if following == "." and len(rest) > 1 and not rest[1].isspace():
            return None  # `@bot.example` is another user
    if mentions:
        known = {m.lower() for m in mentions}
        if name.lower() not in known and (bot_user_id is None or bot_user_id.lower() not in known):
            return None
    return rest.lstrip(":,;.!?").lstrip()


def _prefix_pattern(prefixes: Iterable[str], *, bare: bool) -> re.Pattern[str] | None:
    words: set[str] = set()
    for prefix in prefixes:
        word = normalize(prefix)
        if bare:
            word = word.lstrip("/!")
        if word:
            words.add(word)
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives})s?(?={_AFTER_PREFIX.pattern})", re.IGNORECASE)


def _strip_prefix(text: str, pattern: re.Pattern[str] | None) -> str | None:
    if pattern is None:
        return None
    match = pattern.match(text)
    if match is None:
        return None
    rest = text[match.end() :]
    punctuation = _AFTER_PREFIX.match(rest)
    assert punctuation is not None  # guaranteed by the lookahead
    return rest[punctuation.end() :].lstrip(" ")


def extract_invocation(
    text: str,
    *,
    prefixes: Sequence[str] = DEFAULT_PREFIXES,
    bot_username: str,
    bot_user_id: str | None = None,
    is_direct: bool = False,
    mentions: Sequence[str] = (),
) -> Invocation | None:
    """The `Invocation` in `text` if the message is addressed to the bot, else None (plain chat).

    Addressed means: it starts with a prefix (case-insensitive, plural allowed, whole word only),
    or with a mention of the bot (optionally followed by `:`/`,` and/or a prefix), or it is a
    non-empty direct message (the prefix, with or without its `/`/`!`, may then be omitted). In a
    DM every non-empty text is an invocation, so the dispatcher can answer "unknown command".
    `is_direct` means a DM with the bot alone (`bot.runtime.intake`): never a group DM, where people talk.
    `mentions` is the server's mention list for the message (usernames or ids) when known.

    Raises only `UsageError` (an unbalanced quote), and only for text addressed to the bot.
    """
    via: Via | None = None
    body = text
    after_mention = _after_leading_mention(text, bot_username, bot_user_id, mentions)
    if after_mention is not None:
        via, body = "mention", after_mention
    body = normalize(body)
    after_prefix = _strip_prefix(body, _prefix_pattern(prefixes, bare=False))
    if after_prefix is not None:
        via, body = via or "prefix", after_prefix
    elif via is None:
        if not is_direct or not body:
            return None
        via = "direct"
        without_word = _strip_prefix(body, _prefix_pattern(prefixes, bare=True))
        if without_word is not None:
            body = without_word
    first = _FIRST_WORD.match(body)
    tokens = tokenize(body, command=first.group(0).lower() if first else "")
    if not tokens:
        return Invocation("", (), text, via, is_direct)
    command = tokens[0].value.rstrip(":,;").lower()
    return Invocation(command, tuple(tokens[1:]), text, via, is_direct)
