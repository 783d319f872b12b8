"""Settings that need more than a type: BOT_ALLOWED_BOTS (the bot accounts whose commands run)."""

from __future__ import annotations

import os
from datetime import timedelta

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
    allowing = settings(monkeypatch)
    assert (allowing.allowed_bot_names, allowing.allowed_bot_ids) == (frozenset(), frozenset())


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
    allowing = settings(monkeypatch, BOT_ALLOWED_BOTS=value)
    assert (allowing.allowed_bot_names, allowing.allowed_bot_ids) == (allowed, frozenset())


def test_allowed_bots_may_be_user_ids_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    allowing = settings(monkeypatch, BOT_ALLOWED_BOTS="deploy-bot, id:Yb3kP9xQ2wE7rT5u, ID:aBcD1234")
    assert allowing.allowed_bot_names == {"deploy-bot"}
    assert allowing.allowed_bot_ids == {"Yb3kP9xQ2wE7rT5u", "aBcD1234"}  # an id's case matters


@pytest.mark.parametrize("value", ["deploy bot", "a,b c", "@", "id:", "id: abc"])
def test_a_username_with_a_space_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(monkeypatch, BOT_ALLOWED_BOTS=value)
    assert str(caught.value) == (
        "BOT_ALLOWED_BOTS: must be a comma-separated list of usernames or id:<user id>, "
        "e.g. deploy-bot,id:Yb3kP9xQ2wE7rT5u"
    )


def test_the_flood_guard_defaults_and_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("BOT_FLOOD_")]:
        monkeypatch.delenv(key)
    defaults = settings(monkeypatch)
    assert (defaults.bot_flood_threshold, defaults.bot_flood_action) == (20, "notify")
    assert (defaults.bot_flood_window, defaults.bot_flood_quiet, defaults.bot_flood_disable_for) == (
        timedelta(seconds=60),
        timedelta(minutes=30),
        timedelta(hours=1),
    )
    assert defaults.flood_ignore_rooms == ()
    chosen = settings(
        monkeypatch,
        BOT_FLOOD_THRESHOLD="0",
        BOT_FLOOD_WINDOW="2m",
        BOT_FLOOD_ACTION="disable",
        BOT_FLOOD_IGNORE_ROOMS=" #alerts , GENERAL,,",
    )
    assert chosen.bot_flood_threshold == 0 and chosen.bot_flood_window == timedelta(minutes=2)
    assert chosen.bot_flood_action == "disable" and chosen.flood_ignore_rooms == ("#alerts", "GENERAL")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOT_FLOOD_THRESHOLD", "-1"),
        ("BOT_FLOOD_WINDOW", "0s"),
        ("BOT_FLOOD_QUIET", "8d"),
        ("BOT_FLOOD_ACTION", "delete"),
        ("BOT_FLOOD_IGNORE_ROOMS", "two words"),
    ],
)
def test_a_wrong_flood_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}: "):
        settings(monkeypatch, **{name: value})
