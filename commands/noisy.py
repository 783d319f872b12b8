"""`noisy [all] [minutes]`: which integrations posted the most messages lately, here or in all
of the caller's rooms, with a one-tap "disable the top one for an hour".

Counts come from the `bot.i` field of integration messages (bot/incident/noise.py); when the bot's
in-memory window does not reach back far enough (e.g. it restarted), the room is read from
REST first. Anyone can put any `bot.i` on a message of their own (contract §4.7), so a message
counts for an integration only when the user it posts as (its `userId`) wrote it, as for the flood
guard: nobody can make `noisy` blame, and offer to switch off, an integration that posted nothing.
The window counts per integration and author, most first; the integrations are read in that order
(each once, at most MAX_READS) and the counts of other authors are passed over until SHOWN are
found, so those shown are the ones that posted most. A message whose `bot.i` names no integration
(another bot, a deleted integration) is counted as "a bot or a deleted integration".

What the caller learns is limited the usual way: `all` means the rooms the bot is in *and* the
caller is in (activity in rooms the caller cannot read is not theirs to see), and
an integration the caller's own `list` would not show is counted but not named (no name, no id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from bot.errors import PermissionDenied, UpstreamError
from bot.incident.noise import DEFAULT_RETENTION, Tally
from bot.integrations.authz import CallerRights, may_list
from bot.integrations.documents import read_integration
from bot.rocketchat.models import Integration
from bot.text import bullet_list, human_duration, plural
from commands import replies
from commands.args import parse_minutes
from commands.incident import disable_for_button, may_see, toolkit
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Button, Reply

DEFAULT_SPAN: Final = timedelta(minutes=60)
BUTTON_SPAN: Final = timedelta(hours=1)
SHOWN: Final = 8
# How many integrations one `noisy` reads at most (counts forged for many of them cost no more).
MAX_READS: Final = 3 * SHOWN
# `noisy all` reads at most this many rooms from REST (the busiest installations have thousands).
MAX_BACKFILL_ROOMS: Final = 50
EVERYWHERE: Final = frozenset({"all", "everywhere"})
UNCHECKED: Final = f"(Messages of more integrations than I check at once ({MAX_READS}) were left out.)"
USAGE: Final = "noisy [all] [minutes]"


def _split(args: Sequence[Token]) -> tuple[bool, list[Token]]:
    tokens = list(args)
    everywhere = False
    for index in (0, -1):
        if tokens and not tokens[index].quoted and tokens[index].value.lower() in EVERYWHERE:
            everywhere = True
            tokens.pop(index)
    return everywhere, tokens


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    everywhere, tokens = _split(args)
    span = parse_minutes(tokens, command="noisy", maximum=DEFAULT_RETENTION) or DEFAULT_SPAN
    rights = await ctx.rights()
    listing = may_list(rights)
    if not listing.allowed:
        raise PermissionDenied("look at integrations", listing.missing, detail=listing.reason or None)
    incident = toolkit(ctx)
    here = ctx.message.room_id
    now = ctx.now()
    since = now - span
    rooms = {here}
    scope = "here"
    if everywhere:
        if rights.room_ids is None:
            scope = "here (I can't see which rooms you are in, so only this one)"
        else:
            incident.rooms.forget()  # rooms joined a moment ago count too
            bot_rooms = set(await incident.rooms.rooms())
            rooms |= bot_rooms & set(rights.room_ids)
            scope = f"in {plural(len(rooms), 'room')} we share"
    gaps = 0
    for room_id in sorted(rooms, key=lambda r: r != here)[:MAX_BACKFILL_ROOMS]:
        if not incident.noise.covers(room_id, since):
            try:
                await incident.noise.backfill(ctx.services.rest, room_id, since)
            except UpstreamError:
                gaps += 1
    window = human_duration(span)
    posted = await _posted_by_them(ctx, incident.noise.tally(since=since, rooms=rooms))
    if not posted.shown:
        if posted.unchecked:
            return Reply(
                f"No integration I could check posted {scope} in the last {window}. {UNCHECKED}", outcome="empty"
            )
        return Reply(f"No integration posted {scope} in the last {window}.", outcome="empty")
    lines, button = await _describe(ctx, posted.shown, rights, window)
    total = sum(tally.count for tally, _document in posted.shown)
    note = ""
    if gaps or len(rooms) > MAX_BACKFILL_ROOMS:
        note = "\n(Some rooms could not be read back in full; counts there may be low.)"
    text = (
        f"Integration messages {scope} in the last {window} ({plural(total, 'message')}):\n{bullet_list(lines)}{note}"
    )
    if posted.unchecked:
        text += f"\n{UNCHECKED}"
    elif posted.more:
        text += f"\n… and up to {plural(posted.more, 'more integration')}."
    return Reply(text, buttons=(button,) if button is not None else ())


@dataclass(frozen=True)
class _Posted:
    shown: list[tuple[Tally, dict[str, Any] | None]]  # each count with its integration (None: none)
    more: int  # integrations not looked at (each may have posted, or only been named)
    unchecked: bool  # stopped at MAX_READS before SHOWN were found


async def _posted_by_them(ctx: CommandContext, tallies: list[Tally]) -> _Posted:
    """The SHOWN largest counts of messages an integration's own user posted (see the module
    docstring), each with its integration read once."""
    documents: dict[str, dict[str, Any] | None] = {}
    shown: list[tuple[Tally, dict[str, Any] | None]] = []
    for index, tally in enumerate(tallies):
        if len(shown) == SHOWN:
            named = {t.integration_id for t in tallies[index:]} - {t.integration_id for t, _d in shown}
            return _Posted(shown, len(named), unchecked=False)
        if tally.integration_id not in documents:
            if len(documents) == MAX_READS:
                return _Posted(shown, 0, unchecked=True)
            try:
                documents[tally.integration_id] = await read_integration(ctx.services.rest, tally.integration_id)
            except UpstreamError:
                documents[tally.integration_id] = None
        document = documents[tally.integration_id]
        if document is not None and document.get("userId") != tally.author_id:
            continue  # someone else put its `bot.i` on their messages: not posted by it
        shown.append((tally, document))
    return _Posted(shown, 0, unchecked=False)


async def _describe(
    ctx: CommandContext, posted: list[tuple[Tally, dict[str, Any] | None]], rights: CallerRights, window: str
) -> tuple[list[str], Button | None]:
    lines: list[str] = []
    button: Button | None = None
    for tally, document in posted:
        count = plural(tally.count, "message")
        if document is None:
            lines.append(f"{count} · a bot or a deleted integration")
            continue
        if not may_see(rights, document):
            lines.append(f"{count} · an integration you can't see")
            continue
        integration = Integration.of(document)
        lines.append(f"{count} · {replies.one_line(integration, with_id=True)}")
        if (
            button is None
            and integration.enabled
            and (await ctx.services.integrations.may_write(rights, integration)).allowed
        ):
            button = disable_for_button(ctx, integration, BUTTON_SPAN, f"noisy: {count} in {window}")
    return lines, button


COMMAND = Command(
    name="noisy",
    summary="which integrations posted the most lately, here or in all your rooms",
    usage=USAGE,
    details=(
        "Counts messages posted by integrations in this room (or, with `all`, in every room we share) "
        "over the last minutes (default 60; `noisy 15`, `noisy all 2h`). Offers a button to disable the "
        "busiest one you may change for an hour."
    ),
    examples=("noisy", "noisy 15", "noisy all 30"),
    handler=run,
    aliases=("top",),
)
