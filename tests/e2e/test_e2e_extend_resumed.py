"""`extend` cut by SIGKILL between the timer's new end and its audit row, then taken over by a fresh
`integrations-bot run`: the end moves once, the audit row exists once, the caller is answered once.

`extend` writes nothing to Rocket.Chat, so the write journal cannot tell it already acted; the timer
row names the commands that set its end (bot/state/timer_store.py). To land the kill exactly between
the two statements, the test holds a lock on the `audit` table of the shared PostgreSQL: the
timer's UPDATE goes through, the audit row's INSERT waits. Once the timer shows the command and
the INSERT is seen waiting (pg_locks), the bot is killed and the INSERT's server process ended
with it (as a dead client's statement is lost), then the lock is let go and a new replica starts:
it takes the dead one's claim over once its lease runs out and resumes the command.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from e2e_support import BOT_USERNAME, REPLY_TIMEOUT
from replica_support import TAKEOVER_TIMEOUT, WAITING_ON_AUDIT, Replicas, running, wait_until

pytestmark = pytest.mark.e2e

PREFIX = "!integration"


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    with running(tmp_path, postgres_url) as replicas:
        yield replicas


def test_an_extend_killed_before_its_audit_row_is_resumed_without_extending_again(replicas: Replicas) -> None:
    (bot,) = replicas.start(1)
    control, chat = replicas.control, replicas.chat
    control.create_user("tess", roles=["user", "admin"])
    control.create_room("extended", members=["tess", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Extended hook", channel="#extended")
    disabled = chat.command("tess", "extended", f"{PREFIX} disable {hook['_id']} for 30m")["msg"]
    assert "Disabled" in disabled, disabled
    due = "SELECT due_at, extensions_json FROM timers WHERE integration_id = %s AND state = 'active'"
    ((before, _none),) = replicas.rows(due, (hook["_id"],))

    with psycopg.connect(replicas.state_url, autocommit=False) as holder:
        holder.execute("LOCK TABLE audit IN SHARE MODE")  # reads pass; the audit row's INSERT waits
        command = chat.post("tess", "extended", f"{PREFIX} extend {hook['_id']} 1h")

        def cut_between_the_two() -> bool:
            ((now_due, _extensions),) = replicas.rows(due, (hook["_id"],))
            return now_due != before and bool(replicas.rows(WAITING_ON_AUDIT))

        wait_until(cut_between_the_two, REPLY_TIMEOUT, "the extend never reached its audit row")
        replicas.kill(bot)
        # The dead client's statement is lost with it (a server process waiting on a lock does not
        # notice its client is gone until it gets the lock: ended here, as the OS would have cut it).
        for (pid,) in replicas.rows(WAITING_ON_AUDIT):
            replicas.rows("SELECT pg_terminate_backend(%s)", (pid,))
        holder.rollback()

    assert not chat.has_reply(command)
    assert replicas.rows("SELECT count(*) FROM audit WHERE message_id = %s", (command["_id"],)) == [(0,)]
    ((moved, _extensions),) = replicas.rows(due, (hook["_id"],))
    assert moved == pytest.approx(before + 3600, abs=0.01)  # moved once, before the kill

    replicas.start(1)  # takes the claim over once its lease ran out, and resumes the command
    answer = chat.reply_to(command, timeout=TAKEOVER_TIMEOUT)
    assert "stays disabled" in answer["msg"], answer["msg"]
    ((after, _extensions),) = replicas.rows(due, (hook["_id"],))
    assert after == pytest.approx(before + 3600, abs=0.01)  # not a second hour
    rows = replicas.rows("SELECT action, until_at FROM audit WHERE message_id = %s", (command["_id"],))
    assert rows == [("extend", pytest.approx(after, abs=0.01))]
    wait_until(lambda: replicas.unfinished_claims(bot) == [], REPLY_TIMEOUT, "the claim was never finished")
    answers = [m for m in control.messages("extended") if m["_id"] in set(chat.answer_ids(command))]
    assert len(answers) == 1
    assert control.integration(hook["_id"])["enabled"] is False
