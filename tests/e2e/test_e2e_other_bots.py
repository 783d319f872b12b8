"""Issue 12 §2: other bot accounts are not obeyed unless BOT_ALLOWED_BOTS names them.

Rocket.Chat marks only webhook messages with `bot` (contract §8 gotcha 24): a message written by
a user of type `bot` looks like anyone's. Such a command is ignored (no run, no answer; its claim
is closed as ignored, so a restart does not redo it), unless the author's account is listed in
BOT_ALLOWED_BOTS (by a username, resolved to its account when the bot starts, or by `id:`); a
listed bot still needs the rights. Renames show that the account counts, not the name it has now.
The `bot` role does not make a bot: Rocket.Chat gives it to a webhook's post-as user (contract
§2.4.3 step 8), so an account of type `user` holding it is obeyed, also a person whom another user
made the post-as user of a webhook.

The same bot users (one of type `bot`, one of type `user` with the `bot` role, both holding every
integration permission through the seed's `integrations-manager` role) are made in the shared
workspace, which lists nobody, and in one that lists them.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import SHARED_GROUP, Workspace, assert_ignored, running_workspace, unique_name
from incident_support import ROOM, incident_world

from sandbox.control import SandboxControl
from sandbox.seed import BOT_ROLE

pytestmark = pytest.mark.e2e
# The tests of the workspace that lists the bot accounts share it: one worker, one bot.
allowing_group = pytest.mark.xdist_group("e2e-allowed-bots")

# username -> (user type, roles)
BOT_USERS = {
    "typed-bot": ("bot", ["user", BOT_ROLE]),
    "role-bot": ("user", ["user", "bot", BOT_ROLE]),
    "powerless-bot": ("bot", ["user"]),
}
ALLOWED = "typed-bot, Role-Bot,@powerless-bot"  # case and a leading @ do not matter


def add_bot_users(control: SandboxControl, room: str) -> None:
    for username, (kind, roles) in BOT_USERS.items():
        control.create_user(username, roles=roles, user_type=kind)
        control.add_member(room, username)


def hook(control: SandboxControl) -> dict[str, Any]:
    return control.create_incoming_integration(unique_name("Bot target"), channel="#ops", created_by="admin")


def claim_status(workdir: Path, message_id: str) -> str | None:
    with sqlite3.connect(workdir / "state.sqlite3") as db:
        row = db.execute("SELECT status FROM processed_messages WHERE message_id = ?", (message_id,)).fetchone()
    return None if row is None else str(row[0])


def wait_ignored(bot: Any, message: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = bot.wait_for_log(
        "command.ignored_bot", where=lambda e: e.get("message_id") == message["_id"]
    )
    return entry


# --- nobody listed: ignored -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bots_in_shared(workspace: Workspace) -> Workspace:
    add_bot_users(workspace.control, "ops")
    return workspace


@pytest.mark.xdist_group(SHARED_GROUP)
def test_a_bot_account_with_every_right_is_ignored(bots_in_shared: Workspace) -> None:
    workspace = bots_in_shared
    target = hook(workspace.control)
    command = workspace.chat.post("typed-bot", "ops", f"!integration disable {target['_id']}")
    logged = wait_ignored(workspace.bot, command)
    assert (logged["username"], logged["user_id"]) == ("typed-bot", workspace.user_id("typed-bot"))
    assert_ignored(workspace, [command], [target])
    assert claim_status(workspace.workdir, command["_id"]) == "ignored"
    assert len([e for e in workspace.bot.logs() if e.get("message_id") == command["_id"]]) == 1  # one line


@pytest.mark.xdist_group(SHARED_GROUP)
def test_an_account_of_type_user_with_the_bot_role_is_obeyed(bots_in_shared: Workspace) -> None:
    target = hook(bots_in_shared.control)
    reply = bots_in_shared.chat.command("role-bot", "ops", f"!integration disable {target['_id']}")
    assert "Disabled" in reply["msg"], reply["msg"]
    assert bots_in_shared.control.integration(target["_id"])["enabled"] is False


@pytest.mark.xdist_group(SHARED_GROUP)
def test_a_person_another_user_made_a_post_as_user_is_still_obeyed(workspace: Workspace) -> None:
    # owen may change only his own webhooks, and makes one post as carol: Rocket.Chat gives carol
    # the `bot` role on that update. Her commands must still run (nobody can silence another).
    control = workspace.control
    carol = f"carol-{secrets.token_hex(3)}"
    control.create_user(carol, roles=["user", BOT_ROLE])  # a person who may change any integration
    control.add_member("ops", carol)
    owned = control.create_incoming_integration(unique_name("Owen hook"), channel="#ops", created_by="owen")
    changed = workspace.chat.command("owen", "ops", f"!integration set {owned['_id']} username={carol} --yes")
    assert "Changed" in changed["msg"], changed["msg"]
    assert "bot" in control.user(carol)["roles"]
    target = hook(control)
    reply = workspace.chat.command(carol, "ops", f"!integration disable {target['_id']}")
    assert "Disabled" in reply["msg"], reply["msg"]
    assert control.integration(target["_id"])["enabled"] is False


# --- listed in BOT_ALLOWED_BOTS: obeyed, within its rights ----------------------------------------------


def add_allowing_users(control: SandboxControl) -> None:
    add_bot_users(control, "ops")
    control.create_user("stray-bot", roles=["user", BOT_ROLE], user_type="bot")
    control.add_member("ops", "stray-bot")


@pytest.fixture(scope="module")
def allowing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    # The accounts exist before the bot starts: it resolves the listed names to them then.
    workdir = tmp_path_factory.mktemp("allowing")
    with running_workspace(workdir, before_start=add_allowing_users, BOT_ALLOWED_BOTS=ALLOWED) as running:
        yield running


@allowing_group
@pytest.mark.parametrize("username", ["typed-bot", "role-bot"])
def test_a_listed_bot_account_is_obeyed(allowing: Workspace, username: str) -> None:
    target = hook(allowing.control)
    reply = allowing.chat.command(username, "ops", f"!integration disable {target['_id']}")
    assert "Disabled" in reply["msg"], reply["msg"]
    assert allowing.control.integration(target["_id"])["enabled"] is False


@allowing_group
def test_a_listed_bot_account_still_needs_the_rights(allowing: Workspace) -> None:
    target = hook(allowing.control)
    reply = allowing.chat.command("powerless-bot", "ops", f"!integration disable {target['_id']}")
    assert reply["msg"].startswith("⛔"), reply["msg"]
    assert allowing.control.integration(target["_id"]) == target


@allowing_group
def test_a_bot_account_that_is_not_listed_is_still_ignored(allowing: Workspace) -> None:
    target = hook(allowing.control)
    command = allowing.chat.post("stray-bot", "ops", f"!integration disable {target['_id']}")
    wait_ignored(allowing.bot, command)
    assert_ignored(allowing, [command], [target])


# --- after a restart ----------------------------------------------------------------------------------


def test_an_ignored_command_is_not_run_after_a_restart_that_lists_its_bot(tmp_path: Path) -> None:
    with incident_world(tmp_path) as world:
        add_bot_users(world.control, ROOM)
        target = hook(world.control)
        command = world.chat.post("typed-bot", ROOM, f"!integration disable {target['_id']}")
        wait_ignored(world.bot, command)
        world.kill()  # no shutdown: whatever the bot had not written yet is lost
        with sqlite3.connect(tmp_path / "state.sqlite3") as db:  # the next catch-up reads the room again
            db.execute("DELETE FROM room_cursors WHERE room_id = ?", (command["rid"],))
        world.env["BOT_ALLOWED_BOTS"] = "typed-bot"
        world.start()
        world.bot.wait_for_log("catchup.done")
        shown = world.command("typed-bot", f"show {target['_id']}")["msg"]  # listed now: obeyed
        assert target["name"] in shown and not shown.startswith("⛔"), shown
        assert not world.chat.has_reply(command)
        assert world.control.integration(target["_id"])["enabled"] is True
        assert claim_status(tmp_path, command["_id"]) == "ignored"
        assert world.bot.command_events(command["_id"]) == []


# --- accounts, not names: renames ------------------------------------------------------------------


def test_the_exemption_follows_the_listed_account_not_its_name(tmp_path: Path) -> None:
    with incident_world(tmp_path) as world:
        control = world.control
        add_bot_users(control, ROOM)
        control.create_user("stray-bot", roles=["user", BOT_ROLE], user_type="bot")
        control.add_member(ROOM, "stray-bot")
        listed, stray = world.user_id("typed-bot"), world.user_id("stray-bot")
        assert world.bot.terminate() == 0
        world.env["BOT_ALLOWED_BOTS"] = "typed-bot,late-bot"  # late-bot: no such account yet
        world.start()

        # The listed bot is renamed, and another bot account takes its old name.
        control.rename_user("typed-bot", "typed-bot-2")
        control.rename_user("stray-bot", "typed-bot")
        target = hook(control)
        taken = world.chat.post("typed-bot", ROOM, f"!integration disable {target['_id']}")
        logged = wait_ignored(world.bot, taken)
        assert (logged["username"], logged["user_id"]) == ("typed-bot", stray)
        assert control.integration(target["_id"])["enabled"] is True
        reply = world.command("typed-bot-2", f"disable {target['_id']}")  # the listed account, renamed
        assert "Disabled" in reply["msg"], reply["msg"]

        # A bot account created under a listed name after the start is not allowed before the next one.
        control.create_user("late-bot", roles=["user", BOT_ROLE], user_type="bot")
        control.add_member(ROOM, "late-bot")
        early = world.chat.post("late-bot", ROOM, f"!integration show {target['_id']}")
        wait_ignored(world.bot, early)
        missing = world.bot.wait_for_log("bot.allowed_bot_missing")  # said at the start
        assert (missing["entry"], missing["why"]) == ("late-bot", "no such user")

        # Restarted with the first account listed by id: whoever is called typed-bot now is not it.
        assert world.bot.terminate() == 0
        world.env["BOT_ALLOWED_BOTS"] = f"id:{listed},late-bot"
        world.start()
        shown = world.command("late-bot", f"show {target['_id']}")["msg"]
        assert target["name"] in shown and not shown.startswith("⛔"), shown
        enabled = world.command("typed-bot-2", f"enable {target['_id']}")["msg"]
        assert "Enabled" in enabled, enabled
        again = world.chat.post("typed-bot", ROOM, f"!integration disable {target['_id']}")
        assert wait_ignored(world.bot, again)["user_id"] == stray
        assert control.integration(target["_id"])["enabled"] is True
