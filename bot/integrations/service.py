"""Finding integrations by name and changing them without losing a field (contract §2.4, gotchas 1–6, 22).

Theory of operation
-------------------
`PUT integrations.update` is a full replacement: every optional field the body omits is stored
as null on a real server (`ignoreUndefined: false`, §2.4.4) — for outgoing webhooks that wipes
trigger words (it then fires on *every* message), scripts, retry settings; for incoming ones on
7.x servers alias/avatar/emoji/script. So every change is a read-modify-write of the whole
integration:

    resolve → may_update (caller) → re-read (integrations.get) → channel rules (caller)
    → nothing to do? stop → build the complete body → PUT once → verify the stored result

The re-read is skipped when the document was read from the server by this very command a
moment ago (`resolve`, then `fresh=True`): a name is resolved through `integrations.list`,
whose pages carry complete documents (token, script and all, contract §2.2), so a second
read would return the same document one round trip later and narrow no race (Rocket.Chat has
no conditional write; the verification below is what catches a write that did not stick).
A document handed in from elsewhere (a timer, an audit row, an earlier command) is re-read.

The stored result is verified on the document the PUT answers with: the update route re-reads
the integration from the database after writing and returns it (§2.4.2 step 3, the same in
every version read, legacy 7.x wiping update included), so it is the stored document, not an
echo of the body.

`build_update_body` is the safe recipe of §2.4.4: the stored `type` (the server dispatches on
the body's type), the outgoing schema's exact whitelist (it is closed), `channel` as a comma
string, arrays kept arrays, the outgoing `token` sent back, nulls passed where the schema allows
them. When no lossless body exists (an outgoing webhook without a token or URLs, an incoming one
without channels) it refuses with `NotUpdatable` and writes nothing.

After the write, the stored document is compared with the intended one field by field. The only
differences tolerated are the ones the server makes on *every* write of the same data (listed in
`_normalised`) and server-managed fields (`_updatedAt`, `_updatedBy`, `userId`, the compiled
script). Anything else is a `VerificationFailed` with the differences, secrets masked.

A PUT that times out may or may not have landed; instead of blindly re-sending, the document is
re-read: if it already holds the intended values the write landed; if it is untouched since our
read the body is re-sent; if someone else changed it meanwhile nothing is re-sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import stamina

from bot import logs
from bot.errors import (
    AmbiguousIntegration,
    AmbiguousReading,
    Candidate,
    IntegrationNotFound,
    NotUpdatable,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    ServerRejected,
    StateUnavailable,
    Unavailable,
    UserInputError,
    VerificationFailed,
)
from bot.integrations.authz import (
    CallerRights,
    Decision,
    Document,
    RoomMemo,
    may_list,
    may_update,
    may_view,
    may_write,
    room_meanings,
    visible_in_list,
)
from bot.integrations.call_failures import MASK, mask_url
from bot.integrations.locks import Held, IntegrationLocks, LocalIntegrationLocks, ReadMark
from bot.integrations.similar import integration_suggestions
from bot.normalize import name_key, spelled
from bot.rocketchat.models import INCOMING, OUTGOING, Integration, UpdateOutcome
from bot.rocketchat.rest import RestClient
from bot.tasks import background
from bot.text import quote_name

log = logs.get_logger("bot.integrations")  # the `logger` operators filter on: kept when the module moved

# Incoming branch of the update schema (open: `username` is an understood extra, §2.4.3 step 7).
INCOMING_FIELDS: Final = (
    "alias",
    "avatar",
    "emoji",
    "script",
    "scriptEngine",
    "overrideDestinationChannelEnabled",
    "skipTranspile",
    "username",
)
# Outgoing branch: exactly the schema's properties except `target_url` (we identify by id).
OUTGOING_FIELDS: Final = (
    "username",
    "event",
    "targetRoom",
    "urls",
    "triggerWords",
    "triggerWordAnywhere",
    "token",
    "skipTranspile",
    "scriptEngine",
    "script",
    "runOnEdits",
    "retryFailedCalls",
    "retryCount",
    "retryDelay",
    "impersonateUser",
    "alias",
    "avatar",
    "emoji",
)
COMMON_FIELDS: Final = ("name", "enabled", "scriptEnabled", "channel")
# How old a read may be (seconds, from its answer to the lock's) for a change to write from it
# without reading again (`IntegrationService.editing`): read "a moment ago", a second read narrows
# no race. A change queued behind a burst may wait minutes (bot/state/postgres.py, `LOCK_WAIT`), and
# a command's steps between its look-up and its lock (its caller's rights read, rate-limited for up
# to 60 s) as long: an edit made in Rocket.Chat's admin UI meanwhile, which nothing of the bot's
# records, was written over.
READ_TRUSTED_WAIT: Final = 30.0
# Keys the schema rejects as null (besides the required ones): omitted when stored as null.
NON_NULLABLE: Final = frozenset({"scriptEngine", "username", "event"})

_STRING_FIELDS: Final = frozenset(
    {"name", "alias", "avatar", "emoji", "script", "scriptEngine", "username", "event", "targetRoom", "token"}
    | {"retryDelay"}
)
_BOOL_FIELDS: Final = frozenset(
    {"enabled", "scriptEnabled", "overrideDestinationChannelEnabled", "skipTranspile", "triggerWordAnywhere"}
    | {"runOnEdits", "retryFailedCalls", "impersonateUser"}
)
_LIST_FIELDS: Final = frozenset({"urls", "triggerWords"})

CHANNELLESS_EVENTS: Final = frozenset({"roomArchived", "roomCreated", "userCreated"})
TRIGGER_WORD_EVENTS: Final = frozenset({"sendMessage"})
DEFAULT_SCRIPT_ENGINE: Final = "isolated-vm"
# Written by the server on every update, or derived by it: never compared.
SERVER_MANAGED: Final = frozenset({"_updatedAt", "_updatedBy", "userId", "scriptCompiled", "scriptError"})
_MISSING: Final = object()
# What an integration `_id` looks like (§2.1): 24 hex characters (ObjectId, 6.x and later) or
# 17 characters of Meteor's `Random.id` alphabet (very old ones). Matched loosely (any letters
# and digits of those lengths); a query of another shape is looked up by id only when no name
# matches (`IntegrationService.resolve`).
_ID_SHAPE: Final = re.compile(r"[0-9A-Za-z]{17}|[0-9A-Za-z]{24}")


def looks_like_id(query: str) -> bool:
    """Whether `query` has the shape of an integration id (so resolving it tries the id first)."""
    return _ID_SHAPE.fullmatch(query) is not None


# The characters of a typed name the server's name search can be given as they are: printable
# ASCII that `normalize` neither makes nor changes. It turns a phone's quotes and dashes into `'`,
# `"`, `-` and `--`, any run of spaces into one, and composes accents: a name stored with those
# (`Bob’s hook`, `Jenkins – nightly`, two spaces, `Cafe\u0301`) does not hold its typed spelling.
_PLAIN_RUN: Final = re.compile(r"[!#-&(-,.-~]+")
# A shorter plain run would make the search read most integrations: the reading itself is searched,
# when a stored name holds it as typed (`_kept_as_typed`); else every integration is read.
MIN_SEARCH: Final = 3
# What `normalize` turns other characters into: a stored name may hold those others instead.
_MADE_BY_NORMALIZE: Final = frozenset("'\"- ")


def _kept_as_typed(text: str) -> bool:
    """Whether a stored name that reads as `text` holds it as typed: no quote, dash or space in it
    (what `normalize` makes of a phone's punctuation and of runs of spaces). A composed accent is
    searched as typed, as before: a stored decomposed one is found when nothing else matches."""
    return not any(char in _MADE_BY_NORMALIZE for char in text)


def search_text(readings: Sequence[str]) -> str | None:
    """The text one `integrations.list?name=` search is made for, to find every stored name that
    any of `readings` may name: the longest plain run (`_PLAIN_RUN`) of the shortest reading, which
    the others start with (`Grafana` for `Grafana spamming the channel`, `hook` for `Bob's hook`);
    None when the readings share no start, or when the shortest has no plain run of MIN_SEARCH
    and is not kept as typed (`Ed's`: `Ed’s bot` does not hold it, and a search that found only
    a plain twin `Ed's bot` would never read the listing that finds it): everything is read."""
    present = [reading for reading in readings if reading]
    if not present:
        return None
    shortest = min(present, key=len)
    if not all(reading.startswith(shortest) for reading in present):
        return None
    longest = max(_PLAIN_RUN.findall(shortest), key=len, default="")
    if longest == shortest or len(longest) >= MIN_SEARCH:
        return longest
    return shortest if _kept_as_typed(shortest) else None


class _Names:
    """Documents by the normal form of their name (`name_key`): many readings matched against one read."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self._by_key: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            name = doc.get("name")
            if isinstance(name, str):
                self._by_key.setdefault(name_key(name), []).append(doc)

    def visible(self, key: str, kind: str | None, rights: CallerRights) -> list[dict[str, Any]]:
        """The documents whose name's normal form is `key`, of `kind`, that the caller's own list shows."""
        return [
            doc
            for doc in self._by_key.get(key, ())
            if (kind is None or doc.get("type") == kind) and visible_in_list(rights, doc)
        ]


def _worth_scoring(readings: Sequence[str], visible: Sequence[Integration]) -> list[str]:
    """The readings "did you mean" scores: those no longer than twice the longest name visible (and
    a typo's worth): a longer one cannot be a mistyped name, and scoring each of a thousand words'
    readings against every name would keep the event loop for seconds."""
    bound = 2 * max((len(integration.name) for integration in visible), default=0) + 10
    present = [reading for reading in readings if reading]
    return [reading for reading in present if len(reading) <= bound] or present[-1:]


def normalize_kind(kind: str | None) -> str | None:
    """`incoming`/`in`/`webhook-incoming` → `webhook-incoming` (same for outgoing); None stays None."""
    if kind is None:
        return None
    word = kind.strip().lower()
    if word in ("incoming", "in", INCOMING):
        return INCOMING
    if word in ("outgoing", "out", OUTGOING):
        return OUTGOING
    raise UserInputError(f"unknown integration kind {kind!r}: use incoming or outgoing")


def updatable_fields(kind: str) -> frozenset[str]:
    """The document fields a change may set for this type."""
    extra = INCOMING_FIELDS if kind == INCOMING else OUTGOING_FIELDS if kind == OUTGOING else ()
    return frozenset((*COMMON_FIELDS, *extra))


# --- the body -----------------------------------------------------------------------------------


def _unchanged(found: Integration, changes: Mapping[str, Any]) -> bool:
    """Whether `found` already has every value of `changes` (a write would change nothing)."""
    return all(found.document.get(k, _MISSING) == v for k, v in changes.items())


def intended_document(doc: Mapping[str, Any] | Integration, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The stored document with `changes` applied: what the integration should look like after."""
    current = Integration.of(doc)
    allowed = updatable_fields(current.type)
    refused = sorted(k for k in changes if k not in allowed)
    if refused:
        raise UserInputError(f"cannot change {', '.join(refused)} of {quote_name(current.name)}")
    return {**current.to_dict(), **{k: v for k, v in changes.items()}}


def build_update_body(doc: Mapping[str, Any] | Integration, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The complete `integrations.update` body that stores `doc` with `changes` and nothing else changed."""
    current = Integration.of(doc)
    intended = intended_document(current, changes)
    kind = current.type

    def refuse(reason: str) -> NotUpdatable:
        return NotUpdatable(current.id, current.name, reason)

    if kind not in (INCOMING, OUTGOING):
        raise refuse(f"unknown integration type {kind!r}")
    for key in (*COMMON_FIELDS, *(INCOMING_FIELDS if kind == INCOMING else OUTGOING_FIELDS)):
        _check_type(key, intended.get(key), refuse)

    name = intended.get("name")
    if not isinstance(name, str):
        raise refuse("it has no name")
    body: dict[str, Any] = {
        "type": kind,  # the stored type: the server dispatches on the body's (gotcha 5)
        "integrationId": current.id,
        "name": name,
        "enabled": intended.get("enabled") is True,
        # Stored null/absent: the server's own checks are `scriptEnabled === true`, so False is the same.
        "scriptEnabled": intended.get("scriptEnabled") is True,
        "channel": _channel_string(intended.get("channel"), refuse),
    }
    if kind == INCOMING:
        if not body["channel"]:
            raise refuse("it has no channel, and Rocket.Chat refuses an incoming webhook without one")
        fields: tuple[str, ...] = INCOMING_FIELDS
    else:
        event = intended.get("event")
        if not isinstance(event, str) or not event:
            raise refuse("it has no event")
        if not body["channel"] and event not in CHANNELLESS_EVENTS:
            raise refuse(f"it has no channel, and Rocket.Chat refuses a {event} webhook without one")
        if not isinstance(intended.get("username"), str) or not intended["username"].strip():
            raise refuse("it has no post-as username")
        token = intended.get("token")
        if not isinstance(token, str) or not token.strip():
            raise refuse(
                "it has no token; Rocket.Chat refuses an outgoing update without one, and inventing one would change it"
            )
        if not _non_blank(intended.get("urls")):
            raise refuse("it has no URL; Rocket.Chat refuses an outgoing update without one")
        fields = OUTGOING_FIELDS
    for key in fields:
        if key not in intended:
            continue
        value = intended[key]
        if value is None:
            # Null where the schema allows it is sent back as null (same stored result). Two
            # exceptions: non-nullable keys must be left out, and outgoing `runOnEdits` because
            # the server turns a *present* null into false (`runOnEdits === true`).
            if key in NON_NULLABLE or (kind == OUTGOING and key == "runOnEdits"):
                continue
            body[key] = None
        elif key in _LIST_FIELDS:
            body[key] = _non_blank(value)  # schema: items minLength 1; the server drops blanks too
        else:
            body[key] = value
    return body


def _check_type(key: str, value: Any, refuse: Any) -> None:
    if value is None:
        return
    if key in _STRING_FIELDS:
        ok = isinstance(value, str)
    elif key in _BOOL_FIELDS:
        ok = isinstance(value, bool)
    elif key == "retryCount":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif key in _LIST_FIELDS or key == "channel":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = True
    if not ok:
        raise refuse(f"its stored {key} is not a {_type_word(key)}")


def _type_word(key: str) -> str:
    if key in _STRING_FIELDS:
        return "text"
    if key in _BOOL_FIELDS:
        return "true/false value"
    if key == "retryCount":
        return "number"
    return "list of texts"


def _channel_string(channels: Any, refuse: Any) -> str:
    """Stored array → the comma-separated string the update expects (gotcha 3)."""
    if channels is None:
        return ""
    entries = [c.strip() for c in channels if c.strip()]
    if any("," in entry for entry in entries):
        raise refuse("a channel entry contains a comma, which the comma-separated form cannot carry")
    return ",".join(entries)


def _non_blank(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, str) and v.strip()]


# --- verification -------------------------------------------------------------------------------


def _normalised(doc: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A document as any update of the same data stores it, for comparison.

    Nulls and absent keys are the same. The rest mirrors what the server does on every write
    (§2.1, §2.4.3, §2.4.5): `scriptEngine` defaults to isolated-vm, `skipTranspile` and
    `scriptEnabled` are false unless true, blank URLs and trigger words are dropped, trigger
    words are dropped for events that don't use them (an empty list means the same as none),
    `runOnEdits` is made a strict boolean, retry settings are defaulted and lower-cased when
    retries are on, and a channel-less event stores no channels.
    """
    out = {k: v for k, v in doc.items() if v is not None and k not in SERVER_MANAGED}
    out.setdefault("scriptEngine", DEFAULT_SCRIPT_ENGINE)
    out["skipTranspile"] = out.get("skipTranspile") is True
    out["scriptEnabled"] = out.get("scriptEnabled") is True
    channels = out.get("channel")
    out["channel"] = (
        [c.strip() for c in channels if isinstance(c, str) and c.strip()] if isinstance(channels, list) else []
    )
    if kind != OUTGOING:
        return out
    event = out.get("event")
    if event in CHANNELLESS_EVENTS:
        out["channel"] = []
    if "urls" in out:
        out["urls"] = _non_blank(out["urls"])
    words = _non_blank(out.pop("triggerWords", None))
    if words and event in TRIGGER_WORD_EVENTS:
        out["triggerWords"] = words
    if "runOnEdits" in out:
        out["runOnEdits"] = out["runOnEdits"] is True
    if out.get("retryFailedCalls"):
        count = out.get("retryCount")
        out["retryCount"] = int(count) if isinstance(count, int | float) and count > 0 else 4
        delay = out.get("retryDelay")
        out["retryDelay"] = delay.lower() if isinstance(delay, str) and delay.strip() else "powers-of-ten"
    return out


def differences(
    before: Mapping[str, Any], intended: Mapping[str, Any], stored: Mapping[str, Any]
) -> dict[str, tuple[str, str]]:
    """Fields where `stored` differs from `intended`, as masked display strings.

    `before` is the document the change started from; it is used for the one server-managed
    field that still matters: a running script (enabled, compiled) whose text, engine and
    switch did not change must still be compiled afterwards, or it silently stopped running.
    """
    kind = str(intended.get("type") or before.get("type") or "")
    want, got = _normalised(intended, kind), _normalised(stored, kind)
    found: dict[str, tuple[str, str]] = {}
    for key in sorted(set(want) | set(got)):
        a, b = want.get(key, _MISSING), got.get(key, _MISSING)
        if a != b:
            found[key] = (display(key, a), display(key, b))
    script_kept = all(before.get(k) == intended.get(k) for k in ("script", "scriptEnabled", "scriptEngine"))
    was_running = before.get("scriptEnabled") is True and bool(before.get("scriptCompiled"))
    if script_kept and was_running and not stored.get("scriptCompiled"):
        found["scriptCompiled"] = ("compiled script", "(absent)")
    return found


def display(key: str, value: Any) -> str:
    """A value for humans and logs: tokens masked, URLs cut to `scheme://host[:port]/…`
    (`call_failures.mask_url`, the one URL masker), scripts summarised."""
    if value is _MISSING or value is None:
        return "(absent)"
    if key == "token":
        return MASK
    if key == "script" and isinstance(value, str):
        return f"<script, {len(value)} characters>"
    if key in ("urls", "avatar") or (key == "url" and isinstance(value, str)):
        values = value if isinstance(value, list) else [value]
        shown = [mask_url(v) if isinstance(v, str) else repr(v) for v in values]
        return ", ".join(shown) if isinstance(value, list) else shown[0]
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# --- the service --------------------------------------------------------------------------------

NOT_AUTHORIZED: Final = "not-authorized"


async def read_integration(rest: RestClient, integration_id: str) -> dict[str, Any] | None:
    """`integrations.get` with the bot's rights; None when it does not exist. Both "does not
    exist" and "not-authorized" are a 400 without errorType (contract §2.3): only the text tells
    them apart, and a refusal must not pass for a deletion (it raises `ServerRejected`)."""
    try:
        return await rest.integrations_get(integration_id)
    except ServerRejected as exc:
        if exc.status == 400 and exc.error_type is None and exc.error != NOT_AUTHORIZED:
            return None
        raise


# How long a write whose answer was lost is chased (re-read, re-sent when provably not stored)
# before the person is told the outcome can't be known. Far below any chat user's patience, far
# above a typical blip (a restart behind a proxy, a burst of 5xx, a dropped connection).
SETTLE_SECONDS: Final = 20.0


class _Unsettled(Exception):
    """Whether a write whose answer was lost was stored can't be told yet (see `_write`)."""


@dataclass(frozen=True)
class Prefetch:
    """A read begun by `IntegrationService.prefetch` (or `begin_prefetch`) for the `resolve` of
    the same command."""

    query: str
    kind: str | None
    mark: ReadMark  # taken before the read began: what `editing` trusts it by
    read: asyncio.Task[Any]  # the document by id (or None), or the documents its name search found


@dataclass(frozen=True)
class _EarlyIntent:
    """A write's intent being journaled while the integration's lock is taken (`apply_changes`)."""

    before: Integration  # the document it was built from: used only if the lock trusts that very read
    intended: dict[str, Any]
    task: asyncio.Task[None]


# The current command's prefetched read (one per command: a task's context is its own).
_prefetched: ContextVar[Prefetch | None] = ContextVar("prefetched", default=None)


class IntegrationService:
    """Resolve, authorize, change and verify integrations through the bot's REST client."""

    def __init__(self, rest: RestClient, *, locks: IntegrationLocks | None = None) -> None:
        self._rest = rest
        self._locks: IntegrationLocks = locks if locks is not None else LocalIntegrationLocks()

    async def resolve(
        self, query: str, *, kind: str | None = None, rights: CallerRights, thorough: bool = False
    ) -> Integration:
        """The one integration `query` names for this caller: an id, else an exact name
        (`resolve_readings` with one reading)."""
        _index, found = await self.resolve_readings([query], kind=kind, rights=rights, thorough=thorough)
        return found

    async def resolve_readings(
        self, queries: Sequence[str], *, kind: str | None = None, rights: CallerRights, thorough: bool = False
    ) -> tuple[int, Integration]:
        """The integration the first of `queries` that names one names, and that query's index:
        the readings of what was typed (`disable Noisy hook`: `Noisy hook`, then `Noisy`), in the
        order they are tried. Raises `IntegrationNotFound` (with "did you mean" suggestions,
        `bot.integrations.similar`) when none names an integration the caller can see, and
        `AmbiguousReading` when a later reading names another integration than the first that
        names one (`Grafana spamming` and `Grafana`): the longer must not win silently, since
        anyone who may create an integration could name one to catch a name and its reason.

        By id: `integrations.get`, kept only if the caller could read it by id (§2.3). By name:
        names equal to the query in their normal form (`bot.normalize.name_key`: what `normalize`
        does to typed text, done to the stored name too), of `kind`, among what the caller's own
        list would show (§2.2), so nothing the caller cannot see is revealed, not even its
        existence. Names that only look alike (an invisible character inside, full-width letters,
        a phone's apostrophe or dash) are the same name and come out ambiguous, with their ids.
        Among several such matches, the one spelled as typed (`spelled`), case included, is meant
        when it is the only one (`"Deploy Bot"` among `deploy bot` and `Deploy Bot Legacy`).

        Reads: ONE search of the server (`integrations.list?name=`, a case-insensitive substring,
        paged fully) serves every reading: it is made for a plain run of the shortest reading,
        which every other reading starts with (`search_text`; a first word without one, `Ed's`,
        reads every integration instead, once), so however many words were typed
        the names are matched here, not looked up one reading at a time. The server's search sees
        a stored name only as stored: a name kept with a phone's punctuation, two spaces or a
        decomposed accent is found through the plain run (`Bob’s hook` through `hook`). When the
        search finds nothing, every integration is read once (what "did you mean" needs anyway)
        and matched again, so a stored spelling the search cannot see is still found; a name that
        may be a disguised one (`thorough`, `bot.normalize.disguised`: typically copied from chat)
        is matched against every integration from the start.

        A query shaped like an id (`looks_like_id`) is tried as an id first, as it always was; any
        other single word (`hook-00042`) by id only when no name matches, which spares the by-id
        round trip that cannot succeed for ordinary names. The returned document is complete and
        current (read by this call): pass it on with `fresh=True`.
        """
        kind = normalize_kind(kind)
        readings = [query.strip() for query in queries]
        search = None if thorough else search_text(readings)
        prefetched = self._take_prefetched(readings, search, kind)
        # Before any read: `editing` may then write from this one.
        mark = prefetched.mark if prefetched is not None else self._locks.mark()
        listing = may_list(rights)
        if not listing.allowed:
            raise PermissionDenied("look up integrations", listing.missing, detail=listing.reason)
        if not any(readings):
            raise IntegrationNotFound(queries[0] if queries else "", kind)
        keys = [name_key(reading) for reading in readings]
        by_id: dict[str, Integration | None] = {}

        async def read_by_id(reading: str) -> Integration | None:
            if reading not in by_id:
                if prefetched is not None and prefetched.query == reading and looks_like_id(reading):
                    document = await prefetched.read
                else:
                    document = await self._get_or_none(reading)
                by_id[reading] = self._visible_by_id(document, kind, rights)
            return by_id[reading]

        async def others_named(index: int, matches: list[dict[str, Any]], names: _Names) -> None:
            """Raise `AmbiguousReading` when a later (shorter) reading than the one that named
            `matches` names another integration (by name, or by id for an id-shaped one): the
            longer name must not win silently (a `Grafana spamming` made to catch the reason)."""
            meant = {str(doc.get("_id")) for doc in matches}
            found = [(readings[index], Integration.of(doc)) for doc in matches]
            for later in range(index + 1, len(readings)):
                reading = readings[later]
                if not reading:
                    continue
                others = [Integration.of(doc) for doc in names.visible(keys[later], kind, rights)]
                if looks_like_id(reading) and (by_that_id := await read_by_id(reading)) is not None:
                    others.append(by_that_id)
                found.extend((reading, other) for other in others)
            if any(integration.id not in meant for _reading, integration in found):
                candidates = {i.id: Candidate(i.id, i.name, i.type, i.enabled) for _reading, i in found}
                names_read = list(dict.fromkeys(reading for reading, _integration in found))
                raise AmbiguousReading(readings[0], names_read, list(candidates.values()))

        named: _Names | None = None
        for index, reading in enumerate(readings):
            if not reading:
                continue
            if looks_like_id(reading) and (found := await read_by_id(reading)) is not None:
                return index, found.read_at(mark)
            if named is None:
                if prefetched is not None and not looks_like_id(prefetched.query):
                    named = _Names(await prefetched.read)
                else:
                    named = _Names(await self._listed(search, kind))
            if matches := named.visible(keys[index], kind, rights):
                await others_named(index, matches, named)
                return index, self._the_one(reading, matches, mark)
        everything = named if named is not None and search is None else _Names(await self._listed(None, None))
        if search is not None:
            for index, reading in enumerate(readings):
                if reading and (matches := everything.visible(keys[index], kind, rights)):
                    await others_named(index, matches, everything)
                    return index, self._the_one(reading, matches, mark)
        for index, reading in enumerate(readings):
            single_word = bool(reading) and not any(char.isspace() for char in reading)
            if single_word and not looks_like_id(reading) and (found := await read_by_id(reading)) is not None:
                return index, found.read_at(mark)
        visible = [
            Integration.of(doc)
            for doc in everything.docs
            if isinstance(doc.get("name"), str) and visible_in_list(rights, doc)
        ]
        suggestions = integration_suggestions(_worth_scoring(readings, visible), visible, kind=kind)
        raise IntegrationNotFound(queries[0], kind, suggestions)

    @staticmethod
    def _the_one(reading: str, matches: list[dict[str, Any]], mark: ReadMark) -> Integration:
        exact = [d for d in matches if spelled(str(d.get("name"))) == spelled(reading)]
        if len(matches) > 1 and len(exact) == 1:
            matches = exact
        if len(matches) > 1:
            found = [Integration.of(d) for d in matches]
            raise AmbiguousIntegration(reading, [Candidate(i.id, i.name, i.type, i.enabled) for i in found])
        return Integration.of(matches[0]).read_at(mark)

    def prefetch(self, query: str, *, kind: str | None = None) -> None:
        """Begin now, in the background, the first read `resolve(query, kind=kind)` of this
        command will make (by id for an id-like query, else by name), while the runtime reads the
        caller's rights: the two reads overlap instead of following each other. Nothing is
        decided here, and nothing the caller may not see is revealed: `resolve` applies the
        caller's rights to what was read, as to its own reads. Read trust is unchanged: the mark
        is taken before the read begins. A name `resolve` reads thoroughly, or another query,
        leaves the prefetch unused."""
        begun = self.begin_prefetch(query, kind=kind)
        if begun is not None:
            self.adopt_prefetch(begun)

    def begin_prefetch(self, query: str, *, kind: str | None = None) -> Prefetch | None:
        """`prefetch`'s read, begun now but not yet the current command's: for a command that
        has no task of its own yet (the runtime begins it while the command's claim is in
        flight). `adopt_prefetch` hands it to the command, in its task; unadopted, whoever
        began it cancels `read`. None when there is nothing to read, or when `resolve_readings`
        reads every integration for it (`search_text` is None)."""
        wanted = query.strip()
        if not wanted:
            return None
        kind = normalize_kind(kind)
        mark = self._locks.mark()  # before the read begins, however late it is adopted
        search = None if looks_like_id(wanted) else search_text([wanted])
        if not looks_like_id(wanted) and search is None:
            return None  # every integration is read: `resolve_readings` reads them itself
        read = self._get_or_none(wanted) if looks_like_id(wanted) else self._listed(search, kind)
        return Prefetch(wanted, kind, mark, background(read))

    @staticmethod
    def adopt_prefetch(prefetched: Prefetch) -> None:
        """Make a read begun by `begin_prefetch` the current command's (its `resolve` uses it,
        `drop_prefetch` stops it), in place of any it had."""
        IntegrationService.drop_prefetch()
        _prefetched.set(prefetched)

    @staticmethod
    def drop_prefetch() -> None:
        """The command is over: a prefetched read it did not use is stopped and forgotten."""
        found = _prefetched.get()
        if found is not None:
            _prefetched.set(None)
            found.read.cancel()

    @staticmethod
    def _take_prefetched(readings: Sequence[str], search: str | None, kind: str | None) -> Prefetch | None:
        """The current command's prefetched read, if it is one `resolve_readings` makes: by id for
        one of `readings`, or the search `search` (None: every integration is read instead)."""
        found = _prefetched.get()
        if found is None:
            return None
        _prefetched.set(None)  # used once: a later resolve of the command reads afresh
        if looks_like_id(found.query):
            usable = found.query in readings
        else:
            usable = search is not None and search_text([found.query]) == search
        if not usable or found.kind != kind:
            found.read.cancel()
            return None
        return found

    @staticmethod
    def _visible_by_id(doc: dict[str, Any] | None, kind: str | None, rights: CallerRights) -> Integration | None:
        if doc is not None and (kind is None or doc.get("type") == kind) and may_view(rights, doc):
            return Integration.of(doc)
        return None

    async def _listed(self, search: str | None, kind: str | None) -> list[dict[str, Any]]:
        """Every integration whose name holds `search` (the server's search), of `kind`, read in
        full; every integration of either type when `search` is None."""
        return [doc async for doc in self._rest.iter_integrations(name=search, type=kind if search else None)]

    async def set_enabled(
        self,
        target: str | Integration | Mapping[str, Any],
        enabled: bool,
        *,
        rights: CallerRights,
        kind: str | None = None,
    ) -> UpdateOutcome:
        """Enable or disable; no write when it already is in that state (`changed=False`)."""
        return await self.apply_changes(target, {"enabled": enabled}, rights=rights, kind=kind)

    async def apply_changes(
        self,
        target: str | Integration | Mapping[str, Any],
        changes: Mapping[str, Any],
        *,
        rights: CallerRights,
        kind: str | None = None,
    ) -> UpdateOutcome:
        """Change fields of one integration losslessly, as the caller, and verify the result.

        `target` is a query (id or name, resolved for the caller) or a document; `changes` maps
        document field names to new values (document form: `channel` and `urls` as lists). The
        read the body is built from and the write hold the integration's lock (`editing`).
        """
        found = await self.resolve(target, kind=kind, rights=rights) if isinstance(target, str) else target
        async with self.editing(found, planned=changes, rights=rights) as edit:
            return await edit.apply(changes, rights=rights)

    def _journal_early(
        self, found: Integration, changes: Mapping[str, Any], rights: CallerRights
    ) -> _EarlyIntent | None:
        """Begin journaling the write of `changes` to `found` while its lock is being taken, when
        `found` was read before the lock (so it is likely to be trusted under it), the caller may
        change it and it would change: the intent's statement and the lock's then cost one wait
        instead of two. Used by `_change` only if the document under the lock is `found` itself;
        otherwise it journals again from what it read. None when nothing is journaled."""
        if found.read_mark is None or not self._journals(early=True):
            return None
        if _unchanged(found, changes):
            return None
        if not may_update(rights, found).allowed:
            return None
        intended = intended_document(found, changes)
        return _EarlyIntent(found, intended, background(self._before_write(found, intended)))

    @asynccontextmanager
    async def editing(
        self,
        target: Integration | Mapping[str, Any],
        *,
        planned: Mapping[str, Any] | None = None,
        rights: CallerRights | None = None,
    ) -> AsyncIterator[Edit]:
        """Hold `target`'s lock for one read-modify-write (bot/integrations/locks.py) and yield its document.

        The document is `target` itself when it was read from the server (`read_mark`), nobody
        held the lock since, and it was read within `READ_TRUSTED_WAIT` of the lock; otherwise it is
        read again under the lock. Everything decided from
        `Edit.current` (a comparison, a plan, a confirmation) and the write made by `Edit.apply`
        are then one step no other writer in the bot can come between. Raises
        `IntegrationNotFound` when it no longer exists, `ServerRejected` when the bot may not read it.

        `planned` (with the caller's `rights`): the changes the holder means to apply first; their
        write is journaled while the lock is being taken (`_journal_early`).
        """
        found = Integration.of(target)
        early = self._journal_early(found, planned, rights) if planned is not None and rights is not None else None
        edit: Edit | None = None
        try:
            if early is not None:
                # Let the intent's statement be sent before the lock's: both then wait at once (its
                # building, a few hundred µs of this thread, would otherwise follow the lock's
                # sending). Inside the `try`: cancelled here, the intent is still dropped.
                await asyncio.sleep(0)
            writer = self._writer()
            owner = self._owner() if writer is not None else None
            async with self._locks.hold(found.id, writer=writer, owner=owner) as held:
                updated_at = found.document.get("_updatedAt")
                stamp = updated_at if isinstance(updated_at, str) else None
                # Not read long ago: before a long wait for the lock, or the command's slow steps.
                read = found.read_time
                fresh = read is not None and time.monotonic() - read < READ_TRUSTED_WAIT
                if found.read_mark is not None and fresh and held.untouched_since(found.read_mark, stamp):
                    current = found
                else:
                    mark = self._locks.mark()
                    raw = await read_integration(self._rest, found.id)
                    if raw is None:
                        raise IntegrationNotFound(found.name, found.type)
                    current = Integration.of(raw).read_at(mark)
                edit = Edit(self, current, early, held)
                yield edit
        finally:
            if early is not None:  # never left running past the edit (nor stored after its claim closes)
                if edit is None or edit.early is not None:  # no write was made with it
                    await self._drop_early(early)
                else:
                    await asyncio.wait([early.task])

    async def may_write(self, rights: CallerRights, document: Document, *, memo: RoomMemo | None = None) -> Decision:
        """`authz.may_write` with the rooms of `document`'s `#x` entries looked up now, or taken
        from `memo` when this command looked them up already (`authz.RoomMemo`: for a check made
        once per command, such as a bulk preview; the check of a write passes none)."""
        decision = may_update(rights, document)
        if not decision.allowed:
            return decision
        return may_write(rights, document, await room_meanings(self._rest, rights, document, memo))

    def _writer(self) -> str | None:
        """The message id of the command whose write intents stand for its writes
        (`IntegrationLocks.hold`); None here: nothing is journaled."""
        return None

    def _owner(self) -> str | None:
        """This process's name on the claim of the `_writer` command; None here."""
        return None

    def _journals(self, *, early: bool = False) -> bool:
        """Whether a write made now is journaled (`_before_write` records an intent, which stands
        for "a write may be in flight" to every other holder of the lock). `early`: whether it
        may be journaled before the lock is held (not for a command being resumed: its earlier
        intent is what it is judged by). False here."""
        return False

    def resuming(self) -> bool:
        """Whether the current command is being resumed (after a crash, or taken over from a
        replica that stopped with it): what it had begun is its own to finish. False here."""
        return False

    async def resumed(self) -> UpdateOutcome | None:
        """For a command resumed after a crash: the outcome of its write that had already landed
        (`bot.runtime.journal`), so the command audits and answers it instead of planning anew on a
        document that already holds its change. None here: nothing is journaled."""
        return None

    async def _replayed(self, current: Integration, changes: Mapping[str, Any]) -> UpdateOutcome | None:
        """The outcome of a write this command already made before it was interrupted, if any
        (`bot.runtime.journal`); None to go on and write."""
        return None

    async def _change(
        self,
        current: Integration,
        changes: Mapping[str, Any],
        rights: CallerRights,
        early: _EarlyIntent | None = None,
    ) -> UpdateOutcome:
        """The read-modify-write itself, on `current` read under the lock (`Edit.apply`)."""
        replayed = await self._replayed(current, changes)
        if replayed is not None:
            return replayed
        try:
            self._authorize(rights, current, may_update(rights, current))
            intended = intended_document(current, changes)
            self._authorize(rights, current, await self.may_write(rights, intended))
        except Exception:  # refused (or the rooms could not be looked up): nothing is sent
            if early is not None:
                await self._drop_early(early)
            raise
        if _unchanged(current, changes):
            if early is not None:
                await self._drop_early(early)
            return UpdateOutcome(before=current, after=current, changed=False)
        body = build_update_body(current, changes)
        held = self._locks.held(current.id)
        journaled = self._journals()
        if early is not None and early.before is current and early.intended == intended:
            await early.task  # begun with the lock: usually stored by now
            if held is not None:
                await held.writing(journaled=journaled)
        else:
            if early is not None:  # journaled from another read: replaced below, never raced
                await asyncio.wait([early.task])
            if held is not None:  # both before the write, at once (at most two statements, one wait)
                await asyncio.gather(held.writing(journaled=journaled), self._before_write(current, intended))
            else:
                await self._before_write(current, intended)
        stored = await self._write(current, intended, body)
        found_differences = differences(current.document, intended, stored)
        after = Integration.of(stored)
        if held is not None and not found_differences:
            stamp = stored.get("_updatedAt")
            held.written(stamp if isinstance(stamp, str) else None)
        if not found_differences:
            await self._verified(current, stored)
        logs.after_answer(
            log,
            "integration.updated",
            integration_id=current.id,
            integration_name=current.name,
            integration_type=current.type,
            actor_id=rights.user_id,
            changes={k: (display(k, current.document.get(k)), display(k, v)) for k, v in changes.items()},
            verified=not found_differences,
        )
        if found_differences:
            raise VerificationFailed(current.id, found_differences)
        return UpdateOutcome(before=current, after=after, changed=True)

    async def _before_write(self, current: Integration, intended: Mapping[str, Any]) -> None:
        """A write of `current` as `intended` is about to be sent: a hook for the journal."""

    async def _drop_early(self, early: _EarlyIntent) -> None:
        """`early`'s write is not sent after all (nothing to change, refused, or the holder wrote
        nothing): its intent, once stored, is dropped, so that it never stands for a write of the
        command (a resumed command would take the integration in that state for its own write,
        or for someone else's change overtaking it)."""
        await asyncio.wait([early.task])
        # Also when storing it failed: a statement whose connection was lost may have committed.
        if not early.task.cancelled() and isinstance(early.task.exception(), StateUnavailable | None):
            try:
                await self._unsent(early.before.id)
            except StateUnavailable:  # kept: it costs a re-read, and the command tells its own error
                log.warning("integration.early_intent_kept", integration_id=early.before.id)

    async def _unsent(self, integration_id: str) -> None:
        """The current command's intent for this integration stands for no write: a hook for the journal."""

    async def _verified(self, current: Integration, stored: Mapping[str, Any]) -> None:
        """A write of `current` was stored as intended (`stored`): a hook for the journal."""

    @staticmethod
    def _authorize(rights: CallerRights, doc: Integration, decision: Any) -> None:
        if not decision.allowed:
            raise PermissionDenied(f"change {quote_name(doc.name)}", decision.missing, detail=decision.reason)

    async def _get_or_none(self, integration_id: str) -> dict[str, Any] | None:
        """`integrations.get`, with "does not exist" (a 400 without errorType, §2.3) as None."""
        try:
            return await self._rest.integrations_get(integration_id)
        except ServerRejected as exc:
            if exc.status == 400 and exc.error_type is None:
                return None
            raise

    async def _write(
        self, current: Integration, intended: Mapping[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Send the full body once; if its answer is lost, settle what happened before answering.

        A lost answer (timeout, 5xx, dropped connection) says nothing about whether the update was
        stored, so it is never blindly re-sent: the bot looks (`_settle`), and re-sends only when
        the document is provably untouched. Looking is retried with backoff for up to
        `SETTLE_SECONDS`, since an outage that swallowed the answer usually ends within seconds
        and the person deserves a definite answer; only a Rocket.Chat that stays silent that long
        gets "can't tell whether it was stored" (`OutcomeUnknown`).
        """
        try:
            return await self._rest.integrations_update(body, retry=False)
        except Unavailable:
            log.warning("integration.write_outcome_unknown", integration_id=current.id)
        try:
            async for attempt in stamina.retry_context(
                on=_Unsettled,
                attempts=None,
                timeout=SETTLE_SECONDS,
                wait_initial=0.5,
                wait_max=4.0,
                wait_jitter=0.5,
            ):
                with attempt:
                    return await self._settle(current, intended, body)
        except _Unsettled as exc:
            raise OutcomeUnknown(current.name, current.type) from exc.__cause__
        raise AssertionError("unreachable: stamina either returns or re-raises")  # pragma: no cover

    async def _settle(
        self, current: Integration, intended: Mapping[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One look at a write whose answer was lost: the stored result if it landed (re-sending
        the body once if it provably did not); `_Unsettled` while that can't be told."""
        try:
            now = await self._get_or_none(current.id)
        except (Unavailable, RateLimited) as exc:
            raise _Unsettled from exc
        if now is None:
            raise IntegrationNotFound(current.name, current.type)
        if not differences(current.document, intended, now):
            return now
        if now.get("_updatedAt") != current.document.get("_updatedAt"):
            # Someone else wrote in between: re-sending would overwrite their change.
            raise VerificationFailed(current.id, differences(current.document, intended, now))
        # Not stored, and nobody wrote since it was read: sending the same body again is safe.
        try:
            return await self._rest.integrations_update(body, retry=False)
        except Unavailable as exc:  # this answer may be lost too: look again
            log.warning("integration.write_outcome_unknown", integration_id=current.id, resent=True)
            raise _Unsettled from exc


class Edit:
    """One integration held for a read-modify-write (`IntegrationService.editing`).

    `current` is the document the write will be built from; `apply` writes `changes` on top of
    it (rights checked, lossless, verified) and `current` becomes the stored result."""

    def __init__(
        self,
        service: IntegrationService,
        current: Integration,
        early: _EarlyIntent | None = None,
        held: Held | None = None,
    ) -> None:
        self._service = service
        self.current = current
        self.early = early  # the first write's intent, begun with the lock (`editing`'s `planned`)
        self._held = held

    @property
    def timer_pending(self) -> bool | None:
        """Whether a timed disable of it was pending as its lock was taken, when the lock read that
        (`Held.timer_pending`: False holds until the holder sets one); None: look it up."""
        return self._held.timer_pending if self._held is not None else None

    async def replayed(self, changes: Mapping[str, Any]) -> UpdateOutcome | None:
        """For a command resumed after a crash: the outcome of its write of `changes` to this
        integration that had landed before it (bot/runtime/journal.py), judged on `current`;
        None when there is none (nothing is written here either way). Raises `VerificationFailed`
        when its write may have landed and someone changed the integration since."""
        return await self._service._replayed(self.current, changes)

    async def apply(self, changes: Mapping[str, Any], *, rights: CallerRights) -> UpdateOutcome:
        early, self.early = self.early, None  # for the first write only
        outcome = await self._service._change(self.current, changes, rights, early)
        self.current = outcome.after
        return outcome
