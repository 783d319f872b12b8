"""Typed argument converters: tokens in, frozen values out, `UsageError` for anything unusable.

In the spirit of discord.py's converters: each command module calls the converter for its
grammar and gets a typed value; the problem texts are short enough for a phone screen and say
what would work. User text echoed in a problem goes through `text.quote_name` (mention-proof).

Grammar shared by the commands (words are case-insensitive, quoted words are never keywords):

    target   := [incoming|outgoing|in|out|webhook-incoming|webhook-outgoing] name
    name     := "quoted name" | word... (up to the command's stop words)
    duration := 30m | 2h | 1h30m | 1d | 90s | 1w | 45 min | 2 hours | 1.5h | an hour | half an hour
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Literal

from bot.errors import UsageError
from bot.text import code, human_duration, quote_name
from commands.parser import TRAILING_PUNCTUATION, Token, normalize

__all__ = [
    "BULK_USAGE",
    "DEFAULT_MAX_DURATION",
    "DISABLE_STOP_WORDS",
    "HELP",
    "MAX_DISABLE",
    "ArgHelp",
    "Assignment",
    "BulkArgs",
    "DisableArgs",
    "ExtendArgs",
    "Kind",
    "ListFilter",
    "SetArgs",
    "Target",
    "is_bulk",
    "parse_assignments",
    "parse_bulk_args",
    "parse_bulk_enable",
    "parse_bulk_extend",
    "parse_code",
    "parse_disable_args",
    "parse_duration",
    "parse_extend_args",
    "parse_help_topic",
    "parse_list_filters",
    "parse_minutes",
    "parse_optional_target",
    "parse_set_args",
    "parse_target",
]

Kind = Literal["incoming", "outgoing"]

DEFAULT_MAX_DURATION = timedelta(days=7)
MIN_DURATION = timedelta(seconds=1)

KIND_WORDS: dict[str, Kind] = {
    "incoming": "incoming",
    "in": "incoming",
    "webhook-incoming": "incoming",
    "outgoing": "outgoing",
    "out": "outgoing",
    "webhook-outgoing": "outgoing",
}

DISABLE_STOP_WORDS = frozenset({"for", "because", "--"})


def _usage(command: str, usage: str | None) -> str:
    return usage if usage is not None else f"{command} [incoming|outgoing] <name|id>"


def _is_stop(token: Token, stop_words: Collection[str]) -> bool:
    return not token.quoted and token.value.lower() in stop_words


def _words(tokens: Sequence[Token]) -> str:
    return " ".join(token.typed for token in tokens)


# --- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Which integration: `kind` narrows the lookup (None: both types); `query` is a name or id;
    `rest` are the tokens after the name, for the command to convert further."""

    kind: Kind | None
    query: str
    rest: tuple[Token, ...] = ()
    # The name was typed as several unquoted words (only these can be split differently).
    words: tuple[str, ...] = ()


def _split_kind(tokens: Sequence[Token]) -> tuple[Kind | None, Sequence[Token]]:
    if len(tokens) >= 2 and not tokens[0].quoted and tokens[0].value.lower() in KIND_WORDS:
        return KIND_WORDS[tokens[0].value.lower()], tokens[1:]
    return None, tokens


def parse_target(
    tokens: Sequence[Token], *, command: str, stop_words: Collection[str] = (), usage: str | None = None
) -> Target:
    """`[kind] name`: a quoted name, or the unquoted words before the first stop word or quoted word.

    A kind word with nothing usable after it is taken as the name (`enable incoming` looks for an
    integration named "incoming"). Missing or empty name → `UsageError` with the usage line.
    """
    stops = {word.lower() for word in stop_words}
    kind, remaining = _split_kind(tokens)
    if kind is not None and (not remaining or _is_stop(remaining[0], stops)):
        kind, remaining = None, tokens
    if not remaining or _is_stop(remaining[0], stops):
        raise UsageError(command, f"which integration? Usage: {_usage(command, usage)}")
    first = remaining[0]
    if first.quoted:
        if not first.value.strip():
            raise UsageError(command, "the name in quotes is empty")
        return Target(kind, first.value, tuple(remaining[1:]))
    count = 0
    while count < len(remaining) and not remaining[count].quoted and not _is_stop(remaining[count], stops):
        count += 1
    words = tuple(token.value for token in remaining[:count])
    return Target(kind, " ".join(words), tuple(remaining[count:]), words)


def parse_optional_target(tokens: Sequence[Token], *, command: str, stop_words: Collection[str] = ()) -> Target | None:
    """Like `parse_target`, but no tokens at all means "no target" (e.g. `history`)."""
    if not tokens:
        return None
    return parse_target(tokens, command=command, stop_words=stop_words)


# --- list filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFilter:
    kind: Kind | None = None
    enabled: bool | None = None
    text: str | None = None


_ENABLED_WORDS = {"enabled": True, "on": True, "active": True, "disabled": False, "off": False, "inactive": False}


def parse_list_filters(tokens: Sequence[Token], *, command: str = "list") -> ListFilter:
    """`[incoming|outgoing] [enabled|disabled] [text]` in any order; other words are the text
    filter (quote a word to search for it literally, e.g. `list "incoming"`); `all` is ignored."""
    kind: Kind | None = None
    enabled: bool | None = None
    text: list[str] = []
    for token in tokens:
        word = token.value.lower()
        if not token.quoted and word in KIND_WORDS:
            if kind is not None and kind != KIND_WORDS[word]:
                raise UsageError(command, "pick incoming or outgoing, not both (or neither for all)")
            kind = KIND_WORDS[word]
        elif not token.quoted and word in _ENABLED_WORDS:
            if enabled is not None and enabled != _ENABLED_WORDS[word]:
                raise UsageError(command, "pick enabled or disabled, not both (or neither for all)")
            enabled = _ENABLED_WORDS[word]
        elif not token.quoted and word == "all":
            continue
        else:
            text.append(token.value)
    joined = " ".join(text).strip()
    return ListFilter(kind, enabled, joined or None)


# --- durations ----------------------------------------------------------------------------------

_UNIT_SECONDS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes", "mn"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3_600),
    (("d", "day", "days"), 86_400),
    (("w", "wk", "wks", "week", "weeks"), 604_800),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _seconds

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_WORD_ALTERNATIVES = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_PART = re.compile(
    rf"(?:(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*|(?P<half>half\s+(?:an?\s+)?)|(?P<word>{_WORD_ALTERNATIVES})\s+)"
    r"(?P<unit>[a-z]+)(?P<and_half>\s+and\s+a\s+half)?"
)
_SEPARATOR = re.compile(r"\s*(?:(?:,|and|\+)\s*)?")
_MAX_DIGITS = 12
# The most words one duration may take: `1 d and 2 hours and 30 min and 10 s`.
_DURATION_WORDS = 12
_EXAMPLES = "e.g. 30m, 2h, 1h30m or 1d"


class _NotADuration(Exception):
    """The text is not duration syntax; `hint` says what would be."""

    def __init__(self, hint: str) -> None:
        self.hint = hint
        super().__init__(hint)


def _duration_seconds(text: str) -> Fraction:
    """Seconds in a duration text, exactly; raises `_NotADuration` when it is not one.

    Range (zero, negative, too long) is the caller's business so it can say so precisely.
    """
    source = normalize(text).lower().rstrip(TRAILING_PUNCTUATION).strip()
    source = re.sub(r"(?<=[0-9]),(?=[0-9])", ".", source)  # 1,5h: a decimal comma
    if not source:
        raise _NotADuration(f"how long? {_EXAMPLES}")
    if source.startswith("-"):
        raise _NotADuration(f"a duration must be positive, {_EXAMPLES}")
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", source):
        raise _NotADuration(f"add a unit: {source}m (minutes), {source}h or {source}d")
    total = Fraction(0)
    position = 0
    last_unit = 0
    while position < len(source):
        if position:
            separator = _SEPARATOR.match(source, position)
            assert separator is not None  # everything in it is optional
            position = separator.end()
        part = _PART.match(source, position)
        if part is None:
            # `1h30`: minutes implied after hours, as people write it.
            rest = source[position:]
            if last_unit == 3_600 and re.fullmatch(r"[0-9]{1,2}", rest):
                total += int(rest) * 60
                break
            raise _NotADuration(f"{quote_name(text)} is not a duration; {_EXAMPLES}")
        unit = _UNIT_SECONDS.get(part.group("unit"))
        if unit is None:
            if part.group("unit").startswith("mo"):
                raise _NotADuration("months are too long; use days or weeks, e.g. 3d")
            raise _NotADuration(f"{quote_name(text)} is not a duration; {_EXAMPLES}")
        if part.group("number") is not None:
            whole, _, fraction = part.group("number").partition(".")
            if len(whole) > _MAX_DIGITS:
                amount = Fraction(10**_MAX_DIGITS)  # far beyond any maximum; said so by the range check
            else:
                amount = Fraction(f"{whole or 0}.{fraction[:6] or 0}")
        elif part.group("half") is not None:
            amount = Fraction(1, 2)
        else:
            amount = Fraction(_NUMBER_WORDS[part.group("word")])
        if part.group("and_half") is not None:
            amount += Fraction(1, 2)
        total += amount * unit
        last_unit = unit
        position = part.end()
    return total


def _check_range(
    seconds: Fraction, *, command: str, maximum: timedelta, minimum: timedelta = MIN_DURATION
) -> timedelta:
    if seconds <= 0:
        raise UsageError(command, f"a duration must be more than zero, {_EXAMPLES}")
    if seconds > Fraction(maximum // timedelta(microseconds=1), 1_000_000):
        raise UsageError(command, f"the longest allowed is {human_duration(maximum)}")
    if seconds < Fraction(minimum // timedelta(microseconds=1), 1_000_000):
        raise UsageError(command, f"the shortest allowed is {human_duration(minimum)}")
    return timedelta(microseconds=round(seconds * 1_000_000))


def parse_duration(text: str, *, command: str = "disable", maximum: timedelta = DEFAULT_MAX_DURATION) -> timedelta:
    """`30m`, `2h`, `1h30m`, `1h 30m`, `1d`, `90s`, `1w`, `45 min`, `2 hours`, `1.5h`, `an hour`, `half an
    hour`, `1h30`. Zero, negative, garbage, or more than `maximum` → `UsageError` saying what works."""
    try:
        seconds = _duration_seconds(text)
    except _NotADuration as exc:
        raise UsageError(command, exc.hint) from None
    return _check_range(seconds, command=command, maximum=maximum)


def parse_minutes(
    tokens: Sequence[Token], *, command: str = "noisy", maximum: timedelta = DEFAULT_MAX_DURATION
) -> timedelta | None:
    """`noisy [minutes]`: None without tokens, a bare number means minutes, or any duration (`2h`)."""
    if not tokens:
        return None
    text = normalize(_words(tokens)).rstrip(TRAILING_PUNCTUATION)
    if re.fullmatch(r"[0-9]{1,9}", text):
        return _check_range(Fraction(int(text) * 60), command=command, maximum=maximum)
    return parse_duration(text, command=command, maximum=maximum)


# --- disable ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisableArgs:
    """`disable <target> [for <duration>] [because|-- <reason>]` or `disable <target> <reason...>`.

    `alternatives` lists other readings of an unquoted multi-word name as `(query, reason)` pairs,
    for the resolver to match with `target.query` (e.g. `disable Noisy hook` reads as name "Noisy",
    reason "hook"; the alternative is name "Noisy hook", no reason; when both exist it asks).
    """

    target: Target
    duration: timedelta | None = None
    reason: str | None = None
    alternatives: tuple[tuple[str, str | None], ...] = ()
    # The reason was typed in quotes: taken as it is, even when it reads as a time limit.
    reason_quoted: bool = False


def _split_double_dash(tokens: Sequence[Token]) -> list[Token]:
    """`--spam` (dash glued to the reason) → `--`, `spam`."""
    out: list[Token] = []
    for token in tokens:
        if not token.quoted and token.value.startswith("--") and len(token.value) > 2:
            rest = token.value[2:]
            out.extend((Token("--"), Token(rest, typed=token.typed[2:] or rest)))
        else:
            out.append(token)
    return out


def _take_duration(tokens: Sequence[Token], *, command: str, maximum: timedelta) -> tuple[timedelta, int]:
    """The duration at the start of `tokens` (the longest run of words that reads as one)."""
    hint: str | None = None
    for count in range(min(_DURATION_WORDS, len(tokens)), 0, -1):
        if any(token.quoted for token in tokens[:count]):
            continue
        try:
            seconds = _duration_seconds(_words(tokens[:count]))
        except _NotADuration as exc:
            if count == 1:
                hint = exc.hint
            continue
        return _check_range(seconds, command=command, maximum=maximum), count
    if hint is None or not tokens:
        hint = f"`for` needs a duration, {_EXAMPLES}"
    raise UsageError(command, f"{hint} (a name with the word `for` in it goes in quotes)")


# A time of day or a day, after `until`: what a responder types for "back on at …". The bot turns
# integrations back on after a duration only (`for 2h`), so a reason that begins with one of these
# is asked about, not taken as "off for good" (`time_limit`).
_UNTIL = frozenset({"until", "till", "til", "untill"})
# A time of day: `5pm`, `5 pm` (two words, below), `17:30`, `17.30`, `17h`, `17h30`; a bare number
# only when nothing follows it (`until 5 people complain` is a reason).
_CLOCK = re.compile(r"[0-9]{1,2}(?:(?:[:.][0-9]{2}|h(?:[0-9]{2})?)(?:am|pm)?|am|pm)")
_DAY_WORDS = frozenset(
    {"noon", "midnight", "tomorrow", "tonight", "today", "morning", "afternoon", "evening", "eod", "later"}
    | {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)
_MERIDIEM = frozenset({"am", "pm", "a.m", "p.m"})
# `until next week`, `until next Monday`: `next` and any word after it.
_NEXT = "next"


def time_limit(reason: str) -> str | None:
    """The time limit a reason begins with (`until 5pm`, `till 17:30`, `until tomorrow`, `for 2h`),
    or None. A plain disable with such a reason would stay off for good, the opposite of what its
    caller meant: the commands ask instead (an `until` followed by anything else, `until the vendor
    fixes it`, is a reason)."""
    words = reason.split()
    if len(words) < 2:
        return None
    head = words[0].lower()
    if head in _UNTIL:
        after = words[1].lower().rstrip(TRAILING_PUNCTUATION)
        third = words[2].lower().rstrip(TRAILING_PUNCTUATION) if len(words) > 2 else None
        if after.isdigit() and len(after) <= 2 and (third is None or third in _MERIDIEM):
            return " ".join(words[:3]).rstrip(TRAILING_PUNCTUATION)  # `until 5`, `until 5 p.m.`
        if after == _NEXT and third is not None:
            return " ".join(words[:3]).rstrip(TRAILING_PUNCTUATION)
        if after in _DAY_WORDS or _CLOCK.fullmatch(after):
            return " ".join(words[:2]).rstrip(TRAILING_PUNCTUATION)
        return None
    if head == "for":
        for count in range(min(_DURATION_WORDS, len(words) - 1), 0, -1):
            try:
                _duration_seconds(" ".join(words[1 : 1 + count]))
            except _NotADuration:
                continue
            return " ".join(words[: 1 + count]).rstrip(TRAILING_PUNCTUATION)
    return None


def refuse_time_limit(command: str, reason: str | None, *, quoted: bool, example: str) -> None:
    """`UsageError` when an unquoted reason of a disable without a duration is a time limit
    (`time_limit`): nothing is changed, and the caller is shown the duration form (`example`).
    Both are the caller's words (a bulk example repeats its room or pattern): shown with `code`,
    never in a span made by hand, whose end a backtick in them would move."""
    limit = None if reason is None or quoted else time_limit(reason)
    if limit is None:
        return
    raise UsageError(
        command,
        f"{code(limit)} reads as a time limit, and without a duration I would leave it off for good. "
        f"I turn integrations back on after a duration: {code(example)}. "
        "To keep those words as the reason, put them in double quotes after `because`",
    )


def _join_reason(*parts: str | None) -> str | None:
    joined = " ".join(part for part in parts if part)
    return joined or None


def parse_disable_args(
    tokens: Sequence[Token], *, command: str = "disable", maximum: timedelta = DEFAULT_MAX_DURATION
) -> DisableArgs:
    """See `DisableArgs`. Without a stop word, an unquoted name is its first word and the other words
    are the reason; with one (`for`, `because`, `--`), the name is all the words before it."""
    tokens = _split_double_dash(tokens)
    target = parse_target(tokens, command=command, stop_words=DISABLE_STOP_WORDS, usage=DISABLE_USAGE)
    rest = list(target.rest)
    words = target.words
    extra: tuple[str, ...] = ()
    stop_follows = bool(rest) and _is_stop(rest[0], DISABLE_STOP_WORDS)
    if len(words) > 1 and not stop_follows:
        # `disable Guggy spamming the channel`: the name is the first word (quote longer names).
        extra = words[1:]
        target = Target(target.kind, words[0], target.rest, words[:1])
    duration: timedelta | None = None
    reason: str | None = None
    quoted = False
    while rest:
        head = rest[0]
        if head.is_word("for"):
            if duration is not None:
                raise UsageError(command, "give one duration only")
            duration, used = _take_duration(rest[1:], command=command, maximum=maximum)
            rest = rest[1 + used :]
        elif head.is_word("because", "--"):
            reason = _words(rest[1:]) or None
            if reason is None:
                raise UsageError(command, f"add the reason after {head.value}, e.g. `disable Guggy -- spamming`")
            quoted = rest[1].quoted
            rest = []
        else:
            reason = _words(rest)
            quoted = head.quoted
            rest = []
    primary_reason = _join_reason(" ".join(extra), reason)
    alternatives: list[tuple[str, str | None]] = []
    if len(words) > 1:
        for cut in range(len(words), 0, -1):
            query = " ".join(words[:cut])
            if query != target.query:
                alternatives.append((query, _join_reason(" ".join(words[cut:]), reason)))
    final = Target(target.kind, target.query, (), target.words)
    return DisableArgs(final, duration, primary_reason, tuple(alternatives), reason_quoted=quoted and not extra)


# --- bulk disable -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkArgs:
    """`disable all in #room …` (`room` is the bare room name or id, without `#`) or
    `disable all matching "glob" …` (`glob`): exactly one of the two is set."""

    room: str | None = None
    glob: str | None = None
    kind: Kind | None = None
    duration: timedelta | None = None
    reason: str | None = None
    # The reason was typed in quotes: taken as it is, even when it reads as a time limit.
    reason_quoted: bool = False

    @property
    def selector(self) -> str:
        """The selector as the bot repeats it (`in #alerts`, `matching "jenkins*"`)."""
        return f"in #{self.room}" if self.room is not None else f'matching "{self.glob}"'


BULK_USAGE = (
    "disable all in #room [incoming|outgoing] [for <duration>] [because <reason>] | "
    'disable all matching "name*" [incoming|outgoing] [for <duration>] [because <reason>]'
)


def is_bulk(tokens: Sequence[Token]) -> bool:
    """Whether `disable` was given the bulk form: an unquoted `all` followed by `in` or `matching`
    (an integration named like that is quoted: `disable "all in"`)."""
    return len(tokens) >= 2 and tokens[0].is_word("all") and tokens[1].is_word("in", "matching")


def _bulk_selector(tokens: Sequence[Token], *, command: str) -> tuple[BulkArgs, list[Token]]:
    """`all in #room [kind]` / `all matching "glob" [kind]`: the selector, and the tokens after it.
    Problems name the command as `<command> all`, so the answer shows no single command's usage."""
    if len(tokens) < 3:
        what = (
            f"which room? e.g. `{command} all in #alerts`"
            if tokens[1].is_word("in")
            else f'which names? e.g. `{command} all matching "jenkins*"`'
        )
        raise UsageError(f"{command} all", f"{what}. Usage: {BULK_USAGE}")
    selector = tokens[2]
    room = glob = None
    if tokens[1].is_word("in"):
        room = selector.value.strip().removeprefix("#").strip()
        if not room or any(char.isspace() for char in room):
            raise UsageError(
                f"{command} all", f"name one room, e.g. `{command} all in #alerts` (got {quote_name(selector.value)})"
            )
    else:
        glob = selector.value.strip()
        if not glob:
            raise UsageError(f"{command} all", f'the pattern is empty; e.g. `{command} all matching "jenkins*"`')
    rest = list(tokens[3:])
    kind: Kind | None = None
    if rest and not rest[0].quoted and rest[0].value.lower() in KIND_WORDS:
        kind = KIND_WORDS[rest[0].value.lower()]
        rest = rest[1:]
        if rest and not rest[0].quoted and rest[0].value.lower() in KIND_WORDS.keys() - {"in", "out"}:
            # `incoming outgoing`: not incoming ones only with the reason "outgoing".
            raise UsageError(
                f"{command} all",
                "name one kind (`incoming` or `outgoing`), or none for both; put `because` before a reason like that",
            )
    return BulkArgs(room, glob, kind), rest


def parse_bulk_args(tokens: Sequence[Token], *, maximum: timedelta = DEFAULT_MAX_DURATION) -> BulkArgs:
    """See `BulkArgs`; `tokens` pass `is_bulk`. After the room or glob: an optional kind, then the
    same `for <duration>` and `because|-- <reason>` as a single disable (a reason may also simply
    follow)."""
    command = "disable"
    selected, rest = _bulk_selector(_split_double_dash(tokens), command=command)
    duration: timedelta | None = None
    reason: str | None = None
    quoted = False
    while rest:
        head = rest[0]
        if head.is_word("for"):
            if duration is not None:
                raise UsageError(f"{command} all", "give one duration only")
            duration, used = _take_duration(rest[1:], command=f"{command} all", maximum=maximum)
            rest = rest[1 + used :]
        elif head.is_word("because", "--"):
            reason = _words(rest[1:]) or None
            if reason is None:
                raise UsageError(
                    f"{command} all", f"add the reason after {head.value}, e.g. `disable all in #alerts -- noisy`"
                )
            quoted = rest[1].quoted
            rest = []
        else:
            reason = _words(rest)
            quoted = head.quoted
            rest = []
    return BulkArgs(selected.room, selected.glob, selected.kind, duration, reason, reason_quoted=quoted)


def parse_bulk_enable(tokens: Sequence[Token]) -> BulkArgs:
    """`enable all in #room [kind]` / `enable all matching "glob" [kind]`: nothing after it."""
    command = "enable"
    selected, rest = _bulk_selector(tokens, command=command)
    if rest:
        raise UsageError(f"{command} all", f"unexpected {quote_name(_words(rest))}; usage: `{command} all in #room`")
    return selected


def parse_bulk_extend(tokens: Sequence[Token], *, maximum: timedelta = DEFAULT_MAX_DURATION) -> BulkArgs:
    """`extend all in #room [kind] [by|for] <duration>` (or `all matching "glob"`)."""
    command = "extend"
    selected, rest = _bulk_selector(tokens, command=command)
    if rest and rest[0].is_word("by", "for"):
        rest = rest[1:]
    if not rest or any(token.quoted for token in rest):
        raise UsageError(f"{command} all", f"for how long? e.g. `{command} all in #alerts 1h`")
    duration = parse_duration(_words(rest), command=f"{command} all", maximum=maximum)
    return BulkArgs(selected.room, selected.glob, selected.kind, duration)


# --- extend -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtendArgs:
    target: Target
    duration: timedelta


def parse_extend_args(
    tokens: Sequence[Token], *, command: str = "extend", maximum: timedelta = DEFAULT_MAX_DURATION
) -> ExtendArgs:
    """`extend <target> [by|for] <duration>`: the duration is the longest run of trailing words that
    reads as one, so unquoted multi-word names work (`extend Noisy hook 30m`)."""
    if not tokens:
        raise UsageError(command, f"which integration, and for how long? Usage: {EXTEND_USAGE}")
    for count in range(min(_DURATION_WORDS, len(tokens) - 1), 0, -1):
        tail = tokens[len(tokens) - count :]
        if any(token.quoted for token in tail):
            continue
        try:
            seconds = _duration_seconds(_words(tail))
        except _NotADuration:
            continue
        head = list(tokens[: len(tokens) - count])
        if len(head) > 1 and head[-1].is_word("by", "for"):
            head.pop()
        target = parse_target(head, command=command, usage=EXTEND_USAGE)
        if target.rest:
            raise UsageError(command, f"unexpected {quote_name(_words(target.rest))}; usage: {EXTEND_USAGE}")
        return ExtendArgs(target, _check_range(seconds, command=command, maximum=maximum))
    raise UsageError(command, f"for how long? Usage: {EXTEND_USAGE}, {_EXAMPLES}")


# --- set ----------------------------------------------------------------------------------------

Op = Literal["set", "add", "remove"]


@dataclass(frozen=True)
class Assignment:
    """One change for `set`: `field` lower-cased (the command maps it to the canonical name),
    `raw_field` as typed; `op` is `add`/`remove` for `+word`/`-word` on list fields."""

    field: str
    op: Op
    value: str
    raw_field: str


_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_ASSIGNMENT = re.compile(r"(?P<field>[A-Za-z][A-Za-z0-9_.-]*?)(?P<op>[+-]?)=(?P<value>.*)", re.DOTALL)


def _is_assignment(token: Token) -> bool:
    if token.typed == "=":
        return True
    match = _ASSIGNMENT.fullmatch(token.typed)
    return match is not None and not token.typed.startswith(("'", '"'))


def _assignment(field: str, typed_value: str, value: str, op: str, *, command: str) -> Assignment:
    """Build one assignment; `typed_value` (quotes kept) decides `+x` (add) versus `"+x"` (literal)."""
    if op == "+" or (not op and typed_value.startswith("+")):
        item = value[1:] if not op else value
        kind: Op = "add"
    elif op == "-" or (not op and typed_value.startswith("-") and len(value) > 1):
        item = value[1:] if not op else value
        kind = "remove"
    else:
        return Assignment(field.lower(), "set", value, field)
    if not item:
        raise UsageError(command, f"nothing to {kind} for {field}")
    return Assignment(field.lower(), kind, item, field)


def parse_assignments(tokens: Sequence[Token], *, command: str = "set") -> list[Assignment]:
    """`field=value`, `field="a b"`, `field=+x`, `field=-x` (also `field+=x`, `field = value`), or
    `<field> <value...>` / `<field> +x -y`. Field names are matched case-insensitively later."""
    if not tokens:
        raise UsageError(command, f"what should change? Usage: {SET_USAGE}")
    if not any(_is_assignment(token) for token in tokens):
        return _field_value_form(tokens, command=command)
    changes: list[Assignment] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if following is not None and following.typed == "=" and _FIELD.fullmatch(token.typed):
            # `field = value`, spaces around `=` (phones add them).
            if index + 2 >= len(tokens):
                raise UsageError(command, f"what value for {token.value}?")
            value_token = tokens[index + 2]
            changes.append(_assignment(token.value, value_token.typed, value_token.value, "", command=command))
            index += 3
            continue
        match = _ASSIGNMENT.fullmatch(token.typed) if _is_assignment(token) and token.typed != "=" else None
        if match is None:
            raise UsageError(command, f"expected field=value, got {quote_name(token.typed)}")
        field = match.group("field")
        typed_value = match.group("value")
        # The value without its quotes: the token's value minus the `field=` (or `field+=`) prefix.
        value = token.value[len(field) + len(match.group("op")) + 1 :]
        changes.append(_assignment(field, typed_value, value, match.group("op"), command=command))
        index += 1
    return changes


def _field_value_form(tokens: Sequence[Token], *, command: str) -> list[Assignment]:
    field_token, values = tokens[0], tokens[1:]
    if field_token.quoted or not _FIELD.fullmatch(field_token.value):
        raise UsageError(command, f"{quote_name(field_token.value)} is not a field name; usage: {SET_USAGE}")
    field = field_token.value
    if not values:
        raise UsageError(command, f"what value for {field}? Usage: {SET_USAGE}")
    if all(not v.quoted and v.value[:1] in "+-" and len(v.value) > 1 for v in values):
        return [_assignment(field, v.typed, v.value, "", command=command) for v in values]
    value = values[0].value if len(values) == 1 else _words(values)
    return [Assignment(field.lower(), "set", value, field)]


@dataclass(frozen=True)
class SetArgs:
    target: Target
    assignments: tuple[Assignment, ...]


def parse_set_args(tokens: Sequence[Token], *, command: str = "set") -> SetArgs:
    """`set <target> field=value ...` (the name is every word before the first assignment) or
    `set <target> <field> <value...>` (an unquoted name is then its first word)."""
    kind, remaining = _split_kind(tokens)
    if not remaining or _is_assignment(remaining[0]):
        raise UsageError(command, f"which integration, and what should change? Usage: {SET_USAGE}")
    count = 1
    if not remaining[0].quoted:
        for index, token in enumerate(remaining):
            if token.quoted:
                break
            if _is_assignment(token):
                # `set Noisy hook alias = bot`: the word before a lone `=` is the field.
                count = max(1, index - 1 if token.typed == "=" else index)
                break
    name_tokens, rest = remaining[:count], remaining[count:]
    query = " ".join(token.value for token in name_tokens)
    if not query.strip():
        raise UsageError(command, "the name in quotes is empty")
    words = () if name_tokens[0].quoted else tuple(token.value for token in name_tokens)
    return SetArgs(Target(kind, query, (), words), tuple(parse_assignments(rest, command=command)))


# --- small ones ---------------------------------------------------------------------------------


def parse_help_topic(tokens: Sequence[Token]) -> str | None:
    """`help [command]`: the lower-cased command word asked about, or None."""
    return tokens[0].value.lower() if tokens else None


def parse_code(tokens: Sequence[Token], *, command: str = "confirm") -> str:
    """`confirm <code>`: the one code word as typed (compare case-insensitively)."""
    if len(tokens) != 1 or not tokens[0].value:
        raise UsageError(command, f"type the code from the question, e.g. `{command} K7Q2`")
    return tokens[0].value


# --- help texts for the grammar above (the command table shows them) ------------------------------


@dataclass(frozen=True)
class ArgHelp:
    usage: str
    details: str
    examples: tuple[str, ...]


TARGET_DETAILS = (
    "Name an integration by its name or id; a name with spaces needs no quotes (`Jenkins builds`). "
    "Add `incoming` or `outgoing` before it when both kinds share the name."
)
# Where a help text names the longest timed disable: `help` puts the setting's value there.
MAX_DISABLE = "{max_disable}"
DISABLE_USAGE = "disable [incoming|outgoing] <name|id> [for <duration>] [because|-- <reason>]"
EXTEND_USAGE = "extend [incoming|outgoing] <name|id> <duration>"
SET_USAGE = "set <name|id> field=value ... | set <name|id> <field> <value...> | <field> +word -word"

HELP: dict[str, ArgHelp] = {
    "enable": ArgHelp(
        "enable [incoming|outgoing] <name|id>",
        TARGET_DETAILS + ' `enable all in #room` (or `all matching "name*"`) ends a `disable all … for …` now.',
        ("enable Alertmanager", 'enable "Jenkins builds"'),
    ),
    "disable": ArgHelp(
        DISABLE_USAGE,
        "Name an integration by its name or id; add `incoming` or `outgoing` before it when both kinds share "
        "the name. A duration (`for 30m`, `for 2 hours`, at most {max_disable}) re-enables it later; a reason follows "
        "`because` or `--`, or simply the name. Without quotes, the run of first words that names an "
        "integration you can see is the name, and the words after it are the reason: "
        "`disable Jenkins builds failing since noon` switches off `Jenkins builds` with the reason "
        "`failing since noon`. When two runs name different integrations (`Noisy` and `Noisy hook`), "
        "nothing is changed and both are listed: put the name you mean in double quotes "
        '(`disable "Noisy" hook is flapping`). Quote a name that contains `for`, `because` or `--`. '
        "Many at once, after a preview: `disable all in #room` (every integration posting into that room) or "
        '`disable all matching "name*"` (names matching a pattern), with the same kind, duration and reason; '
        "`--yes` skips the preview.",
        (
            "disable Grafana",
            'disable "Jenkins builds" for 30m because flapping',
            "disable outgoing Guggy -- spam",
            "disable Grafana spamming the channel",
            "disable all in #alerts for 30m because paging storm",
        ),
    ),
    "list": ArgHelp(
        "list [incoming|outgoing] [enabled|disabled] [text]",
        "Filters in any order; other words search names.",
        ("list", "list outgoing disabled", "list incoming alert"),
    ),
    "show": ArgHelp("show [incoming|outgoing] <name|id>", TARGET_DETAILS, ("show Grafana", "show outgoing Guggy")),
    "help": ArgHelp("help [command]", "Shows the commands you may run, or details about one.", ("help disable",)),
    "extend": ArgHelp(
        EXTEND_USAGE,
        "Extends a timed disable by the duration; `extend all in #room 1h` extends every member of a "
        "`disable all … for …`.",
        ('extend "Jenkins builds" 1h', "extend Jenkins builds 30m"),
    ),
    "history": ArgHelp("history [name|id]", "Recent changes made through the bot.", ("history", "history Grafana")),
    "noisy": ArgHelp(
        "noisy [minutes]", "Integrations that posted most in the last minutes (default 60).", ("noisy", "noisy 15")
    ),
    "failing": ArgHelp(
        "failing [minutes]",
        "Outgoing webhooks you can see whose calls failed in the last minutes (default 60; `failing 15`, "
        "`failing 2h`): how many of their calls failed, the last error, and a button to disable each one "
        "you may change.",
        ("failing", "failing 15", "failing 2h"),
    ),
    "set": ArgHelp(
        SET_USAGE,
        'Changes fields. `field="a b"` for values with spaces; `+word`/`-word` add to or remove from a list '
        "field. In the `<field> <value>` form an unquoted name is its first word.",
        (
            'set Grafana channel=#alerts,#ops alias="Grafana bot" emoji=:bar_chart:',
            'set "Deploy announcer" triggerWords +!ship -!rollback',
            "set outgoing Guggy retryCount=5 --yes",
        ),
    ),
    "confirm": ArgHelp("confirm <code>", "Confirms a change the bot asked about.", ("yes",)),
}
