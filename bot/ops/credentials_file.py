"""`run --credentials-file FILE [--as USER]`: connection settings from a sandbox credentials file.

`integrations-bot sandbox --credentials-file F` writes the server's URL and every seeded user's id
and token into F (sandbox/cli.py). Pointing the bot at that server otherwise means copying three
values into the environment by hand; this reads them instead. Only the connection settings come
from the file (`ROCKETCHAT_URL`, `ROCKETCHAT_USER_ID`, `ROCKETCHAT_AUTH_TOKEN`); every other
setting still comes from the environment or `.env`. Problems are one `ConfigError` line that
never contains a token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from bot.errors import ConfigError

DEFAULT_USER: Final = "integrations-bot"


def connection_settings(path: Path, user: str = DEFAULT_USER) -> dict[str, Any]:
    """`{"rocketchat_url", "rocketchat_user_id", "rocketchat_auth_token"}` for `user` in the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the credentials file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ConfigError(
            f"the credentials file {path} is not JSON (write it with `integrations-bot sandbox`)"
        ) from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not isinstance(users, dict):
        raise ConfigError(
            f"the credentials file {path} has no `url` and `users` (write it with `integrations-bot sandbox`)"
        )
    entry = users.get(user.removeprefix("@"))
    if not isinstance(entry, dict) or not entry.get("userId") or not entry.get("authToken"):
        known = ", ".join(sorted(str(name) for name in users)) or "none"
        raise ConfigError(f"no user {user!r} with a token in the credentials file {path} (it has: {known})")
    return {
        "rocketchat_url": data["url"],
        "rocketchat_user_id": str(entry["userId"]),
        "rocketchat_auth_token": str(entry["authToken"]),
    }
