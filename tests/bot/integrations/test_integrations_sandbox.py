"""The REST client, the caller's rights and the lossless update against the sandbox REST app.

Every test seeds a sandbox `Store`, serves `create_rest_app` through `httpx.ASGITransport` and
drives the real `RestClient` / `RightsCache` / `IntegrationService`. Run in the four server
flavours the sandbox imitates (8.x / legacy incoming update × omitted keys stored as null or
left alone), because the data loss the bot must avoid differs between them (contract §2.4.4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import stamina
from hypothesis import HealthCheck, given, settings
from integration_docs import stored_documents

from bot.errors import AmbiguousIntegration, IntegrationNotFound, PermissionDenied, ServerRejected
from bot.integrations.authz import (
    INTEGRATION_PERMISSIONS,
    MANAGE_INCOMING,
    MANAGE_OUTGOING,
    MANAGE_OWN_INCOMING,
    MANAGE_OWN_OUTGOING,
    RightsCache,
    visible_in_list,
)
from bot.integrations.service import IntegrationService, build_update_body
from bot.rocketchat.models import Integration
from bot.rocketchat.rest import RestClient
from sandbox.config import SandboxConfig
from sandbox.rest import create_rest_app
from sandbox.store import PermissionEvent, RoleChangeEvent, Store

T = TypeVar("T")
MODES = [("8.x", True), ("8.x", False), ("legacy", True), ("legacy", False)]
ROOMS = ("general", "ops", "dev")
POST_AS = ("rocket.cat", "hookbot")
DM_USERS = ("alice", "bob")
# Written by the server on every update, or derived by it (contract §2.4.4): not compared.
SERVER_MANAGED = {"_updatedAt", "_updatedBy", "userId", "scriptCompiled", "scriptError"}


def run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        with stamina.set_testing(True, attempts=100, cap=True):
            return await coro_factory()

    return asyncio.run(main())


@dataclass
class Sandbox:
    store: Store
    app: Any
    bot: RestClient
    bot_id: str

    def client(self, user_id: str) -> RestClient:
        token = self.store.create_login_token(user_id)
        return RestClient(
            "http://sandbox.test", user_id=user_id, auth_token=token, transport=httpx.ASGITransport(app=self.app)
        )

    def user(self, username: str, roles: list[str]) -> str:
        return self.store.create_user(username, password="pw-" + username, roles=roles)._id


def sandbox(update_mode: str = "8.x", omitted_as_null: bool = True) -> Sandbox:
    store = Store()
    config = SandboxConfig(update_mode=update_mode, omitted_as_null=omitted_as_null)  # type: ignore[arg-type]
    app = create_rest_app(store, config)
    bot = store.create_user("integrations-bot", password="pw-bot", roles=["bot", "admin"])
    for name in (*POST_AS, *DM_USERS):
        store.create_user(name, password="pw-" + name, roles=["user", "bot"] if name in POST_AS else ["user"])
    for room in ROOMS:
        store.create_room(room, members=["integrations-bot"])
    token = store.create_login_token(bot._id)
    rest = RestClient("http://sandbox.test", user_id=bot._id, auth_token=token, transport=httpx.ASGITransport(app=app))
    return Sandbox(store, app, rest, bot._id)


def wired_cache(box: Sandbox) -> RightsCache:
    """A RightsCache fed by the store's realtime events, as the runtime feeds it from DDP."""
    cache = RightsCache(box.bot, ttl=60.0)

    def listen(event: object) -> None:
        if isinstance(event, PermissionEvent):
            cache.on_permissions_changed([event.action, event.permission])
        elif isinstance(event, RoleChangeEvent):
            cache.on_roles_change([event.payload])

    box.store.add_listener(listen)
    return cache


def lost_fields(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Fields whose value changed, besides `enabled` and server-managed ones.

    An absent key and a stored null are the same ("no value"); `skipTranspile` and `scriptEngine`
    have server defaults (false, isolated-vm) that any write stores for a missing value.
    """

    def norm(doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in doc.items() if v is not None and k not in SERVER_MANAGED and k != "enabled"}
        out.setdefault("skipTranspile", False)
        out.setdefault("scriptEngine", "isolated-vm")
        return out

    a, b = norm(before), norm(after)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def stored(box: Sandbox, integration_id: str) -> dict[str, Any]:
    doc = box.store.get_integration(integration_id)
    assert doc is not None
    return doc


# --- lossless disable/enable ---------------------------------------------------------------------


@pytest.mark.parametrize(("update_mode", "omitted_as_null"), MODES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=stored_documents(realistic=True, rooms=ROOMS, users=DM_USERS))
def test_disable_then_enable_loses_no_field(update_mode: str, omitted_as_null: bool, doc: dict[str, Any]) -> None:
    doc = {**doc, "username": doc["username"] if doc["username"] in POST_AS else POST_AS[0]}

    async def scenario() -> None:
        box = sandbox(update_mode, omitted_as_null)
        boss = box.user("boss", ["admin"])
        box.store.insert_integration(doc)
        original = stored(box, doc["_id"])
        rights = await wired_cache(box).get(boss)
        service = IntegrationService(box.bot)

        flipped = await service.set_enabled(doc["_id"], not doc["enabled"], rights=rights)
        assert flipped.changed
        after_flip = stored(box, doc["_id"])
        assert after_flip["enabled"] is (not doc["enabled"])
        assert lost_fields(original, after_flip) == set()

        back = await service.set_enabled(doc["_id"], doc["enabled"], rights=rights)
        assert back.changed
        final = stored(box, doc["_id"])
        assert final["enabled"] is doc["enabled"]
        assert lost_fields(original, final) == set()
        if doc["scriptEnabled"] and "scriptCompiled" in original:
            assert final.get("scriptCompiled")  # the script still runs

    run(scenario)


def full_incoming(**extra: Any) -> dict[str, Any]:
    return {
        "_id": "665f1c2e9b1e8a0012345678",
        "type": "webhook-incoming",
        "name": "Guggy in",
        "enabled": True,
        "username": "rocket.cat",
        "userId": "x",
        "channel": ["#general", "@alice"],
        "alias": "guggy",
        "avatar": "https://example.org/logo.png",
        "emoji": ":ghost:",
        "scriptEnabled": True,
        "script": "class Script { process_incoming_request({ request }) { return {}; } }",
        "scriptEngine": "isolated-vm",
        "skipTranspile": True,
        "overrideDestinationChannelEnabled": True,
        "token": "p7dZ" * 12,
        "_createdAt": "2024-06-04T11:20:00.000Z",
        "_createdBy": {"_id": "someone", "username": "someone"},
        **extra,
    }


def full_outgoing(**extra: Any) -> dict[str, Any]:
    return {
        "_id": "665f1c2e9b1e8a0087654321",
        "type": "webhook-outgoing",
        "name": "Guggy",
        "enabled": True,
        "event": "sendMessage",
        "username": "rocket.cat",
        "userId": "x",
        "channel": ["#general"],
        "urls": ["http://text2gif.guggy.com/guggify"],
        "triggerWords": ["!guggy"],
        "triggerWordAnywhere": False,
        "targetRoom": "",
        "token": "aJ5-outgoing-token",
        "alias": "guggy",
        "avatar": "http://res.guggy.com/logo_128.png",
        "emoji": ":ghost:",
        "impersonateUser": False,
        "retryFailedCalls": True,
        "retryCount": 6,
        "retryDelay": "powers-of-ten",
        "runOnEdits": True,
        "scriptEnabled": True,
        "script": "class Script { prepare_outgoing_request({ request }) { return request; } }",
        "scriptEngine": "vm2",
        "skipTranspile": True,
        "_createdAt": "2024-06-04T11:20:00.000Z",
        "_createdBy": {"_id": "someone", "username": "someone"},
        **extra,
    }


NAIVE_LOSSES = [
    # (mode, omitted_as_null, document) where the contract says a partial body destroys data.
    *[(m, o, full_outgoing()) for m, o in MODES],
    ("8.x", True, full_incoming()),  # skipTranspile reset
    ("8.x", False, full_incoming()),  # skipTranspile reset
    ("legacy", True, full_incoming()),  # alias/avatar/emoji/script wiped
]


@pytest.mark.parametrize(("update_mode", "omitted_as_null", "doc"), NAIVE_LOSSES)
def test_a_naive_partial_body_does_lose_data_there(
    update_mode: str, omitted_as_null: bool, doc: dict[str, Any]
) -> None:
    """Proves the round-trip comparison can fail: the "just flip enabled" body of gotcha 1."""

    async def scenario() -> None:
        box = sandbox(update_mode, omitted_as_null)
        box.store.insert_integration(doc)
        original = stored(box, doc["_id"])
        naive = {k: doc[k] for k in ("type", "name", "scriptEnabled") if k in doc}
        naive.update(integrationId=doc["_id"], enabled=False, channel=",".join(doc["channel"]))
        if doc["type"] == "webhook-outgoing":
            naive.update(username=doc["username"], event=doc["event"], urls=doc["urls"], token=doc["token"])
        await box.bot.integrations_update(naive)
        assert lost_fields(original, stored(box, doc["_id"])) != set()

        # The bot's own body on the same document in the same server loses nothing.
        box.store.insert_integration(doc)
        await box.bot.integrations_update(build_update_body(original, {"enabled": False}))
        assert lost_fields(original, stored(box, doc["_id"])) == set()

    run(scenario)


# --- ambiguity -----------------------------------------------------------------------------------


def test_ambiguous_names_change_nothing() -> None:
    async def scenario() -> None:
        box = sandbox()
        boss = box.user("boss", ["admin"])
        for n, (name, kind) in enumerate([("Guggy", "in"), ("guggy ", "out"), ("Guggy 2", "in"), ("old-guggy", "out")]):
            make = full_incoming if kind == "in" else full_outgoing
            box.store.insert_integration(make(_id=f"{n:024x}", name=name))
        before = box.store.list_integrations()
        service = IntegrationService(box.bot)
        rights = await wired_cache(box).get(boss)
        with pytest.raises(AmbiguousIntegration) as caught:  # neither is spelled `GUGGY`
            await service.set_enabled("GUGGY", False, rights=rights)
        assert sorted(c.id for c in caught.value.candidates) == [f"{0:024x}", f"{1:024x}"]
        assert box.store.list_integrations() == before
        # Narrowed by kind it is unique; "Guggy 2" is its own name.
        assert (await service.set_enabled("Guggy", False, rights=rights, kind="incoming")).changed
        assert (await service.resolve("guggy 2", rights=rights)).id == f"{2:024x}"

    run(scenario)


# --- the permission matrix -----------------------------------------------------------------------

MATRIX = [
    (frozenset(p for bit, p in enumerate(INTEGRATION_PERMISSIONS) if mask >> bit & 1), kind, own)
    for mask in range(16)
    for kind in ("webhook-incoming", "webhook-outgoing")
    for own in (True, False)
]


def contract_allows(held: frozenset[str], kind: str, own: bool) -> bool:
    incoming = kind == "webhook-incoming"
    perm_all = MANAGE_INCOMING if incoming else MANAGE_OUTGOING
    perm_own = MANAGE_OWN_INCOMING if incoming else MANAGE_OWN_OUTGOING
    return perm_all in held or (perm_own in held and own)


@pytest.mark.parametrize(("held", "kind", "own"), MATRIX)
def test_permission_matrix_matches_the_contract_and_the_server(held: frozenset[str], kind: str, own: bool) -> None:
    async def scenario() -> None:
        box = sandbox()
        carol = box.user("carol", ["user", "tester"])
        other = box.user("dave", ["user"])
        box.store.add_member("general", "carol")
        cache = wired_cache(box)
        await cache.load_permissions()
        for permission in INTEGRATION_PERMISSIONS:
            box.store.set_permission_roles(permission, ["admin", "tester"] if permission in held else ["admin"])
        creator = {"_id": carol if own else other, "username": "carol" if own else "dave"}
        make = full_incoming if kind == "webhook-incoming" else full_outgoing
        extra = {"channel": ["#general"], "_createdBy": creator, "scriptEngine": "isolated-vm"}
        via_bot, via_caller, listed = (make(_id=f"{n:024x}", name=f"hook {n}", **extra) for n in range(3))
        for doc in (via_bot, via_caller, listed):
            box.store.insert_integration(doc)
        expected = contract_allows(held, kind, own)

        # The server's own verdict when the caller sends the same update with their own token.
        caller_rest = box.client(carol)
        try:
            await caller_rest.integrations_update(build_update_body(via_caller, {"enabled": False}))
            server_allows = True
        except ServerRejected:
            server_allows = False
        assert server_allows == expected
        assert stored(box, via_caller["_id"])["enabled"] is (not expected)

        # The bot's verdict for the caller, acting with its own admin token.
        rights = await cache.get(carol)
        service = IntegrationService(box.bot)
        denied: PermissionDenied | None = None
        try:
            await service.set_enabled(Integration.of(via_bot), False, rights=rights)
        except PermissionDenied as exc:
            denied = exc
        assert (denied is None) == expected
        assert denied is None or denied.missing  # a refusal names what is missing
        assert stored(box, via_bot["_id"])["enabled"] is (not expected)

        # Name resolution shows exactly what the caller's own integrations.list shows.
        list_refused: ServerRejected | None = None
        caller_sees: set[str] = set()
        try:
            caller_sees = {d["_id"] async for d in caller_rest.iter_integrations()}
        except ServerRejected as exc:
            list_refused = exc
        assert (list_refused is not None) == (not held)
        assert list_refused is None or list_refused.status == 403
        docs = [stored(box, d["_id"]) for d in (via_bot, via_caller, listed)]
        assert {d["_id"] for d in docs if visible_in_list(rights, d)} == caller_sees
        try:
            found = await service.resolve("hook 2", rights=rights)
            assert found.id in caller_sees
        except (IntegrationNotFound, PermissionDenied):
            assert listed["_id"] not in caller_sees

    run(scenario)


MEMBERSHIP_CASES = [
    # (permissions, channel, allowed) for the caller's OWN incoming integration; carol is in #general only.
    ((MANAGE_OWN_INCOMING,), ["#general"], True),
    ((MANAGE_OWN_INCOMING,), ["#dev"], False),
    ((MANAGE_OWN_INCOMING,), ["@alice"], False),  # a user is never a room the caller is in
    ((MANAGE_INCOMING,), ["#dev"], False),  # only BOTH permissions bypass membership
    ((MANAGE_INCOMING, MANAGE_OWN_INCOMING), ["#dev", "@alice"], True),
]


@pytest.mark.parametrize(("held", "channel", "allowed"), MEMBERSHIP_CASES)
def test_channel_membership_rule_matches_the_server(held: tuple[str, ...], channel: list[str], allowed: bool) -> None:
    async def scenario() -> None:
        box = sandbox()
        carol = box.user("carol", ["user", "tester"])
        box.store.add_member("general", "carol")
        for permission in INTEGRATION_PERMISSIONS:
            box.store.set_permission_roles(permission, ["admin", "tester"] if permission in held else ["admin"])
        creator = {"_id": carol, "username": "carol"}
        via_caller = full_incoming(_id=f"{1:024x}", channel=channel, _createdBy=creator)
        via_bot = full_incoming(_id=f"{2:024x}", channel=channel, _createdBy=creator)
        for doc in (via_caller, via_bot):
            box.store.insert_integration(doc)
        try:
            await box.client(carol).integrations_update(build_update_body(via_caller, {"enabled": False}))
            server_allows = True
        except ServerRejected:
            server_allows = False
        rights = await wired_cache(box).get(carol)
        try:
            await IntegrationService(box.bot).set_enabled(Integration.of(via_bot), False, rights=rights)
            bot_allows = True
        except PermissionDenied:
            bot_allows = False
        assert server_allows == bot_allows == allowed
        assert stored(box, via_bot["_id"])["enabled"] is (not allowed)

    run(scenario)


def test_a_role_change_takes_effect_on_the_next_command() -> None:
    async def scenario() -> None:
        box = sandbox()
        carol = box.user("carol", ["user"])
        box.store.insert_integration(full_outgoing())
        cache = wired_cache(box)
        service = IntegrationService(box.bot)
        with pytest.raises(PermissionDenied):
            await service.set_enabled(Integration.of(full_outgoing()), False, rights=await cache.get(carol))
        box.store.set_user_roles(carol, ["user", "admin"])  # emits roles-change
        outcome = await service.set_enabled("Guggy", False, rights=await cache.get(carol))
        assert outcome.changed

    run(scenario)


# --- the client against the real envelopes -------------------------------------------------------


def test_client_basics_against_the_sandbox() -> None:
    async def scenario() -> None:
        box = sandbox()
        me = await box.bot.me()
        assert me.id == box.bot_id and me.roles is not None and "admin" in me.roles
        info = await box.bot.users_info(username="alice", include_rooms=True)
        assert info.roles == ("user",)
        snapshot = await box.bot.permissions_list_all()
        assert {p.id for p in snapshot.update} >= set(INTEGRATION_PERMISSIONS)
        with pytest.raises(ServerRejected) as caught:
            await box.bot.integrations_get("does-not-exist")
        assert caught.value.status == 400

        login = RestClient("http://sandbox.test", transport=httpx.ASGITransport(app=box.app))
        who = await login.login_password("alice", "pw-alice")
        assert who.username == "alice" and (await login.me()).username == "alice"
        resumed = RestClient("http://sandbox.test", transport=httpx.ASGITransport(app=box.app))
        assert login.credentials is not None
        await resumed.login_resume(login.credentials.auth_token)
        assert resumed.user_id == login.user_id

    run(scenario)


def test_list_paging_against_the_sandbox() -> None:
    async def scenario() -> None:
        box = sandbox()
        for n in range(130):
            box.store.insert_integration(full_incoming(_id=f"{n:024x}", name=f"hook {n}"))
        seen = [d["_id"] async for d in box.bot.iter_integrations(name="HOOK")]
        assert sorted(seen) == sorted(f"{n:024x}" for n in range(130))

    run(scenario)


def test_the_client_waits_out_the_sandboxs_rate_limiter() -> None:
    """A caller without api-bypass-rate-limit hits the default 10 calls / 60 s; the client waits
    until X-RateLimit-Reset (on a shared fake clock, no real sleeping) and carries on."""

    async def scenario() -> None:
        now_ms = [1_750_000_000_000.0]
        store = Store()
        app = create_rest_app(store, SandboxConfig(rate_limit=True), clock_ms=lambda: now_ms[0])
        alice = store.create_user("alice", password="pw", roles=["user"])
        waits: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            waits.append(seconds)
            now_ms[0] += seconds * 1000

        rest = RestClient(
            "http://sandbox.test",
            user_id=alice._id,
            auth_token=store.create_login_token(alice._id),
            transport=httpx.ASGITransport(app=app),
            clock=lambda: now_ms[0] / 1000,
            sleep=fake_sleep,
        )
        for _ in range(12):
            assert (await rest.me()).username == "alice"
        assert waits == [pytest.approx(60.5)]  # the whole window (no time passed), plus the margin

    run(scenario)
