"""`list [incoming|outgoing] [enabled|disabled] [text]`: what the caller could see in the admin UI.

Integrations the bot will switch back on (a timed disable) show until when; `list snoozed` is
the `snoozed` command."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bot.errors import PermissionDenied
from bot.integrations import wording
from bot.integrations.authz import may_list, visible_in_list
from bot.integrations.service import looks_like_id
from bot.normalize import name_key
from bot.rocketchat.models import Integration
from bot.text import code, human_until, plural, quote_name
from commands import replies, snoozed
from commands.args import HELP, parse_list_filters
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import KIND_TYPES

MAX_LINES = 25


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    if len(args) == 1 and not args[0].quoted and args[0].value.lower() in ("snoozed", "timed"):
        return await snoozed.run(ctx, ())
    wanted = parse_list_filters(args)
    rights = await ctx.rights()
    decision = may_list(rights)
    if not decision.allowed:
        raise PermissionDenied("list integrations", decision.missing, detail=decision.reason or None)
    found: list[Integration] = []
    async for document in ctx.services.rest.iter_integrations(name=wanted.text, type=KIND_TYPES[wanted.kind]):
        if not visible_in_list(rights, document):
            continue
        integration = Integration.of(document)
        if wanted.enabled is None or integration.enabled == wanted.enabled:
            found.append(integration)
    found.sort(key=lambda i: (name_key(i.name), i.type, i.id))
    what = " ".join(
        part
        for part in (
            wording.state_word(wanted.enabled) if wanted.enabled is not None else "",
            wanted.kind or "",
        )
        if part
    )
    noun = f"{what} integration" if what else "integration"
    matching = f" matching {quote_name(wanted.text)}" if wanted.text else ""
    if not found:
        return Reply(f"No {noun}s{matching} that you can see.", outcome="empty")
    names = Counter(name_key(i.name) for i in found)
    until = await _timed_disables(ctx) if any(not i.enabled for i in found[:MAX_LINES]) else {}
    lines = [replies.one_line(i, with_id=_needs_id(i, names)) + until.get(i.id, "") for i in found[:MAX_LINES]]
    more = ""
    if len(found) > MAX_LINES:
        more = f"\n… and {len(found) - MAX_LINES} more: narrow it with {code('list <text>')}."
    return Reply(f"{plural(len(found), noun)}{matching}:\n" + "\n".join(lines) + more)


def _needs_id(integration: Integration, names: Counter[str]) -> bool:
    """Whether typing the name shown may reach another integration, so the line shows the id:
    names that look alike, and a name shaped like an id (typed, it is tried as an id first:
    named after another integration's id, it would reach that one)."""
    return names[name_key(integration.name)] > 1 or looks_like_id(integration.name.strip())


async def _timed_disables(ctx: CommandContext) -> dict[str, str]:
    """integration id → ` · until 14:35 UTC, in 20 min` for what the bot will switch back on."""
    incident = ctx.services.incident
    if incident is None:
        return {}
    now = ctx.now()
    return {t.integration_id: f" · ⏰ {human_until(t.due_at, now)}" for t in await incident.timers.active()}


COMMAND = Command(
    name="list",
    summary="list the integrations you can see",
    usage=HELP["list"].usage,
    details=HELP["list"].details,
    examples=HELP["list"].examples,
    handler=run,
    aliases=("ls",),
)
