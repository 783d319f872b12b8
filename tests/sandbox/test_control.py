"""The control API: in-process `SandboxControl` and the same operations over HTTP (`SandboxClient`)."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from sandbox.control import HTTP_OPERATIONS, ControlError, NotFound, SandboxClient, SandboxControl
from sandbox.ddp import DDPSession
from sandbox.errors import MeteorError
from sandbox.ids import password_digest
from sandbox.server import SandboxServer
from sandbox.store import Event, PermissionEvent, RoleChangeEvent, Store

Driver = SandboxControl | SandboxClient


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as srv:
        yield srv


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def control(store: Store) -> Iterator[SandboxControl]:
    ctl = SandboxControl(store)
    yield ctl
    ctl.close()


_counter = iter(range(1_000_000))


def unique(prefix: str) -> str:
    """Names unique across tests sharing the module's server."""
    return f"{prefix}{next(_counter)}"


@pytest.fixture(params=["in-process", "http"])
def driver(request: pytest.FixtureRequest, server: SandboxServer) -> Iterator[Driver]:
    if request.param == "in-process":
        yield server.control
    else:
        with SandboxClient(server.url, server.control_secret) as client:
            yield client


def events_of(store: Store) -> list[Event]:
    seen: list[Event] = []
    store.add_listener(seen.append)
    return seen


# --- users, tokens, roles and permissions ------------------------------------------------------------


def test_created_user_can_log_in_with_token_and_password(control: SandboxControl, store: Store) -> None:
    creds = control.create_user("alice", password="s3cret", roles=["user", "ops"])
    assert creds.username == "alice" and creds.roles == ("user", "ops") and creds.password == "s3cret"
    user = store.user_by_resume_token(creds.auth_token)
    assert user is not None and user._id == creds.user_id
    assert store.check_password(user, digest=password_digest("s3cret"))
    assert "ops" in store.roles  # unknown roles are created


def test_personal_access_tokens_are_usable_as_ddp_resume_tokens(control: SandboxControl, store: Store) -> None:
    creds = control.create_user("bot", roles=["bot"], personal_access_token=True)
    session = DDPSession(store, control.config)
    session.feed('{"msg":"connect","version":"1","support":["1"]}')
    session.feed(json.dumps({"msg": "method", "method": "login", "id": "1", "params": [{"resume": creds.auth_token}]}))
    assert session.user_id == creds.user_id
    assert control.personal_access_token("bot", "ci") != creds.auth_token
    assert store.user_by_resume_token(control.login_token("bot")) is not None


def test_a_renamed_user_keeps_the_account_and_frees_the_old_name(control: SandboxControl, store: Store) -> None:
    alice, bob = control.create_user("alice"), control.create_user("bob")
    control.create_room("general", members=["alice", "bob"])
    direct = control.create_direct("alice", "bob")
    said = control.post_message("alice", "general", "hello")
    control.rename_user("alice", "alicia")

    assert control.user("alicia")["_id"] == alice.user_id
    with pytest.raises(NotFound):
        control.user("alice")
    assert control.message(said["_id"])["u"]["username"] == "alicia"  # her messages follow her
    assert "alicia" in control.room(direct["_id"])["usernames"]
    assert [s["name"] for s in store.user_subscriptions(bob.user_id) if s["t"] == "d"] == ["alicia"]
    assert control.create_user("alice").user_id != alice.user_id  # the old name is free for anyone


def test_a_user_cannot_be_renamed_to_a_name_in_use_in_any_case(control: SandboxControl) -> None:
    control.create_user("alice")
    control.create_user("bob")
    with pytest.raises(MeteorError) as taken:
        control.rename_user("bob", "Alice")
    assert taken.value.error == "error-field-unavailable"
    assert control.user("bob")["username"] == "bob"


def test_random_password_when_none_given(control: SandboxControl) -> None:
    a, b = control.create_user("a"), control.create_user("b")
    assert a.password and b.password and a.password != b.password


def test_roles_and_permissions_emit_realtime_events(control: SandboxControl, store: Store) -> None:
    control.create_user("owen")
    seen = events_of(store)
    control.create_role("own-integrations", permissions=["manage-own-incoming-integrations"])
    assert control.permission_roles("manage-own-incoming-integrations") == ["admin", "own-integrations"]
    control.set_user_roles("owen", ["user", "own-integrations"])
    assert control.user("owen")["roles"] == ["user", "own-integrations"]
    control.set_role_permissions("own-integrations", ["manage-own-outgoing-integrations"])
    assert control.permission_roles("manage-own-incoming-integrations") == ["admin"]
    assert control.permission_roles("manage-own-outgoing-integrations") == ["admin", "own-integrations"]
    perm_events = [
        (e.action, e.permission["_id"], e.permission["roles"]) for e in seen if isinstance(e, PermissionEvent)
    ]
    assert perm_events == [
        ("updated", "manage-own-incoming-integrations", ["admin", "own-integrations"]),
        ("updated", "manage-own-incoming-integrations", ["admin"]),
        ("updated", "manage-own-outgoing-integrations", ["admin", "own-integrations"]),
    ]
    role_events = [e.payload for e in seen if isinstance(e, RoleChangeEvent)]
    assert [(p["type"], p["_id"], p["u"]["username"]) for p in role_events] == [("added", "own-integrations", "owen")]


# --- rooms and messages ------------------------------------------------------------------------------


def test_messages_in_every_shape(control: SandboxControl) -> None:
    control.create_user("alice")
    control.create_user("bot", roles=["bot"])
    control.create_user("rocket.cat", roles=["bot"])
    control.create_user("admin", roles=["admin"])
    room = control.create_room("general", members=["alice", "bot"])
    assert control.room_id("general") == control.room_id("#general") == room["_id"]
    parent = control.post_message("alice", "general", "/integration disable Guggy")
    assert isinstance(parent["ts"], str) and parent["ts"].endswith("Z")  # REST form
    reply = control.post_message("bot", "general", "done", tmid=parent["_id"], tshow=True)
    assert reply["tmid"] == parent["_id"] and reply["tshow"] is True
    edited = control.edit_message(parent["_id"], "/integration enable Guggy")
    assert edited["msg"] == "/integration enable Guggy" and "editedAt" in edited
    reacted = control.react(parent["_id"], ":+1:", "bot")
    assert reacted["reactions"] == {":+1:": {"usernames": ["bot"]}}
    hook = control.create_incoming_integration("Guggy", channel="#general", alias="guggy", emoji=":ghost:")
    posted = control.post_webhook_message(hook["_id"], "from the webhook")
    assert (
        posted["bot"] == {"i": hook["_id"]} and posted["alias"] == "guggy" and posted["u"]["username"] == "rocket.cat"
    )
    system = control.post_system_message("general", "uj", "alice", "alice")
    assert system["t"] == "uj"
    assert [m["_id"] for m in control.messages("general")] == [
        parent["_id"],
        reply["_id"],
        posted["_id"],
        system["_id"],
    ]
    assert control.message(parent["_id"])["tcount"] == 1
    control.delete_message(system["_id"])
    with pytest.raises(NotFound):
        control.message(system["_id"])


def test_a_disabled_incoming_webhook_posts_nothing(control: SandboxControl) -> None:
    """Rocket.Chat's `/hooks/<id>/<token>` answers 503 for a disabled integration: switching a noisy
    webhook off must silence it, in the sandbox as on a real server (the demo's `:flood` relies on it)."""
    control.create_user("admin", roles=["admin"])
    control.create_user("rocket.cat", roles=["bot"])
    control.create_room("alerts", members=["rocket.cat"])
    hook = control.create_incoming_integration("Grafana", channel="#alerts", enabled=False)
    with pytest.raises(MeteorError) as refused:
        control.post_webhook_message(hook["_id"], "[FIRING] HighErrorRate")
    assert refused.value.reason == "Service Unavailable"
    assert control.messages("alerts") == []
    control.update_integration(hook["_id"], {"enabled": True})
    assert control.post_webhook_message(hook["_id"], "[FIRING] HighErrorRate")["bot"] == {"i": hook["_id"]}


def test_dm_and_membership(control: SandboxControl, store: Store) -> None:
    control.create_user("alice")
    control.create_user("bot", roles=["bot"])
    dm = control.create_direct("alice", "bot")
    assert dm["t"] == "d" and sorted(dm["usernames"]) == ["alice", "bot"]
    control.create_user("carol")
    group = control.create_direct("alice", "bot", others=["carol"])
    assert group["t"] == "d" and sorted(group["usernames"]) == ["alice", "bot", "carol"] and group["usersCount"] == 3
    assert control.create_direct("carol", "alice", others=["bot"])["_id"] == group["_id"]
    control.create_room("ops", room_type="p")
    control.add_member("ops", "bot")
    assert store.is_member(control.room_id("ops"), control.user("bot")["_id"])
    control.remove_member("ops", "bot")
    assert not store.is_member(control.room_id("ops"), control.user("bot")["_id"])
    with pytest.raises(NotFound):
        control.room("nope")
    with pytest.raises(ValueError, match="room_type"):
        control.create_room("x", room_type="d")


def test_send_rules_apply_to_posted_messages(control: SandboxControl) -> None:
    control.create_user("alice")
    control.create_room("secret", room_type="p")
    with pytest.raises(MeteorError) as denied:
        control.post_message("alice", "secret", "hi")
    assert denied.value.error == "error-not-allowed"
    assert control.post_message("alice", "secret", "forced", check_access=False)["msg"] == "forced"


# --- integrations --------------------------------------------------------------------------------------


def test_integration_documents(control: SandboxControl) -> None:
    control.create_user("admin", roles=["admin"])
    control.create_user("owen")
    control.create_user("rocket.cat", roles=["bot"])
    incoming = control.create_incoming_integration(
        "Guggy", channel="#general, #ops", created_by="owen", script="x", script_enabled=True
    )
    assert incoming["type"] == "webhook-incoming" and incoming["channel"] == ["#general", "#ops"]
    assert len(incoming["token"]) == 48 and incoming["_createdBy"]["username"] == "owen"
    assert incoming["userId"] == control.user("rocket.cat")["_id"] and incoming["scriptCompiled"] == "x"
    assert len(incoming["_id"]) == 24 and incoming["_createdAt"].endswith("Z")
    outgoing = control.create_outgoing_integration(
        "Guggy", channel=["#general"], urls=["http://x"], trigger_words=["!guggy", ""], retry_failed_calls=True
    )
    assert outgoing["triggerWords"] == ["!guggy"]
    assert (outgoing["retryCount"], outgoing["retryDelay"]) == (4, "powers-of-ten")
    assert "token" not in outgoing  # the server never invents an outgoing token
    plain = control.create_outgoing_integration("No words", channel="#general", urls=["http://x"], token="t")
    assert "triggerWords" not in plain and "retryCount" not in plain and plain["token"] == "t"
    assert [d["name"] for d in control.integrations()] == ["Guggy", "Guggy", "No words"]
    wiped = control.update_integration(outgoing["_id"], {"triggerWords": None}, ["scriptCompiled"])
    assert wiped["triggerWords"] is None
    raw = control.insert_integration(
        {
            "_id": "legacy17charid0001",
            "type": "webhook-incoming",
            "name": "Old",
            "_createdAt": "2020-01-01T00:00:00.000Z",
        }
    )
    assert raw["_createdAt"] == "2020-01-01T00:00:00.000Z"
    assert control.integration("legacy17charid0001")["name"] == "Old"
    control.delete_integration("legacy17charid0001")
    with pytest.raises(NotFound):
        control.integration("legacy17charid0001")


def test_settings_and_configuration(control: SandboxControl) -> None:
    control.set_setting("Message_AllowUnrecognizedSlashCommand", True)
    assert control.setting("Message_AllowUnrecognizedSlashCommand") is True
    assert control.configure(update_mode="legacy", rate_limit=True) == {
        "update_mode": "legacy",
        "omitted_as_null": True,
        "rate_limit": True,
    }
    assert control.config.update_mode == "legacy"
    with pytest.raises(ValueError, match="update_mode"):
        control.configure(update_mode="6.x")


# --- waiting for messages --------------------------------------------------------------------------


def test_wait_returns_an_existing_message(control: SandboxControl) -> None:
    control.create_user("bot", roles=["bot"])
    control.create_room("general", members=["bot"])
    control.post_message("bot", "general", "already here")
    found = control.wait_for_message("general", lambda m: m["msg"] == "already here", timeout=0)
    assert found["u"]["username"] == "bot"


def test_wait_sees_future_messages_and_updates_from_other_threads(control: SandboxControl) -> None:
    control.create_user("alice")
    control.create_user("bot", roles=["bot"])
    control.create_room("general", members=["alice", "bot"])
    control.create_room("other", members=["alice", "bot"])
    question = control.post_message("alice", "general", "question")
    go = threading.Event()

    def bot_works() -> None:
        go.wait(5)
        control.post_message("bot", "other", "wrong room: reply")
        control.post_message("bot", "general", "working on it", tmid=question["_id"])
        control.edit_message(question["_id"], "question (answered)")

    worker = threading.Thread(target=bot_works)
    worker.start()
    go.set()
    reply = control.wait_for_message("general", lambda m: m["msg"].endswith("reply") or m.get("tmid") is not None, 5)
    assert reply["msg"] == "working on it"
    edited = control.wait_for_message("general", lambda m: m.get("editedAt") is not None, 5)
    assert edited["_id"] == question["_id"]
    worker.join()


def test_wait_times_out(control: SandboxControl) -> None:
    control.create_room("general")
    with pytest.raises(TimeoutError):
        control.wait_for_message("general", lambda m: True, timeout=0.05)


# --- the same through both doors -------------------------------------------------------------------


def test_same_operations_in_process_and_over_http(driver: Driver, server: SandboxServer) -> None:
    alice, bot = unique("alice"), unique("bot")
    creds = driver.create_user(alice, password="pw", roles=["user"])
    assert creds.username == alice and creds.password == "pw" and creds.roles == ("user",)
    assert server.store.user_by_resume_token(creds.auth_token) is not None
    driver.create_user(bot, roles=["bot"], personal_access_token=True)
    room = unique("room")
    created = driver.create_room(room, members=[alice, bot])
    assert driver.room_id(room) == created["_id"] == driver.room(room)["_id"]
    message = driver.post_message(alice, room, "hello")
    assert driver.messages(room)[-1] == message
    hook = driver.create_incoming_integration(unique("hook"), channel=f"#{room}", created_by=alice, username=bot)
    assert driver.integration(hook["_id"]) == hook
    assert driver.post_webhook_message(hook["_id"], "ping")["bot"] == {"i": hook["_id"]}
    out = driver.create_outgoing_integration(
        unique("out"), channel=f"#{room}", urls=["http://x"], created_by=alice, username=bot, trigger_words=["!x"]
    )
    assert out["triggerWords"] == ["!x"]
    assert driver.set_user_roles(alice, ["user", "ops"]) == ["user", "ops"]
    assert driver.user(alice)["roles"] == ["user", "ops"]
    renamed = unique("renamed")
    driver.rename_user(alice, renamed)
    assert driver.user(renamed)["_id"] == creds.user_id
    role = unique("role")
    driver.create_role(role, permissions=["manage-own-incoming-integrations"])
    assert role in driver.permission_roles("manage-own-incoming-integrations")
    driver.set_setting("Message_AllowUnrecognizedSlashCommand", True)
    assert driver.setting("Message_AllowUnrecognizedSlashCommand") is True
    with pytest.raises(NotFound):
        driver.user("nobody-at-all")
    with pytest.raises(MeteorError) as failed:
        driver.create_user(renamed)
    assert failed.value.error == "error-field-unavailable"


def test_faults_and_counters_through_both_doors(driver: Driver, server: SandboxServer) -> None:
    driver.clear_faults()
    driver.reset_counters()
    driver.fail_next("integrations.get", 1, "429", retry_after=1)
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/v1/integrations.get").status_code == 429
        assert http.get("/api/info").status_code == 200
    counters = driver.counters()
    assert counters.rest == {"integrations.get": 1, "info": 1}
    driver.set_latency(0, None)
    driver.refuse_connections(0)
    assert driver.drop_connections() == 0
    driver.reset_counters()
    assert driver.counters().rest == {}


def test_wait_for_message_over_http(server: SandboxServer) -> None:
    room, user = unique("room"), unique("user")
    server.control.create_user(user)
    server.control.create_room(room, members=[user])
    with SandboxClient(server.url, server.control_secret) as client:
        timer = threading.Timer(0.05, server.control.post_message, args=(user, room, "late reply"))
        timer.start()
        found = client.wait_for_message(room, lambda m: m["msg"] == "late reply", timeout=5)
        timer.join()
        assert found["u"]["username"] == user
        with pytest.raises(TimeoutError):
            client.wait_for_message(room, lambda m: m["msg"] == "never", timeout=0.1)


def test_http_control_needs_the_secret_and_known_operations(server: SandboxServer) -> None:
    with SandboxClient(server.url, "wrong-secret") as client, pytest.raises(ControlError, match="401"):
        client.counters()
    with httpx.Client(base_url=server.url, headers={"X-Sandbox-Secret": server.control_secret}) as http:
        response = http.post("/_sandbox/close", json={})  # exists on SandboxControl, not exposed
        assert response.status_code == 404
        response = http.post("/_sandbox/create_user", json={"username": unique("u"), "bogus": 1})
        assert response.status_code == 400
        response = http.post("/_sandbox/create_user", content=b"[1]")
        assert response.status_code == 400


def test_the_client_mirrors_every_control_method() -> None:
    methods = {n for n, v in vars(SandboxControl).items() if callable(v) and not n.startswith("_")}
    assert methods - {"close", "wait_for_message"} == HTTP_OPERATIONS
    for name in methods:
        ours, theirs = inspect.signature(getattr(SandboxControl, name)), inspect.signature(getattr(SandboxClient, name))
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
            (p.name, p.kind, p.default) for p in theirs.parameters.values()
        ], name
