"""`enable <name|id>`: switch an integration on (losslessly, as the caller)."""

from __future__ import annotations

from collections.abc import Sequence

from commands import changes, replies
from commands.args import HELP, parse_target
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve
from commands.text import safe_text


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    target = parse_target(args, command="enable", usage=HELP["enable"].usage)
    if target.rest:
        extra = " ".join(t.value for t in target.rest)
        return Reply(
            f"⚠️ `enable` takes only a name; quote names with spaces. I did not understand: {safe_text(extra)}",
            outcome="usage",
        )
    found = await resolve(ctx, target)
    outcome = await ctx.services.integrations.set_enabled(found, True, rights=await ctx.rights())
    if not outcome.changed:
        return Reply(f"{replies.label(outcome.after)} is already enabled; nothing changed.", outcome="unchanged")
    await changes.record(ctx, outcome, "enable")
    return Reply(f"{replies.ENABLED_MARK} Enabled {replies.label(outcome.after)}.", outcome="changed")


COMMAND = Command(
    name="enable",
    summary="switch an integration on",
    usage=HELP["enable"].usage,
    details=HELP["enable"].details,
    examples=HELP["enable"].examples,
    handler=run,
    aliases=("on",),
    changes_integrations=True,
)
