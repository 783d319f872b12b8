"""`GET integrations.history` and the control API that records outgoing webhook calls.

Expected values come from Rocket.Chat's route and trigger handler (see sandbox/integration_history.py):
route permission any-of the two outgoing ones (403), `id` required (400), own-only callers see the
history of their own webhooks, newest first by `_updatedAt`, the usual pagination envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_test_support import OUTGOING_CREATE, World, create, error_of, integrations_world, named

from sandbox.control import SandboxControl

OUT_ALL = "manage-outgoing-integrations"
OUT_OWN = "manage-own-outgoing-integrations"
IN_ALL = "manage-incoming-integrations"
UNAUTHORIZED = "User does not have the permissions required for this action [error-unauthorized]"
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def world() -> World:
    return integrations_world()


def _history(world: World, caller: Any, **params: Any) -> Any:
    return world.get(caller, "integrations.history", params=params)


def test_no_outgoing_permission_is_403_even_with_incoming_rights(world: World) -> None:
    admin, alice = named(world, "admin"), named(world, "alice")
    hook = create(world, admin, OUTGOING_CREATE)
    world.grant(alice, IN_ALL)
    response = _history(world, alice, id=hook["_id"])
    assert response.status_code == 403
    assert error_of(response)["error"] == UNAUTHORIZED


def test_id_is_required_and_must_not_be_blank(world: World) -> None:
    admin = named(world, "admin")
    missing = _history(world, admin)
    assert missing.status_code == 400
    assert error_of(missing)["error"] == "must have required property 'id' [invalid-params]"
    blank = _history(world, admin, id="   ")
    assert blank.status_code == 400
    assert error_of(blank) == {"success": False, "error": "Invalid integration id."}
    unknown_key = _history(world, admin, id="x", fields='{"url": 1}')
    assert unknown_key.status_code == 400


def test_unknown_id_is_an_empty_page(world: World) -> None:
    response = _history(world, named(world, "admin"), id="no-such-integration")
    assert response.status_code == 200
    assert response.json() == {"history": [], "offset": 0, "items": 0, "count": 0, "total": 0, "success": True}


def test_entries_come_newest_first_with_paging(world: World) -> None:
    admin = named(world, "admin")
    hook = create(world, admin, OUTGOING_CREATE)
    control = SandboxControl(world.store)
    for minute in (5, 1, 9, 3):
        control.record_outgoing_call(hook["_id"], status=500, body=f"boom at {minute}", at=_at(minute))
    page = _history(world, admin, id=hook["_id"], count=2).json()
    assert [json.loads(e["httpResult"]) for e in page["history"]] == ["boom at 9", "boom at 5"]
    assert (page["offset"], page["items"], page["count"], page["total"]) == (0, 2, 2, 4)
    rest = _history(world, admin, id=hook["_id"], offset=2, count=2).json()
    assert [json.loads(e["httpResult"]) for e in rest["history"]] == ["boom at 3", "boom at 1"]
    oldest_first = _history(world, admin, id=hook["_id"], sort='{"_updatedAt": 1}').json()
    assert json.loads(oldest_first["history"][0]["httpResult"]) == "boom at 1"


def test_own_only_callers_see_the_history_of_their_own_webhooks(world: World) -> None:
    admin, alice, bob = named(world, "admin"), named(world, "alice"), named(world, "bob")
    world.grant(alice, OUT_OWN)
    world.grant(bob, OUT_ALL)
    by_admin = create(world, admin, OUTGOING_CREATE, name="admin's")
    by_alice = create(world, alice, OUTGOING_CREATE, name="alice's")
    control = SandboxControl(world.store)
    control.record_outgoing_call(by_admin["_id"], status=500, body="x")
    control.record_outgoing_call(by_alice["_id"], status=500, body="y")
    assert _history(world, alice, id=by_admin["_id"]).json()["total"] == 0
    assert _history(world, alice, id=by_alice["_id"]).json()["total"] == 1
    assert _history(world, bob, id=by_admin["_id"]).json()["total"] == 1
    assert _history(world, bob, id=by_alice["_id"]).json()["total"] == 1


def test_recorded_calls_have_the_shapes_the_trigger_handler_leaves(world: World) -> None:
    admin = named(world, "admin")
    hook = create(world, admin, OUTGOING_CREATE, urls=["https://u:p@hooks.example/x?key=k"])
    control = SandboxControl(world.store)
    ok = control.record_outgoing_call(hook["_id"], status=200, body='{"text": "hi"}')
    assert ok["step"] == "after-http-call" and "error" not in ok and "httpError" not in ok
    failed = control.record_outgoing_call(hook["_id"], status=503, body="busy")
    assert failed["step"] == "failed-and-not-configured-to-retry" and failed["error"] is True
    assert failed["httpResult"] == '"busy"'
    five_hundred = control.record_outgoing_call(hook["_id"], status=500, body="oops")
    assert five_hundred["step"] == "after-process-http-status-500"
    refused = control.record_outgoing_call(hook["_id"], error_code="ECONNREFUSED")
    assert refused["httpResult"] == "null"
    assert refused["httpError"]["code"] == "ECONNREFUSED"
    assert refused["httpError"]["message"].startswith("request to https://u:p@hooks.example/x?key=k failed")
    # What the real documents carry and a reader must not repeat: the outgoing token.
    assert refused["data"]["token"] == "outgoing-token"
    assert refused["integration"]["_id"] == hook["_id"] and refused["type"] == "outgoing-webhook"
    gone = control.record_outgoing_call(hook["_id"], status=410, body="gone")
    assert gone["step"] == "after-process-http-status-410"
    assert world.store.get_integration(hook["_id"])["enabled"] is False  # type: ignore[index]


def test_a_call_triggered_by_a_message_carries_it(world: World) -> None:
    admin = named(world, "admin")
    hook = create(world, admin, OUTGOING_CREATE)
    room = world.store.room_by_name("general")
    assert room is not None
    message = world.store.send_message(admin._id, room["_id"], "!guggy cats")
    control = SandboxControl(world.store)
    entry = control.record_outgoing_call(hook["_id"], status=502, body="bad", message_id=message["_id"])
    assert entry["triggerWord"] == "!guggy"
    assert entry["data"]["message_id"] == message["_id"] and entry["data"]["text"] == "!guggy cats"


def test_removing_the_webhook_removes_its_history(world: World) -> None:
    admin = named(world, "admin")
    hook = create(world, admin, OUTGOING_CREATE)
    control = SandboxControl(world.store)
    control.record_outgoing_call(hook["_id"], status=500, body="x")
    removed = world.post(admin, "integrations.remove", {"type": "webhook-outgoing", "integrationId": hook["_id"]})
    assert removed.status_code == 200
    assert control.integration_history(hook["_id"]) == []


def test_legacy_servers_coerce_the_paging_numbers() -> None:
    world = integrations_world("legacy")
    admin = named(world, "admin")
    hook = create(world, admin, OUTGOING_CREATE)
    response = _history(world, admin, id=hook["_id"], offset="0", count="5")
    assert response.status_code == 200, response.json()
