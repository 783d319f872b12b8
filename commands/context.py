"""What a command may use: the services the runtime wires together once at start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from commands.followups import Followups

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.incident.toolkit import IncidentToolkit
    from bot.integrations.authz import RightsCache
    from bot.integrations.service import IntegrationService
    from bot.rocketchat.rest import RestClient
    from bot.state.confirmations import ConfirmationStore
    from bot.state.store import StateStore
    from commands.registry import Registry


@dataclass(frozen=True)
class BotIdentity:
    user_id: str
    username: str


@dataclass
class Services:
    rest: RestClient
    integrations: IntegrationService
    rights: RightsCache
    state: StateStore
    settings: Settings
    identity: BotIdentity
    clock: Callable[[], datetime]
    registry: Registry | None = field(default=None, repr=False)
    # Timed disables, the noisy-webhook window, the audit room (bot/incident/toolkit.py); None in tests
    # that do not need them (enable/disable then work without timers).
    incident: IncidentToolkit | None = field(default=None, repr=False)
    # Book-keeping that runs after answers are posted, and the wait for it (commands/followups.py).
    followups: Followups = field(default_factory=Followups, repr=False)

    @property
    def pending(self) -> ConfirmationStore:
        """Changes previewed by `set` and waiting for `confirm`/`yes`: in the state store, so a
        preview shown by one replica is confirmed through any, and a restart keeps them."""
        return self.state.confirmations

    @property
    def prefix(self) -> str:
        """The prefix shown in examples: the first configured one without its `/` (the `!` form
        works in every client, the slash form only with Message_AllowUnrecognizedSlashCommand)."""
        bang = [p for p in self.settings.prefixes if p.startswith("!")]
        return bang[0] if bang else self.settings.prefixes[0]
