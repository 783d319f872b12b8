"""Book-keeping that runs once a command's answer is on its way, and the wait for it.

The answer is what the person waits for. The book-keeping of a plain `enable`/`disable` (the
audit row with both documents, the timer follow-up, the audit-room line: ~0.5 ms of a ~12 ms
command, bench/) is therefore deferred (`CommandContext.defer`) and runs right after the first
attempt to post the answer, whether it was stored or not, never behind an outage of
`chat.sendMessage` (`ReplySender.deliver(then=...)`). Two rules keep that as safe as recording
first:

- A crash in between: the command's claim is finished only after its follow-ups ran (with the
  last one's audit row, in the same round trip, when the answer was stored at once and nothing
  follows that row: `closing`). A restart
  that finds the answer stored while a write of the command landed resumes the command
  (`bot.runtime.recovery`): the journal replays the write without sending it, the answer is the same
  message id (stored once), and `StateStore.record` keeps one audit row per command and
  integration.
- Causality: a command that reads what follow-ups write waits for the ones pending when it
  asks: per integration once it is resolved (`commands.targets`), all of them for `undo`,
  `history` and `snoozed`, in every replica (`CommandContext.answers_recorded`: the others'
  through the shared store). Someone who saw an answer and acts on it sees its audit row.

A follow-up runs with the log context of the command that deferred it (its correlation id
among it), as if it had not been deferred. Its failure is logged and never changes the answer
(it was already given).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot import logs
from bot.errors import StateUnavailable

log = logs.get_logger("integrations_bot.commands")


@dataclass(eq=False)
class FollowUp:
    """One piece of deferred book-keeping about one integration."""

    integration_id: str
    work: Callable[[], Awaitable[object]]
    log_context: dict[str, Any] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False

    async def run(self) -> None:
        """Run once; a failure is logged, not raised (the answer is already given), and noted in
        `failed`: the runtime then leaves the command's claim unfinished, for the recovery to
        settle once the cause is gone (a state database outage: the audit row is written then)."""
        if self.done.is_set():
            return
        with structlog.contextvars.bound_contextvars(**self.log_context):
            try:
                await self.work()
            except StateUnavailable as exc:
                self.failed = True
                log.warning("command.followup_postponed", integration_id=self.integration_id, error=str(exc))
            except Exception:
                self.failed = True
                log.exception("command.followup_failed", integration_id=self.integration_id)
            finally:
                self.done.set()

    async def again(self) -> bool:
        """Run a follow-up that failed once more (its work is idempotent: the audit row is unique
        per command, the audit room's line has an id of its own); True once it has succeeded."""
        if not self.failed:
            return True
        self.failed = False
        self.done.clear()
        await self.run()
        return not self.failed


@dataclass(eq=False)
class Closing:
    """The claim of a command whose answer is stored, to be closed with `outcome` once its
    book-keeping is done; `done` once the last follow-up closed it with its own statement (the
    audit row and the close in one round trip, `commands.changes.record`)."""

    message_id: str
    outcome: str
    done: bool = False


_closing: ContextVar[Closing | None] = ContextVar("integrations_bot_closing", default=None)


def closing(message_id: str) -> Closing | None:
    """The claim of command `message_id` that the follow-up running now may close with its last
    statement, if it is its command's last one and the answer is stored (`Followups.run`)."""
    found = _closing.get()
    return found if found is not None and found.message_id == message_id and not found.done else None


class Followups:
    """The follow-ups registered and not yet run, by integration id."""

    def __init__(self) -> None:
        self._pending: dict[str, list[FollowUp]] = {}

    def register(self, integration_id: str, work: Callable[[], Awaitable[object]]) -> FollowUp:
        followup = FollowUp(integration_id, work, dict(logs.context()))
        self._pending.setdefault(integration_id, []).append(followup)
        return followup

    async def run(self, followups: tuple[FollowUp, ...], *, then_close: Closing | None = None) -> None:
        """Run `followups` in order and forget them. `then_close`: the claim the last one may close
        with its own last statement (`closing`), when nothing of it comes after that statement and
        every one before it succeeded."""
        for n, followup in enumerate(followups):
            last = n == len(followups) - 1 and not any(earlier.failed for earlier in followups[:n])
            token = _closing.set(then_close if last else None)
            try:
                await followup.run()
            finally:
                _closing.reset(token)
                self._forget(followup)

    def abandon(self, followups: tuple[FollowUp, ...]) -> None:
        """Forget `followups` without running them: their command was stopped and another process
        settles it (one that took it over, or the recovery: `StateStore.record` keeps one audit row
        per command and integration). Whoever waits for them (`settled`) goes on."""
        for followup in followups:
            followup.done.set()
            self._forget(followup)

    async def settled(self, integration_id: str | None = None) -> None:
        """Wait for the follow-ups pending now: of one integration, or all of them. Those
        registered later are not waited for, so a busy bot never starves the caller."""
        if integration_id is None:
            waiting = [f for pending in self._pending.values() for f in pending]
        else:
            waiting = list(self._pending.get(integration_id, ()))
        for followup in waiting:
            await followup.done.wait()

    def pending(self) -> int:
        return sum(len(pending) for pending in self._pending.values())

    def _forget(self, followup: FollowUp) -> None:
        pending = self._pending.get(followup.integration_id)
        if pending is None:
            return
        if followup in pending:
            pending.remove(followup)
        if not pending:
            del self._pending[followup.integration_id]


__all__ = ["Closing", "FollowUp", "Followups", "closing"]
