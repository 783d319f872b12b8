"""Chaos: 20 people × 15 commands against the real bot process while the server misbehaves and the
bot is killed with SIGKILL twice; afterwards every command was applied exactly once.

The disturbances, on a loop while the people are busy: dropped websockets, a refusal period
(REST 503 and refused websocket upgrades), bursts of HTTP 500 and 429 on integrations.get/list/
update, users.info and chat.sendMessage, latency on every call, and `kill -9` of the bot after a
third and after two thirds of the commands were answered (a new process on the same state file).

Why every command must succeed, not merely be answered: the bursts are sized within what the
bot absorbs by design. `RestClient` makes 4 attempts per call on a 5xx (backoff 0.2 s doubling,
at least 1.4 s from the first attempt to the last) and waits out two 429s; a burst is at most 2
failures per endpoint, a new one there is injected only once the previous one was used up at
least `SPACING` (3.5 s) before, nothing on REST is disturbed within `SPACING` of the refusal, and
the refusal lasts 1 s (shorter than the 1.4 s); see `chaos_support.Disturber`. So no single call
can exhaust its retries, except `chat.sendMessage`, whose 6-failure bursts may exhaust them: the
answer is then retried later by the bot until it is stored. Answers the
people get are checked against the stored documents and the audit log by `chaos_support.verify`.
Randomness (who writes where, which words) is seeded; timing varies from run to run, the checks
do not depend on it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chaos_support import (
    DISTURBANCES,
    TICK,
    Disturber,
    build_crowd,
    leaked_secrets,
    run_crowd,
    start_bot,
    unanswered_story,
    verify,
)
from e2e_support import BotProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e-chaos")]

USERS = 20
COMMANDS = 15
SEED = 6
ANSWER_TIMEOUT = 90.0  # a functional deadline per answer, far beyond what any disturbance costs


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
        unanswered = unanswered_story(crowd, tmp_path / "state.sqlite3", (bot.output for bot in bots))
        assert crowd.answered() == total, (
            f"unanswered after {ANSWER_TIMEOUT:g} s:\n" + "\n".join(unanswered) + f"\ndisturbances: {disturber.done}"
        )
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
