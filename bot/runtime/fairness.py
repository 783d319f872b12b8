"""Which claimed command runs next: one caller cannot starve the others, and changes go first.

Before this, every claimed command ran at once in its own task. A caller who posted 400 `list`
and `noisy` commands in a few seconds had 400 commands queueing for the REST client's few
connections, and an admin's `disable` waited behind all of them (5 s measured).

The rules, kept here as a sans-I/O table (`Lanes`: jobs in, jobs to start out; no tasks, no
clock) that the runtime drives:
- each caller (user id) has a lane: at most `per_caller` of their commands run at once, the rest
  wait in the lane, commands that change integrations (`Command.changes_integrations`) ahead of
  reads, each kind in the order it arrived;
- at most `reads` reads run at once over all callers, taken from the lanes in turn (the caller
  served longest ago first); changes are not held by that bound, only by their caller's own;
- a lane holds at most `queue` waiting commands. One more is not refused outright, since every
  command gets exactly one answer: it is marked `overflow`, waits its turn like a read, and is
  then answered "busy, not run" instead of being run. A change arriving at a full lane takes the
  place of the newest waiting read, which becomes the overflow instead. So a flood costs one
  short answer per command beyond the queue, at the flooder's own pace.

Nothing here is durable, and nothing needs to be: a waiting command is already claimed in the
state database (bot/state/store.py) and has no answer yet, so if the process stops (SIGTERM: `close()`,
nothing more is started; kill -9) its claim is still open and the next start resumes it or says it
was interrupted (bot/runtime/recovery.py), exactly like a command that was running.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from itertools import count
from typing import Final

from bot.text import plural
from commands.reply import Reply

READ_SLOTS: Final = 16  # reads running at once over all callers (REST has 4 connections)


@dataclass(eq=False)
class Job:
    """One claimed command in a lane. `overflow`: answered "busy, not run" when its turn comes."""

    caller: str
    change: bool
    seq: int
    overflow: bool = False

    @property
    def runs_as_read(self) -> bool:
        return self.overflow or not self.change


@dataclass
class _Lane:
    running: int = 0
    changes: deque[Job] = field(default_factory=deque)
    reads: deque[Job] = field(default_factory=deque)  # reads and overflow answers, in order

    @property
    def waiting(self) -> int:
        """Waiting commands that will run (overflow answers not counted)."""
        return len(self.changes) + sum(1 for job in self.reads if not job.overflow)

    @property
    def idle(self) -> bool:
        return not self.running and not self.changes and not self.reads


class Lanes:
    def __init__(self, *, per_caller: int, queue: int, reads: int = READ_SLOTS) -> None:
        if per_caller < 1 or reads < 1 or queue < 0:
            raise ValueError("per_caller and reads must be at least 1, queue at least 0")
        self.per_caller = per_caller
        self.queue = queue
        self.reads = reads
        self._lanes: dict[str, _Lane] = {}
        # Callers with waiting reads, the one served longest ago first.
        self._turns: OrderedDict[str, None] = OrderedDict()
        self._reads_running = 0
        self._seq = count()
        self._closed = False

    @property
    def waiting(self) -> int:
        return sum(len(lane.changes) + len(lane.reads) for lane in self._lanes.values())

    @property
    def running(self) -> int:
        return sum(lane.running for lane in self._lanes.values())

    def free(self, caller: str) -> int:
        """How many changes of `caller`, submitted now one after the other, would each start at
        once (not as an overflow answer): their caller's free slots, none if such a change would
        be marked overflow."""
        if self._closed:
            return 0
        lane = self._lanes.get(caller, _Lane())
        slots = max(0, self.per_caller - lane.running - len(lane.changes))
        if not slots or (self._full(lane, change=True) and not any(not job.overflow for job in lane.reads)):
            return 0  # as `submit` marks it
        return slots

    def submit(self, caller: str, *, change: bool) -> tuple[Job, list[Job]]:
        """A newly claimed command of `caller`: its job, and the jobs to start now."""
        job = Job(caller, change, next(self._seq))
        lane = self._lanes.setdefault(caller, _Lane())
        if self._full(lane, change=change):
            newest = next((j for j in reversed(lane.reads) if not j.overflow), None)
            if change and newest is not None:
                newest.overflow = True  # the change takes its place in the queue
            else:
                job.overflow = True
        if job.runs_as_read:
            lane.reads.append(job)
            self._turns.setdefault(caller)
        else:
            lane.changes.append(job)
        return job, self._startable()

    def _full(self, lane: _Lane, *, change: bool) -> bool:
        """Whether one more command of this lane would wait beyond the queue: `queue` commands wait
        already and it would wait too. A change waits only when its caller has no free slot (the
        changes ahead of it take them; reads do not hold it); a read also when those ahead of it
        take them, or when every read slot is taken (a read that could start would have)."""
        if lane.waiting < self.queue:
            return False
        if change:
            return lane.running + len(lane.changes) >= self.per_caller
        return lane.running + lane.waiting >= self.per_caller or self._reads_running >= self.reads

    def done(self, job: Job) -> list[Job]:
        """`job` finished (or failed): the jobs to start now."""
        lane = self._lanes[job.caller]
        lane.running -= 1
        if job.runs_as_read:
            self._reads_running -= 1
        if lane.idle:
            del self._lanes[job.caller]
        return self._startable()

    def close(self) -> None:
        """Start nothing more (shutdown): waiting jobs stay claimed for the next start."""
        self._closed = True

    def _startable(self) -> list[Job]:
        if self._closed:
            return []
        started: list[Job] = []
        while (job := self._next_change() or self._next_read()) is not None:
            lane = self._lanes[job.caller]
            lane.running += 1
            if job.runs_as_read:
                self._reads_running += 1
            started.append(job)
        return started

    def _next_change(self) -> Job | None:
        """The longest-waiting change of a caller with a free slot."""
        best: _Lane | None = None
        for lane in self._lanes.values():
            if (
                lane.changes
                and lane.running < self.per_caller
                and (best is None or lane.changes[0].seq < best.changes[0].seq)
            ):
                best = lane
        return best.changes.popleft() if best is not None else None

    def _next_read(self) -> Job | None:
        """The next read (or overflow answer) of the caller served longest ago with a free slot."""
        if self._reads_running >= self.reads:
            return None
        for caller in self._turns:
            lane = self._lanes[caller]
            if lane.running < self.per_caller:
                job = lane.reads.popleft()
                del self._turns[caller]
                if lane.reads:
                    self._turns[caller] = None  # back of the line
                return job
        return None


def busy_reply(queue: int) -> Reply:
    """The answer to an overflow job: not run, and why."""
    waiting = f"{plural(queue, 'command')} of yours waiting" if queue else "commands of yours running"
    return Reply(
        f"⏳ I did not run this command: I already have {waiting}, and I take only so many from one "
        "person at a time so that everyone gets answered. Send it again once those are answered.",
        outcome="busy",
    )


__all__ = ["READ_SLOTS", "Job", "Lanes", "busy_reply"]
