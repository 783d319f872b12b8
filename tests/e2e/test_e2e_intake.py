"""Issue 3, done-when 5: which messages the bot acts on, and that each command runs exactly once.

Every "ignored" case posts a message that *would* disable an integration if the bot acted on it.
Proof that nothing happened: a later command in a room the bot is in gets its answer (the stream
delivers messages in order and the bot's intake is sequential, so the earlier message was seen
first), a short extra wait brings no answer to the ignored one either, the integration is unchanged
and the bot logged no command for it.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import BOT_USERNAME, SHARED_GROUP, Workspace, assert_ignored, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]


def target(workspace: Workspace) -> dict[str, Any]:
    return workspace.control.create_incoming_integration(unique_name("Intake"), channel="#general", alias="x")


def disable(document: dict[str, Any]) -> str:
    return f"!integration disable {document['_id']}"


# --- ignored ------------------------------------------------------------------------------------------


def test_the_bots_own_messages_are_ignored(workspace: Workspace) -> None:
    hook = target(workspace)
    own = workspace.chat.post(BOT_USERNAME, "general", disable(hook))
    assert_ignored(workspace, [own], [hook])


def test_other_bots_and_webhook_messages_are_ignored(workspace: Workspace) -> None:
    hook, poster = target(workspace), target(workspace)
    store, rocket_cat = workspace.server.store, workspace.user_id("rocket.cat")
    general = workspace.control.room_id("general")
    sdk_bot = store.send_message(rocket_cat, general, disable(hook), bot={"i": "js.SDK"})
    webhook = workspace.control.post_webhook_message(poster["_id"], disable(hook), room="general")
    assert webhook["bot"] == {"i": poster["_id"]}
    assert_ignored(workspace, [sdk_bot, webhook], [hook])


@pytest.mark.parametrize("kind", ["uj", "au", "e2e", "command"])
def test_system_messages_are_ignored(workspace: Workspace, kind: str) -> None:
    hook = target(workspace)
    system = workspace.control.post_system_message("general", kind, disable(hook), "admin")
    assert_ignored(workspace, [system], [hook])


def test_a_public_channel_the_bot_is_not_in_is_ignored(workspace: Workspace) -> None:
    hook = target(workspace)
    assert BOT_USERNAME not in workspace.control.room("lobby").get("usernames", [])
    there = workspace.chat.post("admin", "lobby", disable(hook))
    assert_ignored(workspace, [there], [hook])


def test_chat_that_is_not_addressed_to_the_bot_is_ignored(workspace: Workspace) -> None:
    hook = target(workspace)
    chat = workspace.chat
    messages = [
        chat.post("admin", "general", f"disable {hook['_id']}"),  # no prefix outside a DM
        chat.post("admin", "general", f"hey @{BOT_USERNAME} disable {hook['_id']}"),  # mention not first
        chat.post("admin", "general", f"the integration {hook['name']} is noisy, can someone disable it?"),
    ]
    assert_ignored(workspace, messages, [hook])


def test_an_old_message_edited_into_a_command_does_not_run(workspace: Workspace) -> None:
    hook = target(workspace)
    message = workspace.chat.post("admin", "general", "typo, one moment")
    workspace.control.edit_message(message["_id"], disable(hook))
    assert_ignored(workspace, [message], [hook])


# --- exactly once ---------------------------------------------------------------------------------------


def replies_sent(workspace: Workspace, message: dict[str, Any]) -> int:
    """How many times the bot sent its answer to `message` (the server stores the first only)."""
    wanted = set(workspace.chat.answer_ids(message))
    return sum(
        1 for body in workspace.control.recorded_requests("chat.sendMessage") if body["message"].get("_id") in wanted
    )


def test_editing_a_handled_command_runs_nothing_again(workspace: Workspace) -> None:
    chat, control = workspace.chat, workspace.control
    hook = target(workspace)
    command = chat.post("admin", "general", "!integration help")
    first = chat.reply_to(command)
    control.edit_message(command["_id"], disable(hook))
    control.edit_message(command["_id"], f"!integration show {hook['_id']}")
    assert_ignored(workspace, [], [hook])
    assert len(workspace.bot.command_events(command["_id"])) == 1
    assert replies_sent(workspace, command) == 1
    assert control.message(first["_id"]) == first  # the answer was not touched either


def test_reactions_and_thread_replies_do_not_run_a_command_again(workspace: Workspace) -> None:
    chat, control = workspace.chat, workspace.control
    hook = target(workspace)
    command = chat.post("owen", "general", disable(hook))
    assert "Disabled" not in chat.reply_to(command)["msg"]  # owen may not change admin's hook
    admins = chat.post("admin", "general", disable(hook))
    assert "Disabled" in chat.reply_to(admins)["msg"]
    control.update_integration(hook["_id"], {"enabled": True})  # so that a second run would show
    hook = control.integration(hook["_id"])

    control.react(admins["_id"], ":eyes:", "alice")  # re-delivers the command message
    chat.post("alice", "general", "thanks!", tmid=admins["_id"])  # re-delivers it with tcount
    control.react(command["_id"], ":+1:", "admin")
    assert_ignored(workspace, [], [hook])
    for message in (command, admins):
        assert len(workspace.bot.command_events(message["_id"])) == 1
        assert replies_sent(workspace, message) == 1


# --- handled without the prefix --------------------------------------------------------------------------


def test_a_direct_message_needs_no_prefix(workspace: Workspace) -> None:
    hook = target(workspace)
    dm = workspace.control.create_direct("admin", BOT_USERNAME)["_id"]
    reply = workspace.chat.command("admin", dm, f"disable {hook['_id']}")
    assert "Disabled" in reply["msg"], reply["msg"]
    assert workspace.control.integration(hook["_id"])["enabled"] is False


def test_a_leading_mention_of_the_bot_addresses_it(workspace: Workspace) -> None:
    hook = target(workspace)
    reply = workspace.chat.command("admin", "general", f"@{BOT_USERNAME} disable {hook['_id']}")
    assert "Disabled" in reply["msg"], reply["msg"]
    assert workspace.control.integration(hook["_id"])["enabled"] is False


# --- group DMs: without the prefix only in a DM with the bot alone (issue 12) ----------------------------


def group_dm(workspace: Workspace) -> str:
    """A DM of admin, alice and the bot (contract §8 gotcha 25), made while the bot runs."""
    return str(workspace.control.create_direct("admin", "alice", others=[BOT_USERNAME])["_id"])


def test_chat_between_people_in_a_group_dm_is_not_a_command(workspace: Workspace) -> None:
    hook, chat = target(workspace), workspace.chat
    room = group_dm(workspace)
    talk = [
        chat.post("admin", room, f"disable incoming {hook['name']} it keeps spamming, right alice?"),
        chat.post("alice", room, "yes"),
        chat.post("alice", room, "integration help"),  # the prefix's word without its `!`
    ]
    assert_ignored(workspace, talk, [hook])
    reply = chat.command("admin", room, f"!integration disable incoming {hook['name']} it keeps spamming")
    assert "Disabled" in reply["msg"], reply["msg"]
    assert workspace.control.integration(hook["_id"])["enabled"] is False


def test_a_preview_in_a_group_dm_asks_for_the_prefixed_yes(workspace: Workspace) -> None:
    hook, chat = target(workspace), workspace.chat
    room = group_dm(workspace)
    preview = chat.command("admin", room, f"!integration set {hook['_id']} alias=from-group")["msg"]
    assert "(or `!integration yes`)" in preview, preview
    assert_ignored(workspace, [chat.post("admin", room, "yes")], [hook])
    assert chat.command("admin", room, "!integration yes")["msg"].startswith("✅ Changed")
    assert workspace.control.integration(hook["_id"])["alias"] == "from-group"


def test_a_dm_with_the_bot_alone_still_needs_no_prefix_nor_a_prefixed_yes(workspace: Workspace) -> None:
    hook, chat = target(workspace), workspace.chat
    dm = workspace.control.create_direct("alice", BOT_USERNAME)["_id"]
    preview = chat.command("admin", workspace.seed["rooms"]["dm:admin:integrations-bot"], f"set {hook['_id']} alias=y")
    assert "(or `yes`)" in preview["msg"], preview["msg"]
    refused = chat.command("alice", dm, f"disable {hook['_id']}")["msg"]  # answered, though alice may not
    assert refused.startswith("⛔"), refused
