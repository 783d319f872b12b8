"""The demo workspace: who may do what, which integrations exist, and that the credentials work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.permissions import INTEGRATION_PERMISSIONS
from sandbox.seed import seed_demo
from sandbox.server import SandboxServer
from sandbox.store import Store


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def seeded(store: Store) -> dict[str, Any]:
    return seed_demo(store)


def granted(store: Store, user_id: str) -> set[str]:
    return {p for p in store.permissions if store.has_permission(user_id, p)}


def test_the_bot_has_exactly_what_it_needs_and_no_admin(store: Store, seeded: dict[str, Any]) -> None:
    bot = seeded["users"]["integrations-bot"]
    assert bot["roles"] == ["bot", "integrations-manager"]
    perms = granted(store, bot["userId"])
    # All four integration rights (both "all" and "own" exempt the bot's own updates from the
    # channel-membership rule), plus reading callers' roles and rooms.
    assert set(INTEGRATION_PERMISSIONS) <= perms
    assert {"view-full-other-user-info", "view-other-user-channels"} <= perms
    assert "admin" not in store.user_roles(bot["userId"])
    assert {"access-permissions", "view-user-administration", "edit-other-user-info"}.isdisjoint(perms)
    bot_user = store.find_user("integrations-bot")
    assert bot_user is not None and bot_user.type == "bot"


def test_owen_alice_and_admin(store: Store, seeded: dict[str, Any]) -> None:
    owen, alice, admin = (seeded["users"][n]["userId"] for n in ("owen", "alice", "admin"))
    assert set(INTEGRATION_PERMISSIONS) & granted(store, owen) == {
        "manage-own-incoming-integrations",
        "manage-own-outgoing-integrations",
    }
    assert set(INTEGRATION_PERMISSIONS) & granted(store, alice) == set()
    assert set(INTEGRATION_PERMISSIONS) <= granted(store, admin)
    assert store.user_roles(alice) == {"user"}


def test_integrations_cover_the_interesting_cases(store: Store, seeded: dict[str, Any]) -> None:
    docs = store.list_integrations()
    guggies = sorted(d["type"] for d in docs if d["name"] == "Guggy")
    assert guggies == ["webhook-incoming", "webhook-outgoing"]
    assert any("guggy" in d["name"].lower() and d["name"] != "Guggy" and not d["enabled"] for d in docs)
    by_owen = {d["type"] for d in docs if d["_createdBy"]["username"] == "owen"}
    assert by_owen == {"webhook-incoming", "webhook-outgoing"}
    outgoing = [d for d in docs if d["type"] == "webhook-outgoing"]
    assert any(d.get("triggerWords") and d.get("retryFailedCalls") and d.get("runOnEdits") for d in outgoing)
    assert any(d.get("targetRoom") and d["event"] == "userCreated" and d["channel"] == [] for d in outgoing)
    assert any(d.get("scriptEnabled") and d.get("scriptCompiled") for d in outgoing)
    assert all(d.get("token") for d in outgoing)  # every seeded outgoing webhook can be updated
    incoming = [d for d in docs if d["type"] == "webhook-incoming"]
    assert all(len(d["token"]) == 48 for d in incoming)
    assert any(d.get("alias") and d.get("emoji") and d.get("avatar") and d.get("scriptEnabled") for d in incoming)
    labels = seeded["integrations"]
    assert {v["id"] for v in labels.values()} == {d["_id"] for d in docs}
    assert labels["guggy-outgoing"]["type"] == "webhook-outgoing" and labels["guggy-outgoing"]["name"] == "Guggy"


def test_the_bot_is_a_member_of_every_integration_channel(store: Store, seeded: dict[str, Any]) -> None:
    bot = seeded["users"]["integrations-bot"]["userId"]
    for doc in store.list_integrations():
        for entry in doc["channel"]:
            room = store.find_room(entry.removeprefix("#"))
            assert room is not None and store.is_member(room["_id"], bot), (doc["name"], entry)


def test_rooms_settings_and_tokens(store: Store, seeded: dict[str, Any]) -> None:
    assert store.get_setting("Message_AllowUnrecognizedSlashCommand") is True
    rooms = seeded["rooms"]
    assert rooms["general"] == "GENERAL"
    assert {store.rooms[rid]["t"] for rid in rooms.values()} == {"c", "p", "d"}
    assert store.rooms[rooms["dm:alice:integrations-bot"]]["t"] == "d"
    for name, user in seeded["users"].items():
        found = store.user_by_resume_token(user["authToken"])
        assert found is not None and found.username == name
        assert store.check_password(found, plaintext=user["password"])
    assert len({u["password"] for u in seeded["users"].values()}) == len(seeded["users"])


@pytest.fixture
def demo() -> Iterator[tuple[SandboxServer, dict[str, Any]]]:
    store = Store()
    seeded = seed_demo(store)
    with SandboxServer(store) as server:
        yield server, seeded


def _list(server: SandboxServer, user: dict[str, Any]) -> httpx.Response:
    headers = {"X-User-Id": user["userId"], "X-Auth-Token": user["authToken"]}
    return httpx.get(f"{server.url}/api/v1/integrations.list", params={"count": 0}, headers=headers, timeout=5)


def test_rights_as_the_rest_api_sees_them(demo: tuple[SandboxServer, dict[str, Any]]) -> None:
    server, seeded = demo
    users = seeded["users"]
    everything = _list(server, users["integrations-bot"])
    assert everything.status_code == 200 and everything.json()["total"] == len(seeded["integrations"])
    own = _list(server, users["owen"])
    assert own.status_code == 200
    assert {i["_createdBy"]["username"] for i in own.json()["integrations"]} == {"owen"}
    assert _list(server, users["alice"]).status_code == 403


# Keys integrations.update accepts (contract §2.4.1); the outgoing branch allows nothing else.
_INCOMING_KEYS = {
    "type",
    "name",
    "enabled",
    "channel",
    "scriptEnabled",
    "script",
    "scriptEngine",
    "alias",
    "avatar",
    "emoji",
    "overrideDestinationChannelEnabled",
    "username",
}
_OUTGOING_KEYS = {
    "type",
    "name",
    "enabled",
    "channel",
    "event",
    "username",
    "urls",
    "token",
    "triggerWords",
    "triggerWordAnywhere",
    "runOnEdits",
    "retryFailedCalls",
    "retryCount",
    "retryDelay",
    "impersonateUser",
    "targetRoom",
    "alias",
    "avatar",
    "emoji",
    "script",
    "scriptEnabled",
    "scriptEngine",
}


def test_the_bot_can_toggle_every_seeded_integration(demo: tuple[SandboxServer, dict[str, Any]]) -> None:
    server, seeded = demo
    bot = seeded["users"]["integrations-bot"]
    headers = {"X-User-Id": bot["userId"], "X-Auth-Token": bot["authToken"]}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as http:
        for label, meta in seeded["integrations"].items():
            doc = http.get("/api/v1/integrations.get", params={"integrationId": meta["id"]}).json()["integration"]
            keys = _INCOMING_KEYS if doc["type"] == "webhook-incoming" else _OUTGOING_KEYS
            body = {k: v for k, v in doc.items() if k in keys}
            body.update(integrationId=doc["_id"], channel=",".join(doc["channel"]), enabled=not doc["enabled"])
            response = http.put("/api/v1/integrations.update", json=body)
            assert response.status_code == 200, (label, response.json())
            assert response.json()["integration"]["enabled"] is not doc["enabled"]
