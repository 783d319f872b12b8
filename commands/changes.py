"""Recording a change made through the bot: one audit row with the full before/after documents."""

from __future__ import annotations

from bot.models import UpdateOutcome
from bot.state import AuditRecord
from commands.registry import CommandContext


async def record(ctx: CommandContext, outcome: UpdateOutcome, action: str, *, reason: str | None = None) -> int:
    message = ctx.message
    return await ctx.services.state.record(
        AuditRecord(
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
        )
    )
