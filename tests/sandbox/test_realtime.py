"""The realtime endpoint over real websockets on loopback (SandboxServer + the websockets client)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from ddp_test_client import DDPClient, ws_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from sandbox.config import SandboxConfig
from sandbox.control import UserCredentials
from sandbox.ids import password_digest
from sandbox.server import SandboxServer


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as srv:
        yield srv


@pytest.fixture
def bot(server: SandboxServer) -> UserCredentials:
    control = server.control
    creds = control.create_user("bot", password="bot-pw", roles=["bot"])
    control.create_user("alice", password="alice-pw")
    control.create_room("general", members=["bot", "alice"], room_id="GENERAL")
    control.create_room("random", members=["alice"], room_id="RANDOM")
    control.create_room("secret", room_type="p", members=["alice"], room_id="SECRET")
    return creds


@pytest.mark.parametrize("path", ["/websocket", "/sockjs/websocket", "/sockjs/123/abcdefgh/websocket"])
async def test_handshake_on_every_meteor_path(server: SandboxServer, path: str) -> None:
    async with DDPClient.open(server.url, path) as client:
        session = await client.connect()
        assert len(session) == 17


async def test_legacy_welcome_frame_comes_first_when_enabled() -> None:
    with SandboxServer(welcome_frame=True) as srv:
        async with DDPClient.open(srv.url) as client:
            assert await client.recv() == {"server_id": "0"}
            await client.connect()


async def test_no_welcome_frame_by_default(server: SandboxServer) -> None:
    async with DDPClient.open(server.url) as client:
        await client.send({"msg": "connect", "version": "1", "support": ["1"]})
        assert (await client.recv())["msg"] == "connected"


async def test_failed_handshake_closes_the_socket(server: SandboxServer) -> None:
    async with DDPClient.open(server.url) as client:
        await client.send({"msg": "connect", "version": "7", "support": ["7"]})
        assert await client.recv() == {"msg": "failed", "version": "1"}
        with pytest.raises(ConnectionClosedOK):
            await client.recv()


async def test_protocol_errors_over_the_socket(server: SandboxServer) -> None:
    async with DDPClient.open(server.url) as client:
        await client.send("{oops")
        assert await client.recv() == {"msg": "error", "reason": "Parse error"}
        await client.send({"msg": "sub", "id": "1", "name": "x"})
        frame = await client.recv()
        assert frame["reason"] == "Must connect first"
        await client.connect()
        await client.send({"msg": "ping", "id": "42"})
        assert await client.recv() == {"msg": "pong", "id": "42"}


async def test_login_with_token_and_with_password_digest(server: SandboxServer, bot: UserCredentials) -> None:
    async with DDPClient.open(server.url) as client:
        await client.connect()
        result = (await client.login(bot.auth_token))["result"]
        assert result["id"] == bot.user_id and result["token"] == bot.auth_token and result["type"] == "resume"
    async with DDPClient.open(server.url) as client:
        await client.connect()
        digest = {"digest": password_digest("bot-pw"), "algorithm": "sha-256"}
        frame = await client.call("login", {"user": {"username": "bot"}, "password": digest})
        assert frame["result"]["type"] == "password" and frame["result"]["token"] != bot.auth_token
        frame = await client.call(
            "login", {"user": {"email": "bot@example.org"}, "password": {**digest, "digest": "0"}}
        )
        assert frame["error"]["error"] == 401 and frame["error"]["reason"] == "User not found"


async def test_message_posted_from_another_thread_reaches_the_subscriber(
    server: SandboxServer, bot: UserCredentials
) -> None:
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        assert (await client.sub("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []}))[
            "msg"
        ] == "ready"
        posted = await asyncio.to_thread(server.control.post_message, "alice", "general", "/integration disable Guggy")
        frame = await client.changed("__my_messages__")
        message, meta = frame["fields"]["args"]
        assert frame["collection"] == "stream-room-messages" and frame["id"] == "id"
        assert message["_id"] == posted["_id"] and message["msg"] == "/integration disable Guggy"
        assert set(message["ts"]) == {"$date"}
        assert meta == {"roomParticipant": True, "roomType": "c", "roomName": "general"}


async def test_dm_meta_has_no_room_name_and_public_non_member_rooms_are_included(
    server: SandboxServer, bot: UserCredentials
) -> None:
    dm = server.control.create_direct("alice", "bot")
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        await client.sub("stream-room-messages", "__my_messages__", False)
        for room, text in ((dm["_id"], "hi in dm"), ("random", "hi in random"), ("secret", "hi in secret")):
            await asyncio.to_thread(server.control.post_message, "alice", room, text)
        first = (await client.changed("__my_messages__"))["fields"]["args"]
        second = (await client.changed("__my_messages__"))["fields"]["args"]
        assert first[0]["msg"] == "hi in dm" and first[1] == {"roomParticipant": True, "roomType": "d"}
        assert second[0]["msg"] == "hi in random"
        assert second[1] == {"roomParticipant": False, "roomType": "c", "roomName": "random"}
        await asyncio.to_thread(server.control.post_message, "alice", "general", "marker")
        assert (await client.changed("__my_messages__"))["fields"]["args"][0]["msg"] == "marker"  # secret skipped


async def test_one_message_reaches_several_sessions_each_with_its_own_meta(
    server: SandboxServer, bot: UserCredentials
) -> None:
    """Sessions of one user get the same frame (encoded once per message, as Rocket.Chat's streamer
    does); a session of a user for whom the room's meta differs gets its own."""
    carol = server.control.create_user("carol", password="carol-pw", roles=["user"])
    async with (
        DDPClient.open(server.url) as one,
        DDPClient.open(server.url) as two,
        DDPClient.open(server.url) as other,
    ):
        for client, token in ((one, bot.auth_token), (two, bot.auth_token), (other, carol.auth_token)):
            await client.connect()
            await client.login(token)
            await client.sub("stream-room-messages", "__my_messages__", False)
        await asyncio.to_thread(server.control.post_message, "alice", "general", "for everyone")
        frames = [(await client.changed("__my_messages__"))["fields"]["args"] for client in (one, two, other)]
        assert [args[0]["msg"] for args in frames] == ["for everyone"] * 3
        assert frames[0] == frames[1]
        assert frames[0][1] == {"roomParticipant": True, "roomType": "c", "roomName": "general"}
        assert frames[2][1] == {"roomParticipant": False, "roomType": "c", "roomName": "general"}


async def test_edits_reactions_and_thread_replies_are_redelivered(server: SandboxServer, bot: UserCredentials) -> None:
    control = server.control
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        await client.sub("stream-room-messages", "GENERAL", False)
        parent = await asyncio.to_thread(control.post_message, "alice", "general", "/integration disable Guggy")
        await asyncio.to_thread(control.edit_message, parent["_id"], "/integration enable Guggy")
        await asyncio.to_thread(control.react, parent["_id"], ":eyes:", "bot")
        reply = await asyncio.to_thread(control.post_message, "alice", "general", "thanks", tmid=parent["_id"])
        seen = [(await client.changed("GENERAL"))["fields"]["args"][0] for _ in range(5)]
        assert [m["_id"] for m in seen] == [parent["_id"]] * 3 + [reply["_id"], parent["_id"]]
        assert seen[1]["msg"] == "/integration enable Guggy" and "editedAt" in seen[1]
        assert ":eyes:" in seen[2]["reactions"] and seen[2]["editedAt"] == seen[1]["editedAt"]
        assert seen[4]["tcount"] == 1


async def test_messages_from_many_threads_arrive_once_each_and_in_store_order(
    server: SandboxServer, bot: UserCredentials
) -> None:
    control = server.control
    per_thread, threads = 25, 4
    async with DDPClient.open(server.url) as a, DDPClient.open(server.url) as b:
        for client in (a, b):
            await client.connect()
            await client.login(bot.auth_token)
            await client.sub("stream-room-messages", "GENERAL", False)

        def post(worker: int) -> None:
            for i in range(per_thread):
                control.post_message("alice", "general", f"{worker}-{i}")

        workers = [threading.Thread(target=post, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        await asyncio.to_thread(lambda: [w.join() for w in workers])
        stored = [m["_id"] for m in control.messages("general")]
        for client in (a, b):
            received = [(await client.changed("GENERAL"))["fields"]["args"][0]["_id"] for _ in stored]
            assert received == stored
            with pytest.raises(TimeoutError):
                await client.changed("GENERAL", wait=0.2)


async def test_user_streams_and_logged_streams(server: SandboxServer, bot: UserCredentials) -> None:
    control = server.control
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        uid = bot.user_id
        assert (await client.sub("stream-notify-user", f"{uid}/subscriptions-changed", False))["msg"] == "ready"
        assert (await client.sub("stream-notify-user", f"{uid}/rooms-changed", False))["msg"] == "ready"
        assert (await client.sub("stream-notify-logged", "permissions-changed", False))["msg"] == "ready"
        assert (await client.sub("stream-notify-logged", "roles-change", False))["msg"] == "ready"
        assert (await client.sub("stream-notify-room", "GENERAL/deleteMessage", False))["msg"] == "ready"
        denied = await client.sub("stream-notify-user", "someone-else/rooms-changed", False)
        assert denied["msg"] == "nosub" and denied["error"]["error"] == "not-allowed"

        await asyncio.to_thread(control.add_member, "random", "bot")
        frame = await client.changed(f"{uid}/subscriptions-changed")
        assert frame["collection"] == "stream-notify-user" and frame["fields"]["args"][0] == "inserted"
        frame = await client.changed(f"{uid}/rooms-changed")
        assert frame["fields"]["args"][1]["_id"] == "RANDOM"

        await asyncio.to_thread(control.set_permission_roles, "manage-incoming-integrations", ["admin", "bot"])
        frame = await client.changed("permissions-changed")
        assert frame["fields"]["args"][0] == "updated"
        assert frame["fields"]["args"][1]["roles"] == ["admin", "bot"]

        await asyncio.to_thread(control.set_user_roles, "alice", ["user", "ops"])
        frame = await client.changed("roles-change")
        assert frame["fields"]["args"] == [
            {
                "type": "added",
                "_id": "ops",
                "u": {"_id": control.user("alice")["_id"], "username": "alice", "name": "Alice"},
            }
        ]

        message = await asyncio.to_thread(control.post_message, "alice", "general", "to be deleted")
        await asyncio.to_thread(control.delete_message, message["_id"])
        frame = await client.changed("GENERAL/deleteMessage")
        assert frame["fields"]["args"] == [{"_id": message["_id"]}]


async def test_send_message_method_and_ephemeral_failure_notice(server: SandboxServer, bot: UserCredentials) -> None:
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        await client.sub("stream-notify-user", f"{bot.user_id}/message", False)
        await client.sub("stream-room-messages", "GENERAL", False)
        frame = await client.call("sendMessage", {"rid": "GENERAL", "msg": "hello from the bot"})
        assert frame["result"]["u"]["username"] == "bot"
        event = await client.changed("GENERAL")
        assert event["fields"]["args"][0]["_id"] == frame["result"]["_id"]
        frame = await client.call("sendMessage", {"rid": "SECRET", "msg": "not allowed"})
        assert frame["error"]["error"] == "error-not-allowed"
        notice = await client.changed(f"{bot.user_id}/message")
        (message,) = notice["fields"]["args"]
        assert message["private"] is True and message["rid"] == "SECRET"
        assert message["u"]["username"] == "rocket.cat"


async def test_rooms_and_subscriptions_get(server: SandboxServer, bot: UserCredentials) -> None:
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        rooms = (await client.call("rooms/get"))["result"]
        assert [r["_id"] for r in rooms] == ["GENERAL"]
        subs = (await client.call("subscriptions/get", {"$date": 0}))["result"]
        assert [s["rid"] for s in subs["update"]] == ["GENERAL"] and subs["remove"] == []
        await asyncio.to_thread(server.control.remove_member, "general", "bot")
        subs = (await client.call("subscriptions/get", {"$date": 0}))["result"]
        assert subs["update"] == [] and len(subs["remove"]) == 1 and set(subs["remove"][0]) == {"_id", "_deletedAt"}


async def test_logout_over_the_socket_invalidates_the_token(server: SandboxServer, bot: UserCredentials) -> None:
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.login(bot.auth_token)
        assert "result" not in await client.call("logout")
        frame = await client.call("login", {"resume": bot.auth_token})
        assert frame["error"]["error"] == 401


# --- heartbeat ------------------------------------------------------------------------------------


@pytest.fixture
def fast_heartbeat() -> Iterator[SandboxServer]:
    with SandboxServer(config=SandboxConfig(heartbeat_interval=0.05, heartbeat_timeout=0.05)) as srv:
        yield srv


async def test_server_pings_a_silent_client_and_closes_it(fast_heartbeat: SandboxServer) -> None:
    async with DDPClient.open(fast_heartbeat.url) as client:
        await client.connect()
        assert await client.recv() == {"msg": "ping"}
        with pytest.raises(ConnectionClosedOK) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


@pytest.fixture
def patient_heartbeat() -> Iterator[SandboxServer]:
    # A generous timeout keeps a loaded machine from losing the race to answer; it also means a
    # server that waited for the old timeout after a pong (instead of the interval) would make
    # the client's 5 s receive below time out.
    with SandboxServer(config=SandboxConfig(heartbeat_interval=0.05, heartbeat_timeout=60)) as srv:
        yield srv


async def test_answering_pings_keeps_the_session_alive(patient_heartbeat: SandboxServer) -> None:
    server = patient_heartbeat
    creds = server.control.create_user("bot", roles=["bot"])
    async with DDPClient.open(server.url) as client:
        await client.connect()
        for _ in range(4):
            assert await client.recv() == {"msg": "ping"}
            await client.send({"msg": "pong"})
        result = await client.call("login", {"resume": creds.auth_token})
        assert result["result"]["id"] == creds.user_id


# --- counters and shutdown --------------------------------------------------------------------------


async def test_counters_see_frames_methods_and_subscriptions(server: SandboxServer, bot: UserCredentials) -> None:
    server.control.reset_counters()
    async with DDPClient.open(server.url) as client:
        await client.connect()  # 1 in, 1 out
        await client.login(bot.auth_token)  # 1 in, 3 out (added, result, updated)
        await client.sub("stream-room-messages", "GENERAL", False)  # 1 in, 1 out
        await client.call("rooms/get")  # 1 in, 2 out
    counters = server.control.counters()
    assert counters.ddp_methods == {"login": 1, "rooms/get": 1}
    assert counters.ddp_subscriptions == {"stream-room-messages": 1}
    assert (counters.ddp_frames_in, counters.ddp_frames_out, counters.ws_connections) == (4, 7, 1)


async def test_stop_closes_websockets_cleanly() -> None:
    srv = SandboxServer()
    srv.start()
    try:
        async with connect(ws_url(srv.url), ping_interval=None) as ws:
            await ws.send(json.dumps({"msg": "connect", "version": "1", "support": ["1"]}))
            await ws.recv()
            await asyncio.to_thread(srv.stop)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert not isinstance(closed.value, ConnectionClosedError)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        srv.stop()
