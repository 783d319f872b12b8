"""Behaviour switches of the sandbox server (which Rocket.Chat it imitates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

UpdateMode = Literal["8.x", "legacy"]


@dataclass
class SandboxConfig:
    # "8.x": incoming update keeps omitted alias/avatar/emoji/script, resets skipTranspile.
    # "legacy": the 7.x incoming update that always $sets alias/avatar/emoji/script (contract §2.4.4).
    update_mode: UpdateMode = "8.x"
    # Rocket.Chat runs its MongoDB driver with `ignoreUndefined: false`, so a `$set` of an omitted
    # (undefined) field stores null and wipes it. False imitates a driver that ignores undefined
    # (the field is then left as it was). Sources disagree on stock servers; tests run both.
    omitted_as_null: bool = True
    # Enforce the REST rate limiter (contract §1.5). Off by default, as with TEST_MODE.
    rate_limit: bool = False
    # Version reported by /api/info.
    version: str = "8.8.1"
    # DDP keepalive (Meteor defaults, contract §4.2).
    heartbeat_interval: float = 15.0
    heartbeat_timeout: float = 15.0
