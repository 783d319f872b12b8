"""`IntegrationService.prefetch`: the first lookup of a command read while the runtime reads the
caller's rights. It must change nothing but the timing: the same answer, the caller's rights
applied to what was read, and no lost update when someone writes between the read and the change."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from settings_support import offline_settings
from test_integrations_service import ALL, FakeRocketChat, incoming, rights, service_for

from bot.config import Settings
from bot.errors import IntegrationNotFound, Unavailable
from bot.integrations.authz import MANAGE_OWN_INCOMING
from bot.integrations.service import IntegrationService
from bot.rocketchat.messages import ChatMessage
from bot.runtime.bot import Bot
from bot.runtime.intake import Accepted
from commands.parser import extract_invocation
from commands.reply import Reply


async def read_done(server: FakeRocketChat, endpoint: str, count: int) -> None:
    for _ in range(1000):
        if len(server.endpoint_calls(endpoint)) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{endpoint} was not read {count} time(s)")


async def test_a_prefetched_lookup_is_not_read_twice() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", alias="old"))
    service = service_for(server)
    service.prefetch("Guggy")
    found = await service.resolve("Guggy", rights=rights(*ALL))
    assert found.id == "a" and found.document["alias"] == "old"
    assert len(server.endpoint_calls("integrations.list")) == 1
    again = await service.resolve("Guggy", rights=rights(*ALL))  # a second lookup reads afresh
    assert again.id == "a" and len(server.endpoint_calls("integrations.list")) == 2


async def test_a_prefetch_of_another_name_is_not_used() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"), incoming("b", "Other"))
    service = service_for(server)
    service.prefetch("Guggy")
    assert (await service.resolve("Other", rights=rights(*ALL))).id == "b"
    # Read by its own name (the other read, unused, is cancelled).
    assert "Other" in [c.url.params["name"] for c in server.endpoint_calls("integrations.list")]


async def test_what_the_caller_may_not_see_stays_unseen_when_prefetched() -> None:
    server = FakeRocketChat(incoming("a", "Theirs"))  # created by someone else
    service = service_for(server)
    service.prefetch("Theirs")
    with pytest.raises(IntegrationNotFound):
        await service.resolve("Theirs", rights=rights(MANAGE_OWN_INCOMING))


async def test_a_write_made_between_the_prefetch_and_the_change_is_kept() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", alias="old", enabled=True))
    service = service_for(server)
    service.prefetch("Guggy")
    await read_done(server, "integrations.list", 1)

    async def someone_else(service: IntegrationService) -> None:  # another command, meanwhile
        found = await service.resolve("Guggy", rights=rights(*ALL))
        await service.apply_changes(found, {"alias": "new"}, rights=rights(*ALL))

    await asyncio.get_running_loop().create_task(someone_else(service), context=contextvars.Context())
    found = await service.resolve("Guggy", rights=rights(*ALL))  # the read made before that write
    assert found.document["alias"] == "old"
    outcome = await service.set_enabled(found, False, rights=rights(*ALL))
    assert outcome.changed
    assert server.docs["a"]["alias"] == "new" and server.docs["a"]["enabled"] is False
    assert len(server.endpoint_calls("integrations.get")) == 1  # read again under the lock


# --- through the runtime: one command's prefetch is its own ---------------------------------------


def _accepted(message_id: str, text: str) -> Accepted:
    now = datetime.now(UTC)
    message = ChatMessage(id=message_id, room_id="r", text=text, ts=now, updated_at=now, user_id="u1", username="alice")
    return Accepted(message, extract_invocation(text, bot_username="integrations-bot"))


async def test_a_prefetch_its_command_did_not_use_is_not_used_by_the_next_command(tmp_path: Path) -> None:
    """Was: a command that stopped before its lookup (its author could not be read, a usage
    error, refused) left its prefetched read in its task's context, which the next command of the
    same person inherited (spawned from there): that command trusted the old read and wrote it
    back whole, undoing a change made meanwhile in the admin UI."""
    server = FakeRocketChat(incoming("a", "Guggy", alias="old", enabled=True))
    service = service_for(server)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        rocketchat_url="https://chat.example.org",
        bot_state_db=tmp_path / "s.sqlite3",
        bot_caller_concurrency=1,
        rocketchat_user_id="bot",
        rocketchat_auth_token="tok",
    )
    bot = Bot(settings)
    known = SimpleNamespace(known=lambda _user_id: rights(*ALL))
    bot.services = SimpleNamespace(integrations=service, rights=known)  # type: ignore[assignment]
    posted: list[str] = []

    async def post(message: ChatMessage, reply: Reply) -> None:
        posted.append(message.id)

    async def author(message: ChatMessage, **_: Any) -> Any:
        if message.id == "A":  # its prefetch is read; the admin switches Guggy off; its author can't be read
            await read_done(server, "integrations.list", 1)
            server.docs["a"]["enabled"] = False
            server.docs["a"]["_updatedAt"] = "2025-06-01T00:00:00.000Z"
            raise Unavailable("users.info", "down")
        return rights(*ALL)

    async def reply_for(accepted: Accepted, **_: Any) -> Reply:  # B: a `set` of the same name
        found = await service.resolve("Guggy", rights=rights(*ALL))
        await service.apply_changes(found, {"alias": "new"}, rights=rights(*ALL))
        return Reply("ok", outcome="changed")

    bot._from_ignored_bot = author  # type: ignore[method-assign]
    bot._post = post  # type: ignore[method-assign]
    bot._reply_for = reply_for  # type: ignore[method-assign]
    bot._schedule(_accepted("A", "!integration disable Guggy"))
    bot._schedule(_accepted("B", "!integration set Guggy alias=new"))  # waits behind A
    for _ in range(500):
        if len(posted) == 2:
            break
        await asyncio.sleep(0.01)
    assert posted == ["A", "B"]
    assert server.docs["a"]["alias"] == "new"
    assert server.docs["a"]["enabled"] is False  # the admin's change is kept


@pytest.mark.parametrize("cached", ["no rights cached", "no integration rights"])
async def test_nothing_is_read_ahead_for_a_caller_not_known_to_be_allowed_to_look(tmp_path: Path, cached: str) -> None:
    """Was: the lookup was read ahead for anyone, before their rights were known: a caller with no
    integration rights at all (or another bot's ignored account) could make the bot page through
    integrations by name."""
    server = FakeRocketChat(incoming("a", "Guggy"))
    settings = offline_settings(tmp_path)
    bot = Bot(settings)
    rights_now = None if cached == "no rights cached" else rights()
    bot.services = SimpleNamespace(  # type: ignore[assignment]
        integrations=service_for(server), rights=SimpleNamespace(known=lambda _user_id: rights_now)
    )
    bot._prefetch(_accepted("A", "!integration disable Guggy"))
    for _ in range(50):
        await asyncio.sleep(0)
    assert server.requests == []


async def test_the_readings_of_a_name_and_a_reason_use_the_prefetched_search() -> None:
    """`disable Guggy spamming now` reads ahead the search of its shortest reading, which every
    reading is matched against: one listing in all, however many words follow the name."""
    server = FakeRocketChat(incoming("a", "Guggy"), incoming("b", "Other"))
    service = service_for(server)
    service.prefetch("Guggy")
    index, found = await service.resolve_readings(
        ["Guggy spamming now", "Guggy spamming", "Guggy"], rights=rights(*ALL)
    )
    assert (index, found.id) == (2, "a")
    assert len(server.endpoint_calls("integrations.list")) == 1
