"""`integrations-bot check` against the in-process sandbox: what an operator reads, and the exit status."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.ops import check
from bot.state.postgres import SCHEMA_VERSION
from sandbox.control import UserCredentials
from sandbox.server import SandboxServer

BOT_PASSWORD = "bot-password-check-17"
NEEDED = ("manage-incoming-integrations", "manage-outgoing-integrations", "view-full-other-user-info")
RECOMMENDED = (
    "view-other-user-channels",
    "manage-own-incoming-integrations",
    "manage-own-outgoing-integrations",
)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        server.control.set_setting("Message_AllowUnrecognizedSlashCommand", True)
        yield server


def make_bot(sandbox: SandboxServer, permissions: tuple[str, ...]) -> UserCredentials:
    control = sandbox.control
    control.create_role("bot-rights", permissions=permissions)
    return control.create_user(
        "integrations-bot",
        password=BOT_PASSWORD,
        roles=["bot", "bot-rights"],
        user_type="bot",
        personal_access_token=True,
    )


def settings_for(url: str, tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, rocketchat_url=url, bot_state_db=tmp_path / "state.sqlite3", **values)  # type: ignore[call-arg]


def token_settings(sandbox: SandboxServer, bot: UserCredentials, tmp_path: Path, **values: Any) -> Settings:
    return settings_for(
        sandbox.url, tmp_path, rocketchat_user_id=bot.user_id, rocketchat_auth_token=bot.auth_token, **values
    )


def run(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    status = check.main(settings)
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def line(lines: list[str], *words: str) -> str:
    found = [text for text in lines if all(word in text for word in words)]
    assert len(found) == 1, f"expected one line with {words} in:\n" + "\n".join(lines)
    return found[0]


def test_a_bot_with_every_right_is_ready(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    status, lines, err = run(token_settings(sandbox, bot, tmp_path), capsys)

    assert status == 0
    assert line(lines, "server reachable", sandbox.url).startswith("✔")
    assert "Rocket.Chat 8.8.1" in line(lines, "server reachable")
    assert line(lines, "credentials accepted", "@integrations-bot").startswith("✔")
    for permission in NEEDED + RECOMMENDED + ("api-bypass-rate-limit",):
        assert permission in "\n".join(ln for ln in lines if ln.startswith("✔"))
    assert line(lines, "Message_AllowUnrecognizedSlashCommand is on").startswith("✔")
    assert line(lines, "realtime API", "/websocket", "subscribed").startswith("✔")
    assert line(lines, "state database", str(tmp_path / "state.sqlite3")).startswith("✔")
    assert not [ln for ln in lines if ln.startswith(("✘", "!"))]
    assert lines[-1] == "READY: the bot can work with these settings."
    assert (tmp_path / "state.sqlite3").exists()
    assert bot.auth_token not in "\n".join(lines) + err


def test_recommended_rights_missing_are_warnings_that_say_what_they_limit(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED)
    sandbox.control.set_permission_roles("api-bypass-rate-limit", ["admin"])
    status, lines, _err = run(token_settings(sandbox, bot, tmp_path), capsys)

    assert status == 0
    assert "refuses them with an explanation" in line(lines, "! permission view-other-user-channels is missing")
    own = line(lines, "! manage-own-incoming-integrations and manage-own-outgoing-integrations are missing")
    assert "member of every channel" in own
    assert "10 calls per minute" in line(lines, "! permission api-bypass-rate-limit is missing")
    assert lines[-1] == "READY, with 3 warnings (the ! lines say what they limit)."


def test_a_bot_that_cannot_read_callers_roles_is_not_ready(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, ("manage-incoming-integrations", "manage-outgoing-integrations"))
    status, lines, _err = run(token_settings(sandbox, bot, tmp_path), capsys)

    assert status == 1
    missing = line(lines, "view-full-other-user-info")
    assert missing.startswith("✘ permission view-full-other-user-info is missing")
    assert "give the bot user a role that has it" in missing
    assert lines[-1].startswith("NOT READY: 1 problem to fix")


def test_a_wrong_token_is_reported_as_refused_credentials_without_echoing_it(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED)
    wrong = "NOT-THE-TOKEN-3f9a1c77e2"
    settings = settings_for(sandbox.url, tmp_path, rocketchat_user_id=bot.user_id, rocketchat_auth_token=wrong)
    status, lines, err = run(settings, capsys)

    assert status == 1
    refused = line(lines, "credentials refused")
    assert refused.startswith("✘") and "ROCKETCHAT_AUTH_TOKEN" in refused and "personal access token" in refused
    assert not [ln for ln in lines if "realtime" in ln or "permission" in ln]  # meaningless without a login
    assert line(lines, "state database").startswith("✔")  # still checked
    assert wrong not in "\n".join(lines) + err


def test_username_and_password_work_and_a_wrong_password_is_refused(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_bot(sandbox, NEEDED + RECOMMENDED)
    good = settings_for(sandbox.url, tmp_path, rocketchat_username="integrations-bot", rocketchat_password=BOT_PASSWORD)
    status, lines, _err = run(good, capsys)
    assert status == 0
    assert "username and password" in line(lines, "credentials accepted", "@integrations-bot")
    assert line(lines, "realtime API").startswith("✔")

    bad = settings_for(
        sandbox.url, tmp_path, rocketchat_username="integrations-bot", rocketchat_password="wrong-pass-55"
    )
    status, lines, err = run(bad, capsys)
    assert status == 1
    assert "ROCKETCHAT_PASSWORD" in line(lines, "✘ credentials refused")
    assert "wrong-pass-55" not in "\n".join(lines) + err


def test_unrecognised_slash_commands_off_is_a_warning_naming_the_alternatives(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    sandbox.control.set_setting("Message_AllowUnrecognizedSlashCommand", False)
    status, lines, _err = run(token_settings(sandbox, bot, tmp_path), capsys)

    assert status == 0
    warning = line(lines, "Message_AllowUnrecognizedSlashCommand is off")
    assert warning.startswith("! ")
    assert "never sends `/integration ...`" in warning
    for alternative in ("`!integration ...`", "a direct message", "`@integrations-bot ...`"):
        assert alternative in warning
    assert lines[-1] == "READY, with 1 warning (the ! lines say what they limit)."


def test_the_slash_setting_is_not_checked_when_no_slash_prefix_is_configured(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    sandbox.control.set_setting("Message_AllowUnrecognizedSlashCommand", False)
    status, lines, _err = run(token_settings(sandbox, bot, tmp_path, bot_command_prefixes="!integration"), capsys)
    assert status == 0
    assert not [ln for ln in lines if "Message_AllowUnrecognizedSlashCommand" in ln]


def test_an_unreachable_server_fails_clearly_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_for(
        f"http://127.0.0.1:{port}", tmp_path, rocketchat_user_id="u1", rocketchat_auth_token="tok-unused-98"
    )
    status, lines, err = run(settings, capsys)

    assert status == 1
    unreachable = line(lines, "cannot reach Rocket.Chat")
    assert unreachable.startswith("✘") and f"127.0.0.1:{port}" in unreachable and "ROCKETCHAT_URL" in unreachable
    assert "Traceback" not in "\n".join(lines) + err
    assert lines[-1].startswith("NOT READY")


def test_an_unusable_state_file_is_a_problem_that_names_the_variable(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database, just text that is long enough " * 4)
    settings = token_settings(sandbox, bot, tmp_path).model_copy(update={"bot_state_db": broken})
    status, lines, err = run(settings, capsys)

    assert status == 1
    problem = line(lines, "BOT_STATE_DB")
    assert problem.startswith("✘") and str(broken) in problem
    assert "Traceback" not in err


def test_check_in_the_repository_root_leaves_no_untracked_file(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the default state file (`integrations-bot.sqlite3`, BOT_STATE_DB unset) was left
    untracked in a checkout after `check` or `run` there; now the repository ignores it, and the
    side files SQLite leaves after a crash (-wal, -shm, -journal) too."""
    git = shutil.which("git")
    assert git is not None, "git is part of the development setup"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    subprocess.run([git, "init", "-q", str(checkout)], check=True)
    shutil.copy(Path(__file__).resolve().parents[3] / ".gitignore", checkout / ".gitignore")
    monkeypatch.chdir(checkout)
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, rocketchat_url=sandbox.url, rocketchat_user_id=bot.user_id, rocketchat_auth_token=bot.auth_token
    )
    assert not settings.bot_state_db.is_absolute()  # the default: a file in the working directory

    status, _lines, _err = run(settings, capsys)
    assert status == 0
    assert (checkout / settings.bot_state_db).exists()
    for suffix in ("-wal", "-shm", "-journal"):  # what a killed `run` may leave beside it
        (checkout / f"{settings.bot_state_db}{suffix}").touch()

    status_lines = subprocess.run(
        [git, "status", "--porcelain", "--untracked-files=all"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert status_lines == ["?? .gitignore"]


def test_a_shared_postgresql_is_checked_instead_of_the_file(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    settings = token_settings(sandbox, bot, tmp_path).model_copy(update={"bot_state_url": SecretStr(postgres_url)})
    status, lines, err = run(settings, capsys)

    assert status == 0
    found = line(lines, "state database", "PostgreSQL", "reachable", f"schema version {SCHEMA_VERSION}", "0 unfinished")
    assert found.startswith("✔")
    assert not (tmp_path / "state.sqlite3").exists()
    password = str(urlsplit(postgres_url).password)
    assert password not in "\n".join(lines) + err


def test_a_wrong_database_password_is_a_problem_that_names_the_variable_not_the_password(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    password = str(urlsplit(postgres_url).password)
    wrong = postgres_url.replace(f":{password}@", f":{password}-wrong@", 1)
    settings = token_settings(sandbox, bot, tmp_path).model_copy(update={"bot_state_url": SecretStr(wrong)})
    status, lines, err = run(settings, capsys)

    assert status == 1
    problem = line(lines, "BOT_STATE_URL")
    assert problem.startswith("✘") and "password authentication failed" in problem
    assert password not in "\n".join(lines) + err
    assert "Traceback" not in err


def test_allowed_bots_that_name_no_account_are_warnings(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    deploy = sandbox.control.create_user("deploy-bot", roles=["user", "bot"], user_type="bot")
    listed = f"Deploy-Bot,later-bot,id:{deploy.user_id},id:NOSUCHID"
    status, lines, _err = run(token_settings(sandbox, bot, tmp_path, bot_allowed_bots=listed), capsys)

    assert status == 0
    found = line(lines, "BOT_ALLOWED_BOTS", "deploy-bot")
    assert found.startswith("✔") and deploy.user_id in found
    for entry in ("later-bot", "id:NOSUCHID"):
        missing = line(lines, "BOT_ALLOWED_BOTS", entry)
        assert missing.startswith("!") and "names no account" in missing and "allows nobody" in missing
    assert lines[-1] == "READY, with 2 warnings (the ! lines say what they limit)."


def test_no_allowed_bots_no_line(sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bot = make_bot(sandbox, NEEDED + RECOMMENDED)
    _status, lines, _err = run(token_settings(sandbox, bot, tmp_path), capsys)
    assert not [ln for ln in lines if "BOT_ALLOWED_BOTS" in ln]
