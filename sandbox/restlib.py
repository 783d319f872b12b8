"""Rocket.Chat's REST wrapper (`APIClass`) for the sandbox: one place for the request pipeline,
the response envelopes and the error-to-status mapping that every endpoint shares.

Theory of operation
-------------------
Every route of the real server runs the same wrapper around its handler (contract §1.3/§1.4,
`apps/meteor/app/api/server/ApiClass.ts`), in this order:

1. *typed* routes (`API.v1.get/post(..., {query|body: validator})`) are validated by the HTTP
   router before anything else; failures answer 400 without the ` [invalid-params]` suffix
   (`errorType` "invalid-params" for bodies, "error-invalid-params" for queries);
2. authentication from `X-User-Id` + `X-Auth-Token` (401 "You must be logged in to do this.");
3. the rate limiter (§1.5; `X-RateLimit-*` headers on every response it applies to);
4. *legacy* routes (`addRoute(..., {validateParams})`) validate the query (GET) or the body
   (other methods) and throw `Meteor.Error('invalid-params', <messages>)`;
5. route-level permissions (`permissionsRequired`, any-of): 403 "User does not have the
   permissions required for this action [error-unauthorized]";
6. the handler. Whatever it throws is mapped by `render_error` exactly like the `catch` of the
   real wrapper (429 / 403 / 400 with `"<reason> [<code>]"`, `errorType`, `details`).

Validation coercion follows `config.update_mode`: "8.x" compiles request schemas with
`coerceTypes` (bodies) and `coerceTypes: "array"` (queries), "legacy" with a plain `new Ajv()`.
Coerced values replace the request's values, as ajv rewrites the validated object in place.

Handlers are small async functions that receive a `Call` and return the success payload (the
wrapper adds `success: true`) or raise `SandboxError`s. Dates in payloads are rendered as ISO
strings (REST form); integral floats as integers, as JavaScript prints them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.config import SandboxConfig
from sandbox.docsort import SortSpec
from sandbox.errors import MeteorError, PlainError, SandboxError
from sandbox.ids import iso
from sandbox.jsvalues import js_parse_int
from sandbox.ratelimit import Decision, MillisClock, RateLimiter, wall_clock_ms
from sandbox.store import Store, User
from sandbox.trash import Trash
from sandbox.validation import Coercion, validate

log = logging.getLogger(__name__)

NOT_LOGGED_IN: Final = "You must be logged in to do this."
NO_ROUTE_PERMISSION: Final = "User does not have the permissions required for this action"


class ApiFailure(SandboxError):
    """`API.v1.failure(text, errorType?)` returned by a handler: 400 without the `[code]` suffix.
    `text=None` is `API.v1.failure()`, whose body is only `{"success": false}`."""

    def __init__(self, text: str | None = None, error_type: str | None = None) -> None:
        self.text = text
        self.error_type = error_type
        super().__init__(text or "failure")


# --- rendering ----------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A stored value in REST JSON form: ISO dates, integral floats as ints (one JS number type)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(to_json(body), status_code=status, headers=dict(headers or {}))


def render_error(exc: SandboxError) -> tuple[int, dict[str, Any]]:
    """The `catch` of Rocket.Chat's route wrapper (breaking-change flag off, contract §1.3)."""
    if isinstance(exc, PlainError):
        return 400, {"success": False, "error": exc.text}
    if isinstance(exc, ApiFailure):
        body: dict[str, Any] = {"success": False}
        if exc.text is not None:
            body["error"] = exc.text
        if exc.error_type:
            body["errorType"] = exc.error_type
        return 400, body
    if isinstance(exc, MeteorError):
        if exc.error == "error-too-many-requests":
            return 429, {"success": False, "error": exc.message}
        if exc.error in ("unauthorized", "error-unauthorized"):
            return 403, {"success": False, "error": exc.message}
        body = {"success": False, "error": exc.message}
        if exc.error:
            body["errorType"] = exc.error
        if exc.details:
            body["details"] = _parse_details(exc.details)
        return 400, body
    return 500, {"success": False, "error": "Internal server error"}


def _parse_details(details: Any) -> Any:
    if isinstance(details, str):
        try:
            return json.loads(details)
        except ValueError:
            return details
    return details


# --- request parsing ---------------------------------------------------------------------------------


def query_params(request: Request) -> dict[str, Any]:
    """Query parameters as Express/qs parses them: a repeated key becomes an array."""
    params: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            existing = params[key]
            params[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            params[key] = value
    return params


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JSON.parse rejects NaN/Infinity


async def body_params(request: Request) -> Any:
    """The parsed body; an empty or unparsable body is `{}` as in Rocket.Chat's router."""
    raw = await request.body()
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return {}


def client_ip(request: Request) -> str:
    """`getRequestIP`: `x-real-ip` first, else the socket's address (HTTP_FORWARDED_COUNT=0)."""
    real_ip = request.headers.get("x-real-ip")
    if real_ip:
        return real_ip
    return request.client.host if request.client is not None else ""


# --- pagination and sorting (`getPaginationItems`, `parseJsonQuery`) ---------------------------------


@dataclass(frozen=True)
class Page:
    offset: int
    count: int | None  # None: no limit


def pagination(store: Store, params: Mapping[str, Any]) -> Page:
    """Rocket.Chat's `getPaginationItems` over the API_* settings (contract §2.2)."""
    default = int(store.get_setting("API_Default_Count", 50))
    default = default if default > 0 else 50
    upper = int(store.get_setting("API_Upper_Count_Limit", 100))
    upper = upper if upper > 0 else 100
    offset = js_parse_int(params["offset"]) if params.get("offset") else 0
    count = default
    if params.get("count") is not None:
        parsed = js_parse_int(params["count"])
        count = parsed if parsed is not None else default
    count = min(count, upper)
    if count == 0 and not store.get_setting("API_Allow_Infinite_Count", True):
        count = default
    # MongoDB: limit(0) is "no limit", a negative limit returns that many documents.
    return Page(max(offset or 0, 0), None if count == 0 else abs(count))


def parse_sort(params: Mapping[str, Any]) -> SortSpec:
    """The `sort` JSON parameter of `parseJsonQuery`: values must be 1 or -1."""
    raw = params.get("sort")
    if not raw:
        return ()
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
        if not isinstance(parsed, dict):
            raise ValueError(raw)
        spec: list[tuple[str, Literal[1, -1]]] = []
        for key, direction in parsed.items():
            if direction == 1 and not isinstance(direction, bool):
                spec.append((key, 1))
            elif direction == -1:
                spec.append((key, -1))
            else:
                raise ValueError(key)
    except ValueError:
        raise MeteorError(
            "error-invalid-sort", f'Invalid sort parameter provided: "{raw}"', {"helperMethod": "parseJsonQuery"}
        ) from None
    return tuple(spec)


# --- the route pipeline ---------------------------------------------------------------------------------


@dataclass
class Call:
    """What a handler sees of one request (query/body already validated and coerced)."""

    api: RestApi
    request: Request
    user: User | None
    token: str | None
    query: dict[str, Any]
    body: Any

    @property
    def store(self) -> Store:
        return self.api.store

    @property
    def config(self) -> SandboxConfig:
        return self.api.config

    @property
    def me(self) -> User:
        """The authenticated caller (only on routes with `auth_required`)."""
        assert self.user is not None, "handler of a route without authentication asked for the caller"
        return self.user


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """One route+method of the API and the wrapper options it is registered with."""

    name: str
    method: Literal["GET", "POST", "PUT", "DELETE"]
    handler: Handler
    auth_required: bool = True
    schema: str | None = None
    typed: bool = False
    permissions_any: tuple[str, ...] = ()
    prefix: str = "/api/v1"
    rate_limited: bool = True
    envelope: bool = True  # False: the handler's dict is the whole body (no `success` added)
    # The coercion of this route's own validator on a "legacy" server, when it is not the plain
    # `new Ajv()` (e.g. rest-typings 6.x/7.x compiled `isIntegrationsHistoryProps` with coerceTypes).
    legacy_coercion: Coercion | None = None

    @property
    def path(self) -> str:
        return f"{self.prefix}/{self.name}"


class RestApi:
    """The wrapper shared by all endpoints of one sandbox server."""

    def __init__(self, store: Store, config: SandboxConfig, *, clock_ms: MillisClock | None = None) -> None:
        self.store = store
        self.config = config
        self.limiter = RateLimiter(clock_ms or wall_clock_ms)
        self.trash = Trash(store)

    def _coercion(self, method: str, endpoint: Endpoint | None = None) -> Coercion:
        if self.config.update_mode != "8.x":
            return endpoint.legacy_coercion if endpoint is not None and endpoint.legacy_coercion else "none"
        return "array" if method in ("GET", "HEAD") else "scalar"

    def routes(self, endpoints: Iterable[Endpoint]) -> list[BaseRoute]:
        by_path: dict[str, dict[str, Endpoint]] = {}
        for endpoint in endpoints:
            by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
        return [self._route(path, methods) for path, methods in by_path.items()]

    def _route(self, path: str, methods: dict[str, Endpoint]) -> Route:
        async def dispatch(request: Request) -> Response:
            endpoint = methods["GET" if request.method == "HEAD" else request.method]
            return await self.handle(endpoint, request)

        return Route(path, dispatch, methods=list(methods))

    def authenticate(self, request: Request) -> tuple[User | None, str | None]:
        user_id = request.headers.get("x-user-id")
        token = request.headers.get("x-auth-token")
        if not user_id or not token:
            return None, None
        user = self.store.user_by_token(user_id, token)
        return (user, token) if user is not None else (None, None)

    def _rate_limit(self, endpoint: Endpoint, request: Request, user: User | None) -> Decision | None:
        store = self.store
        if not (self.config.rate_limit and endpoint.rate_limited and store.get_setting("API_Enable_Rate_Limiter")):
            return None
        if user is not None and store.has_permission(user._id, "api-bypass-rate-limit"):
            return None
        limit = int(store.get_setting("API_Enable_Rate_Limiter_Limit_Calls_Default", 10))
        interval = float(store.get_setting("API_Enable_Rate_Limiter_Limit_Time_Default", 60000))
        if limit <= 0 or interval <= 0:
            return None  # Rocket.Chat attaches no limiter when a default is unset
        route = f"/{endpoint.name}{endpoint.method.lower()}"
        return self.limiter.hit(route, client_ip(request), limit=limit, interval_ms=interval)

    async def handle(self, endpoint: Endpoint, request: Request) -> Response:
        query = query_params(request)
        body = await body_params(request) if request.method not in ("GET", "HEAD") else {}
        is_get = request.method in ("GET", "HEAD")
        if endpoint.typed and endpoint.schema is not None:
            outcome = validate(endpoint.schema, query if is_get else body, self._coercion(request.method, endpoint))
            if not outcome.ok:
                error_type = "error-invalid-params" if is_get else "invalid-params"
                return json_response(400, {"success": False, "errorType": error_type, "error": outcome.text})
            query, body = (outcome.data, body) if is_get else (query, outcome.data)
        user, token = self.authenticate(request) if endpoint.auth_required else (None, None)
        if endpoint.auth_required and user is None:
            return json_response(
                401, {"success": False, "error": NOT_LOGGED_IN, "status": "error", "message": NOT_LOGGED_IN}
            )
        headers: dict[str, str] = {}
        try:
            decision = self._rate_limit(endpoint, request, user)
            if decision is not None:
                headers.update(decision.headers())
                if not decision.allowed:
                    raise decision.error()
            if not endpoint.typed and endpoint.schema is not None:
                outcome = validate(endpoint.schema, query if is_get else body, self._coercion(request.method, endpoint))
                if not outcome.ok:
                    raise MeteorError("invalid-params", outcome.text)
                query, body = (outcome.data, body) if is_get else (query, outcome.data)
            if endpoint.permissions_any and (
                user is None or not self.store.has_any_permission(user._id, endpoint.permissions_any)
            ):
                raise MeteorError("error-unauthorized", NO_ROUTE_PERMISSION, {"permissions": endpoint.permissions_any})
            payload = await endpoint.handler(Call(self, request, user, token, query, body))
        except SandboxError as exc:
            status, error_body = render_error(exc)
            return json_response(status, error_body, headers)
        except Exception:
            log.exception("sandbox REST handler failed: %s %s", request.method, endpoint.path)
            return json_response(500, {"success": False, "error": "Internal server error"}, headers)
        if isinstance(payload, Response):
            payload.headers.update(headers)
            return payload
        if endpoint.envelope:
            payload = {**payload, "success": True}
        return json_response(200, payload, headers)


async def not_found(request: Request) -> Response:
    # Rocket.Chat's body for an unknown /api/v1 path is not verified (contract §9); this is the
    # `API.v1.notFound()` envelope, which is what its own handlers answer for missing resources.
    return json_response(404, {"success": False, "error": "Resource not found"})
