"""`snoozed`: what the bot has switched off for a while: by whom, why, until when, from where.

Only integrations the caller's own `list` would show appear (judged on the document the bot's
disable produced). Also reachable as `list snoozed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import PermissionDenied, UsageError
from bot.integrations import wording
from bot.integrations.authz import may_list
from bot.rocketchat.models import Integration
from bot.text import ago, bullet_list, code, human_until, plural, safe_text, single_line, truncate
from commands import replies
from commands.incident import may_see, reenable_button, toolkit
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Button, Reply

MAX_LINES = 15
MAX_BUTTONS = 3


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if args:
        raise UsageError("snoozed", "`snoozed` takes nothing after it")
    rights = await ctx.rights()
    listing = may_list(rights)
    if not listing.allowed:
        raise PermissionDenied("list integrations", listing.missing, detail=listing.reason or None)
    await ctx.services.followups.settled()  # the audit rows and timers of answers already given
    incident = toolkit(ctx)
    now = ctx.now()
    timers = [t for t in await incident.timers.active() if may_see(rights, t.disabled_document)]
    if not timers:
        return Reply(
            f"Nothing is switched off for a while by me (that you can see). {code('disable <name> for 1h')} does that.",
            outcome="empty",
        )
    lines: list[str] = []
    buttons: list[Button] = []
    for timer in timers[:MAX_LINES]:
        assert timer.disabled_document is not None
        integration = Integration.of(timer.disabled_document)
        when = human_until(timer.due_at, now) if timer.due_at > now else f"was due {ago(timer.due_at, now)}, retrying"
        parts = [f"{wording.DISABLED_MARK} {replies.label(integration)}", when, f"by {safe_text(timer.actor_username)}"]
        if timer.reason:
            parts.append(safe_text(truncate(single_line(timer.reason), 80)))
        where = await incident.rooms.where(timer.room_id, rights=rights, here=ctx.message.room_id)
        if where:
            parts.append(where)
        lines.append(" · ".join(parts))
        if len(buttons) < MAX_BUTTONS and (await ctx.services.integrations.may_write(rights, integration)).allowed:
            name = truncate(single_line(integration.name), 24)
            buttons.append(reenable_button(ctx, integration.id, f"Re-enable {name}"))
    more = f"\n… and {len(timers) - MAX_LINES} more." if len(timers) > MAX_LINES else ""
    title = f"{plural(len(timers), 'integration')} switched off for a while:"
    return Reply(f"{title}\n{bullet_list(lines)}{more}", buttons=tuple(buttons))


COMMAND = Command(
    name="snoozed",
    summary="what I switched off for a while, by whom, why, until when",
    usage="snoozed",
    details="Lists the timed disables that are running, for the integrations you can see.",
    examples=("snoozed",),
    handler=run,
    aliases=("timers",),
)
