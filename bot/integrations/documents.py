"""Has an integration changed since the bot last wrote it, and what would bring an old version back?

Both timed re-enables and `undo` must not overwrite someone else's change, and Rocket.Chat has
no conditional update (no If-Match), so the bot compares: the document its own write produced
(kept in the audit trail or the timer row) against the document stored now. Server-managed
fields (`_updatedAt`, `_updatedBy`, the compiled script, ...) are not compared as fields, but a
newer `_updatedAt` alone means somebody saved the integration again, even without a visible
change (e.g. switched it on and off): that counts as "touched" too.

The comparison and the write are one step for the bot: both happen on the document read under
the integration's lock (`IntegrationService.editing`, bot/integrations/locks.py), so no other writer in the bot
comes between them. A change made outside the bot in the milliseconds between the read and the
write cannot be prevented (the API has no conditional update); the verification after the write
reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from bot.integrations.service import NOT_AUTHORIZED, differences, display, read_integration, updatable_fields
from bot.rocketchat.ejson import decode_date


def changed_fields(expected: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Fields where `current` differs from `expected`, as `(expected, current)` display strings
    (secrets masked), ignoring server-managed fields and the server's own normalisation."""
    return differences(current, expected, current)


# Fields whose values name rooms: a reader sees only the rooms they may see (`shown_changes`).
ROOM_FIELDS: Final = frozenset({"channel", "targetRoom"})
HIDDEN_ROOM: Final = "(a room not shown)"


def shown_changes(
    expected: Mapping[str, Any], current: Mapping[str, Any], *, sees: Callable[[str], bool]
) -> dict[str, tuple[str, str]]:
    """`changed_fields`, told to one reader: every `#room` entry they may not see (`sees` is
    False) is replaced by a placeholder, so a change list never names a private room to
    someone outside it."""
    changed = changed_fields(expected, current)
    for key in ROOM_FIELDS & changed.keys():
        changed[key] = (shown_value(key, expected.get(key), sees), shown_value(key, current.get(key), sees))
    return changed


def shown_value(key: str, value: Any, sees: Callable[[str], bool]) -> str:
    """`display(key, value)` with the `#room` entries the reader may not see replaced."""
    return display(key, hide_rooms(key, value, sees))


def hide_rooms(key: str, value: Any, sees: Callable[[str], bool]) -> Any:
    """`value` with the `#room` entries the reader may not see (`sees` is False) replaced by
    `HIDDEN_ROOM`, for a reply that renders it itself."""
    if key not in ROOM_FIELDS:
        return value
    if isinstance(value, list):
        return [e if not isinstance(e, str) or sees(e) else HIDDEN_ROOM for e in value]
    if isinstance(value, str) and value and not sees(value):
        return HIDDEN_ROOM
    return value


def saved_again(expected: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether the integration was written since `expected` was stored (a newer `_updatedAt`)."""
    before, now = decode_date(expected.get("_updatedAt")), decode_date(current.get("_updatedAt"))
    return before is not None and now is not None and now != before


@dataclass(frozen=True)
class Touch:
    """Who last saved an integration, and when (from its `_updatedBy`/`_updatedAt`)."""

    user_id: str | None
    username: str | None
    at: Any


def last_touch(document: Mapping[str, Any]) -> Touch:
    by = document.get("_updatedBy")
    user_id = by.get("_id") if isinstance(by, Mapping) else None
    username = by.get("username") if isinstance(by, Mapping) else None
    return Touch(
        user_id if isinstance(user_id, str) else None,
        username if isinstance(username, str) else None,
        decode_date(document.get("_updatedAt")),
    )


def restore_changes(before: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The changes (for `IntegrationService.apply_changes`) that turn `current` back into `before`:
    every field an update may set whose value differs, a field absent before as None."""
    kind = str(current.get("type") or before.get("type") or "")
    return {key: before.get(key) for key in sorted(updatable_fields(kind)) if before.get(key) != current.get(key)}


__all__ = [
    "HIDDEN_ROOM",
    "NOT_AUTHORIZED",
    "ROOM_FIELDS",
    "Touch",
    "changed_fields",
    "hide_rooms",
    "last_touch",
    "read_integration",
    "restore_changes",
    "saved_again",
    "shown_changes",
    "shown_value",
]
