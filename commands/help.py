"""`help [command]`: generated from the command table, showing only what the caller may run.

`help <command>` for a command the caller may not run still explains it, and says which
permission it needs: the command's name is no secret (it is in the README), the permission is
what the caller must ask an admin for."""

from __future__ import annotations

from collections.abc import Sequence

from bot.integrations.authz import INTEGRATION_PERMISSIONS, MANAGE_OWN_INCOMING, MANAGE_OWN_OUTGOING
from bot.text import bullet_list, code, human_duration, quote_name
from commands.args import MAX_DISABLE, parse_help_topic
from commands.parser import Token
from commands.registry import Command, CommandContext, Requirement
from commands.reply import Reply


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    registry = ctx.services.registry
    assert registry is not None, "the runtime sets services.registry"
    rights = await ctx.rights()
    may_manage = any(rights.has(p) for p in INTEGRATION_PERMISSIONS)
    offered = [c for c in registry if c.requires is Requirement.NONE or may_manage]
    prefix = ctx.services.prefix
    topic = parse_help_topic(args)
    if topic is not None:
        command = registry.find(topic.lstrip("/!"))
        if command is None:
            names = ", ".join(c.name for c in offered)
            return Reply(f"There is no command {quote_name(topic)} for you. Commands: {names}.", outcome="unknown")
        aliases = f" (also: {', '.join(command.aliases)})" if command.aliases else ""
        examples = bullet_list(code(f"{prefix} {e}") for e in command.examples)
        # The longest timed disable is a setting (BOT_MAX_DISABLE): help says this server's.
        details = (command.details or command.summary).replace(
            MAX_DISABLE, human_duration(ctx.services.settings.bot_max_disable)
        )
        text = f"{code(command.usage)}{aliases}\n{details}"
        if command.examples:
            text += f"\nExamples:\n{examples}"
        if command not in offered:
            needs = ", ".join(code(p) for p in INTEGRATION_PERMISSIONS)
            text += (
                f"\n⛔ You can't run {code(command.name)}: it needs one of {needs}. "
                f"Ask an admin for {code(MANAGE_OWN_INCOMING)} or "
                f"{code(MANAGE_OWN_OUTGOING)} to manage the integrations you create."
            )
            return Reply(text, outcome="denied")
        return Reply(text)
    lines = [f"{code(c.usage.split(' ')[0])} — {c.summary}" for c in offered]
    intro = (
        f"Type {code(prefix + ' <command>')} in any room I'm in, or talk to me in a direct message of just "
        f"the two of us without the prefix. {code('help <command>')} tells more."
    )
    text = f"{intro}\n{bullet_list(lines)}"
    if not may_manage:
        text += (
            "\nYou have no integration permissions on this server, so there is little I can do for you. "
            f"Ask an admin for {code('manage-own-incoming-integrations')} or "
            f"{code('manage-own-outgoing-integrations')}."
        )
    return Reply(text)


COMMAND = Command(
    name="help",
    summary="what I can do for you",
    usage="help [command]",
    details="Shows the commands you may run, or details about one.",
    examples=("help", "help disable"),
    handler=run,
    aliases=("?", "commands"),
    requires=Requirement.NONE,
)
