"""Issue 3, done-when 7, and the process's life: dropped sockets, a restarting server, SIGTERM with a
command in flight, refused credentials, secrets kept out of the output.

Each test has its own sandbox and bot process (`fresh_workspace`): they disturb both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from e2e_support import BOT_USERNAME, REPLY_TIMEOUT, BotProcess, Workspace, bot_environment, start_sandbox, unique_name

pytestmark = pytest.mark.e2e


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def test_after_every_websocket_is_dropped_the_next_command_works_within_10_s(fresh_workspace: Workspace) -> None:
    workspace, control = fresh_workspace, fresh_workspace.control
    hook = control.create_incoming_integration(unique_name("Blip"), channel="#general")
    assert control.drop_connections() >= 1
    # Sent at once, while the bot is still reconnecting: a functional deadline, not a benchmark.
    reply = workspace.chat.command("admin", "general", f"!integration disable {hook['_id']}", timeout=10.0)
    assert "Disabled" in reply["msg"], reply["msg"]
    assert control.integration(hook["_id"])["enabled"] is False
    # And again: a second drop right after the first recovery is survived the same way.
    assert control.drop_connections() >= 0
    reply = workspace.chat.command("admin", "general", f"!integration enable {hook['_id']}", timeout=10.0)
    assert "Enabled" in reply["msg"], reply["msg"]


def test_a_server_that_refuses_connections_for_2_s_gets_the_bot_back(fresh_workspace: Workspace) -> None:
    workspace, control = fresh_workspace, fresh_workspace.control
    hook = control.create_incoming_integration(unique_name("Restart"), channel="#general")
    mark = workspace.bot.mark()
    control.refuse_connections(2.0)
    control.drop_connections()
    command = workspace.chat.post("admin", "general", f"!integration disable {hook['_id']}")
    # The refusal lasts 2 s and the reconnect backoff is jittered: allow the refusal plus 10 s.
    # (The answer may come from a REST catch-up pass before the websocket is back.)
    reply = workspace.chat.reply_to(command, timeout=2.0 + REPLY_TIMEOUT)
    assert "Disabled" in reply["msg"], reply["msg"]
    workspace.bot.wait_for_log("realtime.reconnected", after=mark, timeout=2.0 + REPLY_TIMEOUT)
    # The realtime connection is back: a later command is answered as usual.
    assert "Enabled" in workspace.chat.command("admin", "general", f"!integration enable {hook['_id']}")["msg"]


def test_sigterm_stops_cleanly_and_answers_the_command_in_flight(fresh_workspace: Workspace) -> None:
    workspace, control = fresh_workspace, fresh_workspace.control
    hook = control.create_outgoing_integration(
        unique_name("Slow"), channel="#general", urls=["https://slow.example.org/x"], token="slow-token-1"
    )
    control.set_latency(1.0, "integrations.update")
    command = workspace.chat.post("admin", "general", f"!integration disable {hook['_id']}")
    wait_until(
        lambda: control.counters().rest.get("integrations.update", 0) >= 1, REPLY_TIMEOUT, "the update never started"
    )
    assert workspace.bot.terminate() == 0
    answer_ids = workspace.chat.answer_ids(command)
    (reply,) = [m for m in control.messages("general") if m["_id"] in answer_ids]  # answered before it ended
    assert "Disabled" in reply["msg"], reply["msg"]
    assert control.integration(hook["_id"])["enabled"] is False
    events = [entry["event"] for entry in workspace.bot.logs()]
    assert "bot.draining" in events and events[-1] == "bot.stopped", events[-5:]


@pytest.mark.parametrize("credentials", ["token", "password"])
def test_refused_credentials_exit_non_zero_with_one_clear_line_and_no_secret(tmp_path: Path, credentials: str) -> None:
    server, seed = start_sandbox()
    try:
        bot = seed["users"][BOT_USERNAME]
        secret = "not-the-token-" + "s3cr3t" * 5
        if credentials == "token":
            settings = {"ROCKETCHAT_USER_ID": bot["userId"], "ROCKETCHAT_AUTH_TOKEN": secret}
        else:
            settings = {"ROCKETCHAT_USERNAME": BOT_USERNAME, "ROCKETCHAT_PASSWORD": secret}
        process = BotProcess(bot_environment(server.url, tmp_path, **settings), tmp_path)
        code = process.wait_exit(REPLY_TIMEOUT)
    finally:
        server.stop()
    assert code == 1
    assert secret not in process.output
    errors = [entry for entry in process.logs() if entry.get("level") in ("error", "critical")]
    assert len(errors) == 1, process.output
    assert errors[0]["event"] == "bot.auth_failed" and "credentials" in json.dumps(errors[0]), errors[0]


def test_secrets_never_reach_chat_or_the_log(fresh_workspace: Workspace) -> None:
    workspace, control = fresh_workspace, fresh_workspace.control
    webhook_token = "outgoing-webhook-secret-" + "9" * 12
    outgoing = control.create_outgoing_integration(
        unique_name("Secretive"),
        channel="#general",
        urls=[f"https://hooks.example.org/services/{webhook_token}"],
        token=webhook_token,
        script="class Script { prepare_outgoing_request({ request }) { return request; } }",
        script_enabled=True,
    )
    incoming = control.create_incoming_integration(unique_name("Secretive in"), channel="#general")
    secrets = [webhook_token, incoming["token"], workspace.bot_credentials["authToken"]]
    texts = []
    for command in (
        f"!integration show {outgoing['_id']}",
        f"!integration show {incoming['_id']}",
        "!integration list Secretive",
        f"!integration disable {outgoing['_id']} because {webhook_token[:6]}",
        f"!integration disable {incoming['_id']}",
    ):
        texts.append(workspace.chat.command("admin", "general", command)["msg"])
    assert "Disabled" in texts[-1] and "Disabled" in texts[-2]
    for secret in secrets:
        assert not any(secret in text for text in texts)
        assert secret not in workspace.bot.output
    assert "prepare_outgoing_request" not in "\n".join(texts)  # scripts are shown by presence only


def test_a_second_bot_on_the_same_state_file_refuses_to_start_and_the_first_answers_once(
    fresh_workspace: Workspace, tmp_path: Path
) -> None:
    """Was: a second copy started by mistake on the same file ran too (its own session, timers and
    confirmations: a timed re-enable fired twice). Now it exits 2 with one line naming the first,
    and the first goes on answering."""
    workspace, control = fresh_workspace, fresh_workspace.control
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = BotProcess(dict(workspace.bot.env), second_dir)  # same settings, same BOT_STATE_DB
    assert second.wait_exit(REPLY_TIMEOUT) == 2
    errors = [entry for entry in second.logs() if entry.get("level") in ("error", "critical")]
    assert len(errors) == 1 and errors[0]["event"] == "bot.config_error", second.output
    assert f"in use by another integrations-bot (pid {workspace.bot.process.pid})" in errors[0]["error"]

    hook = control.create_incoming_integration(unique_name("Once"), channel="#general")
    command = workspace.chat.post("admin", "general", f"!integration disable {hook['_id']}")
    reply = workspace.chat.reply_to(command)
    assert "Disabled" in reply["msg"], reply["msg"]
