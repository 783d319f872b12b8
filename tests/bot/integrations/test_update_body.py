"""The lossless update body (contract §2.4.4 safe recipe, gotchas 1–5) against the official schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from integration_docs import (
    INCOMING,
    OUTGOING,
    branch_properties,
    incoming_documents,
    nullable_properties,
    outgoing_documents,
    stored_documents,
    update_validator,
    without,
)

from bot.errors import NotUpdatable, UserInputError
from bot.integrations.service import build_update_body, differences

VALIDATOR = update_validator()


def schema_errors(body: dict[str, Any]) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(body)]


@settings(max_examples=300)
@given(doc=stored_documents(), enabled=st.booleans())
def test_every_body_passes_the_official_schema_strictly(doc: dict[str, Any], enabled: bool) -> None:
    body = build_update_body(doc, {"enabled": enabled})
    assert schema_errors(body) == []
    assert body["type"] == doc["type"]  # the stored type (gotcha 5)
    assert body["integrationId"] == doc["_id"]
    assert body["enabled"] is enabled


@settings(max_examples=300)
@given(doc=stored_documents())
def test_body_carries_every_stored_field_the_schema_allows(doc: dict[str, Any]) -> None:
    body = build_update_body(doc, {"enabled": not doc["enabled"]})
    kind = doc["type"]
    allowed = branch_properties(kind) - {"target_url", "integrationId", "type"}
    if kind == INCOMING:
        allowed.add("username")  # an extra the incoming update understands (§2.4.3 step 7)
    nullable = nullable_properties(kind)
    for key in allowed:
        if key not in doc or key == "enabled":
            continue
        value = doc[key]
        if key == "channel":
            assert body["channel"] == ",".join(value)
        elif value is None:
            if key in nullable and not (kind == OUTGOING and key == "runOnEdits"):
                assert key in body and body[key] is None, key
            else:
                assert key not in body, key  # a null the schema refuses is left out
        elif key in ("urls", "triggerWords"):
            assert body[key] == [v for v in value if v.strip()], key
        else:
            assert body[key] == value, key


@settings(max_examples=300)
@given(doc=outgoing_documents())
def test_outgoing_body_has_no_key_outside_the_closed_schema(doc: dict[str, Any]) -> None:
    body = build_update_body(doc, {"enabled": False})
    assert set(body) <= branch_properties(OUTGOING)
    for forbidden in ("_id", "userId", "_createdAt", "_createdBy", "_updatedAt", "_updatedBy", "scriptCompiled"):
        assert forbidden not in body
    assert body["token"] == doc["token"]
    assert isinstance(body["urls"], list)
    if "triggerWords" in body and body["triggerWords"] is not None:
        assert isinstance(body["triggerWords"], list)


@settings(max_examples=200)
@given(doc=incoming_documents())
def test_incoming_body_keeps_skip_transpile_and_never_sends_the_token(doc: dict[str, Any]) -> None:
    body = build_update_body(doc, {"enabled": False})
    assert "token" not in body
    if "skipTranspile" in doc:
        assert body["skipTranspile"] == doc["skipTranspile"]  # 8.x resets it when omitted
    assert body["channel"] and all(entry[0] in "#@" for entry in body["channel"].split(","))


def test_channel_is_the_comma_string_of_the_stored_array_including_users_and_scopes() -> None:
    doc = {
        "_id": "o1",
        "type": OUTGOING,
        "name": "Guggy",
        "enabled": True,
        "event": "sendMessage",
        "username": "rocket.cat",
        "channel": ["#general", "@alice", "all_public_channels"],
        "urls": ["https://x.example.org/hook"],
        "token": "secret",
        "scriptEnabled": False,
    }
    body = build_update_body(doc, {"enabled": False})
    assert body["channel"] == "#general,@alice,all_public_channels"
    assert schema_errors(body) == []


@pytest.mark.parametrize("event", ["roomArchived", "roomCreated", "userCreated"])
def test_channel_less_outgoing_events_send_an_empty_channel(event: str) -> None:
    doc = {
        "_id": "o1",
        "type": OUTGOING,
        "name": "created",
        "enabled": True,
        "event": event,
        "username": "rocket.cat",
        "channel": [],
        "urls": ["https://x.example.org/hook"],
        "token": "secret",
        "targetRoom": "#general",
        "scriptEnabled": False,
    }
    body = build_update_body(doc, {"enabled": False})
    assert body["channel"] == ""
    assert schema_errors(body) == []


def outgoing(**overrides: Any) -> dict[str, Any]:
    doc = {
        "_id": "o1",
        "type": OUTGOING,
        "name": "Guggy",
        "enabled": True,
        "event": "sendMessage",
        "username": "rocket.cat",
        "channel": ["#general"],
        "urls": ["https://x.example.org/hook"],
        "token": "secret",
        "scriptEnabled": False,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (outgoing(token=...), "no token"),
        (outgoing(token=None), "no token"),
        (outgoing(token="  "), "no token"),
        (outgoing(urls=...), "no URL"),
        (outgoing(urls=[]), "no URL"),
        (outgoing(urls=["", " "]), "no URL"),
        (outgoing(channel=[]), "no channel"),
        (outgoing(event=...), "no event"),
        (outgoing(username=None), "post-as"),
        (outgoing(retryCount="5"), "retryCount"),
        (outgoing(channel=["#a,b"]), "comma"),
        (
            {"_id": "i1", "type": INCOMING, "name": "in", "enabled": True, "channel": [], "scriptEnabled": False},
            "no channel",
        ),
        ({"_id": "x", "type": "webhook-weird", "name": "x", "enabled": True}, "unknown integration type"),
    ],
)
def test_no_lossless_body_means_a_clear_refusal(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(NotUpdatable) as caught:
        build_update_body(doc, {"enabled": False})
    assert reason in str(caught.value)
    assert "secret" not in str(caught.value)


def test_changes_outside_the_updatable_fields_are_refused() -> None:
    for key in ("_id", "type", "_createdBy", "userId", "scriptCompiled"):
        with pytest.raises(UserInputError):
            build_update_body(outgoing(), {key: "x"})
    with pytest.raises(UserInputError):
        build_update_body({**outgoing(), "type": INCOMING, "token": "t"}, {"token": "new"})  # incoming token is fixed


def test_null_run_on_edits_is_left_out_because_a_present_null_becomes_false() -> None:
    body = build_update_body(outgoing(runOnEdits=None, alias=None, scriptEngine=None), {"enabled": False})
    assert "runOnEdits" not in body
    assert body["alias"] is None
    assert "scriptEngine" not in body
    assert schema_errors(body) == []


def test_the_schema_check_can_fail() -> None:
    # Guard against a validator that accepts anything: the naive bodies of gotchas 2 and 3 fail.
    body = build_update_body(outgoing(), {"enabled": False})
    assert schema_errors({**body, "_id": "o1"}) != []
    assert schema_errors({**body, "channel": ["#general"]}) != []
    assert schema_errors(without(body, "username")) != []


# --- verification --------------------------------------------------------------------------------


@settings(max_examples=200)
@given(doc=stored_documents(realistic=True))
def test_a_stored_result_equal_to_the_intended_document_verifies(doc: dict[str, Any]) -> None:
    intended = {**copy.deepcopy(doc), "enabled": not doc["enabled"]}
    stored = {**copy.deepcopy(intended), "_updatedAt": "2025-01-01T00:00:00.000Z", "userId": "other"}
    assert differences(doc, intended, stored) == {}


def test_a_wiped_field_is_reported_with_secrets_masked() -> None:
    before = outgoing(triggerWords=["!guggy"], retryFailedCalls=True, retryCount=6, retryDelay="powers-of-ten")
    intended = {**before, "enabled": False}
    wiped = {**intended, "triggerWords": None, "retryFailedCalls": None, "token": "other-secret"}
    found = differences(before, intended, wiped)
    assert set(found) == {"triggerWords", "retryFailedCalls", "token"}
    assert found["token"] == ("***", "***")
    assert "secret" not in str(found)


def test_a_script_that_stopped_running_is_reported() -> None:
    before = outgoing(scriptEnabled=True, script="class Script {}", scriptCompiled="class Script{}")
    intended = {**before, "enabled": False}
    stored = without(intended, "scriptCompiled")
    assert "scriptCompiled" in differences(before, intended, stored)
