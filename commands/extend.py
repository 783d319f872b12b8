"""`extend <name|id> <duration>`: keep a timed disable going longer (from its current end).

The new end may be at most BOT_MAX_DISABLE from now. An overdue timer (Rocket.Chat was down when
it was due and the bot is retrying) is extended from now. Extending writes nothing to
Rocket.Chat; it is one audit row. The timer row records which command set its end (bot/state/timer_store.py),
so a command resumed after a crash between the two answers as done instead of extending again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from bot.errors import EditedSince, UsageError, UserInputError
from bot.state.timer_states import TimerState
from bot.text import code, human_duration, human_until, quote_name
from commands import bulk, changes, replies
from commands.args import HELP, is_bulk, parse_extend_args
from commands.incident import extend_button, reenable_button, require_change, toolkit
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve

BUTTON_SPAN = timedelta(hours=1)


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if is_bulk(args):
        return await bulk.extend_all(ctx, args)
    maximum = ctx.services.settings.bot_max_disable
    parsed = parse_extend_args(args, maximum=maximum)
    found = await resolve(ctx, parsed.target)
    await require_change(ctx, await ctx.rights(), found)
    timers = toolkit(ctx).timers
    # Decided on the integration and its timer as they are under its lock: a re-enable firing
    # now has either finished (no timer left, it is on) or waits and then finds the new end.
    async with ctx.services.integrations.editing(found) as edit:
        current = edit.current
        pending = await timers.pending_for(found.id)
        if pending is None or pending.state is not TimerState.ACTIVE or current.enabled:
            how = code(f"disable {found.id} for {human_duration(parsed.duration).replace(' ', '')}")
            state = "is enabled" if current.enabled else "is disabled for good"
            return Reply(
                f"{replies.label(current)} {state}; it has no timed disable to extend. For a timed disable: {how}",
                outcome="unchanged",
            )
        now = ctx.now()
        done = pending.extended_by(ctx.message.id)
        if done is not None:
            # This command extended it already, then stopped before its audit row (kill -9) and was
            # resumed: not again; the audit row is recorded once (one per command and action).
            due = done
        elif ctx.as_it_ran is not None:
            raise EditedSince(found.id)  # resumed from what its message said then: reports, never extends now
        else:
            due = max(pending.due_at, now) + parsed.duration
            if due - now > maximum:
                raise UsageError(
                    "extend",
                    f"that would keep it off {human_until(due, now).removeprefix('until ')}, "
                    f"longer than the {human_duration(maximum)} allowed",
                )
            extended = await timers.extend(pending, due, by=ctx.message.id)
            if extended is None:
                raise UserInputError(f"the timed disable of {quote_name(found.name)} changed meanwhile; try again")
        await changes.note(ctx, current, "extend", until=due)
    return Reply(
        f"⏰ {replies.label(current)} stays disabled {human_until(due, now)} "
        f"(extended by {human_duration(parsed.duration)}).",
        buttons=(reenable_button(ctx, found.id), extend_button(ctx, found.id, BUTTON_SPAN)),
        outcome="changed",
    )


COMMAND = Command(
    name="extend",
    summary="keep a timed disable going longer",
    usage=HELP["extend"].usage,
    details="Adds the duration to a timed disable's end (at most the configured maximum from now).",
    examples=HELP["extend"].examples,
    handler=run,
    changes_integrations=True,
    action="extend timed disables of {kind}integrations",
)
