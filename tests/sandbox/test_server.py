"""SandboxServer: lifecycle, ports, and the wiring of REST, realtime and control on one socket."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from ddp_test_client import DDPClient

from sandbox.config import SandboxConfig
from sandbox.control import SandboxClient
from sandbox.server import SandboxServer


def test_port_zero_picks_a_free_port_and_reports_it() -> None:
    with SandboxServer() as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        assert server.store.get_setting("Site_Url") == server.url
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
        assert server.running
    assert not server.running


def test_stop_is_idempotent_and_the_port_is_released() -> None:
    server = SandboxServer()
    server.stop()  # never started: nothing to do
    server.start()
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_server_starts_once() -> None:
    with SandboxServer() as server, pytest.raises(RuntimeError, match="already started"):
        server.start()


def test_busy_port_is_reported() -> None:
    with SandboxServer() as first:
        second = SandboxServer()
        with pytest.raises(OSError, match="in use"):
            second.start(port=first.port)


def test_rest_api_and_control_are_mounted() -> None:
    with SandboxServer(config=SandboxConfig(version="7.10.0")) as server:
        info = httpx.get(f"{server.url}/api/info", timeout=5)
        assert info.status_code == 200 and info.json()["version"] == "7.10.0"
        with SandboxClient(server.url, server.control_secret) as client:
            assert client.create_user("alice").username == "alice"
        assert server.control.user("alice")["username"] == "alice"


async def test_rest_chat_send_message_reaches_a_ddp_subscriber() -> None:
    with SandboxServer() as server:
        control = server.control
        bot = control.create_user("bot", roles=["bot"])
        alice = control.create_user("alice")
        control.create_room("general", members=["bot", "alice"], room_id="GENERAL")
        async with DDPClient.open(server.url) as client:
            await client.connect()
            await client.login(bot.auth_token)
            await client.sub("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
                response = await http.post(
                    "/api/v1/chat.sendMessage",
                    json={"message": {"rid": "GENERAL", "msg": "/integration disable Guggy"}},
                    headers={"X-User-Id": alice.user_id, "X-Auth-Token": alice.auth_token},
                )
            assert response.status_code == 200, response.text
            frame = await client.changed("__my_messages__")
            message, meta = frame["fields"]["args"]
            assert message["_id"] == response.json()["message"]["_id"]
            assert message["u"]["username"] == "alice" and meta["roomName"] == "general"


def test_servers_are_independent() -> None:
    with SandboxServer() as a, SandboxServer() as b:
        a.control.create_user("only-in-a")
        assert b.store.find_user("only-in-a") is None
        assert a.port != b.port

        async def both_connect() -> list[str]:
            sessions = []
            for server in (a, b):
                async with DDPClient.open(server.url) as client:
                    sessions.append(await client.connect())
            return sessions

        assert len(set(asyncio.run(both_connect()))) == 2


async def test_async_variant_serves_from_the_running_loop() -> None:
    async with SandboxServer() as server:
        assert server.running
        bot = server.control.create_user("bot", roles=["bot"])
        server.control.create_room("general", members=["bot"], room_id="GENERAL")
        async with DDPClient.open(server.url) as client:
            await client.connect()
            await client.login(bot.auth_token)
            await client.sub("stream-room-messages", "GENERAL", False)
            server.control.post_message("bot", "general", "from the same loop")
            assert (await client.changed("GENERAL"))["fields"]["args"][0]["msg"] == "from the same loop"
            assert server.control.drop_connections() == 1  # called on the server's own loop
        found = await asyncio.to_thread(server.control.wait_for_message, "general", lambda m: True, 1)
        assert found["msg"] == "from the same loop"
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
