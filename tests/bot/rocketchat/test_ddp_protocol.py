"""The DDP protocol core, driven by feeding it JSON text: no sockets, no sleeps."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rocketchat import ddp
from bot.rocketchat.ddp import (
    TRANSITIONS,
    Added,
    Changed,
    Connected,
    DDPProtocol,
    ErrorInfo,
    Failed,
    LocalProtocolError,
    MethodError,
    NoSub,
    Ping,
    Pong,
    Ready,
    Removed,
    Result,
    ServerError,
    State,
    StreamEvent,
    Trigger,
    UnexpectedFrame,
    Updated,
)


def sent(protocol: DDPProtocol) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in protocol.data_to_send()]


def feed(protocol: DDPProtocol, frame: Any) -> list[ddp.Event]:
    return protocol.receive_text(frame if isinstance(frame, str) else json.dumps(frame))


def connected() -> DDPProtocol:
    protocol = DDPProtocol()
    protocol.connect()
    assert feed(protocol, {"msg": "connected", "session": "sess1"}) == [Connected("sess1")]
    protocol.data_to_send()
    return protocol


# --- handshake and lifecycle ---


def test_connect_sends_the_version_handshake() -> None:
    protocol = DDPProtocol()
    assert protocol.state is State.DISCONNECTED
    protocol.connect()
    assert protocol.state is State.CONNECTING
    assert sent(protocol) == [{"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}]
    assert feed(protocol, {"msg": "connected", "session": "abc"}) == [Connected("abc")]
    assert protocol.state is State.CONNECTED


def test_legacy_server_id_frame_is_ignored_in_any_state() -> None:
    protocol = DDPProtocol()
    assert feed(protocol, {"server_id": "0"}) == []
    protocol.connect()
    assert feed(protocol, {"server_id": "0"}) == []
    assert protocol.state is State.CONNECTING
    assert feed(protocol, {"msg": "connected", "session": "s"}) == [Connected("s")]


def test_failed_closes_the_protocol() -> None:
    protocol = DDPProtocol()
    protocol.connect()
    protocol.data_to_send()
    assert feed(protocol, {"msg": "failed", "version": "1"}) == [Failed("1")]
    assert protocol.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        protocol.call("x")


def test_connected_without_session_is_tolerated() -> None:
    protocol = DDPProtocol()
    protocol.connect()
    assert feed(protocol, {"msg": "connected"}) == [Connected(None)]


def test_server_frames_that_make_no_sense_in_the_state_are_reported_not_raised() -> None:
    protocol = DDPProtocol()
    # Before we even connected.
    assert feed(protocol, {"msg": "connected", "session": "s"}) == [
        UnexpectedFrame("not expected while disconnected", "connected")
    ]
    assert protocol.state is State.DISCONNECTED
    protocol.connect()
    # Results cannot precede `connected`.
    assert feed(protocol, {"msg": "result", "id": "1"}) == [UnexpectedFrame("not expected while connecting", "result")]
    feed(protocol, {"msg": "connected", "session": "s"})
    # A second `connected` or a late `failed` does not change anything.
    assert feed(protocol, {"msg": "connected", "session": "t"})[0] == UnexpectedFrame(
        "not expected while connected", "connected"
    )
    assert isinstance(feed(protocol, {"msg": "failed", "version": "1"})[0], UnexpectedFrame)
    assert protocol.state is State.CONNECTED


def test_frames_after_close_are_reported() -> None:
    protocol = connected()
    protocol.close()
    assert feed(protocol, {"msg": "ping"}) == [UnexpectedFrame("not expected while closed", "ping")]
    assert protocol.data_to_send() == []


@pytest.mark.parametrize("action", ["call", "subscribe", "ping"])
def test_using_the_protocol_before_connect_raises(action: str) -> None:
    protocol = DDPProtocol()
    use = {
        "call": lambda: protocol.call("login", [{}]),
        "subscribe": lambda: protocol.subscribe("stream-room-messages"),
        "ping": protocol.ping,
    }[action]
    with pytest.raises(LocalProtocolError, match="connect"):
        use()
    assert protocol.data_to_send() == []


def test_connecting_twice_raises() -> None:
    protocol = DDPProtocol()
    protocol.connect()
    with pytest.raises(LocalProtocolError, match="cannot send connect while connecting"):
        protocol.connect()
    feed(protocol, {"msg": "connected", "session": "s"})
    with pytest.raises(LocalProtocolError):
        protocol.connect()


def test_close_is_idempotent_and_final() -> None:
    protocol = connected()
    protocol.close()
    protocol.close()
    assert protocol.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        protocol.connect()


def test_calls_may_be_pipelined_behind_connect() -> None:
    # Meteor processes frames in order, so a call queued after `connect` is legal.
    protocol = DDPProtocol()
    protocol.connect()
    call_id = protocol.call("login", [{"resume": "t"}])
    frames = sent(protocol)
    assert [f["msg"] for f in frames] == ["connect", "method"]
    assert frames[1]["id"] == call_id


def test_transition_table_is_the_only_way_between_states() -> None:
    # Every pair not in the table is illegal for our own code.
    for state in State:
        for trigger in Trigger:
            assert ((state, trigger) in TRANSITIONS) == (
                trigger is Trigger.CLOSE
                or (state, trigger)
                in {
                    (State.DISCONNECTED, Trigger.SEND_CONNECT),
                    (State.CONNECTING, Trigger.RECEIVE_CONNECTED),
                    (State.CONNECTING, Trigger.RECEIVE_FAILED),
                }
            )
    assert all(TRANSITIONS[(s, Trigger.CLOSE)] is State.CLOSED for s in State)


# --- methods ---


def test_call_sends_a_method_frame_with_ejson_params() -> None:
    protocol = connected()
    since = datetime(2024, 6, 5, 15, 6, 40, 123000, tzinfo=UTC)
    call_id = protocol.call("rooms/get", [{"$date": 1}, since])
    assert sent(protocol) == [
        {"msg": "method", "method": "rooms/get", "id": call_id, "params": [{"$date": 1}, {"$date": 1717600000123}]}
    ]
    assert protocol.pending_calls == {call_id: "rooms/get"}


def test_call_ids_are_unique() -> None:
    protocol = connected()
    ids = {protocol.call("a"), protocol.call("b"), protocol.subscribe("c"), protocol.ping()}
    assert len(ids) == 4


def test_call_with_unserialisable_params_raises_and_queues_nothing() -> None:
    protocol = connected()
    with pytest.raises((TypeError, ValueError)):
        protocol.call("x", [object()])
    with pytest.raises(ValueError, match="naive"):
        protocol.call("x", [datetime(2024, 1, 1)])
    assert protocol.data_to_send() == []
    assert protocol.pending_calls == {}


def test_result_then_updated() -> None:
    protocol = connected()
    call_id = protocol.call("echo", [1])
    assert feed(protocol, {"msg": "result", "id": call_id, "result": {"x": 1}}) == [Result(call_id, {"x": 1})]
    assert feed(protocol, {"msg": "updated", "methods": [call_id]}) == [Updated((call_id,))]
    assert protocol.pending_calls == {}


def test_updated_before_result() -> None:
    protocol = connected()
    call_id = protocol.call("echo", [1])
    assert feed(protocol, {"msg": "updated", "methods": [call_id]}) == [Updated((call_id,))]
    assert protocol.pending_calls == {call_id: "echo"}
    assert feed(protocol, {"msg": "result", "id": call_id, "result": 5}) == [Result(call_id, 5)]


def test_result_without_result_key_means_none() -> None:
    protocol = connected()
    call_id = protocol.call("sendMessage", [{}])
    assert feed(protocol, {"msg": "result", "id": call_id}) == [Result(call_id, None)]


def test_meteor_error_result() -> None:
    protocol = connected()
    call_id = protocol.call("sendMessage", [{}])
    frame = {
        "msg": "result",
        "id": call_id,
        "error": {
            "isClientSafe": True,
            "error": "error-invalid-user",
            "reason": "Invalid user",
            "details": {"method": "sendMessage"},
            "message": "Invalid user [error-invalid-user]",
            "errorType": "Meteor.Error",
        },
    }
    [event] = feed(protocol, frame)
    assert event == MethodError(call_id, "error-invalid-user", "Invalid user", {"method": "sendMessage"})


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"error": 404, "reason": "Method 'x' not found"}, (404, "Method 'x' not found")),
        ({"error": 500, "reason": "Internal server error"}, (500, "Internal server error")),
        ({"message": "something broke"}, (None, "something broke")),
        ("plain-code", ("plain-code", None)),
        (401, (401, None)),
        ([1, 2], (None, None)),
        ({"error": True, "reason": 7}, (None, None)),
    ],
)
def test_error_results_of_any_shape(error: Any, expected: tuple[Any, Any]) -> None:
    protocol = connected()
    call_id = protocol.call("x")
    [event] = feed(protocol, {"msg": "result", "id": call_id, "error": error})
    assert isinstance(event, MethodError)
    assert (event.error, event.reason) == expected


def test_result_for_unknown_or_missing_id_is_unexpected() -> None:
    protocol = connected()
    protocol.call("x")
    assert feed(protocol, {"msg": "result", "id": "999", "result": 1}) == [
        UnexpectedFrame("result for no pending call", "result")
    ]
    assert isinstance(feed(protocol, {"msg": "result", "result": 1})[0], UnexpectedFrame)
    assert isinstance(feed(protocol, {"msg": "result", "id": 1, "result": 1})[0], UnexpectedFrame)


def test_a_second_result_for_the_same_call_is_unexpected() -> None:
    protocol = connected()
    call_id = protocol.call("x")
    feed(protocol, {"msg": "result", "id": call_id, "result": 1})
    assert isinstance(feed(protocol, {"msg": "result", "id": call_id, "result": 2})[0], UnexpectedFrame)


def test_updated_with_bad_methods() -> None:
    protocol = connected()
    assert isinstance(feed(protocol, {"msg": "updated"})[0], UnexpectedFrame)
    assert feed(protocol, {"msg": "updated", "methods": ["1", 2, None]}) == [Updated(("1",))]


def test_login_result_repr_hides_the_token() -> None:
    protocol = connected()
    call_id = protocol.call("login", [ddp.resume_login_params("secret-token-123")])
    [event] = feed(protocol, {"msg": "result", "id": call_id, "result": {"id": "u1", "token": "secret-token-123"}})
    assert "secret-token-123" not in repr(event)


# --- subscriptions ---


def test_subscribe_ready_and_unsubscribe() -> None:
    protocol = connected()
    sub_id = protocol.subscribe("stream-room-messages", ["__my_messages__", {"useCollection": False, "args": []}])
    assert sent(protocol) == [
        {
            "msg": "sub",
            "id": sub_id,
            "name": "stream-room-messages",
            "params": ["__my_messages__", {"useCollection": False, "args": []}],
        }
    ]
    assert feed(protocol, {"msg": "ready", "subs": [sub_id]}) == [Ready((sub_id,))]
    protocol.unsubscribe(sub_id)
    assert sent(protocol) == [{"msg": "unsub", "id": sub_id}]
    assert protocol.subscriptions == {sub_id: "stream-room-messages"}
    assert feed(protocol, {"msg": "nosub", "id": sub_id}) == [NoSub(sub_id, None)]
    assert protocol.subscriptions == {}


def test_ready_for_several_and_unknown_subs() -> None:
    protocol = connected()
    a, b = protocol.subscribe("a"), protocol.subscribe("b")
    assert feed(protocol, {"msg": "ready", "subs": [a, "nope", b]}) == [Ready((a, b))]
    assert isinstance(feed(protocol, {"msg": "ready", "subs": ["nope"]})[0], UnexpectedFrame)
    assert isinstance(feed(protocol, {"msg": "ready", "subs": "x"})[0], UnexpectedFrame)


def test_nosub_with_error() -> None:
    protocol = connected()
    sub_id = protocol.subscribe("stream-notify-user", ["other/rooms-changed", False])
    frame = {
        "msg": "nosub",
        "id": sub_id,
        "error": {
            "isClientSafe": True,
            "error": "not-allowed",
            "message": "[not-allowed]",
            "errorType": "Meteor.Error",
        },
    }
    assert feed(protocol, frame) == [NoSub(sub_id, ErrorInfo("not-allowed", "[not-allowed]", None))]
    assert protocol.subscriptions == {}


def test_nosub_for_unknown_subscription_is_unexpected() -> None:
    protocol = connected()
    assert feed(protocol, {"msg": "nosub", "id": "s9"}) == [
        UnexpectedFrame("nosub for no active subscription", "nosub")
    ]


def test_unsubscribe_unknown_id_is_our_bug() -> None:
    protocol = connected()
    with pytest.raises(LocalProtocolError, match="no active subscription"):
        protocol.unsubscribe("42")


# --- collections and streams ---


def test_stream_changed_becomes_a_stream_event() -> None:
    protocol = connected()
    message = {"_id": "m1", "rid": "GENERAL", "msg": "hi", "ts": {"$date": 1717600000123}}
    meta = {"roomParticipant": True, "roomType": "c", "roomName": "general"}
    frame = {
        "msg": "changed",
        "collection": "stream-room-messages",
        "id": "id",
        "fields": {"eventName": "__my_messages__", "args": [message, meta]},
    }
    assert feed(protocol, frame) == [StreamEvent("stream-room-messages", "__my_messages__", (message, meta))]


def test_permissions_changed_stream_event() -> None:
    protocol = connected()
    frame = {
        "msg": "changed",
        "collection": "stream-notify-logged",
        "id": "id",
        "fields": {
            "eventName": "permissions-changed",
            "args": ["updated", {"_id": "manage-incoming-integrations", "roles": ["admin", "ops"]}],
        },
    }
    [event] = feed(protocol, frame)
    assert event == StreamEvent(
        "stream-notify-logged",
        "permissions-changed",
        ("updated", {"_id": "manage-incoming-integrations", "roles": ["admin", "ops"]}),
    )


def test_malformed_stream_changed_stays_a_plain_changed() -> None:
    protocol = connected()
    frame = {"msg": "changed", "collection": "stream-room-messages", "id": "id", "fields": {"eventName": "x"}}
    assert feed(protocol, frame) == [Changed("stream-room-messages", "id", {"eventName": "x"}, ())]


def test_collection_documents() -> None:
    protocol = connected()
    assert feed(protocol, {"msg": "added", "collection": "users", "id": "u1", "fields": {"username": "bot"}}) == [
        Added("users", "u1", {"username": "bot"})
    ]
    assert feed(protocol, {"msg": "added", "collection": "users", "id": "u2"}) == [Added("users", "u2", {})]
    assert feed(
        protocol, {"msg": "changed", "collection": "users", "id": "u1", "fields": {"a": 1}, "cleared": ["b", 3]}
    ) == [Changed("users", "u1", {"a": 1}, ("b",))]
    assert feed(protocol, {"msg": "removed", "collection": "users", "id": "u1"}) == [Removed("users", "u1")]


@pytest.mark.parametrize(
    "frame",
    [
        {"msg": "added", "collection": "users"},
        {"msg": "added", "collection": "users", "id": "u", "fields": []},
        {"msg": "changed", "id": "u1", "fields": {}},
        {"msg": "changed", "collection": "c", "id": "u1", "fields": "x"},
        {"msg": "removed", "collection": 5, "id": "u1"},
    ],
)
def test_collection_frames_missing_fields(frame: dict[str, Any]) -> None:
    protocol = connected()
    [event] = feed(protocol, frame)
    assert isinstance(event, UnexpectedFrame)
    assert event.msg == frame["msg"]


# --- keepalive ---


def test_server_ping_is_answered_with_its_id() -> None:
    protocol = connected()
    assert feed(protocol, {"msg": "ping", "id": "p7"}) == [Ping("p7")]
    assert sent(protocol) == [{"msg": "pong", "id": "p7"}]


def test_server_ping_without_id_gets_a_bare_pong() -> None:
    protocol = connected()
    assert feed(protocol, {"msg": "ping"}) == [Ping(None)]
    assert sent(protocol) == [{"msg": "pong"}]


def test_client_ping_and_pong() -> None:
    protocol = connected()
    ping_id = protocol.ping()
    assert sent(protocol) == [{"msg": "ping", "id": ping_id}]
    assert feed(protocol, {"msg": "pong", "id": ping_id}) == [Pong(ping_id)]
    assert feed(protocol, {"msg": "pong"}) == [Pong(None)]


# --- server errors and garbage ---


def test_server_error_frame() -> None:
    protocol = connected()
    offending = {"msg": "method", "params": [{"resume": "Zq8-resume"}]}
    [event] = feed(protocol, {"msg": "error", "reason": "Bad request", "offendingMessage": offending})
    assert event == ServerError("Bad request", offending)
    assert "Zq8-resume" not in repr(event)


def test_server_error_before_connected() -> None:
    protocol = DDPProtocol()
    protocol.connect()
    assert feed(protocol, {"msg": "error", "reason": "Must connect first"}) == [ServerError("Must connect first", None)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"connected"', "not a JSON object"),
        ("null", "not a JSON object"),
        ("{}", "no msg field"),
        ('{"msg": 5}', "msg is not a string"),
        ('{"msg": "addedBefore"}', "unknown message type"),
        ('{"msg": "teapot"}', "unknown message type"),
    ],
)
def test_garbage_is_reported(text: str, reason: str) -> None:
    protocol = connected()
    [event] = protocol.receive_text(text)
    assert isinstance(event, UnexpectedFrame)
    assert event.reason == reason
    assert protocol.state is State.CONNECTED


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
MSG_TYPES = st.sampled_from(
    [
        "connected",
        "failed",
        "result",
        "updated",
        "ready",
        "nosub",
        "added",
        "changed",
        "removed",
        "ping",
        "pong",
        "error",
    ]
)
FRAMES = st.fixed_dictionaries(
    {"msg": MSG_TYPES},
    optional={
        "id": st.one_of(st.sampled_from(["1", "2", "3", "id"]), JSON),
        "session": JSON,
        "version": JSON,
        "result": JSON,
        "error": JSON,
        "methods": JSON,
        "subs": st.one_of(st.lists(st.sampled_from(["1", "2", "3"])), JSON),
        "collection": st.one_of(st.sampled_from(["stream-room-messages", "users"]), JSON),
        "fields": st.one_of(st.fixed_dictionaries({}, optional={"eventName": JSON, "args": JSON}), JSON),
        "cleared": JSON,
        "reason": JSON,
        "offendingMessage": JSON,
    },
)


@given(st.lists(st.one_of(st.text(), JSON.map(json.dumps), FRAMES.map(json.dumps)), max_size=12))
def test_no_input_from_the_server_makes_the_protocol_raise(texts: list[str]) -> None:
    protocol = DDPProtocol()
    protocol.connect()
    protocol.call("login", [{"resume": "t"}])
    protocol.subscribe("stream-room-messages", ["__my_messages__", False])
    for text in texts:
        events = protocol.receive_text(text)
        assert len(events) <= 1
        for frame in protocol.data_to_send():
            json.loads(frame)  # whatever we queue in reply is valid JSON


# --- login helpers ---


def test_resume_login_params() -> None:
    assert ddp.resume_login_params("tok") == {"resume": "tok"}


def test_password_login_params_carry_only_the_digest() -> None:
    params = ddp.password_login_params("pässwörd", username="bot")
    digest = hashlib.sha256("pässwörd".encode()).hexdigest()
    assert params == {"user": {"username": "bot"}, "password": {"digest": digest, "algorithm": "sha-256"}}
    assert "pässwörd" not in json.dumps(params, ensure_ascii=False)
    assert ddp.password_login_params("pw", email="bot@example.org")["user"] == {"email": "bot@example.org"}


@pytest.mark.parametrize("who", [{}, {"username": "a", "email": "b@c"}])
def test_password_login_params_need_exactly_one_identity(who: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ddp.password_login_params("pw", **who)


def test_parse_login_result() -> None:
    result = ddp.parse_login_result(
        {"id": "u1", "token": "Zq8-resume", "tokenExpires": {"$date": 1725000000000}, "type": "resume"}
    )
    assert result is not None
    assert result.user_id == "u1"
    assert result.token == "Zq8-resume"
    assert result.token_expires == datetime(2024, 8, 30, 6, 40, tzinfo=UTC)
    assert result.type == "resume"
    assert "Zq8-resume" not in repr(result)


@pytest.mark.parametrize(
    "result", [None, [], {"id": "u1"}, {"token": "t"}, {"id": 5, "token": "t"}, {"id": "", "token": "t"}]
)
def test_parse_login_result_missing_fields(result: Any) -> None:
    assert ddp.parse_login_result(result) is None
