"""Support for the incident-toolkit end-to-end tests (tests/e2e/test_incident_*.py).

Built on e2e_support (the seeded sandbox, the real bot process, `Chat`), plus what these tests
need besides: an audit room (`BOT_AUDIT_ROOM`), rooms of their own, restarting the bot process
on the same state file (gracefully or with SIGKILL), a manual change made the way an admin makes
it (REST `integrations.update` with the admin's own token), and reading buttons off a reply.

Waiting: the bot's notices (a timed disable ended) are awaited on the sandbox's message log, like
replies; nothing here sleeps except `wait_past`, which waits for a due time to pass on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from e2e_support import BOT_USERNAME, BodyChecker, BotProcess, Chat, bot_environment, start_sandbox

from bot.integrations.service import build_update_body
from bot.rocketchat.ejson import decode_date
from sandbox.control import SandboxControl
from sandbox.server import SandboxServer

ROOM = "incident"
AUDIT_ROOM = "incident-audit"
NOISE_ROOM = "noise"
PREFIX = "!integration"
# Fields the server rewrites on every save: never compared.
SERVER_MANAGED = ("_updatedAt", "_updatedBy")
NOTICE_TIMEOUT = 15.0


def prepare_rooms(control: SandboxControl) -> None:
    everyone = ["admin", "alice", "owen", BOT_USERNAME]
    control.create_room(ROOM, members=everyone, owner="admin")
    control.create_room(NOISE_ROOM, members=everyone, owner="admin")
    control.create_room(AUDIT_ROOM, members=["admin", BOT_USERNAME], owner="admin")


@dataclass
class World:
    server: SandboxServer
    seed: dict[str, Any]
    env: dict[str, str]
    workdir: Path
    bot: BotProcess
    chat: Chat
    bodies: BodyChecker

    @property
    def control(self) -> SandboxControl:
        return self.server.control

    def token(self, username: str) -> str:
        return str(self.seed["users"][username]["authToken"])

    def user_id(self, username: str) -> str:
        return str(self.control.user(username)["_id"])

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as after a crash or an OOM kill."""
        self.bot.process.kill()
        self.bot.wait_exit(10)

    def start(self) -> None:
        """A new bot process on the same state file."""
        self.bot = BotProcess(self.env, self.workdir)
        self.bot.wait_ready()

    def command(self, user: str, text: str, *, room: str = ROOM, tmid: str | None = None) -> dict[str, Any]:
        return self.chat.command(user, room, f"{PREFIX} {text}", tmid=tmid)

    def notice(self, predicate: Any, *, room: str = ROOM, timeout: float = NOTICE_TIMEOUT) -> dict[str, Any]:
        """The first message of the bot in `room` whose text satisfies `predicate`."""
        return self.control.wait_for_message(
            room, lambda m: m["u"]["username"] == BOT_USERNAME and predicate(m.get("msg") or ""), timeout=timeout
        )

    def manual_update(self, integration_id: str, changes: Mapping[str, Any], *, as_user: str = "admin") -> None:
        """A change made outside the bot: `PUT integrations.update` with the user's own token and
        the complete body (as the admin UI sends it)."""
        body = build_update_body(self.control.integration(integration_id), changes)
        answer = httpx.put(
            f"{self.server.url}/api/v1/integrations.update",
            json=body,
            headers={"X-User-Id": self.user_id(as_user), "X-Auth-Token": self.token(as_user)},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text


@contextmanager
def incident_world(workdir: Path, **settings: str) -> Iterator[World]:
    """A seeded sandbox with the incident rooms and a ready bot (audit room configured); on exit
    the bot must stop cleanly (exit 0) and every request body must pass the official schemas."""
    server, seed = start_sandbox()
    try:
        prepare_rooms(server.control)
        creds = seed["users"][BOT_USERNAME]
        env = bot_environment(
            server.url,
            workdir,
            ROCKETCHAT_USER_ID=creds["userId"],
            ROCKETCHAT_AUTH_TOKEN=creds["authToken"],
            **{"BOT_AUDIT_ROOM": AUDIT_ROOM, **settings},
        )
        bodies = BodyChecker()
        chat = Chat(server.control, bodies, Path(env["BOT_STATE_DB"]))
        world = World(server, seed, env, workdir, BotProcess(env, workdir), chat, bodies)
        try:
            world.bot.wait_ready()
            yield world
        finally:
            code = world.bot.terminate()
        assert code == 0, f"the bot exited with {code}:\n{world.bot.output[-3000:]}"
        assert creds["authToken"] not in world.bot.output
        bodies.check(server.control)
    finally:
        server.stop()


# --- reading results ------------------------------------------------------------------------------


def stable(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored integration as any save of the same data leaves it: without the fields every save
    rewrites, without nulls (an outgoing update stores null for optional keys the body leaves out;
    null and absent mean the same to Rocket.Chat, contract §2.4.4), and without `skipTranspile:
    false`, which an 8.x server writes on every update of a document created without it."""
    return {
        k: v
        for k, v in document.items()
        if k not in SERVER_MANAGED and v is not None and not (k == "skipTranspile" and v is False)
    }


def buttons(reply: Mapping[str, Any]) -> dict[str, str]:
    """Button text → the command it posts, from a reply's attachments (contract §6.3)."""
    found: dict[str, str] = {}
    for attachment in reply.get("attachments") or []:
        for action in attachment.get("actions") or []:
            assert action["type"] == "button" and action["msg_in_chat_window"] is True
            found[action["text"]] = action["msg"]
    return found


def wait_past(when: datetime, margin: float = 0.3) -> None:
    """Sleep until `when` (plus a margin) has passed: only for a due time that must pass while
    the bot is down."""
    remaining = (when - datetime.now(UTC)).total_seconds() + margin
    if remaining > 0:
        time.sleep(remaining)


def updated_at(document: Mapping[str, Any]) -> datetime:
    found = decode_date(document.get("_updatedAt"))
    assert found is not None
    return found


def audit_lines(control: SandboxControl) -> list[str]:
    return [m.get("msg") or "" for m in control.messages(AUDIT_ROOM) if m["u"]["username"] == BOT_USERNAME]


def wait_audit_line(control: SandboxControl, wanted: Callable[[str], bool], timeout: float = 10.0) -> str:
    """The audit room's line that `wanted` accepts, once the bot has posted it: the audit room is
    fed in the background (a change never waits for it), so it may arrive after the change's answer."""
    found = control.wait_for_message(
        AUDIT_ROOM, lambda m: m["u"]["username"] == BOT_USERNAME and wanted(m.get("msg") or ""), timeout=timeout
    )
    return str(found.get("msg") or "")
