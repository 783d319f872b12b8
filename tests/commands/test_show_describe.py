"""`show`: who changed an integration and when, also before anyone has updated it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.models import Integration
from commands.show import describe

NOW = datetime(2024, 6, 5, 9, 5, tzinfo=UTC)


def document(**extra: Any) -> dict[str, Any]:
    return {
        "_id": "665f1c2e9b1e8a0012345678",
        "type": "webhook-incoming",
        "name": "Guggy",
        "enabled": True,
        "channel": ["#general"],
        "username": "rocket.cat",
        "token": "t" * 48,
        "_createdAt": "2024-06-05T08:00:00.000Z",
        "_createdBy": {"_id": "a1", "username": "admin"},
        "_updatedAt": "2024-06-05T09:00:00.000Z",
        **extra,
    }


def test_never_updated_says_when_without_a_dangling_by() -> None:
    lines = describe(Integration.of(document()), NOW).splitlines()
    assert "created by admin, 1 h 5 min ago" in lines
    assert "last changed 5 min ago" in lines  # integrations.create sets no _updatedBy


def test_updated_says_by_whom_and_when() -> None:
    doc = document(_updatedBy={"_id": "o1", "username": "owen"})
    assert "last changed by owen, 5 min ago" in describe(Integration.of(doc), NOW).splitlines()
