"""What a restart does with commands a crash left unfinished (claims still 'claimed').

A claim is 'claimed' from the moment a command is taken until its answer is stored. Finding one
at start means the previous process died (kill -9, OOM, power) or was stopped past its grace
period while running that command or retrying its answer. The command may have changed an
integration or not, and its caller may have an answer or not. The decision, per command:

1. the message is gone (deleted), its room is no longer one of the bot's, or it is not a command
   by the current rules (chat in a group DM an older release took for one): close the claim, say
   nothing; but a deleted command whose change landed is resumed *as it ran* (below). A message
   by another user than the command's author, as its claim (or its write intents) names them, is
   closed too:
   any user may post with an unused id (contract §8 gotcha 26), a deleted command's among them,
   and resumed as theirs the command's change would be answered and audited as their own
   (`history` and `undo` would name them). Nothing is resumed, nobody is answered
   (`recovery.message_replaced`). Intents of an older release name no author: nothing to compare;
2. the answer exists: `chat.getMessage` of an id of its chain (`MessageIds.answer`) is the bot's
   own message in the command's room and thread (`message_ids.is_own`; a message anyone else
   posted with that id does not count, nor does one elsewhere). It completed, except perhaps
   for the book-keeping that runs right after the answer (commands/followups.py). If a write of
   it landed and it has no audit row, *resume* it to finish that: the journal does not write
   again, and the answer is the same message id (stored once). Otherwise close the claim;
3. otherwise, if it is still fresh (younger than BOT_STALE_COMMAND_AGE), or if a write of it is
   known to have landed: *resume* it. It runs again through the normal path, but with the write
   journal in charge (`bot.runtime.journal`): a write that landed is not sent again (the command answers
   as if it had not been interrupted, audit row included); a write that did not land is made
   once; a write overtaken by someone else's change is not repeated;
4. otherwise (stale, nothing written, or the message was edited since): do not run it; tell the
   caller it was interrupted and not run again.

A message edited since is never run from its new text (bot/runtime/intake.py). But when a
change of it landed (a write, or an `extend`'s new end), "not run again" would be untrue and the
change would have no audit row (`history` and `undo` would not know it): a claim keeps what its
command said and who said it until it is closed (`ClaimedCommand`, bot/state/store.py; a claim
of an older release has none of it, and its write intents' text stands in). Such a command, in 2
or 3, is rebuilt with that text (not edited), accepted by the intake as any command is, and
resumed *as it ran* (`Resume.since`): the changes that landed are answered as done and audited,
no new change is made (a bulk command's members not changed yet are listed as not changed), and
the answer says that it answers what the message said when it ran. Without a stored text, or
when nothing landed, it stays "edited since, not run again". A command whose message was deleted
(gone, or kept as `t: "rm"`) after a change of it landed is rebuilt from its claim alike (text,
author, room, thread, time) and resumed as it ran (`Resume.since`), answered in its room;
one that changed nothing is closed silently, as before.

Only claims taken over are considered (`orphans`), never claims this process made itself: at start
(a SQLite file: every claim its previous process left; a shared PostgreSQL: claims whose lease ran
out), and, on a shared database, every few seconds while running: the claims of a replica that
died (kill -9, node loss) once their lease runs out (`StateStore.take_over`). The decisions are
pure data (`Resume`, `Interrupted`, `Close`); the runtime carries them out. A REST failure (or a
state one: deciding reads the journal) stops the sweep; the rest is retried with the next
catch-up pass (or the next take-over tick).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot import logs
from bot.errors import ServerRejected
from bot.rocketchat.message_ids import MessageIds, own_at
from bot.rocketchat.messages import ChatMessage
from bot.rocketchat.rest import RestClient
from bot.runtime.catchup import Room
from bot.runtime.intake import Accepted, Intake
from bot.runtime.journal import JournaledIntegrationService
from bot.runtime.staleness import Freshness, freshness
from bot.state.store import ClaimedCommand, StateStore

# What an unfinished command's claim kept (`StateStore.claimed_command`): what it said, its room, its time.
Claimed = tuple[ClaimedCommand, str, datetime]

log = logs.get_logger("integrations_bot.recovery")


@dataclass(frozen=True)
class Resume:
    accepted: Accepted
    # Rebuilt from what it said when it ran, its message "edited" or "deleted" since (rebuilt from
    # its claim): it reports, never changes anything new, and its answer says so.
    since: Literal["edited", "deleted"] | None = None

    @property
    def edited(self) -> bool:
        """Resumed from what it said when it ran (its message edited or deleted since)."""
        return self.since is not None

    @property
    def deleted(self) -> bool:
        return self.since == "deleted"


@dataclass(frozen=True)
class Interrupted:
    message: ChatMessage
    reason: str


@dataclass(frozen=True)
class Close:
    message_id: str
    outcome: str
    ignored: bool = False


Decision = Resume | Interrupted | Close


class Recovery:
    def __init__(
        self,
        orphans: list[str],
        *,
        rest: RestClient,
        ids: MessageIds,
        intake: Intake,
        journal: JournaledIntegrationService,
        claims: StateStore,
        clock: Callable[[], datetime],
        stale_age: timedelta,
    ) -> None:
        self.remaining = list(orphans)
        self._sweeping = asyncio.Lock()
        self._rest = rest
        self._ids = ids
        self._intake = intake
        self._journal = journal
        self._claims = claims
        self._clock = clock
        self._stale_age = stale_age

    def add(self, orphans: list[str]) -> None:
        """Claims taken over from a replica that died (bot/state/store.py `take_over`)."""
        self.remaining.extend(m for m in orphans if m not in self.remaining)

    async def sweep(self, rooms: Mapping[str, Room], act: Callable[[Decision], Awaitable[None]]) -> None:
        """Decide and act on each remaining orphan, oldest first, one sweep at a time. A REST
        failure propagates and leaves the undecided ones in `remaining` for the next call."""
        async with self._sweeping:
            while self.remaining:
                message_id = self.remaining[0]
                decision = await self.decide(message_id, rooms)
                log.info("recovery.decided", message_id=message_id, decision=type(decision).__name__.lower())
                await act(decision)
                self.remaining.pop(0)

    async def decide(self, message_id: str, rooms: Mapping[str, Room]) -> Decision:
        document = await self._get_message(message_id)
        claimed = await self._claims.claimed_command(message_id)
        if document is not None and await self._replaced(message_id, document, claimed):
            return Close(message_id, "recovered: message replaced", ignored=True)
        if document is None or document.get("t") == "rm":  # deleted (`rm`: kept as "message removed")
            return await self._deleted(message_id, claimed, rooms)
        room = rooms.get(str(document.get("rid")))
        if await self._answered_already(message_id, document):
            return await self._answered(message_id, document, room, claimed)
        if room is None:
            return Close(message_id, "recovered: not in that room any more", ignored=True)
        message = ChatMessage.from_document(document, room.meta())
        if message is None:
            return Close(message_id, "recovered: unreadable message", ignored=True)
        await self._intake.prepare([message])  # a DM's members, as the intake needs them
        accepted = self._intake.accept(message)
        if accepted is None and message.edited_at is None:
            return Close(message_id, "recovered: not a command", ignored=True)  # e.g. chat in a group DM
        if accepted is None:
            as_it_ran = await self._as_it_ran(message, claimed)
            if as_it_ran is None:
                return Interrupted(message, "it was edited since")
            return Resume(as_it_ran, since="edited")  # a write of it landed: answered and audited, never written again
        if freshness(message.ts, self._clock(), self._stale_age) is Freshness.FRESH:
            return Resume(accepted)
        if await self._journal.landed(message_id):
            return Resume(accepted)  # the journal answers it as done, without writing again
        return Interrupted(message, "it is now too old to run safely")

    async def _answered(
        self, message_id: str, document: dict[str, object], room: Room | None, claimed: Claimed | None
    ) -> Decision:
        """Answered before the restart; resumed only to finish the book-keeping of a write that landed."""
        closed = Close(message_id, "recovered: answered before the restart")
        if room is None or not await self._journal.unrecorded(message_id):
            return closed
        message = ChatMessage.from_document(document, room.meta())
        if message is not None and message.edited_at is not None:
            as_it_ran = await self._as_it_ran(message, claimed)
            return Resume(as_it_ran, since="edited") if as_it_ran is not None else closed
        if message is not None:
            await self._intake.prepare([message])
        accepted = self._intake.accept(message) if message is not None else None
        return Resume(accepted) if accepted is not None else closed

    async def _deleted(self, message_id: str, claimed: Claimed | None, rooms: Mapping[str, Room]) -> Decision:
        """A command whose message was deleted since. If something of it landed (a write, an
        extension), it is resumed *as it ran* from what its claim kept (its text, author, room,
        thread and time): the change is audited (`history`, `undo`), and the author told in its
        room. Otherwise (or a claim of an older release, which kept none of it) closed, unanswered."""
        gone = Close(message_id, "recovered: message gone", ignored=True)
        if claimed is None:
            return gone
        command, room_id, ts = claimed
        room = rooms.get(room_id)
        if room is None or not await self._journal.landed(message_id):
            return gone
        document: dict[str, object] = {
            "_id": message_id,
            "rid": room_id,
            "msg": command.text,
            "ts": ts.isoformat(),
            "u": {"_id": command.author_id, "username": command.author_username},
            **({"tmid": command.thread_id} if command.thread_id is not None else {}),
        }
        message = ChatMessage.from_document(document, room.meta())
        if message is None:
            return gone
        await self._intake.prepare([message])
        accepted = self._intake.accept(message)
        if accepted is None or accepted.invocation is None:
            return gone
        if await self._answered_already(message_id, document) and not await self._journal.unrecorded(message_id):
            return Close(message_id, "recovered: answered before the restart")
        return Resume(accepted, since="deleted")

    async def _as_it_ran(self, message: ChatMessage, claimed: Claimed | None) -> Accepted | None:
        """An edited message's command as it was when it ran, when something of it landed (a write,
        an extension) and its text was kept (on its claim, or with its write intents): the message
        rebuilt with that text, accepted by the intake (whose every rule applies again). Its
        mentions are not known any more: the text alone decides."""
        said = claimed[0].text if claimed is not None else await self._journal.said(message.id)
        if said is None or not await self._journal.landed(message.id):
            return None
        as_it_ran = message.model_copy(update={"text": said, "edited_at": None, "mentions": ()})
        await self._intake.prepare([as_it_ran])
        accepted = self._intake.accept(as_it_ran)
        return accepted if accepted is not None and accepted.invocation is not None else None

    async def _replaced(self, message_id: str, document: dict[str, object], claimed: Claimed | None) -> bool:
        """Whether the message at the command's id is another user's than the command's author, as
        its claim (or, made by an older release, its write intents) names them: posted with that id
        once the command's message was deleted. Every path that resumes a command (edited or not,
        answered or not) comes after this."""
        author = claimed[0].author_id if claimed is not None else await self._journal.author(message_id)
        if author is None:
            return False  # an older release's claim, and no intent (or one of an older release)
        user = document.get("u")
        posted_by = user.get("_id") if isinstance(user, dict) else None
        if posted_by == author:
            return False
        log.warning(
            "recovery.message_replaced",
            message_id=message_id,
            author_id=author,
            posted_by=posted_by,
            hint="another user's message now has the id of an unfinished command: not resumed, not answered",
        )
        return True

    async def _answered_already(self, message_id: str, document: dict[str, object]) -> bool:
        """Whether the bot's own answer is at an id of the command's chain, in its room and thread.
        Every id of the chain is looked at, not only those up to the first free one: a message
        that held an earlier id when the answer was posted may have been deleted since."""
        room_id, tmid = document.get("rid"), document.get("tmid")
        if not isinstance(room_id, str):
            return False
        thread_id = tmid if isinstance(tmid, str) and tmid else None
        return await own_at(self._rest, self._ids.answer(message_id), room_id=room_id, thread_id=thread_id)

    async def _get_message(self, message_id: str) -> dict[str, object] | None:
        try:
            return await self._rest.chat_get_message(message_id)
        except ServerRejected:
            return None  # not found (400 without errorType) or no longer readable by the bot


__all__ = ["Close", "Decision", "Interrupted", "Recovery", "Resume"]
