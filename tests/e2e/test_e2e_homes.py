"""Each caller's commands are claimed first by their home replica (bot/runtime/homes.py), through
real `integrations-bot run` processes on one PostgreSQL: with every replica on the list, each
command is run by its caller's home, so one person's commands run on one replica, in order; and
when that home is killed, the others claim its callers' commands after the backup delay, long
before the dead one drops off their lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import REPLY_TIMEOUT, BotProcess
from replica_support import People, Replicas, owner_pid, running, wait_until

from bot.runtime.homes import Homes
from tests.e2e.test_e2e_replicas import MIXED, after_mixed

pytestmark = pytest.mark.e2e
PREFIX = "!integration"


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    with running(tmp_path, postgres_url) as replicas:
        yield replicas


def listed(replicas: Replicas, count: int) -> Homes:
    """Once every replica has read a list of `count` replicas: whose caller is whose."""

    def read(bot: BotProcess) -> bool:
        seen = [e["alive"] for e in bot.logs() if e.get("event") == "homes.replicas"]
        return bool(seen) and seen[-1] == count

    for bot in replicas.alive():
        wait_until(lambda b=bot: read(b), REPLY_TIMEOUT, "a replica never read the whole list")
    owners = [str(row[0]) for row in replicas.rows("SELECT owner FROM replicas")]
    assert len(owners) == count
    homes = Homes(owners[0])
    homes.update(owners)
    return homes


def test_each_persons_commands_are_run_by_their_home_replica(replicas: Replicas) -> None:
    replicas.start(3)
    people = People.create(replicas, 6)
    homes = listed(replicas, 3)
    people.run(MIXED, timeout=REPLY_TIMEOUT)
    people.check_answers()
    people.check_applied_once()
    people.check_documents(after_mixed(people))
    for sent in people.sent:
        home = homes.home_of(sent.message["u"]["_id"])
        assert replicas.claim_owner(sent.message["_id"]) == home, sent.message["msg"]
    # Two replicas or more were someone's home (six people, three replicas).
    assert len({homes.home_of(p.message["u"]["_id"]) for p in people.sent}) >= 2


def test_a_killed_homes_callers_are_answered_by_another_replica_after_the_backup_delay(replicas: Replicas) -> None:
    first, second = replicas.start(2)
    people = People.create(replicas, 8)
    homes = listed(replicas, 2)
    victim_owner = next(o for o in homes.alive if owner_pid(o) == first.process.pid)
    orphaned = [p for p in people.people if homes.home_of(replicas.control.user(p.name)["_id"]) == victim_owner]
    assert orphaned, "nobody's home was the first replica"
    replicas.kill(first)
    # Still on the survivor's list (for a few seconds): its commands wait for the backup delay.
    person = orphaned[0]
    message = replicas.control.post_message(person.name, person.room, f"{PREFIX} disable {person.incoming['_id']}")
    wanted = set(replicas.chat.answer_ids(message))
    answer = replicas.control.wait_for_message(person.room, lambda m: m["_id"] in wanted, REPLY_TIMEOUT)
    assert "Disabled" in answer["msg"]
    assert owner_pid(replicas.claim_owner(message["_id"])) == second.process.pid
    assert any(e.get("event") == "homes.claimed_for_home" for e in second.logs())
    assert not replicas.control.integration(person.incoming["_id"])["enabled"]
