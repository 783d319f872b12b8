"""Settings for a `Bot` built in the test's process, talking to nothing (its parts are stand-ins)."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings


def offline_settings(tmp_path: Path) -> Settings:
    """A bot's settings with no environment or `.env` read, its state file in `tmp_path`."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        rocketchat_url="https://chat.example.org",
        bot_state_db=tmp_path / "s.sqlite3",
        rocketchat_user_id="bot",
        rocketchat_auth_token="tok",
    )
