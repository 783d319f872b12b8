"""Issue 5, done-when 1: invalid values are refused before any write, with a clear reply.

Through the real bot process: each refusal names the field and what would be valid, the stored
document is unchanged, and the sandbox saw no `integrations.update` call at all (so the bot's
own validation, not the server, caught it). `--yes` is used so that a value the bot failed to
refuse would be written at once and fail the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from e2e_support import SHARED_GROUP, Workspace, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]

ROOM = "ops"
TOKEN = "stored-token-5d6e7f"


def incoming(ws: Workspace) -> dict[str, Any]:
    return ws.control.create_incoming_integration(
        unique_name("Refuse in"), channel="#general", created_by="admin", alias="kept", emoji=":ghost:"
    )


def outgoing(ws: Workspace, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "channel": "#general",
        "urls": ["https://hooks.example.org/only"],
        "created_by": "admin",
        "trigger_words": ["!one"],
        "token": TOKEN,
        "retry_failed_calls": True,
        "retry_count": 3,
    }
    values.update(extra)
    return ws.control.create_outgoing_integration(unique_name("Refuse out"), **values)


def room_joined(ws: Workspace) -> dict[str, Any]:
    return outgoing(ws, event="roomJoined", trigger_words=())


Maker = Callable[[Workspace], dict[str, Any]]
CASES: list[tuple[str, Maker, str, tuple[str, ...]]] = [
    ("unknown-field", incoming, "colour=red", ("`colour` is not a field I can set", "Fields: name, channel")),
    ("enabled", incoming, "enabled=false", ("enable and disable commands",)),
    ("script", incoming, 'script="class Script {}"', ("scripts can't be changed from chat",)),
    ("outgoing-only-field", incoming, "urls=https://x.example.org", ("urls: only outgoing webhooks have it",)),
    ("channel-without-sigil", incoming, "channel=alerts", ("channel: `alerts` is not a channel entry", "#alerts")),
    ("channel-unknown-room", incoming, "channel=+#no-such-room", ("channel: there is no room `#no-such-room`",)),
    ("channel-unknown-user", incoming, "channel=+@nobody", ("channel: there is no user `@nobody`",)),
    ("channel-scope-on-incoming", incoming, "channel=all_public_channels", ("is not a channel entry",)),
    ("last-channel", incoming, "channel -#general", ("at least one #room or @user",)),
    ("username-unknown", incoming, "username=ghost", ("username: there is no user `ghost`",)),
    ("name-empty", incoming, 'name=""', ("name: the name can't be empty",)),
    ("emoji-without-colons", incoming, "emoji=tada", ("emoji:", ":tada:")),
    ("avatar-not-a-url", incoming, "avatar=logo.png", ("avatar: an avatar is an http(s) image address",)),
    ("boolean", incoming, "scriptEnabled=maybe", ("scriptEnabled: `maybe` is not true or false",)),
    ("event-unknown", outgoing, "event=whenever", ("event: `whenever` is not an event", "sendMessage, fileUploaded")),
    ("urls-not-http", outgoing, "urls=ftp://files.example.org", ("urls: each URL must be an http(s) address",)),
    ("last-url", outgoing, "urls -https://hooks.example.org/only", ("at least one URL",)),
    ("retry-count-text", outgoing, "retryCount=three", ("retryCount: `three` is not a whole number",)),
    ("retry-count-negative", outgoing, "retryCount=-1", ("retryCount: `-1` is not a whole number",)),
    ("retry-count-zero", outgoing, "retryCount=0", ("at least 1 while retryFailedCalls is on",)),
    ("retry-delay", outgoing, "retryDelay=hourly", ("retryDelay:", "powers-of-ten, powers-of-two, increments-of-two")),
    ("user-created-needs-target", outgoing, "event=userCreated", ("targetRoom: the userCreated event needs",)),
    ("target-room-unknown", outgoing, "targetRoom=#no-such-room", ("targetRoom: there is no room",)),
    ("token-empty", outgoing, 'token=""', ("token: a token is one word of text and can't be empty",)),
    ("trigger-word-not-there", outgoing, "triggerWords -!zero", ("`!zero` is not in the list (it has: `!one`)",)),
    ("trigger-words-wrong-event", room_joined, "triggerWords=!x", ("only the sendMessage event uses trigger words",)),
    ("incoming-only-field", outgoing, "overrideDestinationChannelEnabled=on", ("only incoming webhooks have it",)),
]


def update_calls(ws: Workspace) -> int:
    return ws.control.counters().rest.get("integrations.update", 0)


@pytest.mark.parametrize(("case", "make", "args", "says"), CASES, ids=[c[0] for c in CASES])
def test_an_invalid_value_is_refused_before_any_write(
    workspace: Workspace, case: str, make: Maker, args: str, says: tuple[str, ...]
) -> None:
    created = make(workspace)
    before = workspace.control.integration(created["_id"])
    calls = update_calls(workspace)
    reply = workspace.chat.command("admin", ROOM, f'!integration set "{created["name"]}" {args} --yes')["msg"]
    plain = reply.replace("\u200b", "")
    for phrase in says:
        assert phrase in plain, reply
    assert "Nothing was changed" in plain or "I changed nothing" in plain
    assert workspace.control.integration(created["_id"]) == before
    assert update_calls(workspace) == calls


def test_several_problems_are_listed_together(workspace: Workspace) -> None:
    created = outgoing(workspace)
    calls = update_calls(workspace)
    reply = workspace.chat.command(
        "admin", ROOM, f"!integration set {created['_id']} retryCount=x runOnEdits=perhaps event=never --yes"
    )["msg"]
    assert reply.startswith("⚠️ I changed nothing:")
    fields = [line[2:].split(":")[0] for line in reply.splitlines() if line.startswith("• ")]
    assert fields == ["retryCount", "runOnEdits", "event"]
    assert update_calls(workspace) == calls


def test_a_token_refusal_never_echoes_the_value(workspace: Workspace) -> None:
    created = outgoing(workspace)
    reply = workspace.chat.command("admin", ROOM, f'!integration set {created["_id"]} token="two words" --yes')["msg"]
    assert "two words" not in reply
    assert "token:" in reply


def test_callers_without_the_right_are_refused_and_nothing_is_written(workspace: Workspace) -> None:
    created = incoming(workspace)
    calls = update_calls(workspace)
    for user in ("alice", "owen"):
        reply = workspace.chat.command(user, ROOM, f"!integration set {created['_id']} alias=mine --yes")["msg"]
        assert "⛔" in reply or "can't find" in reply, reply
    assert workspace.control.integration(created["_id"])["alias"] == "kept"
    assert update_calls(workspace) == calls
