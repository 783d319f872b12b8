"""`confirm <code>` / `yes`: apply a change `set` previewed, if it is still the caller's and current.

`yes` (or `confirm` without a code) takes the caller's most recent change asked for in this
room; a bare `yes` reaches the bot only in a direct message with it alone (elsewhere, group
DMs included, `!integration yes`), like every command without a prefix. The Apply button posts
`!integration confirm <code>` as whoever clicks it, so the same ownership rule covers it.

Before writing, the integration is read again under its lock: if anything in it changed since the
preview, the preview no longer says what would happen, so nothing is written and the caller is
asked to run `set` again. The write itself is `commands.set.apply` (rights re-checked, lossless,
verified, audited), under the same lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from bot.errors import StateUnavailable
from bot.rocketchat.models import Integration
from bot.state.confirmations import Status, Taken
from bot.text import ago, code, human_duration
from commands import bulk, replies
from commands.args import HELP, parse_code
from commands.parser import Token
from commands.registry import Command, CommandContext
from commands.reply import Reply
from commands.set import apply, resumed


async def run(ctx: CommandContext, args: Sequence[Token]) -> Reply:
    # A bulk confirmation resumed after a crash carries on with its group (commands/bulk.py);
    # a `set` one resumed with its write stored is answered from that write (the preview is gone).
    group = await ctx.services.state.groups.for_message(ctx.message.id)
    resuming_bulk = group is not None
    # Resumed (after a crash, or taken over from a replica that stopped with it after taking the
    # code): a change found "being applied" is this very command's to apply.
    resuming = ctx.services.integrations.resuming()
    done = None if resuming_bulk else await resumed(ctx)
    if done is not None:
        return done
    message = ctx.message
    pending = ctx.services.pending
    now = ctx.now()
    if args:
        asked = parse_code(args, command="confirm")
        taken = await pending.take(asked, user_id=message.user_id, room_id=message.room_id, now=now)
    else:
        taken = await pending.take_latest(
            user_id=message.user_id,
            room_id=message.room_id,
            now=now,
            resuming=resuming_bulk or resuming,
            begun=group.created_at if group is not None else None,
        )
    timeout = human_duration(ctx.services.settings.bot_confirm_timeout)
    again = f"Run {code('set')} again to get a new preview."
    if taken.status is Status.NOTHING:
        return Reply("You have no change waiting for confirmation in this room; nothing was changed.", outcome="none")
    if taken.status is Status.UNKNOWN:
        return Reply(
            f"I have no change waiting with that code (confirmations last {timeout}); nothing was changed. {again}",
            outcome="unknown-code",
        )
    if taken.status is Status.FOREIGN:
        return Reply(
            "That confirmation is not yours to give: only the person who asked for the change can confirm it, "
            "in the room where they asked. Nothing was changed.",
            outcome="foreign",
        )
    if taken.status is Status.EXPIRED:
        return Reply(
            f"That change expired (confirmations last {timeout}); nothing was changed. {again}", outcome="expired"
        )
    change = taken.change
    assert change is not None
    if change.bulk:
        return await _bulk(ctx, taken, resuming=resuming_bulk)
    if taken.status is Status.APPLYING and not resuming:
        return Reply(
            f"That change ({code(change.code)}) to {replies.label(Integration.of(change.snapshot))} is being "
            "applied right now: my answer to your first confirmation says how it went.",
            outcome="applying",
        )
    if taken.status is Status.APPLIED:
        assert taken.applied_at is not None
        return Reply(
            f"That change ({code(change.code)}) to {replies.label(Integration.of(change.snapshot))} was already "
            f"applied, {ago(taken.applied_at, now)}; nothing more to do.",
            outcome="applied",
        )
    try:
        # Compared and written under the integration's lock: nothing of the bot's lands in between.
        async with ctx.services.integrations.editing(change.snapshot) as edit:
            if edit.current.document != dict(change.snapshot):
                return Reply(
                    f"{replies.label(edit.current)} was changed by someone since the preview, so I changed "
                    f"nothing. {again}",
                    outcome="stale",
                )
            reply = await apply(ctx, edit, change.updates)
        # The change is written and audited: that is the answer, even if the state database
        # fails just now (the code then reads "being applied" for a while, then "expired").
        with suppress(StateUnavailable):
            await pending.applied(change, now=now)
        return reply
    finally:
        with suppress(StateUnavailable):
            await pending.release(change)


async def _bulk(ctx: CommandContext, taken: Taken, *, resuming: bool) -> Reply:
    change = taken.change
    assert change is not None
    if taken.status is Status.APPLYING and not resuming:
        return Reply(
            f"That change ({code(change.code)}) is being applied right now: my answer to your first confirmation "
            "says how it went.",
            outcome="applying",
        )
    if taken.status is Status.APPLIED and not resuming:
        # Resumed, it is this very confirmation's, applied before its answer was stored: its group
        # carries on (every member done already) and answers what it did.
        assert taken.applied_at is not None
        return Reply(
            f"That change ({code(change.code)}) was already applied, {ago(taken.applied_at, ctx.now())}; "
            "nothing more to do.",
            outcome="applied",
        )
    return await bulk.confirmed(ctx, change)


COMMAND = Command(
    name="confirm",
    summary="apply a change you asked for with set or disable all",
    usage=HELP["confirm"].usage,
    details=(
        "Applies the change `set` or `disable all` showed you, with its code. `yes` (or `confirm` without a code) "
        "applies your latest one in this room. Only you can confirm your change, in the room where you asked, "
        "before it expires."
    ),
    examples=HELP["confirm"].examples,
    handler=run,
    aliases=("yes",),
    changes_integrations=True,
)
