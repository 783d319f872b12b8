"""What Rocket.Chat's integration methods do to the `rocketchat_integrations` collection.

Theory of operation
-------------------
This is the data side of the REST routes `integrations.create/.update/.remove/.get/.list`
(contract §2), reproduced step by step in Rocket.Chat's order because the *order* decides which
error a caller sees (validation before permission for outgoing updates, the permission check
right after the channel syntax check for incoming ones, ...).

The part that matters most to the bot is §2.4.4: Rocket.Chat runs MongoDB with
`ignoreUndefined: false`, and JSON cannot carry `undefined`, so every optional key a client omits
reaches the `$set` as `undefined` and is stored as null. The sandbox models a JavaScript
`undefined` with the `UNDEFINED` sentinel; `_SetBuilder` turns it into a stored null
(`config.omitted_as_null`) or leaves the field alone (a driver that ignores undefined). Which
fields are written at all depends on the server line: `config.update_mode` "8.x" only writes the
incoming fields present in the body (and resets `skipTranspile`), "legacy" (7.x) always writes
alias/avatar/emoji/script. Outgoing updates write every field in both.

Errors are raised as `MeteorError` (rendered `"<reason> [<code>]"` with `errorType`/`details`)
or `PlainError` (`API.v1.failure('text')` and plain `Error`s: only `error`), exactly where
Rocket.Chat throws the corresponding kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sandbox.config import SandboxConfig
from sandbox.docsort import SortSpec, sort_documents
from sandbox.errors import MeteorError, PlainError
from sandbox.ids import meteor_id
from sandbox.jsvalues import js_parse_int
from sandbox.scripts import compile_script
from sandbox.store import Store, User

INCOMING: Final = "webhook-incoming"
OUTGOING: Final = "webhook-outgoing"
DEFAULT_SCRIPT_ENGINE: Final = "isolated-vm"
ALL_INCOMING: Final = "manage-incoming-integrations"
OWN_INCOMING: Final = "manage-own-incoming-integrations"
ALL_OUTGOING: Final = "manage-outgoing-integrations"
OWN_OUTGOING: Final = "manage-own-outgoing-integrations"
MANAGE_ANY: Final = (ALL_OUTGOING, OWN_OUTGOING, ALL_INCOMING, OWN_INCOMING)
SCOPED_CHANNELS: Final = ("all_public_channels", "all_private_groups", "all_direct_messages")


class _Undefined:
    """JavaScript `undefined`: what an omitted JSON key is inside Rocket.Chat."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


def _get(source: Mapping[str, Any], key: str) -> Any:
    return source.get(key, UNDEFINED)


def _nullish(value: Any) -> bool:
    """JavaScript `value == null` (the `??` test)."""
    return value is None or value is UNDEFINED


def _truthy(value: Any) -> bool:
    """JavaScript truthiness for JSON values ([] and {} are truthy)."""
    if isinstance(value, list | dict):
        return True
    return not _nullish(value) and bool(value)


@dataclass(frozen=True)
class OutgoingEvent:
    uses_channel: bool
    uses_trigger_words: bool
    uses_target_room: bool


# core-typings 8.8.1 `OutgoingIntegrationEvent` (contract §2.1); [dev]-only events are left out.
OUTGOING_EVENTS: Final[dict[str, OutgoingEvent]] = {
    "sendMessage": OutgoingEvent(True, True, False),
    "fileUploaded": OutgoingEvent(True, False, False),
    "roomArchived": OutgoingEvent(False, False, False),
    "roomCreated": OutgoingEvent(False, False, False),
    "roomJoined": OutgoingEvent(True, False, False),
    "roomLeft": OutgoingEvent(True, False, False),
    "userCreated": OutgoingEvent(False, False, True),
}


def _should_compile(source: Mapping[str, Any]) -> bool:
    script = source.get("script")
    return source.get("scriptEnabled") is True and isinstance(script, str) and script.strip() != ""


# --- helpers shared by the methods ------------------------------------------------------------------


class _SetBuilder:
    """A `$set`/`$unset` pair in which UNDEFINED becomes null or nothing (contract §2.4.4)."""

    def __init__(self, omitted_as_null: bool) -> None:
        self.omitted_as_null = omitted_as_null
        self.set_fields: dict[str, Any] = {}
        self.unset_fields: list[str] = []

    def put(self, key: str, value: Any) -> None:
        if value is not UNDEFINED:
            self.set_fields[key] = value
        elif self.omitted_as_null:
            self.set_fields[key] = None

    def unset(self, key: str) -> None:
        self.unset_fields.append(key)


def _brief(user: User) -> dict[str, Any]:
    # `Users.findOne({_id}, {projection: {username: 1}})`
    return {"_id": user._id, "username": user.username}


def _user_by_username(store: Store, username: Any) -> User | None:
    """`Users.findOne({username})`: exact username only (ids do not match)."""
    if not isinstance(username, str):
        return None
    user = store.find_user(username)
    return user if user is not None and user.username == username else None


def _resolve_channel_record(store: Store, entry: str) -> str | None:
    """The `_id` a `#room`/`@user` entry resolves to (rooms and users by id or name), else None."""
    kind, value = entry[:1], entry[1:]
    if kind == "#":
        room = store.find_room(value)
        return str(room["_id"]) if room is not None else None
    if kind == "@":
        user = store.find_user(value)
        return user._id if user is not None else None
    return None


def _created_by(doc: Mapping[str, Any]) -> Any:
    created_by = doc.get("_createdBy")
    return created_by.get("_id") if isinstance(created_by, dict) else None


def _find_by_url(store: Store, url: Any) -> dict[str, Any] | None:
    """`Integrations.findOne({urls: url})`: any integration whose `urls` contains it."""
    for doc in store.list_integrations():
        urls = doc.get("urls")
        if urls == url or (isinstance(urls, list) and url in urls):
            return doc
    return None


def _find_outgoing_target(store: Store, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The REST handlers' lookup: by `target_url` if given, else by `integrationId`."""
    target_url, integration_id = body.get("target_url"), body.get("integrationId")
    if _truthy(target_url):
        return _find_by_url(store, target_url)
    if _truthy(integration_id) and isinstance(integration_id, str):
        return store.get_integration(integration_id)
    return None


def _give_bot_role(store: Store, user: User) -> None:
    # [7.x]/[8.x]: `addUserRolesAsync(user._id, ['bot'])` on every create/update (contract §2.4.3 step 8).
    if "bot" not in user.roles:
        store.set_user_roles(user._id, [*user.roles, "bot"])


def can_manage(store: Store, caller: User, doc: Mapping[str, Any]) -> bool:
    """`hasIntegrationsPermission` of integrations.get: all-perm, or own-perm on one's own."""
    kind = "incoming" if doc.get("type") == INCOMING else "outgoing"
    if store.has_permission(caller._id, f"manage-{kind}-integrations"):
        return True
    return _created_by(doc) == caller._id and store.has_permission(caller._id, f"manage-own-{kind}-integrations")


def _find_for_caller(
    store: Store, caller: User, integration_id: Any, *, all_perm: str, own_perm: str, method: str
) -> dict[str, Any] | None:
    """The either/or permission fallback of update/delete (contract §3.2): all -> any id,
    own -> only one's own, neither -> not_authorized."""
    if store.has_permission(caller._id, all_perm):
        return store.get_integration(integration_id) if isinstance(integration_id, str) else None
    if store.has_permission(caller._id, own_perm):
        doc = store.get_integration(integration_id) if isinstance(integration_id, str) else None
        return doc if doc is not None and _created_by(doc) == caller._id else None
    raise MeteorError("not_authorized", "Unauthorized", {"method": method})


# --- incoming ---------------------------------------------------------------------------------------


def _incoming_channels(channel: Any, method: str) -> list[str]:
    if not isinstance(channel, str) or channel.strip() == "":
        raise MeteorError("error-invalid-channel", "Invalid channel", {"method": method})
    channels = [entry.strip() for entry in channel.split(",")]
    for entry in channels:
        if entry[:1] not in ("@", "#"):
            raise MeteorError(
                "error-invalid-channel-start-with-chars", "Invalid channel. Start with @ or #", {"method": method}
            )
    return channels


def _check_incoming_channel_records(store: Store, caller: User, channels: Iterable[str], method: str) -> None:
    bypass_membership = store.has_all_permissions(caller._id, (ALL_INCOMING, OWN_INCOMING))
    for entry in channels:
        record_id = _resolve_channel_record(store, entry)
        if record_id is None:
            raise MeteorError("error-invalid-room", "Invalid room", {"method": method})
        # For `@user` the "room" is the user id: a caller lacking one of the two perms never
        # has a subscription with that rid (contract §2.4.3 step 6 quirk).
        if not bypass_membership and not store.is_member(record_id, caller._id):
            raise MeteorError("error-invalid-channel", "Invalid Channel", {"method": method})


def _create_incoming(store: Store, caller: User, body: Mapping[str, Any]) -> dict[str, Any]:
    method = "addIncomingIntegration"
    if not store.has_any_permission(caller._id, (ALL_INCOMING, OWN_INCOMING)):
        raise MeteorError("not_authorized", "Unauthorized", {"method": method})
    channels = _incoming_channels(body.get("channel"), method)
    username = body.get("username")
    if not isinstance(username, str) or username.strip() == "":
        raise MeteorError("error-invalid-username", "Invalid username", {"method": method})
    user = _user_by_username(store, username)
    if user is None:
        raise MeteorError("error-invalid-user", "Invalid user", {"method": method})
    engine = body.get("scriptEngine")
    doc: dict[str, Any] = {
        **body,
        "scriptEngine": DEFAULT_SCRIPT_ENGINE if engine is None else engine,
        "type": INCOMING,
        "channel": channels,
        "overrideDestinationChannelEnabled": body.get("overrideDestinationChannelEnabled") is True,
        "token": meteor_id(48),
        "userId": user._id,
        "_createdAt": store.clock(),
        "_createdBy": _brief(caller),
    }
    if _should_compile(body):
        compiled = compile_script(body["script"])
        doc.update({"scriptCompiled": compiled.code} if compiled.code is not None else {"scriptError": compiled.error})
    _check_incoming_channel_records(store, caller, channels, method)
    _give_bot_role(store, user)
    return store.insert_integration(doc)


def _update_incoming(
    store: Store, config: SandboxConfig, caller: User, integration_id: str, body: Mapping[str, Any]
) -> None:
    """`updateIncomingIntegration`, steps 1-9 of contract §2.4.3."""
    method = "updateIncomingIntegration"
    channels = _incoming_channels(body.get("channel"), method)
    current = _find_for_caller(
        store, caller, integration_id, all_perm=ALL_INCOMING, own_perm=OWN_INCOMING, method=method
    )
    if current is None:
        raise MeteorError("error-invalid-integration", "Invalid integration", {"method": method})
    # `integration.scriptEngine ?? oldScriptEngine ?? 'isolated-vm'`
    script_engine = next(
        (v for v in (_get(body, "scriptEngine"), current.get("scriptEngine")) if not _nullish(v)), DEFAULT_SCRIPT_ENGINE
    )
    eight = config.update_mode == "8.x"
    skip_transpile = body.get("skipTranspile") is True
    if _should_compile(body):
        # A separate write before the channel checks: it persists even if a later step fails.
        compiled = compile_script(body["script"])
        extra = {"skipTranspile": skip_transpile} if eight else {}
        if compiled.code is not None:
            store.update_integration(integration_id, {"scriptCompiled": compiled.code, **extra}, ["scriptError"])
        else:
            store.update_integration(integration_id, {"scriptError": compiled.error, **extra}, ["scriptCompiled"])
    _check_incoming_channel_records(store, caller, channels, method)
    username = body["username"] if "username" in body else current.get("username")
    user = _user_by_username(store, username)
    if user is None:
        raise MeteorError("error-invalid-post-as-user", "Invalid Post As User", {"method": method})
    _give_bot_role(store, user)

    update = _SetBuilder(config.omitted_as_null)
    update.put("enabled", _get(body, "enabled"))
    update.put("name", _get(body, "name"))
    for key in ("avatar", "emoji", "alias"):
        if not eight or key in body:  # legacy: always written, so an omitted key is wiped
            update.put(key, _get(body, key))
    update.put("channel", channels)
    if "username" in body:
        update.put("username", user.username)
        update.put("userId", user._id)
    if not eight or "script" in body:
        update.put("script", _get(body, "script"))
    update.put("scriptEnabled", _get(body, "scriptEnabled"))
    if _truthy(script_engine):
        update.put("scriptEngine", script_engine)
    if eight:
        update.put("skipTranspile", skip_transpile)
    if "overrideDestinationChannelEnabled" in body:
        update.put("overrideDestinationChannelEnabled", body["overrideDestinationChannelEnabled"])
    update.put("_updatedAt", store.clock())
    update.put("_updatedBy", _brief(caller))
    store.update_integration(integration_id, update.set_fields, update.unset_fields)


# --- outgoing ---------------------------------------------------------------------------------------


def _parse_csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def validate_outgoing(store: Store, caller: User, body: Mapping[str, Any]) -> dict[str, Any]:
    """`validateOutgoingIntegration` (contract §2.4.5 steps 1-7): the document to store, in
    which keys the client omitted are simply absent."""
    integration = dict(body)
    channel = integration.get("channel")
    # `integration.channel && ... trim() === ''`: only a whitespace-only string is dropped.
    if isinstance(channel, str) and channel and channel.strip() == "":
        del integration["channel"]
    _verify_required_fields(integration)
    event = OUTGOING_EVENTS[integration["event"]]
    channels: list[str] = []
    if event.uses_channel:
        if not isinstance(integration.get("channel"), str):
            raise MeteorError("error-invalid-channel", "Invalid Channel", {"function": "validateOutgoing"})
        channels = _parse_csv(integration["channel"])
        for entry in channels:
            if entry[:1] not in ("@", "#") and entry.lower() not in SCOPED_CHANNELS:
                raise MeteorError(
                    "error-invalid-channel-start-with-chars",
                    "Invalid channel. Start with @ or #",
                    {"function": "validateOutgoing"},
                )
    elif not store.has_permission(caller._id, ALL_OUTGOING):
        raise MeteorError(
            "error-invalid-permissions",
            "Invalid permission for required Integration creation.",
            {"function": "validateOutgoing"},
        )
    user = _user_by_username(store, integration["username"])
    if user is None:
        reason = "Invalid user (did you delete the `rocket.cat` user?)"
        raise MeteorError("error-invalid-user", reason, {"function": "validateOutgoing"})
    engine = integration.get("scriptEngine")
    validated: dict[str, Any] = {
        **integration,
        "type": OUTGOING,
        "channel": channels,
        "userId": user._id,
        "scriptEngine": DEFAULT_SCRIPT_ENGINE if engine is None else engine,
        "_createdAt": store.clock(),
        "_createdBy": _brief(caller),
    }
    words = integration.get("triggerWords")
    if event.uses_trigger_words and _truthy(words):
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise MeteorError("error-invalid-triggerWords", "Invalid triggerWords", {"function": "validateOutgoing"})
        validated["triggerWords"] = [w for w in words if w.strip() != ""]
    else:
        validated.pop("triggerWords", None)
    if _should_compile(integration):
        compiled = compile_script(integration["script"])
        if compiled.code is not None:
            validated["scriptCompiled"] = compiled.code
        else:
            validated["scriptError"] = compiled.error
    if "runOnEdits" in integration:
        validated["runOnEdits"] = integration["runOnEdits"] is True
    _verify_channel_permissions(store, caller, channels)
    if _truthy(validated.get("retryFailedCalls")):
        count = js_parse_int(validated.get("retryCount")) if _truthy(validated.get("retryCount")) else None
        validated["retryCount"] = count if count is not None and count > 0 else 4
        delay = validated.get("retryDelay")
        validated["retryDelay"] = delay.lower() if isinstance(delay, str) and delay.strip() else "powers-of-ten"
    return validated


def _verify_required_fields(integration: dict[str, Any]) -> None:
    details = {"function": "validateOutgoing._verifyRequiredFields"}
    event = integration.get("event")
    if not isinstance(event, str) or event.strip() == "" or event not in OUTGOING_EVENTS:
        raise MeteorError("error-invalid-event-type", "Invalid event type", details)
    username = integration.get("username")
    if not isinstance(username, str) or username.strip() == "":
        raise MeteorError("error-invalid-username", "Invalid username", details)
    if OUTGOING_EVENTS[event].uses_target_room and not _truthy(integration.get("targetRoom")):
        raise MeteorError("error-invalid-targetRoom", "Invalid Target Room", details)
    urls = integration.get("urls")
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise MeteorError("error-invalid-urls", "Invalid URLs", details)
    integration["urls"] = [url for url in urls if url.strip() != ""]
    if not integration["urls"]:
        raise MeteorError("error-invalid-urls", "Invalid URLs", details)


def _verify_channel_permissions(store: Store, caller: User, channels: Iterable[str]) -> None:
    details = {"function": "validateOutgoing._verifyUserHasPermissionForChannels"}
    bypass_membership = store.has_all_permissions(caller._id, (ALL_OUTGOING, OWN_OUTGOING))
    for entry in channels:
        # Case-sensitive here although the syntax check above lowered the entry: an upper-case
        # scope passes the syntax check and then fails as an unknown room, as in Rocket.Chat.
        if entry in SCOPED_CHANNELS:
            if entry != "all_public_channels" and not store.has_permission(caller._id, ALL_OUTGOING):
                raise MeteorError("error-invalid-channel", "Invalid Channel", details)
            continue
        record_id = _resolve_channel_record(store, entry)
        if record_id is None:
            raise MeteorError("error-invalid-room", "Invalid room", details)
        if not bypass_membership and not store.is_member(record_id, caller._id):
            raise MeteorError("error-invalid-channel", "Invalid Channel", details)


def _create_outgoing(store: Store, caller: User, body: Mapping[str, Any]) -> dict[str, Any]:
    if not store.has_any_permission(caller._id, (ALL_OUTGOING, OWN_OUTGOING)):
        raise MeteorError("not_authorized")  # a bare Meteor.Error: "[not_authorized]"
    return store.insert_integration(validate_outgoing(store, caller, body))


def _update_outgoing(
    store: Store, config: SandboxConfig, caller: User, integration_id: str, body: Mapping[str, Any]
) -> None:
    """`updateOutgoingIntegration`, steps 1-11 of contract §2.4.5."""
    method = "updateOutgoingIntegration"
    integration = validate_outgoing(store, caller, body)
    token = integration.get("token")
    if not isinstance(token, str) or token.strip() == "":
        raise MeteorError("error-invalid-token", "Invalid token", {"method": method})
    current = _find_for_caller(
        store, caller, integration_id, all_perm=ALL_OUTGOING, own_perm=OWN_OUTGOING, method=method
    )
    if current is None:
        raise MeteorError("invalid_integration", "[methods] updateOutgoingIntegration -> integration not found")

    update = _SetBuilder(config.omitted_as_null)
    for key in ("event", "enabled", "name", "avatar", "emoji", "alias", "channel", "targetRoom", "impersonateUser"):
        update.put(key, _get(integration, key))
    for key in ("username", "userId", "urls", "token", "script", "scriptEnabled"):
        update.put(key, _get(integration, key))
    # Validation already filled the default engine, so a stored non-default engine is reset.
    update.put("scriptEngine", integration["scriptEngine"])
    if config.update_mode == "8.x":
        update.put("skipTranspile", _get(integration, "skipTranspile"))
    if _truthy(integration.get("scriptCompiled")):
        update.put("scriptCompiled", integration["scriptCompiled"])
        update.unset("scriptError")
    else:
        update.put("scriptError", _get(integration, "scriptError"))
        update.unset("scriptCompiled")
    for key in ("triggerWords", "retryFailedCalls", "retryCount", "retryDelay", "triggerWordAnywhere", "runOnEdits"):
        update.put(key, _get(integration, key))
    update.put("_updatedAt", store.clock())
    update.put("_updatedBy", _brief(caller))
    store.update_integration(integration_id, update.set_fields, update.unset_fields)


# --- the REST-facing operations ----------------------------------------------------------------------


def create_integration(store: Store, caller: User, body: Mapping[str, Any]) -> dict[str, Any]:
    """`POST integrations.create` after schema validation (contract §2.5)."""
    with store.lock:
        if body.get("type") == OUTGOING:
            return _create_outgoing(store, caller, body)
        if body.get("type") == INCOMING:
            return _create_incoming(store, caller, body)
        raise PlainError("Invalid integration type.")


def update_incoming_integration(
    store: Store, config: SandboxConfig, caller: User, integration_id: str, body: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The `updateIncomingIntegration(integrationId, integration)` method on its own (what the
    deprecated DDP method runs): no REST lookup or type dispatch; returns the updated document."""
    with store.lock:
        _update_incoming(store, config, caller, integration_id, body)
        return store.get_integration(integration_id)


def update_outgoing_integration(
    store: Store, config: SandboxConfig, caller: User, integration_id: str, body: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The `updateOutgoingIntegration(integrationId, integration)` method on its own."""
    with store.lock:
        _update_outgoing(store, config, caller, integration_id, body)
        return store.get_integration(integration_id)


def update_integration(store: Store, config: SandboxConfig, caller: User, body: Mapping[str, Any]) -> dict[str, Any]:
    """`PUT integrations.update` after schema validation (contract §2.4.2): dispatches on the
    body's `type`, not on the stored one, and answers with the re-read document."""
    with store.lock:
        kind = body.get("type")
        if kind == OUTGOING:
            found = _find_outgoing_target(store, body)
            if found is None:
                raise PlainError("No integration found.")
            _update_outgoing(store, config, caller, found["_id"], body)
        elif kind == INCOMING:
            integration_id = body.get("integrationId")
            found = store.get_integration(integration_id) if isinstance(integration_id, str) else None
            if found is None:
                raise PlainError("No integration found.")
            _update_incoming(store, config, caller, found["_id"], body)
        else:
            raise PlainError("Invalid integration type.")
        updated = store.get_integration(found["_id"])
        assert updated is not None  # the lock is held since the lookup
        return updated


def remove_integration(store: Store, caller: User, body: Mapping[str, Any]) -> dict[str, Any]:
    """`POST integrations.remove` after validation and the route permission (contract §2.6).
    The delete function is chosen by the body's type; answers with the deleted document."""
    with store.lock:
        kind = body.get("type")
        if kind == OUTGOING:
            if not _truthy(body.get("target_url")) and not _truthy(body.get("integrationId")):
                raise PlainError("An integrationId or target_url needs to be provided.")
            found = _find_outgoing_target(store, body)
            all_perm, own_perm, method = ALL_OUTGOING, OWN_OUTGOING, "deleteOutgoingIntegration"
        elif kind == INCOMING:
            integration_id = body.get("integrationId")
            found = store.get_integration(integration_id) if isinstance(integration_id, str) else None
            all_perm, own_perm, method = ALL_INCOMING, OWN_INCOMING, "deleteIncomingIntegration"
        else:
            raise PlainError("Invalid integration type.")
        if found is None:
            raise PlainError("No integration found.")
        if _find_for_caller(store, caller, found["_id"], all_perm=all_perm, own_perm=own_perm, method=method) is None:
            raise MeteorError("error-invalid-integration", "Invalid integration", {"method": method})
        store.delete_integration(found["_id"])
        return found


def get_integration(store: Store, caller: User, integration_id: str, created_by: str | None) -> dict[str, Any]:
    """`GET integrations.get` (contract §2.3): plain errors, both answered with HTTP 400."""
    with store.lock:
        found = store.get_integration(integration_id)
        if found is None or (created_by and _created_by(found) != created_by):
            raise PlainError("The integration does not exists.")
        if not can_manage(store, caller, found):
            raise PlainError("not-authorized")
        return found


# --- integrations.list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    offset: int = 0
    count: int | None = None  # None: no limit (count=0 with API_Allow_Infinite_Count)
    name: str | None = None
    type: str | None = None
    sort: SortSpec = ()


@dataclass(frozen=True)
class ListPage:
    integrations: list[dict[str, Any]]
    total: int


def visible_to(store: Store, caller: User, doc: Mapping[str, Any]) -> bool:
    """`mountIntegrationQueryBasedOnPermissions` as a predicate (contract §2.2)."""
    uid = caller._id
    all_out, all_in = store.has_permission(uid, ALL_OUTGOING), store.has_permission(uid, ALL_INCOMING)
    own_out, own_in = store.has_permission(uid, OWN_OUTGOING), store.has_permission(uid, OWN_INCOMING)
    mine = bool(_created_by(doc) == uid)
    if all_out and all_in:
        return True
    if own_out and own_in:
        return mine  # even with one "all" permission: the quirk of the real query
    kind = doc.get("type")
    return (
        (all_out and kind == OUTGOING)
        or (all_in and kind == INCOMING)
        or (own_out and kind == OUTGOING and mine)
        or (own_in and kind == INCOMING and mine)
    )


def list_integrations(store: Store, caller: User, query: ListQuery) -> ListPage:
    with store.lock:
        # Name and type first: the store finds those without copying every document.
        matching = store.find_integrations(name=query.name or None, kind=query.type or None)
        found = [doc for doc in matching if visible_to(store, caller, doc)]
    found = sort_documents(found, query.sort)
    page = found[query.offset :]
    if query.count is not None:
        page = page[: query.count]
    return ListPage(page, len(found))
