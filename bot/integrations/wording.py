"""How an integration's type and state read in chat: `incoming`, `enabled`, 🟢 / 🔴.

Below both the commands and the incident toolkit, which word their lines the same way (a timer
notice and a `snoozed` line say `Guggy` (incoming) alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bot.rocketchat.models import INCOMING

ENABLED_MARK: Final = "🟢"
DISABLED_MARK: Final = "🔴"


def kind_word(kind: str | None) -> str:
    if kind is None:
        return "integration"
    return "incoming" if kind in (INCOMING, "incoming") else "outgoing"


def state_word(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


def mark(enabled: bool) -> str:
    return ENABLED_MARK if enabled else DISABLED_MARK


def poster_label(document: Mapping[str, Any]) -> str:
    """How an integration's messages are signed in a room: its alias, else the user it posts as
    (contract §5.1: `alias` and `u` are on every message it posts). Its *name* is not on them,
    and only those who may view integrations learn it; a notice read by a whole room (the flood
    guard's, the end of a disable the bot made itself) names it by this instead."""
    for field in ("alias", "username"):
        value = document.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "an integration"
