"""`PUT integrations.update`: the REST dispatch (§2.4.2), the incoming (§2.4.3) and outgoing
(§2.4.5) server logic in Rocket.Chat's order, and the error envelopes clients see."""

from __future__ import annotations

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

INCOMING_DETAILS = {"method": "updateIncomingIntegration"}
REQUIRED_FIELDS = {"function": "validateOutgoing._verifyRequiredFields"}
VALIDATE = {"function": "validateOutgoing"}
CHANNEL_PERMISSIONS = {"function": "validateOutgoing._verifyUserHasPermissionForChannels"}


@pytest.fixture
def world() -> World:
    return integrations_world()


@pytest.fixture
def incoming(world: World) -> dict[str, Any]:
    return create(world, named(world, "admin"), INCOMING_CREATE)


@pytest.fixture
def outgoing(world: World) -> dict[str, Any]:
    return create(world, named(world, "admin"), OUTGOING_CREATE)


def incoming_body(integration: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in INCOMING_CREATE.items() if k != "username"}
    return {**body, "integrationId": integration["_id"], **changes}


def outgoing_body(integration: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**OUTGOING_CREATE, "integrationId": integration["_id"], **changes}


def meteor(code: str, reason: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "error": f"{reason} [{code}]", "errorType": code}
    if details is not None:
        body["details"] = details
    return body


def update_error(world: World, username: str, body: dict[str, Any]) -> dict[str, Any]:
    response = world.put(named(world, username), "integrations.update", body)
    assert response.status_code == 400, response.json()
    return error_of(response)


# --- REST dispatch --------------------------------------------------------------------------------


def test_update_needs_a_login(world: World, incoming: dict[str, Any]) -> None:
    assert world.put(None, "integrations.update", incoming_body(incoming)).status_code == 401


@pytest.mark.parametrize("kind", ["incoming", "outgoing"])
def test_unknown_id_is_no_integration_found(world: World, kind: str) -> None:
    body = incoming_body({"_id": "nope"}) if kind == "incoming" else outgoing_body({"_id": "nope"})
    assert update_error(world, "admin", body) == {"success": False, "error": "No integration found."}


def test_outgoing_is_found_by_target_url_first(world: World, outgoing: dict[str, Any]) -> None:
    body = outgoing_body(outgoing, integrationId=None, target_url=OUTGOING_CREATE["urls"][0], name="by url")
    updated = world.put(named(world, "admin"), "integrations.update", body).json()["integration"]
    assert (updated["_id"], updated["name"]) == (outgoing["_id"], "by url")
    body["target_url"] = "http://elsewhere.example"
    assert update_error(world, "admin", body) == {"success": False, "error": "No integration found."}


def test_a_type_matching_the_unanchored_pattern_is_an_invalid_type(world: World, incoming: dict[str, Any]) -> None:
    body = incoming_body(incoming, type="webhook-incoming-v2")
    assert update_error(world, "admin", body) == {"success": False, "error": "Invalid integration type."}


def test_the_body_type_decides_which_update_runs(world: World, outgoing: dict[str, Any]) -> None:
    # An incoming body with an outgoing integration's id runs the incoming code on it.
    body = incoming_body(outgoing, name="hijacked")
    updated = world.put(named(world, "admin"), "integrations.update", body).json()["integration"]
    assert updated["type"] == "webhook-outgoing"
    assert updated["name"] == "hijacked"
    assert updated["event"] == "sendMessage"  # the incoming $set never touches it


def test_an_unprivileged_caller_can_tell_existing_ids_apart(world: World, incoming: dict[str, Any]) -> None:
    assert update_error(world, "alice", incoming_body({"_id": "nope"}))["error"] == "No integration found."
    assert update_error(world, "alice", incoming_body(incoming))["errorType"] == "not_authorized"


def test_the_response_is_the_re_read_full_document(world: World) -> None:
    admin = named(world, "admin")
    integration = create(world, admin, INCOMING_CREATE, scriptEnabled=True, script="class Script {}")
    updated = world.put(admin, "integrations.update", incoming_body(integration, enabled=False)).json()
    assert updated["success"] is True
    doc = updated["integration"]
    assert doc["token"] == integration["token"]
    assert doc["script"] == "class Script {}"
    assert doc["scriptCompiled"]
    assert doc["_updatedBy"] == {"_id": admin._id, "username": "admin"}
    assert doc["_createdAt"] == integration["_createdAt"]


# --- incoming, §2.4.3 in order -------------------------------------------------------------------


def test_incoming_empty_channel(world: World, incoming: dict[str, Any]) -> None:
    assert update_error(world, "admin", incoming_body(incoming, channel=" ")) == meteor(
        "error-invalid-channel", "Invalid channel", INCOMING_DETAILS
    )


def test_incoming_channel_must_start_with_hash_or_at(world: World, incoming: dict[str, Any]) -> None:
    for channel in ("general", "#general,", "#general, ops"):
        assert update_error(world, "admin", incoming_body(incoming, channel=channel)) == meteor(
            "error-invalid-channel-start-with-chars", "Invalid channel. Start with @ or #", INCOMING_DETAILS
        )


def test_incoming_without_permission_is_not_authorized(world: World, incoming: dict[str, Any]) -> None:
    assert update_error(world, "alice", incoming_body(incoming)) == {
        "success": False,
        "error": "Unauthorized [not_authorized]",
        "errorType": "not_authorized",
        "details": {"method": "updateIncomingIntegration"},
    }


def test_incoming_channel_syntax_is_checked_before_permission(world: World, incoming: dict[str, Any]) -> None:
    assert update_error(world, "alice", incoming_body(incoming, channel="general"))["errorType"] == (
        "error-invalid-channel-start-with-chars"
    )
    assert update_error(world, "alice", incoming_body(incoming, channel="#nope"))["errorType"] == "not_authorized"


def test_incoming_own_permission_on_someone_elses_is_invalid_integration(
    world: World, incoming: dict[str, Any]
) -> None:
    world.grant(named(world, "alice"), "manage-own-incoming-integrations")
    assert update_error(world, "alice", incoming_body(incoming)) == meteor(
        "error-invalid-integration", "Invalid integration", INCOMING_DETAILS
    )


def test_incoming_unknown_room_or_user(world: World, incoming: dict[str, Any]) -> None:
    for channel in ("#nope", "@nobody", "#general,#nope"):
        assert update_error(world, "admin", incoming_body(incoming, channel=channel)) == meteor(
            "error-invalid-room", "Invalid room", INCOMING_DETAILS
        )


def test_incoming_channels_by_id_and_user_id_resolve(world: World, incoming: dict[str, Any]) -> None:
    room_id = world.store.find_room("ops")["_id"]  # type: ignore[index]
    channel = f"#{room_id},@{named(world, 'bob')._id},@alice"
    updated = world.put(named(world, "admin"), "integrations.update", incoming_body(incoming, channel=channel))
    assert updated.json()["integration"]["channel"] == [f"#{room_id}", f"@{named(world, 'bob')._id}", "@alice"]


def test_incoming_membership_is_required_unless_both_permissions(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-incoming-integrations")
    integration = create(world, alice, INCOMING_CREATE)
    assert update_error(world, "alice", incoming_body(integration, channel="#ops")) == meteor(
        "error-invalid-channel", "Invalid Channel", INCOMING_DETAILS
    )
    assert world.put(alice, "integrations.update", incoming_body(integration, channel="#general")).status_code == 200
    world.grant(alice, "manage-own-incoming-integrations")
    assert world.put(alice, "integrations.update", incoming_body(integration, channel="#ops")).status_code == 200


def test_incoming_at_user_entries_always_fail_the_membership_check(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-incoming-integrations")
    integration = create(world, alice, INCOMING_CREATE)
    assert update_error(world, "alice", incoming_body(integration, channel="@bob"))["error"] == (
        "Invalid Channel [error-invalid-channel]"
    )
    admin = named(world, "admin")
    assert world.put(admin, "integrations.update", incoming_body(integration, channel="@bob")).status_code == 200


def test_incoming_post_as_user_must_exist(world: World, incoming: dict[str, Any]) -> None:
    assert update_error(world, "admin", incoming_body(incoming, username="ghost")) == meteor(
        "error-invalid-post-as-user", "Invalid Post As User", INCOMING_DETAILS
    )
    # Without `username` in the body the stored post-as user is checked.
    world.store.update_integration(incoming["_id"], {"username": "deleted.user"})
    assert update_error(world, "admin", incoming_body(incoming))["errorType"] == "error-invalid-post-as-user"


def test_incoming_post_as_user_is_given_the_bot_role(world: World, incoming: dict[str, Any]) -> None:
    hookbot = world.user("hookbot")
    assert "bot" not in hookbot.roles
    world.put(named(world, "admin"), "integrations.update", incoming_body(incoming, username="hookbot"))
    assert "bot" in named(world, "hookbot").roles


def test_incoming_script_compile_is_written_even_if_a_later_step_fails(world: World, incoming: dict[str, Any]) -> None:
    body = incoming_body(incoming, scriptEnabled=True, script="class Script { broken(", channel="#nope")
    assert update_error(world, "admin", body)["errorType"] == "error-invalid-room"
    doc = stored(world, incoming["_id"])
    assert doc["scriptError"]["name"] == "SyntaxError"
    assert "scriptCompiled" not in doc
    assert "script" not in doc  # the main $set never ran


def test_incoming_compiled_and_error_are_mutually_exclusive(world: World, incoming: dict[str, Any]) -> None:
    admin = named(world, "admin")
    broken = world.put(admin, "integrations.update", incoming_body(incoming, scriptEnabled=True, script="{"))
    assert "scriptError" in broken.json()["integration"]
    assert "scriptCompiled" not in broken.json()["integration"]
    fixed = world.put(admin, "integrations.update", incoming_body(incoming, scriptEnabled=True, script="{ }"))
    assert fixed.json()["integration"]["scriptCompiled"] == "{ }"
    assert "scriptError" not in fixed.json()["integration"]


# --- outgoing, §2.4.5 in order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"event": "nope"}, meteor("error-invalid-event-type", "Invalid event type", REQUIRED_FIELDS)),
        ({"username": " "}, meteor("error-invalid-username", "Invalid username", REQUIRED_FIELDS)),
        ({"event": "userCreated"}, meteor("error-invalid-targetRoom", "Invalid Target Room", REQUIRED_FIELDS)),
        ({"urls": None}, meteor("error-invalid-urls", "Invalid URLs", REQUIRED_FIELDS)),
        ({"urls": [" "]}, meteor("error-invalid-urls", "Invalid URLs", REQUIRED_FIELDS)),
        ({"channel": "  "}, meteor("error-invalid-channel", "Invalid Channel", VALIDATE)),
        (
            {"channel": "general"},
            meteor("error-invalid-channel-start-with-chars", "Invalid channel. Start with @ or #", VALIDATE),
        ),
        (
            {"username": "ghost"},
            meteor("error-invalid-user", "Invalid user (did you delete the `rocket.cat` user?)", VALIDATE),
        ),
        ({"channel": "#nope"}, meteor("error-invalid-room", "Invalid room", CHANNEL_PERMISSIONS)),
        ({"channel": "ALL_PUBLIC_CHANNELS"}, meteor("error-invalid-room", "Invalid room", CHANNEL_PERMISSIONS)),
        ({"token": None}, meteor("error-invalid-token", "Invalid token", {"method": "updateOutgoingIntegration"})),
        ({"token": "  "}, meteor("error-invalid-token", "Invalid token", {"method": "updateOutgoingIntegration"})),
    ],
)
def test_outgoing_validation_errors(
    world: World, outgoing: dict[str, Any], changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    body = outgoing_body(outgoing, **changes)
    body = {k: v for k, v in body.items() if v is not None or k not in ("urls", "token")}
    assert update_error(world, "admin", body) == expected


def test_outgoing_validation_comes_before_the_permission_check(world: World, outgoing: dict[str, Any]) -> None:
    assert update_error(world, "alice", outgoing_body(outgoing, event="nope"))["errorType"] == (
        "error-invalid-event-type"
    )
    assert update_error(world, "alice", outgoing_body(outgoing, token=" "))["errorType"] == "error-invalid-token"
    assert update_error(world, "alice", outgoing_body(outgoing)) == meteor(
        "not_authorized", "Unauthorized", {"method": "updateOutgoingIntegration"}
    )


def test_outgoing_own_permission_on_someone_elses_is_invalid_integration(
    world: World, outgoing: dict[str, Any]
) -> None:
    world.grant(named(world, "alice"), "manage-own-outgoing-integrations")
    assert update_error(world, "alice", outgoing_body(outgoing)) == {
        "success": False,
        "error": "[methods] updateOutgoingIntegration -> integration not found [invalid_integration]",
        "errorType": "invalid_integration",
    }


def test_outgoing_events_without_channels_need_the_all_permission(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-own-outgoing-integrations")
    integration = create(world, alice, OUTGOING_CREATE)
    assert update_error(world, "alice", outgoing_body(integration, event="roomCreated", channel="")) == meteor(
        "error-invalid-permissions", "Invalid permission for required Integration creation.", VALIDATE
    )
    updated = world.put(named(world, "admin"), "integrations.update", outgoing_body(integration, event="roomCreated"))
    assert updated.json()["integration"]["channel"] == []


def test_outgoing_scopes_other_than_public_need_the_all_permission(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-own-outgoing-integrations")
    integration = create(world, alice, OUTGOING_CREATE)
    body = outgoing_body(integration, channel="all_public_channels")
    assert world.put(alice, "integrations.update", body).json()["integration"]["channel"] == ["all_public_channels"]
    for scope in ("all_private_groups", "all_direct_messages"):
        assert update_error(world, "alice", outgoing_body(integration, channel=scope)) == meteor(
            "error-invalid-channel", "Invalid Channel", CHANNEL_PERMISSIONS
        )


def test_outgoing_membership_is_required_unless_both_permissions(world: World) -> None:
    alice = named(world, "alice")
    world.grant(alice, "manage-outgoing-integrations")
    integration = create(world, alice, OUTGOING_CREATE)
    assert update_error(world, "alice", outgoing_body(integration, channel="#ops")) == meteor(
        "error-invalid-channel", "Invalid Channel", CHANNEL_PERMISSIONS
    )
    world.grant(alice, "manage-own-outgoing-integrations")
    assert world.put(alice, "integrations.update", outgoing_body(integration, channel="#ops")).status_code == 200


def test_outgoing_update_normalises_what_it_stores(world: World, outgoing: dict[str, Any]) -> None:
    body = outgoing_body(
        outgoing,
        channel=" #general , #ops ,",
        urls=["http://a.example", " "],
        triggerWords=["!a", " ", "!b"],
        runOnEdits=None,
        retryFailedCalls=True,
        retryDelay="Exponential",
    )
    doc = world.put(named(world, "admin"), "integrations.update", body).json()["integration"]
    assert doc["channel"] == ["#general", "#ops"]
    assert doc["urls"] == ["http://a.example"]
    assert doc["triggerWords"] == ["!a", "!b"]
    assert doc["runOnEdits"] is False
    assert (doc["retryCount"], doc["retryDelay"]) == (4, "exponential")
    assert doc["userId"] == named(world, "rocket.cat")._id


def test_outgoing_trigger_words_are_dropped_for_events_that_do_not_use_them(
    world: World, outgoing: dict[str, Any]
) -> None:
    doc = world.put(named(world, "admin"), "integrations.update", outgoing_body(outgoing, event="roomJoined")).json()
    assert doc["integration"]["triggerWords"] is None  # deleted from the validated body, then $set undefined
