"""The emulator conformance checklist of contract §7, one test per bullet (Rocket.Chat's own
e2e tests, which flip role lists between cases as `World.grant`/`revoke_from_role` do here)."""

from __future__ import annotations

import pytest
from rest_test_support import (
    INCOMING_CREATE,
    OUTGOING_CREATE,
    World,
    create,
    error_of,
    integrations_world,
    named,
)

from sandbox.permissions import INTEGRATION_PERMISSIONS

FORBIDDEN_TEXT = "User does not have the permissions required for this action [error-unauthorized]"


@pytest.fixture
def world() -> World:
    return integrations_world()


def strip_from_admin(world: World, *permissions: str) -> None:
    world.revoke_from_role("admin", *permissions)


# --- integrations.create ---------------------------------------------------------------------------


@pytest.mark.parametrize("base", [INCOMING_CREATE, OUTGOING_CREATE], ids=["incoming", "outgoing"])
def test_create_without_any_manage_permission_is_400_not_authorized(world: World, base: dict[str, object]) -> None:
    response = world.post(named(world, "alice"), "integrations.create", base)
    assert response.status_code == 400
    assert error_of(response)["errorType"] == "not_authorized"


def test_create_not_authorized_texts_differ_by_type(world: World) -> None:
    alice = named(world, "alice")
    assert error_of(world.post(alice, "integrations.create", INCOMING_CREATE))["error"] == (
        "Unauthorized [not_authorized]"
    )
    outgoing = error_of(world.post(alice, "integrations.create", OUTGOING_CREATE))
    assert outgoing == {"success": False, "error": "[not_authorized]", "errorType": "not_authorized"}


@pytest.mark.parametrize(
    ("base", "bad_type"),
    [(INCOMING_CREATE, "webhook-incoming-invalid"), (OUTGOING_CREATE, "webhook-outgoing-invalid")],
)
def test_create_with_an_invalid_type_is_400_invalid_integration_type(
    world: World, base: dict[str, object], bad_type: str
) -> None:
    response = world.post(named(world, "admin"), "integrations.create", {**base, "type": bad_type})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Invalid integration type."}


@pytest.mark.parametrize("kind", ["incoming", "outgoing"])
@pytest.mark.parametrize("scope", ["all", "own"])
def test_create_with_only_one_of_the_permissions_is_200(world: World, kind: str, scope: str) -> None:
    alice = named(world, "alice")
    permission = f"manage-{kind}-integrations" if scope == "all" else f"manage-own-{kind}-integrations"
    world.grant(alice, permission)
    base = INCOMING_CREATE if kind == "incoming" else OUTGOING_CREATE
    response = world.post(alice, "integrations.create", base)
    assert response.status_code == 200
    payload = response.json()
    assert payload["success"] is True
    integration = payload["integration"]
    assert integration["_createdBy"] == {"_id": alice._id, "username": "alice"}
    if kind == "outgoing":
        assert {k: integration[k] for k in ("name", "type", "enabled", "username", "event")} == {
            k: OUTGOING_CREATE[k] for k in ("name", "type", "enabled", "username", "event")
        }


def test_incoming_create_defaults_override_destination_channel_to_false(world: World) -> None:
    integration = create(world, named(world, "admin"), INCOMING_CREATE)
    assert integration["overrideDestinationChannelEnabled"] is False


def test_incoming_create_returns_a_token_usable_for_the_webhook(world: World) -> None:
    integration = create(world, named(world, "admin"), INCOMING_CREATE)
    assert len(integration["token"]) == 48
    # What POST /hooks/<id>/<token> does (the hook route itself is not part of this REST API).
    message = world.store.post_webhook_message(integration["_id"], "from the hook")
    assert message["bot"] == {"i": integration["_id"]}
    assert message["u"]["username"] == "rocket.cat"


# --- integrations.list ---------------------------------------------------------------------------------


def test_list_answers_200_with_the_created_integration_and_paging_keys(world: World) -> None:
    admin = named(world, "admin")
    created = create(world, admin, INCOMING_CREATE)
    payload = world.get(admin, "integrations.list").json()
    assert payload["success"] is True
    assert created["_id"] in [i["_id"] for i in payload["integrations"]]
    assert {"offset", "items", "total"} <= set(payload)


def test_list_with_only_own_permissions_shows_only_own_integrations(world: World) -> None:
    admin, alice = named(world, "admin"), named(world, "alice")
    by_admin = create(world, admin, INCOMING_CREATE)
    world.grant(alice, "manage-own-incoming-integrations")
    mine = create(world, alice, INCOMING_CREATE, name="mine")
    listed = [i["_id"] for i in world.get(alice, "integrations.list").json()["integrations"]]
    assert listed == [mine["_id"]]
    assert by_admin["_id"] not in listed


def test_list_without_any_integration_permission_is_403(world: World) -> None:
    response = world.get(named(world, "alice"), "integrations.list")
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": FORBIDDEN_TEXT}


# --- integrations.get -----------------------------------------------------------------------------------


def test_get_without_integration_id_is_400_invalid_params(world: World) -> None:
    response = world.get(named(world, "admin"), "integrations.get")
    assert response.status_code == 400
    assert response.json()["error"] == "must have required property 'integrationId' [invalid-params]"


def test_get_without_permission_and_not_creator_is_400_not_authorized(world: World) -> None:
    admin, alice = named(world, "admin"), named(world, "alice")
    integration = create(world, admin, INCOMING_CREATE)
    world.grant(alice, "manage-own-incoming-integrations")  # own perm, but not the creator
    response = world.get(alice, "integrations.get", {"integrationId": integration["_id"]})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "not-authorized"}


def test_get_an_unknown_id_with_permission_is_400_does_not_exists(world: World) -> None:
    response = world.get(named(world, "admin"), "integrations.get", {"integrationId": "invalid"})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "The integration does not exists."}


def test_get_by_the_creator_with_only_own_permission_is_200(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-own-outgoing-integrations")
    integration = create(world, alice, OUTGOING_CREATE)
    response = world.get(alice, "integrations.get", {"integrationId": integration["_id"]})
    assert response.status_code == 200
    assert response.json()["integration"]["_id"] == integration["_id"]


@pytest.mark.parametrize("base", [INCOMING_CREATE, OUTGOING_CREATE], ids=["incoming", "outgoing"])
def test_get_by_an_admin_with_manage_permission_is_200(world: World, base: dict[str, object]) -> None:
    admin = named(world, "admin")
    integration = create(world, admin, base)
    payload = world.get(admin, "integrations.get", {"integrationId": integration["_id"]}).json()
    assert payload["integration"] == integration


# --- integrations.update (incoming) ------------------------------------------------------------------


def test_update_with_a_full_incoming_body_changes_it_and_get_shows_it(world: World) -> None:
    admin = named(world, "admin")
    integration = create(world, admin, INCOMING_CREATE)
    body = {
        "type": "webhook-incoming",
        "name": "Guggy renamed",
        "enabled": True,
        "alias": "guggy",
        "username": "rocket.cat",
        "scriptEnabled": True,
        "overrideDestinationChannelEnabled": True,
        "channel": "#general",
        "integrationId": integration["_id"],
    }
    response = world.put(admin, "integrations.update", body)
    assert response.status_code == 200
    updated = response.json()["integration"]
    assert updated["_id"] == integration["_id"]
    assert (updated["name"], updated["alias"]) == ("Guggy renamed", "guggy")
    fetched = world.get(admin, "integrations.get", {"integrationId": integration["_id"]}).json()["integration"]
    assert (fetched["name"], fetched["alias"]) == ("Guggy renamed", "guggy")


def test_update_with_override_destination_channel_returns_it_true(world: World) -> None:
    admin = named(world, "admin")
    integration = create(world, admin, INCOMING_CREATE)
    body = {**INCOMING_CREATE, "integrationId": integration["_id"], "overrideDestinationChannelEnabled": True}
    assert world.put(admin, "integrations.update", body).json()["integration"]["overrideDestinationChannelEnabled"]


def test_update_with_another_username_posts_as_that_user(world: World) -> None:
    admin = named(world, "admin")
    hookbot = world.user("hookbot")
    integration = create(world, admin, INCOMING_CREATE)
    body = {**INCOMING_CREATE, "integrationId": integration["_id"], "username": "hookbot"}
    updated = world.put(admin, "integrations.update", body).json()["integration"]
    assert (updated["username"], updated["userId"]) == ("hookbot", hookbot._id)
    message = world.store.post_webhook_message(integration["_id"], "posted by the hook")
    assert message["u"]["_id"] == hookbot._id


# --- integrations.remove ----------------------------------------------------------------------------------


def test_remove_without_permissions_is_403(world: World) -> None:
    integration = create(world, named(world, "admin"), INCOMING_CREATE)
    body = {"type": "webhook-incoming", "integrationId": integration["_id"]}
    response = world.post(named(world, "alice"), "integrations.remove", body)
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": FORBIDDEN_TEXT}
    assert world.store.get_integration(integration["_id"]) is not None


def test_remove_with_an_invalid_type_is_400_oneof(world: World) -> None:
    response = world.post(named(world, "admin"), "integrations.remove", {"type": "invalid-type", "integrationId": "x"})
    assert response.status_code == 400
    assert "must match exactly one schema in oneOf" in response.json()["error"]


def test_remove_with_permission_and_by_the_creator_with_only_own_permission(world: World) -> None:
    admin, alice = named(world, "admin"), named(world, "alice")
    by_admin = create(world, admin, OUTGOING_CREATE)
    response = world.post(admin, "integrations.remove", {"type": "webhook-outgoing", "integrationId": by_admin["_id"]})
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert response.json()["integration"]["_id"] == by_admin["_id"]
    assert world.store.get_integration(by_admin["_id"]) is None
    world.grant(alice, "manage-own-incoming-integrations")
    own = create(world, alice, INCOMING_CREATE)
    response = world.post(alice, "integrations.remove", {"type": "webhook-incoming", "integrationId": own["_id"]})
    assert response.status_code == 200
    assert world.store.get_integration(own["_id"]) is None


# --- login (miscellaneous tests) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"user": {"username": "alice"}, "password": "pw-alice"},
        {"user": {"email": "alice@example.org"}, "password": "pw-alice"},
        {"user": "alice@example.org", "password": "pw-alice"},
        {"username": "alice", "password": "pw-alice"},
    ],
)
def test_login_shapes_of_the_miscellaneous_tests(world: World, body: dict[str, object]) -> None:
    payload = world.post(None, "login", body).json()
    assert payload["status"] == "success"
    assert payload["data"]["userId"] == named(world, "alice")._id
    assert payload["data"]["authToken"]
    assert payload["data"]["me"]["username"] == "alice"


def test_the_four_integration_permissions_are_admin_only_by_default(world: World) -> None:
    assert all(world.store.permissions[p]["roles"] == ["admin"] for p in INTEGRATION_PERMISSIONS)
    strip_from_admin(world, *INTEGRATION_PERMISSIONS)
    assert world.get(named(world, "admin"), "integrations.list").status_code == 403
