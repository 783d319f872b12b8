"""Configuration from the environment (and an optional `.env` file), validated once at start.

Every setting is documented in the README's "Settings" table; keep the two in step. A missing
or wrong value becomes one `ConfigError` line that names the variable and says what to do,
never a pydantic traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

_COMPACT_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _duration(value: Any) -> Any:
    """Accept `7d`, `2h`, `1h30m`, `90s` and plain seconds besides pydantic's ISO 8601 forms."""
    if isinstance(value, str):
        text = value.strip().lower()
        match = _COMPACT_DURATION.fullmatch(text)
        if text and match and any(match.groups()):
            days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    rocketchat_url: str = Field(description="Base URL of the Rocket.Chat server, e.g. https://chat.example.org")
    rocketchat_user_id: str | None = None
    rocketchat_auth_token: SecretStr | None = None
    rocketchat_username: str | None = None
    rocketchat_password: SecretStr | None = None

    bot_state_db: Path = Path("integrations-bot.sqlite3")
    # postgresql://user:password@host:port/database: state shared by several replicas (unset: the file above)
    bot_state_url: SecretStr | None = None
    # How long a replica's claim on a command holds without being renewed (it renews every third).
    bot_claim_lease: float = Field(default=30.0, ge=3, le=3600)
    # PostgreSQL: let the driver prepare the statements it runs often (false behind a PgBouncer in
    # transaction pooling mode older than 1.21, or one without `max_prepared_statements`).
    bot_state_prepare: bool = True
    bot_command_prefixes: str = "/integration,!integration"
    bot_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    bot_log_format: Literal["auto", "json", "console"] = "auto"
    bot_request_timeout: float = Field(default=10.0, gt=0, le=300)
    bot_rights_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    bot_max_disable: Duration = timedelta(days=7)
    bot_audit_room: str | None = None
    bot_http_host: str = "127.0.0.1"
    bot_http_port: int | None = Field(default=None, ge=0, le=65535)
    bot_stale_command_age: Duration = timedelta(minutes=2)
    bot_confirm_timeout: Duration = timedelta(minutes=2)
    # The most integrations one `disable all in #room` / `disable all matching "x*"` may change.
    bot_bulk_max: int = Field(default=50, ge=1, le=500)
    bot_shutdown_grace: float = Field(default=10.0, ge=0, le=300)
    bot_caller_concurrency: int = Field(default=2, ge=1, le=100)
    bot_caller_queue: int = Field(default=20, ge=0, le=10_000)
    # Bot accounts (type `bot`) whose commands are run; other bots are ignored (the `bot` role does not
    # make a bot: Rocket.Chat gives it to a webhook's post-as user, bot/runtime/intake.py).
    # Usernames (each resolved to its account when the bot starts) or `id:<user id>`.
    bot_allowed_bots: str = ""
    # The flood guard (bot/incident/flood.py): a notice when one integration posts at least
    # THRESHOLD messages within WINDOW into one room (0: off); at most one per integration and
    # room per QUIET; ACTION=disable also switches it off for DISABLE_FOR.
    bot_flood_threshold: int = Field(default=20, ge=0, le=100_000)
    bot_flood_window: Duration = timedelta(seconds=60)
    bot_flood_quiet: Duration = timedelta(minutes=30)
    bot_flood_action: Literal["notify", "disable"] = "notify"
    bot_flood_disable_for: Duration = timedelta(hours=1)
    # Rooms (names or ids, comma-separated) where the flood guard posts no notice and disables nothing.
    bot_flood_ignore_rooms: str = ""

    @field_validator("rocketchat_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://chat.example.org")
        # Keep a path prefix (servers behind a reverse proxy at /chat), drop query and fragment.
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    @field_validator("bot_command_prefixes")
    @classmethod
    def _check_prefixes(cls, value: str) -> str:
        prefixes = [p.strip() for p in value.split(",") if p.strip()]
        if not prefixes or any(" " in p for p in prefixes):
            raise ValueError("must be a comma-separated list of words, e.g. /integration,!integration")
        return ",".join(prefixes)

    @field_validator("bot_allowed_bots")
    @classmethod
    def _check_allowed_bots(cls, value: str) -> str:
        entries = [n.strip().removeprefix("@") for n in value.split(",") if n.strip()]
        if any(not _id_or_name(n) or any(c.isspace() for c in n) for n in entries):
            raise ValueError(
                "must be a comma-separated list of usernames or id:<user id>, e.g. deploy-bot,id:Yb3kP9xQ2wE7rT5u"
            )
        return ",".join(entries)

    @field_validator("bot_flood_window", "bot_flood_quiet", "bot_flood_disable_for")
    @classmethod
    def _check_flood_span(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1) or value > timedelta(days=7):
            raise ValueError("must be between 1s and 7d, e.g. 60s, 30m, 1h")
        return value

    @field_validator("bot_flood_ignore_rooms")
    @classmethod
    def _check_ignore_rooms(cls, value: str) -> str:
        rooms = [r.strip() for r in value.split(",") if r.strip()]
        if any(any(c.isspace() for c in r) for r in rooms):
            raise ValueError("must be a comma-separated list of room names or ids, e.g. #alerts,ops-noise")
        return ",".join(rooms)

    @field_validator("bot_state_url")
    @classmethod
    def _check_state_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        text = value.get_secret_value().strip()
        if urlsplit(text).scheme not in ("postgresql", "postgres"):
            # The value may hold a password: never echo it.
            raise ValueError("must be a PostgreSQL URL such as postgresql://bot:secret@db:5432/integrations_bot")
        return SecretStr(text)

    @field_validator("bot_audit_room")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        token_pair = (self.rocketchat_user_id, self.rocketchat_auth_token)
        password_pair = (self.rocketchat_username, self.rocketchat_password)
        if all(token_pair):
            return self
        if all(password_pair):
            return self
        if any(token_pair):
            missing = "ROCKETCHAT_AUTH_TOKEN" if self.rocketchat_user_id else "ROCKETCHAT_USER_ID"
            raise ValueError(f"{missing} is missing: ROCKETCHAT_USER_ID and ROCKETCHAT_AUTH_TOKEN go together")
        if any(password_pair):
            missing = "ROCKETCHAT_PASSWORD" if self.rocketchat_username else "ROCKETCHAT_USERNAME"
            raise ValueError(f"{missing} is missing: ROCKETCHAT_USERNAME and ROCKETCHAT_PASSWORD go together")
        raise ValueError(
            "no credentials: set ROCKETCHAT_USER_ID + ROCKETCHAT_AUTH_TOKEN (a personal access token) "
            "or ROCKETCHAT_USERNAME + ROCKETCHAT_PASSWORD"
        )

    # --- derived values --------------------------------------------------------------------------

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(self.bot_command_prefixes.split(","))

    @property
    def allowed_bot_names(self) -> frozenset[str]:
        """The usernames in BOT_ALLOWED_BOTS, lower-cased: Rocket.Chat usernames are unique
        regardless of case. Names, not accounts: the bot resolves each to its account's id when
        it starts (bot/runtime/allowed_bots.py), and matches authors by that id."""
        return frozenset(n.lower() for n in self.bot_allowed_bots.split(",") if n and _id_of(n) is None)

    @property
    def allowed_bot_ids(self) -> frozenset[str]:
        """The user ids in BOT_ALLOWED_BOTS (`id:<user id>` entries), as written: ids are case-sensitive."""
        return frozenset(i for i in (_id_of(n) for n in self.bot_allowed_bots.split(",") if n) if i is not None)

    @property
    def flood_ignore_rooms(self) -> tuple[str, ...]:
        return tuple(r for r in self.bot_flood_ignore_rooms.split(",") if r)

    @property
    def rest_url(self) -> str:
        return self.rocketchat_url

    @property
    def websocket_url(self) -> str:
        """`https://host/x` → `wss://host/x/websocket` (contract §4.1)."""
        parts = urlsplit(self.rocketchat_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/websocket", "", ""))

    @property
    def uses_token(self) -> bool:
        return self.rocketchat_user_id is not None and self.rocketchat_auth_token is not None


_ID_PREFIX = "id:"


def _id_of(entry: str) -> str | None:
    """The user id of an `id:<user id>` entry of BOT_ALLOWED_BOTS (None for a username): no
    username holds a `:` (Rocket.Chat's default username rule, UTF8_User_Names_Validation, allows
    letters, digits, `-`, `_` and `.`)."""
    return entry[len(_ID_PREFIX) :] if entry[: len(_ID_PREFIX)].lower() == _ID_PREFIX else None


def _id_or_name(entry: str) -> str:
    """What an entry of BOT_ALLOWED_BOTS names: its id, else its username ("" for `id:` alone)."""
    found = _id_of(entry)
    return entry if found is None else found


def load_settings(env_file: str | Path | None = ".env", overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the settings, turning any problem into a one-line `ConfigError`. `overrides` (field
    names, e.g. from `--credentials-file`) win over the environment and the .env file."""
    try:
        return Settings(_env_file=env_file, **dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first wrong variable: `ROCKETCHAT_URL is missing` or `X: reason`."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) if error["loc"] else ""
    variable = field.upper()
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        hint = " (e.g. https://chat.example.org)" if variable == "ROCKETCHAT_URL" else ""
        return f"{variable} is missing: set it in the environment or in .env{hint}"
    if not variable:
        return message
    # Never echo the offending input: it may be a secret.
    return f"{variable}: {message}"


def _shown_default(value: Any) -> str:
    if value is None or value == "":
        return "(unset)"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return str(value)


def settings_help() -> str:
    """The settings `run` and `check` read, for their `--help`: required ones first, then every
    optional `BOT_*` one with its default (generated from `Settings`, so it cannot go stale)."""
    lines = [
        "settings (environment variables, or a .env file in the working directory):",
        "  ROCKETCHAT_URL              required: the server, e.g. https://chat.example.org",
        "  ROCKETCHAT_USER_ID          the bot account's user id, and",
        "  ROCKETCHAT_AUTH_TOKEN       a personal access token of that account (recommended); or",
        "  ROCKETCHAT_USERNAME         the bot account's username, and",
        "  ROCKETCHAT_PASSWORD         its password",
        "  (--credentials-file FILE takes the first three from a sandbox credentials file instead)",
        "optional, with their defaults (README.md, section Settings, says what each does):",
    ]
    for name, field in Settings.model_fields.items():
        if name.startswith("bot_"):
            lines.append(f"  {name.upper():<27} {_shown_default(field.default)}")
    return "\n".join(lines)
