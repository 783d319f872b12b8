"""The DDP session object, driven by feeding JSON frames (no sockets)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.config import SandboxConfig
from sandbox.ddp import DDPSession, State, SubscriptionTrash
from sandbox.ids import epoch_ms, password_digest
from sandbox.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Store:
    s = Store(clock=clock)
    s.create_user("alice", password="alice-pw", user_id="ALICE")
    s.create_user("bot", password="bot-pw", roles=["bot"], user_id="BOT")
    s.create_user("carol", password="carol-pw", user_id="CAROL")
    s.create_room("general", members=["alice", "bot"], room_id="GENERAL")
    s.create_room("random", members=["alice"], room_id="RANDOM")
    s.create_room("secret", "p", members=["alice"], room_id="SECRET")
    return s


def frames(session: DDPSession) -> list[dict[str, Any]]:
    return [json.loads(f) for f in session.data_to_send()]


def send(session: DDPSession, frame: dict[str, Any] | str, now: float = 0.0) -> list[dict[str, Any]]:
    session.feed(frame if isinstance(frame, str) else json.dumps(frame), now)
    return frames(session)


def connected(store: Store, config: SandboxConfig | None = None, **kwargs: Any) -> DDPSession:
    """A connected session that sees store events synchronously (the realtime hub's job)."""
    session = DDPSession(store, config or SandboxConfig(), **kwargs)
    store.add_listener(session.deliver)
    out = send(session, {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
    assert out[0]["msg"] == "connected"
    return session


def login(session: DDPSession, store: Store, username: str) -> str:
    user = store.find_user(username)
    assert user is not None
    token = store.create_login_token(user._id)
    out = send(session, {"msg": "method", "method": "login", "id": "L", "params": [{"resume": token}]})
    assert any(f.get("msg") == "result" and "result" in f for f in out), out
    return token


def sub(session: DDPSession, name: str, *params: Any, sub_id: str = "s1") -> list[dict[str, Any]]:
    return send(session, {"msg": "sub", "id": sub_id, "name": name, "params": list(params)})


def changed(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in out if f["msg"] == "changed"]


# --- handshake ---------------------------------------------------------------------------------------


def test_connect_answers_connected_with_a_session_id(store: Store) -> None:
    session = DDPSession(store, SandboxConfig(), session_id="S1")
    out = send(session, {"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
    assert out == [{"msg": "connected", "session": "S1"}]
    assert session.state is State.CONNECTED and session.close_code is None


@pytest.mark.parametrize(
    ("connect", "wanted"),
    [
        ({"msg": "connect", "version": "2", "support": ["2"]}, "1"),  # nothing in common: server's favourite
        ({"msg": "connect", "version": "1", "support": ["pre2"]}, "1"),  # version not in its own support list
        ({"msg": "connect", "version": "1", "support": ["pre2", "1"]}, "pre2"),  # client prefers pre2
        ({"msg": "connect", "version": "1"}, "1"),  # support missing
        ({"msg": "connect", "version": 1, "support": [1]}, "1"),  # not strings
    ],
)
def test_unacceptable_connect_is_failed_and_closed(store: Store, connect: dict[str, Any], wanted: str) -> None:
    session = DDPSession(store, SandboxConfig())
    assert send(session, connect) == [{"msg": "failed", "version": wanted}]
    assert session.state is State.CLOSED and session.close_code == 1000
    assert send(session, {"msg": "connect", "version": "1", "support": ["1"]}) == []


def test_second_connect_is_an_error(store: Store) -> None:
    session = connected(store)
    frame = {"msg": "connect", "version": "1", "support": ["1"]}
    assert send(session, frame) == [{"msg": "error", "reason": "Already connected", "offendingMessage": frame}]


def test_anything_before_connect_must_connect_first(store: Store) -> None:
    session = DDPSession(store, SandboxConfig())
    frame = {"msg": "method", "method": "login", "id": "1", "params": []}
    assert send(session, frame) == [{"msg": "error", "reason": "Must connect first", "offendingMessage": frame}]
    ping = {"msg": "ping", "id": "p"}
    assert send(session, ping) == [{"msg": "error", "reason": "Must connect first", "offendingMessage": ping}]


@pytest.mark.parametrize("connect_first", [False, True])
def test_parse_error_and_bad_request(store: Store, connect_first: bool) -> None:
    session = connected(store) if connect_first else DDPSession(store, SandboxConfig())
    assert send(session, "{not json") == [{"msg": "error", "reason": "Parse error"}]
    assert send(session, "42") == [{"msg": "error", "reason": "Bad request"}]
    assert send(session, "null") == [{"msg": "error", "reason": "Bad request"}]
    assert send(session, {"id": "x"}) == [{"msg": "error", "reason": "Bad request", "offendingMessage": {"id": "x"}}]


def test_unknown_message_type_is_a_bad_request(store: Store) -> None:
    session = connected(store)
    frame = {"msg": "frobnicate"}
    assert send(session, frame) == [{"msg": "error", "reason": "Bad request", "offendingMessage": frame}]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_any_json_before_connect_gets_exactly_one_answer(value: Any) -> None:
    session = DDPSession(Store(), SandboxConfig())
    session.feed(json.dumps(value))
    out = frames(session)
    assert len(out) == 1
    assert out[0]["msg"] in {"error", "connected", "failed"}


# --- ping / pong / heartbeat -----------------------------------------------------------------------


def test_client_ping_gets_pong_echoing_the_id(store: Store) -> None:
    session = connected(store)
    assert send(session, {"msg": "ping", "id": "abc"}) == [{"msg": "pong", "id": "abc"}]
    assert send(session, {"msg": "ping"}) == [{"msg": "pong"}]
    assert send(session, {"msg": "pong"}) == []


def test_pre1_sessions_have_no_ping_and_no_heartbeat(store: Store) -> None:
    session = DDPSession(store, SandboxConfig(heartbeat_interval=1, heartbeat_timeout=1))
    assert send(session, {"msg": "connect", "version": "pre1", "support": ["pre1"]})[0]["msg"] == "connected"
    assert send(session, {"msg": "ping"}) == [
        {"msg": "error", "reason": "Bad request", "offendingMessage": {"msg": "ping"}}
    ]
    assert session.next_timer() is None


def test_heartbeat_pings_after_silence_and_closes_after_timeout(store: Store) -> None:
    session = DDPSession(store, SandboxConfig(heartbeat_interval=10, heartbeat_timeout=5))
    assert session.next_timer() is None  # no heartbeat before the handshake
    send(session, {"msg": "connect", "version": "1", "support": ["1"]}, now=100.0)
    assert session.next_timer() == 110.0
    session.on_timer(109.0)
    assert frames(session) == []
    session.on_timer(110.0)
    assert frames(session) == [{"msg": "ping"}]
    assert session.next_timer() == 115.0
    session.on_timer(114.9)
    assert session.close_code is None
    session.on_timer(115.0)
    assert session.close_code == 1000 and session.state is State.CLOSED


def test_any_client_traffic_postpones_the_heartbeat(store: Store) -> None:
    session = DDPSession(store, SandboxConfig(heartbeat_interval=10, heartbeat_timeout=5))
    send(session, {"msg": "connect", "version": "1", "support": ["1"]}, now=0.0)
    session.on_timer(10.0)
    assert frames(session) == [{"msg": "ping"}]
    assert send(session, {"msg": "pong"}, now=12.0) == []
    assert session.next_timer() == 22.0
    session.on_timer(15.0)  # the old timeout no longer applies
    assert session.close_code is None
    send(session, {"msg": "method", "method": "rooms/get", "id": "1"}, now=20.0)
    assert session.next_timer() == 30.0


def test_heartbeat_disabled_with_zero_interval(store: Store) -> None:
    session = connected(store, SandboxConfig(heartbeat_interval=0))
    assert session.next_timer() is None


# --- methods -------------------------------------------------------------------------------------


def test_unknown_method_is_404_then_updated(store: Store) -> None:
    session = connected(store)
    out = send(session, {"msg": "method", "method": "nope", "id": "7", "params": []})
    assert out == [
        {
            "msg": "result",
            "id": "7",
            "error": {
                "isClientSafe": True,
                "error": 404,
                "reason": "Method 'nope' not found",
                "message": "Method 'nope' not found [404]",
                "errorType": "Meteor.Error",
            },
        },
        {"msg": "updated", "methods": ["7"]},
    ]


@pytest.mark.parametrize(
    "frame",
    [
        {"msg": "method", "method": "login", "id": 7},
        {"msg": "method", "id": "7"},
        {"msg": "method", "method": "login", "id": "7", "params": {"a": 1}},
        {"msg": "method", "method": "login", "id": "7", "params": [], "randomSeed": 5},
    ],
)
def test_malformed_method_invocation(store: Store, frame: dict[str, Any]) -> None:
    session = connected(store)
    assert send(session, frame) == [
        {"msg": "error", "reason": "Malformed method invocation", "offendingMessage": frame}
    ]


def test_internal_errors_are_sanitised(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    session = connected(store)
    login(session, store, "alice")

    def boom(user_id: str) -> list[dict[str, Any]]:
        raise KeyError("secret-token-value")

    monkeypatch.setattr(store, "user_rooms", boom)
    out = send(session, {"msg": "method", "method": "rooms/get", "id": "9", "params": []})
    assert out[0]["error"] == {
        "isClientSafe": True,
        "error": 500,
        "reason": "Internal server error",
        "message": "Internal server error [500]",
        "errorType": "Meteor.Error",
    }
    assert "secret-token-value" not in json.dumps(out)
    assert out[1] == {"msg": "updated", "methods": ["9"]}


# --- login / logout ------------------------------------------------------------------------------


def test_resume_login_returns_id_token_expiry_and_type(store: Store, clock: Clock) -> None:
    session = connected(store)
    token = store.create_login_token("ALICE")
    clock.advance(60)
    out = send(session, {"msg": "method", "method": "login", "id": "1", "params": [{"resume": token}]})
    added, result, updated = out
    assert added["msg"] == "added" and added["collection"] == "users" and added["id"] == "ALICE"
    assert added["fields"]["username"] == "alice"
    issued = clock.now - timedelta(seconds=60)
    assert result == {
        "msg": "result",
        "id": "1",
        "result": {
            "id": "ALICE",
            "token": token,
            "tokenExpires": {"$date": epoch_ms(issued + timedelta(days=90))},
            "type": "resume",
        },
    }
    assert updated == {"msg": "updated", "methods": ["1"]}
    assert session.user_id == "ALICE"


def test_resume_login_with_a_personal_access_token(store: Store) -> None:
    session = connected(store)
    pat = store.create_login_token("BOT", kind="personalAccessToken", name="ci")
    out = send(session, {"msg": "method", "method": "login", "id": "1", "params": [{"resume": pat}]})
    assert out[1]["result"]["id"] == "BOT"


@pytest.mark.parametrize(
    "selector", [{"username": "alice"}, {"email": "alice@example.org"}, {"id": "ALICE"}, "alice", "alice@example.org"]
)
def test_password_login_creates_a_new_usable_token(store: Store, selector: Any) -> None:
    session = connected(store)
    params = [{"user": selector, "password": {"digest": password_digest("alice-pw"), "algorithm": "sha-256"}}]
    out = send(session, {"msg": "method", "method": "login", "id": "1", "params": params})
    result = out[1]["result"]
    assert result["id"] == "ALICE" and result["type"] == "password"
    user = store.user_by_resume_token(result["token"])
    assert user is not None and user._id == "ALICE"


def test_password_login_accepts_an_upper_case_digest_and_plaintext(store: Store) -> None:
    session = connected(store)
    digest = password_digest("alice-pw").upper()
    params = [{"user": {"username": "alice"}, "password": {"digest": digest, "algorithm": "sha-256"}}]
    assert "result" in send(session, {"msg": "method", "method": "login", "id": "1", "params": params})[1]
    params = [{"user": {"username": "alice"}, "password": "alice-pw"}]
    assert "result" in send(session, {"msg": "method", "method": "login", "id": "2", "params": params})[0]


@pytest.mark.parametrize(
    "params",
    [
        [{"resume": "not-a-token"}],
        [{"user": {"username": "alice"}, "password": {"digest": password_digest("wrong"), "algorithm": "sha-256"}}],
        [{"user": {"username": "nobody"}, "password": {"digest": password_digest("x"), "algorithm": "sha-256"}}],
        [{"user": {"email": "nobody@example.org"}, "password": "x"}],
    ],
)
def test_every_login_failure_is_401_user_not_found(store: Store, params: list[Any]) -> None:
    session = connected(store)
    out = send(session, {"msg": "method", "method": "login", "id": "1", "params": params})
    assert out[0]["error"]["error"] == 401
    assert out[0]["error"]["reason"] == "User not found"
    assert out[1] == {"msg": "updated", "methods": ["1"]}
    assert session.user_id is None


def test_login_with_unknown_options_and_bad_shapes(store: Store) -> None:
    session = connected(store)
    out = send(session, {"msg": "method", "method": "login", "id": "1", "params": [{"oauth": {}}]})
    assert out[0]["error"]["error"] == 400
    assert out[0]["error"]["reason"] == "Unrecognized options for login request"
    out = send(session, {"msg": "method", "method": "login", "id": "2", "params": ["token"]})
    assert out[0]["error"]["reason"] == "Match failed"
    out = send(
        session, {"msg": "method", "method": "login", "id": "3", "params": [{"user": {"a": "b"}, "password": "x"}]}
    )
    assert out[0]["error"]["reason"] == "Match failed"


def test_logout_destroys_the_login_token(store: Store) -> None:
    session = connected(store)
    token = login(session, store, "alice")
    out = send(session, {"msg": "method", "method": "logout", "id": "2", "params": []})
    assert out == [
        {"msg": "removed", "collection": "users", "id": "ALICE"},
        {"msg": "result", "id": "2"},
        {"msg": "updated", "methods": ["2"]},
    ]
    assert session.user_id is None
    assert store.user_by_resume_token(token) is None


def test_logout_stops_subscriptions_that_need_a_user(store: Store) -> None:
    session = connected(store)
    login(session, store, "alice")
    sub(session, "stream-notify-user", "ALICE/rooms-changed", False, sub_id="u")
    sub(session, "stream-room-messages", "__my_messages__", False, sub_id="m")
    out = send(session, {"msg": "method", "method": "logout", "id": "2", "params": []})
    nosubs = [f for f in out if f["msg"] == "nosub"]
    assert [(f["id"], f["error"]["error"]) for f in nosubs] == [("u", "not-allowed")]
    assert {"msg": "ready", "subs": ["m"]} in out


# --- subscriptions --------------------------------------------------------------------------------


def test_unknown_publication_is_nosub_404(store: Store) -> None:
    session = connected(store)
    out = sub(session, "meteor.loginServiceConfiguration")
    assert out == [
        {
            "msg": "nosub",
            "id": "s1",
            "error": {
                "isClientSafe": True,
                "error": 404,
                "reason": "Subscription 'meteor.loginServiceConfiguration' not found",
                "message": "Subscription 'meteor.loginServiceConfiguration' not found [404]",
                "errorType": "Meteor.Error",
            },
        }
    ]


NOT_ALLOWED = {"isClientSafe": True, "error": "not-allowed", "message": "[not-allowed]", "errorType": "Meteor.Error"}


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("stream-room-messages", "SECRET"),  # a private group the bot is not in
        ("stream-room-messages", "NO-SUCH-ROOM"),
        ("stream-notify-user", "ALICE/rooms-changed"),  # someone else's user stream
        ("stream-notify-room", "RANDOM/deleteMessage"),  # not a member
    ],
)
def test_read_not_allowed_is_nosub_with_error(store: Store, name: str, event: str) -> None:
    session = connected(store)
    login(session, store, "bot")
    assert sub(session, name, event, {"useCollection": False, "args": []}) == [
        {"msg": "nosub", "id": "s1", "error": NOT_ALLOWED}
    ]
    assert session.subscriptions == {}


def test_streams_that_need_a_login_refuse_anonymous_sessions(store: Store) -> None:
    session = connected(store)
    for name, event in [
        ("stream-notify-logged", "permissions-changed"),
        ("stream-room-messages", "GENERAL"),
        ("stream-notify-user", "ALICE/message"),
    ]:
        assert sub(session, name, event, False)[0]["error"] == NOT_ALLOWED


def test_my_messages_is_allowed_without_login_but_delivers_nothing(store: Store) -> None:
    session = connected(store)
    assert sub(session, "stream-room-messages", "__my_messages__", False) == [{"msg": "ready", "subs": ["s1"]}]
    store.send_message("ALICE", "GENERAL", "hello")
    assert frames(session) == []


def test_bad_event_names(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    assert sub(session, "stream-room-messages", 42)[0]["error"]["reason"] == "Match failed"
    assert sub(session, "stream-room-messages", "", sub_id="s2")[0]["error"]["error"] == "invalid-event-name"


def test_unsub_answers_nosub_without_error(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    assert sub(session, "stream-room-messages", "GENERAL", False) == [{"msg": "ready", "subs": ["s1"]}]
    assert send(session, {"msg": "unsub", "id": "s1"}) == [{"msg": "nosub", "id": "s1"}]
    store.send_message("ALICE", "GENERAL", "after unsub")
    assert frames(session) == []
    assert send(session, {"msg": "unsub", "id": "never"}) == [{"msg": "nosub", "id": "never"}]


def test_duplicate_sub_id_is_ignored(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "GENERAL", False)
    assert sub(session, "stream-room-messages", "GENERAL", False) == []
    store.send_message("ALICE", "GENERAL", "once")
    assert len(changed(frames(session))) == 1


def test_use_collection_sends_added_first(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    out = sub(session, "stream-room-messages", "GENERAL", {"useCollection": True, "args": []})
    assert out == [
        {"msg": "added", "collection": "stream-room-messages", "id": "id", "fields": {"eventName": "GENERAL"}},
        {"msg": "ready", "subs": ["s1"]},
    ]


@pytest.mark.parametrize("options", [False, {"useCollection": False, "args": []}, None])
def test_legacy_boolean_and_missing_options_mean_no_collection(store: Store, options: Any) -> None:
    session = connected(store)
    login(session, store, "bot")
    params = ["GENERAL"] if options is None else ["GENERAL", options]
    assert sub(session, "stream-room-messages", *params) == [{"msg": "ready", "subs": ["s1"]}]


# --- stream events ---------------------------------------------------------------------------------


def test_room_stream_delivers_new_messages_as_changed(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "GENERAL", False)
    message = store.send_message("ALICE", "GENERAL", "/integration disable Guggy")
    (event,) = frames(session)
    assert event["msg"] == "changed" and event["collection"] == "stream-room-messages" and event["id"] == "id"
    assert event["fields"]["eventName"] == "GENERAL"
    (delivered,) = event["fields"]["args"]
    assert delivered["_id"] == message["_id"]
    assert delivered["msg"] == "/integration disable Guggy"
    assert delivered["u"] == {"_id": "ALICE", "username": "alice"}
    assert delivered["ts"] == {"$date": epoch_ms(message["ts"])}


def test_my_messages_meta_for_channels_groups_and_dms(store: Store) -> None:
    store.create_room("ops", "p", members=["alice", "bot"], room_id="OPS")
    dm = store.create_direct("alice", "bot")
    group_dm = store.create_direct("alice", "bot", "carol")
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "__my_messages__", {"useCollection": False, "args": []})
    frames(session)
    store.send_message("ALICE", "GENERAL", "in general")
    store.send_message("ALICE", "RANDOM", "in random")  # public, bot is not a member
    store.send_message("ALICE", "SECRET", "in secret")  # private, bot is not a member: never delivered
    store.send_message("ALICE", "OPS", "in ops")
    store.send_message("ALICE", dm["_id"], "in dm")
    store.send_message("ALICE", group_dm["_id"], "in a group dm")  # the same meta: members are not in it
    metas = [(e["fields"]["args"][0]["msg"], e["fields"]["args"][1]) for e in changed(frames(session))]
    assert metas == [
        ("in general", {"roomParticipant": True, "roomType": "c", "roomName": "general"}),
        ("in random", {"roomParticipant": False, "roomType": "c", "roomName": "random"}),
        ("in ops", {"roomParticipant": True, "roomType": "p", "roomName": "ops"}),
        ("in dm", {"roomParticipant": True, "roomType": "d"}),
        ("in a group dm", {"roomParticipant": True, "roomType": "d"}),
    ]
    assert all(e["fields"]["eventName"] == "__my_messages__" for e in changed(frames(session)))


def test_access_is_evaluated_at_delivery_time(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "__my_messages__", False)
    store.send_message("ALICE", "SECRET", "before")
    assert changed(frames(session)) == []
    store.add_member("SECRET", "bot")
    frames(session)
    store.send_message("ALICE", "SECRET", "after")
    (event,) = changed(frames(session))
    assert event["fields"]["args"][0]["msg"] == "after"
    assert event["fields"]["args"][1]["roomParticipant"] is True


def test_updates_are_redelivered_with_the_same_id(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "__my_messages__", False)
    parent = store.send_message("ALICE", "GENERAL", "parent")
    store.edit_message(parent["_id"], "parent edited")
    store.react(parent["_id"], ":+1:", "bot")
    reply = store.send_message("ALICE", "GENERAL", "reply", tmid=parent["_id"])
    delivered = [e["fields"]["args"][0] for e in changed(frames(session))]
    assert [m["_id"] for m in delivered] == [parent["_id"], parent["_id"], parent["_id"], reply["_id"], parent["_id"]]
    assert delivered[1]["msg"] == "parent edited" and "editedAt" in delivered[1]
    assert delivered[2]["reactions"] == {":+1:": {"usernames": ["bot"]}}
    assert delivered[3]["tmid"] == parent["_id"]
    assert delivered[4]["tcount"] == 1


def test_one_frame_per_subscription_per_event(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "__my_messages__", False, sub_id="a")
    sub(session, "stream-room-messages", "GENERAL", False, sub_id="b")
    store.send_message("ALICE", "GENERAL", "x")
    names = [e["fields"]["eventName"] for e in changed(frames(session))]
    assert sorted(names) == ["GENERAL", "__my_messages__"]


def test_notify_user_subscription_and_room_changes(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-notify-user", "BOT/subscriptions-changed", False, sub_id="subs")
    sub(session, "stream-notify-user", "BOT/rooms-changed", False, sub_id="rooms")
    frames(session)
    store.add_member("RANDOM", "bot")
    events = changed(frames(session))
    sub_event = next(e for e in events if e["fields"]["eventName"] == "BOT/subscriptions-changed")
    action, subscription = sub_event["fields"]["args"]
    assert action == "inserted" and subscription["rid"] == "RANDOM" and subscription["u"]["_id"] == "BOT"
    room_events = [e for e in events if e["fields"]["eventName"] == "BOT/rooms-changed"]
    assert room_events[0]["fields"]["args"][0] == "inserted"
    assert room_events[0]["fields"]["args"][1]["_id"] == "RANDOM"
    store.create_room("other", members=["alice"])  # someone else's room: nothing for the bot
    assert changed(frames(session)) == []


def test_a_new_message_updates_the_room_for_members_only(store: Store) -> None:
    sessions = {}
    for user in ("alice", "bot", "carol"):
        session = connected(store)
        login(session, store, user)
        uid = store.find_user(user)._id  # type: ignore[union-attr]
        sub(session, "stream-notify-user", f"{uid}/rooms-changed", False, sub_id="rooms")
        frames(session)
        sessions[user] = session
    store.send_message("ALICE", "GENERAL", "hello")
    for user, expected in (("alice", ["ALICE"]), ("bot", ["BOT"]), ("carol", [])):
        events = changed(frames(sessions[user]))
        assert [e["fields"]["eventName"].split("/")[0] for e in events] == expected, user
        for event in events:
            action, room = event["fields"]["args"]
            assert action == "updated" and room["_id"] == "GENERAL"
            assert room["lastMessage"]["msg"] == "hello"
    store.remove_member("GENERAL", "bot")  # left: later messages no longer change its rooms
    frames(sessions["bot"])
    store.send_message("ALICE", "GENERAL", "again")
    assert changed(frames(sessions["bot"])) == []


def test_notify_user_message_stream_gets_ephemeral_send_failures(store: Store) -> None:
    notices: list[tuple[str, dict[str, Any]]] = []
    session = connected(store, ephemeral=lambda uid, msg: notices.append((uid, msg)))
    login(session, store, "bot")
    sub(session, "stream-notify-user", "BOT/message", False)
    out = send(
        session, {"msg": "method", "method": "sendMessage", "id": "m", "params": [{"rid": "SECRET", "msg": "x"}]}
    )
    assert out[0]["error"]["error"] == "error-not-allowed"
    ((uid, notice),) = notices
    assert uid == "BOT" and notice["private"] is True and notice["rid"] == "SECRET"
    session.deliver_ephemeral(uid, notice)
    (event,) = changed(frames(session))
    assert event["collection"] == "stream-notify-user" and event["fields"]["eventName"] == "BOT/message"
    assert event["fields"]["args"][0]["msg"] == notice["msg"]


def test_notify_logged_permissions_and_roles(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-notify-logged", "permissions-changed", False, sub_id="p")
    sub(session, "stream-notify-logged", "roles-change", False, sub_id="r")
    frames(session)
    store.set_permission_roles("manage-incoming-integrations", ["admin", "ops"])
    store.set_user_roles("ALICE", ["user", "ops"])
    perm_event, role_event = changed(frames(session))
    assert perm_event["collection"] == "stream-notify-logged"
    assert perm_event["fields"]["eventName"] == "permissions-changed"
    action, doc = perm_event["fields"]["args"]
    assert action == "updated" and doc["_id"] == "manage-incoming-integrations" and doc["roles"] == ["admin", "ops"]
    assert set(doc["_updatedAt"]) == {"$date"}
    assert role_event["fields"] == {
        "eventName": "roles-change",
        "args": [{"type": "added", "_id": "ops", "u": {"_id": "ALICE", "username": "alice", "name": "Alice"}}],
    }


def test_notify_room_delete_message(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-notify-room", "GENERAL/deleteMessage", False)
    message = store.send_message("ALICE", "GENERAL", "oops")
    store.delete_message(message["_id"])
    (event,) = changed(frames(session))
    assert event["collection"] == "stream-notify-room"
    assert event["fields"] == {"eventName": "GENERAL/deleteMessage", "args": [{"_id": message["_id"]}]}


# --- rooms/get, subscriptions/get, sendMessage -------------------------------------------------------


def test_rooms_and_subscriptions_get_without_date_are_plain_arrays(store: Store) -> None:
    session = connected(store)
    out = send(session, {"msg": "method", "method": "rooms/get", "id": "a", "params": []})
    assert out[0] == {"msg": "result", "id": "a", "result": []}  # not logged in
    login(session, store, "bot")
    out = send(session, {"msg": "method", "method": "rooms/get", "id": "b", "params": []})
    assert [r["_id"] for r in out[0]["result"]] == ["GENERAL"]
    out = send(session, {"msg": "method", "method": "subscriptions/get", "id": "c", "params": []})
    (subscription,) = out[0]["result"]
    assert subscription["rid"] == "GENERAL" and set(subscription["_updatedAt"]) == {"$date"}


def test_updated_since_returns_update_and_remove(store: Store, clock: Clock) -> None:
    trash = SubscriptionTrash()
    store.add_listener(
        lambda e: (
            trash.record(e.user_id, e.subscription["_id"], store.clock())
            if getattr(e, "action", None) == "removed" and hasattr(e, "subscription")
            else None
        )
    )
    session = connected(store, trash=trash)
    login(session, store, "bot")
    clock.advance(10)
    since = {"$date": epoch_ms(clock.now)}
    clock.advance(10)
    store.add_member("RANDOM", "bot")
    general_sub = store.subscription("GENERAL", "BOT")
    assert general_sub is not None
    store.remove_member("GENERAL", "bot")
    out = send(session, {"msg": "method", "method": "subscriptions/get", "id": "s", "params": [since]})
    result = out[0]["result"]
    assert [s["rid"] for s in result["update"]] == ["RANDOM"]
    assert result["remove"] == [{"_id": general_sub["_id"], "_deletedAt": {"$date": epoch_ms(clock.now)}}]
    out = send(session, {"msg": "method", "method": "rooms/get", "id": "r", "params": [since]})
    assert [r["_id"] for r in out[0]["result"]["update"]] == ["RANDOM"]
    assert out[0]["result"]["remove"] == []


def test_send_message_stores_and_returns_the_message(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    params = [{"_id": "client-id-1", "rid": "GENERAL", "msg": "hello @alice"}]
    out = send(session, {"msg": "method", "method": "sendMessage", "id": "m", "params": params})
    result = out[0]["result"]
    assert result["_id"] == "client-id-1" and result["u"]["username"] == "bot"
    assert result["mentions"][0]["username"] == "alice"
    assert set(result["ts"]) == {"$date"}
    assert out[1] == {"msg": "updated", "methods": ["m"]}
    assert store.get_message("client-id-1") is not None


def test_send_message_in_a_thread_takes_the_room_from_the_parent(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    parent = store.send_message("ALICE", "GENERAL", "parent")
    params = [{"rid": "GENERAL", "msg": "reply", "tmid": parent["_id"], "tshow": True}]
    out = send(session, {"msg": "method", "method": "sendMessage", "id": "m", "params": params})
    assert out[0]["result"]["tmid"] == parent["_id"] and out[0]["result"]["tshow"] is True


@pytest.mark.parametrize(
    "message",
    [
        {"rid": "GENERAL", "msg": "x", "attachments": []},  # not in the whitelist
        {"rid": "GENERAL", "msg": "x", "alias": "someone"},
        {"rid": "GENERAL", "msg": 5},
        {"rid": "GENERAL", "msg": "x", "tshow": "yes"},
        {"rid": "GENERAL", "msg": "x", "ts": "2024-01-01"},
    ],
)
def test_send_message_match_check(store: Store, message: dict[str, Any]) -> None:
    session = connected(store)
    login(session, store, "bot")
    out = send(session, {"msg": "method", "method": "sendMessage", "id": "m", "params": [message]})
    assert out[0]["error"]["error"] == 400 and out[0]["error"]["reason"] == "Match failed"
    assert store.room_messages("GENERAL") == []


def test_send_message_errors(store: Store, clock: Clock) -> None:
    session = connected(store)
    out = send(
        session, {"msg": "method", "method": "sendMessage", "id": "1", "params": [{"rid": "GENERAL", "msg": "x"}]}
    )
    assert out[0]["error"]["error"] == "error-invalid-user"
    assert out[0]["error"]["details"] == {"method": "sendMessage"}
    login(session, store, "bot")
    skewed = {"$date": epoch_ms(clock.now) + 120_000}
    params = [{"rid": "GENERAL", "msg": "x", "ts": skewed}]
    out = send(session, {"msg": "method", "method": "sendMessage", "id": "2", "params": params})
    assert out[0]["error"]["error"] == "error-message-ts-out-of-sync"
    out = send(session, {"msg": "method", "method": "sendMessage", "id": "3", "params": [{"msg": "no room"}]})
    assert out[0]["error"]["error"] == 500
    out = send(
        session, {"msg": "method", "method": "sendMessage", "id": "4", "params": [{"rid": "GENERAL", "msg": ""}]}
    )
    assert out[0]["error"]["error"] == "error-invalid-message"
    params = [{"rid": "GENERAL", "msg": "x", "t": "uj"}]
    assert (
        send(session, {"msg": "method", "method": "sendMessage", "id": "5", "params": params})[0]["error"]["error"]
        == 500
    )


def test_events_reach_a_session_only_through_deliver(store: Store) -> None:
    session = DDPSession(store, SandboxConfig())  # not wired to the store: the hub's job
    send(session, {"msg": "connect", "version": "1", "support": ["1"]})
    login(session, store, "bot")
    sub(session, "stream-room-messages", "GENERAL", False)
    events: list[Any] = []
    store.add_listener(events.append)
    out = send(
        session, {"msg": "method", "method": "sendMessage", "id": "m", "params": [{"rid": "GENERAL", "msg": "x"}]}
    )
    assert [f["msg"] for f in out] == ["result", "updated"]
    for event in events:
        session.deliver(event)
    assert [f["msg"] for f in frames(session)] == ["changed"]


def test_closed_session_ignores_everything(store: Store) -> None:
    session = connected(store)
    login(session, store, "bot")
    sub(session, "stream-room-messages", "GENERAL", False)
    session.connection_lost()
    store.send_message("ALICE", "GENERAL", "x")
    assert send(session, {"msg": "ping"}) == []
    assert session.state is State.CLOSED
