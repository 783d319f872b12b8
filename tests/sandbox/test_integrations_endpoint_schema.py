"""Every integrations request the official schema rejects is rejected by the sandbox the same
way (400 invalid-params), and none it accepts is: random bodies checked against
tests/schemas/*.json with a standard validator (ajv's `nullable` spelled as a type union)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from rest_test_support import INCOMING_CREATE, OUTGOING_CREATE, World, create, integrations_world, named

from sandbox.config import UpdateMode
from tests.secret_watch import MIN_LENGTH

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def standard(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: standard(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable") is True and isinstance(schema.get("type"), str):
            out["type"] = [schema["type"], "null"]
        return out
    if isinstance(schema, list):
        return [standard(v) for v in schema]
    return schema


@cache
def official(name: str) -> Draft202012Validator:
    return Draft202012Validator(standard(json.loads((SCHEMAS / f"{name}.json").read_text())))


def keys_of(schema: Any) -> list[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(found | {"_id", "userId"})


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.sampled_from(["", "x", "false", "true", "4", "#general", "@alice", "webhook-incoming", "webhook-outgoing"]),
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2)
)

# A stored webhook token is a secret to the suite's secret watch (tests/secret_watch.py): a word
# of this strategy long enough to count as one ("#general", "webhook-incoming") would be "found"
# in every log line that names that channel or type. Shorter strings still test a string token.
TOKEN_VALUES = VALUES.filter(lambda value: not (isinstance(value, str) and len(value) >= MIN_LENGTH))


def mutate(data: st.DataObject, seed: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    body = copy.deepcopy(seed)
    for _ in range(data.draw(st.integers(0, 3), label="changes")):
        key = data.draw(st.sampled_from(keys), label="key")
        if data.draw(st.booleans(), label="drop"):
            body.pop(key, None)
        else:
            body[key] = data.draw(TOKEN_VALUES if key == "token" else VALUES, label="value")
    return body


@cache
def world_with_integrations(mode: UpdateMode) -> tuple[World, dict[str, Any], dict[str, Any]]:
    world = integrations_world(mode)
    admin = named(world, "admin")
    return world, create(world, admin, INCOMING_CREATE), create(world, admin, OUTGOING_CREATE)


def check(response: httpx.Response, accepted: bool, *, typed: bool, coerces: bool) -> None:
    payload = response.json()
    rejected = response.status_code == 400 and payload.get("errorType") == "invalid-params"
    if accepted:
        assert not rejected, payload
        return
    if coerces and not rejected:
        return  # 8.x coercion may turn a rejected value into an accepted one
    assert rejected, payload
    assert payload["success"] is False
    assert payload["error"].endswith(" [invalid-params]") is not typed


COMMON = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("mode", ["legacy", "8.x"])
@COMMON
@given(data=st.data())
def test_update_bodies(mode: UpdateMode, data: st.DataObject) -> None:
    world, incoming, outgoing = world_with_integrations(mode)
    seeds = [
        {**INCOMING_CREATE, "integrationId": incoming["_id"]},
        {**OUTGOING_CREATE, "integrationId": outgoing["_id"]},
    ]
    body = mutate(
        data, data.draw(st.sampled_from(seeds)), keys_of(json.loads((SCHEMAS / "integrations.update.json").read_text()))
    )
    accepted = official("integrations.update").is_valid(body)
    response = world.put(named(world, "admin"), "integrations.update", body)
    check(response, accepted, typed=False, coerces=mode == "8.x")


@pytest.mark.parametrize("mode", ["legacy", "8.x"])
@COMMON
@given(data=st.data())
def test_create_bodies(mode: UpdateMode, data: st.DataObject) -> None:
    world, _incoming, _outgoing = world_with_integrations(mode)
    body = mutate(
        data,
        data.draw(st.sampled_from([INCOMING_CREATE, OUTGOING_CREATE])),
        keys_of(json.loads((SCHEMAS / "integrations.create.json").read_text())),
    )
    accepted = official("integrations.create").is_valid(body)
    response = world.post(named(world, "admin"), "integrations.create", body)
    check(response, accepted, typed=True, coerces=mode == "8.x")


REMOVE_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "pattern": "webhook-incoming"},
                "integrationId": {"type": "string"},
            },
            "required": ["type", "integrationId"],
        },
        {
            "type": "object",
            "properties": {"type": {"type": "string", "pattern": "webhook-outgoing"}, "target_url": {"type": "string"}},
            "required": ["type", "target_url"],
        },
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "pattern": "webhook-outgoing"},
                "integrationId": {"type": "string"},
            },
            "required": ["type", "integrationId"],
        },
    ]
}  # rest-typings IntegrationsRemoveProps (not among the shared schema files)


@COMMON
@given(data=st.data())
def test_remove_bodies(data: st.DataObject) -> None:
    world, incoming, _outgoing = world_with_integrations("legacy")
    seeds = [
        {"type": "webhook-incoming", "integrationId": "missing"},
        {"type": "webhook-outgoing", "target_url": "http://nowhere.example"},
        {"type": "webhook-outgoing", "integrationId": incoming["_id"] + "x"},
    ]
    body = mutate(data, data.draw(st.sampled_from(seeds)), ["type", "integrationId", "target_url", "extra"])
    accepted = Draft202012Validator(REMOVE_SCHEMA).is_valid(body)
    response = world.post(named(world, "admin"), "integrations.remove", body)
    check(response, accepted, typed=False, coerces=False)


QUERY_VALUES = st.one_of(
    st.sampled_from(["", "5", "0", "x", "-1"]), st.lists(st.sampled_from(["1", "2"]), min_size=2, max_size=2)
)


@pytest.mark.parametrize("name", ["integrations.list", "integrations.get"])
@COMMON
@given(data=st.data())
def test_query_parameters(name: str, data: st.DataObject) -> None:
    world, incoming, _outgoing = world_with_integrations("8.x")
    keys = [*json.loads((SCHEMAS / f"{name}.json").read_text())["properties"], "fields", "extra"]
    seed: dict[str, Any] = {"integrationId": incoming["_id"]} if name == "integrations.get" else {}
    params = copy.deepcopy(seed)
    for _ in range(data.draw(st.integers(0, 3))):
        key = data.draw(st.sampled_from(keys))
        params[key] = data.draw(QUERY_VALUES)
    params.pop("sort", None)  # sort must be JSON; its own error is tested elsewhere
    # A repeated query parameter arrives as an array, which `coerceTypes: "array"` never joins.
    accepted = official(name).is_valid(params)
    response = world.get(named(world, "admin"), name, params)
    check(response, accepted, typed=False, coerces=False)
