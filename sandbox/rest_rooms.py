"""REST endpoints for messages, rooms, subscriptions and public settings (contract §4.7, §5).

A user only reads what `Store.can_access_room` lets them (members, and public channels for
holders of `view-c-room`). Message rules (empty text, size, threads, read-only rooms,
impersonation) live in `Store.send_message`; this module maps REST shapes onto it the way
`chat.sendMessage` (`executeSendMessage`) and `chat.postMessage` (`processWebhookMessage`) do.

"What was deleted since X" comes from `sandbox.trash` (the store deletes for good).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Final

from sandbox.docsort import sort_documents
from sandbox.errors import MeteorError, PlainError
from sandbox.ids import epoch_ms, parse_date
from sandbox.jsvalues import js_parse_int, parse_js_date
from sandbox.restlib import ApiFailure, Call, Endpoint, pagination, parse_sort
from sandbox.store import Store, User

# --- helpers ---------------------------------------------------------------------------------------


def _not_enough_permission(exc: MeteorError) -> Exception:
    # `validateMessage` throws a plain `Error('Not enough permission')` (contract §4.7); the
    # store raises it as a Meteor error, so translate it at this boundary.
    if exc.reason == "Not enough permission":
        return PlainError("Not enough permission")
    return exc


def _send(store: Store, user: User, room_id: str, text: str, **options: Any) -> dict[str, Any]:
    try:
        return store.send_message(user._id, room_id, text, **options)
    except MeteorError as exc:
        raise _not_enough_permission(exc) from None


def _message_ts_check(store: Store, ts: Any) -> None:
    if ts is None:
        return
    sent = parse_date(ts)
    now = store.clock()
    if sent is None or abs(sent - now) > timedelta(seconds=60):
        raise MeteorError(
            "error-message-ts-out-of-sync",
            "Message timestamp is out of sync",
            {"method": "sendMessage", "message_ts": ts, "server_ts": epoch_ms(now)},
        )


# --- chat.* ----------------------------------------------------------------------------------------


async def chat_send_message(call: Call) -> Any:
    store, user = call.store, call.me
    message = call.body["message"]
    if message.get("t"):
        raise PlainError("Cannot send system messages using 'chat.sendMessage'")
    _message_ts_check(store, message.get("ts"))
    rid, tmid = message.get("rid"), message.get("tmid")
    if tmid:
        parent = store.get_message(tmid)
        if parent is not None:
            rid = parent["rid"]  # executeSendMessage posts a reply into its parent's room
    if not rid:
        raise PlainError("The 'rid' property on the message object is missing.")
    sent = _send(
        store,
        user,
        rid,
        message.get("msg") or "",
        tmid=tmid or None,
        tshow=bool(message.get("tshow")),
        message_id=message.get("_id") or None,
        alias=message.get("alias") or None,
        emoji=message.get("emoji") or None,
        avatar=message.get("avatar") or None,
        attachments=message.get("attachments") or None,
        custom_fields=message.get("customFields") or None,
    )
    return {"message": sent}


def _resolve_post_target(store: Store, user: User, target: str) -> dict[str, Any]:
    """`getRoomByNameOrIdWithOptionToJoin` as `processWebhookMessage` calls it."""
    kind, value = target[:1], target[1:]
    if kind == "@":
        other = store.find_user(value)
        if other is None:
            raise MeteorError("invalid-channel")
        return store.create_direct(user._id, other._id)
    room = store.find_room(value if kind == "#" else target)
    if room is None and kind != "#":
        other = store.users.get(target)  # no prefix: a user id means a DM
        if other is not None:
            return store.create_direct(user._id, other._id)
    if room is None:
        raise MeteorError("invalid-channel")
    if room["t"] == "c" and not store.is_member(room["_id"], user._id):
        store.add_member(room["_id"], user._id)  # posting by name joins public channels
    return dict(room)


async def chat_post_message(call: Call) -> Any:
    store, user, body = call.store, call.me, call.body
    max_size = int(store.get_setting("Message_MaxAllowedSize", 5000))
    text = body.get("text") or ""
    attachments = body.get("attachments") or []
    if len(text) > max_size or any(len(str(a.get("text") or "")) > max_size for a in attachments):
        raise PlainError("error-message-size-exceeded")
    destination = body.get("channel") if "channel" in body else body.get("roomId")
    targets = destination if isinstance(destination, list) else [destination]
    sent: list[tuple[str, dict[str, Any]]] = []
    for target in targets:
        with store.lock:
            room = _resolve_post_target(store, user, str(target or ""))
        avatar = body.get("avatar") or None
        message = _send(
            store,
            user,
            room["_id"],
            text.strip(),
            tmid=body.get("tmid") or None,
            alias=body.get("alias") or None,
            emoji=None if avatar else body.get("emoji") or None,
            avatar=avatar,
            attachments=attachments or None,
            custom_fields=body.get("customFields") or None,
        )
        sent.append((str(target), message))
    if not sent:
        raise PlainError("unknown-error")
    channel, message = sent[0]
    return {"ts": epoch_ms(store.clock()), "channel": channel, "message": message}


async def chat_update(call: Call) -> Any:
    store, user, body = call.store, call.me, call.body
    with store.lock:
        message = store.get_message(body["msgId"])
        if message is None:
            raise PlainError(f'No message found with the id of "{body["msgId"]}".')
        if body["roomId"] != message["rid"]:
            raise PlainError("The room id provided does not match where the message is from.")
        own = message["u"]["_id"] == user._id
        if not store.has_permission(user._id, "edit-message", message["rid"]) and not (
            store.get_setting("Message_AllowEditing", True) and own
        ):
            raise MeteorError(
                "error-action-not-allowed",
                "Message editing not allowed",
                {"method": "updateMessage", "action": "Message_editing"},
            )
        if not store.can_access_room(user._id, message["rid"]):
            raise MeteorError("error-not-allowed", "Not allowed", {"method": "updateMessage"})
        return {"message": store.edit_message(message["_id"], body["text"], editor=user._id)}


async def chat_get_message(call: Call) -> Any:
    store = call.store
    message = store.get_message(call.query["msgId"])
    if message is None:
        raise ApiFailure()
    if not store.can_access_room(call.me._id, message["rid"]):
        raise MeteorError("error-not-allowed", "Not allowed", {"method": "getSingleMessage"})
    return {"message": message}


def _cursor_time(cursor: str) -> datetime:
    millis = js_parse_int(cursor)
    if millis is None:
        raise PlainError("Invalid Date")
    parsed = parse_date({"$date": millis})
    assert parsed is not None
    return parsed


def _cursor_page(items: list[dict[str, Any]], stamp: str, count: int, nxt: str | None, prev: str | None) -> Any:
    """`handleCursorPagination` for items already filtered and sorted (count + 1 fetched)."""

    def cursor_of(item: dict[str, Any]) -> str:
        return str(epoch_ms(item[stamp]))

    if not items:
        next_cursor = previous_cursor = None
    else:
        if prev:
            next_cursor = cursor_of(items[0])
        elif nxt and len(items) <= count:
            next_cursor = None
        elif nxt:
            next_cursor = cursor_of(items[-2])
        else:
            next_cursor = cursor_of(items[-1])
        if nxt:
            previous_cursor = cursor_of(items[0])
        elif prev and len(items) <= count:
            previous_cursor = None
        elif prev:
            previous_cursor = cursor_of(items[-2])
        else:
            previous_cursor = cursor_of(items[0])
    return items[:count], {"next": next_cursor, "previous": previous_cursor}


async def chat_sync_messages(call: Call) -> Any:
    """`chat.syncMessages` (`getMessageHistory`): `lastUpdate`, or the newer cursor form."""
    store, user, params = call.store, call.me, call.query
    room_id, last_update, kind = params.get("roomId"), params.get("lastUpdate"), params.get("type")
    nxt, prev, count = params.get("next"), params.get("previous"), int(params.get("count") or 20)
    if not room_id:
        raise MeteorError("error-param-required", 'The required "roomId" query param is missing')
    if not last_update and not kind:
        raise MeteorError("error-param-required", 'The "type" or "lastUpdate" parameters must be provided')
    since = parse_js_date(last_update) if last_update else None
    if last_update and since is None:
        raise MeteorError("error-lastUpdate-param-invalid", 'The "lastUpdate" query parameter must be a valid date')
    if not store.can_access_room(user._id, room_id):
        raise MeteorError("error-not-allowed", "Not allowed", {"method": "messages/get"})
    if (nxt or prev) and not kind:
        raise MeteorError(
            "error-type-param-required",
            'The "type" parameter is required when using the "next" or "previous" parameters',
        )
    if nxt and prev:
        raise MeteorError("error-cursor-conflict", 'You cannot provide both "next" and "previous" parameters')
    if (nxt or prev) and last_update:
        raise MeteorError(
            "error-cursor-and-lastUpdate-conflict",
            'The attributes "next", "previous" and "lastUpdate" cannot be used together',
        )
    trash = call.api.trash
    if since is not None:
        updated = sorted(store.room_messages(room_id, since=since), key=lambda m: m["ts"], reverse=True)
        deleted = [d.document() for d in trash.deleted_messages(room_id) if d.deleted_at > since]
        return {"result": {"updated": updated, "deleted": list(reversed(deleted))}}
    if not (nxt or prev):
        # Without a cursor the real server returns plain channel history, which has neither
        # `updated` nor `deleted`; the endpoint then answers two empty lists.
        return {"result": {"updated": [], "deleted": []}}
    boundary = _cursor_time(str(nxt or prev))
    if kind == "UPDATED":
        items = store.room_messages(room_id)
        stamp = "_updatedAt"
    else:
        items = [d.document() for d in trash.deleted_messages(room_id)]
        stamp = "_deletedAt"
    if nxt:
        items = sorted((i for i in items if i[stamp] > boundary), key=lambda i: i[stamp])
    else:
        items = sorted((i for i in items if i[stamp] < boundary), key=lambda i: i[stamp], reverse=True)
    page, cursor = _cursor_page(items[: count + 1], stamp, count, nxt, prev)
    return {
        "result": {
            "updated": page if kind == "UPDATED" else [],
            "deleted": page if kind == "DELETED" else [],
            "cursor": cursor,
        }
    }


# --- rooms, subscriptions, lists ------------------------------------------------------------------


def _since(params: dict[str, Any], code: str, message: str) -> datetime | None:
    raw = params.get("updatedSince")
    if not raw:
        return None
    parsed = parse_js_date(raw)
    if parsed is None:
        raise MeteorError(code, message)
    return parsed


async def rooms_get(call: Call) -> Any:
    since = _since(
        call.query, "error-updatedSince-param-invalid", 'The "updatedSince" query parameter must be a valid date.'
    )
    # Rocket.Chat (`roomsGetMethod`): the rooms of the caller's subscriptions, with `updatedSince`
    # those whose `_updatedAt` is later. A new message always writes its room; an edit only when it
    # is the room's last message. Rooms are never deleted in the sandbox, so `remove` (deleted rooms,
    # from the trash) stays empty.
    return {"update": call.store.user_rooms(call.me._id, updated_after=since), "remove": []}


async def subscriptions_get(call: Call) -> Any:
    since = _since(call.query, "error-roomId-param-invalid", 'The "lastUpdate" query parameter must be a valid date.')
    subscriptions = call.store.user_subscriptions(call.me._id)
    if since is None:
        return {"update": subscriptions, "remove": []}
    removed = call.api.trash.removed_subscriptions(call.me._id, since)
    return {
        "update": [sub for sub in subscriptions if sub["_updatedAt"] > since],
        "remove": [d.document() for d in removed],
    }


async def rooms_info(call: Call) -> Any:
    store, params = call.store, call.query
    room_id, room_name = params.get("roomId"), params.get("roomName")
    if ("roomId" not in params and "roomName" not in params) or (
        "roomId" in params and not room_id and "roomName" in params and not room_name
    ):
        raise MeteorError("error-roomid-param-not-provided", 'The parameter "roomId" or "roomName" is required')
    with store.lock:
        if "roomId" in params:
            room = store.rooms.get(room_id) if isinstance(room_id, str) else None
        else:
            room = store.room_by_name(room_name) if isinstance(room_name, str) else None
        if room is None:
            raise MeteorError(
                "error-room-not-found", 'The required "roomId" or "roomName" param provided does not match any channel'
            )
        if room.get("archived"):
            raise MeteorError("error-room-archived", f"The channel, {room.get('name')}, is archived")
        if not store.can_access_room(call.me._id, room["_id"]):
            raise ApiFailure("not-allowed", "Not Allowed")
        return {"room": dict(room)}


def _paged_rooms(call: Call, rooms: list[dict[str, Any]], key: str) -> dict[str, Any]:
    page = pagination(call.store, call.query)
    rooms = sort_documents(rooms, parse_sort(call.query) or (("name", 1),))
    selected = rooms[page.offset :]
    if page.count is not None:
        selected = selected[: page.count]
    return {key: selected, "offset": page.offset, "count": len(selected), "total": len(rooms)}


async def channels_list_joined(call: Call) -> Any:
    rooms = [room for room in call.store.user_rooms(call.me._id) if room["t"] == "c"]
    return _paged_rooms(call, rooms, "channels")


async def im_list(call: Call) -> Any:
    rooms = [room for room in call.store.user_rooms(call.me._id) if room["t"] == "d"]
    return _paged_rooms(call, rooms, "ims")


async def im_create(call: Call) -> Any:
    """`createDirectMessage`: the caller and the named users (a group DM with several), limited
    to `DirectMesssage_maxUsers` members including the caller (`createDirectRoom`)."""
    store, user, body = call.store, call.me, call.body
    names = [body["username"]] if "username" in body else [n.strip() for n in body["usernames"].split(",")]
    details = {"method": "createDirectMessage"}
    with store.lock:
        if not store.has_permission(user._id, "create-d"):
            raise MeteorError("error-not-allowed", "Not allowed", details)
        others: list[User] = []
        for name in names:
            other = store.find_user(name)
            if other is None or other.username.lower() != name.lower():
                raise MeteorError("error-invalid-user", "Invalid user", details)
            others.append(other)
        members = list(dict.fromkeys([user._id, *(o._id for o in others)]))
        most = int(store.get_setting("DirectMesssage_maxUsers") or 1)
        if len(members) > most:
            raise MeteorError(
                "error-direct-message-max-user-exceeded",
                f"You cannot add more than {most} users, including yourself to a direct message",
                {"method": "createDirectRoom"},
            )
        room = store.create_direct(user._id, *(members[1:] or [user._id]))
    return {"room": {**room, "rid": room["_id"]}}


# Server-side settings that are not public (the `API_*` group is admin-only).
_PRIVATE_SETTING_PREFIXES: Final = ("API_",)


async def settings_public(call: Call) -> Any:
    store, params = call.store, call.query
    with store.lock:
        public = {key: value for key, value in store.settings.items() if not key.startswith(_PRIVATE_SETTING_PREFIXES)}
    wanted: set[str] | None = None
    if isinstance(params.get("_id"), str) and params["_id"]:
        wanted = {part.strip() for part in params["_id"].split(",")}
    elif isinstance(params.get("query"), str) and params["query"]:
        wanted = _ids_from_query(params["query"])
    items = [
        {"_id": key, "value": value, "enterprise": False, "requiredOnWire": False}
        for key, value in sorted(public.items())
        if wanted is None or key in wanted
    ]
    page = pagination(store, params)
    selected = items[page.offset :]
    if page.count is not None:
        selected = selected[: page.count]
    return {"settings": selected, "count": len(selected), "offset": page.offset, "total": len(items)}


def _ids_from_query(raw: str) -> set[str]:
    """The `_id` condition of a `query` JSON parameter (`"x"` or `{"$in": [...]}`)."""
    try:
        query = json.loads(raw)
    except ValueError:
        raise MeteorError("error-invalid-query", f'Invalid query parameter provided: "{raw}"') from None
    condition = query.get("_id") if isinstance(query, dict) else None
    if isinstance(condition, str):
        return {condition}
    if isinstance(condition, dict) and isinstance(condition.get("$in"), list):
        return {str(item) for item in condition["$in"]}
    raise MeteorError("error-invalid-query", f'Invalid query parameter provided: "{raw}"')


ENDPOINTS: Final = (
    Endpoint("chat.sendMessage", "POST", chat_send_message, schema="chat.sendMessage"),
    Endpoint("chat.postMessage", "POST", chat_post_message, schema="chat.postMessage"),
    Endpoint("chat.update", "POST", chat_update, schema="chat.update", typed=True),
    Endpoint("chat.getMessage", "GET", chat_get_message, schema="chat.getMessage"),
    Endpoint("chat.syncMessages", "GET", chat_sync_messages, schema="chat.syncMessages"),
    Endpoint("rooms.get", "GET", rooms_get),
    Endpoint("rooms.info", "GET", rooms_info),
    Endpoint("subscriptions.get", "GET", subscriptions_get),
    Endpoint("channels.list.joined", "GET", channels_list_joined),
    Endpoint("im.list", "GET", im_list),
    Endpoint("dm.list", "GET", im_list),
    Endpoint("im.create", "POST", im_create, schema="im.create", typed=True),
    Endpoint("dm.create", "POST", im_create, schema="im.create", typed=True),
    Endpoint("settings.public", "GET", settings_public, auth_required=False),
)
