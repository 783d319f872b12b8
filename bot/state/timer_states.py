"""The lifecycle of a timed disable, as a transition table, and the frozen value that carries it.

Theory of operation
-------------------
`disable Guggy for 30m` is three steps that a crash may interrupt anywhere, so each step leaves a
durable state behind (`bot/state/timer_store.py`) that a restarted bot can act on:

    scheduled ──confirmed──▶ active ──re-enabled──▶ expired
        │                     │  ▲
        │                     │  ├─extended (a new due time; the same state)
        │                     │  └─rebased (the bot itself changed it, still disabled: a new snapshot)
        │                     ├──ended-early──▶ cancelled   (enable, undo, a permanent disable)
        │                     ├──changed-by-others──▶ overridden   (not overwritten; reported)
        │                     └──gave-up──▶ failed   (Rocket.Chat refuses the re-enable for good)
        └──aborted──▶ cancelled   (the disable itself did not happen)

`scheduled` is written *before* the disable is sent, `active` once the stored document is
verified (with the `_updatedAt` and document the disable produced, to notice later manual
changes). A `scheduled` row found at start-up therefore means "the bot died mid-disable": it is
confirmed if the integration is disabled, aborted otherwise (see `bot.incident.timers`).

Terminal states have no way out; any transition not in the table raises `IllegalTransition` (a
bug, never a user error), so the states in the database can only move the way drawn above.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final


class TimerState(enum.StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    OVERRIDDEN = "overridden"
    FAILED = "failed"


class TimerEvent(enum.StrEnum):
    CONFIRMED = "confirmed"
    ABORTED = "aborted"
    EXTENDED = "extended"
    REBASED = "rebased"
    RE_ENABLED = "re-enabled"
    ENDED_EARLY = "ended-early"
    CHANGED_BY_OTHERS = "changed-by-others"
    GAVE_UP = "gave-up"


TRANSITIONS: Final[dict[tuple[TimerState, TimerEvent], TimerState]] = {
    (TimerState.SCHEDULED, TimerEvent.CONFIRMED): TimerState.ACTIVE,
    (TimerState.SCHEDULED, TimerEvent.ABORTED): TimerState.CANCELLED,
    (TimerState.ACTIVE, TimerEvent.EXTENDED): TimerState.ACTIVE,
    (TimerState.ACTIVE, TimerEvent.REBASED): TimerState.ACTIVE,
    (TimerState.ACTIVE, TimerEvent.RE_ENABLED): TimerState.EXPIRED,
    (TimerState.ACTIVE, TimerEvent.ENDED_EARLY): TimerState.CANCELLED,
    (TimerState.ACTIVE, TimerEvent.CHANGED_BY_OTHERS): TimerState.OVERRIDDEN,
    (TimerState.ACTIVE, TimerEvent.GAVE_UP): TimerState.FAILED,
}

PENDING: Final = frozenset({TimerState.SCHEDULED, TimerState.ACTIVE})
TERMINAL: Final = frozenset(TimerState) - PENDING


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug in the caller, not something a user did."""

    def __init__(self, state: TimerState, event: TimerEvent) -> None:
        self.state = state
        self.event = event
        super().__init__(f"a timed disable in state {state.value!r} cannot take event {event.value!r}")


def next_state(state: TimerState, event: TimerEvent) -> TimerState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


@dataclass(frozen=True)
class TimedDisable:
    """One timed disable as stored. `disabled_document` is the integration exactly as the bot's
    disable left it (None until confirmed); `revision` grows with every transition, so two
    concurrent transitions of the same row cannot both win."""

    id: int
    revision: int
    state: TimerState
    integration_id: str
    integration_name: str
    integration_type: str
    created_at: datetime
    due_at: datetime
    actor_id: str
    actor_username: str
    reason: str | None = None
    room_id: str | None = None
    thread_id: str | None = None
    message_id: str | None = None
    audit_id: int | None = None
    disabled_updated_at: str | None = None
    disabled_document: dict[str, Any] | None = None
    ended_at: datetime | None = None
    end_note: str | None = None
    # A member of a bulk disable (bot/state/group_store.py).
    group_id: int | None = None
    # The latest extensions (re-timings included): (message id of the command, the end it set),
    # oldest first (bot/state/timer_store.py).
    extensions: tuple[tuple[str, datetime], ...] = ()

    def extended_by(self, message_id: str) -> datetime | None:
        """The end the command `message_id` extended this timer to, if it did (see `extensions`)."""
        return next((due for by, due in reversed(self.extensions) if by == message_id), None)

    @property
    def pending(self) -> bool:
        return self.state in PENDING
