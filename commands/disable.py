"""`disable <name|id> [because|-- <reason>]`: switch an integration off (losslessly, as the caller)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import UsageError
from commands import changes, replies
from commands.args import HELP, parse_disable_args
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve_reading
from commands.text import code, safe_text


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    settings = ctx.services.settings
    parsed = parse_disable_args(args, maximum=settings.bot_max_disable)
    if parsed.duration is not None:
        raise UsageError("disable", "timed disables are not available in this version")
    readings = [(parsed.target.query, parsed.reason), *parsed.alternatives]
    found, reason = await resolve_reading(ctx, parsed.target, readings)
    outcome = await ctx.services.integrations.set_enabled(found, False, rights=await ctx.rights())
    if not outcome.changed:
        return Reply(f"{replies.label(outcome.after)} is already disabled; nothing changed.", outcome="unchanged")
    await changes.record(ctx, outcome, "disable", reason=reason)
    why = f"\nReason: {safe_text(reason)}" if reason else ""
    undo = code(f"{ctx.services.prefix} enable {outcome.after.id}")
    return Reply(
        f"{replies.DISABLED_MARK} Disabled {replies.label(outcome.after)}.{why}\nTo turn it back on: {undo}",
        outcome="changed",
    )


COMMAND = Command(
    name="disable",
    summary="switch an integration off, with an optional reason",
    usage=HELP["disable"].usage,
    details=HELP["disable"].details,
    examples=HELP["disable"].examples,
    handler=run,
    aliases=("off",),
    changes_integrations=True,
)
