"""RestClient over httpx.MockTransport: wire format, error mapping, retries, waits and secrecy."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stamina
import structlog
from jsonschema import Draft202012Validator

from bot.errors import AuthFailed, MessageIdTaken, RateLimited, ServerRejected, Unavailable
from bot.rocketchat.rest import RequestRecord, RestClient
from tests.schema_support import SCHEMAS, ajv_to_json_schema

TOKEN = "tok-9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq"
PASSWORD = "correct horse battery staple"
WEBHOOK_TOKEN = "whk-aJ5secretwebhooktoken"
NOW = 1_750_000_000.0  # the injected wall clock (epoch seconds)

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    # stamina's testing switch: no backoff waits; cap=True keeps the client's own attempt bound.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class Recorder:
    """A scripted server: answers requests in order and remembers them."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def ok(**body: Any) -> httpx.Response:
    return httpx.Response(200, json={**body, "success": True})


def make_client(handler: Handler, **kwargs: Any) -> tuple[RestClient, list[float], list[RequestRecord]]:
    sleeps: list[float] = []
    records: list[RequestRecord] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    kwargs.setdefault("user_id", "botid")
    kwargs.setdefault("auth_token", TOKEN)
    client = RestClient(
        "https://chat.example.org",
        transport=httpx.MockTransport(handler),
        clock=lambda: NOW,
        sleep=fake_sleep,
        on_request=records.append,
        **kwargs,
    )
    return client, sleeps, records


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in (TOKEN, PASSWORD, WEBHOOK_TOKEN):
            assert secret not in str(text)


# --- wire format ---------------------------------------------------------------------------------


async def test_authenticated_call_sends_both_headers_and_uses_the_v1_path() -> None:
    server = Recorder(ok(_id="botid", username="bot", roles=["bot", "admin"]))
    client, _, _ = make_client(server)
    me = await client.me()
    assert me.id == "botid" and me.roles == ("bot", "admin")
    request = server.requests[0]
    assert request.url.path == "/api/v1/me"
    assert request.headers["X-User-Id"] == "botid"
    assert request.headers["X-Auth-Token"] == TOKEN


async def test_base_url_path_prefix_is_kept_and_info_has_no_v1() -> None:
    server = Recorder(ok(version="8.8.1"))
    client = RestClient("https://chat.example.org/chat/", transport=httpx.MockTransport(server))
    info = await client.info()
    assert info.version == "8.8.1"
    assert str(server.requests[0].url) == "https://chat.example.org/chat/api/info"
    assert "X-Auth-Token" not in server.requests[0].headers


async def test_users_info_without_roles_reports_none_not_an_empty_list() -> None:
    server = Recorder(ok(user={"_id": "u1", "username": "alice"}))
    client, _, _ = make_client(server)
    user = await client.users_info(user_id="u1", include_rooms=True)
    assert user.roles is None and user.rooms is None
    assert dict(server.requests[0].url.params) == {"userId": "u1", "includeUserRooms": "true"}


async def test_users_info_parses_roles_and_rooms() -> None:
    server = Recorder(
        ok(
            user={
                "_id": "u1",
                "username": "alice",
                "roles": ["user"],
                "rooms": [{"rid": "R1", "name": "ops", "t": "c"}],
            }
        )
    )
    client, _, _ = make_client(server)
    user = await client.users_info(username="alice")
    assert user.roles == ("user",)
    assert user.rooms is not None and user.rooms[0].rid == "R1"
    assert dict(server.requests[0].url.params) == {"username": "alice"}


async def test_permissions_list_all_sends_iso_updated_since_and_reads_removals() -> None:
    server = Recorder(
        ok(update=[{"_id": "manage-incoming-integrations", "roles": ["admin", "ops"]}], remove=[{"_id": "gone"}])
    )
    client, _, _ = make_client(server)
    snapshot = await client.permissions_list_all(datetime(2024, 6, 1, 10, 0, 0, 123000, tzinfo=UTC))
    assert server.requests[0].url.params["updatedSince"] == "2024-06-01T10:00:00.123Z"
    assert snapshot.update[0].id == "manage-incoming-integrations"
    assert snapshot.update[0].roles == ("admin", "ops")
    assert snapshot.remove == ("gone",)


async def test_integrations_update_puts_the_body_and_returns_the_stored_document() -> None:
    stored = {"_id": "i1", "type": "webhook-incoming", "enabled": False}
    server = Recorder(ok(integration=stored))
    client, _, _ = make_client(server)
    body = {"type": "webhook-incoming", "integrationId": "i1", "enabled": False}
    assert await client.integrations_update(body) == stored
    request = server.requests[0]
    assert request.method == "PUT" and request.url.path == "/api/v1/integrations.update"
    assert json.loads(request.content) == body


async def test_chat_send_message_builds_the_message_object() -> None:
    server = Recorder(ok(message={"_id": "m1", "rid": "R", "msg": "hi", "tmid": "T"}))
    client, _, _ = make_client(server)
    message = await client.chat_send_message("R", "hi", thread_id="T", message_id="m1", attachments=[{"text": "x"}])
    assert message["_id"] == "m1"
    assert json.loads(server.requests[0].content) == {
        "message": {"rid": "R", "msg": "hi", "tmid": "T", "_id": "m1", "attachments": [{"text": "x"}]}
    }


async def test_small_endpoints_parse_their_envelopes() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1/")
        if path == "settings.public":
            assert request.url.params["_id"] == "Site_Url,Site_Name"
            return ok(settings=[{"_id": "Site_Url", "value": "https://x"}, {"_id": "Other", "value": 1}])
        if path == "im.create":
            assert json.loads(request.content) == {"username": "alice"}
            return ok(room={"_id": "DM1", "t": "d"})
        if path == "subscriptions.get":
            return ok(update=[{"rid": "R1"}], remove=[{"_id": "S2"}])
        if path == "rooms.get":
            return ok(update=[{"_id": "R1"}], remove=[])
        if path == "chat.syncMessages":
            assert request.url.params["roomId"] == "R1"
            return ok(result={"updated": [{"_id": "m"}], "deleted": []})
        if path == "chat.getMessage":
            return ok(message={"_id": request.url.params["msgId"]})
        if path == "roles.list":
            return ok(roles=[{"_id": "admin", "name": "admin", "scope": "Users"}])
        return httpx.Response(404, json={"success": False, "error": "Resource not found"})

    client, _, _ = make_client(route)
    assert await client.settings_public(["Site_Url", "Site_Name"]) == {"Site_Url": "https://x"}
    assert (await client.im_create("alice"))["_id"] == "DM1"
    subs = await client.subscriptions_get()
    assert subs.update[0]["rid"] == "R1" and subs.remove[0]["_id"] == "S2"
    assert (await client.rooms_get("2024-01-01T00:00:00.000Z")).update[0]["_id"] == "R1"
    assert (await client.chat_sync_messages("R1", datetime(2024, 1, 1, tzinfo=UTC)))["updated"] == [{"_id": "m"}]
    assert (await client.chat_get_message("m9"))["_id"] == "m9"
    assert (await client.roles_list())[0].id == "admin"


# --- error mapping -------------------------------------------------------------------------------


async def test_401_on_the_bots_call_is_auth_failed_without_retry() -> None:
    server = Recorder(httpx.Response(401, json={"success": False, "error": "You must be logged in to do this."}))
    client, _, records = make_client(server)
    with pytest.raises(AuthFailed):
        await client.me()
    assert len(server.requests) == 1
    assert records[-1].outcome == "auth_failed" and records[-1].status == 401


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (
            400,
            {"success": False, "error": "Unauthorized [not_authorized]", "errorType": "not_authorized"},
            "not_authorized",
        ),
        (400, {"success": False, "error": "not-authorized"}, None),
        (403, {"success": False, "error": "User does not have the permissions required [error-unauthorized]"}, None),
        (404, {"success": False, "error": "Resource not found"}, None),
        (
            400,
            {"success": False, "errorType": "invalid-params", "error": "must have required property 'x'"},
            "invalid-params",
        ),
    ],
)
async def test_other_4xx_are_server_rejected_with_status_and_error_type_and_never_retried(
    status: int, body: dict[str, Any], error_type: str | None
) -> None:
    server = Recorder(httpx.Response(status, json=body))
    client, sleeps, records = make_client(server)
    with pytest.raises(ServerRejected) as caught:
        await client.integrations_get("i1")
    assert caught.value.status == status
    assert caught.value.error_type == error_type
    assert caught.value.error == body["error"]
    assert len(server.requests) == 1 and sleeps == []
    assert records[-1].outcome == "rejected" and records[-1].retries == 0


async def test_a_4xx_without_json_still_maps_to_server_rejected() -> None:
    server = Recorder(httpx.Response(404, text="<html>nope</html>"))
    client, _, _ = make_client(server)
    with pytest.raises(ServerRejected) as caught:
        await client.integrations_get("i1")
    assert caught.value.status == 404 and caught.value.error_type is None


async def test_a_200_with_success_false_is_rejected() -> None:
    server = Recorder(httpx.Response(200, json={"success": False, "error": "odd"}))
    client, _, _ = make_client(server)
    with pytest.raises(ServerRejected):
        await client.roles_list()


async def test_a_200_that_is_not_json_is_unavailable() -> None:
    server = Recorder(httpx.Response(200, text="<html>proxy login</html>"))
    client, _, _ = make_client(server)
    with pytest.raises(Unavailable):
        await client.roles_list()


# --- transient failures ----------------------------------------------------------------------------


async def test_5xx_is_retried_then_succeeds_and_the_hook_counts_the_retries() -> None:
    server = Recorder(httpx.Response(503), httpx.Response(502), ok(roles=[]))
    client, _, records = make_client(server)
    assert await client.roles_list() == ()
    assert len(server.requests) == 3
    assert records[-1] == RequestRecord("roles.list", "GET", 200, records[-1].duration, 2, "ok")


async def test_every_retry_goes_through_stamina_with_its_number_even_the_first() -> None:
    """The first attempt runs outside the retry context (the common, successful case costs no
    stamina machinery); a failure is replayed into stamina, so operators still see one
    `stamina.retry_scheduled` line per retry, numbered from 1, and the schedule starts at once."""
    server = Recorder(httpx.Response(503), httpx.Response(502), ok(roles=[]))
    client, _, _ = make_client(server)
    with structlog.testing.capture_logs() as captured:
        assert await client.roles_list() == ()
    scheduled = [e for e in captured if e["event"] == "stamina.retry_scheduled"]
    assert [e["retry_num"] for e in scheduled] == [1, 2]
    assert all("roles.list" in str(e["caused_by"]) for e in scheduled)
    assert len(server.requests) == 3


async def test_a_first_success_makes_one_request_and_no_retry_line() -> None:
    server = Recorder(ok(roles=[]))
    client, _, records = make_client(server)
    with structlog.testing.capture_logs() as captured:
        assert await client.roles_list() == ()
    assert not any(e["event"].startswith("stamina.") for e in captured)
    assert len(server.requests) == 1 and records[-1].retries == 0


async def test_5xx_retries_are_bounded_then_unavailable() -> None:
    server = Recorder(httpx.Response(500, json={"success": False, "error": "Internal server error"}))
    client, _, records = make_client(server, max_attempts=3)
    with pytest.raises(Unavailable) as caught:
        await client.roles_list()
    assert len(server.requests) == 3
    assert "3 attempt" in str(caught.value)
    assert records[-1].outcome == "unavailable" and records[-1].status == 500 and records[-1].retries == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server hung up"),
    ],
)
async def test_timeouts_and_connection_errors_are_retried_and_never_escape(failure: Exception) -> None:
    server = Recorder(failure)
    client, _, _ = make_client(server, max_attempts=4)
    with pytest.raises(Unavailable) as caught:
        await client.me()
    assert len(server.requests) == 4
    assert type(failure).__name__ in str(caught.value)
    assert caught.value.__cause__ is None  # the httpx exception does not travel along


async def test_a_transient_failure_then_success_recovers() -> None:
    server = Recorder(httpx.ConnectError("refused"), ok(_id="botid", username="bot"))
    client, _, _ = make_client(server)
    assert (await client.me()).username == "bot"


async def test_non_transient_transport_errors_are_not_retried() -> None:
    server = Recorder(httpx.UnsupportedProtocol("no"))
    client, _, _ = make_client(server)
    with pytest.raises(Unavailable):
        await client.me()
    assert len(server.requests) == 1


async def test_update_without_retry_sends_exactly_once() -> None:
    server = Recorder(httpx.ReadTimeout("slow"))
    client, _, _ = make_client(server)
    with pytest.raises(Unavailable):
        await client.integrations_update({"type": "webhook-incoming", "integrationId": "i1"}, retry=False)
    assert len(server.requests) == 1


async def test_update_with_retry_resends_the_same_body() -> None:
    server = Recorder(httpx.Response(503), ok(integration={"_id": "i1"}))
    client, _, _ = make_client(server)
    body = {"type": "webhook-incoming", "integrationId": "i1", "enabled": True}
    await client.integrations_update(body, retry=True)
    assert [json.loads(r.content) for r in server.requests] == [body, body]


async def test_send_message_without_an_id_is_not_retried() -> None:
    server = Recorder(httpx.Response(503))
    client, _, _ = make_client(server)
    with pytest.raises(Unavailable):
        await client.chat_send_message("R", "hi")
    assert len(server.requests) == 1


DUPLICATE = {
    "success": False,
    "error": "Message already exists [error-duplicate-message]",
    "errorType": "error-duplicate-message",
}
OWN_COPY = {"_id": "m1", "rid": "R", "msg": "hi", "u": {"_id": "botid", "username": "integrations-bot"}}


def lost_answer_then_duplicate(stored: httpx.Response) -> Recorder:
    """The first send is stored but its answer lost (504); the retry meets the duplicate; the
    stored message with that id is `stored`."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("chat.getMessage"):
            return stored
        attempt = sum(1 for r in server.requests if r.url.path.endswith("chat.sendMessage"))
        return httpx.Response(504) if attempt == 1 else httpx.Response(400, json=DUPLICATE)

    server = Recorder(route)
    return server


async def test_send_message_retry_that_hits_its_own_first_copy_returns_the_stored_message() -> None:
    server = lost_answer_then_duplicate(ok(message=OWN_COPY))
    client, _, _ = make_client(server)
    message = await client.chat_send_message("R", "hi", message_id="m1")
    assert message == OWN_COPY
    assert [r.url.path.rsplit("/", 1)[1] for r in server.requests] == [
        "chat.sendMessage",
        "chat.sendMessage",
        "chat.getMessage",
    ]


@pytest.mark.parametrize(
    "stored",
    [
        {**OWN_COPY, "u": {"_id": "mallory", "username": "mallory"}},  # posted by someone else
        {**OWN_COPY, "rid": "ELSEWHERE"},  # the bot's, in another room
        {**OWN_COPY, "tmid": "T1"},  # the bot's, in a thread the message is not for
    ],
    ids=["another-author", "another-room", "another-thread"],
)
async def test_a_duplicate_that_is_not_the_bots_own_message_there_is_not_taken_as_posted(
    stored: dict[str, Any],
) -> None:
    client, _, _ = make_client(lost_answer_then_duplicate(ok(message=stored)))
    with pytest.raises(MessageIdTaken) as taken:
        await client.chat_send_message("R", "hi", message_id="m1")
    assert taken.value.message_id == "m1" and taken.value.error_type == "error-duplicate-message"


async def test_a_duplicate_the_bot_cannot_read_is_not_taken_as_posted() -> None:
    hidden = httpx.Response(400, json={"success": False, "error": "Not allowed", "errorType": "error-not-allowed"})
    client, _, _ = make_client(lost_answer_then_duplicate(hidden))
    with pytest.raises(MessageIdTaken):
        await client.chat_send_message("R", "hi", message_id="m1")


async def test_a_duplicate_in_the_expected_thread_is_the_bots_own() -> None:
    in_thread = {**OWN_COPY, "tmid": "T1"}
    client, _, _ = make_client(lost_answer_then_duplicate(ok(message=in_thread)))
    assert await client.chat_send_message("R", "hi", thread_id="T1", message_id="m1") == in_thread


# --- rate limiting ---------------------------------------------------------------------------------


def too_many(reset_in: float | None = None, retry_after: str | None = None) -> httpx.Response:
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"}
    if reset_in is not None:
        headers["X-RateLimit-Reset"] = str(int((NOW + reset_in) * 1000))
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"success": False, "error": "Error, too many requests. Please slow down. [error-too-many-requests]"}
    return httpx.Response(429, json=body, headers=headers)


async def test_429_waits_until_the_reset_time_then_retries() -> None:
    server = Recorder(too_many(reset_in=7.5), ok(roles=[]))
    client, sleeps, records = make_client(server)
    await client.roles_list()
    assert sleeps == [pytest.approx(7.5 + 0.5)]  # until the reset, plus the clock-skew margin
    assert len(server.requests) == 2
    assert records[-1].retries == 1 and records[-1].outcome == "ok"


async def test_429_honours_retry_after_when_there_is_no_reset_header() -> None:
    server = Recorder(too_many(retry_after="3"), ok(roles=[]))
    client, sleeps, _ = make_client(server)
    await client.roles_list()
    assert sleeps == [3.5]


async def test_429_retries_are_bounded_then_rate_limited_with_retry_after() -> None:
    server = Recorder(too_many(reset_in=2))
    client, sleeps, records = make_client(server, rate_limit_retries=2)
    with pytest.raises(RateLimited) as caught:
        await client.roles_list()
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert caught.value.retry_after == pytest.approx(2)
    assert records[-1].outcome == "rate_limited"


async def test_429_with_a_reset_beyond_the_max_wait_fails_at_once() -> None:
    server = Recorder(too_many(reset_in=600))
    client, sleeps, _ = make_client(server, max_rate_limit_wait=30)
    with pytest.raises(RateLimited) as caught:
        await client.roles_list()
    assert sleeps == [] and len(server.requests) == 1
    assert caught.value.retry_after == pytest.approx(600)


async def test_429_without_any_hint_is_rate_limited_without_waiting() -> None:
    server = Recorder(too_many())
    client, sleeps, _ = make_client(server)
    with pytest.raises(RateLimited) as caught:
        await client.roles_list()
    assert sleeps == [] and caught.value.retry_after is None


# --- login -------------------------------------------------------------------------------------


def login_ok(user_id: str = "bot1", token: str = TOKEN) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "status": "success",
            "data": {
                "userId": user_id,
                "authToken": token,
                "me": {"_id": user_id, "username": "bot", "roles": ["bot"]},
            },
            "success": True,
        },
    )


async def test_login_password_stores_the_credentials_for_later_calls() -> None:
    server = Recorder(login_ok(), ok(_id="bot1", username="bot"))
    client = RestClient("https://chat.example.org", transport=httpx.MockTransport(server))
    me = await client.login_password("bot", PASSWORD)
    assert me.id == "bot1" and me.roles == ("bot",)
    assert json.loads(server.requests[0].content) == {"user": "bot", "password": PASSWORD}
    assert "X-Auth-Token" not in server.requests[0].headers
    await client.me()
    assert server.requests[1].headers["X-User-Id"] == "bot1"
    assert server.requests[1].headers["X-Auth-Token"] == TOKEN
    assert client.credentials is not None and client.credentials.auth_token.get_secret_value() == TOKEN
    assert_no_secret(repr(client), repr(client.credentials))


async def test_login_resume_sends_the_token_as_resume() -> None:
    server = Recorder(login_ok(token="fresh-token"))
    client = RestClient("https://chat.example.org", transport=httpx.MockTransport(server))
    await client.login_resume(TOKEN)
    assert json.loads(server.requests[0].content) == {"resume": TOKEN}
    assert client.user_id == "bot1"


async def test_refused_login_is_auth_failed_and_does_not_echo_the_password() -> None:
    server = Recorder(
        httpx.Response(
            401, json={"success": False, "status": "error", "error": "Unauthorized", "message": "Unauthorized"}
        )
    )
    client = RestClient("https://chat.example.org", transport=httpx.MockTransport(server))
    with pytest.raises(AuthFailed) as caught:
        await client.login_password("bot", PASSWORD)
    assert client.credentials is None
    assert_no_secret(caught.value, repr(caught.value))


async def test_calls_before_login_fail_without_a_request() -> None:
    server = Recorder(ok())
    client = RestClient("https://chat.example.org", transport=httpx.MockTransport(server))
    with pytest.raises(AuthFailed):
        await client.me()
    assert server.requests == []


async def test_logout_forgets_the_credentials() -> None:
    server = Recorder(ok(status="success", data={"message": "You've been logged out!"}))
    client, _, _ = make_client(server)
    await client.logout()
    assert server.requests[0].url.path == "/api/v1/logout"
    assert client.credentials is None


# --- paging ------------------------------------------------------------------------------------


def paging_server(docs: list[dict[str, Any]], *, honour_offset: bool = True) -> Recorder:
    def route(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", 0)) if honour_offset else 0
        count = min(int(request.url.params.get("count", 50)), 100)
        page = docs[offset : offset + count]
        return ok(integrations=page, offset=offset, items=len(page), count=len(page), total=len(docs))

    return Recorder(route)


async def test_iter_integrations_pages_until_the_total() -> None:
    docs = [{"_id": f"i{n:03d}", "name": f"hook {n}"} for n in range(250)]
    server = paging_server(docs)
    client, _, _ = make_client(server)
    seen = [d["_id"] async for d in client.iter_integrations(name="hook", type="webhook-incoming")]
    assert seen == [d["_id"] for d in docs]
    assert [r.url.params["offset"] for r in server.requests] == ["0", "100", "200"]
    assert all(r.url.params["count"] == "100" for r in server.requests)
    assert server.requests[0].url.params["name"] == "hook"
    assert server.requests[0].url.params["type"] == "webhook-incoming"


async def test_iter_integrations_stops_when_a_server_ignores_the_offset() -> None:
    docs = [{"_id": f"i{n}"} for n in range(150)]
    server = paging_server(docs, honour_offset=False)
    client, _, _ = make_client(server)
    seen = [d["_id"] async for d in client.iter_integrations()]
    assert seen == [d["_id"] for d in docs[:100]]
    assert len(server.requests) == 2


async def test_integrations_list_never_asks_for_more_than_the_server_cap() -> None:
    server = paging_server([])
    client, _, _ = make_client(server)
    await client.integrations_list(count=1000)
    await client.integrations_list(count=0)
    assert [r.url.params["count"] for r in server.requests] == ["100", "1"]


# --- secrecy and the hook --------------------------------------------------------------------------


async def test_no_secret_in_repr_errors_or_logs_even_when_the_server_echoes_them() -> None:
    # Each call can only scrub the secrets it carries: the auth token and the body's webhook
    # token for the update, the password for the login.
    echo = f"bad token {TOKEN} / webhook {WEBHOOK_TOKEN}"
    answers: list[httpx.Response | Exception] = [
        httpx.Response(400, json={"success": False, "error": echo, "errorType": "x"}),
        httpx.Response(401, json={"success": False, "error": echo}),
        httpx.Response(403, json={"success": False, "error": echo}),
        httpx.Response(500, json={"success": False, "error": echo}),
        too_many(reset_in=10_000),
        httpx.ConnectError(echo),
    ]
    errors: list[Exception] = []
    with structlog.testing.capture_logs() as logs:
        for answer in answers:
            client, _, records = make_client(Recorder(answer), max_attempts=2)
            assert_no_secret(repr(client))
            body = {"type": "webhook-outgoing", "integrationId": "i1", "token": WEBHOOK_TOKEN}
            with pytest.raises((ServerRejected, AuthFailed, Unavailable, RateLimited)) as caught:
                await client.integrations_update(body)
            errors.append(caught.value)
            assert_no_secret(records)
        login_client = RestClient(
            "https://chat.example.org",
            transport=httpx.MockTransport(
                Recorder(httpx.Response(400, json={"success": False, "error": f"no such password {PASSWORD}"}))
            ),
        )
        with pytest.raises(ServerRejected) as login_error:
            await login_client.login_password("bot", PASSWORD)
        errors.append(login_error.value)
    assert len(errors) == len(answers) + 1
    for error in errors:
        assert_no_secret(error, repr(error), getattr(error, "error", ""), error.__cause__, error.__context__)
    assert_no_secret(logs)


async def test_a_failing_hook_does_not_break_the_request() -> None:
    def broken_hook(record: RequestRecord) -> None:
        raise RuntimeError("metrics backend down")

    client = RestClient(
        "https://chat.example.org",
        user_id="b",
        auth_token=TOKEN,
        transport=httpx.MockTransport(Recorder(ok(roles=[]))),
        on_request=broken_hook,
    )
    assert await client.roles_list() == ()


async def test_user_id_and_token_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        RestClient("https://chat.example.org", user_id="b")


# --- every request the client builds passes Rocket.Chat's own schemas -----------------------------


async def test_requests_pass_the_official_request_schemas() -> None:
    def validator(name: str) -> Draft202012Validator:
        return Draft202012Validator(ajv_to_json_schema(json.loads((SCHEMAS / f"{name}.json").read_text())))

    def route(request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[1]
        if endpoint == "chat.sendMessage":
            return ok(message={"_id": "m"})
        if endpoint == "integrations.list":
            return ok(integrations=[], offset=0, count=0, total=0)
        if endpoint == "integrations.get":
            return ok(integration={"_id": "i"})
        return ok(user={"_id": "u", "username": "u"})

    server = Recorder(route)
    client, _, _ = make_client(server)
    await client.chat_send_message("R", "hi", thread_id="T", message_id="m", attachments=[{"text": "x"}])
    await client.chat_send_message("R", "plain")
    await client.integrations_list(name="Guggy", type="webhook-outgoing", offset=100, count=100)
    await client.integrations_get("i")
    await client.users_info(user_id="u", include_rooms=True)
    await client.users_info(username="u")
    for request in server.requests:
        endpoint = request.url.path.rsplit("/", 1)[1]
        instance = json.loads(request.content) if request.method != "GET" else dict(request.url.params)
        assert list(validator(endpoint).iter_errors(instance)) == [], (endpoint, instance)
