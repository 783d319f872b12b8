"""Recording a change made through the bot: one audit row with the full before/after documents.

Every change goes through `record`, which is also where the incident toolkit hears about it:
a timed disable of that integration follows the change (ended when the integration was switched
on, re-based when it stays off), and the audit room gets its line. `note` records a timer-only
action (extend, keep disabled) that changes no document.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime
from typing import Any

from bot.errors import IntegrationNotFound, StateUnavailable, UpstreamError
from bot.incident.timers import LOOK, Look, SeenTimer
from bot.integrations.authz import CallerRights
from bot.integrations.service import Edit
from bot.rocketchat.models import Integration, UpdateOutcome
from bot.state.store import AuditRecord
from bot.state.timer_states import TimedDisable, TimerState
from bot.tasks import background
from commands import followups
from commands.registry import CommandContext


async def apply_seeing_timer(
    ctx: CommandContext, edit: Edit, updates: Mapping[str, Any], rights: CallerRights, *, ends: str | None = None
) -> tuple[UpdateOutcome, SeenTimer]:
    """`edit.apply(updates)`, and the integration's timed disable pending under the same lock (looked
    up at once with the write): the timer the change follows when it is recorded after the answer
    (`record(timer=…)`). One that another command sets once the lock is free (through another
    replica, while this answer is on its way) is not this change's. When that lookup fails (the
    state database stumbling), `LOOK`: the record looks again, and the write, made, is answered.

    `ends`: the action of a change that ends a running timer (an enable, a permanent disable). It
    is ended here, under the lock: once the lock is free, an `extend` through another replica
    would find it still running and keep it, and the record's ending acts only on the timer as it
    was seen (it is a no-op then). When ending it fails, the record after the answer tries again."""
    incident = ctx.services.incident
    held = edit.current
    # Not looked up when the lock read that none was pending (a timer becomes pending only under it).
    looks = edit.timer_pending is not False
    lookup = background(incident.timers.pending_for(held.id)) if incident is not None and looks else None
    try:
        outcome = await edit.apply(updates, rights=rights)
    except BaseException:
        if lookup is not None:
            lookup.cancel()
        raise
    try:
        pending: SeenTimer = await lookup if lookup is not None else None
    except StateUnavailable:
        pending = LOOK
    if not written_last(held, outcome):
        return outcome, None
    if ends is not None and incident is not None and outcome.changed and _running(pending):
        assert isinstance(pending, TimedDisable)
        with suppress(StateUnavailable):
            await incident.timers.end_early(pending, ending_note(ends, ctx.message.username))
    return outcome, pending


def _running(timer: SeenTimer) -> bool:
    return isinstance(timer, TimedDisable) and timer.state is TimerState.ACTIVE


def ending_note(action: str, username: str) -> str:
    """The note on a timer a change of the bot's ended."""
    return f"ended early: {action} by {username}"


def seen_timer(seen: SeenTimer) -> TimedDisable | None:
    """The timer `apply_seeing_timer` saw, None when none was or it could not look."""
    return None if isinstance(seen, Look) else seen


def _stamp(integration: Integration) -> object:
    return integration.document.get("_updatedAt")


def written_last(held: Integration, outcome: UpdateOutcome) -> bool:
    """Whether the change of `outcome` is the last write of the integration `held` (read under the
    lock): a write made now, or one a command resumed after a crash had made before it (replayed by
    the journal, bot/runtime/journal.py) that nobody changed since. Changed since, the timer pending
    now was set or followed by whoever changed it: not the one pending when this change was written."""
    return _stamp(held) in (_stamp(outcome.before), _stamp(outcome.after))


async def record(
    ctx: CommandContext,
    outcome: UpdateOutcome,
    action: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
    undoes: int | None = None,
    group_id: int | None = None,
    timer: SeenTimer = LOOK,
    ends_timer: bool = False,
    last: bool = False,
) -> int:
    """The audit row of a change; its timed disable follows it (`TimerService.follow_change`):
    `timer` is the one pending when it was written, looked up under the integration's lock, for a
    record made once the lock is free (after the answer); by default the one pending now.
    `ends_timer`: the change ends it even though the integration stays off (a permanent disable).
    `last`: nothing of the command's comes after this record (its book-keeping after the answer,
    `record_after`): following no timer, its claim may be closed with the row (`followups.closing`)."""
    message = ctx.message
    entry = AuditRecord(
        at=ctx.now(),
        actor_id=message.user_id,
        actor_username=message.username,
        integration_id=outcome.before.id,
        integration_name=outcome.before.name,
        integration_type=outcome.before.type,
        action=action,
        room_id=message.room_id,
        message_id=message.id,
        reason=reason,
        before=outcome.before.to_dict(),
        after=outcome.after.to_dict(),
        until=until,
        undoes=undoes,
        group_id=group_id,
    )
    # The command's last statement when it follows no timer (the common case): its claim is closed
    # in the same round trip when the runtime lets it (`followups.closing`).
    claim = followups.closing(message.id) if last and timer is None else None
    if claim is not None:
        audit_id, _closed = await ctx.services.state.record_finishing(entry, claim.outcome)
        claim.done = True
    else:
        audit_id = await ctx.services.state.record(entry)
    incident = ctx.services.incident
    if incident is not None:
        await incident.timers.follow_change(
            outcome.after.id,
            outcome.after.document,
            ending_note(action, message.username),
            seen=timer,
            end=ends_timer,
        )
        incident.audit_room.announce(dataclasses.replace(entry, id=audit_id))
    return audit_id


async def record_after(
    ctx: CommandContext,
    outcome: UpdateOutcome,
    action: str,
    *,
    timer: SeenTimer,
    reason: str | None = None,
    group_id: int | None = None,
    ends_timer: bool = False,
) -> int:
    """`record` once the integration's lock is free (after the answer), with the timer `timer` seen
    under it by `apply_seeing_timer`. When that lookup failed (`LOOK`), the timer pending now may be
    one another command set since (through another replica): looked up under the lock again, and
    followed only if nobody wrote the integration since (`record_resumed`)."""
    if isinstance(timer, Look):
        return await record_resumed(ctx, outcome, action, reason=reason, group_id=group_id, ends_timer=ends_timer)
    return await record(
        ctx, outcome, action, reason=reason, group_id=group_id, timer=timer, ends_timer=ends_timer, last=True
    )


async def record_resumed(
    ctx: CommandContext,
    outcome: UpdateOutcome,
    action: str,
    *,
    reason: str | None = None,
    undoes: int | None = None,
    group_id: int | None = None,
    ends_timer: bool = False,
) -> int:
    """`record` for a change that a command resumed after a crash had written before it (the
    journal's `IntegrationService.resumed`), as the command would have recorded it: under the
    integration's lock. Its timer is followed only if nobody wrote the integration since: whoever
    did followed the timer pending then with their own change, and the one pending now may be
    theirs (a `disable … for` set through another replica while this command waited to be resumed).
    When the integration cannot be read now (Rocket.Chat away or rate-limiting a recovery's burst),
    the change is still recorded (it was written: never answered "nothing was changed"), following
    no timer: one left running is judged when due, as any change it did not follow."""
    recording = functools.partial(record, ctx, outcome, action, reason=reason, undoes=undoes, group_id=group_id)
    held = False
    try:
        async with ctx.services.integrations.editing(outcome.after) as edit:
            held = True
            timer = LOOK if _stamp(edit.current) == _stamp(outcome.after) else None
            return await recording(timer=timer, ends_timer=ends_timer)
    except (IntegrationNotFound, UpstreamError):  # deleted since (nothing of it to follow), or unreadable now
        if held:
            raise  # not from taking the lock: from the record itself
        return await recording(timer=None)


async def note(
    ctx: CommandContext,
    integration: Integration,
    action: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
    group_id: int | None = None,
) -> int:
    """An audit row for an action that changed no document (the current one is kept as `after`,
    so `history` can tell who may see it; `undo` skips rows without a `before`)."""
    message = ctx.message
    entry = AuditRecord(
        at=ctx.now(),
        actor_id=message.user_id,
        actor_username=message.username,
        integration_id=integration.id,
        integration_name=integration.name,
        integration_type=integration.type,
        action=action,
        room_id=message.room_id,
        message_id=message.id,
        reason=reason,
        after=integration.to_dict(),
        until=until,
        group_id=group_id,
    )
    audit_id = await ctx.services.state.record(entry)
    if ctx.services.incident is not None:
        ctx.services.incident.audit_room.announce(dataclasses.replace(entry, id=audit_id))
    return audit_id
