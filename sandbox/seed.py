"""The demo workspace: users with deliberately different rights, rooms, and integrations to toggle.

Who can do what (contract §3):

* `integrations-bot` — roles `bot` + custom `integrations-manager`: the four manage-*-integrations
  permissions (holding both the "all" and the "own" one of a type exempts the bot's own updates
  from Rocket.Chat's channel-membership rule, §2.4.3 step 6), view-full-other-user-info (to read
  a caller's roles) and view-other-user-channels (to apply that membership rule to callers); no
  admin. It is also a member of the rooms integrations post to, as a bot usually is.
* `admin` — may change anything.
* `alice` — a plain user: may change nothing.
* `owen` — custom role `own-integrations` (manage-own-incoming-integrations and
  manage-own-outgoing-integrations only): may change the integrations he created, nothing else.

Integrations include two named exactly "Guggy" (one incoming, one outgoing: the deliberate
duplicate the README's ambiguity example uses), a disabled one whose name merely contains "guggy",
`Grafana` posting alerts into #alerts (the noisy webhook of the demo's incident flow), and some
created by owen. Every example in README.md and in `help` runs on this workspace
(tests/e2e/test_examples.py).
"""

from __future__ import annotations

import secrets
from typing import Any, Final

from sandbox.control import SandboxControl
from sandbox.store import Store

BOT_ROLE: Final = "integrations-manager"
BOT_PERMISSIONS: Final = (
    "manage-incoming-integrations",
    "manage-outgoing-integrations",
    "manage-own-incoming-integrations",
    "manage-own-outgoing-integrations",
    "view-full-other-user-info",
    "view-other-user-channels",
)
OWNER_ROLE: Final = "own-integrations"
OWNER_PERMISSIONS: Final = ("manage-own-incoming-integrations", "manage-own-outgoing-integrations")

_GUGGY_SCRIPT: Final = (
    "class Script {\n"
    "  process_incoming_request({ request }) {\n"
    "    return { content: { text: request.content.text } };\n"
    "  }\n"
    "}\n"
)
_DEPLOY_SCRIPT: Final = (
    "class Script {\n"
    "  prepare_outgoing_request({ request }) { return request; }\n"
    "  process_outgoing_response({ response }) {\n"
    "    return { content: { text: 'Deploy started: ' + response.content.id } };\n"
    "  }\n"
    "}\n"
)


def seed_demo(store: Store) -> dict[str, Any]:
    """Fill an empty store with the demo workspace; returns `{"users", "rooms", "integrations"}`
    as written into the credentials file (tokens and passwords included)."""
    control = SandboxControl(store)
    try:
        return _seed(control, store)
    finally:
        control.close()


def _seed(control: SandboxControl, store: Store) -> dict[str, Any]:
    control.create_role(BOT_ROLE, permissions=BOT_PERMISSIONS, description="Can change every integration")
    control.create_role(OWNER_ROLE, permissions=OWNER_PERMISSIONS, description="Can change own integrations")
    users = {
        "admin": control.create_user("admin", roles=["admin"], name="Administrator"),
        "integrations-bot": control.create_user(
            "integrations-bot",
            roles=["bot", BOT_ROLE],
            name="Integrations Bot",
            user_type="bot",
            personal_access_token=True,
        ),
        "alice": control.create_user("alice", roles=["user"], name="Alice"),
        "owen": control.create_user("owen", roles=["user", OWNER_ROLE], name="Owen"),
        "rocket.cat": control.create_user("rocket.cat", roles=["bot"], name="Rocket.Cat", user_type="bot"),
    }
    everyone = list(users)
    rooms: dict[str, str] = {
        "general": control.create_room("general", members=everyone, owner="admin", room_id="GENERAL")["_id"],
        "ops": control.create_room("ops", members=["admin", "integrations-bot", "owen", "alice"], owner="admin")["_id"],
        "alerts": control.create_room("alerts", members=["admin", "integrations-bot", "owen"], owner="owen")["_id"],
        "platform-team": control.create_room(
            "platform-team", room_type="p", members=["admin", "integrations-bot", "alice"], owner="admin"
        )["_id"],
    }
    for other in ("alice", "owen", "admin"):
        names = sorted([other, "integrations-bot"])
        rooms[f"dm:{names[0]}:{names[1]}"] = control.create_direct(other, "integrations-bot")["_id"]

    made = {
        "guggy-incoming": control.create_incoming_integration(
            "Guggy",
            channel="#general",
            created_by="admin",
            alias="guggy",
            emoji=":ghost:",
            avatar="https://example.org/guggy/logo.png",
            script=_GUGGY_SCRIPT,
            script_enabled=True,
        ),
        "guggy-outgoing": control.create_outgoing_integration(
            "Guggy",
            channel="#general",
            urls=["http://text2gif.guggy.com/guggify"],
            created_by="admin",
            trigger_words=["!guggy"],
            token=secrets.token_urlsafe(24),
            alias="guggy",
            emoji=":ghost:",
            avatar="http://res.guggy.com/logo_128.png",
            retry_failed_calls=True,
            retry_count=6,
            retry_delay="powers-of-ten",
            run_on_edits=True,
        ),
        "old-guggy": control.create_outgoing_integration(
            "old-guggy",
            channel="#general",
            urls=["http://legacy.guggy.example.org/hook"],
            created_by="admin",
            enabled=False,
            trigger_words=["!oldguggy"],
            token=secrets.token_urlsafe(24),
        ),
        "jenkins-builds": control.create_incoming_integration(
            "Jenkins builds",
            channel="#ops",
            created_by="owen",
            alias="Jenkins",
            emoji=":construction_worker:",
        ),
        "deploy-announcer": control.create_outgoing_integration(
            "Deploy announcer",
            channel="#ops,#alerts",
            urls=["https://deploy.example.org/hooks/chat"],
            created_by="owen",
            trigger_words=["!deploy", "!rollback"],
            token=secrets.token_urlsafe(24),
            retry_failed_calls=True,
            script=_DEPLOY_SCRIPT,
            script_enabled=True,
        ),
        "alertmanager": control.create_incoming_integration(
            "Alertmanager",
            channel="#alerts",
            created_by="admin",
            enabled=False,
            alias="Alertmanager",
            avatar="https://example.org/alertmanager.png",
        ),
        "grafana": control.create_incoming_integration(
            "Grafana",
            channel="#alerts",
            created_by="admin",
            alias="Grafana",
            emoji=":chart_with_upwards_trend:",
        ),
        "welcome-new-users": control.create_outgoing_integration(
            "Welcome new users",
            channel=[],
            event="userCreated",
            urls=["https://onboarding.example.org/welcome"],
            created_by="admin",
            target_room="#general",
            token=secrets.token_urlsafe(24),
        ),
    }
    control.set_setting("Message_AllowUnrecognizedSlashCommand", True)
    control.post_message("admin", "general", "Welcome to the integrations-bot demo workspace :wave:")
    return {
        "users": {name: creds.to_json() for name, creds in users.items()},
        "rooms": rooms,
        "integrations": {
            label: {
                "id": doc["_id"],
                "name": doc["name"],
                "type": doc["type"],
                "enabled": doc["enabled"],
                "createdBy": doc["_createdBy"]["username"],
            }
            for label, doc in made.items()
        },
    }
