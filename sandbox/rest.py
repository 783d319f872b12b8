"""The sandbox's REST API: the routes the server runner mounts next to the realtime endpoint.

    routes = rest_routes(store, config)        # list[BaseRoute], mount them in your Starlette app
    app = create_rest_app(store, config)       # a Starlette app with only these routes (tests)

The last route is a catch-all for unknown `/api/v1/...` paths (404), so routes of other modules
that live under `/api/v1` must come before it. Each call builds its own `RestApi`, i.e. its own
rate-limit counters and trash; build the routes once per server.
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from sandbox import rest_integrations, rest_rooms, rest_users
from sandbox.config import SandboxConfig
from sandbox.ratelimit import MillisClock
from sandbox.restlib import Endpoint, RestApi, not_found
from sandbox.store import Store

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def endpoints() -> Iterator[Endpoint]:
    yield from rest_users.ENDPOINTS
    yield from rest_rooms.ENDPOINTS
    yield from rest_integrations.ENDPOINTS


def rest_routes(store: Store, config: SandboxConfig, *, clock_ms: MillisClock | None = None) -> list[BaseRoute]:
    """All REST routes of the sandbox. `clock_ms` (epoch milliseconds) drives the rate limiter's
    windows; tests pass a fake one instead of sleeping."""
    api = RestApi(store, config, clock_ms=clock_ms)
    return [*api.routes(endpoints()), Route("/api/v1/{path:path}", not_found, methods=_ALL_METHODS)]


def create_rest_app(store: Store, config: SandboxConfig, *, clock_ms: MillisClock | None = None) -> Starlette:
    """A Starlette app serving only the REST routes (for tests)."""
    return Starlette(routes=rest_routes(store, config, clock_ms=clock_ms))
