"""The realtime client against the real sandbox Rocket.Chat server (REST + DDP on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from realtime_harness import Recorder, running

from bot.errors import AuthFailed
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.realtime import (
    Connected,
    Disconnected,
    MethodFailed,
    PasswordCredentials,
    RealtimeClient,
    Reconnecting,
    ResumeCredentials,
    StreamEvent,
    websocket_url,
)
from sandbox.control import UserCredentials
from sandbox.server import SandboxServer

BOT_PASSWORD = "bot-password-81"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def bot(sandbox: SandboxServer) -> UserCredentials:
    control = sandbox.control
    credentials = control.create_user("integrations-bot", password=BOT_PASSWORD, roles=["bot"])
    control.create_user("alice", password="alice-pw")
    control.create_room("ops", members=["integrations-bot", "alice"])
    return credentials


def make_client(sandbox: SandboxServer, credentials: Any, recorder: Recorder) -> RealtimeClient:
    client = RealtimeClient(
        websocket_url(sandbox.url),
        credentials,
        connect_timeout=5.0,
        call_timeout=5.0,
        sleep=recorder.sleep,
        random=lambda: 0.5,
    )
    client.subscribe("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})
    return client


def received(recorder: Recorder, text: str) -> list[ChatMessage]:
    messages = [
        ChatMessage.from_stream_args(e.args)
        for e in recorder.of(StreamEvent)
        if e.collection == "stream-room-messages" and e.event_name == "__my_messages__"
    ]
    return [m for m in messages if m is not None and m.text == text]


async def post(sandbox: SandboxServer, user: str, room: str, text: str) -> dict[str, Any]:
    return await asyncio.to_thread(sandbox.control.post_message, user, room, text)


async def test_resume_login_receive_messages_and_survive_a_drop(sandbox: SandboxServer, bot: UserCredentials) -> None:
    recorder = Recorder()
    client = make_client(sandbox, ResumeCredentials(bot.auth_token), recorder)
    async with running(client, recorder):
        await client.wait_ready(5)
        first = await recorder.wait_for(Connected)
        assert (first.user_id, first.reconnect) == (bot.user_id, False)

        posted = await post(sandbox, "alice", "ops", "/integration list")
        await recorder.wait_until(lambda: bool(received(recorder, "/integration list")))
        [message] = received(recorder, "/integration list")
        assert message.id == posted["_id"]
        assert (message.username, message.room_name, message.room_participant) == ("alice", "ops", True)
        assert message.ts.tzinfo is not None

        dropped = await asyncio.to_thread(sandbox.control.drop_connections)
        assert dropped >= 1
        again = await recorder.wait_for(Connected, 2)
        assert (again.user_id, again.reconnect) == (bot.user_id, True)
        assert len(recorder.of(Disconnected)) == 1
        assert len(recorder.of(Reconnecting)) == 1

        await post(sandbox, "alice", "ops", "/integration disable Guggy")
        await recorder.wait_until(lambda: bool(received(recorder, "/integration disable Guggy")))


async def test_password_digest_login_against_the_sandbox(sandbox: SandboxServer, bot: UserCredentials) -> None:
    recorder = Recorder()
    client = make_client(sandbox, PasswordCredentials(BOT_PASSWORD, username="integrations-bot"), recorder)
    async with running(client, recorder):
        await client.wait_ready(5)
        assert client.user_id == bot.user_id
        # A call with a datetime parameter goes out as EJSON and comes back as the bot's rooms.
        rooms = await client.call("rooms/get", datetime(2000, 1, 1, tzinfo=UTC))
        assert [room.get("name") for room in rooms["update"]].count("ops") == 1
        with pytest.raises(MethodFailed) as unknown:
            await client.call("no-such-method")
        assert unknown.value.error == 404


async def test_rate_limited_login_is_retried(sandbox: SandboxServer, bot: UserCredentials) -> None:
    await asyncio.to_thread(sandbox.control.fail_next, "ddp:login", 1, "429", retry_after=2.0)
    recorder = Recorder()
    client = make_client(sandbox, ResumeCredentials(bot.auth_token), recorder)
    async with running(client, recorder):
        await client.wait_ready(5)
        assert "login temporarily refused" in recorder.of(Disconnected)[0].reason
        assert recorder.delays == [2.0]  # the server's timeToReset, not the shorter backoff


async def test_unknown_token_is_fatal(sandbox: SandboxServer, bot: UserCredentials) -> None:
    recorder = Recorder()
    client = make_client(sandbox, ResumeCredentials("not-a-token-of-this-server"), recorder)
    with pytest.raises(AuthFailed):
        await asyncio.wait_for(client.run(), 5)
    assert recorder.delays == []


async def test_survives_a_server_restart(sandbox: SandboxServer, bot: UserCredentials) -> None:
    recorder = Recorder()

    async def short_sleep(delay: float) -> None:
        recorder.delays.append(delay)
        await asyncio.sleep(min(delay, 0.02))  # keep the retry loop from spinning, without long waits

    client = RealtimeClient(
        websocket_url(sandbox.url),
        ResumeCredentials(bot.auth_token),
        connect_timeout=5.0,
        sleep=short_sleep,
        random=lambda: 0.5,
    )
    client.subscribe("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})
    async with running(client, recorder):
        await client.wait_ready(5)
        # A restart: websocket upgrades refused with 503 for a while, existing sockets dropped.
        await asyncio.to_thread(sandbox.control.refuse_connections, 0.3)
        await asyncio.to_thread(sandbox.control.drop_connections)
        again = await recorder.wait_for(Connected, 2, within=10)
        assert again.reconnect
        attempts = [e.attempt for e in recorder.of(Reconnecting)]
        assert len(attempts) >= 2  # refused at least once before getting back in
        assert attempts == list(range(1, len(attempts) + 1))  # each refusal backs off further
        await post(sandbox, "alice", "ops", "back after the restart")
        await recorder.wait_until(lambda: bool(received(recorder, "back after the restart")))
