"""Which replica claims a caller's commands first: the caller's home.

Every replica sees every command on its own realtime session, and the claim in the database
decides which one runs it (`bot.state.store`). Left to a race, the replica that hears a burst
first claims most of it (measured with three replicas: 72 % of a burst by one), the others spend a
statement on each claim they lose, and one caller's commands run on several replicas at once, out
of the order they were sent, each replica reading that caller's rights for itself.

So each caller has a home: of the replicas alive (each says so in the database every `HEARTBEAT`
seconds; `StateStore.replicas`), the one that ranks first for the caller by rendezvous hashing
(the highest hash of replica and caller), which every replica computes alike from the same list,
and which moves only the callers of a replica that comes or goes. The home claims a caller's
command as soon as it arrives; the others keep it for `BACKUP_DELAY` seconds and forget it when
its answer arrives (an answer stands at an id derived from the command's, `MessageIds.answer`,
and is the bot's own message: another author's message at that id is not an answer):
a command whose answer they have not seen by then, they claim, which costs a lost claim if the
home has it, and runs the command if the home died before claiming it. Nothing here decides who
runs a command: the claim still does, so replicas whose lists disagree for a moment (one just
started or stopped) at worst both claim at once, as before, or claim a second late.

A replica that is not in its own list yet (before its first look) claims everything at once, as a
lone replica does. One whose look fails (the database away) keeps the list it last read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bot.runtime.intake import Accepted

# How often a replica says it runs and reads who else does (seconds).
HEARTBEAT: Final = 2.0
# A replica silent for this long is no longer anyone's home: its callers' commands are claimed at
# once by their next home. Until then they are claimed by the others after BACKUP_DELAY.
ALIVE: Final = 3 * HEARTBEAT
# How long a replica leaves another's caller's command to its home before claiming it itself.
BACKUP_DELAY: Final = 1.0


def _rank(owner: str, caller: str) -> bytes:
    return hashlib.blake2b(f"{owner}\0{caller}".encode(), digest_size=8).digest()


class Homes:
    """The replicas alive as this one last read them, and whose caller is whose."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._alive: tuple[str, ...] = ()

    @property
    def alive(self) -> tuple[str, ...]:
        return self._alive

    def update(self, owners: Sequence[str]) -> None:
        self._alive = tuple(sorted(set(owners)))

    def shared(self) -> bool:
        """Whether callers are shared out: this replica is on the list, with others."""
        return self.owner in self._alive and len(self._alive) > 1

    def home_of(self, caller: str) -> str:
        """The home of `caller` among the replicas alive (this one when it knows of none)."""
        if self.owner not in self._alive:
            return self.owner
        return max(self._alive, key=lambda owner: _rank(owner, caller))

    def mine(self, caller: str) -> bool:
        return self.home_of(caller) == self.owner


@dataclass
class Deferred:
    """Another replica's caller's command, kept until its answer is seen or `due` (loop time)."""

    accepted: Accepted
    due: float
    answer_id: str


class Left:
    """The commands this replica left to their callers' homes (sans I/O: the runtime claims, keeps
    and lets go of their rooms' cursors). A caller with a command here has the next ones left too,
    due with it, so that a caller's commands are claimed in the order sent; a caller stays counted
    until the claim of their due ones is over (`release`), so their next commands wait for it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._commands: dict[str, Deferred] = {}
        self._answers: dict[str, str] = {}  # answer id → command id
        self._callers: dict[str, tuple[int, float]] = {}  # caller → commands here, the latest one's due

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._commands

    def __len__(self) -> int:
        return len(self._commands)

    def __getitem__(self, message_id: str) -> Deferred:
        return self._commands[message_id]

    def quiet(self) -> bool:
        """Nothing left here and no claim of left commands in flight."""
        return not self._callers

    def empty(self) -> bool:
        """Nothing left, counted or expected: all forgotten."""
        return not self._commands and not self._answers and not self._callers

    def expects(self, answer_id: str) -> bool:
        return answer_id in self._answers

    def leave(self, accepted: Accepted, *, mine: bool, due: float, answer_of: Callable[[str], str]) -> bool:
        """Keep `accepted` for its home (or, `mine`, behind its caller's commands left already);
        False when it is to be claimed now: this replica's caller with nothing left, or too many left."""
        caller = accepted.message.user_id
        earlier = self._callers.get(caller)
        if (mine and earlier is None) or len(self._commands) >= self._limit:
            return False
        when = earlier[1] if mine and earlier is not None else due
        answer_id = answer_of(accepted.message.id)
        self._commands[accepted.message.id] = Deferred(accepted, when, answer_id)
        self._answers[answer_id] = accepted.message.id
        self._callers[caller] = ((earlier[0] if earlier else 0) + 1, when)
        return True

    def answered(self, answer_id: str) -> Deferred | None:
        """Its home answered: forgotten (None when it is being claimed here already)."""
        left = self._commands.pop(self._answers.pop(answer_id, ""), None)
        if left is not None:
            self._uncount(left)
        return left

    def due(self, at: float) -> list[Deferred]:
        """Those whose answer has not come by `at`, out of the waiting list (their callers stay
        counted, their answers expected, until `release`)."""
        due = [left for left in self._commands.values() if left.due <= at]
        for left in due:
            del self._commands[left.accepted.message.id]
        return due

    def release(self, left: Deferred) -> None:
        """The claim of a due command is over (won, lost, or waiting for the database)."""
        self._uncount(left)
        self.forget_answer(left)

    def forget_answer(self, left: Deferred) -> None:
        self._answers.pop(left.answer_id, None)

    def _uncount(self, left: Deferred) -> None:
        caller = left.accepted.message.user_id
        count, when = self._callers.pop(caller, (1, left.due))
        if count > 1:
            self._callers[caller] = (count - 1, when)


__all__ = ["ALIVE", "BACKUP_DELAY", "HEARTBEAT", "Deferred", "Homes", "Left"]
