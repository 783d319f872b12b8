"""BOT_ALLOWED_BOTS resolved to accounts (bot/runtime/allowed_bots.py): each listed username to the
id of the account that holds it when the bot starts, each `id:` entry checked; what names nobody
is said, not guessed. `users.info` is scripted (httpx.MockTransport), answering as contract §3.3 says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.errors import Unavailable
from bot.rocketchat.rest import RestClient
from bot.runtime.allowed_bots import AllowedBots, resolve_allowed_bots

USERS = {"DEPLOYID": "deploy-bot", "ALERTID": "Alertmanager"}  # id -> username


class Server:
    def __init__(self) -> None:
        self.down = False
        self.asked: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/users.info"
        params = dict(request.url.params)
        self.asked.append(params)
        if self.down:
            return httpx.Response(503, text="upstream down")
        if "userId" in params:
            found = params["userId"] if params["userId"] in USERS else None
        else:  # usernames are looked up regardless of case
            found = next((i for i, name in USERS.items() if name.lower() == params["username"].lower()), None)
        if found is None:
            return httpx.Response(400, json={"success": False, "error": "User not found."})
        user: dict[str, Any] = {"_id": found, "username": USERS[found], "type": "bot", "active": True}
        return httpx.Response(200, json={"user": user, "success": True})


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
async def rest(server: Server) -> AsyncIterator[RestClient]:
    client = RestClient(
        "https://chat.example.org",
        user_id="BOTID",
        auth_token="t0ken",
        transport=httpx.MockTransport(server),
        max_attempts=1,
    )
    yield client
    await client.aclose()


async def test_each_listed_username_is_the_account_that_holds_it(rest: RestClient) -> None:
    allowed = await resolve_allowed_bots(rest, names=["deploy-bot", "alertmanager"], ids=[])
    assert allowed == AllowedBots(
        ids=frozenset({"DEPLOYID", "ALERTID"}),
        names={"deploy-bot": "DEPLOYID", "alertmanager": "ALERTID"},
        missing={},
    )


async def test_listed_ids_are_checked_and_kept(rest: RestClient) -> None:
    allowed = await resolve_allowed_bots(rest, names=[], ids=["DEPLOYID"])
    assert allowed.ids == {"DEPLOYID"} and allowed.missing == {}


async def test_what_names_no_account_allows_nobody_and_says_so(rest: RestClient) -> None:
    allowed = await resolve_allowed_bots(rest, names=["deploy-bot", "later-bot"], ids=["GONEID"])
    assert allowed.ids == {"DEPLOYID"}
    assert allowed.names == {"deploy-bot": "DEPLOYID"}
    assert allowed.missing == {"later-bot": "no such user", "id:GONEID": "no such user"}


async def test_nothing_listed_asks_nothing(rest: RestClient, server: Server) -> None:
    assert await resolve_allowed_bots(rest, names=[], ids=[]) == AllowedBots(frozenset(), {}, {})
    assert server.asked == []


async def test_a_server_that_does_not_answer_is_an_error_not_an_empty_list(rest: RestClient, server: Server) -> None:
    server.down = True  # the bot's start retries it, as it retries its login
    with pytest.raises(Unavailable):
        await resolve_allowed_bots(rest, names=["deploy-bot"], ids=[])
