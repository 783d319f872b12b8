"""Every combination of the four integration permissions, own or someone else's integration, of
either type, against the contract's rules (§2.2, §2.3, §2.4.3/§2.4.5 step 9, §2.6, §3.2).

The expected outcomes are computed by `Rules`, a transcription of the contract's prose, not of
the sandbox's code."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from rest_test_support import INCOMING_CREATE, OUTGOING_CREATE, World, create, integrations_world, named

from sandbox.permissions import INTEGRATION_PERMISSIONS

SUBSETS = [frozenset(c) for n in range(5) for c in itertools.combinations(INTEGRATION_PERMISSIONS, n)]


def subset_id(perms: frozenset[str]) -> str:
    short = {
        "manage-incoming-integrations": "in",
        "manage-own-incoming-integrations": "own-in",
        "manage-outgoing-integrations": "out",
        "manage-own-outgoing-integrations": "own-out",
    }
    return "+".join(sorted(short[p] for p in perms)) or "none"


@dataclass(frozen=True)
class Rules:
    perms: frozenset[str]

    def all(self, kind: str) -> bool:
        return f"manage-{kind}-integrations" in self.perms

    def own(self, kind: str) -> bool:
        return f"manage-own-{kind}-integrations" in self.perms

    def may_manage(self, kind: str, mine: bool) -> bool:
        """Either/or fallback: the "all" permission, else the "own" one on one's own."""
        return self.all(kind) or (self.own(kind) and mine)

    def any_route_permission(self) -> bool:
        return bool(self.perms)

    def visible(self, kind: str, mine: bool) -> bool:
        """integrations.list filter, including the "both own -> only own" quirk."""
        if self.all("incoming") and self.all("outgoing"):
            return True
        if self.own("incoming") and self.own("outgoing"):
            return mine
        return self.all(kind) or (self.own(kind) and mine)


@dataclass
class Case:
    world: World
    caller: Any
    integration: dict[str, Any]
    rules: Rules


def make_case(perms: frozenset[str], kind: str, mine: bool) -> Case:
    world = integrations_world()
    admin = named(world, "admin")
    caller = world.user("carol")
    world.store.add_member("general", "carol")
    world.grant(caller, *perms)
    integration = create(world, admin, INCOMING_CREATE if kind == "incoming" else OUTGOING_CREATE)
    if mine:
        world.store.update_integration(integration["_id"], {"_createdBy": {"_id": caller._id, "username": "carol"}})
    return Case(world, caller, integration, Rules(perms))


CASES = [
    pytest.param(perms, kind, mine, id=f"{subset_id(perms)}-{kind}-{'own' if mine else 'other'}")
    for perms in SUBSETS
    for kind in ("incoming", "outgoing")
    for mine in (True, False)
]


@pytest.mark.parametrize(("perms", "kind", "mine"), CASES)
def test_get(perms: frozenset[str], kind: str, mine: bool) -> None:
    case = make_case(perms, kind, mine)
    response = case.world.get(case.caller, "integrations.get", {"integrationId": case.integration["_id"]})
    if case.rules.may_manage(kind, mine):
        assert response.status_code == 200
        assert response.json()["integration"]["_id"] == case.integration["_id"]
    else:
        assert response.status_code == 400
        assert response.json() == {"success": False, "error": "not-authorized"}


@pytest.mark.parametrize(("perms", "kind", "mine"), CASES)
def test_update(perms: frozenset[str], kind: str, mine: bool) -> None:
    case = make_case(perms, kind, mine)
    base = INCOMING_CREATE if kind == "incoming" else OUTGOING_CREATE
    body = {**base, "integrationId": case.integration["_id"], "enabled": False}
    response = case.world.put(case.caller, "integrations.update", body)
    stored = case.world.store.get_integration(case.integration["_id"])
    assert stored is not None
    if case.rules.may_manage(kind, mine):
        assert response.status_code == 200, response.json()
        assert stored["enabled"] is False
        return
    assert response.status_code == 400
    assert stored["enabled"] is True
    error = response.json()
    if case.rules.own(kind):
        expected = "error-invalid-integration" if kind == "incoming" else "invalid_integration"
        assert error["errorType"] == expected
    else:
        assert error["errorType"] == "not_authorized"
        assert error["details"] == {"method": f"update{kind.capitalize()}Integration"}


@pytest.mark.parametrize(("perms", "kind", "mine"), CASES)
def test_remove(perms: frozenset[str], kind: str, mine: bool) -> None:
    case = make_case(perms, kind, mine)
    body = {"type": f"webhook-{kind}", "integrationId": case.integration["_id"]}
    response = case.world.post(case.caller, "integrations.remove", body)
    gone = case.world.store.get_integration(case.integration["_id"]) is None
    if not case.rules.any_route_permission():
        assert response.status_code == 403
        assert response.json()["error"] == (
            "User does not have the permissions required for this action [error-unauthorized]"
        )
        assert not gone
    elif case.rules.may_manage(kind, mine):
        assert response.status_code == 200
        assert response.json()["integration"]["_id"] == case.integration["_id"]
        assert gone
    else:
        assert response.status_code == 400
        expected = "error-invalid-integration" if case.rules.own(kind) else "not_authorized"
        assert response.json()["errorType"] == expected
        assert response.json()["details"] == {"method": f"delete{kind.capitalize()}Integration"}
        assert not gone


@pytest.mark.parametrize("perms", SUBSETS, ids=[subset_id(p) for p in SUBSETS])
def test_list(perms: frozenset[str]) -> None:
    world = integrations_world()
    admin = named(world, "admin")
    caller = world.user("carol")
    world.grant(caller, *perms)
    expected: set[str] = set()
    rules = Rules(perms)
    for kind, base in (("incoming", INCOMING_CREATE), ("outgoing", OUTGOING_CREATE)):
        for mine in (True, False):
            doc = create(world, admin, base, name=f"{kind}-{'own' if mine else 'other'}")
            if mine:
                world.store.update_integration(doc["_id"], {"_createdBy": {"_id": caller._id, "username": "carol"}})
            if rules.visible(kind, mine):
                expected.add(doc["name"])
    response = world.get(caller, "integrations.list")
    if not rules.any_route_permission():
        assert response.status_code == 403
        return
    payload = response.json()
    assert {i["name"] for i in payload["integrations"]} == expected
    assert payload["total"] == len(expected)


def test_room_roles_never_grant_integration_rights() -> None:
    # A room owner/moderator role is a subscription role: integration checks pass no room scope.
    world = integrations_world()
    carol = world.user("carol")
    world.store.set_permission_roles("manage-incoming-integrations", ["admin", "owner"])
    world.store.add_member("general", "carol")
    world.store.subscriptions[(world.store.find_room("general")["_id"], carol._id)]["roles"] = ["owner"]  # type: ignore[index]
    integration = create(world, named(world, "admin"), INCOMING_CREATE)
    response = world.get(carol, "integrations.get", {"integrationId": integration["_id"]})
    assert response.json() == {"success": False, "error": "not-authorized"}
