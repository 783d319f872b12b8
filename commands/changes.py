"""Recording a change made through the bot: one audit row with the full before/after documents.

Every change goes through `record`, which is also where the incident toolkit hears about it:
a timed disable of that integration follows the change (ended when the integration was switched
on, re-based when it stays off), and the audit room gets its line. `note` records a timer-only
action (extend, keep disabled) that changes no document.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.incident.timers import LOOK
from bot.integrations.authz import CallerRights
from bot.integrations.service import Edit
from bot.rocketchat.models import Integration, UpdateOutcome
from bot.state.store import AuditRecord
from bot.state.timer_states import TimedDisable
from bot.tasks import background
from commands.registry import CommandContext


async def apply_seeing_timer(
    ctx: CommandContext, edit: Edit, updates: Mapping[str, Any], rights: CallerRights
) -> tuple[UpdateOutcome, TimedDisable | None]:
    """`edit.apply(updates)`, and the integration's timed disable pending under the same lock (looked
    up at once with the write): the timer the change follows when it is recorded after the answer
    (`record(timer=…)`). One that another command sets once the lock is free (through another
    replica, while this answer is on its way) is not this change's."""
    incident = ctx.services.incident
    lookup = background(incident.timers.pending_for(edit.current.id)) if incident is not None else None
    try:
        outcome = await edit.apply(updates, rights=rights)
        return outcome, await lookup if lookup is not None else None
    except BaseException:
        if lookup is not None:
            lookup.cancel()
        raise


async def record(
    ctx: CommandContext,
    outcome: UpdateOutcome,
    action: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
    undoes: int | None = None,
    group_id: int | None = None,
    timer: TimedDisable | str | None = LOOK,
    ends_timer: bool = False,
) -> int:
    """The audit row of a change; its timed disable follows it (`TimerService.follow_change`):
    `timer` is the one pending when it was written, looked up under the integration's lock, for a
    record made once the lock is free (after the answer); by default the one pending now.
    `ends_timer`: the change ends it even though the integration stays off (a permanent disable)."""
    message = ctx.message
    entry = AuditRecord(
        at=ctx.now(),
        actor_id=message.user_id,
        actor_username=message.username,
        integration_id=outcome.before.id,
        integration_name=outcome.before.name,
        integration_type=outcome.before.type,
        action=action,
        room_id=message.room_id,
        message_id=message.id,
        reason=reason,
        before=outcome.before.to_dict(),
        after=outcome.after.to_dict(),
        until=until,
        undoes=undoes,
        group_id=group_id,
    )
    audit_id = await ctx.services.state.record(entry)
    incident = ctx.services.incident
    if incident is not None:
        await incident.timers.follow_change(
            outcome.after.id,
            outcome.after.document,
            f"ended early: {action} by {message.username}",
            seen=timer,
            end=ends_timer,
        )
        incident.audit_room.announce(dataclasses.replace(entry, id=audit_id))
    return audit_id


async def note(
    ctx: CommandContext,
    integration: Integration,
    action: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
    group_id: int | None = None,
) -> int:
    """An audit row for an action that changed no document (the current one is kept as `after`,
    so `history` can tell who may see it; `undo` skips rows without a `before`)."""
    message = ctx.message
    entry = AuditRecord(
        at=ctx.now(),
        actor_id=message.user_id,
        actor_username=message.username,
        integration_id=integration.id,
        integration_name=integration.name,
        integration_type=integration.type,
        action=action,
        room_id=message.room_id,
        message_id=message.id,
        reason=reason,
        after=integration.to_dict(),
        until=until,
        group_id=group_id,
    )
    audit_id = await ctx.services.state.record(entry)
    if ctx.services.incident is not None:
        ctx.services.incident.audit_room.announce(dataclasses.replace(entry, id=audit_id))
    return audit_id
