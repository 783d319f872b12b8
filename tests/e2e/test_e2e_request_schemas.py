"""Issue 3, done-when: every request body the bot sends passes Rocket.Chat's official schema.

The sandbox records every body the bot sends to `integrations.update` and `chat.sendMessage`
during the whole e2e run, and `e2e_support.BodyChecker` validates each one strictly (no type
coercion) against tests/schemas after every command and when each workspace stops. These tests
make sure that net is not empty and can catch something, and that the schema copies are the
official ones.
"""

from __future__ import annotations

import json

import pytest
from e2e_support import REPO, SHARED_GROUP, Workspace, schema_validator, unique_name

from tests.schema_support import SCHEMAS

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]

SANDBOX_SCHEMAS = REPO / "sandbox" / "schemas"
SHARED_SCHEMAS = REPO.parent / "shared" / "rocketchat-schemas"


def test_every_kind_of_body_the_bot_sends_is_recorded_and_valid(workspace: Workspace) -> None:
    control, chat = workspace.control, workspace.chat
    updates_before = len(control.recorded_requests("integrations.update"))
    sends_before = len(control.recorded_requests("chat.sendMessage"))
    incoming = control.create_incoming_integration(
        unique_name("Schema in"), channel=["#general", "@alice"], alias="a", script="x()", script_enabled=True
    )
    outgoing = control.create_outgoing_integration(
        unique_name("Schema out"),
        channel="#general,all_public_channels",
        urls=["https://schema.example.org/a", "https://schema.example.org/b"],
        trigger_words=["!schema"],
        token="schema-token-1",
        retry_failed_calls=True,
        target_room="",
    )
    control.update_integration(outgoing["_id"], {"alias": None, "runOnEdits": None, "scriptError": None})
    parent = chat.post("alice", "general", "schema check")
    for document in (incoming, outgoing):
        assert "Disabled" in chat.command("admin", "general", f"!integration disable {document['_id']}")["msg"]
        assert (
            "Enabled"
            in chat.command("admin", "general", f"!integration enable {document['_id']}", parent["_id"])["msg"]
        )
    dm = control.create_direct("admin", "integrations-bot")["_id"]
    chat.command("admin", dm, "help")

    updates = control.recorded_requests("integrations.update")[updates_before:]
    sends = control.recorded_requests("chat.sendMessage")[sends_before:]
    assert {body["type"] for body in updates} == {"webhook-incoming", "webhook-outgoing"}
    assert len(updates) == 4 and len(sends) == 5
    assert any("tmid" in body["message"] for body in sends)
    assert any(body.get("alias", "") is None for body in updates)  # stored nulls are sent back as null
    workspace.bodies.check(control)  # every body recorded so far in this session, not just these


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("integrations.update", {"type": "webhook-incoming", "integrationId": "x", "enabled": False}),
        (
            "integrations.update",
            {
                "type": "webhook-incoming",
                "integrationId": "x",
                "name": "n",
                "enabled": False,
                "scriptEnabled": False,
                "channel": ["#general"],  # an array: the stored form, not the request form
            },
        ),
        (
            "integrations.update",
            {
                "type": "webhook-outgoing",
                "integrationId": "x",
                "name": "n",
                "enabled": "false",  # the strict check does not coerce, as 6.x/7.x servers don't
                "scriptEnabled": False,
                "channel": "#general",
                "username": "rocket.cat",
                "event": "sendMessage",
            },
        ),
        (
            "integrations.update",
            {
                "type": "webhook-outgoing",
                "integrationId": "x",
                "name": "n",
                "enabled": False,
                "scriptEnabled": False,
                "channel": "#general",
                "username": "rocket.cat",
                "event": "sendMessage",
                "_id": "x",  # outgoing is a closed whitelist
            },
        ),
        ("chat.sendMessage", {"message": {"rid": "GENERAL", "msg": "hi"}, "roomId": "GENERAL"}),
        ("chat.sendMessage", {"msg": "hi"}),
    ],
)
def test_the_check_rejects_bodies_a_server_would_refuse(endpoint: str, body: dict[str, object]) -> None:
    assert list(schema_validator(endpoint).iter_errors(body)) != []


def test_the_schema_copies_are_the_official_files() -> None:
    copies = sorted(p.name for p in SANDBOX_SCHEMAS.glob("*.json"))
    assert {"integrations.update.json", "chat.sendMessage.json"} <= set(copies)
    for name in copies:
        assert (SANDBOX_SCHEMAS / name).read_bytes() == (SCHEMAS / name).read_bytes(), name
    # Beside the checkout in CI (../shared): the source the copies were taken from.
    if SHARED_SCHEMAS.is_dir():
        for path in sorted(SCHEMAS.glob("*.json")):
            assert path.read_bytes() == (SHARED_SCHEMAS / path.name).read_bytes(), path.name


def test_ajv_nullable_becomes_a_null_type_and_nothing_else_changes() -> None:
    raw = json.loads((SCHEMAS / "integrations.update.json").read_text())
    translated = schema_validator("integrations.update").schema
    for branch, plain in zip(raw["oneOf"], translated["oneOf"], strict=True):
        for key, spec in branch["properties"].items():
            types = plain["properties"][key]["type"]
            assert ("null" in types) is (spec.get("nullable") is True), key
            assert "nullable" not in plain["properties"][key]
