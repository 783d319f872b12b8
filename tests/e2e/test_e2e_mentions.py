"""Issue 3, done-when 6: nothing a user types, and no integration name, can make the bot mention anyone.

The sandbox extracts mentions from every stored message server-side, with Rocket.Chat's regex over
the raw text (contract §5.4: code spans and fences do not protect). So the proof is in the stored
replies: `mentions` and `channels` are empty, whatever the command echoed. That the sandbox does
see these mentions when they are posted as they were typed is checked first, so a reply that
echoed them raw would fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import SHARED_GROUP, Workspace, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]

# {id} is replaced by the id of a fresh incoming webhook the caller may disable.
ATTEMPTS = [
    "!integration disable @all",
    '!integration disable "@here"',
    "!integration show @alice",
    "!integration list #general",
    "!integration @all",
    "!integration help @here",
    "!integration disable\t@here",
    '!integration disable "> @all"',
    "!integration disable ` @all`",
    "!integration disable ```\n@all\n```",
    "!integration disable {id} because @all @here @alice #general",
    "!integration disable {id} -- > @all\n@here",
    "!integration disable {id} for @all",
    "!integration enable {id} @here",
    '!integration disable "unterminated @all',
]


def assert_mentions_nobody(reply: dict[str, Any]) -> None:
    assert reply["mentions"] == [], reply["msg"]
    assert reply["channels"] == [], reply["msg"]
    assert reply.get("attachments") is None or all(
        "@" not in str(a.get("description", "")) for a in reply["attachments"]
    )


@pytest.mark.parametrize(
    ("payload", "mention"),
    [
        ("@all", "all"),
        ("see @here", "here"),
        ("@alice", "alice"),
        ("> @all", "all"),
        ("```\n@all\n```", "all"),
        ("x\t@here", "here"),
        ("@all:", "all"),
    ],
)
def test_the_sandbox_sees_these_mentions_when_posted_raw(workspace: Workspace, payload: str, mention: str) -> None:
    message = workspace.chat.post("alice", "platform-team", payload)
    assert mention in [m["username"] for m in message["mentions"]]
    assert workspace.chat.post("alice", "platform-team", "#general")["channels"] != []


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_echoed_user_text_triggers_no_mention(workspace: Workspace, attempt: str) -> None:
    hook = workspace.control.create_incoming_integration(unique_name("Echo"), channel="#general")
    reply = workspace.chat.command("admin", "general", attempt.replace("{id}", hook["_id"]))
    assert_mentions_nobody(reply)


def test_integration_names_and_settings_trigger_no_mention(workspace: Workspace) -> None:
    control, chat = workspace.control, workspace.chat
    tag = unique_name("tag").replace(" ", "-")
    names = [f"@all hook {tag}", f"Deploy @here {tag}", f"#general relay {tag}", f"@alice's feed {tag}"]
    made = [control.create_incoming_integration(n, channel="#general", alias="@all", emoji=":bell:") for n in names]
    loud = control.create_outgoing_integration(
        f"@here loud {tag}",
        channel=["#general", "@alice"],
        urls=["https://loud.example.org/@all"],
        trigger_words=["@here", "#general", "@all"],
        token="loud-token-42",
        alias="@here",
        target_room="#general",
        created_by="admin",
    )
    twin = control.create_outgoing_integration(
        names[0], channel="#general", urls=["https://twin.example.org/x"], token="twin-token-42"
    )
    commands = [
        f"!integration list {tag}",
        f"!integration list incoming {tag}",
        f'!integration show "{loud["name"]}"',
        f'!integration show incoming "{names[0]}"',
        f'!integration disable "{names[0]}"',  # ambiguous with `twin`: the reply lists both names
        f'!integration disable incoming "{names[0]}"',
        f'!integration disable "{names[1]}" because @all',
        f"!integration enable {made[1]['_id']}",
        f'!integration disable "{names[2]}"',
        f'!integration show "{names[3]}"',
        f"!integration disable {loud['_id']}",
        f'!integration show outgoing "{twin["name"]}"',
    ]
    for text in commands:
        reply = chat.command("admin", "general", text)
        assert_mentions_nobody(reply)
    # The commands did run (so the names really were echoed in their answers).
    assert [control.integration(d["_id"])["enabled"] for d in (*made, loud)] == [False, True, False, True, False]
