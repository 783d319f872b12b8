from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.rocketchat.messages import ChatMessage

TS = datetime(2024, 6, 5, 15, 6, 40, 123000, tzinfo=UTC)
UPDATED = datetime(2024, 6, 5, 15, 6, 40, 150000, tzinfo=UTC)


def stream_message(**overrides: Any) -> dict[str, Any]:
    """The contract's example `__my_messages__` message (§4.5)."""
    message: dict[str, Any] = {
        "_id": "k2Hb7Pq9Z8mXyW3Lt",
        "rid": "GENERAL",
        "msg": "/integration disable Guggy",
        "ts": {"$date": 1717600000123},
        "u": {"_id": "aBcD1234", "username": "alice", "name": "Alice"},
        "_updatedAt": {"$date": 1717600000150},
        "urls": [],
        "mentions": [],
        "channels": [],
        "md": [{"type": "PARAGRAPH", "value": [{"type": "PLAIN_TEXT", "value": "/integration disable Guggy"}]}],
    }
    message.update(overrides)
    return message


CHANNEL_META = {"roomParticipant": True, "roomType": "c", "roomName": "general"}


def test_my_messages_event_with_ejson_dates_and_meta() -> None:
    message = ChatMessage.from_stream_args([stream_message(), CHANNEL_META])
    assert message == ChatMessage(
        id="k2Hb7Pq9Z8mXyW3Lt",
        room_id="GENERAL",
        text="/integration disable Guggy",
        ts=TS,
        updated_at=UPDATED,
        user_id="aBcD1234",
        username="alice",
        room_type="c",
        room_name="general",
        room_participant=True,
    )
    assert message.thread_id is None
    assert message.system_type is None
    assert not message.is_bot
    assert message.edited_at is None


def test_room_stream_event_without_meta() -> None:
    message = ChatMessage.from_stream_args([stream_message()])
    assert message is not None
    assert (message.room_type, message.room_name, message.room_participant) == (None, None, None)


def test_direct_message_meta_has_no_room_name() -> None:
    message = ChatMessage.from_stream_args(
        [stream_message(rid="aBcD1234botId"), {"roomParticipant": True, "roomType": "d"}]
    )
    assert message is not None
    assert message.room_type == "d"
    assert message.room_name is None
    assert message.room_participant is True


def test_rest_document_with_iso_dates() -> None:
    document = stream_message(ts="2024-06-05T15:06:40.123Z", _updatedAt="2024-06-05T15:06:40.150Z")
    message = ChatMessage.from_document(document)
    assert message is not None
    assert (message.ts, message.updated_at) == (TS, UPDATED)


def test_missing_updated_at_falls_back_to_ts() -> None:
    document = stream_message()
    del document["_updatedAt"]
    message = ChatMessage.from_document(document)
    assert message is not None
    assert message.updated_at == TS


def test_missing_optional_fields() -> None:
    message = ChatMessage.from_document(
        {"_id": "m", "rid": "r", "ts": {"$date": 0}, "u": {"_id": "u", "username": "bob"}}
    )
    assert message is not None
    assert message.text == ""
    assert message.mentions == ()
    assert not message.has_attachments


def test_system_message() -> None:
    message = ChatMessage.from_stream_args([stream_message(t="uj", msg="alice"), CHANNEL_META])
    assert message is not None
    assert message.system_type == "uj"


def test_thread_reply() -> None:
    message = ChatMessage.from_stream_args([stream_message(tmid="parent1", tshow=True), CHANNEL_META])
    assert message is not None
    assert message.thread_id == "parent1"
    assert message.thread_show is True


def test_bot_message() -> None:
    message = ChatMessage.from_document(stream_message(bot={"i": "665f1c2e9b1e8a0012345678"}, alias="guggy"))
    assert message is not None
    assert message.is_bot


def test_edited_message() -> None:
    message = ChatMessage.from_document(
        stream_message(editedAt={"$date": 1717600100000}, editedBy={"_id": "aBcD1234", "username": "alice"})
    )
    assert message is not None
    assert message.edited_at == datetime(2024, 6, 5, 15, 8, 20, tzinfo=UTC)


def test_mentions_attachments_and_ephemeral() -> None:
    message = ChatMessage.from_document(
        stream_message(
            mentions=[
                {"_id": "botId", "username": "bot", "name": "Bot", "type": "user"},
                {"_id": "all", "username": "all"},
                {"_id": "weird"},
            ],
            attachments=[{"title": "log.txt"}],
            private=True,
        )
    )
    assert message is not None
    assert message.mentions == ("bot", "all")
    assert message.has_attachments
    assert message.is_ephemeral


def test_null_optional_fields_are_absent() -> None:
    message = ChatMessage.from_document(stream_message(t=None, tmid=None, editedAt=None, bot=None, attachments=None))
    assert message is not None
    assert (message.system_type, message.thread_id, message.edited_at, message.is_bot) == (None, None, None, False)


def test_the_value_is_frozen() -> None:
    message = ChatMessage.from_document(stream_message())
    assert message is not None
    with pytest.raises(ValidationError):
        message.text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "args",
    [
        None,
        [],
        "a string",
        {"_id": "x"},
        [None],
        ["a string"],
        [stream_message(_id=None)],
        [stream_message(_id="")],
        [stream_message(_id=5)],
        [stream_message(rid=None)],
        [stream_message(msg=["not", "text"])],
        [stream_message(ts=None)],
        [stream_message(ts="yesterday")],
        [stream_message(ts=1717600000123)],
        [stream_message(_updatedAt={"$date": "soon"})],
        [stream_message(u=None)],
        [stream_message(u="alice")],
        [stream_message(u={"_id": "aBcD1234"})],
        [stream_message(u={"username": "alice"})],
        [stream_message(tmid=7)],
        [stream_message(tshow="yes")],
        [stream_message(t=1)],
        [stream_message(editedAt="never")],
        [stream_message(mentions="@all")],
        [stream_message(), "meta"],
        [stream_message(), {"roomParticipant": "yes"}],
        [stream_message(), {"roomType": 1}],
    ],
)
def test_malformed_messages_become_none(args: Any) -> None:
    assert ChatMessage.from_stream_args(args) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=15,
)
FIELD_NAMES = st.sampled_from(
    ["_id", "rid", "msg", "ts", "u", "_updatedAt", "tmid", "tshow", "t", "bot", "editedAt", "mentions", "private"]
)


@given(st.lists(JSON, max_size=3))
def test_arbitrary_args_never_raise(args: list[Any]) -> None:
    result = ChatMessage.from_stream_args(args)
    assert result is None or isinstance(result, ChatMessage)


@given(FIELD_NAMES, JSON)
def test_any_field_value_parses_or_is_rejected_but_never_raises(name: str, value: Any) -> None:
    document = copy.deepcopy(stream_message())
    document[name] = value
    result = ChatMessage.from_stream_args([document, CHANNEL_META])
    if result is not None:
        # Whatever was accepted is a consistent value: ids and the author are still there.
        assert result.id and result.room_id and result.user_id
        assert result.ts.tzinfo is not None and result.updated_at.tzinfo is not None


@given(
    st.text(min_size=1, max_size=20),
    st.text(max_size=200),
    st.integers(min_value=0, max_value=4102444800000),
    st.one_of(st.none(), st.text(min_size=1, max_size=20)),
)
def test_well_formed_documents_round_trip(message_id: str, text: str, millis: int, tmid: str | None) -> None:
    document = stream_message(_id=message_id, msg=text, ts={"$date": millis}, _updatedAt={"$date": millis})
    if tmid is not None:
        document["tmid"] = tmid
    message = ChatMessage.from_stream_args([document, CHANNEL_META])
    assert message is not None
    assert (message.id, message.text, message.thread_id) == (message_id, text, tmid)
    assert message.ts - datetime(1970, 1, 1, tzinfo=UTC) == timedelta(milliseconds=millis)
