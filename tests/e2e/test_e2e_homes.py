"""Each caller's commands are claimed first by their home replica (bot/runtime/homes.py), through
real `integrations-bot run` processes on one PostgreSQL: with every replica on the list, each
command is run by its caller's home, so one person's commands run on one replica, in order; and
when that home is killed, the others claim its callers' commands after the backup delay, long
before the dead one drops off their lists."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_support import BOT_USERNAME, REPLY_TIMEOUT, BotProcess
from replica_support import TAKEOVER_TIMEOUT, People, Replicas, owner_pid, running, wait_until

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


def two_homes(replicas: Replicas) -> tuple[str, str]:
    """Two replicas, and two admins of the room `timers` whose homes differ (ann's and bo's)."""
    replicas.start(2)
    control = replicas.control
    names = [f"racer{n}" for n in range(16)]
    for name in names:
        control.create_user(name, roles=["user", "admin"])
    control.create_room("timers", members=[*names, BOT_USERNAME], owner="admin")
    homes = listed(replicas, 2)
    home = {name: homes.home_of(control.user(name)["_id"]) for name in names}
    ann = names[0]
    bo = next((name for name in names if home[name] != home[ann]), None)
    assert bo is not None, (home, homes.alive)
    return ann, bo


# The state of an integration's pending timer, and whether it ends more than 90 min after it was
# set (a `for 2h`, not a `for 1h`). Ended ones are not counted: one a command took over is the same
# row, one it found ended stays beside the new one.
TIMER_AND_LENGTH = (
    "SELECT state, due_at - created_at > 5400 FROM timers WHERE integration_id = %s"
    " AND state IN ('scheduled', 'active')"
)


def disabled_for_an_hour_by(replicas: Replicas, person: str, name: str) -> dict[str, Any]:
    """A new incoming webhook in #timers, disabled `for 1h` by `person` (answered)."""
    hook = replicas.control.create_incoming_integration(name, channel="#timers")
    first = replicas.control.post_message(person, "timers", f"{PREFIX} disable {hook['_id']} for 1h")
    assert "Disabled" in replicas.chat.reply_to(first)["msg"]
    return hook


def wait_closed(replicas: Replicas, *messages: dict[str, Any]) -> None:
    """Until the commands' claims are closed: their book-keeping is over (a claim closes after it)."""
    closed = "SELECT status FROM processed_messages WHERE message_id = %s"
    for message in messages:
        wait_until(lambda m=message: replicas.rows(closed, (m["_id"],)) == [("done",)], REPLY_TIMEOUT, "claim open")


def test_an_enable_answered_slowly_on_one_replica_leaves_a_timed_disable_set_after_it_on_another(
    replicas: Replicas,
) -> None:
    """Two people at one integration through their two homes: ann switches it on; while her answer
    is on its way (slow on purpose) her lock is free, and bo's `disable … for 1h` on the other
    replica sets its timer and switches it off. The book-keeping of ann's enable, after her answer,
    must not take bo's timer for the one her enable ended: it is bo's, set after her change."""
    ann, bo = two_homes(replicas)
    control, chat = replicas.control, replicas.chat
    hook = control.create_incoming_integration("Raced timer", channel="#timers", enabled=False)
    timers = "SELECT state FROM timers WHERE integration_id = %s"

    control.set_latency(2.0, "chat.sendMessage")  # every answer takes 2 s to be stored
    enable = control.post_message(ann, "timers", f"{PREFIX} enable {hook['_id']}")
    wait_until(lambda: control.integration(hook["_id"])["enabled"], REPLY_TIMEOUT, "ann's enable never wrote")
    timed = control.post_message(bo, "timers", f"{PREFIX} disable {hook['_id']} for 1h")
    wait_until(
        lambda: [row[0] for row in replicas.rows(timers, (hook["_id"],))] == ["active"],
        REPLY_TIMEOUT,
        "bo's timed disable never became active",
    )
    assert "Enabled" in chat.reply_to(enable)["msg"]
    assert "Disabled" in chat.reply_to(timed)["msg"]
    control.clear_faults()
    wait_closed(replicas, enable)  # ann's book-keeping is over
    assert [row[0] for row in replicas.rows(timers, (hook["_id"],))] == ["active"]
    assert not control.integration(hook["_id"])["enabled"]
    assert owner_pid(replicas.claim_owner(enable["_id"])) != owner_pid(replicas.claim_owner(timed["_id"]))


def test_an_enable_ending_a_timed_disable_leaves_it_to_a_timed_disable_set_after_it_on_another_replica(
    replicas: Replicas,
) -> None:
    """As above, with a timed disable running when ann switches it on: her enable ends it, and its
    audit row is her book-keeping, after her slow answer. bo's `disable … for 2h` on the other
    replica meanwhile switches it off with a timer of its own (it took the row over when the ending
    came after the answer too). Ann's book-keeping must leave bo's timer running."""
    ann, bo = two_homes(replicas)
    control, chat = replicas.control, replicas.chat
    hook = disabled_for_an_hour_by(replicas, ann, "Raced taken over")
    assert replicas.rows(TIMER_AND_LENGTH, (hook["_id"],)) == [("active", False)]

    control.set_latency(2.0, "chat.sendMessage")  # every answer takes 2 s to be stored
    enable = control.post_message(ann, "timers", f"{PREFIX} enable {hook['_id']}")
    wait_until(lambda: control.integration(hook["_id"])["enabled"], REPLY_TIMEOUT, "ann's enable never wrote")
    timed = control.post_message(bo, "timers", f"{PREFIX} disable {hook['_id']} for 2h")
    assert "Enabled" in chat.reply_to(enable)["msg"]
    assert "Disabled" in chat.reply_to(timed)["msg"]
    control.clear_faults()
    wait_closed(replicas, enable, timed)
    assert replicas.rows(TIMER_AND_LENGTH, (hook["_id"],)) == [("active", True)]  # bo's end: in 2 h
    assert not control.integration(hook["_id"])["enabled"]
    assert owner_pid(replicas.claim_owner(enable["_id"])) != owner_pid(replicas.claim_owner(timed["_id"]))


def test_an_enable_resumed_after_a_kill_leaves_a_timed_disable_set_meanwhile_on_another_replica(
    replicas: Replicas,
) -> None:
    """ann's enable of a timed-disabled integration has written; its replica is killed (-9) before
    the answer and the book-keeping (and, if the kill is quick enough, before the enable ended that
    timer). While her command waits to be taken over, bo's `disable … for 2h` on the other replica
    switches it off again with a new end (a timer of its own, or the row taken over). The resumed
    enable replays its write without sending it: the timer pending now is bo's, not the one her
    write ended, and must be left running."""
    ann, bo = two_homes(replicas)
    control, chat = replicas.control, replicas.chat
    hook = disabled_for_an_hour_by(replicas, ann, "Raced resumed")

    control.set_latency(30.0, "chat.sendMessage")  # ann's answer hangs: killed before it
    enable = control.post_message(ann, "timers", f"{PREFIX} enable {hook['_id']}")
    wait_until(lambda: control.integration(hook["_id"])["enabled"], REPLY_TIMEOUT, "ann's enable never wrote")
    owner = owner_pid(replicas.claim_owner(enable["_id"]))
    killed = next(bot for bot in replicas.alive() if bot.process.pid == owner)
    replicas.kill(killed)
    control.clear_faults()
    timed = control.post_message(bo, "timers", f"{PREFIX} disable {hook['_id']} for 2h")
    assert "Disabled" in chat.reply_to(timed)["msg"]
    assert "Enabled" in chat.reply_to(enable, timeout=TAKEOVER_TIMEOUT)["msg"]  # resumed by the other
    wait_closed(replicas, enable)
    assert replicas.rows(TIMER_AND_LENGTH, (hook["_id"],)) == [("active", True)]  # bo's end: in 2 h
    assert not control.integration(hook["_id"])["enabled"]


def test_a_history_through_another_replica_waits_for_the_audit_row_of_an_answer_given(replicas: Replicas) -> None:
    """ann's `disable` is answered by her home replica; its audit row, book-keeping after the
    answer, is held up (the table is locked by the test). bo's `history` runs on his home, the other
    replica: it waits for that row instead of answering without the change ann was told of."""
    ann, bo = two_homes(replicas)
    control, chat = replicas.control, replicas.chat
    hook = control.create_incoming_integration("Late row", channel="#timers")
    with psycopg.connect(replicas.state_url, connect_timeout=5) as blocker:
        blocker.execute("LOCK TABLE audit IN EXCLUSIVE MODE")  # audit rows wait; reads go on
        disable = control.post_message(ann, "timers", f"{PREFIX} disable {hook['_id']}")
        assert "Disabled" in chat.reply_to(disable)["msg"]
        history = control.post_message(bo, "timers", f"{PREFIX} history {hook['_id']}")
        time.sleep(0.6)
        assert chat.answers_to(history) == []
        blocker.rollback()
    answer = chat.reply_to(history)["msg"]
    assert ann in answer and "disable" in answer, answer
    assert owner_pid(replicas.claim_owner(disable["_id"])) != owner_pid(replicas.claim_owner(history["_id"]))
