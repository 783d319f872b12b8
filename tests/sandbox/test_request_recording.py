"""Request recording: the sandbox keeps the bodies a client sent, only when and where asked."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.control import SandboxClient
from sandbox.faults import FaultMiddleware, Faults
from sandbox.server import SandboxServer


async def _echo(request: Request) -> JSONResponse:
    # The handler must still see the whole body after the middleware read it.
    return JSONResponse({"received": (await request.body()).decode()})


def _client(faults: Faults) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/{path:path}", _echo, methods=["GET", "POST", "PUT"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=FaultMiddleware(app, faults)), base_url="http://sb")


async def test_nothing_is_recorded_by_default() -> None:
    faults = Faults()
    async with _client(faults) as client:
        await client.post("/api/v1/chat.sendMessage", json={"message": {"rid": "r", "msg": "hi"}})
    assert faults.recorded_requests("chat.sendMessage") == []


async def test_chosen_endpoints_keep_their_bodies_and_the_app_still_gets_them() -> None:
    faults = Faults()
    faults.record_requests(["chat.sendMessage", "integrations.update"])
    body = {"message": {"rid": "r", "msg": "ünïcode @all"}}
    async with _client(faults) as client:
        answer = await client.post("/api/v1/chat.sendMessage", json=body)
        await client.put("/api/v1/integrations.update", content=b"not json")
        await client.post("/api/v1/chat.postMessage", json={"ignored": True})
        await client.get("/api/v1/integrations.update")  # no body: nothing kept
    assert answer.json() == {"received": httpx.Request("POST", "/", json=body).content.decode()}
    assert faults.recorded_requests("chat.sendMessage") == [body]
    assert faults.recorded_requests("integrations.update") == ["not json"]
    assert faults.recorded_requests("chat.postMessage") == []


async def test_recorded_bodies_are_copies_and_a_new_selection_starts_afresh() -> None:
    faults = Faults()
    faults.record_requests(["integrations.update"])
    async with _client(faults) as client:
        await client.put("/api/v1/integrations.update", json={"enabled": False})
        faults.recorded_requests("integrations.update")[0]["enabled"] = True
        assert faults.recorded_requests("integrations.update") == [{"enabled": False}]
        faults.record_requests([])
        await client.put("/api/v1/integrations.update", json={"enabled": True})
    assert faults.recorded_requests("integrations.update") == []


async def test_a_refused_request_is_still_recorded() -> None:
    faults = Faults()
    faults.record_requests(["integrations.update"])
    faults.refuse_connections(60)
    async with _client(faults) as client:
        response = await client.put("/api/v1/integrations.update", json={"enabled": False})
    assert response.status_code == 503
    assert faults.recorded_requests("integrations.update") == [{"enabled": False}]


def test_recording_over_the_http_control_api() -> None:
    with SandboxServer() as server, SandboxClient(server.url, server.control_secret) as remote:
        remote.record_requests(["login"])
        with httpx.Client(base_url=server.url) as http:
            http.post("/api/v1/login", json={"user": "nobody", "password": "wrong"})
        assert remote.recorded_requests("login") == [{"user": "nobody", "password": "wrong"}]
        assert server.control.recorded_requests("login") == remote.recorded_requests("login")
