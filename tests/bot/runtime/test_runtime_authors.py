"""Other bot accounts, through the running bot (in-process) against the sandbox: a command of theirs
left unfinished by a crash stays unanswered and unrun after the restart (resumed or too old), and an
author who cannot be looked up gets nothing run, even when the lookup would work a moment later."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from reliability_support import ShiftedClock, World, call, running_bot, settings_for, until, world

from bot.state.store import StateStore, read_message_ids
from sandbox.seed import BOT_ROLE

BOT_ACCOUNT = "deploy-bot"


@pytest.fixture
def w() -> Iterator[World]:
    with world() as fresh:
        fresh.control.create_user(BOT_ACCOUNT, roles=["user", BOT_ROLE], user_type="bot")
        fresh.control.add_member("ops", BOT_ACCOUNT)
        yield fresh


async def hook(w: World, name: str) -> dict[str, Any]:
    return await call(w.control.create_incoming_integration, name, channel="#ops", created_by="admin")


async def crashed_while_running(tmp_path: Path, command: dict[str, Any]) -> None:
    """The state a kill -9 leaves right after `command` was claimed: an unfinished claim."""
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        sent = datetime.fromisoformat(command["ts"].replace("Z", "+00:00"))
        assert await state.claim_messages([(command["_id"], command["rid"], sent)], datetime.now(UTC))
    finally:
        await state.close()


async def status(tmp_path: Path, message_id: str) -> str | None:
    state = await StateStore.open(tmp_path / "state.sqlite3")
    try:
        return await state.message_status(message_id)
    finally:
        await state.close()


def answer_ids(tmp_path: Path, command: dict[str, Any]) -> tuple[str, ...]:
    return read_message_ids(tmp_path / "state.sqlite3").answer(command["_id"])


def answered(w: World, tmp_path: Path, command: dict[str, Any]) -> bool:
    ids = answer_ids(tmp_path, command)
    return any(m["_id"] in ids for m in w.control.messages(command["rid"]))


@pytest.mark.parametrize("late", [False, True], ids=["resumed", "too-old-to-resume"])
async def test_a_bot_accounts_unfinished_command_is_closed_as_ignored_at_the_restart(
    w: World, tmp_path: Path, late: bool
) -> None:
    target = await hook(w, f"orphan-{late}")
    settings = settings_for(w, tmp_path)
    async with running_bot(settings):
        pass  # a first run: the state file exists, with cursors
    command = await call(w.control.post_message, BOT_ACCOUNT, "ops", f"!integration disable {target['_id']}")
    await crashed_while_running(tmp_path, command)
    clock = ShiftedClock(timedelta(minutes=5) if late else timedelta(0))
    with structlog.testing.capture_logs() as captured:
        async with running_bot(settings, clock=clock):
            await until(
                lambda: any(e["event"] == "command.ignored_bot" for e in captured), timeout=15, what="the ignore"
            )
    decided = [e["decision"] for e in captured if e["event"] == "recovery.decided"]
    assert decided == ["interrupted" if late else "resume"]
    assert not answered(w, tmp_path, command)  # neither the command's answer nor "interrupted"
    assert (await call(w.control.integration, target["_id"]))["enabled"] is True
    assert await status(tmp_path, command["_id"]) == "ignored"


async def test_an_author_who_cannot_be_looked_up_gets_nothing_run(w: World, tmp_path: Path) -> None:
    target = await hook(w, "unlooked")
    async with running_bot(settings_for(w, tmp_path, bot_rights_cache_seconds=0)):
        # Every attempt of one users.info call fails; the next call would work.
        await call(w.control.fail_next, "users.info", 3, "500")
        command = await call(w.control.post_message, BOT_ACCOUNT, "ops", f"!integration disable {target['_id']}")
        ids = answer_ids(tmp_path, command)
        answer = await call(w.control.wait_for_message, "ops", lambda m: m["_id"] in ids, timeout=15)
    assert "Disabled" not in answer["msg"]
    assert (await call(w.control.integration, target["_id"]))["enabled"] is True
