"""Issue 15, done-when 1: two or three real `integrations-bot run` processes, each in its own working
directory, on one real PostgreSQL (`postgres_url`), as an operator runs replicas.

- every command is applied once and answered once, whichever replica claims it;
- a replica killed with SIGKILL while commands flow loses none of them (its claims are taken over
  once their lease runs out, and decided with the write journal);
- two people changing one integration at once through two different replicas both get their
  change (the integration's lock is held in the database, across processes);
- a PostgreSQL restart in the middle is survived by every replica: commands sent while it is down
  are told they were not run (or run once afterwards), never run twice, never dropped;
- a `set` previewed through one replica is confirmed through another;
- a timed disable outlives both replicas that saw it set and is re-enabled once by fresh ones;
- a bulk disable previewed through one replica and confirmed through another comes back once.

Each test has its own sandbox, database and replicas (`replicas`, tests/e2e/replica_support.py).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, REPLY_TIMEOUT, BotProcess
from replica_support import (
    TAKEOVER_TIMEOUT,
    People,
    Person,
    Replicas,
    Step,
    comparable,
    owner_pid,
    running,
    wait_until,
)

from commands import replies
from tests.postgres_support import PostgresServer

pytestmark = pytest.mark.e2e

PREFIX = "!integration"
UNSETTLED = "SELECT count(*) FROM processed_messages WHERE status = 'claimed'"


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    with running(tmp_path, postgres_url, http=True) as replicas:
        yield replicas


# --- the scripts: (text, what the answer says, whether it changes the integration) -----------------


def disable(_person: Person, hook: dict[str, Any]) -> tuple[str, str, bool]:
    return f"{PREFIX} disable {hook['_id']} because replicas", "Disabled", True


def enable(_person: Person, hook: dict[str, Any]) -> tuple[str, str, bool]:
    return f"{PREFIX} enable {hook['_id']}", "Enabled", True


def show(_person: Person, hook: dict[str, Any]) -> tuple[str, str, bool]:
    return f"{PREFIX} show {hook['_id']}", f"id: `{hook['_id']}`", False


def listing(_person: Person, hook: dict[str, Any]) -> tuple[str, str, bool]:
    return f'{PREFIX} list "{hook["name"]}"', f"1 integration matching `{hook['name']}`", False


def set_alias(person: Person, hook: dict[str, Any]) -> tuple[str, str, bool]:
    return f'{PREFIX} set {hook["_id"]} alias="set by {person.name}" --yes', "✅ Changed", True


def set_emoji(_person: Person, hook: dict[str, Any]) -> tuple[str, str, bool]:
    return f"{PREFIX} set {hook['_id']} emoji=:tada: --yes", "✅ Changed", True


# Alternating the person's incoming (even steps) and outgoing (odd steps) integration.
MIXED: list[Step] = [disable, show, set_alias, disable, enable, listing, set_emoji, enable]


def after_mixed(people: People) -> Any:
    incoming = {p.incoming["_id"]: p for p in people.people}

    def expected(original: dict[str, Any]) -> dict[str, Any]:
        person = incoming.get(original["_id"])
        if person is None:  # outgoing (disabled, then enabled) or seeded: as it was
            return original
        return {**original, "alias": f"set by {person.name}", "emoji": ":tada:"}

    return expected


# --- the tests ------------------------------------------------------------------------------------


def test_three_replicas_apply_and_answer_every_command_once(replicas: Replicas) -> None:
    replicas.start(3)
    people = People.create(replicas, 6)
    people.run(MIXED, timeout=REPLY_TIMEOUT)

    people.check_answers()
    people.check_applied_once()
    people.check_documents(after_mixed(people))
    claims = replicas.rows("SELECT status, count(*) FROM processed_messages GROUP BY status")
    assert dict(claims) == {"done": len(people.sent)}, claims
    owners = {owner_pid(replicas.claim_owner(s.message["_id"])) for s in people.sent}
    assert owners <= {bot.process.pid for bot in replicas.bots}
    # Stopped, their logs are complete: each command was run by exactly one replica, once.
    replicas.close()
    runs = {s.message["msg"]: replicas.command_runs(s.message["_id"]) for s in people.sent}
    assert set(runs.values()) == {1}, runs


def test_a_replica_killed_while_commands_flow_loses_none_of_them(replicas: Replicas) -> None:
    first = replicas.start(3)
    people = People.create(replicas, 6)
    # A wide read-modify-write window, so the kill finds commands in flight.
    replicas.control.set_latency(0.3, "integrations.update")
    total = len(people.people) * len(MIXED)
    cut: list[str] = []
    victims: list[BotProcess] = []

    def kill_one_in_flight() -> None:
        wait_until(lambda: people.answered() >= total // 3, TAKEOVER_TIMEOUT, "the commands did not flow")

        def one_busy() -> bool:
            # Any replica with a command in flight: each runs its own people's (their home), and
            # six people need not give every one of three replicas someone (a ninth of the time not).
            for bot in first:
                cut[:] = replicas.unfinished_claims(bot)
                if cut:
                    victims[:] = [bot]
                    return True
            return False

        wait_until(one_busy, TAKEOVER_TIMEOUT, "no replica ever had a command in flight")
        replicas.kill(victims[0])
        # What it left unfinished, read after the kill: a command sampled before it may have been
        # finished by the replica in the moment between (it was, once, in CI).
        cut[:] = replicas.unfinished_claims(victims[0])
        replicas.start(1)  # and a fresh one joins, as a restarted pod would

    people.run(MIXED, timeout=TAKEOVER_TIMEOUT, meanwhile=kill_one_in_flight)

    assert cut, "the kill cut no command"
    people.check_answers()
    people.check_applied_once()
    people.check_documents(after_mixed(people))
    claims = replicas.rows("SELECT status, count(*) FROM processed_messages GROUP BY status")
    assert dict(claims) == {"done": len(people.sent)}, claims
    others = [bot for bot in replicas.bots if bot is not victims[0]]
    taken = [bot for bot in others if any(e.get("event") == "claims.taken_over" for e in bot.logs())]
    assert taken, "no replica took over the killed one's commands"
    # Every command the killed replica had claimed was finished by another.
    for message_id in cut:
        assert owner_pid(replicas.claim_owner(message_id)) != victims[0].process.pid, message_id


def test_two_people_changing_one_integration_through_two_replicas_both_get_their_change(
    tmp_path: Path, postgres_url: str
) -> None:
    """Which replica claims a command is a race; to make the two changes run on two replicas at the
    same time, each replica is paused (SIGSTOP) while the other claims one: the first replica
    claims the disable and is paused in the middle of its write (slow on purpose), holding the
    integration's lock; the second, resumed, claims the `set` and must wait for that lock in the
    database; the first resumes and finishes; then the second reads the disabled document and
    writes its change on top. A pause is far shorter than the lease (10 s here), so no replica
    takes over the other's claim meanwhile."""
    replicas = Replicas(tmp_path, postgres_url, BOT_CLAIM_LEASE="10")
    try:
        one, two = replicas.start(2)
        control = replicas.control
        for user in ("racer-a", "racer-b"):
            control.create_user(user, roles=["user", "admin"])
        control.create_room("race", members=["racer-a", "racer-b", BOT_USERNAME], owner="admin")
        hook = control.create_outgoing_integration(
            "Contended relay",
            channel="#race",
            urls=["https://relay.example.org/contended"],
            trigger_words=["!contended"],
            token="contended-token-1",
            alias="before",
            emoji=":bell:",
            retry_failed_calls=True,
            retry_count=4,
            retry_delay="powers-of-two",
            run_on_edits=True,
        )
        control.set_latency(1.0, "integrations.update")
        writes = control.counters().rest.get("integrations.update", 0)

        os.kill(two.process.pid, signal.SIGSTOP)
        try:
            a = control.post_message("racer-a", "race", f"{PREFIX} disable {hook['_id']} because a")
            wait_until(
                lambda: control.counters().rest.get("integrations.update", 0) > writes,
                REPLY_TIMEOUT,
                "the first replica never wrote",
            )
            assert owner_pid(replicas.claim_owner(a["_id"])) == one.process.pid
            os.kill(one.process.pid, signal.SIGSTOP)  # in the middle of its write, holding the lock
        finally:
            os.kill(two.process.pid, signal.SIGCONT)
        try:
            b = control.post_message("racer-b", "race", f'{PREFIX} set {hook["_id"]} alias="b was here" --yes')
            wait_until(lambda: replicas.claim_owner(b["_id"]) is not None, REPLY_TIMEOUT, "nobody claimed the set")
            assert owner_pid(replicas.claim_owner(b["_id"])) == two.process.pid
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            wait_until(lambda: replicas.rows(waiting)[0][0] >= 1, REPLY_TIMEOUT, "the set never waited for the lock")
        finally:
            os.kill(one.process.pid, signal.SIGCONT)

        assert "Disabled" in replicas.chat.reply_to(a)["msg"]
        assert "✅ Changed" in replicas.chat.reply_to(b, timeout=3 * REPLY_TIMEOUT)["msg"]
        stored = control.integration(hook["_id"])
        assert comparable(stored) == comparable({**hook, "enabled": False, "alias": "b was here"})
        assert replicas.audit_counts() == {a["_id"]: 1, b["_id"]: 1}
        assert replicas.writes()[hook["_id"]] == 2
    finally:
        replicas.close()


def test_every_replica_survives_a_postgresql_restart(replicas: Replicas, postgres_server: PostgresServer) -> None:
    bots = replicas.start(2)
    people = People.create(replicas, 4)
    control, chat = replicas.control, replicas.chat
    before = [p.incoming for p in people.people]
    for person in people.people[:2]:
        assert "Disabled" in chat.command(person.name, person.room, disable(person, person.incoming)[0])["msg"]
    for bot in bots:
        assert replicas.readyz(bot) == 200

    # One command in the middle of its write when the database goes away.
    control.set_latency(1.0, "integrations.update")
    writes = control.counters().rest.get("integrations.update", 0)
    mid = people.people[2]
    in_flight = control.post_message(mid.name, mid.room, set_alias(mid, mid.incoming)[0])
    wait_until(lambda: control.counters().rest.get("integrations.update", 0) > writes, REPLY_TIMEOUT, "it never wrote")
    marks = [bot.mark() for bot in bots]
    postgres_server.stop()
    control.set_latency(0.0, "integrations.update")
    during = [control.post_message(p.name, p.room, disable(p, p.outgoing)[0]) for p in people.people]
    for bot in bots:
        replicas.wait_readyz(bot, 503)
    for message in during:  # each is told it was not run (the notice of one replica or another)
        assert chat.reply_to(message, timeout=TAKEOVER_TIMEOUT)["msg"] == replies.UNRECORDED
    for bot, mark in zip(bots, marks, strict=True):  # the timers' poll met the outage too, and lives on
        bot.wait_for_log("scheduler.state_unavailable", after=mark, timeout=TAKEOVER_TIMEOUT)
    postgres_server.start()

    for bot, mark in zip(bots, marks, strict=True):
        replicas.wait_readyz(bot, 200)
        bot.wait_for_log("state.available_again", after=mark, timeout=TAKEOVER_TIMEOUT)
        bot.wait_for_log("catchup.done", after=mark, timeout=TAKEOVER_TIMEOUT)
    assert all(bot.process.poll() is None for bot in bots), "a replica exited"
    # After it: commands work, on every integration.
    after = [chat.command(p.name, p.room, enable(p, p.incoming)[0]) for p in people.people[:2]]
    assert all("Enabled" in reply["msg"] for reply in after), [r["msg"] for r in after]

    # The one in flight: answered once (after its lease, by the recovery, if the database failed
    # after its write); what it says is what happened.
    said = chat.reply_to(in_flight, timeout=TAKEOVER_TIMEOUT)["msg"]
    wait_until(lambda: replicas.rows(UNSETTLED) == [(0,)], TAKEOVER_TIMEOUT, "a claim never settled")
    assert len(chat.answers_to(in_flight)) == 1
    stored = control.integration(mid.incoming["_id"])
    if said.startswith("✅ Changed"):
        assert stored["alias"] == f"set by {mid.name}"
        assert replicas.audit_counts()[in_flight["_id"]] == 1
    else:
        assert stored["alias"] == mid.incoming["alias"], said
    # Those sent while it was down: told "not run" and not run, never both, never twice.
    audit = replicas.audit_counts()
    for message, person in zip(during, people.people, strict=True):
        answers = chat.answers_to(message)
        story = [f"{bot.process.pid}: {e}" for bot in bots for e in bot.logs() if message["_id"] in str(e)]
        assert [m["msg"] for m in answers] == [replies.UNRECORDED], "\n".join([message["msg"], *story])
        assert audit.get(message["_id"], 0) == 0
        assert control.integration(person.outgoing["_id"])["enabled"] is True
    for original in before:
        now = control.integration(original["_id"])
        want = {**original, "alias": now["alias"]}  # the in-flight set's alias, checked above
        assert comparable(now) == comparable(want), original["name"]


def test_a_command_told_not_run_during_an_outage_is_not_run_by_a_replica_claiming_it_after(
    replicas: Replicas, postgres_server: PostgresServer
) -> None:
    """Was: a replica whose claim of a command waited out the database restart claimed it once the
    database was back and ran it, after another replica, whose claim had failed meanwhile, had
    told the author "I did not run this one; nothing was changed" (seen in the test above, by
    chance). Here the second replica is paused while the database is away (deterministic), and the
    first, which told the author, is killed before the database is back (else it would claim and
    close the command itself): the second reads the command once resumed, after the restart, and
    claims it. A command posted before the database (re)started, or claimed soon after an outage,
    is looked up for that notice first, and not run when it has one."""
    one, two = replicas.start(2)
    control, chat = replicas.control, replicas.chat
    control.create_user("pat", roles=["user", "admin"])
    control.create_room("outage", members=["pat", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Outage hook", channel="#outage", alias="kept")
    # Both replicas are past their start (the key of the answers' ids is read meanwhile).
    assert hook["_id"] in chat.command("pat", "outage", f"{PREFIX} show {hook['_id']}")["msg"]
    os.kill(two.process.pid, signal.SIGSTOP)
    try:
        postgres_server.stop()
        command = control.post_message("pat", "outage", f"{PREFIX} disable {hook['_id']}")
        assert chat.reply_to(command, timeout=TAKEOVER_TIMEOUT)["msg"] == replies.UNRECORDED
        # The replica that told it would claim it once the database is back and close it; gone,
        # it leaves the command to the paused one, which never saw the outage.
        one.process.kill()
        one.wait_exit(20)
        postgres_server.start()
    finally:
        os.kill(two.process.pid, signal.SIGCONT)
    # The paused replica reads the command now and claims it: decided, not run. Unless the pause
    # outlasted the sandbox's heartbeat (15 s of silence, then 15 s for a pong: the notice alone
    # may take 20–30 s on a loaded machine): its session was then closed, and the command comes
    # to it in the catch-up pass after its reconnect, which finds it answered and leaves it
    # unclaimed. Either way it is decided, not run (below).
    finished = "SELECT status FROM processed_messages WHERE message_id = %s"

    def decided() -> bool:
        if [row[0] for row in replicas.rows(finished, (command["_id"],))] == ["done"]:
            return True
        return any(
            e.get("event") == "catchup.already_answered" and e.get("message_id") == command["_id"] for e in two.logs()
        )

    try:
        wait_until(decided, TAKEOVER_TIMEOUT, "the command was never decided")
    except TimeoutError:
        claim = replicas.rows("SELECT status, owner FROM processed_messages WHERE message_id = %s", (command["_id"],))
        story = [f"{bot.process.pid}: {e}" for bot in (one, two) for e in bot.logs() if _tells(e, command["_id"])]
        raise AssertionError("\n".join([f"claim {claim}", *story])) from None
    if replicas.rows(finished, (command["_id"],)):
        assert owner_pid(replicas.claim_owner(command["_id"])) == two.process.pid
    # A barrier: a later command in the room is answered, so whatever came of the first has too.
    later = chat.command("pat", "outage", f"{PREFIX} show {hook['_id']}")
    assert hook["_id"] in later["msg"]
    assert [m["msg"] for m in chat.answers_to(command)] == [replies.UNRECORDED]
    assert control.integration(hook["_id"])["enabled"] is True
    assert replicas.audit_counts().get(command["_id"], 0) == 0


def test_a_replica_paused_past_its_lease_mid_command_writes_nothing_once_another_took_it_over(
    replicas: Replicas,
) -> None:
    """Was: a replica stopped (SIGSTOP, a long GC pause, a frozen VM) while it held a command and
    the integration's lock lost the claim to another once its lease ran out; resumed, it went on
    and wrote the command anyway, while the other, which had taken it over, ran it too. Its write
    intent is now recorded only under a claim it still holds: it stops before writing, says
    nothing, and lets the integration go to the replica that owns the command."""
    one, two = replicas.start(2)
    control, chat = replicas.control, replicas.chat
    control.create_user("kim", roles=["user", "admin"])
    control.create_room("fenced", members=["kim", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Fenced hook", channel="#fenced", alias="kept")
    assert "✅ Changed" in chat.command("kim", "fenced", f"{PREFIX} set {hook['_id']} alias=first --yes")["msg"]
    # Changed since by someone else: the next command's read is made again under the lock (slowly).
    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    control.update_integration(hook["_id"], {"alias": "theirs", "_updatedAt": later})
    writes = replicas.writes()[hook["_id"]]
    control.set_latency(1.5, "integrations.get")
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    os.kill(two.process.pid, signal.SIGSTOP)
    try:
        command = control.post_message("kim", "fenced", f"{PREFIX} set {hook['_id']} alias=fenced --yes")
        wait_until(lambda: replicas.rows(held)[0][0] == 1, 10, "the command never took the integration's lock")
        assert owner_pid(replicas.claim_owner(command["_id"])) == one.process.pid
        os.kill(one.process.pid, signal.SIGSTOP)  # holding the claim and the lock, past its lease
    finally:
        os.kill(two.process.pid, signal.SIGCONT)
    try:
        control.clear_faults()
        wait_until(
            lambda: owner_pid(replicas.claim_owner(command["_id"])) == two.process.pid,
            TAKEOVER_TIMEOUT,
            "the paused replica's claim was never taken over",
        )
    finally:
        os.kill(one.process.pid, signal.SIGCONT)
    # Resumed, `one` has its read and is about to write: it stops; `two` gets the lock and runs it.
    one.wait_for_log("command.taken_over", where=lambda e: e.get("message_id") == command["_id"])
    answer = chat.reply_to(command, timeout=TAKEOVER_TIMEOUT)
    assert answer["msg"].startswith("✅ Changed"), answer["msg"]
    assert "`theirs` → `fenced`" in answer["msg"]
    barrier = chat.command("kim", "fenced", f"{PREFIX} show {hook['_id']}")  # both have moved on
    assert "fenced" in barrier["msg"]
    assert replicas.writes()[hook["_id"]] == writes + 1
    assert [m["_id"] for m in chat.answers_to(command)] == [answer["_id"]]
    assert control.integration(hook["_id"])["alias"] == "fenced"
    assert replicas.audit_counts()[command["_id"]] == 1
    assert [e["outcome"] for e in one.command_events(command["_id"])] == ["taken-over"]


def _tells(entry: dict[str, Any], message_id: str) -> bool:
    """A log entry that helps tell what became of a command after an outage."""
    event = str(entry.get("event", ""))
    return message_id in str(entry) or event.startswith(("realtime.", "catchup.", "state.", "recovery.", "claims."))


def test_a_set_previewed_through_one_replica_is_confirmed_through_another(replicas: Replicas) -> None:
    """The preview is answered by the first replica (the second paused), the `confirm` run by the
    second (the first paused): the change is applied once, as previewed, and each is answered once."""
    one, two = replicas.start(2)
    control, chat = replicas.control, replicas.chat
    control.create_user("sam", roles=["user", "admin"])
    control.create_room("confirming", members=["sam", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Confirmed hook", channel="#confirming", alias="old", emoji=":bell:")
    with replicas.paused(two):
        preview = chat.post("sam", "confirming", f'{PREFIX} set {hook["_id"]} alias="new alias"')
        shown = chat.reply_to(preview)["msg"]
    code = re.search(r"confirm ([A-Z0-9]{4})", shown)
    assert code is not None, shown
    assert control.integration(hook["_id"])["alias"] == "old"  # a preview changes nothing
    with replicas.paused(one):
        confirm = chat.post("sam", "confirming", f"{PREFIX} confirm {code.group(1)}")
        applied = chat.reply_to(confirm)["msg"]
    assert applied.startswith("✅ Changed"), applied
    assert owner_pid(replicas.claim_owner(preview["_id"])) == one.process.pid
    assert owner_pid(replicas.claim_owner(confirm["_id"])) == two.process.pid
    assert comparable(control.integration(hook["_id"])) == comparable({**hook, "alias": "new alias"})
    assert replicas.writes()[hook["_id"]] == 1
    # Each answered once (a barrier first: both replicas have read both commands by then).
    chat.command("sam", "confirming", f"{PREFIX} show {hook['_id']}")
    for message in (preview, confirm):
        assert len(chat.answers_to(message)) == 1, message["msg"]


def test_a_timed_disable_outlives_both_replicas_and_is_reenabled_once_by_the_fresh_ones(replicas: Replicas) -> None:
    """Set through one of two replicas, both killed with SIGKILL before it is due: the two replicas
    started afterwards find it in the database and exactly one of them turns the integration back
    on, not before it was due, with one write, one audit row and one notice."""
    first = replicas.start(2)
    control, chat = replicas.control, replicas.chat
    control.create_user("tim", roles=["user", "admin"])
    control.create_room("timed", members=["tim", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Timed hook", channel="#timed", alias="kept", emoji=":bell:")
    disabled = chat.command("tim", "timed", f"{PREFIX} disable {hook['_id']} for 3s because a timed test")["msg"]
    assert "Disabled" in disabled, disabled
    (due,) = [row[0] for row in replicas.rows("SELECT due_at FROM timers WHERE integration_id = %s", (hook["_id"],))]
    for bot in first:
        replicas.kill(bot)
    replicas.start(2)

    label = f"`{hook['name']}`"
    notice = control.wait_for_message(
        "timed",
        lambda m: m["u"]["username"] == BOT_USERNAME and label in m["msg"] and "back on" in m["msg"],
        timeout=TAKEOVER_TIMEOUT,
    )
    stored = control.integration(hook["_id"])
    assert comparable(stored) == comparable(hook)  # on again, nothing else changed
    ended = "SELECT state, ended_at FROM timers WHERE integration_id = %s"
    wait_until(lambda: replicas.rows(ended, (hook["_id"],))[0][0] == "expired", REPLY_TIMEOUT, "the timer never ended")
    ((_state, ended_at),) = replicas.rows(ended, (hook["_id"],))
    assert ended_at >= due  # not before it was due
    # Once: a barrier (a later command answered) and then one write, one row, one notice.
    chat.command("tim", "timed", f"{PREFIX} show {hook['_id']}")
    assert replicas.writes()[hook["_id"]] == 2  # the disable and the re-enable
    actions = [row[0] for row in replicas.rows("SELECT action FROM audit WHERE integration_id = %s", (hook["_id"],))]
    assert sorted(actions) == sorted(["disable", "re-enable"]), actions
    notices = [m for m in control.messages("timed") if m["u"]["username"] == BOT_USERNAME and "back on" in m["msg"]]
    assert [m["_id"] for m in notices] == [notice["_id"]]


def test_a_bulk_disable_previewed_through_one_replica_and_confirmed_through_another_comes_back_once(
    replicas: Replicas,
) -> None:
    """`disable all in #room for 3s` previewed by one replica, `yes` run by the other: each member
    is switched off once, and back on once when due (whichever replica fires it), with one notice
    for the group."""
    one, two = replicas.start(2)
    control, chat = replicas.control, replicas.chat
    control.create_user("bea", roles=["user", "admin"])
    control.create_room("bulk", members=["bea", BOT_USERNAME], owner="admin")
    control.create_room("bulk-target", members=["bea", BOT_USERNAME], owner="admin")
    hooks = [
        control.create_incoming_integration(f"Bulk hook {n}", channel="#bulk-target", alias="kept", emoji=":bell:")
        for n in range(3)
    ]
    with replicas.paused(two):
        preview = chat.post("bea", "bulk", f"{PREFIX} disable all in #bulk-target for 3s because replicas")
        shown = chat.reply_to(preview)["msg"]
    assert "Switch off 3 integrations" in shown, shown
    with replicas.paused(one):
        confirm = chat.post("bea", "bulk", f"{PREFIX} yes")
        applied = chat.reply_to(confirm)["msg"]
    assert "Switched off 3 of 3" in applied, applied
    assert owner_pid(replicas.claim_owner(confirm["_id"])) == two.process.pid

    notice = control.wait_for_message(
        "bulk",
        lambda m: m["u"]["username"] == BOT_USERNAME and "3 integrations are back on" in m["msg"],
        timeout=TAKEOVER_TIMEOUT,
    )
    for hook in hooks:
        assert comparable(control.integration(hook["_id"])) == comparable(hook)
    ended = "SELECT count(*) FROM timers WHERE group_id IS NOT NULL AND state = 'expired'"
    wait_until(lambda: replicas.rows(ended)[0][0] == 3, REPLY_TIMEOUT, "the members' timers never ended")
    chat.command("bea", "bulk", f"{PREFIX} show {hooks[0]['_id']}")  # a barrier: both replicas are past it
    for hook in hooks:
        assert replicas.writes()[hook["_id"]] == 2  # off once, on once
    notices = [m for m in control.messages("bulk") if m["u"]["username"] == BOT_USERNAME and "back on" in m["msg"]]
    assert [m["_id"] for m in notices] == [notice["_id"]]
