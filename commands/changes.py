"""Recording a change made through the bot: one audit row with the full before/after documents.

Every change goes through `record`, which is also where the incident toolkit hears about it:
a timed disable of that integration follows the change (ended when the integration was switched
on, re-based when it stays off), and the audit room gets its line. `note` records a timer-only
action (extend, keep disabled) that changes no document.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from bot.rocketchat.models import Integration, UpdateOutcome
from bot.state.store import AuditRecord
from commands.registry import CommandContext


async def record(
    ctx: CommandContext,
    outcome: UpdateOutcome,
    action: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
    undoes: int | None = None,
    group_id: int | None = None,
) -> int:
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
            outcome.after.id, outcome.after.document, f"ended early: {action} by {message.username}"
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
