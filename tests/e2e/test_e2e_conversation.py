"""Issue 3, done-when 3 and 4: ambiguous names change nothing; answers go where the command was typed.
Issue 13, items 3 and 4: a mistyped name or command word is answered with what was meant; a read
on a shared name asks which one."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import SHARED_GROUP, Workspace, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]


def incoming(workspace: Workspace, name: str) -> dict[str, Any]:
    return workspace.control.create_incoming_integration(
        name, channel="#general", alias="twin", emoji=":ghost:", script="class Script {}", script_enabled=True
    )


def outgoing(workspace: Workspace, name: str) -> dict[str, Any]:
    return workspace.control.create_outgoing_integration(
        name,
        channel="#general",
        urls=["https://twin.example.org/hook"],
        trigger_words=["!twin"],
        token="twin-token-123",
        retry_failed_calls=True,
    )


def snapshot(workspace: Workspace, *documents: dict[str, Any]) -> list[dict[str, Any]]:
    return [workspace.control.integration(d["_id"]) for d in documents]


def assert_lists_candidates(text: str, *candidates: tuple[dict[str, Any], str], read: bool = False) -> None:
    """The reply names every candidate with its type and id, one line each, and changed nothing
    (a read, which had nothing to change, asks which one is meant instead)."""
    if read:
        assert "which one do you mean?" in text and "changed nothing" not in text, text
    else:
        assert "changed nothing" in text, text
    lines = [line for line in text.splitlines() if line.startswith("•")]
    assert len(lines) == len(candidates), text
    for document, kind in candidates:
        assert any(document["_id"] in line and kind in line for line in lines), (document["_id"], kind, text)


# --- ambiguity ------------------------------------------------------------------------------------


def test_one_name_for_an_incoming_and_an_outgoing_changes_nothing_until_narrowed(workspace: Workspace) -> None:
    chat, name = workspace.chat, unique_name("Twin")
    hook_in, hook_out = incoming(workspace, name), outgoing(workspace, name)
    longer = incoming(workspace, name + " two")  # contains the name: not a candidate
    before = snapshot(workspace, hook_in, hook_out, longer)

    for command in (f'!integration disable "{name}"', f"!integration enable {name}", f"!integration show {name}"):
        text = chat.command("admin", "general", command)["msg"]
        assert_lists_candidates(text, (hook_in, "incoming"), (hook_out, "outgoing"), read=" show " in command)
        assert longer["_id"] not in text
        assert snapshot(workspace, hook_in, hook_out, longer) == before

    text = chat.command("admin", "general", f'!integration disable incoming "{name}"')["msg"]
    assert "Disabled" in text and "(incoming)" in text, text
    now_in, now_out, now_longer = snapshot(workspace, hook_in, hook_out, longer)
    assert now_in["enabled"] is False and [now_out, now_longer] == before[1:]

    text = chat.command("admin", "general", f'!integration disable outgoing "{name}"')["msg"]
    assert "Disabled" in text and "(outgoing)" in text, text
    assert workspace.control.integration(hook_out["_id"])["enabled"] is False
    assert workspace.control.integration(longer["_id"]) == before[2]


def test_a_mistyped_name_or_command_word_is_answered_with_what_was_meant(workspace: Workspace) -> None:
    chat, name = workspace.chat, unique_name("Typo Hook")
    hook = incoming(workspace, name)
    before = snapshot(workspace, hook)
    typo = "Tpyo" + name.removeprefix("Typo")
    text = chat.command("admin", "general", f'!integration disable "{typo}" because spam')["msg"]
    assert "Did you mean" in text and f"`{name}`" in text, text  # other tests' names may be close too
    text = chat.command("admin", "general", f'!integration disabel "{name}"')["msg"]
    assert "Did you mean `disable`?" in text, text
    assert snapshot(workspace, hook) == before


def test_names_differing_only_by_case_are_the_same_name(workspace: Workspace) -> None:
    chat, name = workspace.chat, unique_name("Case Hook")
    lower, upper = incoming(workspace, name.lower()), incoming(workspace, name.upper())
    before = snapshot(workspace, lower, upper)

    text = chat.command("admin", "general", f'!integration disable "{name}"')["msg"]
    assert_lists_candidates(text, (lower, "incoming"), (upper, "incoming"))
    # Both are incoming: narrowing by type cannot tell them apart either.
    text = chat.command("admin", "general", f'!integration disable incoming "{name.title()}"')["msg"]
    assert_lists_candidates(text, (lower, "incoming"), (upper, "incoming"))
    assert snapshot(workspace, lower, upper) == before

    # The id always works.
    text = chat.command("admin", "general", f"!integration disable {upper['_id']}")["msg"]
    assert "Disabled" in text, text
    assert workspace.control.integration(upper["_id"])["enabled"] is False
    assert workspace.control.integration(lower["_id"]) == before[0]


def test_case_twins_of_different_types_are_narrowed_by_type(workspace: Workspace) -> None:
    chat, name = workspace.chat, unique_name("Pager")
    hook_in, hook_out = incoming(workspace, name.lower()), outgoing(workspace, name.upper())
    before = snapshot(workspace, hook_in, hook_out)
    text = chat.command("admin", "general", f"!integration enable {name}")["msg"]
    assert_lists_candidates(text, (hook_in, "incoming"), (hook_out, "outgoing"))
    assert snapshot(workspace, hook_in, hook_out) == before

    text = chat.command("admin", "general", f'!integration disable out "{name}"')["msg"]
    assert "Disabled" in text and "(outgoing)" in text, text
    assert workspace.control.integration(hook_out["_id"])["enabled"] is False
    assert workspace.control.integration(hook_in["_id"]) == before[0]


# --- where the answer goes -----------------------------------------------------------------------------


def test_a_top_level_command_is_answered_top_level(workspace: Workspace) -> None:
    reply = workspace.chat.command("admin", "general", "!integration help")
    assert "tmid" not in reply and reply["rid"] == workspace.control.room_id("general")


def test_a_command_in_a_thread_is_answered_in_that_thread(workspace: Workspace) -> None:
    chat = workspace.chat
    hook = incoming(workspace, unique_name("Threaded"))
    parent = chat.post("alice", "general", "is the threaded hook spamming again?")
    reply = chat.command("admin", "general", f"!integration disable {hook['_id']} because spam", tmid=parent["_id"])
    assert reply["tmid"] == parent["_id"] and "Disabled" in reply["msg"]
    assert workspace.control.integration(hook["_id"])["enabled"] is False

    # A command in the same thread, also shown in the room (tshow): still answered in the thread.
    shown = chat.post("admin", "general", "!integration list incoming disabled", tmid=parent["_id"], tshow=True)
    assert chat.reply_to(shown)["tmid"] == parent["_id"]
    # A thread under a message that is itself a thread reply belongs to the root thread.
    nested = chat.command("owen", "general", "!integration help", tmid=shown["_id"])
    assert nested["tmid"] == parent["_id"]


def test_a_thread_in_a_direct_message_is_answered_in_it(workspace: Workspace) -> None:
    chat = workspace.chat
    dm = workspace.control.create_direct("owen", "integrations-bot")["_id"]
    top = chat.command("owen", dm, "help")
    assert "tmid" not in top
    assert chat.command("owen", dm, "help disable", tmid=top["_id"])["tmid"] == top["_id"]
