"""`enable <name|id>`: switch an integration on (losslessly, as the caller); ends a timed disable early."""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import UsageError
from bot.integrations import wording
from bot.state.timer_states import TimerState
from bot.text import human_until
from commands import bulk, changes, replies
from commands.args import HELP, Target, is_bulk, parse_target
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve


def first_lookup(args: Sequence[Token]) -> Target:
    if is_bulk(args):
        raise UsageError("enable", "`enable all` looks up no single integration")
    return parse_target(args, command="enable", usage=HELP["enable"].usage)


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if is_bulk(args):
        return await bulk.enable_all(ctx, args)
    target = parse_target(args, command="enable", usage=HELP["enable"].usage)
    if (extra := replies.only_a_name("enable", target.rest)) is not None:
        return extra
    found = await resolve(ctx, target)
    incident = ctx.services.incident
    rights = await ctx.rights()
    dropped = None
    # `found` was just read by `resolve` (a complete document): no second read.
    async with ctx.services.integrations.editing(found, planned={"enabled": True}, rights=rights) as edit:
        # Its timed disable as pending under the lock: the one this enable ends (`changes.record`).
        outcome, seen = await changes.apply_seeing_timer(ctx, edit, {"enabled": True}, rights, ends="enable")
        pending = changes.seen_timer(seen)
        if incident is not None and not outcome.changed and pending is not None and pending.state is TimerState.ACTIVE:
            # Switched on by someone outside the bot: the timer has nothing left to do. Ended under
            # the lock: once it is free, a `disable … for` through another replica may take it over.
            dropped = await incident.timers.end_early(pending, f"already enabled; dropped by {ctx.message.username}")
    timed = pending is not None and pending.state is TimerState.ACTIVE
    if not outcome.changed:
        if pending is not None and dropped is not None:
            return Reply(
                f"{replies.label(outcome.after)} is already enabled; nothing changed. I dropped its timed disable "
                f"(it was due {human_until(pending.due_at, ctx.now())}).",
                outcome="unchanged",
            )
        return Reply(f"{replies.label(outcome.after)} is already enabled; nothing changed.", outcome="unchanged")
    # Recorded (and the timer ended) once the answer is on its way (commands/followups.py).
    ctx.defer(outcome.after.id, lambda: changes.record_after(ctx, outcome, "enable", timer=seen))
    ended = ""
    if pending is not None and timed:
        ended = f" Its timed disable ({human_until(pending.due_at, ctx.now())}) is cancelled."
    return Reply(f"{wording.ENABLED_MARK} Enabled {replies.label(outcome.after)}.{ended}", outcome="changed")


COMMAND = Command(
    name="enable",
    summary="switch an integration on",
    usage=HELP["enable"].usage,
    details=HELP["enable"].details,
    examples=HELP["enable"].examples,
    handler=run,
    aliases=("on",),
    changes_integrations=True,
    action="enable {kind}integrations",
    first_lookup=first_lookup,
)
