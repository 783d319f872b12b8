"""The demo's orchestration: real sandbox process, a stand-in bot process, a script, and the clean-up.

The stand-in (`fake_demo_bot.py`) is configured and judged exactly like the real bot: environment
variables in, a `bot.ready` JSON log line out, answers in the chat, SIGTERM to stop.
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import sys
from pathlib import Path

import pytest

from bot.demo import launcher as demo
from bot.demo.chat import DemoUser, Workspace
from bot.demo.launcher import DemoOptions, DemoProcesses, bot_environment, parse_options, ready_in
from sandbox.control import SandboxClient

FAKE_BOT = [sys.executable, str(Path(__file__).parent.parent / "fake_demo_bot.py")]


class Pipe(io.StringIO):
    """A stdin that is not a terminal."""

    def isatty(self) -> bool:
        return False


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def run_demo(
    options: DemoOptions, *, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str, Path | None]:
    out, err = io.StringIO(), io.StringIO()
    status = demo.run(options, bot_command=FAKE_BOT, stdin=Pipe(stdin), stdout=out, stderr=err)
    found = re.search(r"log: (\S+)/bot\.log", err.getvalue())
    return status, out.getvalue(), err.getvalue(), Path(found.group(1)) if found else None


def test_a_script_runs_against_the_started_bot_and_everything_is_removed(tmp_path: Path) -> None:
    script = tmp_path / "try.txt"
    script.write_text("!integration help\n:user alice\n:dm\nshow Guggy\n")
    status, out, err, state_dir = run_demo(DemoOptions(script=str(script), timeout=10))

    assert status == 0, err
    assert out.splitlines() == [
        "== you are admin in #general",
        "[#general] admin: !integration help",
        "[#general] integrations-bot: echo: !integration help",
        ":user alice",
        "== you are alice in #general",
        ":dm",
        "== you are alice in @integrations-bot",
        "[@integrations-bot] alice: show Guggy",
        "[@integrations-bot] integrations-bot: echo: show Guggy",
    ]
    assert "the bot is ready" in err
    assert state_dir is not None and not state_dir.exists()


def test_lines_piped_on_stdin_are_a_script_and_an_unanswered_one_fails_the_run() -> None:
    status, out, _err, _state = run_demo(DemoOptions(timeout=1), stdin="say it\nno answer for this\n")
    assert status == 1
    assert "[#general] integrations-bot: echo: say it" in out
    assert "!! no answer from integrations-bot within 1 s" in out


def test_keep_state_keeps_logs_credentials_and_the_bot_state_location(tmp_path: Path) -> None:
    status, _out, err, state_dir = run_demo(DemoOptions(keep_state=True), stdin="hello\n")
    try:
        assert status == 0
        assert state_dir is not None and f"kept {state_dir}" in err
        assert {p.name for p in state_dir.iterdir()} >= {"credentials.json", "bot.log", "sandbox.log"}
        ready = [line for line in (state_dir / "bot.log").read_text().splitlines() if "bot.ready" in line]
        assert ready_in(ready) and str(state_dir / "bot-state.sqlite3") in ready[0]  # BOT_STATE_DB in the dir
        url = Workspace.load(state_dir / "credentials.json").url
        port = int(url.rsplit(":", 1)[1])
        assert not listening(port)  # the sandbox was stopped
    finally:
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)


def test_a_bot_that_dies_while_starting_is_reported_and_the_sandbox_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BOT_CRASH", "1")
    status, out, err, state_dir = run_demo(DemoOptions(keep_state=True), stdin="hello\n")
    try:
        assert status == 1
        assert out == ""
        assert "the bot stopped while starting (exit status 3)" in err
        assert "refusing to start" in err  # the end of its log, so the reason is on screen
        assert "Traceback" not in err
        assert state_dir is not None
        port = int(Workspace.load(state_dir / "credentials.json").url.rsplit(":", 1)[1])
        assert not listening(port)
    finally:
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)


def test_a_missing_script_fails_before_anything_starts(tmp_path: Path) -> None:
    status, out, err, state_dir = run_demo(DemoOptions(script=str(tmp_path / "missing.txt")))
    assert status == 1
    assert out == ""
    assert err.strip().splitlines() == [
        f"demo: cannot read the script {tmp_path / 'missing.txt'}: No such file or directory"
    ]
    assert state_dir is None


def test_legacy_update_reaches_the_sandbox(tmp_path: Path) -> None:
    processes = DemoProcesses(tmp_path, DemoOptions(legacy_update=True))
    try:
        workspace = processes.start_sandbox()
        with SandboxClient(workspace.control_url, workspace.control_secret) as control:
            assert control.configure()["update_mode"] == "legacy"
    finally:
        processes.stop()
    assert processes.sandbox is not None and processes.sandbox.returncode == 0  # stopped by SIGTERM, cleanly


def test_the_bot_gets_the_demo_settings_and_none_of_the_operators() -> None:
    workspace = Workspace(
        url="http://127.0.0.1:4000",
        users={"integrations-bot": DemoUser("integrations-bot", "BOTID", "BOT-TOKEN", ("bot",))},
        rooms={},
        control_url="http://127.0.0.1:4000",
        control_secret="s",
    )
    base = {
        "PATH": "/usr/bin",
        "ROCKETCHAT_URL": "https://prod.example.org",
        "ROCKETCHAT_USERNAME": "ops",
        "ROCKETCHAT_PASSWORD": "prod-password",
        "BOT_AUDIT_ROOM": "audit",
        "BOT_LOG_LEVEL": "DEBUG",
    }
    env = bot_environment(workspace, Path("/tmp/demo-x"), base)
    assert env["PATH"] == "/usr/bin"
    assert env["ROCKETCHAT_URL"] == "http://127.0.0.1:4000"
    assert (env["ROCKETCHAT_USER_ID"], env["ROCKETCHAT_AUTH_TOKEN"]) == ("BOTID", "BOT-TOKEN")
    assert env["BOT_STATE_DB"] == "/tmp/demo-x/bot-state.sqlite3"
    assert env["BOT_LOG_FORMAT"] == "json"
    assert env["BOT_LOG_LEVEL"] == "DEBUG"
    assert not {"ROCKETCHAT_USERNAME", "ROCKETCHAT_PASSWORD", "BOT_AUDIT_ROOM"} & set(env)


def test_ready_means_the_bot_ready_event_in_a_json_line() -> None:
    assert ready_in(['{"event": "realtime.ready"}', "not json", '{"event": "bot.ready", "level": "info"}'])
    assert not ready_in(['{"event": "realtime.ready"}', "bot.ready in plain text", "[1, 2]"])


def test_options() -> None:
    assert parse_options([]) == DemoOptions()
    assert parse_options(
        ["--script", "-", "--port", "3000", "--timeout", "2.5", "--keep-state", "--legacy-update"]
    ) == (DemoOptions(legacy_update=True, script="-", port=3000, keep_state=True, timeout=2.5))
    for wrong in (["--timeout", "0"], ["--port", "70000"], ["--bogus"]):
        with pytest.raises(SystemExit) as exited:
            parse_options(wrong)
        assert exited.value.code == 2
