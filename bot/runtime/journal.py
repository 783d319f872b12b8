"""Write intents: a command's integration change is applied once, even when the bot dies mid-write.

The problem
-----------
A command runs claim → resolve → read → PUT → verify → audit → reply → finish (a plain enable or
disable answers first and records right after, commands/followups.py). A `kill -9` (or a
shutdown past its grace period) between the PUT and the audit row leaves a claim that is still
'claimed', an integration that may or may not have been changed, and perhaps a caller without
an answer.
Re-running the command blindly is wrong both ways: if the write landed, the re-run finds the
integration "already disabled" (no audit row, a misleading answer); if a later change by someone
else landed after ours, a re-run would overwrite it.

The decision
------------
Just before each PUT, `JournaledIntegrationService` records a `WriteIntent` in the state
database: the command's message id, the document it read and the document it intends. When a
restart resumes an unfinished command (`CommandRun.recovering`), each write of it first judges
its intent against the integration as it is now, read under the integration's lock (`judge`):

- LANDED: the stored document already is the intended one. The write is not sent again; the
  command gets the outcome it would have had (`changed=True`, before = the document read), so it
  writes its audit row and answers exactly as if it had not been interrupted.
- NOT_LANDED: the document is untouched since our read (same `_updatedAt`). Nothing happened;
  the command continues normally and writes once.
- SUPERSEDED: someone else changed the integration since our read. Nothing is re-sent (it could
  overwrite their change); the command fails with `VerificationFailed`, whose answer asks the
  caller to look at the integration.

Each intent also keeps the command's text as the bot accepted it (`CommandRun.text`). A message
edited after its command ran is never run from its new text (bot/runtime/intake.py); when a write
of it had landed, the restart resumes it from the stored text instead (`CommandRun.edited`,
bot/runtime/recovery.py), so that the change made is answered and audited. Such a run only
reports: a write judged NOT_LANDED, or one it had not reached, is not sent (`EditedSince`; a bulk
command lists those members as not changed). Each intent keeps its command's author too
(`CommandRun.author`, a user id): any user may post a message with an unused id (a deleted one's,
say), and a message at the command's id whose author is not that one is not the command; the
restart closes it without resuming anything (bot/runtime/recovery.py).

Commands that change only a timed disable's end (`extend`, `extend all`, a re-timing `disable X
for …`) write no document, so they have no intent: the timer row records the message id of each
command that moved its end, and the end it set, in the same UPDATE (bot/state/timer_store.py). A
resumed one finds its extension there and answers as done (`landed` counts it too).

Intents are keyed by message id and integration id, written only inside a command (a
`CommandRun` in the task's context), and deleted when the command's claim is finished. One
stored while the integration's lock was being taken (`IntegrationService.editing`, `planned`)
is dropped again when no write is made with it (nothing to change, refused, stopped while
waiting): otherwise a resumed command would judge it as a write that may have been sent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot import logs
from bot.errors import ClaimTakenOver, EditedSince, IntegrationNotFound, VerificationFailed
from bot.integrations.service import IntegrationService, differences, intended_document
from bot.rocketchat.ejson import decode_date
from bot.rocketchat.models import Integration, UpdateOutcome
from bot.rocketchat.rest import RestClient
from bot.state.store import StateStore, WriteIntent

log = logs.get_logger("integrations_bot.journal")


@dataclass(frozen=True)
class CommandRun:
    """The command the current task is running (set by the runtime in each command's task).
    `text`: what it says, as accepted, and `author`: its author's user id (both stored with each
    write intent). `edited`: resumed after a restart from that stored text, its message edited
    since: it only reports the writes that landed and sends no new one (`EditedSince`). `sent`: the
    integrations it has sent a write for (its intent recorded first), so the runtime knows that a
    later failure may have come after a change had landed."""

    message_id: str
    recovering: bool = False
    sent: list[str] = field(default_factory=list)
    text: str | None = None
    author: str | None = None
    edited: bool = False


current_command: ContextVar[CommandRun | None] = ContextVar("integrations_bot_command", default=None)


class Judgement(enum.Enum):
    LANDED = "landed"
    NOT_LANDED = "not-landed"
    SUPERSEDED = "superseded"


def judge(intent: WriteIntent, now: Mapping[str, Any], recorded: str | None = None) -> Judgement:
    """What became of an intended write: landed if it was verified before the interruption,
    otherwise judged from the integration as it is stored now. `recorded`: the `_updatedAt` of the
    last verified write recorded under the integration's lock (`StateStore.recorded_write`). A
    document that is that write's is not this intent's, which was never verified (a verified mark
    and its record are stored together): someone else made the same change (the person again,
    say, after this one failed before its write was sent), and nothing of this one is to report."""
    if intent.verified is not None:
        return Judgement.LANDED
    if not differences(intent.before, intent.intended, now):
        stamp = now.get("_updatedAt")
        if recorded is not None and isinstance(stamp, str) and _same_time(stamp, recorded):
            return Judgement.NOT_LANDED
        return Judgement.LANDED
    if now.get("_updatedAt") == intent.before.get("_updatedAt"):
        return Judgement.NOT_LANDED
    return Judgement.SUPERSEDED


def _same_time(one: str, other: str) -> bool:
    first, second = decode_date(one), decode_date(other)
    return first is not None and first == second


class JournaledIntegrationService(IntegrationService):
    """`IntegrationService` that records each write's intent and, when resuming an interrupted
    command, never sends a write that already landed (see the module docstring)."""

    def __init__(self, rest: RestClient, state: StateStore, clock: Callable[[], datetime]) -> None:
        super().__init__(rest, locks=state.locks)
        self._state = state
        self._clock = clock

    async def landed(self, message_id: str) -> bool:
        """Whether some write of this (interrupted) command reached the server, or it moved the end
        of a timed disable that is still running (`extend` writes no document: the timer row names
        the commands that extended it, bot/state/timer_store.py); resumed, it answers as done."""
        for intent in await self._state.intents(message_id):
            if intent.verified is not None:
                return True
            now = await self._get_or_none(intent.integration_id)
            if now is not None and await self._judge(intent, now) is Judgement.LANDED:
                return True
        return await self._state.timers.has_extension_by(message_id)

    async def said(self, message_id: str) -> str | None:
        """What this (interrupted) command said when it ran, as stored with its write intents; None
        when it has none, or they come from a release that did not store it."""
        return next((i.text for i in await self._state.intents(message_id) if i.text is not None), None)

    async def author(self, message_id: str) -> str | None:
        """The user id of the (interrupted) command's author, as stored with its write intents;
        None when it has none, or they come from a release that did not store it."""
        return next((i.author for i in await self._state.intents(message_id) if i.author is not None), None)

    async def unrecorded(self, message_id: str) -> bool:
        """Whether a write of this (answered, interrupted) command landed without its audit row:
        the book-keeping that runs after the answer did not happen (commands/followups.py)."""
        return not await self._state.recorded(message_id) and await self.landed(message_id)

    async def _judge(self, intent: WriteIntent, now: Mapping[str, Any]) -> Judgement:
        recorded = None if intent.verified is not None else await self._state.recorded_write(intent.integration_id)
        return judge(intent, now, recorded)

    def resuming(self) -> bool:
        run = current_command.get()
        return run is not None and run.recovering

    def _writer(self) -> str | None:
        """A command's own intents do not make its reads untrusted (every other command's do:
        `IntegrationLocks.hold`); a resumed command's earlier run counts as another's, whose
        write may have landed."""
        run = current_command.get()
        return run.message_id if run is not None and not run.recovering else None

    def _owner(self) -> str | None:
        return self._state.owner

    def _journals(self, *, early: bool = False) -> bool:
        run = current_command.get()
        return run is not None and not (early and run.recovering)

    async def resumed(self) -> UpdateOutcome | None:
        """When resuming an interrupted command: the outcome of a write of it that landed, judged
        under the integration's lock (for commands such as `set` or `undo` that decide from the
        document, which already holds the change, before writing). None otherwise."""
        run = current_command.get()
        if run is None or not run.recovering:
            return None
        for intent in await self._state.intents(run.message_id):
            try:
                async with self.editing({**intent.before, "_id": intent.integration_id}) as edit:
                    if await self._judge(intent, edit.current.document) is Judgement.LANDED:
                        log.info("journal.replay", message_id=run.message_id, integration_id=intent.integration_id,
                                 judgement=Judgement.LANDED.value)  # fmt: skip
                        after = Integration.of(intent.verified) if intent.verified is not None else edit.current
                        return UpdateOutcome(before=Integration.of(intent.before), after=after, changed=True)
            except IntegrationNotFound:
                continue
        return None

    async def _replayed(self, current: Integration, changes: Mapping[str, Any]) -> UpdateOutcome | None:
        """When resuming an interrupted command: what became of its write of this integration,
        judged on `current` (read under the integration's lock, so nothing of the bot's can land
        in between). None when there is nothing to replay and the command writes as usual."""
        run = current_command.get()
        if run is None or not run.recovering:
            return None
        intent = next((i for i in await self._state.intents(run.message_id) if i.integration_id == current.id), None)
        if intent is None or intended_document(intent.before, changes) != intent.intended:
            if run.edited:
                raise EditedSince(current.id)  # never sent before: its caller has changed their message
            return None
        verdict = await self._judge(intent, current.document)
        log.info("journal.replay", message_id=run.message_id, integration_id=current.id, judgement=verdict.value)
        if verdict is Judgement.LANDED:
            after = Integration.of(intent.verified) if intent.verified is not None else current
            return UpdateOutcome(before=Integration.of(intent.before), after=after, changed=True)
        if verdict is Judgement.SUPERSEDED:
            raise VerificationFailed(current.id, differences(intent.before, intent.intended, current.document))
        if run.edited:
            raise EditedSince(current.id)  # not landed: not made now, the message says something else
        return None

    async def _verified(self, current: Integration, stored: Mapping[str, Any]) -> None:
        """Mark the intent verified before anything is answered: a command interrupted after this
        is known to have written, even once the integration has been changed again (the audit row
        it then lacks is written by its recovery, with this document as `after`)."""
        run = current_command.get()
        if run is not None:
            held = self._locks.held(current.id)
            await self._state.verified_intent(run.message_id, current.id, dict(stored), held=held)

    async def _before_write(self, current: Integration, intended: Mapping[str, Any]) -> None:
        """Journal the write, or stop the command when its claim is no longer this process's (a
        replica paused past its lease: the one that took the command over runs it)."""
        run = current_command.get()
        if run is not None:
            intent = WriteIntent(
                run.message_id,
                current.id,
                self._clock(),
                current.to_dict(),
                dict(intended),
                text=run.text,
                author=run.author,
            )
            if not await self._state.record_intent(intent):
                raise ClaimTakenOver(run.message_id)

    async def _unsent(self, integration_id: str) -> None:
        run = current_command.get()
        if run is not None:
            held = self._locks.held(integration_id)
            await self._state.drop_intent(run.message_id, integration_id, held=held)

    async def _write(
        self, current: Integration, intended: Mapping[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        run = current_command.get()
        if run is not None:
            run.sent.append(current.id)  # its intent is recorded (`_before_write`)
        return await super()._write(current, intended, body)


__all__ = ["CommandRun", "JournaledIntegrationService", "Judgement", "current_command", "judge"]
