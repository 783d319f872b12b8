"""Switching one integration off for a command, plainly or for a while (see commands/disable.py
for the decisions): shared by `disable <name>` and each member of `disable all …` (commands/bulk.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.errors import PermissionDenied, UserInputError, VerificationFailed
from bot.incident.timers import LOOK, Look, SeenTimer
from bot.integrations import wording
from bot.integrations.authz import CallerRights
from bot.integrations.service import Edit
from bot.rocketchat.models import Integration, UpdateOutcome
from bot.state.timer_states import TimerState
from bot.state.timer_store import TimerDraft
from bot.text import code, human_until, quote_name, safe_text
from commands import changes, replies
from commands.incident import extend_button, reenable_button, require_change, toolkit
from commands.registry import CommandContext
from commands.reply import Reply


def why(reason: str | None) -> str:
    """The reason line of an answer (nothing without a reason)."""
    return f"\nReason: {safe_text(reason)}" if reason else ""


async def plain(ctx: CommandContext, found: Integration, reason: str | None, *, group_id: int | None = None) -> Reply:
    # `found` was just read by `resolve_reading` (a complete document): no second read, unless
    # someone wrote it since. The timer is ended under the same lock as the write (a re-enable
    # firing now waits, then finds the timer ended).
    rights = await ctx.rights()
    async with ctx.services.integrations.editing(found, planned={"enabled": False}, rights=rights) as edit:
        outcome, seen = await changes.apply_seeing_timer(ctx, edit, {"enabled": False}, rights, ends="disable")
        if not outcome.changed:
            return await _keep_disabled(ctx, outcome.after, reason, seen, group_id=group_id)
    # Recorded once the answer is on its way (commands/followups.py), with the timer seen under the
    # lock. A disable without a duration is for good: a timer still running (the integration was
    # switched on since, by hand or by an enable whose own book-keeping is still to come) was ended
    # under the lock (`ends`; by the record when that failed), as it is when the integration is
    # already off (`_keep_disabled`), never re-based to switch this disable back on when it is due.
    ctx.defer(
        outcome.after.id,
        lambda: changes.record_after(
            ctx, outcome, "disable", reason=reason, group_id=group_id, timer=seen, ends_timer=True
        ),
    )
    undo = code(f"{ctx.services.prefix} enable {outcome.after.id}")
    return Reply(
        f"{wording.DISABLED_MARK} Disabled {replies.label(outcome.after)}.{why(reason)}\nTo turn it back on: {undo}",
        buttons=(reenable_button(ctx, outcome.after.id),),
        outcome="changed",
    )


async def _keep_disabled(
    ctx: CommandContext,
    current: Integration,
    reason: str | None,
    seen: SeenTimer,
    *,
    group_id: int | None = None,
) -> Reply:
    """Already disabled: a running timed disable (`seen` under the lock, or looked up again now when
    that failed) becomes permanent (called under the lock)."""
    incident = ctx.services.incident
    if isinstance(seen, Look):  # `LOOK`
        pending = await incident.timers.pending_for(current.id) if incident is not None else None
    else:
        pending = seen
    if incident is not None and pending is not None and pending.state is TimerState.ACTIVE:
        note = f"made permanent by {ctx.message.username}"
        if await incident.timers.end_early(pending, note) is not None:
            await changes.note(ctx, current, "keep-disabled", reason=reason, group_id=group_id)
            return Reply(
                f"{wording.DISABLED_MARK} {replies.label(current)} stays disabled: I won't turn it back on "
                f"(it was due {human_until(pending.due_at, ctx.now())}).{why(reason)}",
                buttons=(reenable_button(ctx, current.id),),
                outcome="changed",
            )
    return Reply(f"{replies.label(current)} is already disabled; nothing changed.", outcome="unchanged")


async def timed(
    ctx: CommandContext,
    found: Integration,
    reason: str | None,
    duration: timedelta,
    *,
    group_id: int | None = None,
    due: datetime | None = None,
) -> Reply:
    """The timer row and the write are decided on the integration as it is under its lock: a
    re-enable of the same integration firing now either finished before (the row is gone, the
    integration is on) or waits until this is done (and then finds the new end)."""
    timers = toolkit(ctx).timers
    rights = await ctx.rights()
    await require_change(ctx, rights, found)
    now = ctx.now()
    due = due if due is not None else now + duration
    buttons = (reenable_button(ctx, found.id), extend_button(ctx, found.id))
    async with ctx.services.integrations.editing(found, planned={"enabled": False}, rights=rights) as edit:
        current = edit.current
        pending = await timers.pending_for(found.id)
        rebase = False
        replayed: UpdateOutcome | None = None
        if pending is not None and pending.state is TimerState.SCHEDULED and pending.message_id == ctx.message.id:
            timer = pending  # this very command, resumed after a restart: carry on with its row
            due = pending.due_at
        elif pending is not None and pending.state is TimerState.SCHEDULED:
            raise UserInputError(
                f"a timed disable of {quote_name(found.name)} is being set up right now; try again in a moment"
            )
        elif pending is not None and not current.enabled and (done := pending.extended_by(ctx.message.id)):
            # This command re-timed it already and was resumed (a crash before its audit row): the
            # end it set stays (re-timing again would count from now), the audit row is recorded once.
            await changes.note(ctx, current, "retime", reason=reason, until=done, group_id=group_id)
            return Reply(
                f"⏰ {replies.label(current)} is disabled {human_until(done, now)}.{why(reason)}",
                buttons=buttons,
                outcome="changed",
            )
        elif pending is not None and not current.enabled and (replayed := await _written_before(ctx, edit, rights)):
            # Resumed after a crash between its write and its book-keeping: it had found the
            # integration on with this timer running and taken it over (`rebase` below). It is
            # off by this very command, not "already disabled": its audit row, the re-base and
            # the new end are still to do.
            timer, rebase = pending, True
        elif pending is not None and not current.enabled:
            retimed = await timers.extend(pending, due, by=ctx.message.id)
            if retimed is None:
                raise UserInputError(f"the timed disable of {quote_name(found.name)} changed meanwhile; try again")
            await changes.note(ctx, current, "retime", reason=reason, until=due, group_id=group_id)
            return Reply(
                f"⏰ {replies.label(current)} was already disabled {human_until(pending.due_at, now)}; "
                f"now {human_until(due, now)}.{why(reason)}",
                buttons=buttons,
                outcome="changed",
            )
        elif pending is not None:
            timer, rebase = pending, True  # switched on since, outside the bot: off again, new end
        elif not current.enabled:
            return Reply(
                f"{replies.label(current)} is already disabled, and not by me, so nothing changed and I won't turn "
                f"it on later. To switch it off for a while: enable it, then {code('disable … for …')}.",
                outcome="unchanged",
            )
        else:
            scheduled = await timers.schedule(_draft(ctx, current, reason, now, due, group_id=group_id))
            if scheduled is None:
                raise UserInputError(
                    f"a timed disable of {quote_name(found.name)} is being set up right now; try again in a moment"
                )
            timer = scheduled
        try:
            outcome = replayed if replayed is not None else await edit.apply({"enabled": False}, rights=rights)
        except (PermissionDenied, UserInputError):
            # Refused before anything was written. (Any other failure may have written: the row
            # stays `scheduled` and is settled from the stored state once this command is over.)
            if not rebase:
                await timers.abort(timer, "the disable was refused")
            raise
        if not outcome.changed:
            if not rebase:
                await timers.abort(timer, "it was already disabled")
            return Reply(f"{replies.label(outcome.after)} is already disabled; nothing changed.", outcome="unchanged")
        # The audit row re-bases a running timer on this disable (`TimerService.follow_change`),
        # unless it was resumed after a crash and the integration was written since (`written_last`):
        # whoever wrote it followed the timer with their own change.
        last = changes.written_last(current, outcome)
        audit_id = await changes.record(
            ctx, outcome, "disable", reason=reason, until=due, group_id=group_id, timer=LOOK if last else None
        )
        if rebase:
            rebased = await timers.pending_for(found.id)
            done = rebased.extended_by(ctx.message.id) if rebased is not None else None
            if done is not None:
                due = done  # resumed after this very command set the end: kept as it set it
            elif rebased is None:
                # Ended meanwhile, by book-keeping that holds no lock (an enable's, after its answer,
                # through another replica): this disable is written, so it gets a timer of its own.
                draft = _draft(ctx, outcome.after, reason, now, due, group_id=group_id)
                fresh = await timers.schedule(draft)
                if fresh is None or await timers.confirm(fresh, outcome.after.document, audit_id) is None:
                    raise UserInputError(f"the timed disable of {quote_name(found.name)} changed meanwhile; try again")
            elif await timers.extend(rebased, due, by=ctx.message.id) is None:
                raise UserInputError(f"the timed disable of {quote_name(found.name)} changed meanwhile; try again")
        elif not last and current.enabled:
            # Resumed after a crash: switched on again since its write (by someone else, whose
            # change came later). Its timer has nothing left to do.
            await timers.abort(timer, "switched on again since the disable")
            return Reply(
                f"{wording.DISABLED_MARK} Disabled {replies.label(outcome.after)}, but it was switched on again "
                "since, so no timed disable is running.",
                outcome="changed",
            )
        else:
            # Resumed and written since (still off): what is stored now is the reference, as the
            # recovery of a row left `scheduled` confirms it (`TimerService.recover`).
            await timers.confirm(timer, (outcome.after if last else current).document, audit_id)
    return Reply(
        f"{wording.DISABLED_MARK} Disabled {replies.label(outcome.after)} {human_until(due, ctx.now())}.{why(reason)}",
        buttons=buttons,
        outcome="changed",
    )


async def _written_before(ctx: CommandContext, edit: Edit, rights: CallerRights) -> UpdateOutcome | None:
    """For a command resumed after a crash: its own disable, which switched the integration off
    before the crash (replayed by the journal, bot/runtime/journal.py, never sent again). None when
    not resumed, or it wrote nothing: the integration is off by someone else."""
    if not ctx.services.integrations.resuming():
        return None
    try:
        outcome = await edit.apply({"enabled": False}, rights=rights)
    except VerificationFailed:  # changed by someone else since its read: not its write to take over
        return None
    return outcome if outcome.changed and outcome.before.enabled else None


def _draft(
    ctx: CommandContext, found: Integration, reason: str | None, now: datetime, due: datetime, *, group_id: int | None
) -> TimerDraft:
    message = ctx.message
    return TimerDraft(
        integration_id=found.id,
        integration_name=found.name,
        integration_type=found.type,
        created_at=now,
        due_at=due,
        actor_id=message.user_id,
        actor_username=message.username,
        reason=reason,
        room_id=message.room_id,
        thread_id=message.thread_id,
        message_id=message.id,
        group_id=group_id,
    )
