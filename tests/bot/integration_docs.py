"""Hypothesis strategies for stored integration documents, and the official update schema.

Shared by the update-body tests and the sandbox round-trip tests. `realistic=True` keeps to
documents a server could have stored (already normalised the way every write normalises them:
trigger words only for sendMessage, retry settings defaulted, strict booleans); without it the
documents are rougher (blank entries, odd retry values) — the body must still pass the schema.
"""

from __future__ import annotations

import copy
import json
import string
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.schema_support import SCHEMAS, ajv_to_json_schema
from tests.tokens import webhook_tokens

INCOMING = "webhook-incoming"
OUTGOING = "webhook-outgoing"
CHANNEL_EVENTS = ("sendMessage", "fileUploaded", "roomJoined", "roomLeft")
CHANNELLESS_EVENTS = ("roomArchived", "roomCreated", "userCreated")
MISSING = object()


def update_schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "integrations.update.json").read_text())


def update_validator() -> Draft202012Validator:
    schema = ajv_to_json_schema(update_schema())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def branch_properties(kind: str) -> set[str]:
    """The property names of the incoming or outgoing branch of the update schema."""
    for branch in update_schema()["oneOf"]:
        if branch["properties"]["type"]["pattern"] == kind:
            return set(branch["properties"])
    raise AssertionError(kind)


def nullable_properties(kind: str) -> set[str]:
    for branch in update_schema()["oneOf"]:
        if branch["properties"]["type"]["pattern"] == kind:
            return {k for k, v in branch["properties"].items() if v.get("nullable") is True}
    raise AssertionError(kind)


# --- building blocks -----------------------------------------------------------------------------

_NAME_CHARS = string.ascii_lowercase + string.digits + "-_."
room_names = st.text(_NAME_CHARS, min_size=1, max_size=12)
ids = st.one_of(
    st.text("0123456789abcdef", min_size=24, max_size=24),
    st.text("23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz", min_size=17, max_size=17),
)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
names = texts.map(str.strip).filter(bool)
# Scripts that the sandbox's stand-in compiler accepts (balanced) and ones it rejects.
good_scripts = st.builds(
    lambda body: (
        "class Script { process_incoming_request({ request }) { return { content: { text: "
        + json.dumps(body)
        + " } }; } }"
    ),
    texts,
)
any_scripts = st.one_of(good_scripts, texts)
urls = st.builds(lambda host, path: f"https://{host}.example.org/{path}", room_names, room_names)
words = st.text(string.ascii_letters + string.digits + "!+-", min_size=1, max_size=10)


def optional(values: st.SearchStrategy[Any], *, null: bool = True) -> st.SearchStrategy[Any]:
    """A value, null (if allowed) or absent (MISSING)."""
    choices = [values, st.just(MISSING)]
    if null:
        choices.append(st.none())
    return st.one_of(*choices)


def _put(doc: dict[str, Any], key: str, value: Any) -> None:
    if value is not MISSING:
        doc[key] = value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _put_token(draw: st.DrawFn, doc: dict[str, Any], *, min_size: int, max_size: int) -> None:
    """The webhook token, never also part of another value of the document.

    Hypothesis likes to reuse a drawn string, so a token could come out equal to the name (which
    the bot logs); the suite-wide secret watch would then report a leak that is not one. Real
    tokens are random, or chosen by an admin as a secret, never the integration's name.
    """
    token = draw(webhook_tokens(min_size=min_size, max_size=max_size))
    assume(len(token) < 8 or not any(token in other for other in _strings(doc)))
    doc["token"] = token


@st.composite
def _common(draw: st.DrawFn, kind: str, realistic: bool) -> dict[str, Any]:
    creator = {"_id": draw(ids), "username": draw(room_names)}
    doc: dict[str, Any] = {
        "_id": draw(ids),
        "type": kind,
        "name": draw(names),
        "enabled": draw(st.booleans()),
        "username": draw(st.sampled_from(["rocket.cat", "hookbot"])),
        "userId": draw(ids),
        "scriptEnabled": draw(st.booleans()),
        "_createdAt": "2024-06-04T11:20:00.000Z",
        "_createdBy": creator,
    }
    for key in ("alias", "avatar", "emoji"):
        _put(doc, key, draw(optional(texts)))
    _put(doc, "script", draw(optional(good_scripts if realistic else any_scripts)))
    _put(doc, "scriptEngine", draw(optional(st.sampled_from(["isolated-vm", "vm2"]), null=not realistic)))
    _put(doc, "skipTranspile", draw(optional(st.booleans())))
    if draw(st.booleans()):
        doc["_updatedAt"] = "2024-06-05T09:00:00.000Z"
        doc["_updatedBy"] = {"_id": creator["_id"], "username": creator["username"]}
    script = doc.get("script")
    if isinstance(script, str) and script.strip() and doc["scriptEnabled"]:
        # Present only for a script that compiled, exclusive with scriptError (contract §2.1).
        doc["scriptCompiled"] = script.strip()
    return doc


def channel_entries(
    *, scopes: bool, rooms: tuple[str, ...] | None = None, users: tuple[str, ...] | None = None
) -> st.SearchStrategy[str]:
    """`#room`, `@user` and (outgoing) scope entries; from fixed pools when the rooms and users
    must exist (a real server resolves every entry)."""
    room_pool = st.sampled_from(rooms) if rooms else room_names
    user_pool = st.sampled_from(users) if users else room_names
    entries = [room_pool.map(lambda n: "#" + n), user_pool.map(lambda n: "@" + n)]
    if scopes:
        entries.append(st.sampled_from(["all_public_channels", "all_private_groups", "all_direct_messages"]))
    return st.one_of(*entries)


@st.composite
def incoming_documents(
    draw: st.DrawFn,
    *,
    realistic: bool = False,
    rooms: tuple[str, ...] | None = None,
    users: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    doc = draw(_common(INCOMING, realistic))
    entries = channel_entries(scopes=False, rooms=rooms, users=users)
    doc["channel"] = draw(st.lists(entries, min_size=1, max_size=4, unique=True))
    _put_token(draw, doc, min_size=48, max_size=48)
    _put(doc, "overrideDestinationChannelEnabled", draw(optional(st.booleans())))
    return doc


@st.composite
def outgoing_documents(
    draw: st.DrawFn,
    *,
    realistic: bool = False,
    events: tuple[str, ...] = CHANNEL_EVENTS + CHANNELLESS_EVENTS,
    rooms: tuple[str, ...] | None = None,
    users: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    doc = draw(_common(OUTGOING, realistic))
    event = draw(st.sampled_from(events))
    doc["event"] = event
    if event in CHANNELLESS_EVENTS:
        doc["channel"] = []
    else:
        entries = channel_entries(scopes=True, rooms=rooms, users=users)
        doc["channel"] = draw(st.lists(entries, min_size=1, max_size=4, unique=True))
    doc["urls"] = draw(st.lists(urls, min_size=1, max_size=3))
    if not realistic and draw(st.booleans()):
        doc["urls"] = [*doc["urls"], ""]  # a blank entry the server would drop
    if event == "sendMessage":
        trigger = st.lists(words, max_size=4)
        if not realistic:
            trigger = st.lists(st.one_of(words, st.just("")), max_size=4)
        _put(doc, "triggerWords", draw(optional(trigger)))
    elif not realistic:
        _put(doc, "triggerWords", draw(optional(st.lists(words, max_size=2))))
    target = (st.sampled_from(rooms) if rooms else room_names).map(lambda n: "#" + n)
    if event == "userCreated":
        doc["targetRoom"] = draw(target)
    else:
        _put(doc, "targetRoom", draw(optional(st.one_of(st.just(""), target))))
    for key in ("triggerWordAnywhere", "impersonateUser"):
        _put(doc, key, draw(optional(st.booleans())))
    _put(doc, "runOnEdits", draw(optional(st.booleans(), null=not realistic)))
    retry = draw(optional(st.booleans()))
    _put(doc, "retryFailedCalls", retry)
    if retry is True and realistic:
        doc["retryCount"] = draw(st.integers(1, 10))
        doc["retryDelay"] = draw(st.sampled_from(["powers-of-ten", "powers-of-two", "increments-of-two"]))
    else:
        _put(doc, "retryCount", draw(optional(st.integers(-1, 10))))
        _put(doc, "retryDelay", draw(optional(st.sampled_from(["powers-of-ten", "Powers-Of-Two", ""]))))
    _put_token(draw, doc, min_size=1, max_size=40)
    return doc


def stored_documents(
    *, realistic: bool = False, rooms: tuple[str, ...] | None = None, users: tuple[str, ...] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        incoming_documents(realistic=realistic, rooms=rooms, users=users),
        outgoing_documents(realistic=realistic, rooms=rooms, users=users),
    )


def without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for key in keys:
        out.pop(key, None)
    return out
