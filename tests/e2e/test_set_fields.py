"""Issue 5, done-when 1: `set` changes every supported field, on both types, in both update modes.

The real `integrations-bot run` process against the sandbox over real sockets. Each case creates
a fresh integration with every field filled, asks for one change through chat (`set` → preview →
`confirm <code>`), and compares the stored document before and after, key by key: exactly the
asked field changes (plus the consequences the preview announced), and nothing else except what
Rocket.Chat itself writes on every save:

* `_updatedAt`, `_updatedBy`: stamped on every update (contract §2.4.4);
* a key absent before and null after: an outgoing update `$set`s every optional key, and an
  omitted one is stored as null (§2.4.4); the bot only omits keys that were absent or null;
* `skipTranspile` absent → false: the 8.x incoming update always writes it (§2.4.4);
* `userId` with a new post-as `username`: the server derives it from the username (§2.4.3 step 7,
  §2.4.5 step 4);
* `scriptCompiled` when a stored script is switched on: the server compiles it (§2.4.3 step 5).

Both update modes run on one sandbox and one bot: the mode is switched on the running sandbox
before each case (it matters for incoming webhooks, §2.4.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from e2e_support import Workspace, running_workspace, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-set-fields")]

ROOM = "ops"
CALLER = "admin"
MODES = ("8.x", "legacy")
SCRIPT_IN = (
    "class Script { process_incoming_request({ request }) { return { content: { text: request.content.text } }; } }"
)
SCRIPT_OUT = "class Script { prepare_outgoing_request({ request }) { return request; } }"
OLD_TOKEN = "before-token-0a1b2c"
NEW_TOKEN = "after-token-9z8y7x"
# Written by Rocket.Chat on every save (see the module docstring).
STAMPS = frozenset({"_updatedAt", "_updatedBy"})


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    with running_workspace(tmp_path_factory.mktemp("set-fields")) as running:
        yield running


def make_incoming(ws: Workspace) -> dict[str, Any]:
    return ws.control.create_incoming_integration(
        unique_name("Set in"),
        channel=["#general", "#ops"],
        username="rocket.cat",
        created_by="admin",
        alias="before",
        avatar="https://example.org/before.png",
        emoji=":ghost:",
        script=SCRIPT_IN,
        script_enabled=False,
    )


def make_outgoing(ws: Workspace) -> dict[str, Any]:
    return ws.control.create_outgoing_integration(
        unique_name("Set out"),
        channel=["#general", "#ops"],
        urls=["https://hooks.example.org/a", "https://hooks.example.org/b"],
        event="sendMessage",
        username="rocket.cat",
        created_by="admin",
        trigger_words=["!one", "!two"],
        token=OLD_TOKEN,
        target_room="#ops",
        alias="before",
        avatar="https://example.org/before.png",
        emoji=":ghost:",
        retry_failed_calls=True,
        retry_count=6,
        retry_delay="powers-of-ten",
        script=SCRIPT_OUT,
        script_enabled=False,
    )


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Workspace], dict[str, Any]]
    args: str
    stored: dict[str, Any]  # key -> value stored afterwards (None: null or absent)
    server_written: frozenset[str] = field(default_factory=frozenset)  # see the module docstring


def incoming(case_id: str, args: str, stored: dict[str, Any], *extra: str) -> Case:
    return Case(f"incoming-{case_id}", make_incoming, args, stored, frozenset(extra))


def outgoing(case_id: str, args: str, stored: dict[str, Any], *extra: str) -> Case:
    return Case(f"outgoing-{case_id}", make_outgoing, args, stored, frozenset(extra))


CASES = [
    incoming("name", 'name="Renamed incoming"', {"name": "Renamed incoming"}),
    incoming("channel", "channel=#alerts", {"channel": ["#alerts"]}),
    incoming("channel-add", "channel +#alerts", {"channel": ["#general", "#ops", "#alerts"]}),
    incoming("channel-remove", "channel -#ops", {"channel": ["#general"]}),
    incoming("username", "username=hookbot", {"username": "hookbot"}, "userId"),
    incoming("alias", 'alias="After bot"', {"alias": "After bot"}),
    incoming("avatar", "avatar=https://example.org/after.png", {"avatar": "https://example.org/after.png"}),
    incoming("emoji", "emoji=:tada:", {"emoji": ":tada:"}),
    incoming("scriptEnabled", "scriptEnabled=on", {"scriptEnabled": True}, "scriptCompiled"),
    incoming(
        "overrideDestinationChannelEnabled",
        "overrideDestinationChannelEnabled=yes",
        {"overrideDestinationChannelEnabled": True},
    ),
    outgoing("name", 'name="Renamed outgoing"', {"name": "Renamed outgoing"}),
    outgoing("channel", "channel=#alerts,@alice", {"channel": ["#alerts", "@alice"]}),
    outgoing("channel-add", "channel +#alerts", {"channel": ["#general", "#ops", "#alerts"]}),
    outgoing("channel-remove", "channel -#general", {"channel": ["#ops"]}),
    outgoing("username", "post-as=hookbot", {"username": "hookbot"}, "userId"),
    outgoing("alias", 'alias="After bot"', {"alias": "After bot"}),
    outgoing("avatar", "avatar=https://example.org/after.png", {"avatar": "https://example.org/after.png"}),
    outgoing("emoji", "emoji=:tada:", {"emoji": ":tada:"}),
    outgoing("scriptEnabled", "scriptEnabled=true", {"scriptEnabled": True}, "scriptCompiled"),
    # Events without trigger words drop them, channel-less ones drop the channels (announced in the preview).
    outgoing("event", "event=roomJoined", {"event": "roomJoined", "triggerWords": None}),
    outgoing("event-channelless", "event=userCreated", {"event": "userCreated", "channel": [], "triggerWords": None}),
    outgoing("urls", "urls=https://hooks.example.org/new", {"urls": ["https://hooks.example.org/new"]}),
    outgoing(
        "urls-add",
        "url +https://hooks.example.org/c",
        {"urls": ["https://hooks.example.org/a", "https://hooks.example.org/b", "https://hooks.example.org/c"]},
    ),
    outgoing("urls-remove", "urls -https://hooks.example.org/a", {"urls": ["https://hooks.example.org/b"]}),
    outgoing("triggerWords", "triggerWords=!deploy,!ship", {"triggerWords": ["!deploy", "!ship"]}),
    outgoing("triggerWords-add-remove", "triggers +!three -!one", {"triggerWords": ["!two", "!three"]}),
    outgoing("triggerWordAnywhere", "triggerWordAnywhere=true", {"triggerWordAnywhere": True}),
    outgoing("targetRoom", "targetChannel=#alerts", {"targetRoom": "#alerts"}),
    outgoing("token", f"token={NEW_TOKEN}", {"token": NEW_TOKEN}),
    outgoing("retryFailedCalls", "retryFailedCalls=off", {"retryFailedCalls": False}),
    outgoing("retryCount", "retryCount=9", {"retryCount": 9}),
    outgoing("retryDelay", "retryDelay=increments-of-two", {"retryDelay": "increments-of-two"}),
    outgoing("runOnEdits", "runOnEdits=yes", {"runOnEdits": True}),
    outgoing("impersonateUser", "impersonateUser=on", {"impersonateUser": True}),
]


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Keys whose stored value differs, null and absent being the same (see the module docstring)."""
    found = set()
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if key == "skipTranspile":
            old, new = old is True, new is True
        if old != new:
            found.add(key)
    return found - STAMPS


def preview_fields(text: str) -> list[str]:
    return [line[2:].split(":")[0] for line in text.splitlines() if line.startswith("• ")]


def writes(ws: Workspace) -> int:
    return ws.control.counters().rest.get("integrations.update", 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_set_changes_exactly_that_field(ws: Workspace, case: Case, mode: str) -> None:
    ws.control.configure(update_mode=mode)
    created = case.make(ws)
    integration_id, name = created["_id"], created["name"]
    before = ws.control.integration(integration_id)
    writes_before = writes(ws)

    preview = ws.chat.command(CALLER, ROOM, f'!integration set "{name}" {case.args}')["msg"]
    assert sorted(preview_fields(preview)) == sorted(case.stored), preview
    assert writes(ws) == writes_before
    code = re.search(r"confirm ([A-Z0-9]{4})", preview)
    assert code is not None, preview

    applied = ws.chat.command(CALLER, ROOM, f"!integration confirm {code.group(1)}")["msg"]
    assert applied.startswith("✅ Changed"), applied
    after = ws.control.integration(integration_id)
    assert writes(ws) == writes_before + 1
    assert changed_keys(before, after) == set(case.stored) | case.server_written
    for key, value in case.stored.items():
        assert after.get(key) == value, key
    if "token" in case.stored:
        assert NEW_TOKEN not in preview + applied
        assert NEW_TOKEN not in ws.bot.output
        assert "token: set → changed (not shown)" in applied
