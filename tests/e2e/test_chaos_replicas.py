"""Chaos with three replicas on one real PostgreSQL: 15 people × 20 commands while the server
misbehaves (the disturbances of tests/e2e/test_chaos.py), two replicas picked at random are
killed with SIGKILL (a new one starts each time, in a working directory of its own), and the
database is killed and started again half-way, down for 7 s. Afterwards every command was
applied exactly once and answered exactly once (`chaos_support.verify`: one reply per command
across all replicas, one audit row per command done, every integration's fields intact).

While the database is down (7 s), commands wait for their claim and run late, once it is back
(a command told "not run", after 10 s, is covered by tests/e2e/test_e2e_replicas.py); a
command answered just before it went away gets its audit row once it is back. A killed
replica's unfinished commands are taken over by another once their lease (BOT_CLAIM_LEASE, 3 s
here) runs out.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chaos_support import (
    TICK,
    ReplicaDisturber,
    build_crowd,
    leaked_secrets,
    query,
    run_crowd,
    start_bot,
    unanswered_story,
    verify,
)
from e2e_support import BotProcess

from tests.postgres_support import PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e-chaos-replicas")]

USERS = 15
COMMANDS = 20
REPLICAS = 3
SEED = 15
ANSWER_TIMEOUT = 90.0
SETTLE_TIMEOUT = 30.0  # far beyond a lease (3 s) and a take-over tick (1 s)
# Seconds between the kill of the database and its start: longer than a statement waits for a
# connection (5 s), so commands meanwhile are refused, not merely delayed.
DATABASE_DOWN = 7.0


def unfinished(url: str) -> list[str]:
    return [str(row[0]) for row in query(url, "SELECT message_id FROM processed_messages WHERE status = 'claimed'")]


@pytest.mark.timeout(300)
def test_chaos_with_three_replicas_every_command_is_applied_once_and_answered_once(
    tmp_path: Path, postgres_url: str, postgres_server: PostgresServer
) -> None:
    crowd = build_crowd(USERS, seed=SEED)
    settings = {"BOT_STATE_URL": postgres_url, "BOT_CLAIM_LEASE": "3", "BOT_LOG_LEVEL": "DEBUG"}
    bots: list[BotProcess] = []

    def restart_database() -> None:
        postgres_server.kill()
        time.sleep(DATABASE_DOWN)
        postgres_server.start()

    try:
        control = crowd.control
        control.set_latency(0.05)
        control.set_latency(0.2, "integrations.update")
        bots.extend(start_bot(crowd, tmp_path / f"replica-{n}", **settings) for n in range(REPLICAS))
        for bot in bots:
            bot.wait_ready()
        total = USERS * COMMANDS
        people = run_crowd(crowd, COMMANDS, seed=SEED, answer_timeout=ANSWER_TIMEOUT)
        disturber = ReplicaDisturber(
            crowd, bots, tmp_path, settings=settings, restart_database=restart_database, seed=SEED
        )
        # Until every person is done (the kills and the database restart come at set shares of
        # the answers; the other disturbances as far as the people's traffic gets through them).
        while any(person.is_alive() for person in people):
            disturber.tick(total)
            time.sleep(TICK)
        for person in people:
            person.join()
        control.clear_faults()
        unanswered = unanswered_story(crowd, postgres_url, (bot.output for bot in bots))
        assert crowd.answered() == total, (
            f"unanswered after {ANSWER_TIMEOUT:g} s:\n" + "\n".join(unanswered) + f"\ndisturbances: {disturber.done}"
        )
        assert disturber.kills == 2 and disturber.database_restarts == 1 and disturber.dropped >= 1, disturber.done
        # A command whose audit row could not be written (the database went away right after its
        # write) is recorded once the database is back: wait for every claim to close.
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while (open_claims := unfinished(postgres_url)) and time.monotonic() < deadline:
            time.sleep(TICK)
        assert not open_claims, f"claims never settled: {open_claims}"
        for bot in disturber.live:
            assert bot.terminate() == 0, bot.output[-3000:]

        counts = verify(crowd, postgres_url)
        assert counts["commands"] == total and counts["done"] + counts["not done"] == total, (counts, disturber.done)
        # Every replica took part, and the work survived the kills and the database restart.
        events = [e.get("event") for bot in bots for e in bot.logs()]
        assert "state.unavailable" in events and "state.available_again" in events
        won = [sum(1 for e in bot.logs() if e.get("event") == "command") for bot in bots[:REPLICAS]]
        assert sum(1 for n in won if n) >= 2, won
    finally:
        for number, bot in enumerate(bots):
            if bot.process.poll() is None:
                bot.process.kill()
                bot.wait_exit(20)
            # Kept in the test's directory, for whoever looks into a failure.
            (tmp_path / f"replica-{number}.log").write_text(bot.output, encoding="utf-8")
        crowd.server.stop()
    assert not leaked_secrets((bot.output for bot in bots), crowd.secrets | {postgres_server.password})
