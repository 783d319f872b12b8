"""IntegrationService over a scripted Rocket.Chat (httpx.MockTransport): name resolution for the
caller, authorization, no-op detection, the full-body write, verification and unknown outcomes."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import stamina

from bot.errors import (
    AmbiguousIntegration,
    IntegrationNotFound,
    NotUpdatable,
    OutcomeUnknown,
    PermissionDenied,
    UserInputError,
    VerificationFailed,
)
from bot.integrations.authz import (
    MANAGE_INCOMING,
    MANAGE_OUTGOING,
    MANAGE_OWN_INCOMING,
    MANAGE_OWN_OUTGOING,
    CallerRights,
    PermissionTable,
)
from bot.integrations.service import IntegrationService, build_update_body, normalize_kind, search_text
from bot.rocketchat.models import UserInfo
from bot.rocketchat.rest import RestClient
from commands import replies
from commands.parser import Invocation
from commands.table import build_registry

ME = "caller1"
OTHER = "other2"
ALL = (MANAGE_INCOMING, MANAGE_OWN_INCOMING, MANAGE_OUTGOING, MANAGE_OWN_OUTGOING)


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def rights(*permissions: str, rooms: tuple[str, ...] = ("general",)) -> CallerRights:
    user = UserInfo.model_validate(
        {
            "_id": ME,
            "username": "caller",
            "roles": ["r"],
            "rooms": [{"rid": f"id-{n}", "name": n, "t": "c"} for n in rooms],
        }
    )
    return CallerRights.of(user, PermissionTable({p: ["r"] for p in permissions}))


def incoming(id_: str, name: str, creator: str = OTHER, **extra: Any) -> dict[str, Any]:
    return {
        "_id": id_,
        "type": "webhook-incoming",
        "name": name,
        "enabled": True,
        "username": "rocket.cat",
        "userId": "rc",
        "channel": ["#general"],
        "alias": "guggy",
        "script": "class Script {}",
        "scriptEnabled": False,
        "scriptEngine": "isolated-vm",
        "skipTranspile": True,
        "token": "incoming-secret-token",
        "_createdAt": "2024-06-04T11:20:00.000Z",
        "_createdBy": {"_id": creator, "username": creator},
        "_updatedAt": "2024-06-04T11:20:00.000Z",
        **extra,
    }


def outgoing(id_: str, name: str, creator: str = OTHER, **extra: Any) -> dict[str, Any]:
    return {
        "_id": id_,
        "type": "webhook-outgoing",
        "name": name,
        "enabled": True,
        "event": "sendMessage",
        "username": "rocket.cat",
        "userId": "rc",
        "channel": ["#general"],
        "urls": ["https://text2gif.example.org/guggify"],
        "triggerWords": ["!guggy"],
        "token": "outgoing-secret-token",
        "retryFailedCalls": True,
        "retryCount": 6,
        "retryDelay": "powers-of-ten",
        "scriptEnabled": False,
        "scriptEngine": "isolated-vm",
        "_createdAt": "2024-06-04T11:20:00.000Z",
        "_createdBy": {"_id": creator, "username": creator},
        "_updatedAt": "2024-06-04T11:20:00.000Z",
        **extra,
    }


class FakeRocketChat:
    """The integration routes with the bot's (admin) rights; `on_update` decides what a PUT does."""

    def __init__(self, *docs: dict[str, Any]) -> None:
        self.docs = {d["_id"]: copy.deepcopy(d) for d in docs}
        self.requests: list[httpx.Request] = []
        self.on_update: Callable[[dict[str, Any]], httpx.Response] = self.store_body
        self.clock = 0
        # The rooms `rights()` callers are in, by the ids `rights()` gives them.
        self.rooms = [{"_id": f"id-{name}", "name": name, "t": "c"} for name in ("general", "random", "secret-room")]

    def endpoint_calls(self, endpoint: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/" + endpoint)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        endpoint = request.url.path.rsplit("/", 1)[1]
        params = request.url.params
        if endpoint == "integrations.get":
            doc = self.docs.get(params["integrationId"])
            if doc is None:
                return httpx.Response(400, json={"success": False, "error": "The integration does not exists."})
            return httpx.Response(200, json={"integration": doc, "success": True})
        if endpoint == "integrations.list":
            needle = params.get("name", "").lower()
            found = [
                d
                for d in self.docs.values()
                if needle in d["name"].lower() and ("type" not in params or d["type"] == params["type"])
            ]
            offset, count = int(params["offset"]), min(int(params["count"]), 100)
            page = found[offset : offset + count]
            body = {"integrations": page, "offset": offset, "count": len(page), "total": len(found), "success": True}
            return httpx.Response(200, json=body)
        if endpoint == "integrations.update":
            return self.on_update(json.loads(request.content))
        if endpoint == "rooms.info":
            key, value = next(iter(params.items()))
            room = next((r for r in self.rooms if r[{"roomId": "_id", "roomName": "name"}[key]] == value), None)
            if room is None:
                return httpx.Response(400, json={"success": False, "error": "x", "errorType": "error-room-not-found"})
            return httpx.Response(200, json={"room": room, "success": True})
        return httpx.Response(404, json={"success": False, "error": "Resource not found"})

    def store_body(self, body: dict[str, Any]) -> httpx.Response:
        """A faithful full replacement: body fields stored, channel split, server fields kept."""
        doc = self.docs[body["integrationId"]]
        for key, value in body.items():
            if key in ("integrationId", "type"):
                continue
            doc[key] = [c for c in value.split(",") if c] if key == "channel" else value
        self.clock += 1
        doc["_updatedAt"] = f"2025-01-01T00:00:{self.clock:02d}.000Z"
        doc["_updatedBy"] = {"_id": "bot", "username": "bot"}
        return httpx.Response(200, json={"integration": doc, "success": True})


def service_for(server: FakeRocketChat) -> IntegrationService:
    rest = RestClient(
        "https://chat.example.org", user_id="bot", auth_token="bot-token", transport=httpx.MockTransport(server)
    )
    return IntegrationService(rest)


# --- resolution ------------------------------------------------------------------------------------


async def test_an_exact_name_wins_over_substring_matches() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"), incoming("b", "Guggy 2"), incoming("c", "old-guggy"))
    found = await service_for(server).resolve("Guggy", rights=rights(*ALL))
    assert found.id == "a"
    assert server.endpoint_calls("integrations.list")[0].url.params["name"] == "Guggy"


async def test_names_match_case_insensitively_after_trimming() -> None:
    server = FakeRocketChat(incoming("a", " Guggy "), incoming("b", "Guggy 2"))
    assert (await service_for(server).resolve("  guggy", rights=rights(*ALL))).id == "a"


async def test_the_one_name_spelled_exactly_case_included_is_meant() -> None:
    server = FakeRocketChat(
        incoming("a", "deploy bot"),
        incoming("b", "Deploy Bot"),
        incoming("c", "Deploy Bot Legacy"),
        incoming("d", "Deploy"),
    )
    assert (await service_for(server).resolve("Deploy Bot", rights=rights(*ALL))).id == "b"
    with pytest.raises(AmbiguousIntegration):  # neither spelled so
        await service_for(server).resolve("DEPLOY BOT", rights=rights(*ALL))


async def test_look_alike_names_are_one_name_and_a_thorough_lookup_finds_them_all() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"), incoming("b", "Gug\u200bgy"), incoming("c", "Ｇｕｇｇｙ"))
    # The server's substring search for "Guggy" only finds the plain one: that is the one meant.
    assert (await service_for(server).resolve("Guggy", rights=rights(*ALL))).id == "a"
    # A name copied from chat with an invisible character inside: every integration is compared.
    with pytest.raises(AmbiguousIntegration) as caught:
        await service_for(server).resolve("Guggy", rights=rights(*ALL), thorough=True)
    assert {c.id for c in caught.value.candidates} == {"a", "b", "c"}
    assert "name" not in server.endpoint_calls("integrations.list")[-1].url.params


async def test_an_id_is_resolved_directly() -> None:
    server = FakeRocketChat(incoming("665f1c2e9b1e8a0012345678", "Guggy"))
    found = await service_for(server).resolve("665f1c2e9b1e8a0012345678", rights=rights(*ALL))
    assert found.name == "Guggy"
    assert server.endpoint_calls("integrations.list") == []


async def test_a_plain_name_is_looked_up_by_name_only() -> None:
    server = FakeRocketChat(incoming("665f1c2e9b1e8a0012345678", "hook-00042"))
    found = await service_for(server).resolve("hook-00042", rights=rights(*ALL))
    assert found.id == "665f1c2e9b1e8a0012345678"
    assert server.endpoint_calls("integrations.get") == []  # a name like this is no id: no by-id probe


async def test_an_id_of_an_unusual_shape_is_still_found_when_no_name_matches() -> None:
    server = FakeRocketChat(incoming("legacy-id-1", "Guggy"))
    found = await service_for(server).resolve("legacy-id-1", rights=rights(*ALL))
    assert found.name == "Guggy"


async def test_an_id_shaped_name_is_still_found_by_name() -> None:
    server = FakeRocketChat(incoming("a", "ABCDEFGHJKLMNPQRS"))  # 17 letters: tried as an id first
    assert (await service_for(server).resolve("ABCDEFGHJKLMNPQRS", rights=rights(*ALL))).id == "a"


async def test_names_equal_but_for_case_none_spelled_as_typed_are_ambiguous_and_nothing_is_written() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"), outgoing("b", "guggy", enabled=False), incoming("c", "Guggy 2"))
    service = service_for(server)
    with pytest.raises(AmbiguousIntegration) as caught:
        await service.set_enabled("GUGGY", False, rights=rights(*ALL))
    assert {(c.id, c.name, c.type, c.enabled) for c in caught.value.candidates} == {
        ("a", "Guggy", "webhook-incoming", True),
        ("b", "guggy", "webhook-outgoing", False),
    }
    assert server.endpoint_calls("integrations.update") == []


async def test_kind_narrows_an_ambiguous_name() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"), outgoing("b", "Guggy"))
    found = await service_for(server).resolve("Guggy", kind="outgoing", rights=rights(*ALL))
    assert found.id == "b"
    assert server.endpoint_calls("integrations.list")[0].url.params["type"] == "webhook-outgoing"


async def test_what_the_callers_list_would_hide_is_never_revealed() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", creator=OTHER), incoming("b", "Guggy", creator=ME))
    own_only = rights(MANAGE_OWN_INCOMING)
    assert (await service_for(server).resolve("Guggy", rights=own_only)).id == "b"  # not ambiguous
    del server.docs["b"]
    with pytest.raises(IntegrationNotFound):
        await service_for(server).resolve("Guggy", rights=own_only)


async def test_an_id_the_caller_may_not_read_is_not_found() -> None:
    server = FakeRocketChat(incoming("665f1c2e9b1e8a0012345678", "Guggy", creator=OTHER))
    with pytest.raises(IntegrationNotFound):
        await service_for(server).resolve("665f1c2e9b1e8a0012345678", rights=rights(MANAGE_OWN_INCOMING))


async def test_a_caller_without_any_integration_permission_is_refused_before_looking() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))
    with pytest.raises(PermissionDenied) as caught:
        await service_for(server).resolve("Guggy", rights=rights())
    assert set(caught.value.missing) == set(ALL)
    assert server.requests == []


async def test_resolution_pages_through_every_substring_match() -> None:
    docs = [incoming(f"i{n:03d}", f"Guggy {n}") for n in range(230)] + [incoming("exact", "guggy")]
    server = FakeRocketChat(*docs)
    assert (await service_for(server).resolve("Guggy", rights=rights(*ALL))).id == "exact"
    assert len(server.endpoint_calls("integrations.list")) == 3


def test_kind_words() -> None:
    assert normalize_kind("Incoming") == "webhook-incoming"
    assert normalize_kind("out") == "webhook-outgoing"
    assert normalize_kind(None) is None
    with pytest.raises(UserInputError):
        normalize_kind("sideways")


# --- changing --------------------------------------------------------------------------------------


async def test_disable_writes_the_full_body_and_verifies() -> None:
    doc = outgoing("o1", "Guggy")
    server = FakeRocketChat(doc)
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert outcome.changed and outcome.before.enabled and not outcome.after.enabled
    (put,) = server.endpoint_calls("integrations.update")
    assert json.loads(put.content) == build_update_body(doc, {"enabled": False})
    stored = server.docs["o1"]
    assert stored["triggerWords"] == ["!guggy"] and stored["token"] == "outgoing-secret-token"


async def test_already_in_the_wanted_state_writes_nothing() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", enabled=False))
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert not outcome.changed and outcome.before == outcome.after
    assert server.endpoint_calls("integrations.update") == []


async def test_a_document_from_elsewhere_is_read_again_before_the_write() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    service = service_for(server)
    remembered = dict(server.docs["a"])  # e.g. kept in an audit row or a timer
    server.docs["a"]["enabled"] = False  # someone disabled it meanwhile
    outcome = await service.set_enabled(remembered, False, rights=rights(*ALL))
    assert not outcome.changed
    assert server.endpoint_calls("integrations.update") == []


async def test_a_resolved_document_is_read_again_when_the_bot_wrote_it_since() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", enabled=True))
    service = service_for(server)
    first = await service.resolve("Guggy", rights=rights(*ALL))
    second = await service.resolve("Guggy", rights=rights(*ALL))
    await service.apply_changes(first, {"alias": "new"}, rights=rights(*ALL))
    outcome = await service.set_enabled(second, False, rights=rights(*ALL))
    # Written from a fresh read: the alias written in between is kept.
    assert outcome.changed and server.docs["a"]["alias"] == "new" and server.docs["a"]["enabled"] is False
    assert len(server.endpoint_calls("integrations.get")) == 1


async def test_a_document_resolved_just_now_is_written_without_reading_it_again() -> None:
    doc = outgoing("o1", "Guggy")
    server = FakeRocketChat(doc)
    service = service_for(server)
    found = await service.resolve("Guggy", rights=rights(*ALL))
    outcome = await service.set_enabled(found, False, rights=rights(*ALL))
    assert outcome.changed and not outcome.after.enabled
    assert server.endpoint_calls("integrations.get") == []
    (put,) = server.endpoint_calls("integrations.update")
    assert json.loads(put.content) == build_update_body(doc, {"enabled": False})  # still the whole document


async def test_a_query_is_resolved_and_written_with_one_read() -> None:
    server = FakeRocketChat(outgoing("o1", "Guggy"))
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert outcome.changed
    assert [r.url.path.rsplit("/", 1)[1] for r in server.requests] == ["integrations.list", "integrations.update"]


async def test_someone_elses_integration_needs_the_all_permission() -> None:
    doc = incoming("a", "Guggy", creator=OTHER)
    server = FakeRocketChat(doc)
    own_only = rights(MANAGE_OWN_INCOMING, MANAGE_OWN_OUTGOING)
    with pytest.raises(PermissionDenied) as caught:
        await service_for(server).set_enabled(doc, False, rights=own_only)
    assert caught.value.missing == (MANAGE_INCOMING,)
    # By name or id it is not even found: the caller's own list would not show it.
    for query in ("Guggy", "a"):
        with pytest.raises(IntegrationNotFound):
            await service_for(server).set_enabled(query, False, rights=own_only)
    assert server.endpoint_calls("integrations.update") == []


async def test_own_integration_with_the_own_permission_is_allowed() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", creator=ME))
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(MANAGE_OWN_INCOMING))
    assert outcome.changed


async def test_membership_rule_refuses_before_writing() -> None:
    server = FakeRocketChat(incoming("a", "Guggy", creator=ME, channel=["#secret-room"]))
    with pytest.raises(PermissionDenied) as caught:
        await service_for(server).set_enabled("Guggy", False, rights=rights(MANAGE_OWN_INCOMING))
    assert "#secret-room" in str(caught.value.detail)
    assert server.endpoint_calls("integrations.update") == []


async def test_outgoing_without_token_is_not_updatable_and_nothing_is_written() -> None:
    doc = outgoing("o1", "Guggy")
    del doc["token"]
    server = FakeRocketChat(doc)
    with pytest.raises(NotUpdatable):
        await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert server.endpoint_calls("integrations.update") == []


async def test_a_stored_result_that_lost_a_field_fails_verification_with_secrets_masked() -> None:
    server = FakeRocketChat(outgoing("o1", "Guggy"))

    def wipe_trigger_words(body: dict[str, Any]) -> httpx.Response:
        server.store_body(body)
        server.docs["o1"]["triggerWords"] = None
        server.docs["o1"]["token"] = "changed-secret-token"
        return httpx.Response(200, json={"integration": server.docs["o1"], "success": True})

    server.on_update = wipe_trigger_words
    with pytest.raises(VerificationFailed) as caught:
        await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert set(caught.value.differences) == {"triggerWords", "token"}
    assert "secret" not in str(caught.value) and "secret" not in str(caught.value.differences)


async def test_a_timed_out_write_that_landed_is_not_resent() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))

    def lands_then_times_out(body: dict[str, Any]) -> httpx.Response:
        server.store_body(body)
        raise httpx.ReadTimeout("answer lost")

    server.on_update = lands_then_times_out
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert outcome.changed and not outcome.after.enabled
    assert len(server.endpoint_calls("integrations.update")) == 1


async def test_a_timed_out_write_that_did_not_land_is_resent_once() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))
    attempts: list[dict[str, Any]] = []

    def first_lost(body: dict[str, Any]) -> httpx.Response:
        attempts.append(body)
        if len(attempts) == 1:
            raise httpx.ReadTimeout("lost before the server saw it")
        return server.store_body(body)

    server.on_update = first_lost
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert outcome.changed and attempts[0] == attempts[1]
    assert len(attempts) == 2


async def test_a_timed_out_write_is_not_resent_over_someone_elses_change() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))

    def someone_else_wrote(body: dict[str, Any]) -> httpx.Response:
        server.docs["a"]["alias"] = "renamed by a human"
        server.docs["a"]["_updatedAt"] = "2025-02-02T00:00:00.000Z"
        raise httpx.ReadTimeout("lost")

    server.on_update = someone_else_wrote
    with pytest.raises(VerificationFailed) as caught:
        await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert "alias" in caught.value.differences
    assert len(server.endpoint_calls("integrations.update")) == 1


async def test_a_lost_write_answer_followed_by_silence_is_reported_as_unknown_not_as_unchanged() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))
    service = service_for(server)
    found = await service.resolve("Guggy", rights=rights(*ALL))
    answer = server.__call__

    def silent_after_write(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/integrations.get"):
            server.requests.append(request)
            raise httpx.ConnectError("Rocket.Chat went away")
        return answer(request)

    def lands_then_times_out(body: dict[str, Any]) -> httpx.Response:
        server.store_body(body)
        raise httpx.ReadTimeout("answer lost")

    server.on_update = lands_then_times_out
    service = service_for(silent_after_write)
    with pytest.raises(OutcomeUnknown) as caught:
        await service.set_enabled(found, False, rights=rights(*ALL))
    assert server.docs["a"]["enabled"] is False  # it did land: "nothing was changed" would be a lie
    invocation = Invocation("disable", (), "!integration disable Guggy", "prefix")
    reply = replies.for_error(caught.value, invocation=invocation, registry=build_registry())
    assert "nothing was changed" not in reply.text and "can't tell" in reply.text and "Guggy" in reply.text
    assert len(server.endpoint_calls("integrations.update")) == 1


async def test_deleted_between_resolution_and_write_is_not_found() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))
    service = service_for(server)
    found = await service.resolve("Guggy", rights=rights(*ALL))
    del server.docs["a"]
    with pytest.raises(IntegrationNotFound):
        await service.set_enabled(found.document, False, rights=rights(*ALL))


async def test_apply_changes_refuses_unknown_fields() -> None:
    server = FakeRocketChat(incoming("a", "Guggy"))
    with pytest.raises(UserInputError):
        await service_for(server).apply_changes("Guggy", {"_createdBy": {"_id": ME}}, rights=rights(*ALL))
    assert server.endpoint_calls("integrations.update") == []


async def test_apply_changes_can_change_other_fields_losslessly() -> None:
    server = FakeRocketChat(outgoing("o1", "Guggy"))
    outcome = await service_for(server).apply_changes(
        "Guggy", {"triggerWords": ["!gif"], "channel": ["#general", "#random"]}, rights=rights(*ALL, rooms=())
    )
    assert outcome.after.document["triggerWords"] == ["!gif"]
    assert outcome.after.channels == ("#general", "#random")
    assert outcome.after.document["retryCount"] == 6


async def test_a_lost_write_answer_and_a_short_outage_still_get_a_definite_answer() -> None:
    """The answer of the PUT is lost and the next looks fail too (Rocket.Chat restarting): the bot
    keeps looking, finds the change stored, and reports it done without writing it twice."""
    server = FakeRocketChat(incoming("a", "Guggy"))
    service = service_for(server)
    found = await service.resolve("Guggy", rights=rights(*ALL))
    answer = server.__call__
    failed_looks: list[httpx.Request] = []

    def restarting(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/integrations.get") and len(failed_looks) < 9:
            failed_looks.append(request)  # more than one call's own retries (4 attempts)
            return httpx.Response(503, json={"success": False, "error": "restarting"})
        return answer(request)

    def lands_then_times_out(body: dict[str, Any]) -> httpx.Response:
        server.store_body(body)
        raise httpx.ReadTimeout("answer lost")

    server.on_update = lands_then_times_out
    outcome = await service_for(restarting).set_enabled(found, False, rights=rights(*ALL))
    assert outcome.changed and outcome.after.enabled is False
    assert len(failed_looks) == 9
    assert len(server.endpoint_calls("integrations.update")) == 1


async def test_a_resent_write_whose_answer_is_lost_too_is_looked_at_again_not_resent_blindly() -> None:
    """First PUT never reaches the server; the re-sent one lands but its answer is lost as well:
    the bot looks again, sees it stored, and stops — two PUTs in all, never a third."""
    server = FakeRocketChat(incoming("a", "Guggy"))
    attempts: list[dict[str, Any]] = []

    def lost_twice(body: dict[str, Any]) -> httpx.Response:
        attempts.append(body)
        if len(attempts) == 2:
            server.store_body(body)
        raise httpx.ReadTimeout("answer lost")

    server.on_update = lost_twice
    outcome = await service_for(server).set_enabled("Guggy", False, rights=rights(*ALL))
    assert outcome.changed and outcome.after.enabled is False
    assert len(attempts) == 2 and attempts[0] == attempts[1]


@pytest.mark.parametrize(
    ("readings", "search"),
    [
        (["Guggy"], "Guggy"),
        (["Grafana spamming the channel", "Grafana spamming", "Grafana"], "Grafana"),
        # What `normalize` makes of a phone's punctuation or of two spaces is not searched for:
        # the stored name may hold the original (`Bob’s hook`, `Jenkins – nightly`).
        (["Bob's hook"], "hook"),
        (["Jenkins -- nightly"], "Jenkins"),
        (["Café two"], "Caf"),  # the first of the longest runs
        (["AB1"], "AB1"),
        (["告警"], "告警"),  # no plain run of three, kept as typed: the reading itself
        # No plain run of three, and a stored name may not hold it as typed (`A–1`, `Ed’s bot`):
        # everything is read (review49: a plain twin found by the search was picked silently).
        (["A-1"], None),
        (["Ed's bot", "Ed's"], None),
        (["Noisy hook", "Other"], None),  # no common start: everything is read
    ],
)
def test_one_search_serves_every_reading(readings: list[str], search: str | None) -> None:
    assert search_text(readings) == search
