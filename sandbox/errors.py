"""Meteor-style errors raised inside the sandbox, rendered by the REST and DDP layers.

Rocket.Chat throws `Meteor.Error(error, reason, details)` everywhere; the REST wrapper turns it
into `{"success": false, "error": "<reason> [<error>]", "errorType": <error>, "details": ...}`
(contract §1.3) and DDP serialises it into a `result` frame with an `error` object (§4.3).
Plain `Error('not-authorized')`-style throws (no errorType) are `PlainError`.
"""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base of every error the sandbox raises on purpose."""


class MeteorError(SandboxError):
    def __init__(self, error: str | int, reason: str | None = None, details: Any = None) -> None:
        self.error = error
        self.reason = reason
        self.details = details
        super().__init__(self.message)

    @property
    def message(self) -> str:
        # Meteor.Error.message is "<reason> [<error>]", or "[<error>]" without a reason.
        return f"{self.reason} [{self.error}]" if self.reason else f"[{self.error}]"


class PlainError(SandboxError):
    """A plain JavaScript `Error(message)`: REST renders only `error: message`, no errorType."""

    def __init__(self, message: str) -> None:
        self.text = message
        super().__init__(message)
