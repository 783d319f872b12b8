"""The bot's REST client for Rocket.Chat (contract §1–§3).

Theory of operation
-------------------
One `httpx.AsyncClient` (connection pooling, bounded timeouts) is shared by every call. Each
typed method goes through `_call`, which is the only place that sees HTTP:

* transient failures (5xx answers, timeouts, connection and protocol errors) are retried with
  exponential backoff and jitter by `stamina`, on our own named `_Transient` error only, a
  bounded number of times, then surface as `Unavailable`;
* 429 waits until `X-RateLimit-Reset` (epoch milliseconds, contract §1.5) — or `Retry-After` —
  when that is within `max_rate_limit_wait`, a bounded number of times, then `RateLimited`;
* 401 on an authenticated call is `AuthFailed` (the bot's own credentials, not the caller's);
* any other 4xx is `ServerRejected(status, error, errorType)` without retry. Callers key on the
  status and `errorType`; the `error` text differs between versions and is only for humans
  (contract §1.4, gotchas 8–9).

No httpx exception leaves this module. Tokens and passwords never appear in a repr, a log line
or an exception text: error texts from the server are scrubbed of every secret the request
carried, just in case a server echoes one.

Writes: `integrations.update` is a full replacement, so re-sending the same body after a
timeout or 5xx is harmless *if nobody changed the document meanwhile*. The caller decides with
`retry=`; the integration service turns retries off and re-reads the document instead, because
it can tell whether the first attempt landed. `chat.sendMessage` is retried only when the
caller supplied the message `_id`, which makes a duplicate detectable.

A per-request hook receives one `RequestRecord` per logical call (after retries), so metrics
can be added without touching this module.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

import httpx
import stamina
from pydantic import SecretStr, ValidationError

from bot import logs
from bot.errors import AuthFailed, MessageIdTaken, RateLimited, ServerRejected, Unavailable
from bot.rocketchat import message_size
from bot.rocketchat.message_ids import is_own
from bot.rocketchat.models import (
    Credentials,
    Delta,
    HistoryPage,
    IntegrationPage,
    PermissionDoc,
    PermissionsSnapshot,
    Role,
    ServerInfo,
    UserInfo,
)

log = logs.get_logger("bot.rest")  # the `logger` operators filter on: kept when the module moved

MAX_PAGE_SIZE: Final = 100  # `API_Upper_Count_Limit` default; larger counts are capped server-side (§2.2)
# Connections to one Rocket.Chat, all kept alive so a busy moment opens none anew. Few on
# purpose: httpcore's pool checks every connection on each request start and end (O(pool size),
# with a readiness poll per idle one, ~15 µs each), so a burst of 1,000 commands took the bot
# 9.4-10.9 s of CPU with 20 connections, 5.5-6.2 s with 8 and 4.3-4.8 s with 4 (bench/, sandbox
# on loopback; bench/floor.py keeps 8, which suits its 100 concurrent workers better). A
# Rocket.Chat instance is one Node.js event loop, so more requests in flight only queue there;
# 4 still carry ~200 requests/s at a 20 ms round trip, and the bot's role is exempt from the
# REST rate limiter (contract §1.5), so they are never the limit for commands people type.
MAX_CONNECTIONS: Final = 4


def _spare_httpcore_a_failed_import() -> None:
    """httpcore 1.0 runs `import sniffio` on every request (several times) to learn whether it
    runs under asyncio or trio, and assumes asyncio when that import fails. anyio 4.x no longer
    installs sniffio, so each of those imports fails *after searching sys.path again* (~50 µs,
    measured: about 0.7 ms per bot command, and the CPU the sandbox/server shares on small
    hosts). Recording the module as absent makes the import fail at once, with the same result."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_spare_httpcore_a_failed_import()


class RequestBuilder:
    """The `httpx.Request` that `client.build_request` makes for a call, at about half its cost.

    `build_request` merges the client's base URL with the path and then the query on every call:
    three URL parses, each a Python loop over the characters (a GET took ~0.11 ms warm, ~0.2 ms
    on a command's path). Here a path's full URL is learnt from `build_request` once and kept; a
    call adds only its query (~0.07 ms warm). Headers, cookies, JSON encoding, `Content-Type` and
    the timeout extension are the client's own (tests/bot/rocketchat/test_rest_requests.py compares the two
    for arbitrary calls).
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._headers = client.headers  # the client's defaults, fixed once it exists
        self._timeout = client.timeout.as_dict()
        self._urls: dict[str, httpx.URL] = {}

    def build(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._client.build_request("GET", path).url
        if params:
            url = url.copy_with(query=str(httpx.QueryParams(params)).encode("ascii"))
        merged = httpx.Headers(self._headers)
        if headers:
            merged.update(headers)
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            merged["Content-Type"] = "application/json"
        return httpx.Request(
            method,
            url,
            headers=merged,
            cookies=self._client.cookies,
            content=content,
            extensions={"timeout": dict(self._timeout)},
        )


Outcome = Literal["ok", "rejected", "auth_failed", "rate_limited", "unavailable"]


@dataclass(frozen=True)
class RequestRecord:
    """What the per-request hook learns about one logical call (after all retries)."""

    endpoint: str
    method: str
    status: int | None  # the last HTTP status seen; None when no answer arrived
    duration: float  # seconds, including backoff and rate-limit waits
    retries: int  # transient retries plus rate-limit waits
    outcome: Outcome


RequestHook = Callable[[RequestRecord], None]
_M = TypeVar("_M", UserInfo, ServerInfo, Role)
Sleep = Callable[[float], Awaitable[None]]


class _Transient(Exception):
    """A failure worth retrying: a 5xx answer, a timeout, a broken connection.

    Internal only (stamina retries on exactly this type); it carries no request data, so the
    retry log lines stamina emits cannot leak a header.
    """

    def __init__(self, endpoint: str, status: int | None, cause: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.cause = cause
        super().__init__(f"{endpoint}: {cause}")


class _Exhausted(_Transient):
    """The last `_Transient` once the retries are used up, with the number of attempts made."""

    def __init__(self, last: _Transient, tries: int) -> None:
        super().__init__(last.endpoint, last.status, last.cause)
        self.tries = tries


@dataclass(frozen=True)
class _Answer:
    body: dict[str, Any]
    retries: int


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class RestClient:
    """Async client for the Rocket.Chat REST API with the bot's error semantics.

    `base_url` is the server root (`https://chat.example.org`, optionally with a path prefix);
    paths `/api/v1/<endpoint>` and `/api/info` are appended. Authenticate with `user_id` +
    `auth_token` (a personal access token or a login token) or later with `login_password` /
    `login_resume`.

    `max_rate_limit_wait` defaults to Rocket.Chat's default limiter window (60 s): a longer
    announced wait fails at once with `RateLimited` instead of holding the command. Each wait
    adds `rate_limit_margin` seconds, because the reset time is on the server's clock and a call
    landing exactly at the reset may still fall in the old window.
    """

    def __init__(
        self,
        base_url: str,
        *,
        user_id: str | None = None,
        auth_token: str | SecretStr | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = 4,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        backoff_jitter: float = 0.5,
        rate_limit_retries: int = 2,
        max_rate_limit_wait: float = 60.0,
        rate_limit_margin: float = 0.5,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_request: RequestHook | None = None,
    ) -> None:
        if (user_id is None) != (auth_token is None):
            raise ValueError("user_id and auth_token go together")
        self._base_url = base_url.rstrip("/")
        self._credentials: Credentials | None = None
        if user_id is not None and auth_token is not None:
            token = auth_token if isinstance(auth_token, SecretStr) else SecretStr(auth_token)
            self._credentials = Credentials(user_id=user_id, auth_token=token)
        self._max_attempts = max(1, max_attempts)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff_jitter = backoff_jitter
        self._rate_limit_retries = max(0, rate_limit_retries)
        self._max_rate_limit_wait = max_rate_limit_wait
        self._rate_limit_margin = max(0.0, rate_limit_margin)
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._on_request = on_request
        # The server's `Message_MaxAllowedSize`; the runtime sets it from the public settings.
        self.message_limit = message_size.DEFAULT_LIMIT
        # Requests wait for a connection here, not in httpcore's pool: its queue is re-scanned on
        # every request start and end (quadratic), which cost seconds of CPU in a burst of a few
        # hundred commands. FIFO, like the pool; a request's own timeout starts once it has a slot.
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            # Every connection may stay alive: with fewer keep-alive slots than connections, each
            # burst of concurrent commands closed and re-opened connections (~1,000 per 1,000 commands).
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
            headers={"Accept": "application/json", "User-Agent": "integrations-bot"},
            follow_redirects=False,
        )
        self._requests = RequestBuilder(self._http)

    # --- lifecycle and identity ------------------------------------------------------------------

    def __repr__(self) -> str:
        who = f"user_id={self._credentials.user_id}" if self._credentials else "anonymous"
        return f"<RestClient {self._base_url} {who}>"

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def credentials(self) -> Credentials | None:
        """The current `X-User-Id`/`X-Auth-Token` pair (e.g. for a DDP `{resume}` login)."""
        return self._credentials

    @property
    def user_id(self) -> str | None:
        return self._credentials.user_id if self._credentials else None

    # --- authentication (contract §1.1, §1.2) -------------------------------------------------------

    async def login_password(self, username: str, password: str, *, code: str | None = None) -> UserInfo:
        """`POST /api/v1/login` with a username (or e-mail) and password; stores the credentials."""
        body: dict[str, Any] = {"user": username, "password": password}
        if code is not None:
            body["code"] = code
        answer = await self._call("POST", "login", json_body=body, authenticated=False, secrets=(password,))
        return self._store_login(answer.body)

    async def login_resume(self, token: str | SecretStr) -> UserInfo:
        """`POST /api/v1/login` with `{resume: token}` (a login token or PAT); stores the credentials."""
        plain = token.get_secret_value() if isinstance(token, SecretStr) else token
        answer = await self._call("POST", "login", json_body={"resume": plain}, authenticated=False, secrets=(plain,))
        return self._store_login(answer.body)

    def _store_login(self, body: dict[str, Any]) -> UserInfo:
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("userId") or not data.get("authToken"):
            raise Unavailable("login", "login: the server's answer carries no credentials")
        self._credentials = Credentials(user_id=str(data["userId"]), auth_token=SecretStr(str(data["authToken"])))
        me = data.get("me")
        return self._model(UserInfo, {"_id": data["userId"], **(me if isinstance(me, dict) else {})}, "login")

    async def logout(self) -> None:
        """`POST /api/v1/logout`: invalidates the current login token and forgets it."""
        if self._credentials is None:
            return
        try:
            await self._call("POST", "logout", json_body={})
        finally:
            self._credentials = None

    # --- server, users, permissions ---------------------------------------------------------------

    async def info(self) -> ServerInfo:
        answer = await self._call("GET", "info", path="/api/info", authenticated=self._credentials is not None)
        # Anonymous callers get `{version}`; newer servers nest details under `info` for admins.
        info = answer.body.get("info")
        return self._model(ServerInfo, info if isinstance(info, dict) and "version" in info else answer.body, "info")

    async def me(self) -> UserInfo:
        answer = await self._call("GET", "me")
        return self._model(UserInfo, answer.body, "me")

    async def users_info(
        self, *, user_id: str | None = None, username: str | None = None, include_rooms: bool = False
    ) -> UserInfo:
        if (user_id is None) == (username is None):
            raise TypeError("users_info needs exactly one of user_id or username")
        params: dict[str, str] = {"userId": user_id} if user_id is not None else {"username": str(username)}
        if include_rooms:
            params["includeUserRooms"] = "true"
        answer = await self._call("GET", "users.info", params=params)
        return self._model(UserInfo, answer.body.get("user"), "users.info")

    async def permissions_list_all(self, updated_since: datetime | str | None = None) -> PermissionsSnapshot:
        params = {"updatedSince": _iso(updated_since)} if updated_since is not None else None
        answer = await self._call("GET", "permissions.listAll", params=params)
        update = [PermissionDoc.model_validate(d) for d in answer.body.get("update") or [] if isinstance(d, dict)]
        remove = [str(d["_id"]) for d in answer.body.get("remove") or [] if isinstance(d, dict) and "_id" in d]
        return PermissionsSnapshot(update=tuple(update), remove=tuple(remove))

    async def roles_list(self) -> tuple[Role, ...]:
        answer = await self._call("GET", "roles.list")
        return tuple(self._model(Role, r, "roles.list") for r in answer.body.get("roles") or [])

    # --- integrations (contract §2) ------------------------------------------------------------

    async def integrations_list(
        self, *, name: str | None = None, type: str | None = None, offset: int = 0, count: int = MAX_PAGE_SIZE
    ) -> IntegrationPage:
        # count=0 would mean "no limit" on servers with API_Allow_Infinite_Count; always page.
        params: dict[str, str | int] = {"offset": max(0, offset), "count": min(max(1, count), MAX_PAGE_SIZE)}
        if name is not None:
            params["name"] = name
        if type is not None:
            params["type"] = type
        answer = await self._call("GET", "integrations.list", params=params)
        body = answer.body
        docs = tuple(d for d in body.get("integrations") or [] if isinstance(d, dict))
        return IntegrationPage(
            integrations=docs,
            offset=int(body.get("offset") or params["offset"]),
            count=int(body.get("count") or len(docs)),
            total=int(body.get("total") or 0),
        )

    async def iter_integrations(
        self, *, name: str | None = None, type: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[dict[str, Any]]:
        """Every integration matching `name` (server: case-insensitive substring) and `type`."""
        offset = 0
        seen: set[str] = set()
        while True:
            page = await self.integrations_list(name=name, type=type, offset=offset, count=page_size)
            fresh = [d for d in page.integrations if str(d.get("_id")) not in seen]
            for doc in fresh:
                seen.add(str(doc.get("_id")))
                yield doc
            offset += len(page.integrations)
            # Stop on an empty page, at the total, or if a server ignores `offset` (nothing new).
            if not page.integrations or not fresh or (page.total and offset >= page.total):
                return

    async def integrations_history(
        self, integration_id: str, *, offset: int = 0, count: int = MAX_PAGE_SIZE
    ) -> HistoryPage:
        """One page of an outgoing webhook's call history, newest first (the server's default
        order, `_updatedAt` descending). Entries can hold the webhook's token and URLs with
        credentials: never log or repeat them."""
        params: dict[str, str | int] = {
            "id": integration_id,
            "offset": max(0, offset),
            "count": min(max(1, count), MAX_PAGE_SIZE),
        }
        answer = await self._call("GET", "integrations.history", params=params)
        body = answer.body
        entries = tuple(d for d in body.get("history") or [] if isinstance(d, dict))
        return HistoryPage(
            entries=entries, offset=int(body.get("offset") or params["offset"]), total=int(body.get("total") or 0)
        )

    async def iter_history(
        self, integration_id: str, *, limit: int, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The newest `limit` history entries at most, newest first (stops early when the
        caller stops iterating, e.g. at the first entry older than its window)."""
        offset = 0
        while offset < limit:
            page = await self.integrations_history(integration_id, offset=offset, count=min(page_size, limit - offset))
            for entry in page.entries:
                yield entry
            offset += len(page.entries)
            if not page.entries or (page.total and offset >= page.total):
                return

    async def integrations_get(self, integration_id: str) -> dict[str, Any]:
        answer = await self._call("GET", "integrations.get", params={"integrationId": integration_id})
        return self._document(answer.body, "integration", "integrations.get")

    async def integrations_update(self, body: Mapping[str, Any], *, retry: bool = True) -> dict[str, Any]:
        """`PUT integrations.update` with a complete body; returns the stored document.

        `retry=False` sends exactly once: a timeout or 5xx then raises `Unavailable` and the
        caller re-reads the document to learn whether the write landed.
        """
        token = body.get("token")
        answer = await self._call(
            "PUT",
            "integrations.update",
            json_body=dict(body),
            retry=retry,
            secrets=(token,) if isinstance(token, str) else (),
        )
        return self._document(answer.body, "integration", "integrations.update")

    # --- messages, rooms, settings -----------------------------------------------------------------

    async def chat_send_message(
        self,
        room_id: str,
        text: str,
        *,
        thread_id: str | None = None,
        message_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """`POST chat.sendMessage`; returns the stored message. `text` is first fitted into
        `message_limit` (bot/rocketchat/message_size.py): a longer one would be refused for good.

        Retried after a transient failure only with a client-chosen `message_id`: a retry of a
        send that did land then answers `error-duplicate-message`, and the stored message is
        fetched instead of posting a second copy. A duplicate is taken as "already posted" only
        when the stored message is the bot's own, in `room_id` and `thread_id`
        (`message_ids.is_own`): anyone may post with any unused id (contract §8, gotcha 26), so
        any other holder, or one the bot cannot read, raises `MessageIdTaken`.
        """
        message: dict[str, Any] = {"rid": room_id, "msg": message_size.fit(text, self.message_limit)}
        if message_id is not None:
            message["_id"] = message_id
        if thread_id is not None:
            message["tmid"] = thread_id
        if attachments:
            message["attachments"] = attachments
        try:
            answer = await self._call(
                "POST", "chat.sendMessage", json_body={"message": message}, retry=message_id is not None
            )
        except ServerRejected as exc:
            if message_id is None or exc.error_type != "error-duplicate-message":
                raise
            try:
                stored = await self.chat_get_message(message_id)
            except ServerRejected:
                stored = None  # in a room the bot cannot read, or deleted meanwhile: not the bot's answer
            if stored is not None and is_own(stored, user_id=self.user_id, room_id=room_id, thread_id=thread_id):
                return stored
            raise MessageIdTaken("chat.sendMessage", message_id) from None
        return self._document(answer.body, "message", "chat.sendMessage")

    async def chat_update(self, room_id: str, message_id: str, text: str) -> dict[str, Any]:
        """`POST chat.update`: replace the text of a message of the bot's (an edit, shown as one);
        returns the stored message. Safe to retry: the same text again changes nothing more."""
        body = {"roomId": room_id, "msgId": message_id, "text": message_size.fit(text, self.message_limit)}
        answer = await self._call("POST", "chat.update", json_body=body)
        return self._document(answer.body, "message", "chat.update")

    async def chat_sync_messages(self, room_id: str, last_update: datetime | str) -> dict[str, Any]:
        """`GET chat.syncMessages`: `{"updated": [...], "deleted": [...]}` since `last_update`."""
        answer = await self._call(
            "GET", "chat.syncMessages", params={"roomId": room_id, "lastUpdate": _iso(last_update)}
        )
        return self._document(answer.body, "result", "chat.syncMessages")

    async def chat_get_message(self, msg_id: str) -> dict[str, Any]:
        answer = await self._call("GET", "chat.getMessage", params={"msgId": msg_id})
        return self._document(answer.body, "message", "chat.getMessage")

    async def subscriptions_get(self, updated_since: datetime | str | None = None) -> Delta:
        return await self._delta("subscriptions.get", updated_since)

    async def rooms_get(self, updated_since: datetime | str | None = None) -> Delta:
        return await self._delta("rooms.get", updated_since)

    async def _delta(self, endpoint: str, updated_since: datetime | str | None) -> Delta:
        params = {"updatedSince": _iso(updated_since)} if updated_since is not None else None
        answer = await self._call("GET", endpoint, params=params)
        return Delta(
            update=tuple(d for d in answer.body.get("update") or [] if isinstance(d, dict)),
            remove=tuple(d for d in answer.body.get("remove") or [] if isinstance(d, dict)),
        )

    async def settings_public(self, ids: Iterable[str]) -> dict[str, Any]:
        """Values of public settings by id (`GET settings.public?_id=a,b`); unknown ids are absent."""
        wanted = [i for i in dict.fromkeys(ids) if i]
        if not wanted:
            return {}
        answer = await self._call(
            "GET", "settings.public", params={"_id": ",".join(wanted), "count": min(len(wanted), MAX_PAGE_SIZE)}
        )
        found: dict[str, Any] = {}
        for setting in answer.body.get("settings") or []:
            if isinstance(setting, dict) and setting.get("_id") in wanted:
                found[str(setting["_id"])] = setting.get("value")
        return found

    async def im_create(self, username: str) -> dict[str, Any]:
        """`POST im.create`: the direct-message room with `username` (created if needed)."""
        answer = await self._call("POST", "im.create", json_body={"username": username})
        return self._document(answer.body, "room", "im.create")

    async def rooms_info(self, *, room_id: str | None = None, room_name: str | None = None) -> dict[str, Any]:
        """`GET rooms.info` by id or by name: the room document.

        A missing room is a `ServerRejected` with errorType `error-room-not-found`; a room the bot
        may not open is `not-allowed` (it exists), an archived one `error-room-archived`."""
        if (room_id is None) == (room_name is None):
            raise TypeError("rooms_info needs exactly one of room_id or room_name")
        params = {"roomId": room_id} if room_id is not None else {"roomName": str(room_name)}
        answer = await self._call("GET", "rooms.info", params=params)
        return self._document(answer.body, "room", "rooms.info")

    # --- the one place that talks HTTP ---------------------------------------------------------

    def _auth_headers(self, endpoint: str) -> dict[str, str]:
        if self._credentials is None:
            raise AuthFailed(endpoint, f"{endpoint}: the bot is not logged in")
        return {
            "X-User-Id": self._credentials.user_id,
            "X-Auth-Token": self._credentials.auth_token.get_secret_value(),
        }

    def _secrets(self, extra: Iterable[str]) -> tuple[str, ...]:
        known = [self._credentials.auth_token.get_secret_value()] if self._credentials else []
        return (*known, *extra)

    async def _call(
        self,
        method: str,
        endpoint: str,
        *,
        path: str | None = None,
        params: Mapping[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
        authenticated: bool = True,
        retry: bool = True,
        secrets: Iterable[str] = (),
    ) -> _Answer:
        started = self._monotonic()
        status: int | None = None
        retries = 0
        outcome: Outcome = "unavailable"
        secret_list = self._secrets(secrets)
        try:
            headers = self._auth_headers(endpoint) if authenticated else {}
            request = self._requests.build(
                method, path or f"/api/v1/{endpoint}", params=params, json_body=json_body, headers=headers
            )
            rate_waits = 0
            while True:
                response, tries = await self._send(request, endpoint, retry)
                retries += tries - 1
                status = response.status_code
                if status != 429:
                    break
                wait = self._rate_limit_wait(response)
                if rate_waits >= self._rate_limit_retries or wait is None or wait > self._max_rate_limit_wait:
                    outcome = "rate_limited"
                    raise RateLimited(endpoint, wait)
                rate_waits += 1
                retries += 1
                log.info("rest.rate_limited", endpoint=endpoint, wait=round(wait, 3))
                await self._sleep(wait + self._rate_limit_margin)
            body = self._decode(response, endpoint, secret_list)
            outcome = "ok"
            return _Answer(body, retries)
        except _Exhausted as exc:
            status = exc.status
            retries += exc.tries - 1
            raise Unavailable(
                endpoint, f"{endpoint}: Rocket.Chat is unavailable ({exc.cause}) after {exc.tries} attempt(s)"
            ) from None
        except AuthFailed:
            outcome = "auth_failed"
            raise
        except ServerRejected:
            outcome = "rejected"
            raise
        finally:
            self._report(RequestRecord(endpoint, method, status, self._monotonic() - started, retries, outcome))

    async def _send(self, request: httpx.Request, endpoint: str, retry: bool) -> tuple[httpx.Response, int]:
        """Send with bounded, jittered exponential backoff on `_Transient` only; also returns the
        number of attempts made. Exhausted retries raise `_Exhausted`.

        The first attempt runs outside stamina: nearly every request succeeds at once, and a retry
        context costs more CPU than the rest of the request's own bookkeeping (a burst of commands
        spent ~4% of the bot's CPU in it). When the first attempt fails, stamina takes over from
        the start and its first attempt re-raises that failure, so the attempts, the waits between
        them and stamina's retry hooks are exactly what a retry context around every attempt gives.
        """
        try:
            return await self._send_once(request, endpoint), 1
        except _Transient as exc:
            if not retry or self._max_attempts <= 1:
                raise _Exhausted(exc, 1) from None
            first: _Transient | None = exc
        tries = 1
        try:
            async for attempt in stamina.retry_context(
                on=_Transient,
                attempts=self._max_attempts,
                timeout=None,
                wait_initial=self._backoff_initial,
                wait_max=self._backoff_max,
                wait_jitter=self._backoff_jitter,
            ):
                with attempt:
                    if first is not None:
                        failed, first = first, None
                        raise failed
                    tries += 1
                    return await self._send_once(request, endpoint), tries
        except _Transient as exc:
            raise _Exhausted(exc, tries) from None
        raise AssertionError("unreachable: stamina either returns or re-raises")  # pragma: no cover

    async def _send_once(self, request: httpx.Request, endpoint: str) -> httpx.Response:
        try:
            async with self._slots:
                response = await self._http.send(request)
                await response.aread()
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(endpoint, None, type(exc).__name__) from None
        except httpx.HTTPError as exc:  # unsupported protocol, bad URL, proxy errors: retrying won't help
            raise Unavailable(endpoint, f"{endpoint}: request failed ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise _Transient(endpoint, response.status_code, f"HTTP {response.status_code}")
        return response

    def _rate_limit_wait(self, response: httpx.Response) -> float | None:
        reset = response.headers.get("x-ratelimit-reset")
        if reset is not None:
            try:
                return max(0.0, float(reset) / 1000.0 - self._clock())
            except ValueError:
                pass
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        return None

    def _decode(self, response: httpx.Response, endpoint: str, secrets: tuple[str, ...]) -> dict[str, Any]:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if status == 401:
            raise AuthFailed(endpoint, f"{endpoint}: the bot's credentials were refused (HTTP 401)")
        if 400 <= status < 500:
            error, error_type = self._error_fields(body, response)
            raise ServerRejected(endpoint, status, _scrub(error, secrets), error_type)
        if not isinstance(body, dict):
            raise Unavailable(endpoint, f"{endpoint}: unreadable answer (HTTP {status})")
        if body.get("success") is False:
            error, error_type = self._error_fields(body, response)
            raise ServerRejected(endpoint, status, _scrub(error, secrets), error_type)
        return body

    @staticmethod
    def _error_fields(body: Any, response: httpx.Response) -> tuple[str, str | None]:
        if isinstance(body, dict):
            error = body.get("error") if isinstance(body.get("error"), str) else body.get("message")
            error_type = body.get("errorType")
            return (
                str(error) if error is not None else response.reason_phrase,
                str(error_type) if isinstance(error_type, str) else None,
            )
        return response.reason_phrase, None

    def _report(self, record: RequestRecord) -> None:
        log.debug(
            "rest.request",
            endpoint=record.endpoint,
            status=record.status,
            duration=round(record.duration, 4),
            retries=record.retries,
            outcome=record.outcome,
        )
        if self._on_request is not None:
            try:
                self._on_request(record)
            except Exception:  # a metrics hook must never break a request
                log.exception("rest.hook_failed", endpoint=record.endpoint)

    # --- answer parsing ----------------------------------------------------------------------

    @staticmethod
    def _model(model: type[_M], data: Any, endpoint: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError:
            raise Unavailable(endpoint, f"{endpoint}: unexpected answer shape") from None

    @staticmethod
    def _document(body: dict[str, Any], key: str, endpoint: str) -> dict[str, Any]:
        doc = body.get(key)
        if not isinstance(doc, dict):
            raise Unavailable(endpoint, f"{endpoint}: the answer has no {key!r} object")
        return doc


__all__ = ["MAX_PAGE_SIZE", "RequestHook", "RequestRecord", "RestClient"]
