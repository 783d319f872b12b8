"""The bot builds its requests itself (bot/rocketchat/rest.py `RequestBuilder`, cheaper than httpx's
`build_request`); what goes on the wire must be exactly what httpx would have sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.rocketchat.rest import RequestBuilder, RestClient

BASES = ("http://127.0.0.1:3000", "https://chat.example.com/rocket/", "http://[::1]:8080/a%20b")
CLIENTS = {
    base: httpx.AsyncClient(
        base_url=base, headers={"Accept": "application/json", "User-Agent": "integrations-bot"}, timeout=7.5
    )
    for base in BASES
}
PATHS = ("/api/v1/integrations.list", "/api/v1/integrations.update", "/api/info", "/api/v1/chat.sendMessage")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
params = st.none() | st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20) | st.integers(), max_size=4)
headers = st.dictionaries(
    st.sampled_from(["X-User-Id", "X-Auth-Token", "Accept", "X-Extra"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30),
    max_size=3,
)


def wire(request: httpx.Request) -> tuple[Any, ...]:
    """What a server sees, header order aside."""
    return (
        request.method,
        str(request.url),
        sorted((k.lower(), v) for k, v in request.headers.multi_items()),
        request.read(),
        request.extensions,
    )


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(BASES),
    path=st.sampled_from(PATHS),
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
    query=params,
    body=st.none() | json_values,
    extra=headers,
)
def test_requests_equal_what_httpx_builds(
    base: str, path: str, method: str, query: dict[str, Any] | None, body: Any, extra: dict[str, str]
) -> None:
    client = CLIENTS[base]
    builder = RequestBuilder(client)
    for _ in range(2):  # the second time from the kept URL
        ours = builder.build(method, path, params=query, json_body=body, headers=extra)
        theirs = client.build_request(method, path, params=query, json=body, headers=extra)
        assert wire(ours) == wire(theirs)


async def test_the_bot_sends_its_credentials_query_and_body() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("integrations.list"):
            return httpx.Response(200, json={"integrations": [], "offset": 0, "count": 0, "total": 0, "success": True})
        return httpx.Response(200, json={"integration": {"_id": "i1", "name": "Guggy"}, "success": True})

    rest = RestClient(
        "http://rc.test/chat", user_id="u1", auth_token="secret-token-1", transport=httpx.MockTransport(answer)
    )
    try:
        await rest.integrations_list(name="Guggy bot", type="webhook-incoming")
        await rest.integrations_update({"type": "webhook-incoming", "integrationId": "i1", "name": "Guggy ✓"})
    finally:
        await rest.aclose()
    listing, update = seen
    assert str(listing.url).startswith("http://rc.test/chat/api/v1/integrations.list?")
    assert dict(listing.url.params) == {"offset": "0", "count": "100", "name": "Guggy bot", "type": "webhook-incoming"}
    assert listing.headers["X-User-Id"] == "u1"
    assert listing.headers["X-Auth-Token"] == "secret-token-1"
    assert update.method == "PUT"
    assert update.headers["Content-Type"] == "application/json"
    assert update.read() == '{"type":"webhook-incoming","integrationId":"i1","name":"Guggy ✓"}'.encode()


def test_cookies_the_server_set_are_sent_as_httpx_would() -> None:
    client = httpx.AsyncClient(base_url="http://rc.test/chat")
    client.cookies.set("AWSALB", "sticky-1", domain="rc.test")
    ours = RequestBuilder(client).build("GET", "/api/v1/me", headers={"X-User-Id": "u1"})
    assert ours.headers["Cookie"] == "AWSALB=sticky-1"
    assert wire(ours) == wire(client.build_request("GET", "/api/v1/me", headers={"X-User-Id": "u1"}))


@pytest.mark.parametrize("body", [{"x": float("nan")}, {"x": object()}])
def test_a_body_json_cannot_carry_is_refused_before_sending(body: dict[str, Any]) -> None:
    builder = RequestBuilder(httpx.AsyncClient(base_url="http://rc.test"))
    with pytest.raises((ValueError, TypeError)):
        builder.build("PUT", "/api/v1/integrations.update", json_body=body)
