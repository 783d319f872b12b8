"""The `integrations-bot` console script's contract, run as the installed script in a clean environment.

What an operator sees: no command → help and status 2; a configuration mistake → exactly one line
on stderr that names the variable, status 2, no traceback, never the secret that was set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("integrations-bot")
FAKE_TOKEN = "FAKE-TOKEN-9c1e5b7d2a"  # recognisable: it must never be printed
FAKE_PASSWORD = "FAKE-PASSWORD-4e8f0a"


def invoke(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the script from an empty directory (no .env) with only `env` besides PATH/HOME."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(SCRIPT), *args],
        env={**clean, **(env or {})},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_script_is_installed_next_to_the_interpreter() -> None:
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)


def test_no_command_prints_help_and_exits_2(tmp_path: Path) -> None:
    result = invoke(tmp_path)
    assert result.returncode == 2
    assert "usage: integrations-bot" in result.stdout
    for command in ("run", "check", "sandbox", "demo"):
        assert command in result.stdout
    assert "Traceback" not in result.stderr


GOOD_URL = "https://chat.example.org"
TOKEN_PAIR = {"ROCKETCHAT_USER_ID": "bot-user-id", "ROCKETCHAT_AUTH_TOKEN": FAKE_TOKEN}

CONFIG_MISTAKES = {
    "missing url": ({**TOKEN_PAIR}, "ROCKETCHAT_URL"),
    "url without scheme": ({"ROCKETCHAT_URL": "chat.example.org", **TOKEN_PAIR}, "ROCKETCHAT_URL"),
    "url with another scheme": ({"ROCKETCHAT_URL": f"ftp://u:{FAKE_PASSWORD}@host", **TOKEN_PAIR}, "ROCKETCHAT_URL"),
    "token without user id": ({"ROCKETCHAT_URL": GOOD_URL, "ROCKETCHAT_AUTH_TOKEN": FAKE_TOKEN}, "ROCKETCHAT_USER_ID"),
    "user id without token": ({"ROCKETCHAT_URL": GOOD_URL, "ROCKETCHAT_USER_ID": "abc"}, "ROCKETCHAT_AUTH_TOKEN"),
    "password without username": (
        {"ROCKETCHAT_URL": GOOD_URL, "ROCKETCHAT_PASSWORD": FAKE_PASSWORD},
        "ROCKETCHAT_USERNAME",
    ),
    "username without password": ({"ROCKETCHAT_URL": GOOD_URL, "ROCKETCHAT_USERNAME": "bot"}, "ROCKETCHAT_PASSWORD"),
    "no credentials at all": ({"ROCKETCHAT_URL": GOOD_URL}, "ROCKETCHAT_AUTH_TOKEN"),
    "port not a number": ({"ROCKETCHAT_URL": GOOD_URL, **TOKEN_PAIR, "BOT_HTTP_PORT": "http"}, "BOT_HTTP_PORT"),
    "port out of range": ({"ROCKETCHAT_URL": GOOD_URL, **TOKEN_PAIR, "BOT_HTTP_PORT": "70000"}, "BOT_HTTP_PORT"),
    "port negative": ({"ROCKETCHAT_URL": GOOD_URL, **TOKEN_PAIR, "BOT_HTTP_PORT": "-1"}, "BOT_HTTP_PORT"),
    "no commands per caller": (
        {"ROCKETCHAT_URL": GOOD_URL, **TOKEN_PAIR, "BOT_CALLER_CONCURRENCY": "0"},
        "BOT_CALLER_CONCURRENCY",
    ),
    "caller queue not a number": (
        {"ROCKETCHAT_URL": GOOD_URL, **TOKEN_PAIR, "BOT_CALLER_QUEUE": "lots"},
        "BOT_CALLER_QUEUE",
    ),
    "allowed bot with a space": (
        {"ROCKETCHAT_URL": GOOD_URL, **TOKEN_PAIR, "BOT_ALLOWED_BOTS": "deploy bot"},
        "BOT_ALLOWED_BOTS",
    ),
}


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("case", sorted(CONFIG_MISTAKES))
def test_a_configuration_mistake_is_one_line_naming_the_variable(tmp_path: Path, command: str, case: str) -> None:
    env, variable = CONFIG_MISTAKES[case]
    result = invoke(tmp_path, command, env=env)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert lines[0].startswith("integrations-bot: ")
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert FAKE_TOKEN not in output and FAKE_PASSWORD not in output


def test_an_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    # Proves the clean-directory runs above are not passing by accident: the same mistake from .env.
    (tmp_path / ".env").write_text(f"ROCKETCHAT_URL={GOOD_URL}\nROCKETCHAT_AUTH_TOKEN={FAKE_TOKEN}\n")
    result = invoke(tmp_path, "check")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "integrations-bot: ROCKETCHAT_USER_ID is missing: ROCKETCHAT_USER_ID and ROCKETCHAT_AUTH_TOKEN go together"
    ]


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("sandbox", ("--port", "--credentials-file", "--legacy-update")),
        ("demo", ("--script", "--legacy-update", "--keep-state", "--timeout")),
    ],
)
def test_sandbox_and_demo_explain_their_options(tmp_path: Path, command: str, options: tuple[str, ...]) -> None:
    result = invoke(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: integrations-bot {command}" in result.stdout
    for option in options:
        assert option in result.stdout


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_help_lists_the_settings_they_read(tmp_path: Path, command: str) -> None:
    from bot.config import Settings

    result = invoke(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--credentials-file" in result.stdout and "--as USER" in result.stdout
    assert "ROCKETCHAT_URL" in result.stdout and "required" in result.stdout
    for name in Settings.model_fields:  # every setting, so a new one cannot be forgotten here
        assert name.upper() in result.stdout


@pytest.mark.e2e
def test_check_against_the_standalone_sandbox_from_its_credentials_file(tmp_path: Path) -> None:
    """README "Running against a server, step by step": the sandbox in one terminal, then one
    command with its credentials file, no variables copied by hand."""
    credentials = tmp_path / "sandbox-credentials.json"
    sandbox = subprocess.Popen(
        [str(SCRIPT), "sandbox", "--port", "0", "--credentials-file", str(credentials)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not credentials.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = invoke(tmp_path, "check", "--credentials-file", str(credentials))
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert "READY" in ready.stdout and "@integrations-bot" in ready.stdout

        as_alice = invoke(tmp_path, "check", "--credentials-file", str(credentials), "--as", "alice")
        assert "@alice" in as_alice.stdout and "NOT READY" in as_alice.stdout  # a plain user cannot be the bot

        nobody = invoke(tmp_path, "check", "--credentials-file", str(credentials), "--as", "nobody")
        assert nobody.returncode == 2
        assert nobody.stderr.splitlines() == [
            f"integrations-bot: no user 'nobody' with a token in the credentials file {credentials} "
            "(it has: admin, alice, integrations-bot, owen, rocket.cat)"
        ]
        tokens = [u["authToken"] for u in json.loads(credentials.read_text())["users"].values()]
        for result in (ready, as_alice, nobody):
            assert not any(token in result.stdout + result.stderr for token in tokens)
    finally:
        sandbox.terminate()
        sandbox.wait(10)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read the credentials file"),
        ("not json", "is not JSON"),
        ('{"users": {}}', "has no `url` and `users`"),
        ('{"url": "http://127.0.0.1:1", "users": {"integrations-bot": {"userId": "x"}}}', "no user 'integrations-bot'"),
    ],
)
def test_a_bad_credentials_file_is_one_line(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "credentials.json"
    if content is not None:
        path.write_text(content)
    result = invoke(tmp_path, "run", "--credentials-file", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and problem in lines[0], result.stderr
