"""Has an integration changed since the bot last wrote it, and what would bring an old version back?

Both timed re-enables and `undo` must not overwrite someone else's change, and Rocket.Chat has
no conditional update (no If-Match), so the bot compares: the document its own write produced
(kept in the audit trail or the timer row) against the document stored now. Server-managed
fields (`_updatedAt`, `_updatedBy`, the compiled script, ...) are not compared as fields, but a
newer `_updatedAt` alone means somebody saved the integration again, even without a visible
change (e.g. switched it on and off): that counts as "touched" too.

The comparison and the write are one step for the bot: both happen on the document read under
the integration's lock (`IntegrationService.editing`, bot/locks.py), so no other writer in the bot
comes between them. A change made outside the bot in the milliseconds between the read and the
write cannot be prevented (the API has no conditional update); the verification after the write
reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.ejson import decode_date
from bot.integrations import NOT_AUTHORIZED, differences, read_integration, updatable_fields


def changed_fields(expected: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Fields where `current` differs from `expected`, as `(expected, current)` display strings
    (secrets masked), ignoring server-managed fields and the server's own normalisation."""
    return differences(current, expected, current)


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
    "NOT_AUTHORIZED",
    "Touch",
    "changed_fields",
    "last_touch",
    "read_integration",
    "restore_changes",
    "saved_again",
]
