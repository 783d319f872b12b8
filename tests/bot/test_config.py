"""Settings that need more than a type: BOT_ALLOWED_BOTS (the bot accounts whose commands run)."""

from __future__ import annotations

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError

BASE = {"ROCKETCHAT_URL": "https://chat.example.org", "ROCKETCHAT_USER_ID": "u", "ROCKETCHAT_AUTH_TOKEN": "t"}


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in {**BASE, **env}.items():
        monkeypatch.setenv(key, value)
    return load_settings(env_file=None)


def test_no_bot_account_is_allowed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOT_ALLOWED_BOTS", raising=False)
    assert settings(monkeypatch).allowed_bots == frozenset()


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("deploy-bot", {"deploy-bot"}),
        (" Deploy-Bot , @alertmanager,,", {"deploy-bot", "alertmanager"}),  # case, spaces, @, empty entries
        ("", set()),
        (" , ", set()),
    ],
)
def test_allowed_bots_are_usernames_in_any_case(monkeypatch: pytest.MonkeyPatch, value: str, allowed: set[str]) -> None:
    assert settings(monkeypatch, BOT_ALLOWED_BOTS=value).allowed_bots == allowed


@pytest.mark.parametrize("value", ["deploy bot", "a,b c", "@"])
def test_a_username_with_a_space_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(monkeypatch, BOT_ALLOWED_BOTS=value)
    assert str(caught.value) == (
        "BOT_ALLOWED_BOTS: must be a comma-separated list of usernames, e.g. deploy-bot,alertmanager"
    )
