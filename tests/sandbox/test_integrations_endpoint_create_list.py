"""`integrations.create` (contract §2.5 and the document shape of §2.1), `integrations.list`
(§2.2) and `integrations.remove` (§2.6) details beyond the conformance checklist."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_test_support import (
    INCOMING_CREATE,
    OUTGOING_CREATE,
    World,
    create,
    error_of,
    integrations_world,
    named,
    stored,
)

ADD_INCOMING = {"method": "addIncomingIntegration"}


@pytest.fixture
def world() -> World:
    return integrations_world()


def create_error(world: World, body: dict[str, Any], username: str = "admin") -> dict[str, Any]:
    response = world.post(named(world, username), "integrations.create", body)
    assert response.status_code == 400, response.json()
    return error_of(response)


# --- create: incoming ------------------------------------------------------------------------------


def test_incoming_create_document(world: World) -> None:
    admin = named(world, "admin")
    doc = create(world, admin, INCOMING_CREATE, channel="#general, @alice", alias="guggy")
    assert re.fullmatch(r"[0-9a-f]{24}", doc["_id"])
    assert re.fullmatch(r"[23456789A-HJ-NP-Za-km-z]{48}", doc["token"])
    assert doc["channel"] == ["#general", "@alice"]
    assert (doc["username"], doc["userId"]) == ("rocket.cat", named(world, "rocket.cat")._id)
    assert doc["scriptEngine"] == "isolated-vm"
    assert doc["_createdBy"] == {"_id": admin._id, "username": "admin"}
    assert doc["_createdAt"].endswith("Z")
    assert "_updatedAt" not in doc
    assert doc["alias"] == "guggy"
    assert "scriptCompiled" not in doc and "scriptError" not in doc


def test_incoming_create_compiles_scripts(world: World) -> None:
    admin = named(world, "admin")
    ok = create(world, admin, INCOMING_CREATE, scriptEnabled=True, script="class Script { f() { return '}'; } }")
    assert ok["scriptCompiled"] and "scriptError" not in ok
    broken = create(world, admin, INCOMING_CREATE, scriptEnabled=True, script="class Script { f() { ")
    assert set(broken["scriptError"]) == {"name", "message", "stack"}
    assert "scriptCompiled" not in broken
    disabled = create(world, admin, INCOMING_CREATE, scriptEnabled=False, script="class Script {")
    assert "scriptError" not in disabled  # only compiled when enabled


def test_incoming_create_gives_the_post_as_user_the_bot_role(world: World) -> None:
    hookbot = world.user("hookbot")
    create(world, named(world, "admin"), INCOMING_CREATE, username="hookbot")
    assert "bot" in named(world, "hookbot").roles
    assert hookbot.username == "hookbot"


@pytest.mark.parametrize(
    ("changes", "code", "reason"),
    [
        ({"channel": ""}, "error-invalid-channel", "Invalid channel"),
        ({"channel": "general"}, "error-invalid-channel-start-with-chars", "Invalid channel. Start with @ or #"),
        ({"username": " "}, "error-invalid-username", "Invalid username"),
        ({"username": "ghost"}, "error-invalid-user", "Invalid user"),
        ({"channel": "#nope"}, "error-invalid-room", "Invalid room"),
    ],
)
def test_incoming_create_errors(world: World, changes: dict[str, Any], code: str, reason: str) -> None:
    assert create_error(world, {**INCOMING_CREATE, **changes}) == {
        "success": False,
        "error": f"{reason} [{code}]",
        "errorType": code,
        "details": ADD_INCOMING,
    }


def test_incoming_create_membership_rule(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-incoming-integrations")
    assert create_error(world, {**INCOMING_CREATE, "channel": "#ops"}, "alice")["error"] == (
        "Invalid Channel [error-invalid-channel]"
    )
    assert world.post(alice, "integrations.create", INCOMING_CREATE).status_code == 200


def test_create_is_a_typed_route_without_the_invalid_params_suffix(world: World) -> None:
    body = {k: v for k, v in INCOMING_CREATE.items() if k != "username"}
    assert create_error(world, body) == {
        "success": False,
        "errorType": "invalid-params",
        "error": "must have required property 'username'\n must have required property 'username'\n"
        " must match exactly one schema in oneOf",
    }
    assert create_error(world, {**INCOMING_CREATE, "token": "mine"})["error"] == (
        "must NOT have additional properties\n must have required property 'event'\n"
        " must match exactly one schema in oneOf"
    )


def test_create_validation_comes_before_authentication(world: World) -> None:
    # Typed routes are validated by the HTTP router before the wrapper checks the login.
    assert world.post(None, "integrations.create", {"type": "webhook-incoming"}).status_code == 400
    assert world.post(None, "integrations.create", INCOMING_CREATE).status_code == 401


# --- create: outgoing --------------------------------------------------------------------------------


def test_outgoing_create_document(world: World) -> None:
    doc = create(world, named(world, "admin"), OUTGOING_CREATE, triggerWords=["!guggy", " "], runOnEdits=False)
    assert doc["channel"] == ["#general"]
    assert doc["triggerWords"] == ["!guggy"]
    assert doc["runOnEdits"] is False
    assert doc["token"] == "outgoing-token"
    assert doc["userId"] == named(world, "rocket.cat")._id
    assert "retryCount" not in doc and "retryDelay" not in doc  # only filled when retrying


def test_outgoing_token_is_not_generated(world: World) -> None:
    body = {k: v for k, v in OUTGOING_CREATE.items() if k != "token"}
    assert "token" not in create(world, named(world, "admin"), body)


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        ({"retryFailedCalls": True}, (4, "powers-of-ten")),
        ({"retryFailedCalls": True, "retryCount": 0, "retryDelay": " "}, (4, "powers-of-ten")),
        ({"retryFailedCalls": True, "retryCount": 7.9, "retryDelay": "Exponential"}, (7, "exponential")),
        ({"retryFailedCalls": True, "retryCount": -2}, (4, "powers-of-ten")),
    ],
)
def test_outgoing_retry_defaults(world: World, retry: dict[str, Any], expected: tuple[int, str]) -> None:
    doc = create(world, named(world, "admin"), OUTGOING_CREATE, **retry)
    assert (doc["retryCount"], doc["retryDelay"]) == expected


def test_outgoing_retry_values_are_kept_as_sent_without_retrying(world: World) -> None:
    doc = create(world, named(world, "admin"), OUTGOING_CREATE, retryFailedCalls=False, retryCount=-3)
    assert doc["retryCount"] == -3
    assert "retryDelay" not in doc


def test_outgoing_events_without_channels(world: World) -> None:
    admin = named(world, "admin")
    doc = create(world, admin, OUTGOING_CREATE, event="roomCreated", channel="")
    assert doc["channel"] == []
    assert "triggerWords" not in doc  # only kept for events that use them
    joined = create(world, admin, OUTGOING_CREATE, event="roomJoined")
    assert "triggerWords" not in joined
    assert create_error(world, {**OUTGOING_CREATE, "event": "userCreated"})["errorType"] == "error-invalid-targetRoom"


# --- list ---------------------------------------------------------------------------------------------


def test_list_returns_full_documents(world: World) -> None:
    admin = named(world, "admin")
    doc = create(world, admin, OUTGOING_CREATE, scriptEnabled=True, script="class Script {}")
    listed = world.get(admin, "integrations.list").json()["integrations"]
    assert listed == [doc]
    assert {"token", "script", "scriptCompiled"} <= set(listed[0])


def test_list_name_is_a_case_insensitive_escaped_substring(world: World) -> None:
    admin = named(world, "admin")
    for name in ("Guggy", "Guggy 2", "old-guggy", "g.uggy", "Other"):
        create(world, admin, INCOMING_CREATE, name=name)

    def names(query: str) -> list[str]:
        return [i["name"] for i in world.get(admin, "integrations.list", {"name": query}).json()["integrations"]]

    assert names("guggy") == ["Guggy", "Guggy 2", "old-guggy"]
    assert names("g.uggy") == ["g.uggy"]
    assert names("(") == []


def test_list_type_is_exact(world: World) -> None:
    admin = named(world, "admin")
    create(world, admin, INCOMING_CREATE)
    create(world, admin, OUTGOING_CREATE)
    types = [
        i["type"] for i in world.get(admin, "integrations.list", {"type": "webhook-outgoing"}).json()["integrations"]
    ]
    assert types == ["webhook-outgoing"]
    assert world.get(admin, "integrations.list", {"type": "outgoing"}).json()["total"] == 0


def fill(world: World, count: int) -> None:
    admin = named(world, "admin")
    for index in range(count):
        world.store.insert_integration(
            {
                "type": "webhook-incoming",
                "name": f"hook {index:03d}",
                "enabled": True,
                "_createdBy": {"_id": admin._id, "username": "admin"},
            }
        )


@pytest.mark.parametrize(
    ("params", "settings", "expected_items"),
    [
        ({}, {}, 50),
        ({"count": "200"}, {}, 100),
        ({"count": "0"}, {}, 120),
        ({"count": "0"}, {"API_Allow_Infinite_Count": False}, 50),
        ({}, {"API_Default_Count": 0}, 50),
        ({"count": "500"}, {"API_Upper_Count_Limit": -1}, 100),
        ({"count": "7"}, {}, 7),
        ({"offset": "115"}, {}, 5),
        ({"offset": "10", "count": "3"}, {}, 3),
    ],
)
def test_list_pagination(world: World, params: dict[str, str], settings: dict[str, Any], expected_items: int) -> None:
    fill(world, 120)
    for key, value in settings.items():
        world.store.set_setting(key, value)
    payload = world.get(named(world, "admin"), "integrations.list", params).json()
    assert payload["items"] == payload["count"] == len(payload["integrations"]) == expected_items
    assert payload["total"] == 120
    assert payload["offset"] == int(params.get("offset", 0))
    if "offset" in params:
        assert payload["integrations"][0]["name"] == f"hook {int(params['offset']):03d}"


def test_list_sort(world: World) -> None:
    admin = named(world, "admin")
    for name in ("b", "c", "a"):
        create(world, admin, INCOMING_CREATE, name=name)

    def names(sort: str) -> list[str]:
        return [i["name"] for i in world.get(admin, "integrations.list", {"sort": sort}).json()["integrations"]]

    assert names('{"name": 1}') == ["a", "b", "c"]
    assert names('{"name": -1}') == ["c", "b", "a"]
    assert [i["name"] for i in world.get(admin, "integrations.list").json()["integrations"]] == ["b", "c", "a"]


@pytest.mark.parametrize("sort", ['{"name": 2}', "name", '["name"]'])
def test_list_invalid_sort(world: World, sort: str) -> None:
    assert error_of(world.get(named(world, "admin"), "integrations.list", {"sort": sort})) == {
        "success": False,
        "error": f'Invalid sort parameter provided: "{sort}" [error-invalid-sort]',
        "errorType": "error-invalid-sort",
        "details": {"helperMethod": "parseJsonQuery"},
    }


def test_list_unknown_parameters_are_400(world: World) -> None:
    assert error_of(world.get(named(world, "admin"), "integrations.list", {"fields": '{"token": 0}'})) == {
        "success": False,
        "error": "must NOT have additional properties [invalid-params]",
        "errorType": "invalid-params",
    }


def test_list_validation_beats_the_missing_permission(world: World) -> None:
    response = world.get(named(world, "alice"), "integrations.list", {"bogus": "1"})
    assert response.status_code == 400


# --- remove ---------------------------------------------------------------------------------------------


def test_remove_outgoing_by_target_url(world: World) -> None:
    admin = named(world, "admin")
    doc = create(world, admin, OUTGOING_CREATE)
    body = {"type": "webhook-outgoing", "target_url": OUTGOING_CREATE["urls"][0]}
    assert world.post(admin, "integrations.remove", body).json()["integration"] == doc
    assert world.store.get_integration(doc["_id"]) is None


def test_remove_errors(world: World) -> None:
    admin = named(world, "admin")
    assert error_of(world.post(admin, "integrations.remove", {"type": "webhook-incoming", "integrationId": "x"})) == {
        "success": False,
        "error": "No integration found.",
    }
    assert error_of(world.post(admin, "integrations.remove", {"type": "webhook-outgoing", "target_url": ""})) == {
        "success": False,
        "error": "An integrationId or target_url needs to be provided.",
    }


def test_remove_uses_the_delete_function_of_the_body_type(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-incoming-integrations")
    doc = create(world, named(world, "admin"), OUTGOING_CREATE)
    assert (
        world.post(alice, "integrations.remove", {"type": "webhook-outgoing", "integrationId": doc["_id"]}).json()[
            "errorType"
        ]
        == "not_authorized"
    )
    response = world.post(alice, "integrations.remove", {"type": "webhook-incoming", "integrationId": doc["_id"]})
    assert response.status_code == 200
    assert world.store.get_integration(doc["_id"]) is None


def test_get_with_created_by(world: World) -> None:
    admin, alice = named(world, "admin"), named(world, "alice")
    doc = create(world, admin, INCOMING_CREATE)
    params = {"integrationId": doc["_id"], "createdBy": admin._id}
    assert world.get(admin, "integrations.get", params).json()["integration"]["_id"] == doc["_id"]
    assert error_of(world.get(admin, "integrations.get", {**params, "createdBy": alice._id}))["error"] == (
        "The integration does not exists."
    )
    assert stored(world, doc["_id"])["name"] == "Guggy in"
