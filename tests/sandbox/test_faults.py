"""Fault injection: the state object, the ASGI middleware, and the faults as a client sees them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from ddp_test_client import DDPClient, ws_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from sandbox.control import UserCredentials
from sandbox.faults import Counters, FaultMiddleware, Faults, endpoint_name
from sandbox.server import SandboxServer


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/integrations.update", "integrations.update"),
        ("/api/v1/integrations.update/", "integrations.update"),
        ("/api/info", "info"),
        ("/hooks/665f1c2e9b1e8a0012345678/secret-token", "hooks"),
        ("/websocket", "websocket"),
        ("/", "/"),
    ],
)
def test_endpoint_names(path: str, name: str) -> None:
    assert endpoint_name(path) == name


def test_failures_are_consumed_in_order_and_per_endpoint() -> None:
    faults = Faults()
    faults.fail_next("integrations.update", 2, "500")
    faults.fail_next("integrations.update", 1, "429", retry_after=3)
    faults.fail_next("ddp:login", 1, "timeout", hang=0.5)
    modes = [getattr(faults.take_failure("integrations.update"), "mode", None) for _ in range(4)]
    assert modes == ["500", "500", "429", None]
    failure = faults.take_failure("ddp:login")
    assert failure is not None and failure.mode == "timeout" and failure.hang == 0.5
    assert faults.take_failure("login") is None  # REST login is another endpoint


def test_bad_fault_arguments_are_refused() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="mode"):
        faults.fail_next("x", 1, "404")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        faults.fail_next("x", 0)
    with pytest.raises(ValueError, match="latency"):
        faults.set_latency(-1)
    with pytest.raises(ValueError, match="concerning"):
        faults.fail_next("x", 1, concerning="")


def test_latency_global_plus_per_endpoint_and_removal() -> None:
    faults = Faults()
    faults.set_latency(0.5)
    faults.set_latency(0.25, "integrations.get")
    assert faults.latency("integrations.get") == 0.75
    assert faults.latency("integrations.list") == 0.5
    faults.set_latency(0, None)
    assert faults.latency("integrations.get") == 0.25
    faults.clear()
    assert faults.latency("integrations.get") == 0.0


def test_refusal_window_follows_the_clock() -> None:
    clock = FakeMonotonic()
    faults = Faults(monotonic=clock)
    assert not faults.refusing()
    faults.refuse_connections(5)
    assert faults.refusing()
    clock.now += 5
    assert not faults.refusing()
    faults.refuse_connections(5)
    faults.refuse_connections(0)
    assert not faults.refusing()


def test_counters_snapshot_roundtrip_and_reset() -> None:
    faults = Faults()
    faults.count_rest("integrations.update")
    faults.count_rest("integrations.update")
    faults.count_ddp_method("login")
    faults.count_ddp_subscription("stream-room-messages")
    faults.count_frames(received=3, sent=5)
    faults.count_ws_connection()
    snapshot = faults.counters()
    assert snapshot == Counters(
        rest={"integrations.update": 2},
        ddp_methods={"login": 1},
        ddp_subscriptions={"stream-room-messages": 1},
        ddp_frames_in=3,
        ddp_frames_out=5,
        ws_connections=1,
    )
    assert Counters.from_json(snapshot.to_json()) == snapshot
    faults.reset_counters()
    assert faults.counters() == Counters({}, {}, {}, 0, 0, 0)


# --- the middleware in front of a plain app (no sockets) ---------------------------------------------


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"success": True, "path": request.url.path})


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def client(faults: Faults) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/{path:path}", _ok, methods=["GET", "POST", "PUT"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=FaultMiddleware(app, faults)), base_url="http://sb")


async def test_500_fault_then_normal_again(faults: Faults, client: httpx.AsyncClient) -> None:
    faults.fail_next("integrations.update")
    response = await client.put("/api/v1/integrations.update", json={})
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "Internal server error"}
    response = await client.put("/api/v1/integrations.update", json={})
    assert response.status_code == 200 and response.json()["success"] is True
    assert faults.counters().rest == {"integrations.update": 2}


async def test_a_fault_concerning_one_integration_spares_the_others(faults: Faults, client: httpx.AsyncClient) -> None:
    faults.fail_next("integrations.update", 2, concerning="hook-b")
    faults.fail_next("integrations.get", 1, concerning="hook-b")
    statuses = [
        (await client.put("/api/v1/integrations.update", json={"integrationId": hook})).status_code
        for hook in ("hook-a", "hook-b", "hook-a", "hook-b", "hook-b")
    ]
    assert statuses == [200, 500, 200, 500, 200]
    gets = [
        (await client.get("/api/v1/integrations.get", params={"integrationId": hook})).status_code
        for hook in ("hook-a", "hook-b", "hook-b")
    ]
    assert gets == [200, 500, 200]


async def test_429_fault_has_the_rate_limiter_body_and_headers(faults: Faults, client: httpx.AsyncClient) -> None:
    faults.fail_next("integrations.list", mode="429", retry_after=2.5)
    before_ms = int(time.time() * 1000)
    response = await client.get("/api/v1/integrations.list")
    assert response.status_code == 429
    assert response.json() == {
        "success": False,
        "error": "Error, too many requests. Please slow down. You must wait 3 seconds before trying this "
        "endpoint again. [error-too-many-requests]",
    }
    assert response.headers["x-ratelimit-limit"] == "10"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-reset"]) >= before_ms + 2500


async def test_refusal_answers_503_but_not_the_control_api(faults: Faults, client: httpx.AsyncClient) -> None:
    faults.refuse_connections(60)
    response = await client.get("/api/info")
    assert response.status_code == 503
    assert response.json() == {"success": False, "error": "Service Unavailable"}
    assert (await client.post("/_sandbox/counters")).status_code == 200
    faults.refuse_connections(0)
    assert (await client.get("/api/info")).status_code == 200
    assert faults.counters().rest == {"info": 2}  # the control API is never counted


async def test_latency_delays_before_the_handler(
    faults: Faults, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("sandbox.faults.asyncio.sleep", fake_sleep)
    faults.set_latency(0.2)
    faults.set_latency(0.3, "integrations.get")
    await client.get("/api/v1/integrations.get")
    await client.get("/api/v1/integrations.list")
    assert slept == [pytest.approx(0.5), pytest.approx(0.2)]


# --- faults as seen over real sockets -----------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as srv:
        yield srv


@pytest.fixture
def bot(server: SandboxServer) -> UserCredentials:
    server.control.create_room("general", room_id="GENERAL")
    creds = server.control.create_user("bot", roles=["bot"])
    server.control.add_member("general", "bot")
    return creds


def test_rest_timeout_holds_until_the_client_gives_up(server: SandboxServer) -> None:
    server.control.fail_next("integrations.get", mode="timeout", hang=30)
    with httpx.Client(base_url=server.url, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get("/api/v1/integrations.get")
        assert http.get("/api/v1/integrations.get").status_code != 500  # the fault was used once


def test_rest_timeout_drops_the_connection_after_the_bound(server: SandboxServer) -> None:
    server.control.fail_next("integrations.get", mode="timeout", hang=0.1)
    with httpx.Client(base_url=server.url, timeout=10) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get("/api/v1/integrations.get")


def test_refusing_connections_over_http_and_websocket(server: SandboxServer) -> None:
    server.control.refuse_connections(30)
    with httpx.Client(base_url=server.url, timeout=5) as http:
        response = http.get("/api/v1/me")
        assert response.status_code == 503
        assert response.json() == {"success": False, "error": "Service Unavailable"}

    async def handshake() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server.url), open_timeout=5):
                pass
        return refused.value.response.status_code

    assert asyncio.run(handshake()) == 503
    server.control.refuse_connections(0)

    async def works() -> str:
        async with DDPClient.open(server.url) as client:
            return await client.connect()

    assert asyncio.run(works())


async def test_drop_connections_looks_like_a_network_failure(server: SandboxServer, bot: UserCredentials) -> None:
    async with DDPClient.open(server.url) as first, DDPClient.open(server.url) as second:
        await first.connect()
        await second.connect()
        assert await asyncio.to_thread(server.control.drop_connections) == 2
        for client in (first, second):
            with pytest.raises(ConnectionClosedError) as closed:
                await client.recv()
            assert closed.value.rcvd is None and closed.value.sent is None  # no close frame either way
    async with DDPClient.open(server.url) as again:  # the server itself is fine
        await again.connect()
        await again.login(bot.auth_token)


async def test_ddp_method_faults(server: SandboxServer, bot: UserCredentials) -> None:
    control = server.control
    async with DDPClient.open(server.url) as client:
        await client.connect()
        control.fail_next("ddp:login", mode="500")
        frame = await client.call("login", {"resume": bot.auth_token})
        assert frame["error"]["error"] == 500 and frame["error"]["reason"] == "Internal server error"
        control.fail_next("ddp:login", mode="429", retry_after=2)
        frame = await client.call("login", {"resume": bot.auth_token})
        assert frame["error"]["error"] == "too-many-requests"
        assert frame["error"]["details"] == {"timeToReset": 2000}
        assert (await client.login(bot.auth_token))["result"]["id"] == bot.user_id
    assert control.counters().ddp_methods == {"login": 3}


async def test_ddp_timeout_never_answers_and_then_drops(server: SandboxServer, bot: UserCredentials) -> None:
    server.control.fail_next("ddp:rooms/get", mode="timeout", hang=0.2)
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.send({"msg": "method", "method": "rooms/get", "id": "1", "params": []})
        with pytest.raises(ConnectionClosedError) as closed:
            await client.recv()
        assert closed.value.rcvd is None


async def test_ddp_latency_delays_methods_but_not_pings(server: SandboxServer, bot: UserCredentials) -> None:
    server.control.set_latency(0.5, "ddp:rooms/get")
    async with DDPClient.open(server.url) as client:
        await client.connect()
        await client.send({"msg": "method", "method": "rooms/get", "id": "1", "params": []})
        await client.send({"msg": "ping", "id": "p"})
        assert await client.recv() == {"msg": "pong", "id": "p"}
        assert (await client.recv())["msg"] == "result"
