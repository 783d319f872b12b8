"""Rights a hostile user tries to walk around, through the real bot (issue 12, section 2).

- A room *named* after a private room's id: Rocket.Chat reads `#x` as a room id or a room name,
  so being a member of the look-alike public room must not open the private one.
- Stale rights: a member removed from a room, or an account deactivated while the bot was down,
  is refused at once, not after the rights cache expires.
- The bot's own account as a webhook's post-as user (its posts would pass for the bot's answers).
- Integration names that look alike (an invisible character) and names that differ only in case.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import BOT_USERNAME, SHARED_GROUP, BotProcess, Workspace, unique_name

from sandbox.seed import OWNER_ROLE

pytestmark = [pytest.mark.e2e]
shared = pytest.mark.xdist_group(SHARED_GROUP)
PREFIX = "!integration"


def own_user(ws: Workspace, prefix: str) -> str:
    """A fresh user with only the "own integrations" rights (like `owen`)."""
    username = unique_name(prefix).replace(" ", "-").lower()
    ws.control.create_user(username, roles=["user", OWNER_ROLE])
    return username


def room_with(ws: Workspace, prefix: str, *members: str, room_type: str = "c", name: str | None = None) -> str:
    room = ws.control.create_room(name or unique_name(prefix).replace(" ", "-").lower(), room_type=room_type,
                                  members=[*members, BOT_USERNAME], owner=members[0])  # fmt: skip
    return str(room["_id"])


def own_user_with_hook(ws: Workspace, prefix: str) -> tuple[str, str, dict[str, Any]]:
    """A fresh "own rights" user, a room of theirs with the bot, and their webhook posting there."""
    user = own_user(ws, prefix)
    home = room_with(ws, f"{prefix}-home", user)
    hook = ws.control.create_incoming_integration(
        unique_name("Hostile"), channel=[f"#{ws.control.room(home)['name']}"], created_by=user, alias="kept"
    )
    return user, home, hook


@shared
def test_a_public_room_named_after_a_private_rooms_id_does_not_open_the_private_room(workspace: Workspace) -> None:
    ws = workspace
    mallory, home, hook = own_user_with_hook(ws, "mallory")
    secret = room_with(ws, "secret", "admin", room_type="p")
    # Mallory creates a public channel named after the private room's id, and is in it.
    room_with(ws, "lookalike", mallory, name=secret)
    attempt = f"{PREFIX} set {hook['_id']} channel=#{secret} --yes"
    refused = ws.chat.command(mallory, home, attempt)["msg"]
    assert refused.startswith("⛔") and "member" in refused, refused
    assert ws.control.integration(hook["_id"])["channel"] == hook["channel"]
    # A member of both rooms `#<id>` can mean may.
    ws.control.add_member(secret, mallory)
    allowed = ws.chat.command(mallory, home, attempt)["msg"]
    assert allowed.startswith("✅ Changed"), allowed
    assert ws.control.integration(hook["_id"])["channel"] == [f"#{secret}"]


@shared
def test_a_member_removed_from_a_room_is_refused_at_once(workspace: Workspace) -> None:
    ws = workspace
    mallory, home, hook = own_user_with_hook(ws, "leaver")
    listed = ws.chat.command(mallory, home, f"{PREFIX} list {hook['name']}")["msg"]  # rights now cached
    assert hook["_id"] in listed or hook["name"] in listed, listed
    ws.control.remove_member(home, mallory)
    refused = ws.chat.command(mallory, home, f"{PREFIX} disable {hook['_id']}")["msg"]
    assert refused.startswith("⛔") and "member" in refused, refused
    assert ws.control.integration(hook["_id"])["enabled"] is True


@shared
def test_the_bots_own_account_is_refused_as_post_as_user(workspace: Workspace) -> None:
    ws = workspace
    hook = ws.control.create_incoming_integration(unique_name("Post as"), channel="#general")
    reply = ws.chat.command("admin", "general", f"{PREFIX} set {hook['_id']} username={BOT_USERNAME} --yes")["msg"]
    assert reply.startswith("⚠️") and BOT_USERNAME in reply, reply
    assert ws.control.integration(hook["_id"])["username"] == hook["username"]


@shared
def test_a_copied_look_alike_name_changes_nothing_and_shows_both_ids(workspace: Workspace) -> None:
    ws = workspace
    name = unique_name("Lookalike")
    real = ws.control.create_incoming_integration(name, channel="#general")
    fake_name = name[:3] + "\u200b" + name[3:]  # a zero-width space: looks the same in chat
    fake = ws.control.create_incoming_integration(fake_name, channel="#general", created_by="owen")
    reply = ws.chat.command("admin", "general", f'{PREFIX} disable "{fake_name}"')["msg"]
    assert "changed nothing" in reply and real["_id"] in reply and fake["_id"] in reply, reply
    assert ws.control.integration(real["_id"])["enabled"] is True
    assert ws.control.integration(fake["_id"])["enabled"] is True
    listed = ws.chat.command("admin", "general", f"{PREFIX} list {name[4:]}")["msg"]
    assert real["_id"] in listed and fake["_id"] in listed, listed


@shared
def test_the_one_name_equal_including_case_is_meant(workspace: Workspace) -> None:
    ws = workspace
    base = unique_name("Deploy Bot")
    exact = ws.control.create_incoming_integration(base, channel="#general")
    lower = ws.control.create_incoming_integration(base.lower(), channel="#general")
    longer = ws.control.create_incoming_integration(f"{base} Legacy", channel="#general")
    reply = ws.chat.command("admin", "general", f'{PREFIX} disable "{base}"')["msg"]
    assert "Disabled" in reply and exact["_id"] in reply, reply
    assert ws.control.integration(exact["_id"])["enabled"] is False
    assert ws.control.integration(lower["_id"])["enabled"] is True
    assert ws.control.integration(longer["_id"])["enabled"] is True
    # Neither spelled exactly: still ambiguous, nothing changed.
    reply = ws.chat.command("admin", "general", f'{PREFIX} enable "{base.upper()}"')["msg"]
    assert "changed nothing" in reply, reply


def test_a_command_of_a_user_deactivated_while_the_bot_was_down_is_refused(fresh_workspace: Workspace) -> None:
    ws = fresh_workspace
    hook = ws.control.create_incoming_integration(unique_name("Deactivated"), channel="#general")
    ws.control.create_user("departed", roles=["user", "admin"])
    assert ws.bot.terminate() == 0
    command = ws.chat.post("departed", "general", f"{PREFIX} disable {hook['_id']}")
    ws.control.set_user_active("departed", False)
    restarted = BotProcess(ws.bot.env, ws.workdir)
    try:
        restarted.wait_ready()
        reply = ws.chat.reply_to(command)["msg"]
        assert reply.startswith("⛔") and "deactivated" in reply, reply
        assert ws.control.integration(hook["_id"])["enabled"] is True
    finally:
        assert restarted.terminate() == 0
