"""Issue 5: previews and confirmations through the real bot process.

A change is applied by `confirm <code>`, `yes` (bare in a direct message), the Apply button or
`--yes`; a confirmation belongs to the caller and the room that asked and expires, and an
expired, foreign or outdated one writes nothing. Tokens never show; every applied change is one
audit row with the whole documents before and after (what `undo` restores).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import SHARED_GROUP, Workspace, running_workspace, unique_name

pytestmark = pytest.mark.e2e
shared = pytest.mark.xdist_group(SHARED_GROUP)

ROOM = "ops"


def make(ws: Workspace) -> dict[str, Any]:
    return ws.control.create_outgoing_integration(
        unique_name("Confirm me"),
        channel="#general",
        urls=["https://hooks.example.org/x"],
        created_by="admin",
        trigger_words=["!one"],
        token="confirm-token-11aa22",
        alias="before",
    )


def code_in(text: str) -> str:
    found = re.search(r"confirm ([A-Z0-9]{4})", text)
    assert found is not None, text
    return found.group(1)


def update_calls(ws: Workspace) -> int:
    return ws.control.counters().rest.get("integrations.update", 0)


def last_audit_row(ws: Workspace, integration_id: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    with sqlite3.connect(ws.workdir / "state.sqlite3") as db:
        row = db.execute(
            "SELECT action, before_json, after_json FROM audit WHERE integration_id = ? ORDER BY id DESC LIMIT 1",
            (integration_id,),
        ).fetchone()
    assert row is not None
    return row[0], json.loads(row[1]), json.loads(row[2])


@shared
def test_confirm_with_the_code_applies_it_and_audits_both_documents(workspace: Workspace) -> None:
    created = make(workspace)
    before = workspace.control.integration(created["_id"])
    preview = workspace.chat.command("admin", ROOM, f'!integration set {created["_id"]} alias="Release bot"')
    assert "alias: `before` → `Release bot`" in preview["msg"]
    assert workspace.control.integration(created["_id"]) == before
    applied = workspace.chat.command("admin", ROOM, f"!integration confirm {code_in(preview['msg'])}")["msg"]
    assert applied.startswith("✅ Changed")
    after = workspace.control.integration(created["_id"])
    assert after["alias"] == "Release bot"
    assert last_audit_row(workspace, created["_id"]) == ("set", before, after)


@shared
def test_the_apply_button_posts_the_confirmation(workspace: Workspace) -> None:
    created = make(workspace)
    preview = workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} emoji=:rocket:")
    (action,) = preview["attachments"][0]["actions"]
    assert action["text"] == "Apply"
    assert action["msg"] == f"!integration confirm {code_in(preview['msg'])}"
    applied = workspace.chat.command("admin", ROOM, action["msg"])["msg"]
    assert applied.startswith("✅ Changed")
    assert workspace.control.integration(created["_id"])["emoji"] == ":rocket:"


@shared
def test_yes_takes_the_latest_change_bare_in_a_direct_message(workspace: Workspace) -> None:
    created = make(workspace)
    dm = workspace.seed["rooms"]["dm:admin:integrations-bot"]
    preview = workspace.chat.command("admin", dm, f"set {created['_id']} alias=from-dm")["msg"]
    assert "(or `yes`)" in preview
    assert workspace.chat.command("admin", dm, "yes")["msg"].startswith("✅ Changed")
    in_room = workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} alias=from-room")["msg"]
    assert "(or `!integration yes`)" in in_room
    assert workspace.chat.command("admin", ROOM, "!integration yes")["msg"].startswith("✅ Changed")
    assert workspace.control.integration(created["_id"])["alias"] == "from-room"


@shared
def test_a_foreign_confirmation_does_nothing_and_leaves_it_to_the_owner(workspace: Workspace) -> None:
    created = make(workspace)
    before = workspace.control.integration(created["_id"])
    calls = update_calls(workspace)
    code = code_in(workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} alias=owner")["msg"])
    other_user = workspace.chat.command("owen", ROOM, f"!integration confirm {code}")["msg"]
    other_room = workspace.chat.command("admin", "general", f"!integration confirm {code}")["msg"]
    other_yes = workspace.chat.command("owen", ROOM, "!integration yes")["msg"]
    for reply in (other_user, other_room):
        assert "not yours" in reply
    assert "no change waiting" in other_yes
    assert workspace.control.integration(created["_id"]) == before
    assert update_calls(workspace) == calls
    assert workspace.chat.command("admin", ROOM, f"!integration confirm {code}")["msg"].startswith("✅ Changed")


@shared
def test_a_change_made_since_the_preview_stops_the_confirmation(workspace: Workspace) -> None:
    created = make(workspace)
    code = code_in(workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} alias=mine")["msg"])
    workspace.control.update_integration(created["_id"], {"emoji": ":fire:"})
    calls = update_calls(workspace)
    reply = workspace.chat.command("admin", ROOM, f"!integration confirm {code}")["msg"]
    assert "changed by someone since the preview" in reply
    stored = workspace.control.integration(created["_id"])
    assert (stored["alias"], stored["emoji"]) == ("before", ":fire:")
    assert update_calls(workspace) == calls


@shared
def test_yes_in_the_command_applies_at_once_also_typed_as_an_em_dash(workspace: Workspace) -> None:
    created = make(workspace)
    first = workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} retryCount=7 --yes")["msg"]
    second = workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} runOnEdits=on —yes")["msg"]
    assert first.startswith("✅ Changed") and second.startswith("✅ Changed")
    stored = workspace.control.integration(created["_id"])
    assert (stored["retryCount"], stored["runOnEdits"]) == (7, True)


@shared
def test_a_new_token_never_shows_anywhere(workspace: Workspace) -> None:
    created = make(workspace)
    secret = "Brand-New-Token-" + created["_id"][-8:]
    replies = [
        workspace.chat.command("admin", ROOM, f"!integration set {created['_id']} token={secret}"),
        workspace.chat.command("admin", ROOM, "!integration yes"),
        workspace.chat.command("admin", ROOM, f"!integration show {created['_id']}"),
    ]
    assert workspace.control.integration(created["_id"])["token"] == secret
    assert "token: set → changed (not shown)" in replies[0]["msg"]
    assert "token: set (not shown)" in replies[2]["msg"]
    for reply in replies:
        assert secret not in json.dumps(reply)
    assert secret not in workspace.bot.output


def test_an_expired_confirmation_does_nothing(tmp_path: Path) -> None:
    with running_workspace(tmp_path, BOT_CONFIRM_TIMEOUT="PT0.2S") as ws:
        created = make(ws)
        before = ws.control.integration(created["_id"])
        preview = ws.chat.command("admin", ROOM, f"!integration set {created['_id']} alias=too-late")["msg"]
        time.sleep(0.3)  # past the 0.2 s the bot was given
        calls = update_calls(ws)
        by_code = ws.chat.command("admin", ROOM, f"!integration confirm {code_in(preview)}")["msg"]
        ws.chat.command("admin", ROOM, f"!integration set {created['_id']} alias=too-late")
        time.sleep(0.3)
        by_yes = ws.chat.command("admin", ROOM, "!integration yes")["msg"]
        for reply in (by_code, by_yes):
            assert "expired" in reply
        assert ws.control.integration(created["_id"]) == before
        assert update_calls(ws) == calls
