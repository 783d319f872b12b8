"""Chaos: 20 people × 15 commands against the real bot process while the server misbehaves and the
bot is killed with SIGKILL twice; afterwards every command was applied exactly once.

The disturbances, on a loop while the people are busy: dropped websockets, a refusal period
(REST 503 and refused websocket upgrades), bursts of HTTP 500 and 429 on integrations.get/list/
update, users.info and chat.sendMessage, latency on every call, and `kill -9` of the bot after a
third and after two thirds of the commands were answered (a new process on the same state file).

Why every command must succeed, not merely be answered: the bursts are sized within what the
bot absorbs by design. `RestClient` makes 4 attempts per call on a 5xx (backoff 0.2 s doubling,
at least 1.4 s from the first attempt to the last) and waits out two 429s; a burst is at most 2
failures per endpoint, a new one is injected only once the previous one was used up, disturbances
of REST are at least `SPACING` (3.5 s) apart, and a refusal lasts 1 s (shorter than the 1.4 s). So no
single call can exhaust its retries, except `chat.sendMessage`, whose 6-failure bursts may exhaust
them: the answer is then retried later by the bot until it is stored. Answers the
people get are checked against the stored documents and the audit log by `chaos_support.verify`.
Randomness (who writes where, which words) is seeded; timing varies from run to run, the checks
do not depend on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chaos_support import Crowd, build_crowd, leaked_secrets, run_crowd, start_bot, verify
from e2e_support import BotProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e-chaos")]

USERS = 20
COMMANDS = 15
SEED = 6
ANSWER_TIMEOUT = 90.0  # a functional deadline per answer, far beyond what any disturbance costs
SPACING = 3.5  # seconds between two disturbances of REST (longer than one call's retries)
TICK = 0.5
REFUSAL = 1.0

# The loop of disturbances: ("drop",), ("refuse",) or ("burst", endpoint, mode, count).
DISTURBANCES: tuple[tuple[str, ...], ...] = (
    ("drop",),
    ("burst", "integrations.update", "500", "2"),
    ("refuse",),
    ("burst", "chat.sendMessage", "500", "6"),
    ("burst", "integrations.get", "500", "2"),
    ("drop",),
    ("burst", "users.info", "500", "2"),
    ("burst", "integrations.list", "429", "1"),
    ("burst", "integrations.update", "429", "1"),
    ("drop",),
    ("burst", "chat.sendMessage", "429", "2"),
    ("burst", "integrations.list", "500", "2"),
)


class Disturber:
    """Works through DISTURBANCES, one per tick, holding one back until it is safe (see above)."""

    def __init__(self, crowd: Crowd, bots: list[BotProcess], workdir: Path) -> None:
        self.crowd = crowd
        self.bots = bots
        self.workdir = workdir
        self.targets: dict[str, int] = {}  # endpoint -> the call count that uses up its last burst
        self.last_burst: dict[str, float] = {}
        self.last_refusal = -SPACING
        self.step = 0
        self.kills = 0
        self.dropped = 0
        self.done: list[str] = []

    def consumed(self, endpoint: str | None = None) -> bool:
        counts = self.crowd.control.counters().rest
        wanted = self.targets if endpoint is None else {endpoint: self.targets.get(endpoint, 0)}
        return all(counts.get(name, 0) >= target for name, target in wanted.items())

    def tick(self, total: int) -> None:
        if self.kills < 2 and self.crowd.answered() >= total * (self.kills + 1) // 3:
            self.kill_and_restart()
            return
        action = DISTURBANCES[self.step % len(DISTURBANCES)]
        control = self.crowd.control
        now = time.monotonic()
        if action[0] in ("drop", "refuse") and self.step >= len(DISTURBANCES):
            # One round of socket trouble is enough: the reconnect backoff grows with every drop
            # (30 s ready resets it), and the test should not spend its time waiting it out.
            self.step += 1
            return
        if action[0] == "drop":
            self.dropped += control.drop_connections()
            label = "drop"
        elif action[0] == "refuse":
            last_burst = max(self.last_burst.values(), default=-SPACING)
            if now - last_burst < SPACING or now - self.last_refusal < SPACING or not self.consumed():
                return  # not yet safe: try again on the next tick
            control.refuse_connections(REFUSAL)
            self.dropped += control.drop_connections()
            self.last_refusal = now
            label = "refuse"
        else:
            _, endpoint, mode, count = action
            recent = now - self.last_burst.get(endpoint, -SPACING) < SPACING
            if recent or now - self.last_refusal < SPACING or not self.consumed(endpoint):
                return
            self.targets[endpoint] = control.counters().rest.get(endpoint, 0) + int(count)
            control.fail_next(endpoint, int(count), mode, retry_after=1.0)  # type: ignore[arg-type]
            self.last_burst[endpoint] = now
            label = f"{mode}x{count} {endpoint}"
        self.done.append(label)
        self.step += 1

    def kill_and_restart(self) -> None:
        old = self.bots[-1]
        old.process.kill()  # SIGKILL: no shutdown, no draining, whatever was in flight is cut
        old.wait_exit(20)
        self.kills += 1
        self.done.append("kill -9")
        bot = start_bot(self.crowd, self.workdir, BOT_LOG_LEVEL="DEBUG")
        self.bots.append(bot)
        bot.wait_ready()


@pytest.mark.timeout(300)
def test_chaos_every_command_is_applied_exactly_once_and_answered_once(tmp_path: Path) -> None:
    crowd = build_crowd(USERS, seed=SEED)
    bots: list[BotProcess] = []
    try:
        control = crowd.control
        control.set_latency(0.05)
        control.set_latency(0.2, "integrations.update")
        bots.append(start_bot(crowd, tmp_path, BOT_LOG_LEVEL="DEBUG"))
        bots[0].wait_ready()
        total = USERS * COMMANDS
        people = run_crowd(crowd, COMMANDS, seed=SEED, answer_timeout=ANSWER_TIMEOUT)
        disturber = Disturber(crowd, bots, tmp_path)
        # Until every person is done and every disturbance was made at least once.
        while any(person.is_alive() for person in people) or disturber.step < len(DISTURBANCES):
            disturber.tick(total)
            time.sleep(TICK)
        for person in people:
            person.join()
        control.clear_faults()
        unanswered = [(s.person, s.message["_id"], s.message["ts"]) for s in crowd.sent if s.answer is None]
        assert crowd.answered() == total, f"unanswered after {ANSWER_TIMEOUT:g} s: {unanswered}; {disturber.done}"
        assert disturber.kills == 2 and disturber.dropped >= 2, disturber.done
        assert bots[-1].terminate() == 0, bots[-1].output[-3000:]

        counts = verify(crowd, tmp_path / "state.sqlite3")
        assert counts == {"commands": total, "done": total, "not done": 0}, (counts, disturber.done)
        # The bot really was disturbed: it reconnected, retried, caught up and resumed.
        events = [e.get("event") for bot in bots for e in bot.logs()]
        assert "realtime.reconnected" in events and "catchup.done" in events
        print(  # the run's story, for whoever reads the test output (-s)
            f"chaos: {counts}, disturbances: {disturber.done}, dropped sockets: {disturber.dropped}, "
            f"resumed after kill: {events.count('recovery.decided')}, caught up: {events.count('catchup.command')}, "
            f"answers retried later: {events.count('reply.retry_later')}"
        )
        assert leaked_secrets((bot.output for bot in bots), crowd.secrets) == []
    finally:
        for number, bot in enumerate(bots):
            if bot.process.poll() is None:
                bot.process.kill()
                bot.wait_exit(20)
            # Kept with the state file in the test's directory, for whoever looks into a failure.
            (tmp_path / f"bot-{number}.log").write_text(bot.output, encoding="utf-8")
        crowd.server.stop()
