"""Turning a parsed target into one integration, for the caller."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from bot.errors import BotError, IntegrationNotFound, PermissionDenied
from bot.integrations.authz import TYPE_PERMISSIONS, CallerRights, may_list
from bot.integrations.service import IntegrationService, Prefetch
from bot.normalize import disguised
from bot.rocketchat.models import INCOMING, OUTGOING, Integration
from commands.args import Kind, Target
from commands.parser import Invocation
from commands.registry import Command, CommandContext

T = TypeVar("T")

KIND_TYPES = {"incoming": INCOMING, "outgoing": OUTGOING, None: None}


def require_lookup(ctx: CommandContext, rights: CallerRights, kind: Kind | None) -> None:
    """Refuse a caller who could not see any integration (of `kind`) in the terms of the command
    they typed ("You can't disable integrations"), before looking anything up: nobody without one
    of the integration permissions (of that type) can list, read or change one (contract §2.2-§2.4)."""
    action = ctx.command.refused(kind) if ctx.command is not None else f"look up {kind or ''} integrations"
    if kind is None:
        listing = may_list(rights)
        if not listing.allowed:
            raise PermissionDenied(action, listing.missing)
        return
    needed = TYPE_PERMISSIONS[INCOMING if kind == "incoming" else OUTGOING]
    if not any(rights.has(permission) for permission in needed):
        raise PermissionDenied(action, needed)


def begin_prefetch(integrations: IntegrationService, command: Command, invocation: Invocation) -> Prefetch | None:
    """Begin the read of the integration `command` looks up first (`Command.first_lookup`) now,
    while the runtime reads the caller's rights: the two REST calls overlap. Not yet the current
    command's (`IntegrationService.begin_prefetch`): the runtime begins it before the command has
    a task of its own, adopts it in it later, else cancels it. What was read is used by this
    command's `resolve` under the caller's rights, or not at all."""
    if command.first_lookup is None:
        return None
    try:
        target = command.first_lookup(invocation.args)
    except BotError:
        return None  # the command answers its own usage error
    if disguised(invocation.raw, target.query):  # read thoroughly by `resolve_reading`: nothing to begin
        return None
    return integrations.begin_prefetch(target.query, kind=KIND_TYPES[target.kind])


async def resolve(ctx: CommandContext, target: Target) -> Integration:
    """The integration, once the book-keeping of earlier commands about it is done (their audit
    rows and timers are what this command may read; commands/followups.py). Not found: the
    closest names the caller can see come with the error ("did you mean")."""
    found, _extra = await resolve_reading(ctx, target, [(target.query, None)])
    return found


async def resolve_reading(
    ctx: CommandContext, target: Target, readings: Sequence[tuple[str, T]]
) -> tuple[Integration, T]:
    """The reading (query, extra) whose query names an integration, and that integration.

    `disable Noisy hook` may mean the integration "Noisy hook" or "Noisy" with the reason "hook":
    the reading that names one is meant, so names with spaces work without quotes. When two
    readings name different integrations (both exist, or someone made a `Noisy hook` to catch the
    reason), nothing is picked: `AmbiguousReading` lists them, and a quoted name says which.
    All readings are matched against one read (`IntegrationService.resolve_readings`), however
    many words were typed. Not found: named as typed in full ("Noisy hook", not the first-word
    reading "Noisy"), with what is close to any reading (`disable Gugy spamming` is close to
    `Guggy` as `Gugy`).
    """
    ordered = sorted(readings, key=lambda reading: len(reading[0]), reverse=True)
    if not ordered:
        raise IntegrationNotFound(target.query, KIND_TYPES[target.kind])
    rights = await ctx.rights()
    require_lookup(ctx, rights, target.kind)
    queries = [query for query, _extra in ordered]
    # A name copied from chat may hide an invisible character or full-width letters (a look-alike
    # of another name): then every integration is compared, not only what the server's search finds.
    # The longest reading holds every character of the others (the words that follow the name are
    # its readings); the message is scanned once, not once per reading.
    thorough = disguised(ctx.invocation.raw, queries[0])
    index, found = await ctx.services.integrations.resolve_readings(
        queries, kind=KIND_TYPES[target.kind], rights=rights, thorough=thorough
    )
    await ctx.services.followups.settled(found.id)
    return found, ordered[index][1]
