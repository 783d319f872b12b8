"""`disable <name|id> [for <duration>] [because|-- <reason>]`: switch an integration off
(losslessly, as the caller); with `for`, the bot switches it back on when the time is up.

A timed disable is recorded (`scheduled`) before anything is written and confirmed (`active`)
with the document the disable produced once it is verified, so a crash in between is settled at
the next start (bot/incident/timers.py). Decisions for the cases in between:
- already timed-disabled, `disable X for 2h` again → the new time replaces the old (from now);
- already timed-disabled, plain `disable X` → it stays off: the timer is cancelled;
- already disabled, but not by a timer, `disable X for 1h` → nothing happens: the bot did not
  switch it off, so it will not switch it on later (that would undo someone else's disable).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import UsageError
from commands import bulk
from commands.args import HELP, Target, is_bulk, parse_disable_args, refuse_time_limit
from commands.disabling import plain, timed
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve_reading


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if is_bulk(args):
        return await bulk.run(ctx, args)
    settings = ctx.services.settings
    parsed = parse_disable_args(args, maximum=settings.bot_max_disable)
    readings = [(parsed.target.query, parsed.reason), *parsed.alternatives]
    found, reason = await resolve_reading(ctx, parsed.target, readings)
    if parsed.duration is not None:
        return await timed(ctx, found, reason, parsed.duration)
    # `until 5pm`, `— for 2h` (a phone's em dash is `--`): asked about, not "off for good".
    quoted = parsed.reason_quoted and reason == parsed.reason
    refuse_time_limit("disable", reason, quoted=quoted, example=f"disable {found.id} for 2h")
    return await plain(ctx, found, reason)


def first_lookup(args: Sequence[Token]) -> Target:
    """The reading whose search `resolve_reading` reads for every reading: the shortest, which
    the others start with (`bot.integrations.service.search_text`); a bulk disable looks up no
    one integration: a `UsageError`, so nothing is read ahead."""
    if is_bulk(args):
        raise UsageError("disable", "a bulk disable looks up no single integration")
    parsed = parse_disable_args(args)
    queries = [parsed.target.query, *(query for query, _ in parsed.alternatives)]
    return Target(parsed.target.kind, min(queries, key=len))


COMMAND = Command(
    name="disable",
    summary="switch an integration off, for a while or for good, with an optional reason",
    usage=HELP["disable"].usage,
    details=HELP["disable"].details,
    examples=HELP["disable"].examples,
    handler=run,
    aliases=("off", "snooze"),
    changes_integrations=True,
    action="disable {kind}integrations",
    first_lookup=first_lookup,
)
