"""Reads begun for a command while its claim is in flight: the claim's round trip off its path.

Every command that changes integrations reads its caller's rights fresh (`users.info`) and,
for a caller whose cached rights let them look integrations up, the integration it names
(`IntegrationService.prefetch`), both when its turn starts. Reads change nothing, so they may
begin as soon as the command is admitted, before its claim in the state database is committed
(`Bot._admit_all`); the command takes them over when its turn starts (`Bot._command`). That saves
the claim's round trip (~0.5 ms on PostgreSQL) on every such command of a replica that runs it.

The rules, which keep the rights a change is decided on exactly as strict as without this:
- Rights read at admission are read after the command arrived, like those read at its turn. They
  serve the command only if its turn starts within `RIGHTS_MAX_AGE` of that read's start, and only
  if Rocket.Chat announced no change of the caller's roles or of the permissions meanwhile
  (`RightsCache.stamp`); otherwise they are dropped and the command reads them at its turn, as
  without this. (A command that waited in its caller's lane must not act on rights read long
  before it ran.) A read that failed fails the command as a failed read at its turn would.
- The prefetched lookup is always safe to use (its `ReadMark` is taken before it begins; a write
  since makes `editing` read again under the lock), but it is dropped under the same bound.
- Only while this replica has been winning claims: one that lost a claim (another replica claimed
  the command first) in the last `PAUSE_AFTER_LOSS` seconds reads nothing ahead. Replicas racing
  for every command then read only for the commands they run, as without this: each reading for
  every command would multiply the `users.info` and `integrations.list` calls Rocket.Chat serves
  by the number of replicas.
- Only for a command seen on the stream for the first time (by this process: the last
  `SIGHTINGS_KEPT` ids are remembered), and only such a command's lost claim counts: a
  re-delivery (an edit, a reaction, a thread reply, a URL preview: the same id) was most likely
  claimed by this replica already. (`_updatedAt` cannot tell: Rocket.Chat sets it a few
  milliseconds after `ts` even on the first delivery.)
- Reads begun for a command that is then not run (its claim lost or failed, too old, answered
  "busy", the bot stopping) are cancelled and forgotten; so are those still unused
  `RIGHTS_MAX_AGE` after they began.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bot.integrations.authz import SHARED_READ_AGE, CallerRights
from bot.integrations.service import Prefetch

PAUSE_AFTER_LOSS: Final = 60.0  # seconds after a lost claim during which nothing is read ahead
SIGHTINGS_KEPT: Final = 4096  # ids of the last commands seen on the stream (re-deliveries told apart)
# Seconds: rights read ahead serve a turn that starts within this of their read (the bound of any
# fresh read shared by a command, `RightsCache.get`).
RIGHTS_MAX_AGE: Final = SHARED_READ_AGE


@dataclass(eq=False)
class EarlyReads:
    """The reads begun for one command at its admission."""

    started: float  # loop time, before either read began
    stamp: tuple[int, int]  # `RightsCache.stamp` of the caller then
    rights: asyncio.Future[CallerRights]  # `RightsCache.begin_fresh`: cancelled, no one else's wait is
    lookup: Prefetch | None  # the integration it names, or None (rights not known as allowing it)
    _expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop both reads (a no-op for a read that ended or a task that already awaits it)."""
        self.rights.cancel()
        if self.lookup is not None:
            self.lookup.read.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


class ReadAhead:
    """Whether this replica reads ahead now, and the reads held for commands waiting for their turn."""

    def __init__(self) -> None:
        self._lost_at: float | None = None  # loop time of the last claim lost to another replica
        self._held: dict[str, EarlyReads] = {}
        self._sighted: OrderedDict[str, None] = OrderedDict()  # the last SIGHTINGS_KEPT ids, oldest first

    def first_sight(self, message_id: str) -> bool:
        """Whether this process has not seen the command on the stream before (`sighted`)."""
        return message_id not in self._sighted

    def sighted(self, message_ids: Iterable[str]) -> None:
        """Commands seen on the stream: their re-deliveries are not first sights."""
        for message_id in message_ids:
            self._sighted[message_id] = None
            self._sighted.move_to_end(message_id)
        while len(self._sighted) > SIGHTINGS_KEPT:
            self._sighted.popitem(last=False)

    @property
    def held(self) -> int:
        return len(self._held)

    def active(self) -> bool:
        """No claim lost in the last PAUSE_AFTER_LOSS seconds."""
        lost = self._lost_at
        return lost is None or asyncio.get_running_loop().time() - lost >= PAUSE_AFTER_LOSS

    def lost(self) -> None:
        """Another replica claimed a command this one wanted: read nothing ahead for a while."""
        self._lost_at = asyncio.get_running_loop().time()

    def hold(self, message_id: str, reads: EarlyReads) -> None:
        """Keep `reads` for the command's turn; dropped RIGHTS_MAX_AGE after they began if unused."""
        self.drop(message_id)
        self._held[message_id] = reads
        loop = asyncio.get_running_loop()
        delay = max(0.0, reads.started + RIGHTS_MAX_AGE - loop.time())
        reads._expiry = loop.call_later(delay, self._expire, message_id, reads)

    def take(self, message_id: str, stamp: Callable[[], tuple[int, int]]) -> EarlyReads | None:
        """The reads held for the command whose turn starts now, if they may still serve it: begun
        at most RIGHTS_MAX_AGE ago, with the caller's rights `stamp()` unchanged since. Else None
        (and they are cancelled): the command reads afresh."""
        reads = self._held.pop(message_id, None)
        if reads is None:
            return None
        if reads._expiry is not None:
            reads._expiry.cancel()
            reads._expiry = None
        age = asyncio.get_running_loop().time() - reads.started
        if age > RIGHTS_MAX_AGE or reads.stamp != stamp():
            reads.cancel()
            return None
        return reads

    def drop(self, message_id: str) -> None:
        """The command will not use its reads (not run, or over): cancel and forget them."""
        reads = self._held.pop(message_id, None)
        if reads is not None:
            reads.cancel()

    def clear(self) -> None:
        """Stopping: every held read is cancelled."""
        for message_id in list(self._held):
            self.drop(message_id)

    def _expire(self, message_id: str, reads: EarlyReads) -> None:
        if self._held.get(message_id) is reads:
            reads._expiry = None
            self.drop(message_id)


__all__ = ["PAUSE_AFTER_LOSS", "RIGHTS_MAX_AGE", "SIGHTINGS_KEPT", "EarlyReads", "ReadAhead"]
