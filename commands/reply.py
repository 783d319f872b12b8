"""What a command answers: text, and optionally buttons that post a follow-up command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from commands.followups import FollowUp


@dataclass(frozen=True)
class Button:
    """A message button that posts `command` into the room as the clicking user (contract §6.3)."""

    text: str
    command: str


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()
    # Whether the command changed something (for metrics and the audit trail), and its outcome
    # word for the one structured log event per command.
    outcome: str = "ok"
    # Book-keeping deferred by the command (`CommandContext.defer`), run by the runtime right
    # after the first attempt to post this answer (commands/followups.py).
    afterwards: tuple[FollowUp, ...] = field(default=(), compare=False, repr=False)
