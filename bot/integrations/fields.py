"""The integration fields people may change from chat, and the pure planner behind `set`.

Theory of operation
-------------------
`FIELDS` is the one catalogue: per field its document key, the integration types that have it,
the names people use for it, how one typed value (or one list item) becomes a document value,
how a list value is split, whether it is secret, and what a valid value looks like. Nothing else
in the bot knows field names; the command, the preview and the README are generated from, or
checked against, this table.

`plan_changes(document, assignments)` applies typed assignments (`alias="Guggy bot"`,
`triggerWords +!deploy -!build`) to a stored document and returns a `Plan`: the document keys
that change, before → after, in the order asked, plus the changes Rocket.Chat itself would make
as a consequence (a channel-less event stores no channels, an event without trigger words drops
them, switching retries on fills the retry defaults; contract §2.1, §2.4.5) so the preview shows
what will really be stored and the verification after the write agrees with it.

Validation is Rocket.Chat's own (contract §2.4.3 and §2.4.5, the official update schema), run
before anything is written, with every problem collected into one refusal that names the field
and says what would be valid: values that do not parse, rules across fields, and (from
`bot.integrations.fieldcheck`) rooms and users that do not exist, all in one answer, in the order the caller
typed the fields. A rule across fields is not reported for a field whose value was already
refused (`channel=nowhere` is one problem, not also "needs at least one channel").

A few checks are deliberately a little stricter than the server, because the server would store
a value that cannot work: `retryDelay` must be one of the three
delays the trigger handler knows (any other string makes every retry fail), `emoji` must be an
emoji code, `avatar`/`urls` must be http(s) addresses, `targetRoom` must name a room or user,
and `retryCount=0` is refused while retries are on (the server would silently store 4).

What exists on the server (rooms, users) is checked by the caller through REST
(`bot.integrations.fieldcheck`), from the `references` a plan lists; this module does no I/O.

Values a refusal echoes are the caller's own input, shortened; a secret field's value is never
echoed, and neither is the value of a field name that is not known (it may be a mistyped
`token`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

from bot.errors import UserInputError
from bot.integrations.service import display
from bot.integrations.similar import Measure, closest, either, rooms_like
from bot.integrations.wording import kind_word
from bot.rocketchat.models import INCOMING, OUTGOING, Integration

__all__ = [
    "BY_KEY",
    "EVENTS",
    "FIELDS",
    "NOT_SETTABLE",
    "RETRY_DELAYS",
    "Change",
    "EventUse",
    "FieldSpec",
    "Invalid",
    "Plan",
    "Problem",
    "Reference",
    "draft_changes",
    "find_field",
    "is_unset",
    "plan_changes",
    "refusal",
    "rooms_hint",
    "shown",
]

BOTH: Final = frozenset({INCOMING, OUTGOING})
OUT: Final = frozenset({OUTGOING})
IN: Final = frozenset({INCOMING})

# Outgoing scopes a channel entry may name (contract §2.4.5 step 3); stored lower-case here,
# because the server's permission check compares them case-sensitively (§2.4.5 step 6).
SCOPES: Final = ("all_public_channels", "all_private_groups", "all_direct_messages")
RETRY_DELAYS: Final = ("powers-of-ten", "powers-of-two", "increments-of-two")
DEFAULT_RETRY_COUNT: Final = 4
DEFAULT_RETRY_DELAY: Final = "powers-of-ten"
MAX_RETRY_COUNT: Final = 2_147_483_647  # a JavaScript-safe whole number; the server sets no limit


@dataclass(frozen=True)
class EventUse:
    channel: bool
    trigger_words: bool
    target_room: bool


# core-typings 8.8.1 `OutgoingIntegrationEvent` (contract §2.1). The development line's
# messageEdited/messageDeleted are left out: released servers refuse them.
EVENTS: Final[Mapping[str, EventUse]] = {
    "sendMessage": EventUse(True, True, False),
    "fileUploaded": EventUse(True, False, False),
    "roomArchived": EventUse(False, False, False),
    "roomCreated": EventUse(False, False, False),
    "roomJoined": EventUse(True, False, False),
    "roomLeft": EventUse(True, False, False),
    "userCreated": EventUse(False, False, True),
}


class Invalid(Exception):
    """One value a field cannot take; the text says what would be valid (internal).

    `bare_room` is a room entry typed without its `#` (`channel=alerts`): the planner then adds
    "did you mean `#alerts`?" when the caller is in a room of that name, or names the closest
    rooms they are in; never a room that does not exist or that the caller is not in."""

    def __init__(self, text: str, *, bare_room: str | None = None) -> None:
        super().__init__(text)
        self.bare_room = bare_room


class Parser(Protocol):
    def __call__(self, text: str, kind: str) -> Any: ...


@dataclass(frozen=True)
class FieldSpec:
    """One changeable field. `parse` turns one typed value (for a list field: one item) into its
    document value or raises `Invalid`; `split` is set for list fields only."""

    key: str
    kinds: frozenset[str]
    parse: Parser
    valid: str  # what a valid value looks like (markdown, as in the README)
    example: str  # a `set` argument that works, e.g. `alias="Guggy bot"`
    aliases: tuple[str, ...] = ()
    split: Callable[[str], list[str]] | None = None
    secret: bool = False
    lookup: Literal["channel", "poster"] | None = None  # what must exist on the server

    @property
    def is_list(self) -> bool:
        return self.split is not None


# --- value parsers --------------------------------------------------------------------------------

_TRUE: Final = frozenset({"true", "yes", "on", "y", "1", "enabled", "enable"})
_FALSE: Final = frozenset({"false", "no", "off", "n", "0", "disabled", "disable"})
_EMOJI: Final = re.compile(r":[A-Za-z0-9_+\-]+:")
_EMOJI_NAME: Final = re.compile(r"[A-Za-z0-9_+\-]+")
_NAME_CHARS: Final = re.compile(r"[^\s,#@]+")


def shown(text: str, limit: int = 40) -> str:
    """The caller's own input, echoed in a refusal: one line, short, in a code span."""
    flat = " ".join(text.split()).replace("`", "ˋ")
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"`{flat}`" if flat else '""'


def rooms_hint(word: str, rooms: Collection[str]) -> str:
    """`#a` or `#b`: the rooms of `rooms` (the caller's) that `word` may mean, as a refusal shows
    them (`bot.integrations.similar.rooms_like`); "" when none is close."""
    return either([shown(f"#{room}") for room in rooms_like(word, rooms)])


def _boolean(text: str, kind: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise Invalid(f"{shown(text)} is not true or false (yes/no and on/off work too)")


def _name(text: str, kind: str) -> str:
    value = text.strip()
    if not value:
        raise Invalid("the name can't be empty")
    return value


def _text(text: str, kind: str) -> str:
    return text.strip()  # empty clears it, as in the admin UI


def _emoji(text: str, kind: str) -> str:
    value = text.strip()
    if not value or _EMOJI.fullmatch(value):
        return value
    if _EMOJI_NAME.fullmatch(value.strip(":")):
        raise Invalid(f"write it as an emoji code with colons, e.g. :{value.strip(':')}: (empty clears it)")
    raise Invalid(f"{shown(value)} is not an emoji code such as :ghost: (empty clears it)")


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (read to check it: a port that is no number from 0 to 65535 raises)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)
    except ValueError:  # e.g. an invalid port or IPv6 literal
        return False


def _avatar(text: str, kind: str) -> str:
    value = text.strip()
    if value and not _is_http_url(value):
        raise Invalid("an avatar is an http(s) image address such as https://example.org/logo.png (empty clears it)")
    return value


def _url(text: str, kind: str) -> str:
    value = text.strip()
    if not _is_http_url(value):
        # Not echoed: webhook addresses often carry a secret.
        raise Invalid("each URL must be an http(s) address such as https://example.org/hook")
    return value


def _count(text: str, kind: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > MAX_RETRY_COUNT:
        raise Invalid(f"{shown(text)} is not a whole number from 0 to {MAX_RETRY_COUNT}")
    return int(value)


def _squash(word: str) -> str:
    return re.sub(r"[\s_.\-]", "", word).casefold()


_EVENT_BY_SQUASHED: Final = {_squash(name): name for name in EVENTS}


def _event(text: str, kind: str) -> str:
    found = _EVENT_BY_SQUASHED.get(_squash(text))
    if found is None:
        raise Invalid(f"{shown(text)} is not an event; use one of {', '.join(EVENTS)}")
    return found


def _retry_delay(text: str, kind: str) -> str:
    value = text.strip().lower()
    if value not in RETRY_DELAYS:
        raise Invalid(f"{shown(text)} is not a retry delay; use one of {', '.join(RETRY_DELAYS)}")
    return value


def _channel(text: str, kind: str) -> str:
    value = text.strip()
    if kind == OUTGOING and value.lower() in SCOPES:
        return value.lower()
    if value[:1] in ("#", "@") and _NAME_CHARS.fullmatch(value[1:]):
        return value
    scopes = f", or (outgoing) one of {', '.join(SCOPES)}" if kind == OUTGOING else ""
    bare = value if _NAME_CHARS.fullmatch(value) else None
    raise Invalid(f"{shown(value)} is not a channel entry: use #room or @user{scopes}", bare_room=bare)


def _target_room(text: str, kind: str) -> str:
    value = text.strip()
    if not value:
        return value
    if value[:1] in ("#", "@") and _NAME_CHARS.fullmatch(value[1:]):
        return value
    bare = value if _NAME_CHARS.fullmatch(value) else None
    raise Invalid(f"{shown(value)} is not a room: use #room or @user, or leave it empty to clear it", bare_room=bare)


def _username(text: str, kind: str) -> str:
    value = text.strip().removeprefix("@")
    if not _NAME_CHARS.fullmatch(value):
        raise Invalid(f"{shown(text)} is not a username; name an existing user, e.g. rocket.cat")
    return value


def _token(text: str, kind: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() for c in value):
        raise Invalid("a token is one word of text and can't be empty")  # the value is never echoed
    return value


def _trigger_word(text: str, kind: str) -> str:
    value = text.strip()
    if not value:
        raise Invalid("a trigger word can't be empty")
    return value


def _commas(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _commas_or_spaces(text: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", text) if part]


# --- the catalogue ------------------------------------------------------------------------------

_BOOLEAN = "true/false"


def _listed(words: Sequence[str], last: str = ", ") -> str:
    quoted = [f"`{word}`" for word in words]
    return ", ".join(quoted[:-1]) + last + quoted[-1]


# `valid` and `example` are the README's field table, cell for cell (a test keeps them in step).
FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("name", BOTH, _name, "any text, not empty", 'name="Guggy bot"', ("title",)),
    FieldSpec(
        "channel",
        BOTH,
        _channel,
        "`#room` or `@user` entries that exist (by name or id); outgoing also "
        f"{_listed(SCOPES)}; at least one, except for channel-less events",
        "channel=#alerts,#ops",
        ("channels", "room", "rooms", "postto"),
        split=_commas_or_spaces,
        lookup="channel",
    ),
    FieldSpec(
        "username",
        BOTH,
        _username,
        "an existing username: the user the messages are posted as",
        "username=rocket.cat",
        ("postas", "user", "poster"),
        lookup="poster",
    ),
    FieldSpec("alias", BOTH, _text, "any text; empty clears it", 'alias="Guggy bot"'),
    FieldSpec("avatar", BOTH, _avatar, "an http(s) image address; empty clears it", "avatar=https://example.org/a.png"),
    FieldSpec("emoji", BOTH, _emoji, "an emoji code with colons; empty clears it", "emoji=:ghost:", ("icon",)),
    FieldSpec("scriptEnabled", BOTH, _boolean, "`true`/`false` (`yes`/`no`, `on`/`off`)", "scriptEnabled=false"),
    FieldSpec(
        "overrideDestinationChannelEnabled",
        IN,
        _boolean,
        _BOOLEAN,
        "overrideDestinationChannelEnabled=true",
        ("overridedestinationchannel", "overridechannel"),
    ),
    FieldSpec("event", OUT, _event, _listed(tuple(EVENTS)), "event=roomJoined", ("trigger.event",)),
    FieldSpec(
        "urls",
        OUT,
        _url,
        "http(s) addresses, at least one",
        "urls=https://example.org/hook",
        ("url", "webhook", "webhooks"),
        split=_commas_or_spaces,
    ),
    FieldSpec(
        "triggerWords",
        OUT,
        _trigger_word,
        "comma-separated words; `sendMessage` only",
        "triggerWords=!deploy,!build",
        ("triggers", "trigger", "triggerword", "words"),
        split=_commas,
    ),
    FieldSpec("triggerWordAnywhere", OUT, _boolean, _BOOLEAN, "triggerWordAnywhere=true", ("anywhere", "wordanywhere")),
    FieldSpec(
        "targetRoom",
        OUT,
        _target_room,
        "`#room` or `@user` that exists; required by `userCreated`",
        "targetRoom=#general",
        ("targetchannel", "target"),
        lookup="channel",
    ),
    FieldSpec("token", OUT, _token, "one word, not empty; never shown", "token=s3cr3t", secret=True),
    FieldSpec("retryFailedCalls", OUT, _boolean, _BOOLEAN, "retryFailedCalls=true", ("retry", "retries")),
    FieldSpec(
        "retryCount",
        OUT,
        _count,
        "a whole number, 0 or more (at least 1 while retries are on)",
        "retryCount=5",
        ("retrycounts", "retrytimes"),
    ),
    FieldSpec("retryDelay", OUT, _retry_delay, _listed(RETRY_DELAYS, " or "), "retryDelay=powers-of-two"),
    FieldSpec("runOnEdits", OUT, _boolean, _BOOLEAN, "runOnEdits=true", ("onedits", "edits")),
    FieldSpec("impersonateUser", OUT, _boolean, _BOOLEAN, "impersonateUser=true", ("impersonate",)),
)

# Words people may try that are deliberately not settable here, with what to do instead.
NOT_SETTABLE: Final[Mapping[str, str]] = {
    "enabled": "use the enable and disable commands to switch an integration on or off",
    "enable": "use the enable and disable commands to switch an integration on or off",
    "disabled": "use the enable and disable commands to switch an integration on or off",
    "active": "use the enable and disable commands to switch an integration on or off",
    "script": (
        "scripts can't be changed from chat (they need review and an editor): use Administration → "
        "Integrations; scriptEnabled=false switches the stored script off"
    ),
    "code": "scripts can't be changed from chat: use Administration → Integrations",
    "scriptengine": "the script engine can't be changed from chat: use Administration → Integrations",
    "skiptranspile": "skipTranspile can't be changed from chat: use Administration → Integrations",
    "type": "an integration's type can't change; create a new one instead",
    "id": "an integration's id can't change",
    "userid": "set username instead: Rocket.Chat derives the user id from it",
}

_BY_NAME: Final[Mapping[str, FieldSpec]] = {
    _squash(word): spec for spec in FIELDS for word in (spec.key, *spec.aliases)
}
BY_KEY: Final[Mapping[str, FieldSpec]] = {spec.key: spec for spec in FIELDS}


def find_field(word: str) -> FieldSpec:
    """The field a typed name means (case-insensitive; `-`, `_`, `.` and spaces ignored)."""
    squashed = _squash(word)
    found = _BY_NAME.get(squashed)
    if found is not None:
        return found
    if squashed in NOT_SETTABLE:
        raise Invalid(f"{shown(word)}: {NOT_SETTABLE[squashed]}")
    close = closest([squashed], _BY_NAME, measure=Measure.WORD, limit=1)
    guess = f" Did you mean `{_BY_NAME[close[0]].key}`?" if close else ""
    raise Invalid(f"{shown(word)} is not a field I can set.{guess} Fields: {', '.join(s.key for s in FIELDS)}")


# --- the plan ---------------------------------------------------------------------------------------


class Assignment(Protocol):
    """What `commands.args.Assignment` provides (kept structural: this layer does not import commands)."""

    @property
    def field(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def raw_field(self) -> str: ...


@dataclass(frozen=True)
class Change:
    """One document key that changes. `because` is set when the caller did not ask for it but
    Rocket.Chat changes it as a consequence. Values are hidden from the repr (tokens)."""

    key: str
    before: Any = field(repr=False)
    after: Any = field(repr=False)
    because: str | None = None

    @property
    def secret(self) -> bool:
        spec = BY_KEY.get(self.key)
        return spec is not None and spec.secret


@dataclass(frozen=True)
class Reference:
    """A value that must name something existing: a `#room`/`@user` entry, or a post-as username.
    `rank` is where its field was typed (problems are listed in that order)."""

    key: str
    entry: str
    kind: Literal["channel", "poster"]
    rank: int = 0


@dataclass(frozen=True)
class Problem:
    """One reason a change is refused: `text` names the field and says what would be valid;
    `rank` is where the caller typed the field it is about (a field not typed comes last)."""

    text: str
    rank: int = 0


@dataclass(frozen=True)
class Plan:
    """A validated change of one integration: what changes (asked for, then consequences), notes
    for the preview, and what must exist on the server before it may be written."""

    integration: Integration = field(repr=False)
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()
    references: tuple[Reference, ...] = ()
    # What makes it impossible (`draft_changes`); a plan from `plan_changes` has none.
    problems: tuple[Problem, ...] = ()

    @property
    def updates(self) -> dict[str, Any]:
        """The changes in the document form `IntegrationService.apply_changes` takes."""
        return {change.key: change.after for change in self.changes}

    @property
    def empty(self) -> bool:
        return not self.changes

    def with_value(self, key: str, value: Any) -> Plan:
        """The plan with one requested value replaced (e.g. a username in its stored spelling)."""
        changes = []
        for change in self.changes:
            if change.key != key:
                changes.append(change)
            elif not _same(change.before, value):
                changes.append(dataclasses.replace(change, after=value))
        return dataclasses.replace(self, changes=tuple(changes))


def is_unset(value: Any) -> bool:
    """Null, absent (None), "" and [] all mean "not set" in a stored document."""
    return value is None or value in ("", [])


def _same(a: Any, b: Any) -> bool:
    """Equal as stored values: null, absent, "" and [] all mean "not set"."""
    if is_unset(a) and is_unset(b):
        return True
    return bool(a == b)


def _current_list(doc: Mapping[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _remove(working: list[str], item: str) -> bool:
    """Remove `item` (exact, else the one case-insensitive match); False when absent."""
    if item in working:
        working.remove(item)
        return True
    matches = [v for v in working if v.casefold() == item.casefold()]
    if len(matches) == 1:
        working.remove(matches[0])
        return True
    return False


# The rank of a problem about a field the caller did not type (a rule across fields): listed last.
_AFTER_EVERY_TYPED_FIELD: Final = 1_000_000


class _Planner:
    """One run of `plan_changes` (collects problems instead of stopping at the first)."""

    def __init__(self, current: Integration, rooms: Collection[str]) -> None:
        self.current = current
        self.rooms = rooms
        self.doc = current.document
        self.kind = current.type
        self.problems: list[Problem] = []
        self.values: dict[str, Any] = {}
        self.asked: list[str] = []
        self.added: dict[str, list[str]] = {}
        self.given: set[str] = set()  # fields with one value already assigned
        self.ranks: dict[str, int] = {}  # field → where it was first typed
        self.rank = 0  # the assignment being read
        self.refused: set[str] = set()  # fields with a value refused
        self.checking = False  # in the rules across fields (`check`)

    def problem(self, spec: FieldSpec | None, text: str) -> None:
        if spec is None:
            self.problems.append(Problem(text, self.rank))
        elif not self.checking:
            self.refused.add(spec.key)
            self.problems.append(Problem(f"{spec.key}: {text}", self.rank))
        elif spec.key not in self.refused:  # its refused value already says what is wrong
            self.problems.append(Problem(f"{spec.key}: {text}", self.ranks.get(spec.key, _AFTER_EVERY_TYPED_FIELD)))

    def invalid(self, spec: FieldSpec, exc: Invalid) -> None:
        """A value `spec.parse` refused; a room typed without `#` gets the rooms it may mean."""
        rooms = rooms_hint(exc.bare_room, self.rooms) if exc.bare_room is not None else ""
        hint = f" (did you mean {rooms}?)" if rooms else ""
        self.problem(spec, f"{exc}{hint}")

    def assign(self, assignment: Assignment, rank: int = 0) -> None:
        self.rank = rank
        try:
            spec = find_field(assignment.field)
        except Invalid as exc:
            self.problem(None, str(exc))
            return
        self.ranks.setdefault(spec.key, rank)
        if self.kind not in spec.kinds:
            other = kind_word(next(iter(spec.kinds)))
            self.problem(
                spec, f"only {other} webhooks have it, and {shown(self.current.name)} is {kind_word(self.kind)}"
            )
            return
        if spec.key not in self.asked:
            self.asked.append(spec.key)
        if spec.split is None:
            self._assign_scalar(spec, assignment)
        else:
            self._assign_list(spec, spec.split, assignment)

    def _assign_scalar(self, spec: FieldSpec, assignment: Assignment) -> None:
        # `alias=-bot` or `retryCount=-1` reach us as "remove": a field with one value has nothing
        # to remove from, so the sign is part of the value the caller typed.
        value = {"add": "+", "remove": "-"}.get(assignment.op, "") + assignment.value
        if spec.key in self.given:
            self.problem(spec, "is given twice; give it once")
            return
        self.given.add(spec.key)
        try:
            self.values[spec.key] = spec.parse(value, self.kind)
        except Invalid as exc:
            self.invalid(spec, exc)

    def _assign_list(self, spec: FieldSpec, split: Callable[[str], list[str]], assignment: Assignment) -> None:
        working: list[str] = self.values.setdefault(spec.key, _current_list(self.doc, spec.key))
        items = split(assignment.value)
        if assignment.op == "set":
            working.clear()
        elif not items:
            self.problem(spec, f"nothing to {assignment.op}")
        for index, typed in enumerate(items):
            op, item = assignment.op, typed
            # `channel=+#a,+#b`: after the first, an item may carry its own sign.
            if op != "set" and index > 0 and typed[:1] in ("+", "-") and len(typed) > 1:
                op, item = ("add" if typed[0] == "+" else "remove"), typed[1:]
            if op == "remove":
                self._remove_item(spec, working, item)
                continue
            try:
                value = spec.parse(item, self.kind)
            except Invalid as exc:
                self.invalid(spec, exc)
                continue
            if value not in working:
                working.append(value)
                self.added.setdefault(spec.key, []).append(value)

    def _remove_item(self, spec: FieldSpec, working: list[str], item: str) -> None:
        if _remove(working, item):
            return
        if spec.key == "urls":  # stored webhook addresses may carry secrets
            missing, has = display("urls", [item]), display("urls", working) if working else "nothing"
        else:
            missing, has = item, ", ".join(working) if working else "nothing"
        self.problem(spec, f"{shown(missing)} is not in the list (it has: {shown(has, 80)})")

    # --- rules across fields ------------------------------------------------------------------

    def intended(self) -> dict[str, Any]:
        return {**self.doc, **self.values}

    def check(self) -> tuple[dict[str, tuple[Any, str]], list[str]]:
        """Cross-field rules on the intended document: problems, and the consequences Rocket.Chat
        would store anyway (key → (value, why))."""
        self.checking = True
        derived: dict[str, tuple[Any, str]] = {}
        notes: list[str] = []
        want = self.intended()
        name = want.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem(BY_KEY["name"], "the integration has no name; set one, e.g. name=Guggy")
        channels = want.get("channel") if isinstance(want.get("channel"), list) else []
        if self.kind == INCOMING:
            if not channels:
                self.problem(
                    BY_KEY["channel"], "an incoming webhook needs at least one #room or @user, e.g. channel=#alerts"
                )
            self._poster_note(notes)
            return derived, notes
        event = want.get("event")
        use = EVENTS.get(event) if isinstance(event, str) else None
        if use is None:
            self.problem(
                BY_KEY["event"],
                f"the stored event {shown(str(event))} is not one Rocket.Chat accepts; set one of {', '.join(EVENTS)}",
            )
            return derived, notes
        if use.channel and not channels:
            self.problem(
                BY_KEY["channel"], f"the {event} event needs at least one #room or @user, e.g. channel=#alerts"
            )
        if not use.channel and channels:
            if "channel" in self.asked:
                self.problem(BY_KEY["channel"], f"the {event} event does not use channels; leave channel out")
            else:
                derived["channel"] = ([], f"the {event} event uses no channels")
        words = want.get("triggerWords")
        if not use.trigger_words and isinstance(words, list) and words:
            if "triggerWords" in self.asked:
                self.problem(BY_KEY["triggerWords"], f"only the sendMessage event uses trigger words, not {event}")
            else:
                derived["triggerWords"] = (None, f"the {event} event uses no trigger words")
        if use.trigger_words and "triggerWords" in self.asked and not words:
            notes.append("With no trigger words it fires on every message in its channels.")
        if use.target_room and is_unset(want.get("targetRoom")):
            self.problem(BY_KEY["targetRoom"], f"the {event} event needs a target room, e.g. targetRoom=#general")
        if "targetRoom" in self.asked and not use.target_room and not is_unset(want.get("targetRoom")):
            notes.append(f"targetRoom is only used by the userCreated event, not by {event}.")
        urls = want.get("urls")
        if not (isinstance(urls, list) and any(isinstance(u, str) and u.strip() for u in urls)):
            self.problem(
                BY_KEY["urls"], "an outgoing webhook needs at least one URL, e.g. urls=https://example.org/hook"
            )
        token = want.get("token")
        if not isinstance(token, str) or not token.strip():
            self.problem(
                BY_KEY["token"], "it has no token, and Rocket.Chat refuses to update it without one: add token=<token>"
            )
        poster = want.get("username")
        if not isinstance(poster, str) or not poster.strip():
            self.problem(BY_KEY["username"], "it has no post-as user; add one, e.g. username=rocket.cat")
        self._retries(want, derived, notes)
        return derived, notes

    def _retries(self, want: Mapping[str, Any], derived: dict[str, tuple[Any, str]], notes: list[str]) -> None:
        if want.get("retryFailedCalls") is not True:
            if {"retryCount", "retryDelay"} & set(self.asked):
                notes.append("retryCount and retryDelay only matter while retryFailedCalls is on.")
            return
        count = want.get("retryCount")
        if self.values.get("retryCount") == 0:
            self.problem(
                BY_KEY["retryCount"],
                "must be at least 1 while retryFailedCalls is on (Rocket.Chat would store 4); "
                "to stop retrying, set retryFailedCalls=false",
            )
        elif not (isinstance(count, int | float) and not isinstance(count, bool) and count > 0):
            derived["retryCount"] = (DEFAULT_RETRY_COUNT, "Rocket.Chat's default when retries are on")
        elif isinstance(count, float) and count != int(count):
            derived["retryCount"] = (int(count), "Rocket.Chat stores whole numbers")
        delay = want.get("retryDelay")
        if not isinstance(delay, str) or not delay.strip():
            derived["retryDelay"] = (DEFAULT_RETRY_DELAY, "Rocket.Chat's default when retries are on")
        elif delay != delay.lower():
            derived["retryDelay"] = (delay.lower(), "Rocket.Chat stores it in lower case")

    def _poster_note(self, notes: list[str]) -> None:
        poster = self.values.get("username")
        if isinstance(poster, str) and not _same(self.doc.get("username"), poster):
            # [7.x]/[8.x] incoming update (contract §2.4.3 step 8).
            notes.append(f"Rocket.Chat gives {shown(poster)} the bot role when it saves this.")

    def references(self, changes: Sequence[Change]) -> tuple[Reference, ...]:
        found: list[Reference] = []
        changed = {c.key for c in changes}
        for key in self.asked:
            spec = BY_KEY[key]
            if key not in changed or spec.lookup is None:
                continue
            rank = self.ranks.get(key, 0)
            if spec.lookup == "poster":
                found.append(Reference(key, str(self.values[key]), "poster", rank))
            elif spec.is_list:
                # Only entries being added: the stored ones are Rocket.Chat's to re-check.
                before = _current_list(self.doc, key)
                found.extend(
                    Reference(key, entry, "channel", rank)
                    for entry in self.added.get(key, [])
                    if entry not in before and entry[:1] in ("#", "@")
                )
            elif self.values[key]:
                found.append(Reference(key, str(self.values[key]), "channel", rank))
        return tuple(found)


def refusal(problems: Sequence[Problem]) -> UserInputError:
    """One refusal listing every problem, in the order the caller typed the fields."""
    ordered = sorted(problems, key=lambda problem: problem.rank)
    if len(ordered) == 1:
        return UserInputError(f"{ordered[0].text}. Nothing was changed.")
    lines = "\n".join(f"• {p.text}" for p in ordered)
    return UserInputError(f"I changed nothing:\n{lines}")


def plan_changes(
    document: Mapping[str, Any] | Integration, assignments: Sequence[Assignment], *, rooms: Collection[str] = ()
) -> Plan:
    """The validated change `assignments` make to `document`; `UserInputError` listing every
    problem (each naming its field and what would be valid) when any value is unusable.
    `rooms` are the names of the rooms the caller is in: the only rooms a refusal suggests."""
    plan = draft_changes(document, assignments, rooms=rooms)
    if plan.problems:
        raise refusal(plan.problems)
    return plan


def draft_changes(
    document: Mapping[str, Any] | Integration, assignments: Sequence[Assignment], *, rooms: Collection[str] = ()
) -> Plan:
    """`plan_changes` that returns the problems in the plan instead of raising them, so the
    caller can add what only the server can tell (`bot.integrations.fieldcheck`) and refuse once, with all.
    The changes of a plan with problems are those of the values that were usable."""
    current = Integration.of(document)
    if current.type not in (INCOMING, OUTGOING):
        raise UserInputError(f"{shown(current.name)} has the unknown type {shown(current.type)}; nothing was changed")
    planner = _Planner(current, rooms)
    if not assignments:
        raise UserInputError("say which field to change, e.g. alias=bot. Nothing was changed.")
    for rank, assignment in enumerate(assignments):
        planner.assign(assignment, rank)
    derived, notes = planner.check()
    problems = tuple(planner.problems)
    doc = current.document
    changes: list[Change] = []
    for key in planner.asked:
        if key not in planner.values:  # its value was refused
            continue
        value = planner.values[key]
        if not _same(doc.get(key), value):
            changes.append(Change(key, doc.get(key), value))
    for key, (value, why) in derived.items():
        if not _same(doc.get(key), value):
            changes.append(Change(key, doc.get(key), value, why))
    if not any(c.because is None for c in changes):
        return Plan(current, (), problems=problems)
    return Plan(current, tuple(changes), tuple(notes), planner.references(changes), problems)
