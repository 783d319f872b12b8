"""`snoozed`: what the bot has switched off for a while: by whom, why, until when, from where.

Only integrations the caller's own `list` would show appear (judged on the document the bot's
disable produced). Also reachable as `list snoozed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import PermissionDenied, UsageError
from bot.integrations import wording
from bot.integrations.authz import CallerRights, may_list
from bot.normalize import name_key
from bot.rocketchat.models import Integration
from bot.state.group_store import BulkGroup
from bot.state.timer_states import TimedDisable
from bot.text import ago, bullet_list, code, human_until, plural, safe_text, single_line, truncate
from commands import bulk, replies
from commands.incident import may_see, reenable_button, toolkit
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Button, Reply

MAX_LINES = 15
MAX_BUTTONS = 3
# How many members of one bulk disable its line names.
MAX_MEMBERS = 8


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if args:
        raise UsageError("snoozed", "`snoozed` takes nothing after it")
    rights = await ctx.rights()
    listing = may_list(rights)
    if not listing.allowed:
        raise PermissionDenied("list integrations", listing.missing, detail=listing.reason or None)
    await ctx.answers_recorded()  # the audit rows and timers of answers already given
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
    # The members of one bulk disable are one line (at the place of its first member).
    groups = await ctx.services.state.groups.many(sorted({t.group_id for t in timers if t.group_id is not None}))
    members: dict[int, list[TimedDisable]] = {}
    entries: list[TimedDisable] = []
    for timer in timers:
        if timer.group_id in groups:
            if timer.group_id not in members:
                entries.append(timer)
            members.setdefault(timer.group_id, []).append(timer)
        else:
            entries.append(timer)
    for timer in entries[:MAX_LINES]:
        if timer.group_id in groups:
            group = groups[timer.group_id]
            lines.append(await _group_line(ctx, group, members[group.id], rights))
            if len(buttons) < MAX_BUTTONS:
                buttons.extend(bulk.group_buttons(ctx, group, rights)[:1])
            continue
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
    more = f"\n… and {len(entries) - MAX_LINES} more." if len(entries) > MAX_LINES else ""
    title = f"{plural(len(timers), 'integration')} switched off for a while:"
    return Reply(f"{title}\n{bullet_list(lines)}{more}", buttons=tuple(buttons))


async def _group_line(ctx: CommandContext, group: BulkGroup, timers: list[TimedDisable], rights: CallerRights) -> str:
    """One bulk disable: its selector, until when, by whom, why, from where, and its members."""
    incident = toolkit(ctx)
    now = ctx.now()
    due = min(t.due_at for t in timers)
    when = human_until(due, now) if due > now else f"was due {ago(due, now)}, retrying"
    ordered = sorted(timers, key=lambda t: (name_key(t.integration_name), t.integration_id))
    names = ", ".join(
        replies.label(Integration.of(t.disabled_document)) for t in ordered[:MAX_MEMBERS] if t.disabled_document
    )
    names += f" and {len(timers) - MAX_MEMBERS} more" if len(timers) > MAX_MEMBERS else ""
    what = f"{plural(len(timers), 'integration')} {bulk.shown_selector(group, rights, here=ctx.message.room_id)}"
    parts = [f"{wording.DISABLED_MARK} {what} ({names})", when, f"by {safe_text(group.actor_username)}"]
    if group.reason:
        parts.append(safe_text(truncate(single_line(group.reason), 80)))
    where = await incident.rooms.where(group.room_id, rights=rights, here=ctx.message.room_id)
    if where:
        parts.append(where)
    return " · ".join(parts)


COMMAND = Command(
    name="snoozed",
    summary="what I switched off for a while, by whom, why, until when",
    usage="snoozed",
    details="Lists the timed disables that are running, for the integrations you can see.",
    examples=("snoozed",),
    handler=run,
    aliases=("timers",),
)
