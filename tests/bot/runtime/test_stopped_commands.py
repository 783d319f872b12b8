"""A command the runtime stops without answering (another replica took it over; or its write was
sent and then the state database failed) leaves nothing behind that other commands wait for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from settings_support import offline_settings

from bot.errors import ClaimTakenOver, StateUnavailable
from bot.rocketchat.messages import ChatMessage
from bot.runtime.bot import Bot
from bot.runtime.intake import Accepted
from bot.runtime.journal import current_command
from commands.followups import Followups
from commands.parser import extract_invocation
from commands.registry import Command, CommandContext, Dispatcher, Registry
from commands.reply import Reply


@pytest.mark.parametrize("stop", ["taken-over", "state-gone-after-the-write"])
async def test_the_book_keeping_of_a_stopped_command_does_not_hold_up_later_commands(tmp_path: Path, stop: str) -> None:
    """Was: a bulk disable stopped after its first members (their audit rows deferred) left those
    follow-ups registered and never run: every later `history`, `undo`, `snoozed`, `enable all`,
    and every lookup of those members, waited for them for good, in this process."""
    recorded: list[str] = []

    async def handler(ctx: CommandContext, args: Any) -> Reply:
        ctx.defer("member-1", lambda: _note(recorded, "member-1"))  # a first member, switched off
        run = current_command.get()
        assert run is not None
        if stop == "taken-over":
            raise ClaimTakenOver(run.message_id)  # the next member: the claim is another's now
        run.sent.append("member-2")
        raise StateUnavailable("db", "gone")  # the next member's write sent, then the database failed

    registry = Registry([Command(name="boom", summary="", usage="", handler=handler, changes_integrations=True)])
    followups = Followups()
    settings = offline_settings(tmp_path)
    bot = Bot(settings)
    bot.registry = registry
    services = SimpleNamespace(
        followups=followups,
        integrations=SimpleNamespace(drop_prefetch=lambda: None),
        rights=SimpleNamespace(known=lambda _user_id: None),
        clock=lambda: datetime.now(UTC),
    )
    bot.services = services  # type: ignore[assignment]
    bot.dispatcher = Dispatcher(registry, services)  # type: ignore[arg-type]
    answered: list[Reply] = []

    async def author(message: ChatMessage, **_: Any) -> Any:
        return SimpleNamespace(active=True)

    async def post(message: ChatMessage, reply: Reply) -> None:
        answered.append(reply)

    bot._from_ignored_bot = author  # type: ignore[method-assign]
    bot._post = post  # type: ignore[method-assign]
    now = datetime.now(UTC)
    message = ChatMessage(
        id="M", room_id="r", text="!integration boom", ts=now, updated_at=now, user_id="u", username="a"
    )
    await asyncio.create_task(bot._command(Accepted(message, extract_invocation(message.text, bot_username="x"))))
    assert answered == []  # not answered here: by the replica that took it over, or by the recovery
    await asyncio.wait_for(followups.settled(), timeout=2)  # a later `history`
    await asyncio.wait_for(followups.settled("member-1"), timeout=2)  # a later lookup of that member
    assert recorded == []  # not recorded here either (it is the other's, or the recovery's, to record)


async def _note(recorded: list[str], what: str) -> None:
    recorded.append(what)
