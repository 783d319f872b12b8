"""Frozen values the REST client hands out, validated once at the edge.

Rocket.Chat documents are open-ended and change between versions, so the models name only the
fields the bot reasons about and ignore the rest. The one exception is an integration: its
update is a full replacement (contract §2.4.4), so `Integration` keeps the whole stored document
next to the few typed fields, and every write is built from that document, never from the model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

INCOMING: Final = "webhook-incoming"
OUTGOING: Final = "webhook-outgoing"
IntegrationType = Literal["webhook-incoming", "webhook-outgoing"]


_IMMUTABLE_SCALARS: Final = (str, int, float, bool)


def copy_document(value: Any) -> Any:
    """A deep copy of a document as JSON decoding builds it (dicts, lists, scalars).

    What `copy.deepcopy` does for such a value, ~5x faster (an integration: 4 µs instead of
    22 µs, and a command copies one about six times). A dict subclass comes back a plain dict;
    any other type (a datetime from EJSON, a tuple) goes to `copy.deepcopy`. Unlike deepcopy, a
    value referenced twice is copied twice, which decoded JSON never does.
    """
    if isinstance(value, dict):
        return {key: copy_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_document(item) for item in value]
    if value is None or isinstance(value, _IMMUTABLE_SCALARS):
        return value
    return copy.deepcopy(value)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ServerInfo(_Frozen):
    """`GET /api/info`. Only `version` is dependable (and only for logged-in callers on newer servers)."""

    version: str | None = None


class UserRoom(_Frozen):
    """One entry of `users.info?includeUserRooms=true`: a room the user is subscribed to."""

    rid: str
    name: str | None = None
    t: str | None = None
    roles: tuple[str, ...] = ()


class UserInfo(_Frozen):
    """A user as `users.info` / `me` / login answer it.

    `roles` is None when the server left it out: `users.info` only includes it for the caller
    itself or when the asking account has `view-full-other-user-info` (contract §3.3). The same
    holds for `rooms` with `includeUserRooms=true` and `view-other-user-channels`.
    """

    id: str = Field(alias="_id")
    username: str | None = None
    name: str | None = None
    roles: tuple[str, ...] | None = None
    active: bool | None = None
    type: str | None = None
    rooms: tuple[UserRoom, ...] | None = None


class Credentials(_Frozen):
    """The pair sent as `X-User-Id` / `X-Auth-Token`. The token never shows in a repr."""

    user_id: str
    auth_token: SecretStr


class PermissionDoc(_Frozen):
    id: str = Field(alias="_id")
    roles: tuple[str, ...] = ()


class PermissionsSnapshot(_Frozen):
    """`permissions.listAll`: changed/all permission documents and the ids of removed ones."""

    update: tuple[PermissionDoc, ...] = ()
    remove: tuple[str, ...] = ()


class Role(_Frozen):
    id: str = Field(alias="_id")
    name: str | None = None
    scope: str | None = None


class Delta(_Frozen):
    """`subscriptions.get` / `rooms.get`: raw documents updated and removed since a date."""

    update: tuple[dict[str, Any], ...] = ()
    remove: tuple[dict[str, Any], ...] = ()


class IntegrationPage(_Frozen):
    """One page of `integrations.list`. `total` counts every match, `count` this page."""

    integrations: tuple[dict[str, Any], ...] = Field(default=(), repr=False)
    offset: int = 0
    count: int = 0
    total: int = 0


class HistoryPage(_Frozen):
    """One page of `integrations.history` (an outgoing webhook's calls, newest first). Entries
    may carry the webhook's token (`data.token`) and URLs with credentials: never repeat them."""

    entries: tuple[dict[str, Any], ...] = Field(default=(), repr=False)
    offset: int = 0
    total: int = 0


class Integration(_Frozen):
    """A read-only view over one stored integration document.

    The typed fields are for decisions and display; `document` is the document exactly as the
    server returned it (tokens and scripts included, hence hidden from the repr). Treat it as
    read-only and use `to_dict()` for a private copy to modify.
    """

    id: str
    type: str
    name: str
    enabled: bool
    created_by_id: str | None = None
    created_by_username: str | None = None
    channels: tuple[str, ...] = ()
    document: dict[str, Any] = Field(repr=False)
    # The lock book's mark taken just before this document was read from the server (bot/integrations/locks.py),
    # so a write may start from this read if nobody wrote the integration since; None when it
    # came from elsewhere (an audit row, a timer), which is then read again before a write.
    read_mark: int | None = Field(default=None, repr=False)
    # When that read was answered (`time.monotonic()`): a write starts from it only while it is recent
    # (`IntegrationService.editing`: an edit made in the admin UI since is recorded nowhere).
    read_time: float | None = Field(default=None, repr=False)

    @classmethod
    def of(cls, document: Mapping[str, Any] | Integration) -> Integration:
        if isinstance(document, Integration):
            return document
        doc: dict[str, Any] = copy_document(dict(document))
        created_by = doc.get("_createdBy")
        channels = doc.get("channel")
        return cls(
            id=str(doc["_id"]),
            type=str(doc.get("type") or ""),
            name=str(doc.get("name") or ""),
            enabled=doc.get("enabled") is True,
            created_by_id=created_by.get("_id") if isinstance(created_by, dict) else None,
            created_by_username=created_by.get("username") if isinstance(created_by, dict) else None,
            channels=tuple(str(c) for c in channels) if isinstance(channels, list) else (),
            document=doc,
        )

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = copy_document(self.document)
        return result

    def read_at(self, mark: int) -> Integration:
        """This document, known to have been read from the server at `mark` (bot/integrations/locks.py)."""
        return self.model_copy(update={"read_mark": mark, "read_time": time.monotonic()})

    @property
    def is_incoming(self) -> bool:
        return self.type == INCOMING

    @property
    def is_outgoing(self) -> bool:
        return self.type == OUTGOING


class UpdateOutcome(_Frozen):
    """The result of a change: the document before and after, and whether anything was written."""

    before: Integration
    after: Integration
    changed: bool
