"""A `disable` cut by SIGKILL after its write landed and before its audit row, its message then
edited by the caller, taken over by a fresh `integrations-bot run`: the change is audited once,
never written again, and the caller is told truthfully (once).

Was: the restart answered "I did not run it again: it was edited since" (the change had been
made), or, when the answer had gone out before the kill, said nothing; either way no audit row,
so `history` and `undo` did not know the change. The kill lands between the write and the audit
row as in tests/e2e/test_e2e_extend_resumed.py: a lock on the `audit` table of the shared
PostgreSQL holds the audit row's INSERT until the bot is killed.

And when the message is deleted and another user posts one with its id instead (any unused id may
be taken): that is not the command, and nothing of it is resumed as theirs.
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


@pytest.mark.parametrize("answered", [False, True], ids=["unanswered", "answered-before-the-kill"])
def test_an_edited_command_killed_after_its_write_is_audited_and_answered_as_it_ran(
    replicas: Replicas, answered: bool
) -> None:
    (bot,) = replicas.start(1)
    control, chat = replicas.control, replicas.chat
    control.create_user("edna", roles=["user", "admin"])
    control.create_room("edited", members=["edna", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Edited hook", channel="#edited")
    chat.command("edna", "edited", f"{PREFIX} help")  # the key of the answers' ids exists
    if not answered:
        control.fail_next("chat.sendMessage", 1000, "500")  # its answer cannot be stored before the kill

    with psycopg.connect(replicas.state_url, autocommit=False) as holder:
        holder.execute("LOCK TABLE audit IN SHARE MODE")  # reads pass; the audit row's INSERT waits
        command = chat.post("edna", "edited", f"{PREFIX} disable {hook['_id']} because it floods")

        def written_not_audited() -> bool:
            return control.integration(hook["_id"])["enabled"] is False and bool(replicas.rows(WAITING_ON_AUDIT))

        wait_until(written_not_audited, REPLY_TIMEOUT, "the disable never reached its audit row")
        if answered:
            wait_until(lambda: chat.has_reply(command), REPLY_TIMEOUT, "the disable was never answered")
        replicas.kill(bot)
        for (pid,) in replicas.rows(WAITING_ON_AUDIT):  # the dead client's statement is lost with it
            replicas.rows("SELECT pg_terminate_backend(%s)", (pid,))
        holder.rollback()
    control.clear_faults()
    assert chat.has_reply(command) is answered
    control.edit_message(command["_id"], f"{PREFIX} enable {hook['_id']}")
    writes = replicas.writes()[hook["_id"]]

    replicas.start(1)  # takes the claim over once its lease ran out, and resumes it as it ran
    audited = "SELECT action, reason FROM audit WHERE message_id = %s"
    wait_until(lambda: replicas.rows(audited, (command["_id"],)) != [], TAKEOVER_TIMEOUT, "never audited")
    assert replicas.rows(audited, (command["_id"],)) == [("disable", "it floods")]
    status = "SELECT status FROM processed_messages WHERE message_id = %s"
    wait_until(lambda: replicas.rows(status, (command["_id"],)) == [("done",)], REPLY_TIMEOUT, "never finished")
    (answer,) = chat.answers_to(command)  # one answer
    if answered:
        assert "edited" not in answer["msg"], answer["msg"]  # the one it had: nothing more is said
    else:
        assert answer["msg"].startswith("✏️ Your message was edited after I ran it"), answer["msg"]
    assert "Disabled" in answer["msg"] and "did not run" not in answer["msg"], answer["msg"]
    assert replicas.writes()[hook["_id"]] == writes  # not written again
    assert control.integration(hook["_id"])["enabled"] is False
    history = chat.command("edna", "edited", f"{PREFIX} history {hook['_id']}")["msg"]
    assert "disabled" in history and "it floods" in history, history


def test_another_users_message_at_the_id_of_a_killed_command_is_not_resumed_as_theirs(replicas: Replicas) -> None:
    """The same kill, unanswered; then edna's message is deleted and mallory posts hers with its id
    (any unused id may be taken) and its text. The intent the bot stored names edna as its author:
    mallory's message is not that command. Was: resumed as mallory's, audited and answered as her
    change (`history` named her, and `undo` was hers)."""
    (bot,) = replicas.start(1)
    control, chat = replicas.control, replicas.chat
    control.create_user("edna", roles=["user", "admin"])
    control.create_user("mallory", roles=["user", "admin"])
    control.create_room("replaced", members=["edna", "mallory", BOT_USERNAME], owner="admin")
    hook = control.create_incoming_integration("Replaced hook", channel="#replaced")
    chat.command("edna", "replaced", f"{PREFIX} help")  # the key of the answers' ids exists
    control.fail_next("chat.sendMessage", 1000, "500")  # its answer cannot be stored before the kill
    said = f"{PREFIX} disable {hook['_id']} because it floods"

    with psycopg.connect(replicas.state_url, autocommit=False) as holder:
        holder.execute("LOCK TABLE audit IN SHARE MODE")  # reads pass; the audit row's INSERT waits
        command = chat.post("edna", "replaced", said)

        def written_not_audited() -> bool:
            return control.integration(hook["_id"])["enabled"] is False and bool(replicas.rows(WAITING_ON_AUDIT))

        wait_until(written_not_audited, REPLY_TIMEOUT, "the disable never reached its audit row")
        replicas.kill(bot)
        for (pid,) in replicas.rows(WAITING_ON_AUDIT):  # the dead client's statement is lost with it
            replicas.rows("SELECT pg_terminate_backend(%s)", (pid,))
        holder.rollback()
    control.clear_faults()
    control.delete_message(command["_id"])
    control.post_message("mallory", "replaced", said, message_id=command["_id"])
    writes = replicas.writes()[hook["_id"]]

    replicas.start(1)  # takes the claim over once its lease ran out, and closes it
    status = "SELECT status FROM processed_messages WHERE message_id = %s"
    wait_until(lambda: replicas.rows(status, (command["_id"],)) != [("claimed",)], TAKEOVER_TIMEOUT, "never closed")
    assert replicas.rows("SELECT actor_username FROM audit WHERE message_id = %s", (command["_id"],)) == []
    assert chat.answers_to(command) == []  # mallory is told nothing (nor is edna: her message is gone)
    assert replicas.writes()[hook["_id"]] == writes  # not written again
    assert control.integration(hook["_id"])["enabled"] is False  # the change that landed stays
