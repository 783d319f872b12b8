"""How an integration's type and state read in chat: `incoming`, `enabled`, 🟢 / 🔴.

Below both the commands and the incident toolkit, which word their lines the same way (a timer
notice and a `snoozed` line say `Guggy` (incoming) alike).
"""

from __future__ import annotations

from typing import Final

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
