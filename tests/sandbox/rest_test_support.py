"""Shared scaffolding for the sandbox REST tests: a store, the REST app and users with tokens.

Permissions are granted the way Rocket.Chat's own e2e tests do it: by changing which roles hold
a permission (each test user gets a private role, so grants never leak between users).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sandbox.config import SandboxConfig, UpdateMode
from sandbox.rest import create_rest_app
from sandbox.store import Store, User

with warnings.catch_warnings():
    # Starlette asks for the `httpx2` fork; plain httpx works for an in-process ASGI client.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

MODES: list[tuple[UpdateMode, bool]] = [("8.x", True), ("8.x", False), ("legacy", True), ("legacy", False)]
MODE_IDS = [f"{mode}-{'null' if as_null else 'kept'}" for mode, as_null in MODES]


class FakeClock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start_ms: float = 1_717_600_000_000.0) -> None:
        self.now = start_ms

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms


class TickingClock:
    """Store time that moves one second per reading: distinct, ordered timestamps, no sleeping."""

    def __init__(self, start: datetime = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class World:
    store: Store
    config: SandboxConfig
    client: TestClient
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)

    def user(self, username: str, *, roles: tuple[str, ...] = ("user",), password: str | None = None) -> User:
        user = self.store.create_user(username, password=password or f"pw-{username}", roles=roles)
        self.store.create_role(f"own-{username}")
        self.store.set_user_roles(user._id, [*roles, f"own-{username}"])
        return user

    def grant(self, user: User, *permissions: str) -> None:
        """Give `user` permissions through their private role (like `permissions.update`)."""
        for permission in permissions:
            current = self.store.permissions.get(permission, {}).get("roles", [])
            self.store.set_permission_roles(permission, [*current, f"own-{user.username}"])

    def revoke_from_role(self, role: str, *permissions: str) -> None:
        for permission in permissions:
            current = self.store.permissions[permission]["roles"]
            self.store.set_permission_roles(permission, [r for r in current if r != role])

    def headers(self, user: User) -> dict[str, str]:
        if user._id not in self.tokens:
            self.tokens[user._id] = self.store.create_login_token(user._id)
        return {"X-User-Id": user._id, "X-Auth-Token": self.tokens[user._id]}

    def get(self, user: User | None, name: str, params: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**(self.headers(user) if user else {}), **kwargs.pop("headers", {})}
        return self.client.get(f"/api/v1/{name}", params=params, headers=headers, **kwargs)

    def post(self, user: User | None, name: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**(self.headers(user) if user else {}), **kwargs.pop("headers", {})}
        return self.client.post(f"/api/v1/{name}", json=body, headers=headers, **kwargs)

    def put(self, user: User | None, name: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**(self.headers(user) if user else {}), **kwargs.pop("headers", {})}
        return self.client.put(f"/api/v1/{name}", json=body, headers=headers, **kwargs)


def make_world(
    update_mode: UpdateMode = "8.x", *, omitted_as_null: bool = True, rate_limit: bool = False, version: str = "8.8.1"
) -> World:
    store = Store(clock=TickingClock())
    config = SandboxConfig(
        update_mode=update_mode, omitted_as_null=omitted_as_null, rate_limit=rate_limit, version=version
    )
    clock = FakeClock()
    client = TestClient(create_rest_app(store, config, clock_ms=clock))
    return World(store, config, client, clock)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["success"] is False, body
    return body


# --- integrations ----------------------------------------------------------------------------------

INCOMING_CREATE: dict[str, Any] = {
    "type": "webhook-incoming",
    "name": "Guggy in",
    "enabled": True,
    "username": "rocket.cat",
    "channel": "#general",
    "scriptEnabled": False,
}
OUTGOING_CREATE: dict[str, Any] = {
    "type": "webhook-outgoing",
    "name": "Guggy",
    "enabled": True,
    "event": "sendMessage",
    "username": "rocket.cat",
    "channel": "#general",
    "urls": ["http://text2gif.guggy.com/guggify"],
    "triggerWords": ["!guggy"],
    "token": "outgoing-token",
    "scriptEnabled": False,
}


def integrations_world(update_mode: UpdateMode = "8.x", *, omitted_as_null: bool = True) -> World:
    """admin (all rights), alice and bob (plain users), the post-as user rocket.cat, #general
    (admin, alice, bob) and #ops (admin only)."""
    world = make_world(update_mode, omitted_as_null=omitted_as_null)
    world.user("admin", roles=("admin",))
    world.user("alice")
    world.user("bob")
    world.user("rocket.cat", roles=("bot",))
    world.store.create_room("general", members=["admin", "alice", "bob"])
    world.store.create_room("ops", members=["admin"])
    return world


def named(world: World, username: str) -> User:
    user = world.store.find_user(username)
    assert user is not None, username
    return user


def create(world: World, caller: User, base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    response = world.post(caller, "integrations.create", {**base, **changes})
    assert response.status_code == 200, response.json()
    integration: dict[str, Any] = response.json()["integration"]
    return integration


def stored(world: World, integration_id: str) -> dict[str, Any]:
    doc = world.store.get_integration(integration_id)
    assert doc is not None
    return doc
