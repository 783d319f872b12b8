"""`history [name|id]`: recent changes made through the bot: who, when, what, why, from where.

Audit rows carry whole documents, so whether the caller may see a row is decided on the
document (the caller's own `list` rule, `visible_in_list`); rows of integrations the caller
cannot see are left out entirely. A room is named only when the caller is in it and it is a
public channel (a private group's name is not told outside it: everyone in the answer's room
reads it), or "here". With a name,
the integration is found the usual way; an integration deleted since is found by the name its
audit rows recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bot.errors import IntegrationNotFound, PermissionDenied
from bot.incident.audit_lines import group_history_line, history_line
from bot.integrations.authz import may_list
from bot.state.store import AuditRecord
from bot.text import bullet_list, code, quote_name
from commands import bulk
from commands.args import HELP, parse_optional_target
from commands.incident import may_see, record_document, toolkit
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import KIND_TYPES, resolve

SHOWN: Final = 10
# How far back a search through rows the caller may not see goes.
SCANNED: Final = 1000


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    target = parse_optional_target(args, command="history")
    rights = await ctx.rights()
    listing = may_list(rights)
    if not listing.allowed:
        raise PermissionDenied("look at the history", listing.missing, detail=listing.reason or None)
    await ctx.answers_recorded()  # the audit rows and timers of answers already given
    state = ctx.services.state
    if target is None:
        rows = [r for r in await state.history(limit=SCANNED) if may_see(rights, record_document(r))]
        title = "Recent changes through me"
    else:
        try:
            found = await resolve(ctx, target)
        except IntegrationNotFound:
            # Deleted since? Its rows still know its name.
            wanted, kind = target.query.strip().casefold(), KIND_TYPES[target.kind]
            rows = [
                r
                for r in await state.history(limit=SCANNED)
                if r.integration_name.strip().casefold() == wanted
                and (kind is None or r.integration_type == kind)
                and may_see(rights, record_document(r))
            ]
            if not rows:
                raise
            title = f"Changes of {quote_name(target.query)} through me"
        else:
            rows = await state.history(limit=SHOWN, integration_ids=[found.id])
            title = f"Changes of {quote_name(found.name)} through me"
    if not rows:
        where = "" if target is None else f" to {quote_name(target.query)}"
        return Reply(
            f"No changes{where} through me that you can see. {code('help')} shows what I can do.", outcome="empty"
        )
    return Reply(f"{title} (newest first):\n{bullet_list(await _lines(ctx, _entries(rows)[:SHOWN]))}")


def _entries(rows: list[AuditRecord]) -> list[list[AuditRecord]]:
    """The rows, with the same action on the members of one bulk disable gathered into one entry
    (at the place of its newest row)."""
    entries: list[list[AuditRecord]] = []
    grouped: dict[tuple[int, str], list[AuditRecord]] = {}
    for row in rows:
        if row.group_id is None:
            entries.append([row])
            continue
        key = (row.group_id, row.action)
        if key not in grouped:
            grouped[key] = []
            entries.append(grouped[key])
        grouped[key].append(row)
    return entries


async def _lines(ctx: CommandContext, entries: list[list[AuditRecord]]) -> list[str]:
    rooms = toolkit(ctx).rooms
    rights = await ctx.rights()
    now = ctx.now()
    ids = sorted({entry[0].group_id for entry in entries if entry[0].group_id is not None and len(entry) > 1})
    groups = await ctx.services.state.groups.many(ids)
    out = []
    for entry in entries:
        row = entry[0]
        where = await rooms.where(row.room_id, rights=rights, here=ctx.message.room_id)
        group = groups.get(row.group_id) if row.group_id is not None else None
        if group is not None and len(entry) > 1:
            selector = bulk.shown_selector(group, rights, here=ctx.message.room_id)
            out.append(group_history_line(entry, selector, now=now, where=where))
        else:
            out.append(history_line(row, now=now, where=where))
    return out


COMMAND = Command(
    name="history",
    summary="recent changes made through me: who, when, what, why",
    usage=HELP["history"].usage,
    details="The last changes made through me (newest first), for the integrations you can see.",
    examples=HELP["history"].examples,
    handler=run,
    aliases=("log", "audit"),
)
