"""Messages, rooms, subscriptions and public settings over REST (contract §4.7, §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from rest_test_support import World, error_of, make_world

from sandbox.errors import MeteorError
from sandbox.ids import iso
from sandbox.store import User


@dataclass
class Chat:
    world: World
    alice: User
    bob: User
    bot: User
    general: str  # public, alice + bot
    secret: str  # private, bob only

    def send(self, user: User, room_id: str, text: str, **extra: Any) -> dict[str, Any]:
        response = self.world.post(user, "chat.sendMessage", {"message": {"rid": room_id, "msg": text, **extra}})
        assert response.status_code == 200, response.json()
        message: dict[str, Any] = response.json()["message"]
        return message


@pytest.fixture
def chat() -> Chat:
    world = make_world()
    alice, bob = world.user("alice"), world.user("bob")
    bot = world.user("bot", roles=("bot",))
    general = world.store.create_room("general", members=["alice", "bot"])["_id"]
    secret = world.store.create_room("secret", "p", members=["bob"])["_id"]
    return Chat(world, alice, bob, bot, general, secret)


# --- chat.sendMessage ---------------------------------------------------------------------------


def test_send_message_stores_and_returns_the_message(chat: Chat) -> None:
    message = chat.send(chat.alice, chat.general, "hello @bob and #general")
    assert message["rid"] == chat.general
    assert message["msg"] == "hello @bob and #general"
    assert message["u"] == {"_id": chat.alice._id, "username": "alice"}
    assert [m["username"] for m in message["mentions"]] == ["bob"]
    assert message["channels"] == [{"_id": chat.general, "name": "general"}]
    assert message["ts"].endswith("Z")  # REST dates are ISO strings
    assert chat.world.store.get_message(message["_id"]) is not None


def test_send_message_keeps_a_client_id_and_threads(chat: Chat) -> None:
    parent = chat.send(chat.alice, chat.general, "parent", _id="client-chosen-id")
    assert parent["_id"] == "client-chosen-id"
    reply = chat.send(chat.bot, chat.general, "reply", tmid=parent["_id"], tshow=True)
    assert reply["tmid"] == parent["_id"]
    assert reply["tshow"] is True
    stored_parent = chat.world.store.get_message(parent["_id"])
    assert stored_parent is not None
    assert stored_parent["tcount"] == 1


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"msg": ""},
            {
                "error": "Message cannot be empty [error-invalid-message]",
                "errorType": "error-invalid-message",
                "details": {"method": "sendMessage"},
            },
        ),
        ({"msg": "x", "rid": None}, {"error": "The 'rid' property on the message object is missing."}),
        ({"msg": "x", "t": "uj"}, {"error": "Cannot send system messages using 'chat.sendMessage'"}),
        ({"msg": "x", "alias": "Someone else"}, {"error": "Not enough permission"}),
        ({"msg": "x", "tshow": True}, {"errorType": "error-invalid-params"}),
    ],
)
def test_send_message_errors(chat: Chat, message: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"message": {"rid": chat.general, **message}}
    if message.get("rid", "") is None:
        del body["message"]["rid"]
    response = chat.world.post(chat.alice, "chat.sendMessage", body)
    assert response.status_code == 400
    error = error_of(response)
    assert {k: error[k] for k in expected} == expected
    if "errorType" not in expected:
        assert "errorType" not in error


def test_a_message_id_is_unique_across_all_rooms_whoever_posted_it(chat: Chat) -> None:
    """Contract §8 gotcha 26: any user may post with any unused id, so an id taken in one room
    (here bob's private room, which alice cannot even see) is refused everywhere else, to everyone."""
    chat.send(chat.bob, chat.secret, "first", _id="chosen-id-000001")
    for user in (chat.alice, chat.bob, chat.bot):
        response = chat.world.post(
            user, "chat.sendMessage", {"message": {"rid": chat.general, "msg": "x", "_id": "chosen-id-000001"}}
        )
        assert response.status_code == 400
        error = error_of(response)
        assert (error["errorType"], error["error"]) == (
            "error-duplicate-message",
            "Message already exists [error-duplicate-message]",
        )
    stored = chat.world.store.get_message("chosen-id-000001")
    assert stored is not None and (stored["rid"], stored["msg"]) == (chat.secret, "first")


def test_send_message_refuses_rooms_the_user_cannot_access(chat: Chat) -> None:
    error = error_of(chat.world.post(chat.alice, "chat.sendMessage", {"message": {"rid": chat.secret, "msg": "x"}}))
    assert error["errorType"] == "error-not-allowed"


def test_send_message_with_alias_is_allowed_for_the_bot_role(chat: Chat) -> None:
    message = chat.send(chat.bot, chat.general, "x", alias="Deploy bot", emoji=":robot:")
    assert (message["alias"], message["emoji"]) == ("Deploy bot", ":robot:")


def test_send_message_refuses_a_timestamp_out_of_sync(chat: Chat) -> None:
    far = iso(chat.world.store.clock() - timedelta(minutes=5))
    error = error_of(
        chat.world.post(chat.alice, "chat.sendMessage", {"message": {"rid": chat.general, "msg": "x", "ts": far}})
    )
    assert error["error"] == "Message timestamp is out of sync [error-message-ts-out-of-sync]"


def test_send_message_validates_the_body(chat: Chat) -> None:
    assert error_of(chat.world.post(chat.alice, "chat.sendMessage", {"message": {"rid": ["a"]}})) == {
        "success": False,
        "error": "must be string [invalid-params]",
        "errorType": "invalid-params",
    }


def test_8x_coerces_body_values_before_the_handler_sees_them(chat: Chat) -> None:
    # A number where a string is expected becomes "5" (8.x `coerceTypes`): the room is unknown.
    error = error_of(chat.world.post(chat.alice, "chat.sendMessage", {"message": {"rid": 5, "msg": "x"}}))
    assert error["errorType"] == "error-invalid-room"
    legacy = make_world("legacy")
    user = legacy.user("carol")
    assert error_of(legacy.post(user, "chat.sendMessage", {"message": {"rid": 5, "msg": "x"}}))["error"] == (
        "must be string [invalid-params]"
    )


# --- chat.postMessage ------------------------------------------------------------------------------


def test_post_message_by_room_id(chat: Chat) -> None:
    payload = chat.world.post(chat.alice, "chat.postMessage", {"roomId": chat.general, "text": " hi "}).json()
    assert payload["success"] is True
    assert payload["channel"] == chat.general
    assert isinstance(payload["ts"], int)
    assert payload["message"]["msg"] == "hi"
    assert payload["message"]["rid"] == chat.general


def test_post_message_by_channel_name_joins_public_channels(chat: Chat) -> None:
    payload = chat.world.post(chat.bob, "chat.postMessage", {"channel": "#general", "text": "hi"}).json()
    assert payload["channel"] == "#general"
    assert chat.world.store.is_member(chat.general, chat.bob._id)


def test_post_message_to_a_user_opens_a_direct_message(chat: Chat) -> None:
    payload = chat.world.post(chat.bot, "chat.postMessage", {"channel": "@alice", "text": "psst"}).json()
    room = chat.world.store.rooms[payload["message"]["rid"]]
    assert room["t"] == "d"
    assert set(room["uids"]) == {chat.bot._id, chat.alice._id}


def test_post_message_avatar_wins_over_emoji(chat: Chat) -> None:
    body = {"roomId": chat.general, "text": "x", "emoji": ":ghost:", "avatar": "https://example.org/a.png"}
    message = chat.world.post(chat.bot, "chat.postMessage", body).json()["message"]
    assert message["avatar"] == "https://example.org/a.png"
    assert "emoji" not in message


def test_post_message_errors(chat: Chat) -> None:
    assert error_of(chat.world.post(chat.alice, "chat.postMessage", {"channel": "#nope", "text": "x"})) == {
        "success": False,
        "error": "[invalid-channel]",
        "errorType": "invalid-channel",
    }
    chat.world.store.set_setting("Message_MaxAllowedSize", 3)
    assert error_of(chat.world.post(chat.alice, "chat.postMessage", {"roomId": chat.general, "text": "long"})) == {
        "success": False,
        "error": "error-message-size-exceeded",
    }
    invalid = error_of(chat.world.post(chat.alice, "chat.postMessage", {"text": "x"}))
    assert invalid["error"].endswith("must match exactly one schema in oneOf [invalid-params]")


# --- chat.update / chat.getMessage -------------------------------------------------------------------


def test_the_author_edits_a_message(chat: Chat) -> None:
    message = chat.send(chat.alice, chat.general, "typo")
    body = {"roomId": chat.general, "msgId": message["_id"], "text": "fixed"}
    edited = chat.world.post(chat.alice, "chat.update", body).json()["message"]
    assert edited["_id"] == message["_id"]
    assert edited["msg"] == "fixed"
    assert edited["editedBy"] == {"_id": chat.alice._id, "username": "alice"}


def test_only_the_author_or_edit_message_holders_edit(chat: Chat) -> None:
    message = chat.send(chat.alice, chat.general, "mine")
    body = {"roomId": chat.general, "msgId": message["_id"], "text": "not yours"}
    assert error_of(chat.world.post(chat.bot, "chat.update", body)) == {
        "success": False,
        "error": "Message editing not allowed [error-action-not-allowed]",
        "errorType": "error-action-not-allowed",
        "details": {"method": "updateMessage", "action": "Message_editing"},
    }
    moderator = chat.world.user("moderator", roles=("admin",))
    chat.world.store.add_member(chat.general, "moderator")
    assert chat.world.post(moderator, "chat.update", body).json()["message"]["msg"] == "not yours"


def test_chat_update_errors(chat: Chat) -> None:
    message = chat.send(chat.alice, chat.general, "x")
    missing = {"roomId": chat.general, "msgId": "nope", "text": "y"}
    assert error_of(chat.world.post(chat.alice, "chat.update", missing)) == {
        "success": False,
        "error": 'No message found with the id of "nope".',
    }
    elsewhere = {"roomId": chat.secret, "msgId": message["_id"], "text": "y"}
    assert error_of(chat.world.post(chat.alice, "chat.update", elsewhere)) == {
        "success": False,
        "error": "The room id provided does not match where the message is from.",
    }
    assert error_of(chat.world.post(chat.alice, "chat.update", {"roomId": chat.general})) == {
        "success": False,
        "errorType": "invalid-params",
        "error": "must have required property 'msgId'",
    }


def test_get_message(chat: Chat) -> None:
    message = chat.send(chat.alice, chat.general, "x")
    assert chat.world.get(chat.bot, "chat.getMessage", {"msgId": message["_id"]}).json()["message"]["msg"] == "x"
    assert error_of(chat.world.get(chat.bot, "chat.getMessage", {"msgId": "nope"})) == {"success": False}
    hidden = chat.send(chat.bob, chat.secret, "private")
    assert error_of(chat.world.get(chat.alice, "chat.getMessage", {"msgId": hidden["_id"]}))["errorType"] == (
        "error-not-allowed"
    )


# --- chat.syncMessages ------------------------------------------------------------------------------


def test_sync_messages_since_last_update(chat: Chat) -> None:
    store = chat.world.store
    edited = chat.send(chat.alice, chat.general, "one")
    deleted = chat.send(chat.alice, chat.general, "two")
    last_update = iso(store.clock())
    store.edit_message(edited["_id"], "one!")
    store.delete_message(deleted["_id"])
    newest = chat.send(chat.alice, chat.general, "three")
    payload = chat.world.get(chat.bot, "chat.syncMessages", {"roomId": chat.general, "lastUpdate": last_update}).json()
    assert [m["_id"] for m in payload["result"]["updated"]] == [newest["_id"], edited["_id"]]
    assert [d["_id"] for d in payload["result"]["deleted"]] == [deleted["_id"]]
    assert set(payload["result"]["deleted"][0]) == {"_id", "_deletedAt"}
    assert payload["success"] is True


def test_sync_messages_cursor_pages(chat: Chat) -> None:
    ids = [chat.send(chat.alice, chat.general, f"m{i}")["_id"] for i in range(4)]
    params = {"roomId": chat.general, "type": "UPDATED", "next": "0", "count": "2"}
    first = chat.world.get(chat.bot, "chat.syncMessages", params).json()["result"]
    assert [m["_id"] for m in first["updated"]] == ids[:2]
    assert first["deleted"] == []
    second = chat.world.get(chat.bot, "chat.syncMessages", {**params, "next": first["cursor"]["next"]}).json()
    assert [m["_id"] for m in second["result"]["updated"]] == ids[2:]
    assert second["result"]["cursor"]["next"] is None
    back = {**params, "previous": second["result"]["cursor"]["previous"]}
    del back["next"]
    previous = chat.world.get(chat.bot, "chat.syncMessages", back).json()["result"]
    assert [m["_id"] for m in previous["updated"]] == [ids[1], ids[0]]


def test_sync_messages_cursor_over_deletions(chat: Chat) -> None:
    store = chat.world.store
    ids = [chat.send(chat.alice, chat.general, f"m{i}")["_id"] for i in range(2)]
    for message_id in ids:
        store.delete_message(message_id)
    params = {"roomId": chat.general, "type": "DELETED", "next": "0", "count": "5"}
    result = chat.world.get(chat.bot, "chat.syncMessages", params).json()["result"]
    assert [d["_id"] for d in result["deleted"]] == ids
    assert result["updated"] == []


@pytest.mark.parametrize(
    ("params", "error_type"),
    [
        ({}, "error-param-required"),
        ({"lastUpdate": "not a date"}, "error-lastUpdate-param-invalid"),
        ({"lastUpdate": "2024-06-05T12:00:00.000Z", "next": "1"}, "error-type-param-required"),
        ({"type": "UPDATED", "next": "1", "previous": "2"}, "error-cursor-conflict"),
        (
            {"type": "UPDATED", "next": "1", "lastUpdate": "2024-06-05T12:00:00.000Z"},
            "error-cursor-and-lastUpdate-conflict",
        ),
        ({"type": "SOMETIMES"}, "invalid-params"),
    ],
)
def test_sync_messages_parameter_errors(chat: Chat, params: dict[str, str], error_type: str) -> None:
    error = error_of(chat.world.get(chat.bot, "chat.syncMessages", {"roomId": chat.general, **params}))
    assert error["errorType"] == error_type


def test_sync_messages_needs_room_access(chat: Chat) -> None:
    params = {"roomId": chat.secret, "lastUpdate": "2024-06-05T12:00:00.000Z"}
    assert error_of(chat.world.get(chat.alice, "chat.syncMessages", params)) == {
        "success": False,
        "error": "Not allowed [error-not-allowed]",
        "errorType": "error-not-allowed",
        "details": {"method": "messages/get"},
    }


# --- rooms and subscriptions ---------------------------------------------------------------------------


def test_rooms_get_and_subscriptions_get(chat: Chat) -> None:
    rooms = chat.world.get(chat.alice, "rooms.get").json()
    assert [r["_id"] for r in rooms["update"]] == [chat.general]
    assert rooms["remove"] == []
    subs = chat.world.get(chat.alice, "subscriptions.get").json()
    assert [(s["rid"], s["name"]) for s in subs["update"]] == [(chat.general, "general")]


def test_updated_since_returns_changes_and_removed_subscriptions(chat: Chat) -> None:
    store = chat.world.store
    ops = store.create_room("ops", members=["alice"])
    since = iso(store.clock())
    chat.send(chat.alice, chat.general, "bump")  # updates the room
    store.remove_member(ops["_id"], "alice")
    rooms = chat.world.get(chat.alice, "rooms.get", {"updatedSince": since}).json()
    assert [r["_id"] for r in rooms["update"]] == [chat.general]
    subs = chat.world.get(chat.alice, "subscriptions.get", {"updatedSince": since}).json()
    assert subs["update"] == []
    assert len(subs["remove"]) == 1
    assert set(subs["remove"][0]) == {"_id", "_deletedAt"}


def _room(chat: Chat, room_id: str, since: str | None = None) -> dict[str, Any] | None:
    query = {"updatedSince": since} if since is not None else None
    rooms = chat.world.get(chat.alice, "rooms.get", query).json()["update"]
    return next((room for room in rooms if room["_id"] == room_id), None)


def test_every_new_message_writes_its_room_after_the_message_thread_replies_too(chat: Chat) -> None:
    """`afterSaveMessage` writes the room after the message is stored (`_updatedAt` is set on every
    write): the room's `_updatedAt` is never older than its newest message's, for a reply shown only
    in its thread as well, which leaves `lastMessage` and `lm` alone."""
    parent = chat.send(chat.alice, chat.general, "parent")
    room = _room(chat, chat.general)
    assert room is not None and room["_updatedAt"] > parent["_updatedAt"]  # written a moment later
    assert room["lm"] == parent["ts"] and room["lastMessage"]["_id"] == parent["_id"]
    reply = chat.send(chat.alice, chat.general, "in the thread only", tmid=parent["_id"])
    after = _room(chat, chat.general, parent["_updatedAt"])
    assert after is not None and after["_updatedAt"] > reply["_updatedAt"]
    assert after["lm"] == parent["ts"] and after["lastMessage"]["_id"] == parent["_id"]
    assert after["msgs"] == room["msgs"] + 1
    assert _room(chat, chat.general, after["_updatedAt"]) is None  # `$gt`: not again at its own time


def test_an_edit_writes_the_room_only_when_it_edits_the_rooms_last_message(chat: Chat) -> None:
    store = chat.world.store
    older = chat.send(chat.alice, chat.general, "older")
    last = chat.send(chat.alice, chat.general, "last")
    room = _room(chat, chat.general)
    assert room is not None
    store.edit_message(older["_id"], "older, edited")
    assert _room(chat, chat.general, room["_updatedAt"]) is None  # the room was not written
    store.edit_message(last["_id"], "last, edited")
    edited = _room(chat, chat.general, room["_updatedAt"])
    assert edited is not None and edited["lastMessage"]["msg"] == "last, edited"


def test_invalid_updated_since(chat: Chat) -> None:
    assert error_of(chat.world.get(chat.alice, "rooms.get", {"updatedSince": "soon"}))["error"] == (
        'The "updatedSince" query parameter must be a valid date. [error-updatedSince-param-invalid]'
    )
    assert error_of(chat.world.get(chat.alice, "subscriptions.get", {"updatedSince": "soon"}))["error"] == (
        'The "lastUpdate" query parameter must be a valid date. [error-roomId-param-invalid]'
    )


def test_rooms_info(chat: Chat) -> None:
    by_id = chat.world.get(chat.alice, "rooms.info", {"roomId": chat.general}).json()["room"]
    by_name = chat.world.get(chat.bob, "rooms.info", {"roomName": "general"}).json()["room"]
    assert by_id["_id"] == by_name["_id"] == chat.general
    assert error_of(chat.world.get(chat.alice, "rooms.info", {"roomId": chat.secret})) == {
        "success": False,
        "error": "not-allowed",
        "errorType": "Not Allowed",
    }
    assert error_of(chat.world.get(chat.alice, "rooms.info"))["errorType"] == "error-roomid-param-not-provided"
    assert error_of(chat.world.get(chat.alice, "rooms.info", {"roomName": "nope"}))["errorType"] == (
        "error-room-not-found"
    )


def test_channels_list_joined_pages_by_name(chat: Chat) -> None:
    for name in ("c-three", "c-one", "c-two"):
        chat.world.store.create_room(name, members=["alice"])
    chat.world.store.create_room("c-private", "p", members=["alice"])
    page = chat.world.get(chat.alice, "channels.list.joined", {"offset": "1", "count": "2"}).json()
    assert [c["name"] for c in page["channels"]] == ["c-three", "c-two"]
    assert (page["offset"], page["count"], page["total"]) == (1, 2, 4)


def test_im_create_and_list(chat: Chat) -> None:
    room = chat.world.post(chat.bot, "im.create", {"username": "alice"}).json()["room"]
    assert room["t"] == "d"
    assert room["rid"] == room["_id"]
    ims = chat.world.get(chat.alice, "im.list").json()
    assert [r["_id"] for r in ims["ims"]] == [room["_id"]]
    assert (ims["offset"], ims["count"], ims["total"]) == (0, 1, 1)
    assert error_of(chat.world.post(chat.bot, "im.create", {"username": "ghost"})) == {
        "success": False,
        "error": "Invalid user [error-invalid-user]",
        "errorType": "error-invalid-user",
        "details": {"method": "createDirectMessage"},
    }


def test_im_create_with_several_users_makes_one_group_dm(chat: Chat) -> None:
    # Contract §8 gotcha 25: a `t: "d"` room may have more than two members; `uids` lists them.
    carol = chat.world.user("carol")
    room = chat.world.post(chat.alice, "im.create", {"usernames": "bot, carol"}).json()["room"]
    assert room["t"] == "d" and room["rid"] == room["_id"]
    assert room["uids"] == sorted([chat.alice._id, chat.bot._id, carol._id])
    assert sorted(room["usernames"]) == ["alice", "bot", "carol"]
    assert room["usersCount"] == 3
    assert len(room["_id"]) == 17  # a random id: only a two-person DM is named after its members
    info = chat.world.get(chat.bot, "rooms.info", {"roomId": room["_id"]}).json()["room"]
    assert (info["t"], info["uids"], info["usernames"]) == ("d", room["uids"], room["usernames"])
    again = chat.world.post(carol, "im.create", {"usernames": "alice,bot"}).json()["room"]
    assert again["_id"] == room["_id"]  # the same three people: the same room
    subscription = chat.world.store.subscription(room["_id"], chat.bot._id)
    assert subscription is not None and subscription["name"] == "alice, carol"
    one_to_one = chat.world.post(chat.alice, "im.create", {"username": "bot"}).json()["room"]
    assert one_to_one["_id"] == "".join(sorted([chat.alice._id, chat.bot._id]))


def test_a_group_dm_is_limited_to_direct_message_max_users(chat: Chat) -> None:
    chat.world.user("carol")
    chat.world.store.set_setting("DirectMesssage_maxUsers", 2)
    assert error_of(chat.world.post(chat.alice, "im.create", {"usernames": "bot,carol"})) == {
        "success": False,
        "error": "You cannot add more than 2 users, including yourself to a direct message "
        "[error-direct-message-max-user-exceeded]",
        "errorType": "error-direct-message-max-user-exceeded",
        "details": {"method": "createDirectRoom"},
    }


def test_nobody_joins_a_dm_after_it_is_created(chat: Chat) -> None:
    dm = chat.world.store.create_direct("alice", "bot")["_id"]
    with pytest.raises(MeteorError) as refused:
        chat.world.store.add_member(dm, "bob")
    assert refused.value.error == "error-cant-invite-for-direct-room"
    assert set(chat.world.store.room_members(dm)) == {chat.alice._id, chat.bot._id}


def test_settings_public(chat: Chat) -> None:
    payload = chat.world.get(None, "settings.public").json()
    values = {s["_id"]: s["value"] for s in payload["settings"]}
    assert values["Message_AllowUnrecognizedSlashCommand"] is False
    assert not any(key.startswith("API_") for key in values)
    assert payload["total"] == len(values)
    chat.world.store.set_setting("Message_AllowUnrecognizedSlashCommand", True)
    picked = chat.world.get(None, "settings.public", {"_id": "Message_AllowUnrecognizedSlashCommand"}).json()
    assert picked["settings"] == [
        {"_id": "Message_AllowUnrecognizedSlashCommand", "value": True, "enterprise": False, "requiredOnWire": False}
    ]
    query = '{"_id": {"$in": ["Site_Name", "Threads_enabled"]}}'
    assert [s["_id"] for s in chat.world.get(None, "settings.public", {"query": query}).json()["settings"]] == [
        "Site_Name",
        "Threads_enabled",
    ]


# --- unknown routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/no.such.endpoint"), ("GET", "/api/v1/chat.sendMessage")])
def test_unknown_routes_and_methods_are_404(chat: Chat, method: str, path: str) -> None:
    response = chat.world.client.request(method, path, headers=chat.world.headers(chat.alice))
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Resource not found"}
