"""Login, tokens, users.info, roles and permissions over REST (contract §1.1-§1.3, §3.3)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from rest_test_support import World, error_of, make_world

from sandbox.store import PermissionEvent

NOT_LOGGED_IN = {
    "success": False,
    "status": "error",
    "message": "You must be logged in to do this.",
    "error": "You must be logged in to do this.",
}
LOGIN_FAILED = {"success": False, "status": "error", "error": "Unauthorized", "message": "Unauthorized"}


@pytest.fixture
def world() -> World:
    world = make_world()
    world.user("bot", roles=("bot",), password="secret")
    return world


def test_api_info_reports_the_configured_version() -> None:
    world = make_world(version="7.13.9")
    assert world.client.get("/api/info").json() == {"version": "7.13.9", "success": True}


# --- login --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"user": "bot", "password": "secret"},
        {"user": {"username": "bot"}, "password": "secret"},
        {"user": {"email": "bot@example.org"}, "password": "secret"},
        {"user": "bot@example.org", "password": "secret"},
        {"username": "bot", "password": "secret"},
        {"email": "bot@example.org", "password": "secret"},
        {"username": "bot", "password": "secret", "code": "123456"},
        {
            "user": {"username": "bot"},
            "password": {"digest": hashlib.sha256(b"secret").hexdigest(), "algorithm": "sha-256"},
        },
    ],
)
def test_login_accepts_every_documented_body_shape(world: World, body: dict[str, Any]) -> None:
    response = world.post(None, "login", body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["status"] == "success"
    assert payload["success"] is True
    bot = world.store.find_user("bot")
    assert bot is not None
    assert payload["data"]["userId"] == bot._id
    me = payload["data"]["me"]
    assert (me["_id"], me["username"], me["roles"]) == (bot._id, "bot", ["bot", "own-bot"])
    assert me["emails"] == [{"address": "bot@example.org", "verified": True}]
    assert me["settings"] == {"preferences": {}}
    assert me["avatarUrl"].endswith("/avatar/bot")
    token = payload["data"]["authToken"]
    assert world.client.get("/api/v1/me", headers={"X-User-Id": bot._id, "X-Auth-Token": token}).status_code == 200


def test_login_with_resume_answers_with_the_same_token(world: World) -> None:
    bot = world.store.find_user("bot")
    assert bot is not None
    token = world.store.create_login_token(bot._id, kind="personalAccessToken", name="ci")
    payload = world.post(None, "login", {"resume": token}).json()
    assert payload["data"]["authToken"] == token
    assert payload["data"]["userId"] == bot._id


@pytest.mark.parametrize(
    "body",
    [
        {"user": "bot", "password": "wrong"},
        {"user": "nobody", "password": "secret"},
        {"username": "bot"},
        {"resume": "not-a-token"},
        {"user": "bot", "password": "secret", "extra": 1},
        {},
    ],
)
def test_every_login_failure_is_the_same_401(world: World, body: dict[str, Any]) -> None:
    response = world.post(None, "login", body)
    assert response.status_code == 401
    assert response.json() == LOGIN_FAILED


def test_deactivated_users_cannot_log_in(world: World) -> None:
    bot = world.store.find_user("bot")
    assert bot is not None
    bot.active = False
    assert world.post(None, "login", {"user": "bot", "password": "secret"}).status_code == 401


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-User-Id": "someone"}, {"X-Auth-Token": "tok"}, {"X-User-Id": "someone", "X-Auth-Token": "tok"}],
)
def test_missing_or_invalid_credentials_get_the_401_body(world: World, headers: dict[str, str]) -> None:
    response = world.client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == NOT_LOGGED_IN


def test_a_token_only_works_with_its_own_user_id(world: World) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    token = world.store.create_login_token(alice._id)
    assert world.client.get("/api/v1/me", headers={"X-User-Id": bob._id, "X-Auth-Token": token}).status_code == 401


def test_me_returns_the_callers_document(world: World) -> None:
    alice = world.user("alice")
    payload = world.get(alice, "me").json()
    assert payload["_id"] == alice._id
    assert payload["username"] == "alice"
    assert payload["success"] is True


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_logout_revokes_only_the_token_used(world: World, method: str) -> None:
    alice = world.user("alice")
    other = world.store.create_login_token(alice._id)
    headers = world.headers(alice)
    response = world.client.request(method, "/api/v1/logout", headers=headers)
    assert response.json() == {"status": "success", "data": {"message": "You've been logged out!"}}
    assert world.client.get("/api/v1/me", headers=headers).status_code == 401
    assert world.client.get("/api/v1/me", headers={"X-User-Id": alice._id, "X-Auth-Token": other}).status_code == 200


# --- personal access tokens -------------------------------------------------------------------------


def test_generated_personal_access_token_authenticates(world: World) -> None:
    alice = world.user("alice")
    payload = world.post(alice, "users.generatePersonalAccessToken", {"tokenName": "ci", "bypassTwoFactor": True})
    token = payload.json()["token"]
    assert world.client.get("/api/v1/me", headers={"X-User-Id": alice._id, "X-Auth-Token": token}).status_code == 200
    assert world.post(None, "login", {"resume": token}).status_code == 200


def test_personal_access_token_rules(world: World) -> None:
    alice = world.user("alice")
    assert error_of(world.post(alice, "users.generatePersonalAccessToken", {})) == {
        "success": False,
        "error": "The 'tokenName' param is required",
    }
    world.post(alice, "users.generatePersonalAccessToken", {"tokenName": "ci"})
    assert error_of(world.post(alice, "users.generatePersonalAccessToken", {"tokenName": "ci"})) == {
        "success": False,
        "error": "A token with this name already exists [error-token-already-exists]",
        "errorType": "error-token-already-exists",
        "details": {"method": "personalAccessTokens:generateToken"},
    }
    guest = world.user("guest", roles=("guest",))
    assert error_of(world.post(guest, "users.generatePersonalAccessToken", {"tokenName": "x"}))["errorType"] == (
        "not-authorized"
    )


# --- users.info --------------------------------------------------------------------------------------


def test_users_info_about_oneself_includes_roles_and_emails(world: World) -> None:
    alice = world.user("alice")
    user = world.get(alice, "users.info", {"userId": alice._id}).json()["user"]
    assert user["roles"] == ["user", "own-alice"]
    assert user["emails"] == [{"address": "alice@example.org", "verified": True}]
    assert user["canViewAllInfo"] is True


def test_users_info_about_others_hides_roles_without_view_full_other_user_info(world: World) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    user = world.get(alice, "users.info", {"username": "bob"}).json()["user"]
    assert user["_id"] == bob._id
    assert "roles" not in user
    assert "emails" not in user
    assert user["canViewAllInfo"] is False
    world.grant(alice, "view-full-other-user-info")
    assert world.get(alice, "users.info", {"userId": bob._id}).json()["user"]["roles"] == ["user", "own-bob"]


def test_users_info_errors(world: World) -> None:
    alice = world.user("alice")
    assert error_of(world.get(alice, "users.info", {"userId": "missing"})) == {
        "success": False,
        "error": "User not found.",
    }
    assert error_of(world.get(alice, "users.info", {"userId": ""})) == {
        "success": False,
        "error": "Invalid search query.",
    }
    invalid = error_of(world.get(alice, "users.info", {"id": "x"}))
    assert invalid["errorType"] == "invalid-params"
    assert invalid["error"].endswith("must match a schema in anyOf [invalid-params]")


def test_users_info_with_rooms(world: World) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    world.store.create_room("general", members=["alice"])
    rooms = world.get(alice, "users.info", {"userId": alice._id, "includeUserRooms": "true"}).json()["user"]["rooms"]
    assert [(r["name"], r["t"]) for r in rooms] == [("general", "c")]
    assert "rooms" not in world.get(bob, "users.info", {"userId": alice._id, "includeUserRooms": "true"}).json()["user"]


# --- roles and permissions --------------------------------------------------------------------------


def test_roles_list(world: World) -> None:
    alice = world.user("alice")
    roles = {role["_id"]: role for role in world.get(alice, "roles.list").json()["roles"]}
    assert roles["admin"]["scope"] == "Users"
    assert roles["admin"]["protected"] is True
    assert "bot" in roles


def test_permissions_list_all_returns_everything_without_updated_since(world: World) -> None:
    alice = world.user("alice")
    payload = world.get(alice, "permissions.listAll").json()
    by_id = {p["_id"]: p for p in payload["update"]}
    assert by_id["manage-incoming-integrations"]["roles"] == ["admin"]
    assert by_id["api-bypass-rate-limit"]["roles"] == ["admin", "bot", "app"]
    assert payload["remove"] == []
    assert isinstance(by_id["manage-incoming-integrations"]["_updatedAt"], str)


def test_permissions_list_all_since_a_date_returns_the_changed_ones(world: World) -> None:
    alice = world.user("alice")
    since = world.store.permissions["manage-incoming-integrations"]["_updatedAt"].isoformat()
    world.store.set_permission_roles("manage-incoming-integrations", ["admin", "user"])
    changed = world.get(alice, "permissions.listAll", {"updatedSince": since}).json()["update"]
    assert [p["_id"] for p in changed] == ["manage-incoming-integrations"]


def test_permissions_list_all_refuses_an_invalid_date_and_unknown_params(world: World) -> None:
    alice = world.user("alice")
    assert error_of(world.get(alice, "permissions.listAll", {"updatedSince": "yesterday"})) == {
        "success": False,
        "error": 'The "updatedSince" query parameter must be a valid date. [error-roomId-param-invalid]',
        "errorType": "error-roomId-param-invalid",
    }
    assert error_of(world.get(alice, "permissions.listAll", {"since": "x"})) == {
        "success": False,
        "errorType": "error-invalid-params",
        "error": "must NOT have additional properties",
    }


def test_permissions_update_changes_roles_and_announces_it(world: World) -> None:
    admin = world.user("admin", roles=("admin",))
    events: list[PermissionEvent] = []
    world.store.add_listener(lambda e: events.append(e) if isinstance(e, PermissionEvent) else None)
    body = {"permissions": [{"_id": "manage-incoming-integrations", "roles": ["admin", "user"]}]}
    payload = world.post(admin, "permissions.update", body).json()
    assert payload["success"] is True
    updated = {p["_id"]: p for p in payload["permissions"]}
    assert updated["manage-incoming-integrations"]["roles"] == ["admin", "user"]
    assert [(e.action, e.permission["_id"], e.permission["roles"]) for e in events] == [
        ("updated", "manage-incoming-integrations", ["admin", "user"])
    ]


def test_permissions_update_needs_access_permissions(world: World) -> None:
    alice = world.user("alice")
    response = world.post(alice, "permissions.update", {"permissions": [{"_id": "view-logs", "roles": ["user"]}]})
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "error": "User does not have the permissions required for this action [error-unauthorized]",
    }
    assert world.store.permissions["view-logs"]["roles"] == ["admin"]


def test_permissions_update_errors(world: World) -> None:
    admin = world.user("admin", roles=("admin",))
    unknown = {"permissions": [{"_id": "no-such-permission", "roles": ["user"]}]}
    assert error_of(world.post(admin, "permissions.update", unknown)) == {
        "success": False,
        "error": "Invalid permission",
        "errorType": "error-invalid-permission",
    }
    bad_role = {"permissions": [{"_id": "view-logs", "roles": ["no-such-role"]}]}
    assert error_of(world.post(admin, "permissions.update", bad_role)) == {
        "success": False,
        "error": "Invalid role",
        "errorType": "error-invalid-role",
    }
    # a typed route: validation answers without the " [invalid-params]" suffix
    assert error_of(world.post(admin, "permissions.update", {"permissions": [{"_id": "view-logs"}]})) == {
        "success": False,
        "errorType": "invalid-params",
        "error": "must have required property 'roles'",
    }
