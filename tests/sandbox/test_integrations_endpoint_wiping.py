"""What a partial `integrations.update` body does to the stored document (contract §2.4.4),
field by field, in every server flavour the sandbox imitates; and that the safe full-body
recipe at the end of §2.4.4 loses nothing in any of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rest_test_support import (
    INCOMING_CREATE,
    MODE_IDS,
    MODES,
    OUTGOING_CREATE,
    World,
    create,
    integrations_world,
    named,
    stored,
)

from sandbox.config import UpdateMode

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "integrations.update.json").read_text())
INCOMING_KEYS = set(SCHEMA["oneOf"][0]["properties"]) | {"username"}  # the incoming branch is open
OUTGOING_KEYS = set(SCHEMA["oneOf"][1]["properties"])  # the outgoing branch is closed
SCRIPT = (
    "class Script { process_incoming_request({ request }) { return { content: { text: request.content.text } }; } }"
)

RICH_INCOMING = {
    **INCOMING_CREATE,
    "alias": "guggy",
    "avatar": "https://example.org/logo.png",
    "emoji": ":ghost:",
    "scriptEnabled": True,
    "script": SCRIPT,
    "skipTranspile": True,
    "overrideDestinationChannelEnabled": True,
}
RICH_OUTGOING = {
    **OUTGOING_CREATE,
    "alias": "guggy",
    "avatar": "http://res.guggy.com/logo_128.png",
    "emoji": ":ghost:",
    "scriptEnabled": True,
    "script": "class Script { prepare_outgoing_request({ request }) { return request; } }",
    "retryFailedCalls": True,
    "retryCount": 6,
    "retryDelay": "powers-of-ten",
    "runOnEdits": True,
    "impersonateUser": True,
    "triggerWordAnywhere": True,
    "targetRoom": "#general",
    "skipTranspile": True,
}


def world_for(mode: UpdateMode, omitted_as_null: bool) -> World:
    return integrations_world(mode, omitted_as_null=omitted_as_null)


def put(world: World, body: dict[str, Any]) -> dict[str, Any]:
    response = world.put(named(world, "admin"), "integrations.update", body)
    assert response.status_code == 200, response.json()
    return stored(world, body["integrationId"])


# --- incoming, the minimal body the schema accepts ---------------------------------------------------


def minimal_incoming(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "webhook-incoming",
        "integrationId": doc["_id"],
        "channel": ",".join(doc["channel"]),
        "scriptEnabled": doc["scriptEnabled"],
        "name": doc["name"],
        "enabled": False,
    }


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_partial_incoming_body(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    before = stored(world, create(world, named(world, "admin"), RICH_INCOMING)["_id"])
    assert before["scriptCompiled"] and before["skipTranspile"] is True
    after = put(world, minimal_incoming(before))

    assert after["enabled"] is False
    for kept in ("name", "channel", "token", "type", "username", "userId", "_createdAt", "_createdBy"):
        assert after[kept] == before[kept], kept
    assert after["overrideDestinationChannelEnabled"] is True  # only written when present
    assert after["scriptEngine"] == "isolated-vm"
    # No script in the body: nothing is compiled, the old compiled script is left in place.
    assert after["scriptCompiled"] == before["scriptCompiled"]
    wiped = ("alias", "avatar", "emoji", "script")
    if mode == "8.x":
        for field in wiped:
            assert after[field] == before[field], field  # only written when present
        assert after["skipTranspile"] is False  # always written: `body.skipTranspile === true`
    elif omitted_as_null:
        for field in wiped:
            assert field in after and after[field] is None, field  # WIPED
        assert after["skipTranspile"] is True  # the legacy update never writes it
    else:
        for field in wiped:
            assert after[field] == before[field], field  # undefined ignored by the driver
        assert after["skipTranspile"] is True


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_incoming_username_is_only_written_when_sent(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    hookbot = world.user("hookbot")
    doc = create(world, named(world, "admin"), RICH_INCOMING)
    after = put(world, minimal_incoming(doc))
    assert after["username"] == "rocket.cat"
    after = put(world, {**minimal_incoming(doc), "username": "hookbot"})
    assert (after["username"], after["userId"]) == ("hookbot", hookbot._id)


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_incoming_null_values_are_stored_as_null(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    doc = create(world, named(world, "admin"), RICH_INCOMING)
    after = put(world, {**minimal_incoming(doc), "alias": None, "overrideDestinationChannelEnabled": None})
    assert "alias" in after and after["alias"] is None
    assert after["overrideDestinationChannelEnabled"] is None


# --- outgoing: every optional field is written -------------------------------------------------------


def minimal_outgoing(doc: dict[str, Any]) -> dict[str, Any]:
    """The schema's required keys plus what the server insists on (urls, token)."""
    return {
        "type": "webhook-outgoing",
        "integrationId": doc["_id"],
        "username": doc["username"],
        "channel": ",".join(doc["channel"]),
        "event": doc["event"],
        "scriptEnabled": doc["scriptEnabled"],
        "name": doc["name"],
        "enabled": False,
        "urls": doc["urls"],
        "token": doc["token"],
    }


OUTGOING_OPTIONAL = (
    "triggerWords",
    "alias",
    "avatar",
    "emoji",
    "script",
    "retryFailedCalls",
    "retryCount",
    "retryDelay",
    "runOnEdits",
    "impersonateUser",
    "triggerWordAnywhere",
    "targetRoom",
)


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_partial_outgoing_body(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    before = stored(world, create(world, named(world, "admin"), RICH_OUTGOING)["_id"])
    assert before["scriptCompiled"] and before["triggerWords"] == ["!guggy"]
    after = put(world, minimal_outgoing(before))

    assert after["enabled"] is False
    for kept in ("name", "channel", "token", "urls", "event", "type", "username", "userId", "_createdAt", "_createdBy"):
        assert after[kept] == before[kept], kept
    assert "scriptCompiled" not in after  # $unset whenever the body's script did not compile
    if omitted_as_null:
        for field in OUTGOING_OPTIONAL:
            assert field in after and after[field] is None, field  # WIPED
        assert "scriptError" in after and after["scriptError"] is None
    else:
        for field in OUTGOING_OPTIONAL:
            assert after[field] == before[field], field
        assert "scriptError" not in after
    if mode == "8.x":
        assert after["skipTranspile"] is (None if omitted_as_null else True)
    else:
        assert after["skipTranspile"] is True  # the legacy update never writes it


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_outgoing_script_engine_is_reset_to_the_default(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    doc = create(world, named(world, "admin"), RICH_OUTGOING)
    world.store.update_integration(doc["_id"], {"scriptEngine": "vm2"})
    assert put(world, minimal_outgoing(doc))["scriptEngine"] == "isolated-vm"


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_outgoing_retry_settings_are_defaulted_when_retrying(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    doc = create(world, named(world, "admin"), RICH_OUTGOING)
    after = put(world, {**minimal_outgoing(doc), "retryFailedCalls": True})
    assert (after["retryCount"], after["retryDelay"]) == (4, "powers-of-ten")


@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_outgoing_script_compiles_again_when_sent(mode: UpdateMode, omitted_as_null: bool) -> None:
    world = world_for(mode, omitted_as_null)
    doc = create(world, named(world, "admin"), RICH_OUTGOING)
    after = put(world, {**minimal_outgoing(doc), "scriptEnabled": True, "script": doc["script"]})
    assert after["scriptCompiled"] == doc["scriptCompiled"]
    assert "scriptError" not in after
    broken = put(world, {**minimal_outgoing(doc), "scriptEnabled": True, "script": "function ("})
    assert broken["scriptError"]["name"] == "SyntaxError"
    assert "scriptCompiled" not in broken


# --- the safe full-body recipe -----------------------------------------------------------------------


def full_body(doc: dict[str, Any], mode: UpdateMode) -> dict[str, Any]:
    """Contract §2.4.4 recipe: copy every stored field the schema allows, channel as a string,
    omit stored nulls only for incoming on 8.x, flip `enabled`."""
    incoming = doc["type"] == "webhook-incoming"
    allowed = INCOMING_KEYS if incoming else OUTGOING_KEYS
    body = {key: value for key, value in doc.items() if key in allowed}
    if incoming and mode == "8.x":
        body = {key: value for key, value in body.items() if value is not None}
    body.update(integrationId=doc["_id"], channel=",".join(doc["channel"]), enabled=not doc["enabled"])
    return body


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document minus what any write changes. An absent key and a stored null are both
    "no value"; an absent `skipTranspile` is its server default (false); `runOnEdits` is
    normalised by the server to a strict boolean whenever it is sent, so a null passed back by the
    recipe comes back as false (contract §2.1) - no value either way."""
    out = {k: v for k, v in doc.items() if v is not None and k not in ("enabled", "_updatedAt", "_updatedBy")}
    out.setdefault("skipTranspile", False)
    if doc.get("type") == "webhook-outgoing":
        out.setdefault("runOnEdits", False)
    return out


def legacy_wiped_incoming(world: World) -> dict[str, Any]:
    doc = create(world, named(world, "admin"), RICH_INCOMING)
    world.store.update_integration(doc["_id"], {"alias": None, "avatar": None, "emoji": None, "script": None})
    return doc


VARIANTS = {
    "incoming-rich": lambda w: create(w, named(w, "admin"), RICH_INCOMING),
    "incoming-plain": lambda w: create(w, named(w, "admin"), INCOMING_CREATE),
    "incoming-with-nulls": legacy_wiped_incoming,
    "incoming-broken-script": lambda w: create(w, named(w, "admin"), RICH_INCOMING, script="class {"),
    "outgoing-rich": lambda w: create(w, named(w, "admin"), RICH_OUTGOING),
    "outgoing-plain": lambda w: create(w, named(w, "admin"), OUTGOING_CREATE),
    "outgoing-broken-script": lambda w: create(w, named(w, "admin"), RICH_OUTGOING, script="if (x"),
    "outgoing-no-retry": lambda w: create(w, named(w, "admin"), RICH_OUTGOING, retryFailedCalls=False),
    "outgoing-user-created": lambda w: create(
        w, named(w, "admin"), OUTGOING_CREATE, event="userCreated", channel="", targetRoom="#general"
    ),
    "outgoing-all-public": lambda w: create(w, named(w, "admin"), OUTGOING_CREATE, channel="all_public_channels"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(("mode", "omitted_as_null"), MODES, ids=MODE_IDS)
def test_full_body_loses_nothing(mode: UpdateMode, omitted_as_null: bool, variant: str) -> None:
    world = world_for(mode, omitted_as_null)
    before = stored(world, VARIANTS[variant](world)["_id"])
    for _ in range(2):  # disable, then enable again
        current = stored(world, before["_id"])
        after = put(world, full_body(current, mode))
        assert after["enabled"] is not current["enabled"]
        assert comparable(after) == comparable(before)
