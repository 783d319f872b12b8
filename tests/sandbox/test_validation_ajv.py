"""The sandbox's request validation answers like ajv: same accept/reject, same messages, same
coercion (contract §1.4, §2.4.1)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sandbox.validation import SHARED_SCHEMAS, RequestValidator, SchemaError, load_schema, validate

ROOT = Path(__file__).resolve().parents[2]

INCOMING = {
    "type": "webhook-incoming",
    "integrationId": "x",
    "channel": "#general",
    "scriptEnabled": False,
    "name": "Guggy in",
    "enabled": True,
}
OUTGOING = {
    "type": "webhook-outgoing",
    "integrationId": "x",
    "username": "rocket.cat",
    "channel": "#general",
    "event": "sendMessage",
    "scriptEnabled": False,
    "name": "Guggy",
    "enabled": True,
    "urls": ["http://example.org/hook"],
    "token": "secret",
}


# --- contract §2.4.1, verbatim ----------------------------------------------------------------------

CONTRACT_ROWS = [
    (
        {"type": "webhook-incoming", "integrationId": "x", "enabled": False},
        "must have required property 'channel'\n must have required property 'username'\n"
        " must match exactly one schema in oneOf",
    ),
    (
        {**INCOMING, "channel": ["#general"]},
        "must be string\n must have required property 'username'\n must match exactly one schema in oneOf",
    ),
    (
        {k: v for k, v in OUTGOING.items() if k != "username"},
        "must match pattern \"webhook-incoming\"\n must have required property 'username'\n"
        " must match exactly one schema in oneOf",
    ),
    (
        {**OUTGOING, "_id": "x"},
        'must match pattern "webhook-incoming"\n must NOT have additional properties\n'
        " must match exactly one schema in oneOf",
    ),
    (
        {"integrationId": "x"},
        "must have required property 'type'\n must have required property 'type'\n"
        " must match exactly one schema in oneOf",
    ),
]


@pytest.mark.parametrize("coercion", ["none", "scalar"])
@pytest.mark.parametrize(("body", "expected"), CONTRACT_ROWS)
def test_integrations_update_messages_match_the_contract_table(
    body: dict[str, Any], expected: str, coercion: Any
) -> None:
    outcome = validate("integrations.update", body, coercion)
    assert outcome.text == expected


def test_valid_bodies_of_both_branches_pass() -> None:
    assert validate("integrations.update", INCOMING, "none").ok
    assert validate("integrations.update", OUTGOING, "none").ok


def test_type_pattern_is_unanchored() -> None:
    body = {**INCOMING, "type": "webhook-incoming-invalid"}
    assert validate("integrations.update", body, "none").ok


def test_incoming_branch_accepts_extra_keys_outgoing_refuses_them() -> None:
    assert validate("integrations.update", {**INCOMING, "username": "bot", "_createdAt": "x"}, "none").ok
    assert not validate("integrations.update", {**OUTGOING, "userId": "x"}, "none").ok


def test_get_without_integration_id() -> None:
    assert validate("integrations.get", {}, "array").text == "must have required property 'integrationId'"


def test_list_refuses_unknown_parameters() -> None:
    assert validate("integrations.list", {"fields": "{}"}, "array").text == "must NOT have additional properties"


def test_remove_with_an_invalid_type_fails_every_branch() -> None:
    text = validate("integrations.remove", {"type": "invalid-type", "integrationId": "x"}, "none").text
    assert text.endswith("must match exactly one schema in oneOf")
    assert text.split("\n ")[:3] == [
        'must match pattern "webhook-incoming"',
        "must have required property 'target_url'",
        'must match pattern "webhook-outgoing"',
    ]


def test_two_passing_branches_are_also_a_oneof_failure() -> None:
    # {type: outgoing, integrationId, target_url} matches the 2nd and the 3rd branch.
    body = {"type": "webhook-outgoing", "integrationId": "x", "target_url": "http://a"}
    outcome = validate("integrations.remove", body, "none")
    assert outcome.messages == ('must match pattern "webhook-incoming"', "must match exactly one schema in oneOf")


def test_anyof_reports_every_branch_then_its_own_error() -> None:
    assert validate("users.info", {}, "array").messages == (
        "must have required property 'userId'",
        "must have required property 'username'",
        "must have required property 'importId'",
        "must have required property 'email'",
        "must have required property 'freeSwitchExtension'",
        "must match a schema in anyOf",
    )


def test_nested_oneof_errors_come_before_the_other_branch() -> None:
    assert validate("chat.postMessage", {"roomId": 5}, "none").messages == (
        "must be string",
        "must be array",
        "must match exactly one schema in oneOf",
        "must have required property 'channel'",
        "must match exactly one schema in oneOf",
    )


def test_required_is_checked_before_additional_properties_before_properties() -> None:
    body = {"message": 5, "extra": 1}
    assert validate("chat.sendMessage", body, "none").text == "must NOT have additional properties"
    assert validate("chat.sendMessage", {"extra": 1}, "none").text == "must have required property 'message'"
    assert validate("chat.sendMessage", {"message": 5}, "none").text == "must be object"


def test_item_messages_and_unique_items() -> None:
    assert validate("integrations.update", {**OUTGOING, "urls": [""]}, "none").messages[1] == (
        "must NOT have fewer than 1 characters"
    )
    body = {"permissions": [{"_id": "p", "roles": ["a", "b", "a"]}]}
    assert validate("permissions.update", body, "none").text == (
        "must NOT have duplicate items (items ## 2 and 0 are identical)"
    )


# --- coercion: 8.x coerces, 6.x/7.x does not -----------------------------------------------------------


def test_legacy_does_not_coerce_strings() -> None:
    text = validate("integrations.update", {**INCOMING, "enabled": "false"}, "none").text
    assert text.startswith("must be boolean\n")
    text = validate("integrations.update", {**OUTGOING, "retryCount": "5"}, "none").text
    assert "must be number" in text


def test_8x_coerces_scalars_in_place() -> None:
    outcome = validate("integrations.update", {**INCOMING, "enabled": "false", "scriptEnabled": 0}, "scalar")
    assert outcome.ok
    assert outcome.data["enabled"] is False
    assert outcome.data["scriptEnabled"] is False
    outcome = validate("integrations.update", {**OUTGOING, "retryCount": "5", "runOnEdits": "true"}, "scalar")
    assert outcome.ok
    assert outcome.data["retryCount"] == 5
    assert outcome.data["runOnEdits"] is True


def test_8x_turns_null_into_empty_string_for_non_nullable_strings() -> None:
    outcome = validate("integrations.update", {**INCOMING, "scriptEngine": None}, "scalar")
    assert outcome.ok
    assert outcome.data["scriptEngine"] == ""
    # nullable ones keep null
    assert validate("integrations.update", {**INCOMING, "alias": None}, "scalar").data["alias"] is None


def test_arrays_for_channel_are_rejected_in_every_mode() -> None:
    # Bodies are validated without ("none", 6.x/7.x) or with scalar coercion (8.x `ajv`).
    for coercion in ("none", "scalar"):
        assert validate("integrations.update", {**INCOMING, "channel": ["#a"]}, coercion).messages[0] == (
            "must be string"
        )


def test_uncoercible_values_still_fail_in_8x() -> None:
    assert validate("integrations.update", {**INCOMING, "enabled": "maybe"}, "scalar").messages[0] == (
        "must be boolean"
    )
    assert validate("integrations.update", {**OUTGOING, "retryCount": "5x"}, "scalar").messages[1] == ("must be number")


def test_query_coercion_unwraps_a_repeated_parameter_only_once() -> None:
    assert validate("integrations.get", {"integrationId": ["a"]}, "array").data == {"integrationId": "a"}
    assert validate("integrations.get", {"integrationId": ["a", "b"]}, "array").text == "must be string"
    assert validate("integrations.get", {"integrationId": ["a"]}, "none").text == "must be string"


def test_validation_does_not_touch_the_callers_object() -> None:
    body = {**INCOMING, "enabled": "false"}
    before = copy.deepcopy(body)
    validate("integrations.update", body, "scalar")
    assert body == before


# --- the schemas themselves --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHARED_SCHEMAS)
def test_sandbox_schema_copies_are_the_shared_ones(name: str) -> None:
    ours = (ROOT / "sandbox" / "schemas" / f"{name}.json").read_bytes()
    assert ours == (ROOT / "tests" / "schemas" / f"{name}.json").read_bytes()


def test_unsupported_keywords_are_refused_at_load() -> None:
    with pytest.raises(SchemaError, match="patternProperties"):
        RequestValidator({"type": "object", "patternProperties": {"^x": {}}}, coercion="none")
    with pytest.raises(SchemaError, match="additionalProperties"):
        RequestValidator({"type": "object", "additionalProperties": {"type": "string"}}, coercion="none")


# --- property: same accept/reject as a standard validator (without coercion) ----------------------


def _standard(schema: Any) -> Any:
    """ajv's `nullable: true` written as standard JSON Schema (`type: [t, "null"]`)."""
    if isinstance(schema, dict):
        out = {k: _standard(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable") is True and isinstance(schema.get("type"), str):
            out["type"] = [schema["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_standard(v) for v in schema]
    return schema


def _keys_of(schema: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(schema, dict):
        keys.update(schema.get("properties", {}))
        keys.update(schema.get("required", []))
        for value in schema.values():
            keys |= _keys_of(value)
    elif isinstance(schema, list):
        for value in schema:
            keys |= _keys_of(value)
    return keys


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "x", "false", "true", "5", "webhook-incoming", "webhook-outgoing", "#general", "a,b"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)


CREATE_INCOMING = {k: v for k, v in INCOMING.items() if k != "integrationId"} | {"username": "rocket.cat"}
SEEDS: dict[str, list[dict[str, Any]]] = {
    "chat.postMessage": [{"roomId": "GENERAL", "text": "hi"}, {"channel": "#general", "text": "x", "alias": None}],
    "chat.sendMessage": [{"message": {"rid": "GENERAL", "msg": "hi"}}],
    "integrations.create": [CREATE_INCOMING, {k: v for k, v in OUTGOING.items() if k != "integrationId"}],
    "integrations.get": [{"integrationId": "x"}, {"integrationId": "x", "createdBy": "u"}],
    "integrations.list": [{}, {"count": "5", "offset": "0", "name": "g", "type": "webhook-incoming"}],
    "integrations.update": [INCOMING, OUTGOING, {**OUTGOING, "target_url": "http://a", "alias": None}],
    "users.info": [{"userId": "x"}, {"username": "u", "includeUserRooms": "true"}],
}


@pytest.mark.parametrize("name", sorted(SEEDS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_accepts_exactly_what_a_standard_validator_accepts(name: str, data: st.DataObject) -> None:
    """Valid seeds with a few keys removed or replaced: both outcomes are exercised."""
    schema = load_schema(name)
    instance = copy.deepcopy(data.draw(st.sampled_from(SEEDS[name])))
    keys = sorted(_keys_of(schema) | {"extra"})
    for _ in range(data.draw(st.integers(0, 3))):
        key = data.draw(st.sampled_from(keys))
        if data.draw(st.booleans()):
            instance.pop(key, None)
        else:
            instance[key] = data.draw(VALUES)
    expected = Draft202012Validator(_standard(schema)).is_valid(instance)
    assert validate(name, instance, "none").ok == expected, json.dumps(instance)
    if expected:
        assert validate(name, instance, "scalar").ok  # coercion only ever widens


def test_login_schema_is_loaded_but_not_applied_by_the_server() -> None:
    # manifest: /api/v1/login is registered without validateParams; `{resume}` is accepted.
    assert not validate("login", {"resume": "token"}, "none").ok
