"""The chat message as the rest of the bot sees it: one frozen, validated value.

Raw message documents reach the bot two ways: as `stream-room-messages` events over DDP (dates
as EJSON `{"$date": ms}`) and from REST catch-up calls such as `chat.syncMessages` (dates as ISO
strings). Both are turned into a `ChatMessage` here and nowhere else. Anything that does not
look like a message (missing ids, wrong types, unreadable dates) becomes None rather than an
exception: the stream is input from a server, and one odd document must not stop the bot.

Only the fields the bot acts on are kept (contract §5.1); the filtering rules of §5.3 (system
messages, own messages, bots, ephemerals) are the runtime's business, so the facts they need
are all here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from bot.rocketchat.ejson import decode_date

T = TypeVar("T")


class _Malformed(Exception):
    """A field is present with a type no message document has."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    id: str = Field(min_length=1)
    room_id: str = Field(min_length=1)
    text: str
    ts: AwareDatetime
    # Re-deliveries (edits, reactions, thread counters) carry the same id and a newer updated_at.
    updated_at: AwareDatetime
    user_id: str = Field(min_length=1)
    username: str
    thread_id: str | None = None
    # A thread reply also shown in the room (`tshow`).
    thread_show: bool = False
    # Set on system messages (`t`: "uj", "rm", "e2e", ...); None on ordinary user messages.
    system_type: str | None = None
    # Posted by an integration or an SDK bot (the document has a `bot` field).
    is_bot: bool = False
    # `bot.i` of a message posted by an integration: its id (contract §5.1; SDK bots put other text here).
    bot_integration_id: str | None = None
    edited_at: AwareDatetime | None = None
    mentions: tuple[str, ...] = ()
    # From the `__my_messages__` meta; None when the event had none (per-room subscription, REST).
    room_type: str | None = None
    room_name: str | None = None  # absent for direct messages
    room_participant: bool | None = None
    has_attachments: bool = False
    # A client-only message (`private: true`), e.g. a server notice; never stored by the server.
    is_ephemeral: bool = False

    @classmethod
    def from_stream_args(cls, args: Sequence[Any]) -> Self | None:
        """Parse a `stream-room-messages` event's args: `[message]` or `[message, meta]`."""
        if isinstance(args, str | bytes) or not isinstance(args, Sequence) or not args:
            return None
        return cls.from_document(args[0], args[1] if len(args) > 1 else None)

    @classmethod
    def from_document(cls, document: Any, meta: Any = None) -> Self | None:
        """Parse one message document (EJSON or ISO dates); None if it is not a usable message."""
        if not isinstance(document, Mapping):
            return None
        try:
            return cls(**_fields(document, meta))
        except (_Malformed, ValidationError):
            return None


def _fields(doc: Mapping[str, Any], meta: Any) -> dict[str, Any]:
    user = doc.get("u")
    if not isinstance(user, Mapping):
        raise _Malformed("u")
    ts = _date(doc, "ts", required=True)
    mentions = _typed(doc, "mentions", list) or []
    attachments = _typed(doc, "attachments", list) or []
    fields: dict[str, Any] = {
        "id": doc.get("_id"),
        "room_id": doc.get("rid"),
        "text": _typed(doc, "msg", str) or "",
        "ts": ts,
        "updated_at": _date(doc, "_updatedAt") or ts,
        "user_id": user.get("_id"),
        "username": user.get("username"),
        "thread_id": _typed(doc, "tmid", str),
        "thread_show": _typed(doc, "tshow", bool) or False,
        "system_type": _typed(doc, "t", str),
        "is_bot": doc.get("bot") not in (None, False),
        "bot_integration_id": _bot_integration_id(doc.get("bot")),
        "edited_at": _date(doc, "editedAt"),
        "mentions": tuple(
            m["username"] for m in mentions if isinstance(m, Mapping) and isinstance(m.get("username"), str)
        ),
        "has_attachments": bool(attachments),
        "is_ephemeral": _typed(doc, "private", bool) or False,
    }
    if isinstance(meta, Mapping):
        fields["room_type"] = _typed(meta, "roomType", str)
        fields["room_name"] = _typed(meta, "roomName", str)
        fields["room_participant"] = _typed(meta, "roomParticipant", bool)
    elif meta is not None:
        raise _Malformed("meta")
    return fields


def _bot_integration_id(bot: Any) -> str | None:
    """`bot.i` when it is a non-empty string; anything else is not an integration id (never malformed:
    the `bot` object is free-form)."""
    value = bot.get("i") if isinstance(bot, Mapping) else None
    return value if isinstance(value, str) and value else None


def _typed(doc: Mapping[str, Any], key: str, kind: type[T]) -> T | None:
    """`doc[key]` if it has the expected type, None if absent or null; malformed otherwise."""
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise _Malformed(key)
    return value


def _date(doc: Mapping[str, Any], key: str, *, required: bool = False) -> datetime | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    decoded = decode_date(value)
    if decoded is None:
        raise _Malformed(key)
    return decoded
