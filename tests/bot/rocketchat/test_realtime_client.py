"""The realtime driver over a real loopback websocket, against the fake DDP server.

Waits are event-driven (the server records frames, the client's events are collected); the
backoff sleep is injected and instant, so no test waits for a real reconnect delay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import structlog
from fake_ddp_server import FakeDDPServer, digest
from realtime_harness import Recorder, running

from bot.errors import AuthFailed, ConfigError, Unavailable
from bot.rocketchat.realtime import (
    TRANSITIONS,
    Backoff,
    Connected,
    Disconnected,
    MethodFailed,
    PasswordCredentials,
    RealtimeClient,
    RealtimeState,
    Reconnecting,
    ResumeCredentials,
    StreamEvent,
    SubscriptionEnded,
    websocket_url,
)

TOKEN = "resume-token-7Hq2"
PASSWORD = "correct horse battery staple"
BOT_ID = "botUserId01"
MY_MESSAGES = ("stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})

E = TypeVar("E")


@pytest.fixture
async def server() -> AsyncIterator[FakeDDPServer]:
    fake = FakeDDPServer(tokens={TOKEN: BOT_ID}, passwords={"bot": (BOT_ID, digest(PASSWORD))})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_client(url: str, recorder: Recorder, credentials: Any = None, **overrides: Any) -> RealtimeClient:
    options: dict[str, Any] = {
        "connect_timeout": 2.0,
        "call_timeout": 2.0,
        "heartbeat_interval": 30.0,
        "heartbeat_timeout": 30.0,
        "close_timeout": 1.0,
        "sleep": recorder.sleep,
        "random": lambda: 0.5,
    }
    options.update(overrides)
    return RealtimeClient(url, credentials or ResumeCredentials(TOKEN), **options)


def message_args(text: str, message_id: str = "m1") -> list[Any]:
    message = {
        "_id": message_id,
        "rid": "GENERAL",
        "msg": text,
        "ts": {"$date": 1717600000123},
        "u": {"_id": "aBcD1234", "username": "alice"},
        "_updatedAt": {"$date": 1717600000150},
    }
    return [message, {"roomParticipant": True, "roomType": "c", "roomName": "general"}]


# --- login and subscriptions ---


async def test_resume_login_then_subscribe_then_stream(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    client.subscribe(*MY_MESSAGES)
    async with running(client, recorder):
        await client.wait_ready(3)
        assert client.state is RealtimeState.READY
        assert client.user_id == BOT_ID
        assert await recorder.wait_for(Connected) == Connected(BOT_ID, "session-0", reconnect=False)

        assert [f["msg"] for f in server.frames()] == ["connect", "method", "sub"]
        assert server.frames("connect")[0] == {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}
        assert server.frames(method="login")[0]["params"] == [{"resume": TOKEN}]
        sub = server.frames("sub")[0]
        assert (sub["name"], sub["params"]) == (MY_MESSAGES[0], list(MY_MESSAGES[1:]))

        await server.push("stream-room-messages", "__my_messages__", message_args("/integration list"))
        event = await recorder.wait_for(StreamEvent)
        assert event.collection == "stream-room-messages"
        assert event.event_name == "__my_messages__"
        assert event.args[0]["msg"] == "/integration list"
        assert client.frames_in >= 4
        assert client.frames_out == 3


async def test_frames_are_not_compressed(server: FakeDDPServer, recorder: Recorder) -> None:
    # The fake server (websockets) would accept permessage-deflate if the client offered it.
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        [connection] = server.connections
        assert connection.ws.request is not None
        assert "Sec-WebSocket-Extensions" not in connection.ws.request.headers
        assert connection.ws.protocol.extensions == []


async def test_pending_hands_over_a_burst_already_received_in_order(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    client.subscribe(*MY_MESSAGES)
    runner = asyncio.create_task(client.run())
    events = client.events()
    try:
        assert isinstance(await anext(events), Connected)
        assert client.pending() == []
        for n in range(3):
            await server.push("stream-room-messages", "__my_messages__", message_args("/integration list", f"m{n}"))
        await client.call("echo", 1)  # its answer comes after the three messages on the same socket
        burst = [await anext(events), *client.pending()]
        assert [e.args[0]["_id"] for e in burst if isinstance(e, StreamEvent)] == ["m0", "m1", "m2"]
        assert client.pending() == []
        await client.close()
        assert client.pending() == []  # the end stays queued for `events()`, which then stops
        assert [e async for e in events] == []
    finally:
        await client.close()
        await asyncio.gather(runner, return_exceptions=True)


async def test_password_login_sends_the_digest_never_the_password(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder, PasswordCredentials(PASSWORD, username="bot"))
    async with running(client, recorder):
        await client.wait_ready(3)
        [login] = server.frames(method="login")
        assert login["params"] == [
            {"user": {"username": "bot"}, "password": {"digest": digest(PASSWORD), "algorithm": "sha-256"}}
        ]
        assert not any(PASSWORD in text for text in server.raw_texts())
        assert client.user_id == BOT_ID


async def test_password_login_resumes_with_the_issued_token_after_a_drop(
    server: FakeDDPServer, recorder: Recorder
) -> None:
    client = make_client(server.url, recorder, PasswordCredentials(PASSWORD, username="bot"))
    async with running(client, recorder):
        await client.wait_ready(3)
        issued = server.issued_tokens[0]
        await server.drop_all()
        await recorder.wait_for(Connected, 2)
        logins = [f["params"][0] for f in server.frames(method="login")]
        assert logins[1] == {"resume": issued}
        # The server forgot that token (logged out elsewhere): fall back to the password digest.
        server.tokens.clear()
        await server.drop_all()
        await recorder.wait_for(Connected, 3)
        logins = [f["params"][0] for f in server.frames(method="login")]
        assert logins[2] == {"resume": server.issued_tokens[1]}
        assert logins[3]["password"] == {"digest": digest(PASSWORD), "algorithm": "sha-256"}
        assert client.state is RealtimeState.READY


async def test_subscriptions_are_replayed_after_a_drop(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    client.subscribe(*MY_MESSAGES)
    client.subscribe("stream-notify-logged", "permissions-changed", False)
    async with running(client, recorder):
        await client.wait_ready(3)
        await server.drop_all()
        reconnected = await recorder.wait_for(Connected, 2)
        assert reconnected == Connected(BOT_ID, "session-1", reconnect=True)
        kinds = [type(e) for e in recorder.events]
        assert kinds == [Connected, Disconnected, Reconnecting, Connected]
        assert client.reconnects == 1

        second = server.connections[1]
        assert [f["msg"] for f in second.frames] == ["connect", "method", "sub", "sub"]
        assert second.frames[1]["params"] == [{"resume": TOKEN}]
        assert [f["name"] for f in second.frames[2:]] == ["stream-room-messages", "stream-notify-logged"]

        await server.push("stream-notify-logged", "permissions-changed", ["updated", {"_id": "x", "roles": []}])
        event = await recorder.wait_for(StreamEvent)
        assert event.event_name == "permissions-changed"


async def test_a_clean_server_close_also_reconnects(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        await server.drop_all(abrupt=False)
        disconnected = await recorder.wait_for(Disconnected)
        assert disconnected.reason == "closed by the server (code 1011, dropped by the test)"
        await recorder.wait_for(Connected, 2)


async def test_subscribe_while_ready_goes_back_to_subscribing(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        client.subscribe(*MY_MESSAGES)
        assert client.state is RealtimeState.SUBSCRIBING
        await client.wait_ready(3)
        assert server.frames("sub")[0]["name"] == "stream-room-messages"
        assert len(recorder.of(Connected)) == 1  # not a new session


async def test_unsubscribe_ends_it_and_it_is_not_replayed(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    kept = client.subscribe(*MY_MESSAGES)
    dropped = client.subscribe("stream-notify-logged", "roles-change", False)
    async with running(client, recorder):
        await client.wait_ready(3)
        client.unsubscribe(dropped)
        await server.wait_for(lambda: len(server.frames("unsub")) == 1)
        assert client.subscriptions == (kept,)
        await server.drop_all()
        await recorder.wait_for(Connected, 2)
        assert [f["name"] for f in server.connections[1].frames if f["msg"] == "sub"] == ["stream-room-messages"]


async def test_refused_subscription_is_reported_and_dropped(server: FakeDDPServer, recorder: Recorder) -> None:
    server.refused_subs.add("stream-notify-user")
    client = make_client(server.url, recorder)
    client.subscribe(*MY_MESSAGES)
    refused = client.subscribe("stream-notify-user", "someone-else/rooms-changed", False)
    async with running(client, recorder):
        await client.wait_ready(3)
        ended = await recorder.wait_for(SubscriptionEnded)
        assert ended.subscription is refused
        assert ended.error == "not-allowed"
        assert refused not in client.subscriptions
        await server.drop_all()
        await recorder.wait_for(Connected, 2)
        assert len(server.connections[1].frames) == 3  # connect, login, one sub


def test_subscribe_refuses_params_that_are_not_json() -> None:
    client = RealtimeClient("ws://127.0.0.1:9/websocket", ResumeCredentials(TOKEN))
    with pytest.raises(TypeError):
        client.subscribe("stream-room-messages", object())
    assert client.subscriptions == ()


# --- fatal and transient login failures ---


async def test_refused_login_is_fatal(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder, ResumeCredentials("revoked-token"))
    collector = asyncio.create_task(recorder.collect(client))
    with pytest.raises(AuthFailed, match="User not found"):
        await asyncio.wait_for(client.run(), 3)
    await asyncio.wait_for(collector, 3)  # the event stream ends too
    assert client.state is RealtimeState.CLOSED
    assert recorder.of(Reconnecting) == []
    assert len(server.connections) == 1
    with pytest.raises(AuthFailed):
        await client.wait_ready(1)


async def test_refused_password_is_fatal(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder, PasswordCredentials("wrong", username="bot"))
    with pytest.raises(AuthFailed):
        await asyncio.wait_for(client.run(), 3)


async def test_login_refused_on_reconnect_is_fatal(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    collector = asyncio.create_task(recorder.collect(client))
    runner = asyncio.create_task(client.run())
    await client.wait_ready(3)
    server.tokens.clear()  # the token was revoked while we were connected
    await server.drop_all()
    with pytest.raises(AuthFailed):
        await asyncio.wait_for(runner, 3)
    await asyncio.wait_for(collector, 3)
    assert [type(e) for e in recorder.events] == [Connected, Disconnected, Reconnecting]


async def test_rate_limited_login_is_retried_after_the_servers_wait(server: FakeDDPServer, recorder: Recorder) -> None:
    server.rate_limited_logins = 1
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        assert "login temporarily refused: slow down" in (await recorder.wait_for(Disconnected)).reason
        assert recorder.delays == [1.5]  # timeToReset beats the (smaller) backoff delay
        assert len(server.frames(method="login")) == 2


# --- backoff ---


def test_backoff_ceiling_grows_exponentially_and_caps() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, multiplier=2.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert backoff.ceiling(100_000) == 4.0


def test_backoff_is_full_jitter() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    assert backoff.delay(3, lambda: 0.0) == 0.0
    assert backoff.delay(3, lambda: 0.25) == 1.0
    assert backoff.delay(3, lambda: 0.999) == pytest.approx(3.996)


@pytest.mark.parametrize(
    "options",
    [{"initial": 0}, {"initial": 2, "maximum": 1}, {"multiplier": 0.5}, {"reset_after": -1}],
)
def test_backoff_refuses_nonsense(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**options)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/websocket"


async def test_unreachable_server_backs_off_with_growing_capped_jittered_delays(recorder: Recorder) -> None:
    draws = iter([1.0, 0.5, 1.0, 0.25, 1.0, 1.0, 0.1])
    client = make_client(
        closed_port_url(), recorder, backoff=Backoff(initial=0.5, maximum=4.0), random=lambda: next(draws)
    )
    async with running(client, recorder):
        await recorder.wait_for(Reconnecting, 7)
    attempts = [(e.attempt, e.delay) for e in recorder.of(Reconnecting)[:7]]
    assert attempts == [(1, 0.5), (2, 0.5), (3, 2.0), (4, 1.0), (5, 4.0), (6, 4.0), (7, 0.4)]
    assert recorder.delays[:7] == [0.5, 0.5, 2.0, 1.0, 4.0, 4.0, 0.4]
    assert recorder.of(Connected) == []
    assert recorder.of(Disconnected) == []  # never connected, so nothing was lost


async def test_attempts_reset_only_after_a_stable_session(server: FakeDDPServer, recorder: Recorder) -> None:
    now = [0.0]
    client = make_client(server.url, recorder, backoff=Backoff(reset_after=60.0), clock=lambda: now[0])
    async with running(client, recorder):
        await client.wait_ready(3)
        await server.drop_all()
        await recorder.wait_for(Connected, 2)
        await server.drop_all()  # flapping: dropped again right after becoming ready
        await recorder.wait_for(Connected, 3)
        now[0] += 61.0  # this session stays up for a while
        await server.drop_all()
        await recorder.wait_for(Connected, 4)
    assert [e.attempt for e in recorder.of(Reconnecting)] == [1, 2, 1]


async def test_a_server_that_never_answers_connect_is_retried(server: FakeDDPServer, recorder: Recorder) -> None:
    server.answer_connect = False
    client = make_client(server.url, recorder, connect_timeout=0.2)
    async with running(client, recorder):
        disconnected = await recorder.wait_for(Disconnected)
        assert "no DDP session" in disconnected.reason
        server.answer_connect = True
        await client.wait_ready(3)


async def test_a_server_refusing_our_ddp_version_is_retried(server: FakeDDPServer, recorder: Recorder) -> None:
    server.refuse_version = True
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        disconnected = await recorder.wait_for(Disconnected)
        assert "DDP version" in disconnected.reason
        server.refuse_version = False
        await client.wait_ready(3)


# --- keepalive ---


async def test_server_ping_is_answered(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        await server.send({"msg": "ping", "id": "srv-1"})
        await server.wait_for(lambda: {"msg": "pong", "id": "srv-1"} in server.frames("pong"))
        await server.send({"msg": "ping"})
        await server.wait_for(lambda: {"msg": "pong"} in server.frames("pong"))


async def test_client_pings_a_quiet_server_and_keeps_a_live_one(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder, heartbeat_interval=0.05, heartbeat_timeout=1.0)
    async with running(client, recorder):
        await client.wait_ready(3)
        await server.wait_for(lambda: len(server.frames("ping")) >= 3)
        assert client.state is RealtimeState.READY
        assert recorder.of(Disconnected) == []


async def test_missing_pong_means_a_dead_connection(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder, heartbeat_interval=0.05, heartbeat_timeout=0.1)
    async with running(client, recorder):
        await client.wait_ready(3)
        server.connections[0].silent = True  # a hung server: TCP is up, nothing answers
        disconnected = await recorder.wait_for(Disconnected)
        assert "no answer to ping" in disconnected.reason
        assert server.connections[0].frames[-1]["msg"] == "ping"
        assert await recorder.wait_for(Connected, 2) == Connected(BOT_ID, "session-1", reconnect=True)


# --- calls ---


async def test_call_returns_the_result(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        assert await client.call("echo", {"a": 1}, "b") == [{"a": 1}, "b"]


async def test_call_error_is_a_method_failed(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        with pytest.raises(MethodFailed, match="Invalid room") as caught:
            await client.call("fail")
        assert (caught.value.error, caught.value.endpoint) == ("error-invalid-room", "ddp:fail")
        with pytest.raises(MethodFailed) as unknown:
            await client.call("no-such-method")
        assert unknown.value.error == 404


async def test_call_before_connecting_is_unavailable(recorder: Recorder) -> None:
    client = make_client(closed_port_url(), recorder)
    with pytest.raises(Unavailable, match="not connected"):
        await client.call("echo")


async def test_call_timeout_is_unavailable_and_a_late_answer_is_harmless(
    server: FakeDDPServer, recorder: Recorder
) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        with pytest.raises(Unavailable, match=r"no answer within 0\.05s"):
            await client.call("held", timeout=0.05)
        await server.release_held("late")
        # Frames arrive in order, so the late result has been handled once the echo comes back.
        assert await client.call("echo", 1) == [1]
        assert client.state is RealtimeState.READY
        assert recorder.of(Disconnected) == []


async def test_call_in_flight_when_the_connection_drops(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        pending = asyncio.create_task(client.call("never", timeout=5))
        await server.wait_for(lambda: len(server.frames(method="never")) == 1)
        await server.drop_all()
        with pytest.raises(Unavailable, match="connection lost"):
            await pending
        await recorder.wait_for(Connected, 2)
        assert len(server.frames(method="never")) == 1  # never re-sent: the server may have run it


async def test_call_while_reconnecting_is_unavailable(server: FakeDDPServer, recorder: Recorder) -> None:
    resume = asyncio.Event()

    async def held_sleep(delay: float) -> None:
        recorder.delays.append(delay)
        await resume.wait()

    client = make_client(server.url, recorder, sleep=held_sleep)
    async with running(client, recorder):
        await client.wait_ready(3)
        await server.drop_all()
        await recorder.wait_for(Reconnecting)
        assert client.state is RealtimeState.DISCONNECTED
        with pytest.raises(Unavailable, match="echo: not connected"):
            await client.call("echo", 1)
        resume.set()
        await client.wait_ready(3)
        assert await client.call("echo", 1) == [1]


# --- robustness ---


async def test_unexpected_frames_never_crash_the_driver(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    client.subscribe(*MY_MESSAGES)
    async with running(client, recorder):
        await client.wait_ready(3)
        garbage: list[str | bytes] = [
            "not json",
            "[1,2,3]",
            "null",
            '{"server_id":"0"}',
            '{"msg":"teapot"}',
            '{"msg":"connected","session":"again"}',
            '{"msg":"result","id":"999","result":1}',
            '{"msg":"ready","subs":["nope"]}',
            '{"msg":"nosub","id":"nope"}',
            '{"msg":"changed","collection":"stream-room-messages"}',
            '{"msg":"error","reason":"Bad request"}',
            '{"msg":"added","collection":"users","id":"u1","fields":{"username":"x"}}',
            b"\x00\x01binary",
        ]
        for item in garbage:
            await server.send_raw(item)
        await server.push("stream-room-messages", "__my_messages__", message_args("still here"))
        event = await recorder.wait_for(StreamEvent)
        assert event.args[0]["msg"] == "still here"
        assert client.state is RealtimeState.READY
        assert client.unexpected_frames == 10  # everything except the welcome, the error and the document
        assert await client.call("echo", "ok") == ["ok"]
        assert recorder.of(Disconnected) == []


async def test_close_is_clean_and_final(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    collector = asyncio.create_task(recorder.collect(client))
    runner = asyncio.create_task(client.run())
    await client.wait_ready(3)
    await client.close()
    assert await asyncio.wait_for(runner, 3) is None
    await asyncio.wait_for(collector, 3)  # events() ended
    assert client.state is RealtimeState.CLOSED
    await server.wait_for(lambda: server.connections[0].ws.close_code is not None)
    assert server.connections[0].ws.close_code == 1000
    assert [type(e) for e in recorder.events] == [Connected]  # no Disconnected/Reconnecting on purpose
    await client.close()  # idempotent
    with pytest.raises(Unavailable):
        await client.call("echo")
    with pytest.raises(Unavailable, match="closed"):
        await client.wait_ready(1)
    await client.run()  # returns at once: closed is final
    assert len(server.connections) == 1


async def test_close_during_backoff_returns_promptly(recorder: Recorder) -> None:
    async def forever(delay: float) -> None:
        recorder.delays.append(delay)
        await asyncio.Event().wait()

    client = make_client(closed_port_url(), recorder, sleep=forever)
    runner = asyncio.create_task(client.run())
    collector = asyncio.create_task(recorder.collect(client))
    await recorder.wait_for(Reconnecting)
    await client.close()
    assert await asyncio.wait_for(runner, 3) is None
    await asyncio.wait_for(collector, 3)


async def test_close_before_run(recorder: Recorder) -> None:
    client = make_client(closed_port_url(), recorder)
    await client.close()
    assert client.state is RealtimeState.CLOSED
    await asyncio.wait_for(client.run(), 1)
    assert [e async for e in client.events()] == []


async def test_wait_ready_times_out_with_our_error(recorder: Recorder) -> None:
    client = make_client(closed_port_url(), recorder)
    async with running(client, recorder):
        with pytest.raises(Unavailable, match=r"not ready within 0\.05s"):
            await client.wait_ready(0.05)


async def test_run_twice_at_once_is_a_bug(server: FakeDDPServer, recorder: Recorder) -> None:
    client = make_client(server.url, recorder)
    async with running(client, recorder):
        await client.wait_ready(3)
        with pytest.raises(RuntimeError, match="already running"):
            await client.run()


async def test_an_invalid_url_is_a_config_error(recorder: Recorder) -> None:
    client = make_client("http://example.org/websocket", recorder)
    with pytest.raises(ConfigError):
        await asyncio.wait_for(client.run(), 3)


# --- secrets ---


@pytest.mark.parametrize("use_password", [False, True])
async def test_no_secret_reaches_the_logs(
    server: FakeDDPServer, recorder: Recorder, caplog: pytest.LogCaptureFixture, use_password: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = PasswordCredentials(PASSWORD, username="bot") if use_password else ResumeCredentials(TOKEN)
    client = make_client(server.url, recorder, credentials)
    client.subscribe(*MY_MESSAGES)
    with structlog.testing.capture_logs() as structured:
        async with running(client, recorder):
            await client.wait_ready(3)
            await server.drop_all()
            await recorder.wait_for(Connected, 2)
            await server.send({"msg": "error", "reason": "x", "offendingMessage": server.frames(method="login")[0]})
            await client.call("echo", 1)
    secrets = [TOKEN, PASSWORD, digest(PASSWORD), *server.issued_tokens]
    text = caplog.text + json.dumps(structured, default=str) + repr(credentials) + repr(recorder.events)
    assert structured  # something was logged, so the check below means something
    for secret in secrets:
        assert secret not in text


def test_credentials_hide_their_secrets() -> None:
    assert TOKEN not in repr(ResumeCredentials(TOKEN))
    assert PASSWORD not in repr(PasswordCredentials(PASSWORD, email="bot@example.org"))
    with pytest.raises(ValueError, match="exactly one"):
        PasswordCredentials(PASSWORD)


# --- small pieces ---


@pytest.mark.parametrize(
    ("server_url", "expected"),
    [
        ("https://chat.example.org", "wss://chat.example.org/websocket"),
        ("http://127.0.0.1:3000/", "ws://127.0.0.1:3000/websocket"),
        ("https://example.org/chat", "wss://example.org/chat/websocket"),
        ("wss://example.org/websocket", "wss://example.org/websocket"),
    ],
)
def test_websocket_url(server_url: str, expected: str) -> None:
    assert websocket_url(server_url) == expected


def test_websocket_url_refuses_other_schemes() -> None:
    with pytest.raises(ConfigError):
        websocket_url("ftp://example.org")


def test_lifecycle_table() -> None:
    assert TRANSITIONS[RealtimeState.CLOSED] == frozenset()
    assert all(
        RealtimeState.CLOSED in targets for state, targets in TRANSITIONS.items() if state is not RealtimeState.CLOSED
    )
    # Readiness is only reached by logging in and subscribing, in that order.
    assert RealtimeState.READY in TRANSITIONS[RealtimeState.SUBSCRIBING]
    assert not any(RealtimeState.READY in TRANSITIONS[s] for s in (RealtimeState.CONNECTING, RealtimeState.LOGGING_IN))
    assert RealtimeState.SUBSCRIBING not in TRANSITIONS[RealtimeState.CONNECTING]
