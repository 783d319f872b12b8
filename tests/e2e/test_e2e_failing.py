"""Issue 16 part 3 end to end: `failing` through the real bot process on the sandbox lists the
outgoing webhooks whose recent calls failed, as far as the caller may see them, never with a token
or a credential, and its button disables the webhook as whoever taps it.

Calls are recorded through the sandbox's control API as Rocket.Chat's trigger handler leaves them
(sandbox/integration_history.py); the bot reads them back through `integrations.history`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from e2e_support import Workspace, unique_name
from incident_support import buttons

pytestmark = pytest.mark.e2e

ROOM = "ops"
TOKEN = "e2e-outgoing-token-Qm81zV0pLk"
PASSWORD = "e2e-pa55word-Zt4"
URL = f"https://relay:{PASSWORD}@relay.example.net/hooks/SECRETPATHx9?signature=SIGVALUE42"


def _ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def test_failing_lists_what_the_caller_may_see_and_never_a_secret(fresh_workspace: Workspace) -> None:
    workspace = fresh_workspace
    control, chat = workspace.control, workspace.chat
    control.create_role("own-outgoing-only", permissions=["manage-own-outgoing-integrations"])
    control.create_user("olga", roles=["user", "own-outgoing-only"])
    control.add_member(ROOM, "olga")
    admins = control.create_outgoing_integration(
        unique_name("Pager relay"), channel=f"#{ROOM}", urls=[URL], token=TOKEN, created_by="admin"
    )
    olgas = control.create_outgoing_integration(
        unique_name("Olga hook"), channel=f"#{ROOM}", urls=[URL], token=TOKEN, created_by="olga"
    )
    quiet = control.create_outgoing_integration(
        unique_name("Quiet hook"), channel=f"#{ROOM}", urls=[URL], token=TOKEN, created_by="olga"
    )
    control.record_outgoing_call(admins["_id"], error_code="ECONNREFUSED", at=_ago(7))
    control.record_outgoing_call(olgas["_id"], status=200, body="ok", at=_ago(20))
    control.record_outgoing_call(olgas["_id"], status=500, body=f"bad token {TOKEN} at {URL}", at=_ago(6))
    control.record_outgoing_call(quiet["_id"], status=200, body="ok", at=_ago(5))
    control.record_outgoing_call(olgas["_id"], status=503, body="old failure", at=_ago(120))  # outside the hour

    answer = chat.command("admin", ROOM, "!integration failing")
    text = answer["msg"]
    assert admins["name"] in text and olgas["name"] in text and quiet["name"] not in text, text
    olga_line = next(line for line in text.splitlines() if olgas["name"] in line)
    assert "1 of 2 calls failed" in olga_line and "HTTP 500: bad token" in olga_line, text
    assert "connect ECONNREFUSED relay.example.net:443" in text, text
    shown = text + " ".join(buttons(answer).values())
    for secret in (TOKEN, PASSWORD, "SECRETPATHx9", "SIGVALUE42", "relay:"):
        assert secret not in shown, shown

    mine = chat.command("olga", ROOM, "!integration failing")
    assert olgas["name"] in mine["msg"], mine["msg"]
    assert admins["name"] not in mine["msg"] and admins["_id"] not in mine["msg"], mine["msg"]
    assert all(admins["_id"] not in command for command in buttons(mine).values())

    refused = chat.command("alice", ROOM, "!integration failing")
    assert "manage-own-outgoing-integrations" in refused["msg"] and olgas["name"] not in refused["msg"]

    tap = next(command for label, command in buttons(mine).items() if label.startswith("Disable"))
    assert olgas["_id"] in tap
    disabled = chat.command("olga", ROOM, tap)
    assert "Disabled" in disabled["msg"], disabled["msg"]
    assert control.integration(olgas["_id"])["enabled"] is False
    assert control.integration(admins["_id"])["enabled"] is True
    assert TOKEN not in workspace.bot.output and PASSWORD not in workspace.bot.output


# Secrets nothing names, each in the body a webhook's URL answered with, and what `failing` shows.
UNNAMED = {
    "POST hooks.example.com/services/T00/B00/UNNAMEDPATH1 failed": "POST hooks.example.com/… failed",
    "Invalid token ab12cd34ef56UNNAMED2": "Invalid token ***",
    "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJVTk5BTUVEMyJ9.c2lnbmF0dXJl expired": "jwt *** expired",
    "key ghp_16C7e42F292c6912E7710c838347Ae178B4a revoked": "key *** revoked",
    "sent token%3DUNNAMED5secret": "sent token%3D***",
    "proxy user:pa ss@proxy.example:3128 refused": "proxy ***@proxy.example:3128 refused",
    "deploy queue unavailable": "deploy queue unavailable",
}


def test_failing_masks_secrets_that_nothing_names(fresh_workspace: Workspace) -> None:
    """Error text can carry keys the entry does not know (a scheme-less URL, a token the far end
    echoes, a JWT): the line masks them by their look and leaves ordinary text alone."""
    control, chat = fresh_workspace.control, fresh_workspace.chat
    hooks = {}
    for body in UNNAMED:
        hook = control.create_outgoing_integration(
            unique_name("Echo hook"), channel=f"#{ROOM}", urls=[URL], token=TOKEN, created_by="admin"
        )
        control.record_outgoing_call(hook["_id"], status=500, body=body, at=_ago(3))
        hooks[hook["name"]] = body

    answer = chat.command("admin", ROOM, "!integration failing")
    text = answer["msg"]
    for name, body in hooks.items():
        line = next(line for line in text.splitlines() if f"`{name}`" in line)
        assert line.endswith(f"`HTTP 500: {UNNAMED[body]}`"), line
    shown = text + " ".join(buttons(answer).values())
    for secret in ("UNNAMEDPATH1", "UNNAMED2", "eyJ", "ghp_", "UNNAMED5", "pa ss", TOKEN, PASSWORD):
        assert secret not in shown, shown
