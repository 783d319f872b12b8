"""`quiet <name|id>`: no flood notices about an integration in this room until the end of the day
(UTC): what the flood notice's "Quiet for today" button posts (bot/incident/flood.py).

Who may: whoever may change the integration (the rule `disable` applies), since silencing the
warning about a flood is as much a decision about it as switching it off; someone who can't
manage it is refused without learning anything about it, as `disable` refuses. The quiet period
is kept in the state store, so every replica and a restart keep it; it only ever lengthens.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Final

from bot.text import human_until
from commands import replies
from commands.args import parse_target
from commands.incident import require_change
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.targets import resolve

USAGE: Final = "quiet <name|id>"


def end_of_day(now: datetime) -> datetime:
    """The next midnight, UTC."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=1), time(0), tzinfo=UTC)


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    target = parse_target(args, command="quiet", usage=USAGE)
    if (extra := replies.only_a_name("quiet", target.rest)) is not None:
        return extra
    found = await resolve(ctx, target)
    await require_change(ctx, await ctx.rights(), found)
    now = ctx.now()
    quiet = await ctx.services.state.floods.quiet(found.id, ctx.message.room_id, end_of_day(now), ctx.message.username)
    return Reply(
        f"🤫 No flood notices about {replies.label(found)} in this room {human_until(quiet.until, now)}.",
        outcome="changed",
    )


COMMAND = Command(
    name="quiet",
    summary="no flood notices about an integration in this room until the end of the day",
    usage=USAGE,
    details=(
        "The flood guard posts a notice when an integration floods a room; `quiet` silences further ones "
        "about that integration in this room until midnight UTC. You must be allowed to change it."
    ),
    examples=("quiet Grafana", "quiet incoming Guggy"),
    handler=run,
    action="silence flood notices about {kind}integrations",
    changes_bot=True,
)
