"""`failing [minutes]`: outgoing webhooks whose recent calls failed, with a [Disable] button each.

Which webhooks: the outgoing ones the caller's own `list` would show (Rocket.Chat's list rule,
bot/integrations/authz.py), read with the bot's account; nothing about the others is said, not
even how many there are. For each, the call history (`integrations.history`, newest first) is read
back to the start of the window, at most `MAX_ENTRIES` entries, a few webhooks at a time. What
counts as a failed call, and how the last error is cut down to a line that is safe to post (no
token, no credentials, no URL path or query), is in bot/integrations/call_failures.py.

The buttons post `disable <id> -- <reason>` as whoever taps them, so the usual checks apply; one
is offered only for an enabled webhook the caller may change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bot.errors import PermissionDenied, UpstreamError
from bot.integrations.authz import MANAGE_OUTGOING, MANAGE_OWN_OUTGOING, CallerRights, RoomMemo, visible_in_list
from bot.integrations.call_failures import entry_secrets, entry_time, safe_error_line, verdict
from bot.normalize import name_key
from bot.rocketchat.models import OUTGOING, Integration
from bot.text import ago, bullet_list, code, human_duration, plural, single_line, truncate
from commands import replies
from commands.args import HELP, parse_minutes
from commands.incident import command
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Button, Reply

DEFAULT_SPAN: Final = timedelta(minutes=60)
MAX_SPAN: Final = timedelta(days=7)
MAX_CHECKED: Final = 100  # webhooks whose history one command reads (enabled ones first)
MAX_ENTRIES: Final = 300  # history entries read per webhook (3 pages)
CONCURRENCY: Final = 4  # history reads in flight at once (the REST client has few connections)
SHOWN: Final = 10
MAX_BUTTONS: Final = 5


@dataclass(frozen=True)
class Tally:
    integration: Integration
    calls: int = 0
    failed: int = 0
    last_error: str = ""  # already made safe
    last_at: datetime | None = None
    truncated: bool = False  # MAX_ENTRIES reached inside the window: counts are a lower bound
    error: UpstreamError | None = None  # the history could not be read


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    span = parse_minutes(args, command="failing", maximum=MAX_SPAN) or DEFAULT_SPAN
    rights = await ctx.rights()
    if not (rights.has(MANAGE_OUTGOING) or rights.has(MANAGE_OWN_OUTGOING)):
        raise PermissionDenied(
            "look at outgoing webhooks' calls",
            (MANAGE_OUTGOING, MANAGE_OWN_OUTGOING),
            detail="reading an outgoing webhook's history needs one of the outgoing permissions",
        )
    visible = [
        Integration.of(doc)
        async for doc in ctx.services.rest.iter_integrations(type=OUTGOING)
        if visible_in_list(rights, doc)
    ]
    window = human_duration(span)
    if not visible:
        return Reply("No outgoing webhooks that you can see.", outcome="empty")
    visible.sort(key=lambda i: (not i.enabled, name_key(i.name), i.id))
    checked = visible[:MAX_CHECKED]
    now = ctx.now()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with asyncio.TaskGroup() as group:  # a crash in one read cancels the others
        tasks = [group.create_task(_tally(ctx, gate, i, now - span)) for i in checked]
    tallies = [task.result() for task in tasks]
    unreadable = [t for t in tallies if t.error is not None]
    if unreadable and len(unreadable) == len(tallies) and unreadable[0].error is not None:
        raise unreadable[0].error  # nothing could be read: not "nothing failed"
    failing = sorted((t for t in tallies if t.failed), key=lambda t: (-t.failed, name_key(t.integration.name)))
    notes = _notes(len(visible), len(unreadable))
    if not failing:
        text = f"No failed calls in the last {window} from the {plural(len(checked), 'outgoing webhook')} you can see."
        return Reply(text + notes, outcome="empty")
    lines = [_line(t, now) for t in failing[:SHOWN]]
    more = f"\n… and {plural(len(failing) - SHOWN, 'more webhook')}." if len(failing) > SHOWN else ""
    header = (
        f"{len(failing)} of {plural(len(checked), 'outgoing webhook')} you can see had failed calls "
        f"in the last {window}:"
    )
    buttons = await _buttons(ctx, rights, failing[:SHOWN], window)
    return Reply(f"{header}\n{bullet_list(lines)}{more}{notes}", buttons=buttons)


async def _tally(ctx: CommandContext, gate: asyncio.Semaphore, integration: Integration, since: datetime) -> Tally:
    calls = failed = 0
    last_error, last_at = "", None
    reached_end = False
    async with gate:
        try:
            # Closed at once when the window ends before the history does (no page left pending).
            async with aclosing(ctx.services.rest.iter_history(integration.id, limit=MAX_ENTRIES)) as entries:
                async for entry in entries:
                    when = entry_time(entry)
                    if when is not None and when < since:
                        reached_end = True
                        break
                    calls += 1
                    found = verdict(entry)
                    if found.failed:
                        failed += 1
                        if not last_error:  # newest first: the first failure is the last one
                            last_error = _safe(found.reason, entry, integration.document)
                            last_at = when
                else:
                    reached_end = calls < MAX_ENTRIES
        except UpstreamError as exc:
            return Tally(integration, error=exc)
    return Tally(integration, calls, failed, last_error, last_at, truncated=not reached_end)


def _safe(reason: str, entry: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    return safe_error_line(reason, entry_secrets(entry, document)) or "failed"


def _line(tally: Tally, now: datetime) -> str:
    at_least = "at least " if tally.truncated else ""
    counts = f"{at_least}{tally.failed} of {plural(tally.calls, 'call')} failed"
    when = f"last {_minutes_ago(tally.last_at, now)}" if tally.last_at is not None else "last"
    return f"{replies.one_line(tally.integration, with_id=True)} · {counts} · {when}: {code(tally.last_error)}"


def _minutes_ago(when: datetime, now: datetime) -> str:
    """`4 min ago`, `1 h 5 min ago`, `just now`: whole minutes (seconds would be noise here)."""
    delta = now - when
    if delta < timedelta(minutes=1):
        return ago(when, now)
    return f"{human_duration(timedelta(minutes=delta // timedelta(minutes=1)))} ago"


def _notes(visible: int, unreadable: int) -> str:
    notes = ""
    if visible > MAX_CHECKED:
        notes += f"\n(Only the first {MAX_CHECKED} of {visible} outgoing webhooks were checked, enabled ones first.)"
    if unreadable:
        notes += f"\n(The history of {plural(unreadable, 'webhook')} could not be read just now.)"
    return notes


async def _buttons(
    ctx: CommandContext, rights: CallerRights, failing: Sequence[Tally], window: str
) -> tuple[Button, ...]:
    buttons: list[Button] = []
    memo = RoomMemo(rights)  # a `#room` entry several webhooks carry is looked up once
    for tally in failing:
        if len(buttons) >= MAX_BUTTONS:
            break
        integration = tally.integration
        if not integration.enabled:
            continue
        if not (await ctx.services.integrations.may_write(rights, integration, memo=memo)).allowed:
            continue
        reason = f"failing: {plural(tally.failed, 'failed call')} in {window}"
        buttons.append(
            Button(
                f"Disable {truncate(single_line(integration.name), 30)}",
                command(ctx, "disable", integration.id, "--", reason),
            )
        )
    return tuple(buttons)


COMMAND = Command(
    name="failing",
    summary="outgoing webhooks whose recent calls failed",
    usage=HELP["failing"].usage,
    details=HELP["failing"].details,
    examples=HELP["failing"].examples,
    handler=run,
    action="look at {kind}webhooks' calls",
)
