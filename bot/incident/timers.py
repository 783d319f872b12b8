"""Timed disables: the operations commands use, and the careful re-enable the scheduler runs.

Theory of operation
-------------------
`disable X for 30m` (commands/disable.py) calls `schedule` (a `scheduled` row, before anything is
written), disables X through `IntegrationService`, records the audit row, then `confirm`s the
timer with the document the disable produced (`active`). `Scheduler` (bot/incident/scheduler.py) calls
`expire` when the time comes, and `recover` once at start for rows a crash left `scheduled`.

`expire` never overwrites somebody else's work. It reads the integration and compares it with
the document the bot's disable produced (`bot.integrations.documents`):
- unchanged → switch it on (lossless read-modify-write, verified) → `expired`;
- switched on, nothing else changed, last saved by the bot itself → the bot's own re-enable
  landed just before a crash: nothing to write → `expired`;
- anything else (re-enabled by hand, edited, saved again, deleted) → `overridden`, and it says
  so in the room/thread the disable came from;
- Rocket.Chat refuses the write for good (e.g. its channel was deleted) → `failed`, said so too.
Transient failures (`Unavailable`, `RateLimited`, and `StateUnavailable`: the state database
away, or a row held by a replica stalled mid-batch) propagate: the scheduler retries later.

Several replicas (PostgreSQL): every replica's scheduler arms every timer (it polls the store), so
two may fire the same one. `expire` makes that safe without a lease of its own: the comparison,
the write, the audit row and the row's compare-and-set ending all hold the integration's lock,
which is shared through the database, and the row is read again under it; the second replica to
get the lock finds the row ended and does nothing (no write, no audit row, no notice). A replica
that dies mid-way leaves the row `active` (the lock goes with its transaction): the next one reads
the integration, sees the bot's re-enable landed (enabled, nothing else changed, saved by the bot)
and only records it. The audit row of an ending is keyed by the timer (`_ending_key`), so one
recorded just before a death is not recorded twice; the notice's id is derived from the timer, so
it is not posted twice either. A timer extended or ended through another replica is read again
under the lock too: a scheduler holding the old row finds it ended or due later and leaves it.

Changes made through the bot to an integration with an active timer go through
`follow_change` (from `commands/changes.py`): switched on → the timer ends (`cancelled`); still
off (e.g. `set` while snoozed) → the timer takes the new document as its reference (`rebased`),
so the bot's own edit is not mistaken for somebody else's. Every ending is one audit row (actor:
the bot) and, when configured, one line in the audit room.

An ending and its audit row never part. A re-enable records its row first (the write happened,
whatever becomes of the timer's row next; keyed by `_ending_key`, so a second try gets the same
row), then ends the row. An ending that writes nothing (left alone: `overridden`; refused for
good: `failed`) is stored with its audit row in one transaction (`StateStore.end_timer`): the
state database failing leaves the timer `active`, so the scheduler's retry records and tells it
once; and the row is appended only if this ending won, so a timer ended otherwise at the same
moment (another replica, a command) gets no audit row for an ending that did not happen.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

from bot import logs
from bot.clock import Clock
from bot.errors import (
    BotError,
    IntegrationNotFound,
    NotUpdatable,
    PermissionDenied,
    RateLimited,
    ServerRejected,
    StateUnavailable,
    Unavailable,
    UserInputError,
    VerificationFailed,
)
from bot.incident.audit_room import AuditRoom
from bot.integrations.authz import CallerRights, RightsCache
from bot.integrations.change_lines import room_safe_change_lines
from bot.integrations.documents import (
    NOT_AUTHORIZED,
    changed_fields,
    last_touch,
    saved_again,
    shown_changes,
)
from bot.integrations.service import Edit, IntegrationService
from bot.integrations.wording import DISABLED_MARK, ENABLED_MARK, kind_word, poster_label
from bot.rocketchat import message_ids
from bot.rocketchat.models import Integration
from bot.rocketchat.rest import RestClient
from bot.state.store import AuditRecord, StateStore
from bot.state.timer_states import TimedDisable, TimerEvent, TimerState
from bot.state.timer_store import TimerDraft, TimerStore
from bot.text import ago, code, human_duration, neutralize_mentions, quote_name, safe_text

log = logs.get_logger("integrations_bot.timers")

ExpiryKind = Literal["re-enabled", "overridden", "failed"]
# How many members a bulk disable's "back on" notice names.
GROUP_NOTICE_NAMES: Final = 10
# A `scheduled` row older than this belongs to no running command any more.
ORPHAN_AGE: Final = timedelta(minutes=10)
# How many of an integration's latest audit rows the settling of an abandoned row looks through.
RECOVERY_ROWS: Final = 50


@dataclass(frozen=True)
class Expiry:
    """How a due timed disable ended, and what the bot said about it in the room."""

    timer: TimedDisable
    kind: ExpiryKind
    notice: str


def _no_room(entry: str) -> bool:
    """Whether a notice may show a channel entry: its readers are everyone in its room, so no
    `#room` (one may be private); `@user` entries are shown."""
    return not entry.startswith("#")


def timer_label(timer: TimedDisable) -> str:
    return f"{quote_name(timer.integration_name)} ({kind_word(timer.integration_type)})"


def webhook_label(document: Mapping[str, Any]) -> str:
    """An integration as a room sees it (bot/integrations/wording.py `poster_label`)."""
    return f"{quote_name(poster_label(document))} (a webhook)"


class Look(enum.Enum):
    """`TimerService.follow_change(seen=LOOK)`: the timer to follow is the one pending now (its
    caller holds the lock), not one seen earlier."""

    NOW = "look"


LOOK: Final = Look.NOW
# The timer a change follows: the one seen under its lock (or None: there was none), or `LOOK`.
SeenTimer: TypeAlias = TimedDisable | Look | None


class TimerService:
    def __init__(
        self,
        *,
        store: TimerStore,
        state: StateStore,
        rest: RestClient,
        integrations: IntegrationService,
        rights: RightsCache,
        bot_user_id: str,
        bot_username: str,
        clock: Clock,
        audit_room: AuditRoom | None = None,
    ) -> None:
        self.store = store
        self._state = state
        self._rest = rest
        self._integrations = integrations
        self._rights = rights
        self.bot_user_id = bot_user_id
        self.bot_username = bot_username
        self.clock = clock
        self._audit_room = audit_room
        # Set by the scheduler: called whenever the set of due times changed.
        self.wake: Callable[[], None] = lambda: None

    # --- for commands ---------------------------------------------------------------------------

    async def pending_for(self, integration_id: str) -> TimedDisable | None:
        return await self.store.pending_for(integration_id)

    async def active(self) -> list[TimedDisable]:
        return await self.store.pending(TimerState.ACTIVE)

    async def schedule(self, draft: TimerDraft) -> TimedDisable | None:
        """A `scheduled` row for a disable about to be written; None if one is pending already."""
        return await self.store.schedule(draft)

    async def confirm(
        self, timer: TimedDisable, document: Mapping[str, Any], audit_id: int | None
    ) -> TimedDisable | None:
        """`scheduled` → `active`; None if the row moved on meanwhile (settled by `recover`)."""
        confirmed = await self.store.transition(
            timer, TimerEvent.CONFIRMED, at=self.clock.now(), document=document, audit_id=audit_id
        )
        self.wake()
        return confirmed

    async def abort(self, timer: TimedDisable, note: str) -> None:
        aborted = await self.store.transition(timer, TimerEvent.ABORTED, at=self.clock.now(), note=note)
        if aborted is not None and aborted.group_id is not None:
            await self._group_notice(aborted.group_id, aborted)  # the others may all be back on

    async def extend(self, timer: TimedDisable, due_at: datetime, *, by: str | None = None) -> TimedDisable | None:
        """A new end; `by`: the message id of the command asking, recorded with it on the row in the
        same statement (`TimedDisable.extended_by`), so that command, resumed, does not extend again."""
        extended = await self.store.transition(timer, TimerEvent.EXTENDED, at=self.clock.now(), due_at=due_at, by=by)
        self.wake()
        return extended

    async def end_early(self, timer: TimedDisable, note: str) -> TimedDisable | None:
        """Ended by a command; a member of a bulk disable that was the last one pending lets the
        group's notice name the members that came back on before it (`_group_notice`)."""
        ended = await self.store.transition(timer, TimerEvent.ENDED_EARLY, at=self.clock.now(), note=note)
        self.wake()
        if ended is not None and ended.group_id is not None:
            await self._group_notice(ended.group_id, ended)
        return ended

    async def follow_change(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        note: str,
        *,
        seen: SeenTimer = LOOK,
        end: bool = False,
    ) -> None:
        """The bot itself just changed this integration (for a command): keep its timer right.
        Switched on (or `end`: a permanent disable), the timer ends; still off, it is re-based.

        The timer followed is the one pending when the change was written. `seen`: that one, looked
        up under the integration's lock, for book-keeping that runs once the lock is free (after
        the answer): meanwhile another command, through another replica, may have set a timer of
        its own, which this change must not end or re-base. By default (`LOOK`) the one pending
        now, for a caller that still holds the lock.

        A timer seen that moved on since was moved by a command that came after this change (every
        move of an active timer that leaves it pending holds the lock this change held; one made
        without it, another change's book-keeping, only ends it; `recover` moves only `scheduled`
        rows, never followed here): an ending is then not this change's to make (a
        `disable … for` that found the integration on took that row over with an end of its own; an
        `extend` kept it off longer). Only a re-base follows a timer that was merely extended since
        (its reference is still the one seen): this change's document is the newer one."""
        timer = await self.store.pending_for(integration_id) if isinstance(seen, Look) else seen
        while timer is not None and timer.state is TimerState.ACTIVE:  # a `scheduled` one: its command's
            if end or document.get("enabled") is True:
                await self.end_early(timer, note)
                return
            at = self.clock.now()
            if await self.store.transition(timer, TimerEvent.REBASED, at=at, document=document) is not None:
                return
            if isinstance(seen, Look):
                return
            now = await self.store.pending_for(integration_id)
            extended = (
                now is not None
                and now.id == timer.id
                and now.revision != timer.revision
                and now.disabled_updated_at == timer.disabled_updated_at
            )
            timer = now if extended else None

    async def disable_by_bot(
        self, document: Mapping[str, Any], *, until: datetime, reason: str, room_id: str | None, key: str
    ) -> TimedDisable | None:
        """A timed disable made by the bot itself (the flood guard), exactly as `disable X for …`
        makes one (commands/disable.py) but with the bot as actor: a `scheduled` row, the lossless
        write under the integration's lock with the bot's rights, the audit row (keyed by `key`, so
        it is recorded once), `active`. The scheduler then re-enables it when due, and `snoozed`,
        `extend`, `enable` and `undo` treat it as any other. None when nothing was written: it is
        already disabled, or a timed disable of it is pending. Raises `BotError` when refused, and
        `StateUnavailable` when the state database failed before the write.

        Once the write landed, the disable is made, and returned as made: the state database
        failing after it (its audit row, its timer's confirmation, the lock's release) raises
        nothing. Its timer is then the `scheduled` row, which the scheduler's `recover` confirms
        from the integration (off) at its next round the database answers, due when asked. Its
        audit row is lost when that was what failed: what it records (the document as it was
        before the write) is kept nowhere else, so `recover` would have to make it up."""
        rights = await self._rights.get(self.bot_user_id)
        written = False  # the disable landed: from then on it is made, whatever fails after it
        stored: AuditRecord | None = None
        confirmed: TimedDisable | None = None
        timed = False  # its confirmation was answered
        try:
            async with self._integrations.editing(document) as edit:
                current = edit.current
                if not current.enabled or await self.store.pending_for(current.id) is not None:
                    return None
                now = self.clock.now()
                timer = await self.store.schedule(
                    TimerDraft(
                        integration_id=current.id,
                        integration_name=current.name,
                        integration_type=current.type,
                        created_at=now,
                        due_at=until,
                        actor_id=self.bot_user_id,
                        actor_username=self.bot_username,
                        reason=reason,
                        room_id=room_id,
                    )
                )
                if timer is None:
                    return None
                try:
                    outcome = await edit.apply({"enabled": False}, rights=rights)
                except (PermissionDenied, UserInputError):
                    await self.abort(timer, "the disable was refused")  # nothing was written
                    raise
                if not outcome.changed:
                    await self.abort(timer, "it was already disabled")
                    return None
                written = True
                record = AuditRecord(
                    at=now,
                    actor_id=self.bot_user_id,
                    actor_username=self.bot_username,
                    integration_id=current.id,
                    integration_name=outcome.before.name,
                    integration_type=outcome.before.type,
                    action="disable",
                    room_id=room_id,
                    message_id=key,
                    reason=reason,
                    before=outcome.before.to_dict(),
                    after=outcome.after.to_dict(),
                    until=until,
                )
                stored = dataclasses.replace(record, id=await self._state.record(record))
                confirmed = await self.confirm(timer, outcome.after.document, stored.id)
                timed = True
        except StateUnavailable as exc:
            # After the write: its audit row or its timer's confirmation failed (the database went
            # away), or only the lock's release (its record of the write gave up behind a replica
            # stalled mid-batch): the write's trace, stored before it was sent, stays
            # (`SharedIntegrationLocks`). A disable made, timed and told as such: the room must
            # not be offered to disable what is off, nor miss that it is.
            if not written:
                raise
            log.warning(
                "timer.release_failed" if timed else "timer.disabled_unconfirmed",
                integration_id=current.id,
                audited=stored is not None,
                error=str(exc),
            )
            if not timed:
                confirmed = timer  # still `scheduled`: the scheduler's next round confirms it
                self.wake()
        assert timer is not None  # scheduled (None returned above)
        if self._audit_room is not None and stored is not None:
            self._audit_room.announce(stored)
        log.info("timer.disabled_by_bot", timer_id=timer.id, integration_id=current.id, reason=reason)
        return confirmed

    # --- for the scheduler ----------------------------------------------------------------------

    async def recover(self) -> int:
        """Settle rows a crash left `scheduled` (the bot died between scheduling and confirming):
        the integration is disabled → the disable landed, confirm with what is stored now (unless
        another command switched it on or off through the bot since: then it is theirs);
        otherwise it did not → abort. A row whose command is still unfinished is left to that
        command (it is running, or the runtime's recovery resumes it and adopts the row) unless
        it is older than ORPHAN_AGE. Returns how many rows were left for later.
        Raises `UpstreamError` when Rocket.Chat cannot be read."""
        left = 0
        for timer in await self.store.pending(TimerState.SCHEDULED):
            young = self.clock.now() - timer.created_at < ORPHAN_AGE
            if young and timer.message_id and await self._state.message_status(timer.message_id) == "claimed":
                left += 1
                continue
            await self._recover_one(timer)
        return left

    async def _recover_one(self, timer: TimedDisable) -> None:
        """Confirm or abort one abandoned `scheduled` row from the integration as it is, read under
        its lock: a change in progress (an `enable`, through any replica) is waited for, so the row
        is never confirmed from a read the change makes stale (a running timer on an integration
        that is on). Aborted when the integration is gone."""
        target = {"_id": timer.integration_id, "name": timer.integration_name, "type": timer.integration_type}
        confirmed: TimedDisable | None = None
        note = "the disable did not happen (the bot stopped while writing it)"
        try:
            async with self._integrations.editing(target) as edit:
                current = edit.current
                if not current.enabled and await self._switched_by_another(timer):
                    note = "switched off by another change meanwhile (the bot stopped while writing this disable)"
                elif not current.enabled:
                    at = self.clock.now()
                    confirmed = await self.store.transition(
                        timer, TimerEvent.CONFIRMED, at=at, document=current.document
                    )
                    if confirmed is not None:
                        log.info("timer.recovered", timer_id=timer.id, integration_id=timer.integration_id)
                        self.wake()
                    return
        except IntegrationNotFound:
            pass
        await self.abort(timer, note)
        log.info("timer.abandoned", timer_id=timer.id, integration_id=timer.integration_id)

    async def _switched_by_another(self, timer: TimedDisable) -> bool:
        """Whether another command switched the integration on or off through the bot since `timer`
        was set up (its audit rows): being off is then that command's doing (a plain `disable`, for
        good), not this row's disable, which may never have been written. A row without a command
        (the flood guard's) is judged on the integration alone, as before."""
        if timer.message_id is None:
            return False
        rows = await self._state.history(integration_ids=[timer.integration_id], limit=RECOVERY_ROWS)
        for row in rows:  # newest first
            if row.at < timer.created_at:
                return False
            if row.message_id == timer.message_id or row.before is None or row.after is None:
                continue
            if (row.before.get("enabled") is True) != (row.after.get("enabled") is True):
                return True
        return False

    async def expire(self, timer: TimedDisable) -> Expiry | None:
        """Turn a due integration back on, carefully (see the module docstring). None when the
        timer is no longer active (ended meanwhile, or ended by another replica). Raises
        `Unavailable`/`RateLimited`/`StateUnavailable` (nothing ended: tried again)."""
        fresh = await self.store.get(timer.id)
        if fresh is None or fresh.state is not TimerState.ACTIVE:
            return None
        snapshot = fresh.disabled_document or {}
        ending: Expiry | None = None
        try:
            rights = await self._rights.get(self.bot_user_id)
            # The comparison, the write, the audit row and the row's ending hold the integration's
            # lock (bot/integrations/locks.py; shared by every replica on PostgreSQL): a command
            # changing it at the same moment waits, and is then judged against what this wrote; a
            # second replica firing the same timer waits, then finds it ended. Only the notice is
            # posted after the lock is released.
            async with self._integrations.editing({**snapshot, "_id": fresh.integration_id}) as edit:
                # Read again under the lock: a change the bot made meanwhile re-based the row
                # (`follow_change`) or ended it, and must not pass for somebody else's change.
                again = await self.store.get(timer.id)
                if again is None or again.state is not TimerState.ACTIVE or again.due_at > timer.due_at:
                    return None  # ended, or extended meanwhile (the scheduler re-arms it)
                ending = await self._settle(again, edit, rights)
        except (Unavailable, RateLimited):
            raise
        except StateUnavailable as exc:
            # The state database away, or a row it needs held by a replica stalled mid-batch
            # (`StateBusy`): tried again by the scheduler, never an ending of the timer (it would
            # stay off for good, said to be refused). Unless the ending was decided and recorded
            # under the lock, and only the lock's release failed after it (its write's trace,
            # stored before the write, stays: `SharedIntegrationLocks`): then it is told, as decided.
            if ending is None:
                raise
            log.warning("timer.release_failed", timer_id=timer.id, error=str(exc))
        except IntegrationNotFound:  # reading it, before anything was decided
            ending = await self._skip(fresh, snapshot, None, "it was deleted meanwhile")
        except BotError as exc:
            ending = await self._fail(fresh, snapshot, exc)
        return None if ending is None else await self._post_notice(ending)

    async def _settle(
        self,
        timer: TimedDisable,
        edit: Edit,
        rights: CallerRights,
    ) -> Expiry | None:
        """Decide and end `timer` (as read under the integration's lock) on what `edit` read."""
        current = edit.current
        snapshot = timer.disabled_document or {}
        changed = changed_fields(snapshot, current.document)
        if not changed and not saved_again(snapshot, current.document):
            try:
                outcome = await edit.apply({"enabled": True}, rights=rights)
            except (Unavailable, RateLimited, StateUnavailable):
                raise  # the write may have landed: the next round tells by the document
            except IntegrationNotFound:
                return await self._skip(timer, snapshot, None, "it was deleted meanwhile")
            except BotError as exc:
                return await self._fail(timer, snapshot, exc)
            if outcome.changed:
                return await self._re_enabled(timer, outcome.before, outcome.after)
        if (
            current.enabled
            and set(changed) == {"enabled"}
            and saved_again(snapshot, current.document)
            and last_touch(current.document).user_id == self.bot_user_id
        ):
            # The bot's own re-enable was stored, then the bot (or the replica that fired it)
            # stopped before recording it: record it now, once.
            return await self._re_enabled(timer, Integration.of(snapshot), current)
        return await self._skip(timer, snapshot, current.document, None)

    # --- endings --------------------------------------------------------------------------------

    async def _re_enabled(self, timer: TimedDisable, before: Integration, after: Integration) -> Expiry | None:
        # Recorded before the transition: the write happened, whatever happens to the row next.
        # A second attempt (after a crash between the two) gets the same row (`_ending_key`).
        record = await self._record(timer, "re-enable", self._ended_reason(timer), before.document, after.document)
        ended = await self.store.transition(
            timer, TimerEvent.RE_ENABLED, at=self.clock.now(), note="turned back on", audit_id=record.id
        )
        if ended is None:
            return None
        span = human_duration(timer.due_at - timer.created_at)
        by = safe_text(timer.actor_username)
        notice = f"{ENABLED_MARK} {self._label(timer, after.document)} is back on: the {span} disable by {by} ended."
        return self._ended(ended, "re-enabled", notice)

    async def _skip(
        self, timer: TimedDisable, snapshot: Mapping[str, Any], current: Mapping[str, Any] | None, why: str | None
    ) -> Expiry | None:
        if current is None:
            details, note = "", why or "it changed"
        else:
            # Posted in a room others read: rooms are not named (one may be private).
            changed = shown_changes(snapshot, current, sees=_no_room)
            touch = last_touch(current)
            who = ""
            if touch.username or touch.at:
                parts = [safe_text(touch.username)] if touch.username else []
                if touch.at is not None:
                    parts.append(ago(touch.at, self.clock.now()))
                who = f" (by {', '.join(parts)})"
            if changed:
                note = "changed after the timed disable: " + ", ".join(sorted(changed))
                # Written as `set` and `undo` write a change (values exact, a token or a script
                # never shown), every `#room` hidden: a notice is read by everyone in its room.
                details = f"it was changed after I disabled it{who}, so I left it as it is:\n" + room_safe_change_lines(
                    snapshot, current, changed, _no_room
                )
            else:
                note = "saved again after the timed disable"
                details = f"it was saved again after I disabled it{who}, so I left it as it is."
        after = dict(current) if current else None
        ended = await self._end(
            timer,
            TimerEvent.CHANGED_BY_OTHERS,
            note=note,
            action="re-enable-skipped",
            before=dict(snapshot),
            after=after,
        )
        if ended is None:
            return None
        if current is None:
            notice = f"⚠️ {self._label(timer, snapshot)} was due back on, but {safe_text(why or 'it changed')}."
        else:
            notice = f"⚠️ {self._label(timer, snapshot)} was due back on, but {details}"
        log.info("timer.overridden", timer_id=timer.id, integration_id=timer.integration_id)
        return self._ended(ended, "overridden", notice)

    async def _fail(self, timer: TimedDisable, snapshot: Mapping[str, Any], error: BotError) -> Expiry | None:
        why = _why(error)
        ended = await self._end(
            timer, TimerEvent.GAVE_UP, note=why, action="re-enable-failed", before=dict(snapshot), after=None
        )
        if ended is None:
            return None
        notice = (
            f"{DISABLED_MARK} I could not turn {self._label(timer, snapshot)} back on: {safe_text(why)}. "
            "It is still disabled; "
            f"check it in Administration → Integrations (id {code(timer.integration_id)})."
        )
        log.error("timer.failed", timer_id=timer.id, integration_id=timer.integration_id, error=why)
        return self._ended(ended, "failed", notice)

    def _label(self, timer: TimedDisable, document: Mapping[str, Any]) -> str:
        """The integration in a notice: by name, as whoever asked for the disable saw it; a
        disable the bot made itself (the flood guard) was asked for by nobody, and its room may
        not know the name: there it is named as its messages are signed."""
        if timer.actor_id == self.bot_user_id:
            return webhook_label(document)
        return timer_label(timer)

    def _ended(self, ended: TimedDisable, kind: ExpiryKind, notice: str) -> Expiry:
        log.info("timer.ended", timer_id=ended.id, integration_id=ended.integration_id, outcome=kind)
        return Expiry(ended, kind, notice)

    async def _post_notice(self, expiry: Expiry) -> Expiry:
        """The notice in the room/thread the disable came from; posted by whoever won the row's
        ending (its id is derived from the timer and the ending, so a retry never posts twice).

        Members of a bulk disable that came back on are told together: one notice for the group,
        once none of its members is pending any more (see `_group_notice`). A member left off
        (changed by someone, or refused) is told on its own, as a single one is."""
        ended, kind, notice = expiry.timer, expiry.kind, expiry.notice
        if ended.group_id is not None:
            if kind != "re-enabled":
                await self._post_one(ended, kind, notice)
            await self._group_notice(ended.group_id, ended)
            return expiry
        await self._post_one(ended, kind, notice)
        return expiry

    async def _post_one(self, ended: TimedDisable, kind: ExpiryKind, notice: str) -> None:
        if ended.room_id is not None:
            try:
                await message_ids.post(
                    self._rest,
                    self._state.message_ids.timer_notice(ended.id, kind),
                    ended.room_id,
                    neutralize_mentions(notice),
                    thread_id=ended.thread_id,
                )
            except BotError as exc:
                log.error("timer.notice_failed", timer_id=ended.id, error=str(exc))

    async def _group_notice(self, group_id: int, last: TimedDisable) -> None:
        """When no member of the group is pending any more: one notice naming the members that came
        back on. Two replicas ending the last two members at once may both get here: the notice's
        id is derived from the group, so it is posted once."""
        members = await self.store.in_group(group_id)
        if any(member.pending for member in members) or last.room_id is None:
            return
        back = [member for member in members if member.state is TimerState.EXPIRED]
        if not back:
            return
        # The disable as the members told of lived it (`last` may be one ended otherwise, later).
        told = last if last.state is TimerState.EXPIRED else max(back, key=lambda member: member.due_at)
        span = human_duration(told.due_at - told.created_at)
        names = ", ".join(timer_label(member) for member in back[:GROUP_NOTICE_NAMES])
        more = f" and {len(back) - GROUP_NOTICE_NAMES} more" if len(back) > GROUP_NOTICE_NAMES else ""
        count = f"{len(back)} integration{'s are' if len(back) != 1 else ' is'}"
        by = safe_text(last.actor_username)
        notice = f"{ENABLED_MARK} {count} back on: the {span} bulk disable by {by} ended: {names}{more}."
        try:
            await message_ids.post(
                self._rest,
                self._state.message_ids.group_notice(group_id),
                last.room_id,
                neutralize_mentions(notice),
                thread_id=last.thread_id,
            )
        except BotError as exc:
            log.error("timer.group_notice_failed", group_id=group_id, error=str(exc))

    def _ended_reason(self, timer: TimedDisable) -> str:
        return f"timed disable by {timer.actor_username} ended"

    async def _end(
        self,
        timer: TimedDisable,
        event: TimerEvent,
        *,
        note: str,
        action: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> TimedDisable | None:
        """End `timer` with `event` and its audit row (`action`, `note` its reason) together: one
        transaction (`StateStore.end_timer`), so never one without the other. None when the row
        moved on meanwhile (ended otherwise, by another replica or a command): no audit row then.
        The state database failing (`StateUnavailable`) leaves the timer active: the scheduler
        tries it again, and that try records and tells the ending once."""
        done = await self._state.end_timer(
            timer, event, at=self.clock.now(), note=note, record=self._audit_record(timer, action, note, before, after)
        )
        if done is None:
            return None
        ended, stored = done
        if self._audit_room is not None:
            self._audit_room.announce(stored)
        return ended

    async def _record(
        self,
        timer: TimedDisable,
        action: str,
        reason: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> AuditRecord:
        record = self._audit_record(timer, action, reason, before, after)
        stored = dataclasses.replace(record, id=await self._state.record(record))
        if self._audit_room is not None:
            self._audit_room.announce(stored)
        return stored

    def _audit_record(
        self,
        timer: TimedDisable,
        action: str,
        reason: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> AuditRecord:
        """The audit row of an ending of `timer` (actor: the bot), keyed by the timer (`_ending_key`)."""
        return AuditRecord(
            at=self.clock.now(),
            actor_id=self.bot_user_id,
            actor_username=self.bot_username,
            integration_id=timer.integration_id,
            integration_name=timer.integration_name,
            integration_type=timer.integration_type,
            action=action,
            room_id=timer.room_id,
            message_id=_ending_key(timer),
            reason=reason,
            before=before,
            after=after,
            group_id=timer.group_id,
        )


def _ending_key(timer: TimedDisable) -> str:
    """What an ending's audit row is keyed by in place of a command's message id (the audit
    table's `audit_once` index): recording the same ending of the same timer again (a replica
    finishing a re-enable another one wrote before it died) returns the first row, never a second."""
    return f"timer-{timer.id}"


def _why(error: BotError) -> str:
    if isinstance(error, ServerRejected) and error.error == NOT_AUTHORIZED:
        return "my account may not read or change it any more (Rocket.Chat said not-authorized)"
    if isinstance(error, ServerRejected):
        return f"Rocket.Chat refused: {error.error}"
    if isinstance(error, NotUpdatable):
        return f"it cannot be written back without losing data ({error.reason})"
    if isinstance(error, PermissionDenied):
        return f"my account lacks {' or '.join(error.missing) or 'the rights'}"
    if isinstance(error, VerificationFailed):
        return "Rocket.Chat stored something different from what I sent (" + ", ".join(sorted(error.differences)) + ")"
    return str(error)
